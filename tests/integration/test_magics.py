"""Slurm from the notebook: the magics in a real kernel of a real server in a Slurm job.

The kernel is started and driven as JupyterLab does it, through the hub's proxy; the magics
are there because the job environment's ``pip install`` put the startup file in place
(nothing is loaded by the test). What the magics did is checked from here, on the cluster.
"""

from __future__ import annotations

import pwd
import re
import time
from pathlib import Path

import pytest

from .browser import screenshot
from .hub import squeue_fields, wait_left_queue
from .kernel import run_cell, start_kernel
from .test_spawn_page import page_for  # noqa: F401 - a fixture: a logged-in browser page
from .test_spawn_page import run_cell as run_cell_in_lab

SERVER_OPTIONS = {"partition": "debug", "cpus": 1, "memory": "600M", "runtime": "0:15:00"}


@pytest.fixture(scope="module")
def hub(hub_factory):
    hub = hub_factory()
    yield hub
    hub_factory.stop(hub)


def wait_state(job_id: str, state: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (fields := squeue_fields(job_id, "%T")) != [state]:
        assert time.monotonic() < deadline, f"job {job_id} is {fields}, not {state}"
        time.sleep(0.3)


def test_squeue_sbatch_scancel_from_a_kernel_in_the_job(hub):
    hub.create_user("alice")
    token = hub.user_token("alice")
    r = hub.spawn("alice", options=SERVER_OPTIONS)
    assert r.status_code in (201, 202), r.text
    server_job = hub.wait_ready("alice")["state"]["job_id"]
    home = Path(pwd.getpwnam("alice").pw_dir)

    kernel_id = start_kernel(hub, "alice", token)

    def cell(code: str):
        return run_cell(hub, "alice", token, kernel_id, code)

    # %squeue: the user's jobs, the server's own among them
    listing = cell("%squeue")
    assert listing.error is None, listing.error
    rows = {line.split()[0]: line.split() for line in listing.stdout.splitlines()[1:]}
    assert server_job in rows, listing.stdout
    assert "alice" in rows[server_job] and "R" in rows[server_job], listing.stdout

    # %%sbatch: the cell is the script; the job runs as alice, outside this job
    marker = f"magic-{hub.job_tag}"
    submitted = cell(
        f"%%sbatch --partition=remote --time=2 --job-name={marker} "
        f"--comment=hpcspawner:{hub.job_tag}:alice:magic --output=/dev/null\n"
        "#!/bin/bash\n"
        f'env > "$HOME/{marker}-$SLURM_JOB_ID.env"\n'
        "sleep 600\n"
    )
    assert submitted.error is None, submitted.error
    found = re.search(r"Submitted batch job (\d+)", submitted.stdout)
    assert found, submitted.stdout
    job = found.group(1)
    assert submitted.results == [repr(job)], submitted.results  # the cell's value: the id
    assert job != server_job
    wait_state(job, "RUNNING")
    assert squeue_fields(job, "%u|%j") == ["alice", marker]

    # what the job got: its own Slurm variables, none of the server's secrets or job
    env_file = home / f"{marker}-{job}.env"
    deadline = time.monotonic() + 30
    while not (env_file.exists() and env_file.read_text().endswith("\n")):
        assert time.monotonic() < deadline, f"{env_file} not written"
        time.sleep(0.3)
    job_env = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
    env_file.unlink()  # the next tests' JupyterLab (and its screenshots) show this home
    assert job_env["SLURM_JOB_ID"] == job
    assert not [k for k in job_env if k.startswith(("JUPYTERHUB_", "JPY_"))], sorted(job_env)

    # %scancel: gone from the queue, cancelled
    cancelled = cell(f"%scancel {job}")
    assert cancelled.error is None, cancelled.error
    assert f"Cancel requested: {job}" in cancelled.stdout
    wait_left_queue(job)
    assert squeue_fields(job, "%T") in (["CANCELLED"], None)

    # mistakes: one line that says what went wrong, no traceback, the server's job intact
    usage = cell("%scancel")
    assert usage.error == "usage: %scancel JOBID [JOBID...]", usage.error
    refused = cell("%%sbatch --partition=no-such-partition\n#!/bin/bash\ntrue\n")
    assert refused.error and refused.error.startswith("sbatch failed (exit 1):"), refused
    assert "invalid partition" in refused.error.lower(), refused.error
    assert "Traceback" not in refused.error

    # %slurm_job: the server's own job
    details = cell("%slurm_job")
    assert details.error is None, details.error
    assert f"JobId={server_job}" in details.stdout
    assert "UserId=alice" in details.stdout

    assert squeue_fields(server_job, "%T", all_states=False) == ["RUNNING"]
    hub.stop_server("alice")


def test_squeue_in_a_notebook_in_jupyterlab(hub, page_for):  # noqa: F811
    """What the user guide shows: ``%squeue`` in a notebook, in JupyterLab, in the job."""
    page = page_for("alice")  # before the spawn: a login with a running server leaves /hub/
    r = hub.spawn("alice", options=SERVER_OPTIONS)
    assert r.status_code in (201, 202), r.text
    server_job = hub.wait_ready("alice")["state"]["job_id"]
    page.goto(f"{hub.url}/user/alice/lab")
    output = run_cell_in_lab(page, "%squeue")
    assert server_job in output and "alice" in output, output
    screenshot(page, "magics.png")
    hub.stop_server("alice")
