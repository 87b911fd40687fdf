"""SlurmSpawner's request path without a hub: hostile user_options -> validated request ->
batch script, with the cluster view from recorded scheduler output.

Only parsers and builders run here; that the spawner works is shown by the integration
tests against the real cluster.
"""

from __future__ import annotations

import asyncio
import shlex
import subprocess
from types import SimpleNamespace

import pytest
from fakeslurm import FakeSlurm
from hypothesis import given
from hypothesis import strategies as st
from jupyterhub.objects import Hub
from traitlets import TraitError
from traitlets.config import Config

from hpcspawner.resources.options import OPTION_FIELDS
from hpcspawner.slurm import SlurmError
from hpcspawner.spawner import SlurmSpawner
from hpcspawner.spawner.errors import SpawnFailure


def make_spawner(**settings) -> SlurmSpawner:
    config = Config()
    # the shared fake: recorded scontrol output (idle test cluster), no accounting
    config.SlurmSpawner.driver_class = FakeSlurm
    config.SlurmSpawner.partitions = {
        "debug": {"max_runtime": "1:00:00"},
        "gpu": {"max_gpus": 2},
        "remote": {},
    }
    config.SlurmSpawner.max_nodes = 2
    config.SlurmSpawner.environments = {
        "jupyter": {"description": "default"},
        "torch": {"container": "/images/torch 2.sif", "modules": ["cuda/12"]},
    }
    config.SlurmSpawner.default_options = {"partition": "debug", "memory": "1G", "runtime": "30"}
    for name, value in settings.items():
        setattr(config.SlurmSpawner, name, value)
    return SlurmSpawner(config=config, user=SimpleNamespace(name="root"))


def test_container_environment_wraps_the_command():
    spawner = make_spawner()
    request = asyncio.run(
        _request(spawner, {"environment": "torch", "partition": "gpu", "gpus": 1})
    )
    command = spawner.job_command(request, spawner.policy.environments["torch"])
    assert command[:4] == ["apptainer", "exec", "--nv", "/images/torch 2.sif"]
    assert command[4:] == ["hpcspawner-singleuser", "jupyterhub-singleuser"]
    script = spawner.render_script(request, {"PATH": "/usr/bin:/bin"})
    exec_line = next(line for line in script.splitlines() if line.startswith("exec "))
    assert shlex.split(exec_line)[1:] == command
    assert "module load cuda/12" in script


def test_a_podman_container_exec_line_is_what_hpcspawner_podman_reads():
    from hpcspawner.job.podman import parse_args

    spawner = make_spawner(
        container_exec=["hpcspawner-podman", "--env=PATH=/opt/jupyter/bin:/usr/bin:/bin"],
        environments={"image": {"container": "/opt/images/jupyter"}},
    )
    request = asyncio.run(
        _request(spawner, {"environment": "image", "partition": "gpu", "gpus": 1})
    )
    command = spawner.job_command(request, spawner.policy.environments["image"])
    assert command[0] == "hpcspawner-podman"
    options = parse_args(command[1:])
    assert options.gpus
    assert options.rootfs == "/opt/images/jupyter"
    assert options.command == ("hpcspawner-singleuser", "jupyterhub-singleuser")
    assert options.env == ("PATH=/opt/jupyter/bin:/usr/bin:/bin",)


def test_no_container_no_gpu_flag():
    spawner = make_spawner()
    request = asyncio.run(_request(spawner, {"environment": "jupyter"}))
    assert spawner.job_command(request, spawner.policy.environments["jupyter"]) == [
        "hpcspawner-singleuser",
        "jupyterhub-singleuser",
    ]


async def _request(spawner, options):
    spawner.user_options = options
    return await spawner.validated_request()


values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.text(max_size=30),
    st.sampled_from(["debug", "gpu", "remote", "nosuch", "2:00:00", "1-00:00:00", "4G", "0"]),
    st.lists(st.integers(), max_size=2),
)
options_strategy = st.dictionaries(
    st.one_of(st.sampled_from(OPTION_FIELDS), st.text(max_size=10)), values, max_size=8
)


@given(options_strategy)
def test_hostile_options_give_a_400_or_a_safe_script(options):
    spawner = make_spawner()
    try:
        request = asyncio.run(_request(spawner, options))
    except SpawnFailure as e:
        # the user's mistake: a 400 with a message, never a server error
        assert e.status_code == 400
        assert e.reason == "invalid-options"
        assert e.jupyterhub_message.startswith("Invalid server options: ")
        return
    # within the admin's policy and the cluster's facts
    assert request.partition in ("debug", "gpu", "remote")
    assert 1 <= request.nodes <= (1 if request.partition in ("debug", "gpu") else 2)
    if request.partition == "debug":
        assert request.runtime_minutes <= 60
    assert request.cpus <= 2 and request.gpus <= 2
    script = spawner.render_script(request, {"PATH": "/usr/bin:/bin"})
    check = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    assert check.returncode == 0, check.stderr


# ---------------------------------------------------------------- the API token's way to the job

TOKEN = "5ec7e7" * 6


