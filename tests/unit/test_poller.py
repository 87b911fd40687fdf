"""hpcspawner.poller.JobPoller: the cache and query coalescing, with an in-memory driver.

This tests the poller's own logic only (one query for many callers, min_gap,
unknown on error); tests/integration runs it against the real squeue.
"""

from __future__ import annotations

import asyncio
import time
from itertools import accumulate, islice

import pytest

from hpcspawner.errors import SlurmError
from hpcspawner.jobstate import JobInfo, Liveness
from hpcspawner.poller import JobPoller, JobStatus
from hpcspawner.spawner import stop_check_pauses

#: Upper bound for every await in these tests (seconds).
TIMEOUT = 2.0
MIN_GAP = 0.05

CONTROLLER_DOWN = SlurmError(
    ["squeue", "--noheader", "--states=all", "--jobs=1"],
    1,
    "slurm_load_jobs error: Unable to contact slurm controller (connect failure)",
)


class FakeDriver:
    """Stands in for a SlurmDriver: ``query`` answers from ``self.jobs`` and records each call."""

    def __init__(self):
        self.jobs: dict[str, JobInfo] = {}
        self.calls: list[list[str]] = []
        self.spans: list[tuple[float, float]] = []  # (start, end) of each query
        self.error: Exception | None = None
        self.gate: asyncio.Event | None = None  # when set, queries wait for it
        self.hang = False
        self.cancelled = 0
        self.started = asyncio.Event()  # set at the start of every query
        self.finished = asyncio.Event()  # set at the end of every query

    def set(self, job_id: str, state: str | None, **fields) -> None:
        if state is None:
            self.jobs.pop(job_id, None)
        else:
            self.jobs[job_id] = JobInfo(job_id, state, **fields)

    async def query(self, ids):
        start = time.monotonic()
        self.calls.append(list(ids))
        self.started.set()
        try:
            if self.hang:
                await asyncio.Event().wait()
            if self.gate is not None:
                await self.gate.wait()
            if self.error is not None:
                raise self.error
            return {job_id: self.jobs[job_id] for job_id in ids if job_id in self.jobs}
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.spans.append((start, time.monotonic()))
            self.finished.set()


@pytest.fixture
async def make_poller():
    """Factory: ``poller, driver = make_poller(...)``; every poller is closed afterwards."""
    pollers = []

    def factory(*, interval: float = 60.0, min_gap: float = MIN_GAP):
        driver = FakeDriver()
        poller = JobPoller(driver, interval=interval, min_gap=min_gap)
        pollers.append(poller)
        return poller, driver

    yield factory
    for poller in pollers:
        await asyncio.wait_for(poller.close(), TIMEOUT)


async def bounded(awaitable, timeout: float = TIMEOUT):
    return await asyncio.wait_for(awaitable, timeout)


async def until(condition, timeout: float = TIMEOUT) -> None:
    async def poll():
        while not condition():
            await asyncio.sleep(0.005)

    await bounded(poll(), timeout)


# ---------------------------------------------------------------- coalescing


async def test_status_of_a_running_job(make_poller):
    poller, driver = make_poller()
    driver.set("1", "RUNNING", batch_host="c1")
    before = time.monotonic()
    status = await bounded(poller.status("1", max_age=0))
    assert status.liveness is Liveness.ALIVE
    assert status.info == JobInfo("1", "RUNNING", batch_host="c1")
    assert status.error is None
    assert before <= status.checked_at <= time.monotonic()
    assert poller.tracked == ["1"]
    assert poller.cached("1") == status


async def test_concurrent_status_calls_make_one_query(make_poller):
    poller, driver = make_poller()
    ids = [str(n) for n in range(50)]
    for job_id in ids:
        driver.set(job_id, "RUNNING")
        poller.track(job_id)
    await bounded(poller.refresh())
    queries = len(driver.calls)

    statuses = await bounded(asyncio.gather(*(poller.status(i, max_age=0) for i in ids)))

    assert len(driver.calls) == queries + 1
    assert sorted(driver.calls[-1]) == sorted(ids)
    assert poller.queries == len(driver.calls)
    assert [s.job_id for s in statuses] == ids
    assert all(s.liveness is Liveness.ALIVE for s in statuses)


async def test_concurrent_first_status_calls_make_one_query(make_poller):
    poller, driver = make_poller()
    ids = [str(n) for n in range(10)]
    for job_id in ids:
        driver.set(job_id, "PENDING")

    statuses = await bounded(asyncio.gather(*(poller.status(i, max_age=0) for i in ids)))

    assert all(s.liveness is Liveness.ALIVE for s in statuses)
    assert driver.calls == [ids]


