"""Failure handling that the drills show end to end, here as behaviour tables:
lost sbatch answers, the comment lookup, the token digest, the end reasons."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from types import SimpleNamespace

import pytest
from fakeslurm import FakeCluster, FakeSlurm
from traitlets.config import Config

from hpcspawner.slurm.errors import SlurmError, SlurmTimeout, submission_uncertain
from hpcspawner.slurm.jobstate import JobInfo, parse_comment_matches
from hpcspawner.spawner import SlurmSpawner, page, recovery
from hpcspawner.spawner.callback import token_matches
from hpcspawner.spawner.errors import SpawnFailure

CONNECT = "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)"
TIMED_OUT = "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation"


@pytest.mark.parametrize(
    ("error", "uncertain"),
    [
        pytest.param(SlurmError(["sbatch"], 1, CONNECT), False, id="connect-failure"),
        pytest.param(SlurmError(["sbatch"], 1, TIMED_OUT), True, id="socket-timeout"),
        pytest.param(SlurmTimeout(["sbatch"], 30), True, id="killed-after-timeout"),
        pytest.param(
            SlurmError(["sbatch"], 1, "error: Zero Bytes were transmitted or received"),
            True,
            id="zero-bytes",
        ),
        pytest.param(
            SlurmError(["sbatch"], 1, "error: Invalid partition name specified"),
            False,
            id="rejected",
        ),
    ],
)
def test_submission_uncertain(error, uncertain):
    assert submission_uncertain(error) is uncertain


def test_parse_comment_matches_exact_only():
    out = (
        "12|hpcspawner:hub:alice:-:abc\n"
        "13|hpcspawner:hub:alice:-:abcd\n"
        "14|hpcspawner:hub:alice:-:abc|x\n"
        "\n"
        "15|hpcspawner:hub:alice:-:abc\n"
    )
    assert parse_comment_matches(out, "hpcspawner:hub:alice:-:abc") == ["12", "15"]
    assert parse_comment_matches("", "x") == []


def test_token_matches_live_token_or_stored_digest():
    token = "secret-token-value"
    digest = hashlib.sha256(token.encode()).hexdigest()
    table = [
        (SimpleNamespace(api_token=token, token_sha256=""), token, True),
        (SimpleNamespace(api_token=token, token_sha256=""), "other", False),
        (SimpleNamespace(api_token="", token_sha256=digest), token, True),
        (SimpleNamespace(api_token="", token_sha256=digest), "other", False),
        (SimpleNamespace(api_token="", token_sha256=""), token, False),
        (SimpleNamespace(api_token="", token_sha256=""), "", False),
        (SimpleNamespace(api_token=None), token, False),
    ]
    for spawner, offered, expected in table:
        assert token_matches(spawner, offered) is expected, (spawner, offered)


#: Every config made here, kept alive: spawners share a driver per ``id(config)``.
_configs: list[Config] = []


def make_spawner(**settings):
    config = Config()
    config.SlurmSpawner.driver_class = FakeSlurm
    config.FakeSlurm.cluster = FakeCluster()
    _configs.append(config)
    config.SlurmSpawner.startup_poll_interval = 0.01
    for name, value in settings.items():
        setattr(config.SlurmSpawner, name, value)
    spawner = SlurmSpawner(config=config, user=SimpleNamespace(name="alice"))
    spawner.spawn_id = "abc"
    return spawner


def run(coro):
    return asyncio.run(coro)


def script_of(spawner) -> str:
    """A batch script carrying this start's comment (what the lookup matches)."""
    return f"#!/bin/bash\n#SBATCH --comment={spawner._job_comment()}\n"


def test_connect_failure_fails_at_once_without_lookup():
    spawner = make_spawner()
    cluster = spawner.driver.cluster
    cluster.fail("submit", SlurmError(["sbatch"], 1, CONNECT))
    with pytest.raises(SpawnFailure) as info:
        run(spawner._submit(script_of(spawner), {}))
    assert "scheduler is not answering" in str(info.value.jupyterhub_message)
    assert info.value.status_code == 503
    assert cluster.count("find_jobs") == 0
    assert cluster.jobs == {}


