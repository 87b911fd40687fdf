"""The files the job creates and the hub reads back, on the in-memory Slurm (fakeslurm.py).

- A job that ends before its server: the user sees the end of its output file as text
  (lines kept, terminal escapes and bidi controls escaped), the hub's log gets it on one
  escaped line, and an output file the driver would not read is named with the reason.
- ``job_umask``: sbatch gets ``SLURM_UMASK`` (the output file) and the script a ``umask``
  line (the server's files).

tests/integration/test_user_files.py runs the same against the real cluster.
"""

from __future__ import annotations

import asyncio

import pytest
import test_lifecycle as lifecycle

from hpcspawner.slurm import ConnectionFailed, JobOutput, SlurmTimeout
from hpcspawner.spawner.errors import SpawnFailure
from hpcspawner.spawner.messages import OUTPUT_TAIL_LINES

# the lifecycle tests' fixtures: one in-memory Slurm, hubs and spawners on it
bounded = lifecycle.bounded
cluster = lifecycle.cluster
db = lifecycle.db
new_hub = lifecycle.new_hub
new_spawner = lifecycle.new_spawner

HOSTILE_OUTPUT = (
    "".join(f"early line {i}\n" for i in range(30))
    + "\x1b[2J\x1b]0;owned\x07cleared the admin's terminal\n"
    + "[E 2026-01-01 00:00:00.000 JupyterHub app] forged\r\n"
    + "file \u202egnp.exe and \x9b31m C1 red\n"
    + "ModuleNotFoundError: No module named 'jupyterhub'\n"
)


async def end_before_server(cluster, spawner, output: str | None) -> tuple[SpawnFailure, object]:
    task = asyncio.ensure_future(spawner.start())
    job = await bounded(cluster.next_job())
    if output is not None:
        cluster.write_output(job.job_id, output)
    cluster.end(job.job_id, "FAILED", "NonZeroExitCode")
    with pytest.raises(SpawnFailure) as info:
        await bounded(task)
    assert info.value.reason == "job-ended"
    return info.value, job


async def test_users_message_keeps_lines_but_no_control_characters(cluster, new_spawner):
    failure, job = await end_before_server(cluster, new_spawner(), HOSTILE_OUTPUT)
    message = failure.jupyterhub_message
    head, _, tail = message.partition(f" Last lines of {job.output_path}:\n")
    assert (
        head
        == f"Job {job.job_id} ended before the server started: the job failed (non-zero exit code)."
    )
    lines = tail.split("\n")
    assert len(lines) == OUTPUT_TAIL_LINES
    assert lines[-1] == "ModuleNotFoundError: No module named 'jupyterhub'"
    assert lines[-4] == "\\x1b[2J\\x1b]0;owned\\x07cleared the admin's terminal"
    assert lines[-3] == "[E 2026-01-01 00:00:00.000 JupyterHub app] forged"  # \r\n: one break
    assert lines[-2] == "file \\u202egnp.exe and \\x9b31m C1 red"
    assert not any(ord(c) < 0x20 and c != "\n" or 0x7F <= ord(c) <= 0x9F for c in message)
    assert "\u202e" not in message


async def test_hubs_log_gets_the_output_on_one_escaped_line(cluster, new_spawner):
    failure, job = await end_before_server(cluster, new_spawner(), HOSTILE_OUTPUT)
    logged = str(failure)  # what JupyterHub logs for a failed spawn
    assert f"job {job.job_id} of alice ended before its server started" in logged
    assert "forged\\r\\nfile \\u202egnp.exe and \\x9b31m C1 red\\nModuleNotFoundError" in logged
    assert "\n" not in logged and "\r" not in logged
    assert "\x1b" not in logged and "\x9b" not in logged and "\u202e" not in logged


@pytest.mark.parametrize(
    "problem",
    [
        "is not a regular file (it is a FIFO)",
        "is not a regular file (it is a character device)",
        "could not be read within 5 s",
    ],
)
async def test_an_output_file_not_read_is_named_with_the_reason(cluster, new_spawner, problem):
    spawner = new_spawner()
    asked = []

    async def refused(username, path, max_bytes=4096):
        asked.append((username, path))
        return JobOutput(problem=problem)

    spawner.driver.read_output = refused
    failure, job = await end_before_server(cluster, spawner, "never read")
    assert asked == [("alice", job.output_path)]
    assert failure.jupyterhub_message == (
        f"Job {job.job_id} ended before the server started: the job failed (non-zero exit "
        f"code). Its output file {job.output_path} {problem}."
    )
    assert f"{job.output_path}: its output file {problem}" in str(failure)


async def test_a_missing_output_file_is_said_so(cluster, new_spawner):
    failure, job = await end_before_server(cluster, new_spawner(), None)
    assert failure.jupyterhub_message.endswith(f"Its output file {job.output_path} does not exist.")


# ---------------------------------------------------------------- job_umask


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        pytest.param({}, "0077", id="default-private"),
        pytest.param({"job_umask": "027"}, "0027", id="group-readable"),
        pytest.param(
            {"environment": {"SLURM_UMASK": "0000"}}, "0077", id="environment-cannot-widen"
        ),
    ],
)
async def test_job_umask_reaches_sbatch_and_the_script(
    cluster, new_hub, new_spawner, settings, expected
):
    spawner = new_spawner(hub=new_hub(**settings))
    task = asyncio.ensure_future(spawner.start())
    job = await bounded(cluster.next_job())
    # slurmstepd creates the output file with SLURM_UMASK (sbatch's own umask otherwise)
    assert job.env["SLURM_UMASK"] == expected
    # the server's files: a umask line before the prologue and the server
    lines = job.script.splitlines()
    assert f"umask {expected}" in lines
    assert lines.index(f"umask {expected}") < next(
        i for i, line in enumerate(lines) if line.startswith("exec ")
    )
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize("value", ["77", "0x77", "1077", "078", "077 ", "u=rwx"])
def test_job_umask_is_validated(new_spawner, new_hub, value):
    with pytest.raises(ValueError, match=r"c\.SlurmSpawner\.job_umask .* three octal digits"):
        new_spawner(hub=new_hub(job_umask=value))


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(
            ConnectionFailed(["ssh"], None, "cannot connect to login1:22"), id="login-node-away"
        ),
        pytest.param(SlurmTimeout(["install"], 30), id="timed-out"),
    ],
)
async def test_a_token_file_that_cannot_reach_the_cluster_says_the_scheduler_is_away(
    cluster, new_spawner, error
):
    """The driver's way to the cluster is away (an SSH login node, slurmrestd): the user
    hears "not answering", not that their directory is broken; nothing is submitted."""
    cluster.fail("install_files", error)
    spawner = new_spawner()
    with pytest.raises(SpawnFailure) as info:
        await bounded(spawner.start())
    assert (info.value.reason, info.value.status_code) == ("scheduler-unavailable", 503)
    assert "The scheduler is not answering" in info.value.message
    assert str(error) in info.value.detail
    assert cluster.count("submit") == 0
