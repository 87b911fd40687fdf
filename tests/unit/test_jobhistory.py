"""Why a job ended after squeue forgot it (hpcspawner/spawner/jobhistory.py): the hub-wide
lookups (one per vanished job, batched, failures remembered) and the lifecycle on the
in-memory Slurm: a server whose job vanished from the queue while accounting recorded
its end tells the user that end at their next visit; without accounting it says what it
said before."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import pytest
import test_lifecycle as lifecycle
from fakeslurm import FakeCluster, FakeSlurm, controller_down, timed_out
from test_history import one
from test_metrics_lifecycle import Scrape

from hpcspawner.slurm.history import JobEnd
from hpcspawner.spawner import messages
from hpcspawner.spawner.errors import SpawnFailure
from hpcspawner.spawner.jobhistory import JobHistory, canceller_name
from hpcspawner.spawner.poller import JobStatus

# the lifecycle tests' fixtures: one in-memory Slurm, hubs and spawners on it
bounded = lifecycle.bounded
cluster = lifecycle.cluster
db = lifecycle.db
new_hub = lifecycle.new_hub
new_spawner = lifecycle.new_spawner


def recorded_end(name: str, job_id: str, user: str = "alice") -> JobEnd:
    """A recorded (or synthetic) sacct line, as if it were ``job_id`` of ``user``."""
    return dataclasses.replace(one(name), job_id=job_id, user=user)


# ---------------------------------------------------------------- JobHistory


def history_on(fake: FakeCluster, **kwargs) -> JobHistory:
    return JobHistory(FakeSlurm(cluster=fake), window=0.01, **kwargs)


async def test_jobs_that_vanish_together_share_one_lookup_and_each_is_asked_once():
    fake = FakeCluster()
    fake.accounting = {
        "7": JobEnd("7", "alice", "TIMEOUT"),
        "8": JobEnd("8", "bob", "COMPLETED"),
    }
    history = history_on(fake)
    ends = await bounded(
        asyncio.gather(
            history.end_of("7", "alice"), history.end_of("8", "bob"), history.end_of("9", "bob")
        )
    )
    assert [end.state if end else None for end in ends] == ["TIMEOUT", "COMPLETED", None]
    assert [call.args for call in fake.calls("job_history")] == [(("7", "8", "9"),)]
    # asked again (the hub's next poll, the notification): remembered, not asked
    assert (await bounded(history.end_of("7", "alice"))).state == "TIMEOUT"
    assert await bounded(history.end_of("9", "bob")) is None
    assert fake.count("job_history") == 1


async def test_another_users_job_and_a_job_still_running_are_not_used(caplog):
    fake = FakeCluster()
    fake.accounting = {
        "7": recorded_end("sacct_completed.txt", "7", user="alice"),
        "8": JobEnd("8", "bob", "RUNNING"),
    }
    history = history_on(fake)
    with caplog.at_level(logging.WARNING):
        assert await bounded(history.end_of("7", "bob")) is None
    assert "is alice's, not bob's" in caplog.text
    assert await bounded(history.end_of("8", "bob")) is None


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(controller_down("job_history"), id="slurmdbd-down"),
        pytest.param(timed_out("job_history"), id="timed-out"),
    ],
)
async def test_a_failed_lookup_is_none_logged_once_and_not_repeated(error, caplog):
    fake = FakeCluster()
    fake.accounting = {}
    fake.fail("job_history", error, times=None)
    history = history_on(fake)
    with caplog.at_level(logging.DEBUG):
        assert await bounded(history.end_of("7", "alice")) is None
        assert await bounded(history.end_of("7", "alice")) is None
        assert await bounded(history.end_of("8", "alice")) is None
    assert fake.count("job_history") == 2  # one per job, not per poll
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Could not ask Slurm's accounting" in warnings[0].getMessage()
    assert not [r for r in caplog.records if r.exc_info]  # no traceback


async def test_a_lookup_that_hangs_gives_up_after_its_timeout():
    fake = FakeCluster()
    fake.accounting = {}
    release = fake.hold("job_history")
    history = history_on(fake, timeout=0.05)
    assert await bounded(history.end_of("7", "alice")) is None
    release.set()


async def test_no_accounting_is_remembered_for_the_hub():
    fake = FakeCluster()  # accounting None: sacct says there is none
    now = [0.0]
    history = history_on(fake, no_accounting_ttl=300, clock=lambda: now[0])
    assert await bounded(history.end_of("7", "alice")) is None
    assert await bounded(history.end_of("8", "alice")) is None
    assert fake.count("job_history") == 1
    now[0] = 301
    assert await bounded(history.end_of("9", "alice")) is None
    assert fake.count("job_history") == 2


@pytest.mark.parametrize(
    ("who", "expected"),
    [("1001", "alice"), ("0", "root"), ("alice", "alice"), ("", None), ("4294967294", None)],
)
def test_canceller_name(who, expected):
    # alice is uid 1001 on the hub's host (tests/unit/conftest.py's host_users)
    assert canceller_name(who, "alice") == expected


async def test_a_status_still_listed_needs_no_lookup():
    fake = FakeCluster()
    fake.accounting = {}
    fake.existing_job("7")
    fake.end("7", "TIMEOUT", "TimeLimit")
    from hpcspawner.slurm import Liveness
    from hpcspawner.spawner.jobhistory import why_ended

    status = JobStatus("7", Liveness.GONE, fake.jobs["7"].info())
    assert await bounded(why_ended(history_on(fake), status, "alice")) == (
        "the job reached its time limit (TimeLimit)",
        "TIMEOUT",
    )
    assert fake.count("job_history") == 0
    gone = JobStatus("7", Liveness.GONE)  # not listed, but the hub is ending it: not asked
    assert await bounded(why_ended(history_on(fake), gone, "alice", ask=False)) == (
        messages.JOB_UNKNOWN,
        "",
    )
    assert fake.count("job_history") == 0


# ---------------------------------------------------------------- the lifecycle


@pytest.mark.parametrize(
    ("name", "reason", "stop_reason"),
    [
        pytest.param(
            "sacct_timeout.txt",
            "the job reached its time limit (walltime 00:01:00)",
            "walltime",
            id="timeout",
        ),
        pytest.param(
            "sacct_out_of_memory_synthetic.txt",
            "the job ran out of memory (ask for more memory next time)",
            "out-of-memory",
            id="oom",
        ),
        pytest.param(
            "sacct_node_fail_synthetic.txt",
            "the node running the job failed",
            "node-failure",
            id="node-fail",
        ),
        pytest.param(
            "sacct_cancelled_by_root.txt",
            "the job was cancelled by an administrator (root)",
            "cancelled-outside",
            id="cancelled-by-root",
        ),
        pytest.param(
            "sacct_cancelled_by_user.txt", "you cancelled the job", "cancelled-outside", id="by-you"
        ),
        pytest.param(
            "sacct_failed.txt", "the job failed with exit code 3", "server-failed", id="failed"
        ),
    ],
)
async def test_a_job_gone_from_the_queue_is_explained_by_accounting(
    cluster, new_spawner, name, reason, stop_reason
):
    cluster.accounting = {}
    spawner = new_spawner()
    job, _ = await lifecycle.start_server(spawner, cluster)
    assert await bounded(spawner.poll()) is None
    cluster.accounting[job.job_id] = recorded_end(name, job.job_id)
    cluster.end(job.job_id, "COMPLETED")  # squeue's last word is never seen:
    cluster.purge(job.job_id)  # the job left the queue between two polls
    before = Scrape()
    await bounded(lifecycle._until_poll_is(spawner, 1))
    assert (Scrape() - before).get(f"hpcspawner_server_stops_total{{reason={stop_reason}}}") == 1
    assert spawner.get_state()["last_end"] == {"job_id": job.job_id, "reason": reason}
    assert cluster.count("job_history") == 1
    # the next visit: the spawn page and the next start's first progress line say it
    assert f"stopped: {reason}." in await bounded(spawner.render_options_form())
    assert await lifecycle.first_line_of_next_start(spawner, cluster) == (
        f"Your previous server (job {job.job_id}) stopped: {reason}."
    )
    assert cluster.count("job_history") == 1


@pytest.mark.parametrize(
    "accounting",
    [
        pytest.param(None, id="no-accounting"),
        pytest.param(controller_down("job_history"), id="slurmdbd-down"),
        pytest.param({}, id="accounting-does-not-know-it"),
    ],
)
async def test_without_an_answer_from_accounting_the_user_is_told_as_before(
    cluster, new_spawner, accounting, caplog
):
    if isinstance(accounting, BaseException):
        cluster.accounting = {}
        cluster.fail("job_history", accounting, times=None)
    else:
        cluster.accounting = accounting
    spawner = new_spawner()
    job, _ = await lifecycle.start_server(spawner, cluster)
    assert await bounded(spawner.poll()) is None
    cluster.purge(job.job_id)
    await bounded(lifecycle._until_poll_is(spawner, 1))
    assert spawner.get_state()["last_end"] == {
        "job_id": job.job_id,
        "reason": messages.JOB_UNKNOWN,
    }
    assert not [r for r in caplog.records if r.exc_info]


async def test_after_a_hub_restart_the_vanished_job_is_explained(
    cluster, new_spawner, new_hub, caplog
):
    """The hub was down while the job ran into its limit and left the queue."""
    cluster.accounting = {}
    spawner = new_spawner(hub=new_hub())
    job, _ = await lifecycle.start_server(spawner, cluster)
    state = spawner.get_state()
    cluster.accounting[job.job_id] = recorded_end("sacct_timeout.txt", job.job_id)
    cluster.purge(job.job_id)
    restored = new_spawner(hub=new_hub(), token="")
    restored.load_state(state)
    assert await bounded(restored.poll()) == 1
    reason = "the job reached its time limit (walltime 00:01:00)"
    assert restored.get_state()["last_end"]["reason"] == reason
    # JupyterHub polls once more while it stops the server it found stopped: the reason
    # stands, and accounting is not asked again (CI's real cluster once logged both)
    restored._stop_pending = True  # what User.stop sets before it polls
    with caplog.at_level(logging.DEBUG):
        assert await bounded(restored.poll()) == 1
    assert restored.get_state()["last_end"]["reason"] == reason
    assert messages.JOB_UNKNOWN not in caplog.text
    assert cluster.count("job_history") == 1


async def test_a_job_that_vanished_before_its_server_started_says_why(cluster, new_spawner):
    cluster.accounting = {}
    spawner = new_spawner()
    task = asyncio.ensure_future(spawner.start())
    job = await bounded(cluster.next_job())
    cluster.accounting[job.job_id] = recorded_end("sacct_cancelled_by_root.txt", job.job_id)
    cluster.purge(job.job_id)
    with pytest.raises(SpawnFailure) as info:
        await bounded(task)
    assert "the job was cancelled by an administrator (root)" in str(info.value.jupyterhub_message)


async def test_a_server_the_hub_stops_needs_no_lookup(cluster, new_spawner):
    cluster.accounting = {}
    spawner = new_spawner()
    await lifecycle.start_server(spawner, cluster)
    await bounded(spawner.stop())
    assert cluster.count("job_history") == 0