def token_spawner(**settings) -> SlurmSpawner:
    spawner = make_spawner(**settings)
    # sbatch records what it got (the job's environment, the files on the cluster) and refuses
    spawner.driver.cluster.fail(
        "submit",
        SlurmError(["sbatch"], 1, "sbatch: error: Batch job submission failed: Invalid qos"),
        times=None,
    )
    spawner.user = SimpleNamespace(name="alice", url="/user/alice/")
    spawner.hub = Hub()
    spawner.api_token = TOKEN
    spawner.oauth_client_id = "jupyterhub-user-alice"
    return spawner


async def _failed_start(spawner) -> SpawnFailure:
    try:
        await asyncio.wait_for(spawner.start(), timeout=30)
    except SpawnFailure as e:
        return e
    raise AssertionError("the start should have failed at sbatch")


def submitted(spawner) -> list[tuple[str, dict, dict]]:
    """Each sbatch: (script, environment, the files on the cluster: path -> (user, content))."""
    return [
        (call.args[1], call.env, {path: (user, data) for (user, path), data in call.files.items()})
        for call in spawner.driver.cluster.calls("submit")
    ]


def removals(spawner) -> list[tuple[str, str]]:
    """Each file removed as a user: (user, path)."""
    return [call.args[:2] for call in spawner.driver.cluster.calls("remove_file")]


async def test_the_job_environment_names_a_token_file_not_the_token():
    spawner = token_spawner(token_dir="/scratch/{username}/tokens/{server}")
    failure = await _failed_start(spawner)
    assert failure.reason == "job-rejected"
    ((script, env, files_at_sbatch),) = submitted(spawner)
    path = f"/scratch/alice/tokens/default/api-token-{spawner.spawn_id}"
    assert env["HPCSPAWNER_TOKEN_FILE"] == path
    assert "JUPYTERHUB_API_TOKEN" not in env and "JPY_API_TOKEN" not in env
    assert not [name for name, value in env.items() if TOKEN in value]
    assert TOKEN not in script
    # written as the user before sbatch ran (the driver makes it 0600 in a 0700 directory)
    assert files_at_sbatch == {path: ("alice", TOKEN.encode())}
    # the failed start took it away again
    assert removals(spawner) == [("alice", path)]
    assert spawner.driver.cluster.files == {}


async def test_token_delivery_environment_is_batchspawners_way():
    spawner = token_spawner(launcher_command=["/opt/bs/bin/batchspawner-singleuser"])
    assert spawner.token_delivery == "environment"
    await _failed_start(spawner)
    ((_, env, files_at_sbatch),) = submitted(spawner)
    assert env["JUPYTERHUB_API_TOKEN"] == TOKEN
    assert "HPCSPAWNER_TOKEN_FILE" not in env
    assert files_at_sbatch == {}
    assert removals(spawner) == []


@pytest.mark.parametrize(
    ("job_host", "removed"),
    [
        pytest.param("", True, id="stopped-before-the-server-ran"),
        pytest.param("vm", False, id="server-ran-launcher-took-it"),
    ],
)
async def test_stop_removes_a_token_file_the_launcher_never_took(job_host, removed):
    spawner = token_spawner()
    job = spawner.driver.cluster.existing_job("42", user="alice")
    if job_host:
        spawner.driver.cluster.run(job.job_id, job_host)
    spawner.load_state({"job_id": "42", "spawn_id": "abc123", "job_host": job_host})
    await asyncio.wait_for(spawner.stop(), timeout=30)
    assert [call.args[1] for call in spawner.driver.cluster.calls("cancel")] == ["42"]
    expected = [("alice", "/home/alice/.jupyterhub-tokens/default/api-token-abc123")]
    assert removals(spawner) == (expected if removed else [])


# ---------------------------------------------------------------- the job's idle safety net


@pytest.mark.parametrize(
    ("job_idle_timeout", "expected"),
    [
        pytest.param(0, None, id="off-by-default"),
        pytest.param(4 * 3600, "14400", id="hours"),
        pytest.param(30, "30", id="short"),
    ],
)
async def test_the_idle_timeout_reaches_the_job_in_its_environment(job_idle_timeout, expected):
    """hpcspawner.job.activity reads HPCSPAWNER_IDLE_TIMEOUT in the job; the script holds
    nothing of it."""
    spawner = token_spawner(job_idle_timeout=job_idle_timeout)
    await _failed_start(spawner)
    ((script, env, _),) = submitted(spawner)
    assert env.get("HPCSPAWNER_IDLE_TIMEOUT") == expected
    assert "IDLE_TIMEOUT" not in script


@pytest.mark.parametrize("value", [-1, -3600])
def test_a_negative_idle_timeout_is_refused_naming_the_fix(value):
    with pytest.raises(ValueError, match=r"job_idle_timeout = -\d+: give a number of seconds"):
        make_spawner(job_idle_timeout=value)


@pytest.mark.parametrize("value", ["2h", 1.5, None])
def test_an_idle_timeout_that_is_not_whole_seconds_is_refused(value):
    with pytest.raises(TraitError):
        make_spawner(job_idle_timeout=value)