async def test_callers_during_min_gap_share_the_next_query(make_poller):
    poller, driver = make_poller()
    for job_id in ("1", "2", "3"):
        driver.set(job_id, "RUNNING")
        poller.track(job_id)
    await bounded(poller.refresh())
    queries = len(driver.calls)

    # right after a query: the next one waits min_gap, and every caller meanwhile joins it
    first = asyncio.ensure_future(poller.status("1", max_age=0))
    await asyncio.sleep(MIN_GAP / 5)
    rest = [poller.status(job_id, max_age=0) for job_id in ("2", "3", "1")]
    await bounded(asyncio.gather(first, *rest))

    assert len(driver.calls) == queries + 1


async def test_job_tracked_during_a_query_gets_a_second_query(make_poller):
    poller, driver = make_poller()
    driver.set("1", "RUNNING")
    driver.set("2", "PENDING", reason="Resources")
    driver.gate = asyncio.Event()

    first = asyncio.ensure_future(poller.status("1", max_age=0))
    await bounded(driver.started.wait())
    assert driver.calls == [["1"]]

    second = asyncio.ensure_future(poller.status("2", max_age=0))
    await asyncio.sleep(0.01)
    assert not second.done()
    driver.gate.set()
    status_1, status_2 = await bounded(asyncio.gather(first, second))

    assert driver.calls == [["1"], ["1", "2"]]
    assert status_1.liveness is Liveness.ALIVE
    assert status_2.liveness is Liveness.ALIVE
    assert status_2.info.reason == "Resources"


async def test_min_gap_between_queries(make_poller):
    poller, driver = make_poller()
    driver.set("1", "RUNNING")
    start = time.monotonic()
    for _ in range(5):
        await bounded(poller.status("1", max_age=0))
    assert len(driver.calls) == 5
    for (_, end), (next_start, _) in zip(driver.spans, driver.spans[1:], strict=False):
        # asyncio may wake up a clock tick early; 2 ms is far below MIN_GAP
        assert next_start - end >= MIN_GAP - 0.002
    assert time.monotonic() - start >= 4 * MIN_GAP - 0.01


async def test_fresh_cache_answers_without_a_query(make_poller):
    poller, driver = make_poller()
    driver.set("1", "RUNNING")
    first = await bounded(poller.status("1", max_age=0))
    driver.set("1", "COMPLETED")  # the cache does not know yet

    cached = await bounded(poller.status("1", max_age=60))

    assert cached == first
    assert len(driver.calls) == 1
    refreshed = await bounded(poller.status("1", max_age=0))
    assert refreshed.liveness is Liveness.GONE
    assert len(driver.calls) == 2


async def test_cached_of_untracked_job_is_unknown(make_poller):
    poller, _ = make_poller()
    assert poller.cached("404") == JobStatus("404", Liveness.UNKNOWN)


# ---------------------------------------------------------------- answers and errors


async def test_missing_job_in_successful_answer_is_gone(make_poller):
    poller, driver = make_poller()
    driver.set("1", "RUNNING")
    poller.track("1")
    poller.track("2")
    await bounded(poller.refresh())
    assert driver.calls[-1] == ["1", "2"]
    assert poller.cached("1").liveness is Liveness.ALIVE
    status = poller.cached("2")
    assert status.liveness is Liveness.GONE
    assert status.info is None
    assert status.checked_at is not None
    assert status.error is None


async def test_slurm_error_leaves_jobs_unknown_with_last_info(make_poller):
    poller, driver = make_poller()
    driver.set("1", "RUNNING", batch_host="c1")
    known = await bounded(poller.status("1", max_age=0))

    driver.error = CONTROLLER_DOWN
    status = await bounded(poller.status("1", max_age=0))

    assert status.liveness is Liveness.UNKNOWN
    assert status.info == known.info  # the last record is kept...
    assert status.checked_at == known.checked_at  # ...with the time it was confirmed
    assert "Unable to contact slurm controller" in status.error
    assert len(driver.calls) == 2

    driver.error = None
    recovered = await bounded(poller.status("1", max_age=0))
    assert recovered.liveness is Liveness.ALIVE
    assert recovered.error is None
    assert recovered.checked_at > known.checked_at


async def test_slurm_error_before_any_answer(make_poller):
    poller, driver = make_poller()
    driver.error = CONTROLLER_DOWN
    status = await bounded(poller.status("1", max_age=0))
    assert status == JobStatus("1", Liveness.UNKNOWN, None, None, str(CONTROLLER_DOWN))


