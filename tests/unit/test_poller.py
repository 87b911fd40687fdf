"""hpcspawner.spawner.poller.JobPoller: the cache and query coalescing, with an in-memory driver.

This tests the poller's own logic only (one query for many callers, min_gap,
unknown on error); tests/integration runs it against the real squeue.
"""

from __future__ import annotations

import asyncio
import time
from itertools import accumulate, islice

import pytest
from fakeslurm import FakeCluster, FakeSlurm

from hpcspawner.slurm import Liveness, SlurmError
from hpcspawner.spawner.jobwatch import stop_check_pauses
from hpcspawner.spawner.poller import JobPoller, JobStatus

#: Upper bound for every await in these tests (seconds).
TIMEOUT = 2.0
MIN_GAP = 0.05

CONTROLLER_DOWN = SlurmError(
    ["squeue", "--noheader", "--states=all", "--jobs=1"],
    1,
    "slurm_load_jobs error: Unable to contact slurm controller (connect failure)",
)


@pytest.fixture
async def make_poller():
    """Factory: ``poller, cluster = make_poller(...)``: a poller whose driver talks to an
    in-memory Slurm (tests/unit/fakeslurm.py); every poller is closed afterwards."""
    pollers = []

    def factory(*, interval: float = 60.0, min_gap: float = MIN_GAP):
        cluster = FakeCluster()
        poller = JobPoller(FakeSlurm(cluster=cluster), interval=interval, min_gap=min_gap)
        pollers.append(poller)
        return poller, cluster

    yield factory
    for poller in pollers:
        await asyncio.wait_for(poller.close(), TIMEOUT)


async def bounded(awaitable, timeout: float = TIMEOUT):
    return await asyncio.wait_for(awaitable, timeout)


def queries(cluster) -> list[list[str]]:
    """The job ids of each squeue, in order."""
    return [list(call.args[0]) for call in cluster.calls("query")]


def cancelled(cluster) -> int:
    """How many squeues were cancelled while they ran."""
    return sum(1 for call in cluster.calls("query") if call.outcome == "cancelled")


def running(cluster, *job_ids: str, node: str = "vm") -> None:
    for job_id in job_ids:
        cluster.run(cluster.existing_job(job_id).job_id, node)


# ---------------------------------------------------------------- coalescing


async def test_status_of_a_running_job(make_poller):
    poller, cluster = make_poller()
    running(cluster, "1", node="c1")
    before = time.monotonic()
    status = await bounded(poller.status("1", max_age=0))
    assert status.liveness is Liveness.ALIVE
    assert status.info == cluster.job("1").info()  # squeue's record, as the driver gave it
    assert (status.info.job_id, status.info.state, status.info.batch_host) == ("1", "RUNNING", "c1")
    assert status.error is None
    assert before <= status.checked_at <= time.monotonic()
    assert poller.tracked == ["1"]
    assert poller.cached("1") == status


async def test_concurrent_status_calls_make_one_query(make_poller):
    poller, cluster = make_poller()
    ids = [str(n) for n in range(50)]
    for job_id in ids:
        running(cluster, job_id)
        poller.track(job_id)
    await bounded(poller.refresh())
    made = len(queries(cluster))

    statuses = await bounded(asyncio.gather(*(poller.status(i, max_age=0) for i in ids)))

    assert len(queries(cluster)) == made + 1
    assert sorted(queries(cluster)[-1]) == sorted(ids)
    assert poller.queries == len(queries(cluster))
    assert [s.job_id for s in statuses] == ids
    assert all(s.liveness is Liveness.ALIVE for s in statuses)


async def test_concurrent_first_status_calls_make_one_query(make_poller):
    poller, cluster = make_poller()
    ids = [str(n) for n in range(10)]
    for job_id in ids:
        cluster.existing_job(job_id)  # PENDING

    statuses = await bounded(asyncio.gather(*(poller.status(i, max_age=0) for i in ids)))

    assert all(s.liveness is Liveness.ALIVE for s in statuses)
    assert queries(cluster) == [ids]


async def test_callers_during_min_gap_share_the_next_query(make_poller):
    poller, cluster = make_poller()
    running(cluster, "1", "2", "3")
    for job_id in ("1", "2", "3"):
        poller.track(job_id)
    await bounded(poller.refresh())
    made = len(queries(cluster))

    # right after a query: the next one waits min_gap, and every caller meanwhile joins it
    # (the first caller starts that wait; the others arrive while it lasts)
    callers = [poller.status(job_id, max_age=0) for job_id in ("1", "2", "3", "1")]
    await bounded(asyncio.gather(*callers))

    assert len(queries(cluster)) == made + 1


