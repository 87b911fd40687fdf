"""The token file's clean-up runs a command as the user only for a file that was written.

A start that fails before the hub wrote the token file (options refused, an account
the spawner refuses) must run nothing as the user, not even ``rm -f``; one that fails
after (sbatch refused, the job ended early) or is stopped before its server ran
removes it.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from fakeslurm import FakeCluster, FakeSlurm
from jupyterhub.objects import Hub
from traitlets.config import Config

from hpcspawner.accounts.rules import PosixAccount
from hpcspawner.slurm import SlurmError
from hpcspawner.spawner import SlurmSpawner
from hpcspawner.spawner.errors import SpawnFailure

NAME = "no-such-user-hpcspawner"
REFUSED = SlurmError(["sbatch"], 1, "sbatch: error: Batch job submission failed: Invalid qos")


def as_user(spawner) -> list[tuple[str, str]]:
    """What ran as the user, in order: files installed (their directory), sbatch, files removed."""
    shown = {
        "install_files": lambda call: call.args[1],
        "submit": lambda call: "",
        "remove_file": lambda call: call.args[1],
    }
    cluster = spawner.driver.cluster
    return [(call.kind, shown[call.kind](call)) for call in cluster.history if call.kind in shown]


def make_spawner(host_users) -> SlurmSpawner:
    cluster = FakeCluster()
    # a user the hub host knows by name and home only (no uid, no shell): checked by
    # name, and it is no service account
    host_users[NAME] = PosixAccount(NAME, home="/home/x")
    cluster.accounts.add(NAME)
    cluster.fail("submit", REFUSED, times=None)  # sbatch refuses every job
    config = Config()
    config.SlurmSpawner.driver_class = FakeSlurm
    config.FakeSlurm.cluster = cluster
    config.SlurmSpawner.startup_poll_interval = 0.01
    config.SlurmSpawner.partitions = {"debug": {"max_runtime": "1:00:00"}}
    config.SlurmSpawner.default_options = {"partition": "debug", "memory": "1G", "runtime": "30"}
    config.SlurmSpawner.token_dir = "/scratch/{username}/tokens/{server}"
    spawner = SlurmSpawner(config=config, user=SimpleNamespace(name=NAME, url=f"/user/{NAME}/"))
    spawner.hub = Hub()
    spawner.api_token = "a1b2c3d4" * 4
    spawner.oauth_client_id = "jupyterhub-user-x"
    return spawner


async def _start_fails(spawner) -> SpawnFailure:
    with pytest.raises(SpawnFailure) as info:
        await asyncio.wait_for(spawner.start(), timeout=30)
    return info.value


async def test_a_start_refused_before_the_file_runs_nothing_as_the_user(host_users):
    spawner = make_spawner(host_users)
    spawner.user_options = {"partition": "nosuch"}
    failure = await _start_fails(spawner)
    assert failure.reason == "invalid-options"
    assert as_user(spawner) == []


async def test_a_start_refused_by_slurm_removes_the_file_it_wrote(host_users):
    spawner = make_spawner(host_users)
    failure = await _start_fails(spawner)
    assert failure.reason == "job-rejected"
    path = f"/scratch/no-such-user-hpcspawner/tokens/default/api-token-{spawner.spawn_id}"
    assert as_user(spawner) == [
        ("install_files", path.rpartition("/")[0]),
        ("submit", ""),
        ("remove_file", path),
    ]


async def test_after_a_hub_restart_a_start_whose_job_ended_early_removes_the_file(host_users):
    # the new hub resumes the start; the job ends before its server ran: the failure
    # forgets the job id, and the clean-up must still know a file was written
    spawner = make_spawner(host_users)
    cluster = spawner.driver.cluster
    cluster.existing_job("42", user=NAME)
    spawner.load_state({"job_id": "42", "job_host": "", "spawn_id": "abc123"})
    assert await asyncio.wait_for(spawner.poll(), timeout=30) is None  # following it again
    cluster.end("42", "FAILED", "NonZeroExitCode")
    await asyncio.wait_for(cluster.wait_for(lambda: cluster.settled() and spawner.job_id == ""), 30)
    assert as_user(spawner) == [
        ("remove_file", "/scratch/no-such-user-hpcspawner/tokens/default/api-token-abc123")
    ]