def test_lost_answer_finds_the_job_and_never_submits_again():
    spawner = make_spawner()
    cluster = spawner.driver.cluster
    timeout = SlurmError(["squeue"], 1, "Socket timed out on send/recv operation")
    cluster.lose_next_submit(arrives=True)
    cluster.fail("find_jobs", timeout, times=2)
    job_id = run(spawner._submit(script_of(spawner), {}))
    assert list(cluster.jobs) == [job_id]
    assert cluster.count("submit") == 1
    assert cluster.count("find_jobs") == 3


def test_lost_answer_and_no_job_twice_means_not_submitted(monkeypatch):
    spawner = make_spawner()
    cluster = spawner.driver.cluster
    cluster.lose_next_submit(arrives=False)
    started = []
    monkeypatch.setattr(recovery.Reapers, "start", lambda _self, *args: started.append(args[2]))
    monkeypatch.setattr(recovery.asyncio, "sleep", _no_sleep)
    with pytest.raises(SpawnFailure) as info:
        run(spawner._submit(script_of(spawner), {}))
    assert "not answering" in info.value.jupyterhub_message
    assert cluster.count("submit") == 1
    assert cluster.count("find_jobs") == 2
    # a late job (from the controller's backlog) is still looked for and cancelled
    assert started == [spawner._job_comment()]


def test_a_first_empty_answer_after_the_hang_is_not_trusted():
    spawner = make_spawner()
    cluster = spawner.driver.cluster
    cluster.lose_next_submit(arrives=False)

    async def backlog():
        # the backlog's lookup is served before the backlog's sbatch
        await cluster.wait_for(
            lambda: any(c.kind == "find_jobs" and c.outcome == "ok" for c in cluster.history)
        )
        return cluster.deliver_lost()

    async def scenario():
        return await asyncio.wait_for(
            asyncio.gather(spawner._submit(script_of(spawner), {}), backlog()), 10
        )

    job_id, (late,) = run(scenario())
    assert job_id == late.job_id
    assert cluster.count("find_jobs") == 2


async def _no_sleep(_seconds):
    return None


def test_duplicates_found_are_cancelled_keeping_the_first():
    spawner = make_spawner()
    cluster = spawner.driver.cluster
    cluster.lose_next_submit(arrives=True)
    cluster.submit_script("alice", script_of(spawner), {})  # cannot happen with one sbatch
    assert run(spawner._submit(script_of(spawner), {})) == "100"
    assert [(c.kind, c.args) for c in cluster.history if c.kind == "cancel"] == [
        ("cancel", ("alice", "101"))
    ]
    assert cluster.job("101").state == "CANCELLED"
    assert cluster.job("100").state == "PENDING"


def test_silent_controller_gives_up_and_leaves_a_reaper(monkeypatch):
    spawner = make_spawner(submit_recovery_timeout=0.05, poll_interval=1)
    cluster = spawner.driver.cluster
    silent = SlurmError(["squeue"], 1, "Socket timed out on send/recv operation")
    cluster.lose_next_submit(arrives=False)
    cluster.fail("find_jobs", silent, times=None)
    started = []
    monkeypatch.setattr(recovery.Reapers, "start", lambda _self, *args: started.append(args[2]))
    with pytest.raises(SpawnFailure) as info:
        run(spawner._submit(script_of(spawner), {}))
    assert "not answering" in info.value.jupyterhub_message
    assert started == [spawner._job_comment()]
    assert spawner._job_comment().endswith(":alice:-:abc")