async def test_job_tracked_during_a_query_gets_a_second_query(make_poller):
    poller, cluster = make_poller()
    running(cluster, "1")
    cluster.pend(cluster.existing_job("2").job_id, "Resources")
    release = cluster.hold("query")

    first = asyncio.ensure_future(poller.status("1", max_age=0))
    await bounded(cluster.wait_for(lambda: cluster.held("query")))
    assert queries(cluster) == [["1"]]

    second = asyncio.ensure_future(poller.status("2", max_age=0))
    release_second = cluster.hold("query")  # the next squeue waits too
    release.set()
    await bounded(cluster.wait_for(lambda: cluster.count("query") == 2 and cluster.held("query")))
    assert not second.done()
    assert queries(cluster) == [["1"], ["1", "2"]]
    release_second.set()
    status_1, status_2 = await bounded(asyncio.gather(first, second))

    assert queries(cluster) == [["1"], ["1", "2"]]
    assert status_1.liveness is Liveness.ALIVE
    assert status_2.liveness is Liveness.ALIVE
    assert status_2.info.reason == "Resources"


async def test_min_gap_between_queries(make_poller):
    poller, cluster = make_poller()
    running(cluster, "1")
    start = time.monotonic()
    for _ in range(5):
        await bounded(poller.status("1", max_age=0))
    assert len(queries(cluster)) == 5
    spans = [(call.started, call.ended) for call in cluster.calls("query")]
    for (_, end), (next_start, _) in zip(spans, spans[1:], strict=False):
        # asyncio may wake up a clock tick early; 2 ms is far below MIN_GAP
        assert next_start - end >= MIN_GAP - 0.002
    assert time.monotonic() - start >= 4 * MIN_GAP - 0.01


async def test_fresh_cache_answers_without_a_query(make_poller):
    poller, cluster = make_poller()
    running(cluster, "1")
    first = await bounded(poller.status("1", max_age=0))
    cluster.end("1", "COMPLETED")  # the cache does not know yet

    cached = await bounded(poller.status("1", max_age=60))

    assert cached == first
    assert len(queries(cluster)) == 1
    refreshed = await bounded(poller.status("1", max_age=0))
    assert refreshed.liveness is Liveness.GONE
    assert len(queries(cluster)) == 2


async def test_cached_of_untracked_job_is_unknown(make_poller):
    poller, _ = make_poller()
    assert poller.cached("404") == JobStatus("404", Liveness.UNKNOWN)


# ---------------------------------------------------------------- answers and errors


async def test_missing_job_in_successful_answer_is_gone(make_poller):
    poller, cluster = make_poller()
    running(cluster, "1")
    poller.track("1")
    poller.track("2")
    await bounded(poller.refresh())
    assert queries(cluster)[-1] == ["1", "2"]
    assert poller.cached("1").liveness is Liveness.ALIVE
    status = poller.cached("2")
    assert status.liveness is Liveness.GONE
    assert status.info is None
    assert status.checked_at is not None
    assert status.error is None


async def test_slurm_error_leaves_jobs_unknown_with_last_info(make_poller):
    poller, cluster = make_poller()
    running(cluster, "1", node="c1")
    known = await bounded(poller.status("1", max_age=0))

    cluster.fail("query", CONTROLLER_DOWN, times=None)
    status = await bounded(poller.status("1", max_age=0))

    assert status.liveness is Liveness.UNKNOWN
    assert status.info == known.info  # the last record is kept...
    assert status.checked_at == known.checked_at  # ...with the time it was confirmed
    assert "Unable to contact slurm controller" in status.error
    assert len(queries(cluster)) == 2

    cluster.heal("query")
    recovered = await bounded(poller.status("1", max_age=0))
    assert recovered.liveness is Liveness.ALIVE
    assert recovered.error is None
    assert recovered.checked_at > known.checked_at


async def test_slurm_error_before_any_answer(make_poller):
    poller, cluster = make_poller()
    cluster.fail("query", CONTROLLER_DOWN)
    status = await bounded(poller.status("1", max_age=0))
    assert status == JobStatus("1", Liveness.UNKNOWN, None, None, str(CONTROLLER_DOWN))


async def test_unexpected_driver_error_is_unknown_too(make_poller, caplog):
    poller, cluster = make_poller()
    running(cluster, "1")
    await bounded(poller.status("1", max_age=0))
    cluster.fail("query", RuntimeError("driver bug"), times=None)

    status = await bounded(poller.status("1", max_age=0))

    assert status.liveness is Liveness.UNKNOWN
    assert status.error == "driver bug"
    assert "failed unexpectedly" in caplog.text


async def test_on_change_fires_on_transitions(make_poller):
    poller, cluster = make_poller()
    changes: list[tuple[Liveness, str | None]] = []
    poller.track("1", on_change=lambda s: changes.append((s.liveness, s.info and s.info.state)))

    async def step(change=None, error=None):
        if change is not None:
            change()
        if error is not None:
            cluster.fail("query", error)  # this one squeue
        await bounded(poller.status("1", max_age=0))

    await step(lambda: cluster.existing_job("1"))  # PENDING
    await step()  # no change
    await step(lambda: cluster.run("1"))  # same liveness, new state
    await step(error=CONTROLLER_DOWN)  # unknown, last record kept
    await step(error=CONTROLLER_DOWN)  # still unknown: no change
    await step()
    await step(lambda: cluster.end("1", "COMPLETED"))
    await step(lambda: cluster.purge("1"))  # purged: still gone

    assert changes == [
        (Liveness.ALIVE, "PENDING"),
        (Liveness.ALIVE, "RUNNING"),
        (Liveness.UNKNOWN, "RUNNING"),
        (Liveness.ALIVE, "RUNNING"),
        (Liveness.GONE, "COMPLETED"),
    ]