async def test_unexpected_driver_error_is_unknown_too(make_poller, caplog):
    poller, driver = make_poller()
    driver.set("1", "RUNNING")
    await bounded(poller.status("1", max_age=0))
    driver.error = RuntimeError("driver bug")

    status = await bounded(poller.status("1", max_age=0))

    assert status.liveness is Liveness.UNKNOWN
    assert status.error == "driver bug"
    assert "failed unexpectedly" in caplog.text


async def test_on_change_fires_on_transitions(make_poller):
    poller, driver = make_poller()
    changes: list[tuple[Liveness, str | None]] = []
    poller.track("1", on_change=lambda s: changes.append((s.liveness, s.info and s.info.state)))

    async def step(state=None, error=None):
        driver.set("1", state)
        driver.error = error
        await bounded(poller.status("1", max_age=0))

    await step("PENDING")
    await step("PENDING")  # no change
    await step("RUNNING")  # same liveness, new state
    await step("RUNNING", error=CONTROLLER_DOWN)  # unknown, last record kept
    await step("RUNNING", error=CONTROLLER_DOWN)  # still unknown: no change
    await step("RUNNING")
    await step("COMPLETED")
    await step(None)  # purged: still gone

    assert changes == [
        (Liveness.ALIVE, "PENDING"),
        (Liveness.ALIVE, "RUNNING"),
        (Liveness.UNKNOWN, "RUNNING"),
        (Liveness.ALIVE, "RUNNING"),
        (Liveness.GONE, "COMPLETED"),
    ]


async def test_failing_listener_does_not_stop_the_poller(make_poller, caplog):
    poller, driver = make_poller()
    driver.set("1", "RUNNING")
    driver.set("2", "RUNNING")
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
    poller, driver = make_poller()
    driver.set("1", "RUNNING")
    driver.gate = asyncio.Event()
    changes = []
    poller.track("1", on_change=changes.append)
    refresh = asyncio.ensure_future(poller.refresh())
    await bounded(driver.started.wait())

    poller.untrack("1")
    driver.gate.set()
    await bounded(refresh)

    assert changes == []
    assert poller.tracked == []
    assert poller.cached("1") == JobStatus("1", Liveness.UNKNOWN)


# ---------------------------------------------------------------- hanging driver, background loop


async def test_timed_out_caller_does_not_cancel_the_shared_query(make_poller):
    poller, driver = make_poller()
    driver.set("1", "RUNNING")
    driver.gate = asyncio.Event()

    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(poller.status("1", max_age=0), 0.05)
    driver.gate.set()
    await bounded(driver.finished.wait())

    assert driver.cancelled == 0
    status = await bounded(poller.status("1", max_age=60))
    assert status.liveness is Liveness.ALIVE
    assert len(driver.calls) == 1


async def test_hanging_query_is_cancelled_by_close(make_poller):
    poller, driver = make_poller()
    driver.hang = True
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(poller.status("1", max_age=0), 0.05)
    assert poller.cached("1").liveness is Liveness.UNKNOWN

    await bounded(poller.close(), 0.5)

    assert driver.cancelled == 1
    assert len(driver.calls) == 1


async def test_background_loop_refreshes_tracked_jobs(make_poller):
    poller, driver = make_poller(interval=MIN_GAP, min_gap=0.01)
    driver.set("1", "RUNNING")
    changes = []
    poller.track("1", on_change=changes.append)
    await until(lambda: len(driver.calls) >= 3)
    driver.set("1", "TIMEOUT")
    await until(lambda: poller.cached("1").liveness is Liveness.GONE)
    assert [s.liveness for s in changes] == [Liveness.ALIVE, Liveness.GONE]

    poller.untrack("1")
    await asyncio.sleep(3 * MIN_GAP)  # the loop ends once nothing is tracked
    queries = len(driver.calls)
    await asyncio.sleep(3 * MIN_GAP)
    assert len(driver.calls) == queries


def test_stop_check_pauses_look_often_first_then_settle_at_one_second():
    pauses = list(islice(stop_check_pauses(), 40))
    times = list(accumulate(pauses))
    # slurmd's own looks at a cancelled job's processes: 0.02, 0.07, 0.17, 0.67, 1.67 s...
    # in the first seconds each is followed by one of ours within 0.25 s, later within 1 s
    for slurmd_look in (0.17, 0.67, 1.67, 2.67):
        assert any(0 < t - slurmd_look <= 0.25 for t in times), slurmd_look
    assert max(pauses) == pauses[-1] == 1.0
    assert sum(1 for t in times if t <= 5) <= 22  # a bounded number of queries