def test_a_lookup_slurm_refuses_ends_the_search_at_once_and_leaves_a_reaper(monkeypatch):
    """slurmrestd answers a forged token's submission with "Zero Bytes were transmitted"
    (an answer that may be lost) and every lookup with a refusal: no 120 s of asking."""
    spawner = make_spawner(submit_recovery_timeout=120, poll_interval=1)
    cluster = spawner.driver.cluster
    refused = SlurmError(["GET", "/slurm/v0.0.38/jobs"], 500, "slurmrestd rejected the hub's token")
    cluster.lose_next_submit(arrives=False)
    cluster.fail("find_jobs", refused, times=None)
    started = []
    monkeypatch.setattr(recovery.Reapers, "start", lambda _self, *args: started.append(args[2]))
    with pytest.raises(SpawnFailure) as info:
        run(asyncio.wait_for(spawner._submit(script_of(spawner), {}), 10))
    assert "not answering" in info.value.jupyterhub_message
    assert "rejected the hub's token" in info.value.detail
    assert cluster.count("find_jobs") == 1
    assert started == [spawner._job_comment()]


def test_reaper_cancels_the_job_when_it_appears():
    cluster = FakeCluster()
    driver = FakeSlurm(cluster=cluster)
    silent = SlurmError(["squeue"], 1, "Socket timed out on send/recv operation")
    cluster.fail("find_jobs", silent)

    reapers = recovery.Reapers()

    async def scenario():
        reapers.start(driver, "alice", "c", 0.01, logging.getLogger("test"))
        task = reapers.task("c")
        # the first look fails, the second finds nothing, then the job arrives
        await asyncio.wait_for(cluster.wait_for(lambda: cluster.count("find_jobs") >= 2), 5)
        job = cluster.submit_script("alice", "#!/bin/bash\n#SBATCH --comment=c\n", {})
        await asyncio.wait_for(task, 5)
        return job

    job = run(scenario())
    assert job.state == "CANCELLED"
    assert cluster.count("cancel") == 1
    assert "c" not in reapers


@pytest.mark.parametrize(
    ("state", "reason", "text"),
    [
        pytest.param("CANCELLED", "None", "the job was cancelled", id="scancel"),
        pytest.param(
            "TIMEOUT", "TimeLimit", "the job reached its time limit (TimeLimit)", id="walltime"
        ),
        pytest.param(
            "NODE_FAIL", "NodeDown", "the node running the job failed (NodeDown)", id="node"
        ),
        pytest.param("FAILED", "NonZeroExitCode", "the job failed (non-zero exit code)", id="died"),
    ],
)
def test_end_reasons(state, reason, text):
    assert JobInfo("1", state, reason=reason).describe_end() == text


def test_last_end_survives_clear_state_and_is_shown_once():
    spawner = make_spawner()
    spawner._last_end = {"job_id": "5", "reason": "the job was cancelled"}
    spawner.job_id = "5"
    spawner.clear_state()
    state = spawner.get_state()
    assert state == {"last_end": {"job_id": "5", "reason": "the job was cancelled"}}
    fresh = make_spawner()
    fresh.load_state(state)
    assert fresh.last_end == {"job_id": "5", "reason": "the job was cancelled"}
    notice = page.last_end_notice({"job_id": "5", "reason": "<b>x</b>"})
    assert "&lt;b&gt;" in notice and "<b>" not in notice


async def test_state_marks_an_interrupted_start():
    spawner = make_spawner()
    spawner.load_state({"job_id": "7", "job_host": "", "token_sha256": "ab"})
    assert spawner._interrupted_start and spawner.token_sha256 == "ab"
    spawner.load_state({"job_id": "7", "job_host": "n1"})
    assert not spawner._interrupted_start


async def test_a_hub_stopped_during_sbatch_leaves_a_reaper_behind():
    spawner = make_spawner()
    state = {"hpcspawner_version": 1, "spawn_id": "feed"}
    comment = "hpcspawner:jupyterhub:alice:-:feed"
    spawner.load_state(state)
    try:
        assert comment in spawner.shared.reapers
        assert spawner.spawn_id == "" and spawner.job_id == ""
    finally:
        await spawner.shared.reapers.close()


def test_state_while_submitting_holds_the_spawn_id_only():
    spawner = make_spawner()
    assert spawner.get_state() == {"hpcspawner_version": 1, "spawn_id": "abc"}
