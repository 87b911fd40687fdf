"""SlurmSpawner's request path without a hub: hostile user_options -> validated request ->
batch script, with the cluster view from recorded scheduler output.

Only parsers and builders run here; that the spawner works is shown by the integration
tests against the real cluster.
"""

from __future__ import annotations

import asyncio
import shlex
import subprocess
from pathlib import Path
from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st
from traitlets.config import Config

from hpcspawner.clusterinfo import parse_nodes, parse_partitions, summarize
from hpcspawner.errors import SpawnFailure
from hpcspawner.options import OPTION_FIELDS
from hpcspawner.slurm import SlurmDriver
from hpcspawner.spawner import SlurmSpawner

DATA = Path(__file__).parent / "data"


class RecordedDriver(SlurmDriver):
    """Answers cluster questions from recorded ``scontrol`` output; submits nothing."""

    async def cluster_snapshot(self):
        return summarize(
            parse_partitions((DATA / "scontrol_partitions.txt").read_text()),
            parse_nodes((DATA / "scontrol_nodes_idle.txt").read_text()),
        )

    async def user_associations(self, username):
        return None


def make_spawner(**settings) -> SlurmSpawner:
    config = Config()
    config.SlurmSpawner.driver_class = RecordedDriver
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