async def test_failing_listener_does_not_stop_the_poller(make_poller, caplog):
    poller, cluster = make_poller()
    running(cluster, "1", "2")
    seen = []

    def broken(status):
        raise RuntimeError("listener bug")

    poller.track("1", on_change=broken)
    poller.track("2", on_change=seen.append)
    await bounded(poller.refresh())

    assert [s.job_id for s in seen] == ["2"]
    assert poller.cached("1").liveness is Liveness.ALIVE
    assert "Job 1 status listener failed" in caplog.text


async def test_untracked_during_query_is_not_updated(make_poller):
    poller, cluster = make_poller()
    running(cluster, "1")
    release = cluster.hold("query")
    changes = []
    poller.track("1", on_change=changes.append)
    refresh = asyncio.ensure_future(poller.refresh())
    await bounded(cluster.wait_for(lambda: cluster.held("query")))

    poller.untrack("1")
    release.set()
    await bounded(refresh)

    assert changes == []
    assert poller.tracked == []
    assert poller.cached("1") == JobStatus("1", Liveness.UNKNOWN)


# ---------------------------------------------------------------- hanging driver, background loop


async def test_timed_out_caller_does_not_cancel_the_shared_query(make_poller):
    poller, cluster = make_poller()
    running(cluster, "1")
    release = cluster.hold("query")

    # the caller's own timeout is the behaviour under test
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(poller.status("1", max_age=0), 0.05)
    release.set()
    await bounded(cluster.answered("query", 1))

    assert cancelled(cluster) == 0
    status = await bounded(poller.status("1", max_age=60))
    assert status.liveness is Liveness.ALIVE
    assert len(queries(cluster)) == 1


async def test_hanging_query_is_cancelled_by_close(make_poller):
    poller, cluster = make_poller()
    cluster.hold("query")  # never released: a hung controller
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(poller.status("1", max_age=0), 0.05)
    assert poller.cached("1").liveness is Liveness.UNKNOWN

    await bounded(poller.close(), 0.5)

    assert cancelled(cluster) == 1
    assert len(queries(cluster)) == 1


async def test_background_loop_refreshes_tracked_jobs(make_poller):
    poller, cluster = make_poller(interval=MIN_GAP, min_gap=0.01)
    running(cluster, "1")
    changes = []
    gone = asyncio.Event()

    def on_change(status):
        changes.append(status)
        if status.liveness is Liveness.GONE:
            gone.set()

    poller.track("1", on_change=on_change)
    await bounded(cluster.wait_for(lambda: cluster.count("query") >= 3))
    cluster.end("1", "TIMEOUT")
    await bounded(gone.wait())
    assert [s.liveness for s in changes] == [Liveness.ALIVE, Liveness.GONE]

    poller.untrack("1")
    # a squeue on its way may still finish; after it the loop ends, as nothing is tracked
    await bounded(cluster.answered("query", cluster.count("query")))
    made = len(queries(cluster))
    # that no squeue follows shows only as time passing: three intervals (not a sync)
    await asyncio.sleep(3 * MIN_GAP)
    assert len(queries(cluster)) == made


def test_stop_check_pauses_look_often_first_then_settle_at_one_second():
    pauses = list(islice(stop_check_pauses(), 40))
    times = list(accumulate(pauses))
    # slurmd's own looks at a cancelled job's processes: 0.02, 0.07, 0.17, 0.67, 1.67 s...
    # in the first seconds each is followed by one of ours within 0.25 s, later within 1 s
    for slurmd_look in (0.17, 0.67, 1.67, 2.67):
        assert any(0 < t - slurmd_look <= 0.25 for t in times), slurmd_look
    assert max(pauses) == pauses[-1] == 1.0
    assert sum(1 for t in times if t <= 5) <= 22  # a bounded number of queries


# ---------------------------------------------------------------- what it tells the metrics


async def test_each_query_is_told_with_its_time_and_outcome(make_poller, caplog):
    poller, cluster = make_poller()
    told = []
    poller.on_query = lambda seconds, ok: told.append((seconds, ok))
    running(cluster, "1")
    poller.track("1")
    release = cluster.hold("query")
    refresh = asyncio.ensure_future(poller.refresh("1"))
    await bounded(cluster.wait_for(lambda: cluster.held("query")))
    await asyncio.sleep(0.05)
    release.set()
    await bounded(refresh)
    cluster.fail("query", CONTROLLER_DOWN)
    await bounded(poller.refresh("1"))
    assert [ok for _, ok in told] == [True, False]
    assert told[0][0] >= 0.05  # from the query's start to its answer
    # a listener that fails is logged; the poller goes on
    poller.on_query = lambda seconds, ok: 1 / 0
    await bounded(poller.refresh("1"))
    assert poller.cached("1").liveness is Liveness.ALIVE
    assert "The status query's listener failed" in caplog.text
