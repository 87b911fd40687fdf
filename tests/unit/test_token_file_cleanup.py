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
from fakeslurm import FakeSlurm
from jupyterhub.objects import Hub
from traitlets.config import Config

from hpcspawner.errors import SlurmError, SpawnFailure
from hpcspawner.spawner import SlurmSpawner


class FileDriver(FakeSlurm):
    """Records what would run as the user; sbatch refuses every job."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.as_user: list[tuple[str, str]] = []

    async def install_files(self, username, directory, files):
        self.as_user.append(("install_files", directory))

    async def remove_file(self, username, path):
        self.as_user.append(("remove_file", path))

    async def submit(self, username, script, env):
        self.as_user.append(("submit", ""))
        raise SlurmError(["sbatch"], 1, "sbatch: error: Batch job submission failed: Invalid qos")


def make_spawner() -> SlurmSpawner:
    config = Config()
    config.SlurmSpawner.driver_class = FileDriver
    config.SlurmSpawner.partitions = {"debug": {"max_runtime": "1:00:00"}}
    config.SlurmSpawner.default_options = {"partition": "debug", "memory": "1G", "runtime": "30"}
    config.SlurmSpawner.token_dir = "/scratch/{username}/tokens/{server}"
    # a name the hub host does not know: checked by name only, and it is no service account
    spawner = SlurmSpawner(config=config, user=SimpleNamespace(name="no-such-user-hpcspawner"))
    spawner.user.url = "/user/no-such-user-hpcspawner/"
    spawner.hub = Hub()
    spawner.api_token = "a1b2c3d4" * 4
    spawner.oauth_client_id = "jupyterhub-user-x"
    spawner._home = lambda: "/home/x"  # the unknown user has no passwd entry
    return spawner


async def _start_fails(spawner) -> SpawnFailure:
    with pytest.raises(SpawnFailure) as info:
        await asyncio.wait_for(spawner.start(), timeout=30)
    return info.value


async def test_a_start_refused_before_the_file_runs_nothing_as_the_user():
    spawner = make_spawner()
    spawner.user_options = {"partition": "nosuch"}
    failure = await _start_fails(spawner)
    assert failure.reason == "invalid-options"
    assert spawner.driver.as_user == []


async def test_a_start_refused_by_slurm_removes_the_file_it_wrote():
    spawner = make_spawner()
    failure = await _start_fails(spawner)
    assert failure.reason == "job-rejected"
    path = f"/scratch/no-such-user-hpcspawner/tokens/default/api-token-{spawner.spawn_id}"
    assert spawner.driver.as_user == [
        ("install_files", path.rpartition("/")[0]),
        ("submit", ""),
        ("remove_file", path),
    ]


async def test_after_a_hub_restart_a_start_whose_job_ended_early_removes_the_file():
    # the new hub resumes the start; the job ends before its server ran: the failure
    # forgets the job id, and the clean-up must still know a file was written
    spawner = make_spawner()
    spawner.load_state({"job_id": "42", "job_host": "", "spawn_id": "abc123"})
    spawner.job_id = ""  # what the "job ended before the server started" failure does
    await asyncio.wait_for(spawner._cleanup_failed_start(), timeout=30)
    assert spawner.driver.as_user == [
        ("remove_file", "/scratch/no-such-user-hpcspawner/tokens/default/api-token-abc123")
    ]
