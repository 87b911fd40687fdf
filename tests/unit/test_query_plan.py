"""SlurmDriver.query: one listing or per-job lookups (``job_query``), the queue size read
lazily, and the tri-state kept: a failed lookup fails the whole query, never a partial
answer. With a driver that implements only the hooks (``_query_batch``, ``_query_one``,
``_read_queue_size``) and records what it was asked; the command and REST drivers' hooks
are tested in test_ssh_driver.py and test_rest_driver.py. Every await is bounded.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from traitlets import TraitError

from hpcspawner.slurm import JobInfo, Liveness, SlurmDriver, SlurmError, SlurmTimeout
from hpcspawner.slurm.querycost import UNKNOWN_QUEUE_EACH_MAX
from hpcspawner.slurm.records import ParseError
from hpcspawner.spawner.poller import JobPoller

QUEUE_DOWN = SlurmError(["sdiag"], 1, "slurm_get_statistics: Unable to contact slurm controller")


def bounded(awaitable, timeout: float = 5.0):
    return asyncio.wait_for(awaitable, timeout)


async def until(predicate, timeout: float = 5.0) -> None:
    """Let the lookups run until ``predicate()`` holds."""

    async def wait():
        while not predicate():
            await asyncio.sleep(0)

    await asyncio.wait_for(wait(), timeout)


def running(job_id: str) -> JobInfo:
    return JobInfo(job_id=job_id, state="RUNNING", batch_host="n1")


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class HookDriver(SlurmDriver):
    """Slurm as a dict: ``jobs`` are the records Slurm has, ``queued`` what the queue-size
    read answers (an exception: it raises), ``failing`` the lookups that raise, ``gate`` an
    event the lookups of ``held`` ids (all, if None) wait for."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.jobs: dict[str, JobInfo] = {}
        self.queued: int | None | BaseException = 0
        self.failing: dict[str, BaseException] = {}
        self.gate: asyncio.Event | None = None
        self.held: set[str] | None = None
        self.looking_up = 0
        self.most_at_once = 0
        self.cancelled = 0

    async def _query_batch(self, job_ids):
        self._count("listing")
        return {job_id: self.jobs[job_id] for job_id in job_ids if job_id in self.jobs}

    async def _query_one(self, job_id):
        self._count("lookup")
        self.looking_up += 1
        self.most_at_once = max(self.most_at_once, self.looking_up)
        try:
            if self.gate is not None and (self.held is None or job_id in self.held):
                await self.gate.wait()
            if job_id in self.failing:
                raise self.failing[job_id]
            return self.jobs.get(job_id)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.looking_up -= 1

    async def _read_queue_size(self):
        self._count("queue_size")
        if isinstance(self.queued, BaseException):
            raise self.queued
        return self.queued


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def make_driver(clock):
    def make(**settings) -> HookDriver:
        return HookDriver(monotonic=clock, log=logging.getLogger("test.queryplan"), **settings)

    return make


# ---------------------------------------------------------------- the choice


@pytest.mark.parametrize(
    ("job_query", "queued", "ids", "calls"),
    [
        pytest.param("batch", 10_000, 3, {"listing": 1}, id="batch-never-reads-the-queue"),
        pytest.param("each", 0, 3, {"lookup": 3}, id="each-never-reads-the-queue"),
        pytest.param("auto", 10_000, 3, {"queue_size": 1, "lookup": 3}, id="auto-busy"),
        pytest.param("auto", 10_000, 80, {"queue_size": 1, "listing": 1}, id="auto-busy-many"),
        pytest.param("auto", 0, 3, {"queue_size": 1, "listing": 1}, id="auto-quiet"),
        pytest.param("auto", None, 3, {"queue_size": 1, "lookup": 3}, id="auto-cannot-tell"),
        pytest.param(
            "auto",
            None,
            UNKNOWN_QUEUE_EACH_MAX + 1,
            {"queue_size": 1, "listing": 1},
            id="auto-cannot-tell-many",
        ),
    ],
)
async def test_job_query_chooses_the_kind_of_query(make_driver, job_query, queued, ids, calls):
    driver = make_driver(job_query=job_query)
    driver.queued = queued
    job_ids = [str(100 + number) for number in range(ids)]
    driver.jobs = {job_id: running(job_id) for job_id in job_ids[:2]}
    found = await bounded(driver.query(job_ids))
    assert found == {job_id: running(job_id) for job_id in job_ids[:2]}  # the rest: gone
    assert driver.calls == calls


async def test_ids_are_asked_once_each_as_strings(make_driver):
    driver = make_driver(job_query="each")
    driver.jobs = {"7": running("7")}
    assert await bounded(driver.query(["7", 7, "7", "8"])) == {"7": running("7")}
    assert driver.calls == {"lookup": 2}


async def test_no_ids_ask_nothing(make_driver):
    driver = make_driver()
    assert await bounded(driver.query([])) == {}
    assert driver.calls == {}


# ---------------------------------------------------------------- the queue size


async def test_the_queue_size_is_read_when_a_query_needs_it_and_then_every_interval(
    make_driver, clock
):
    driver = make_driver(queue_size_interval=300)
    assert driver.calls == {}  # not at start
    driver.queued = 10_000
    await bounded(driver.query(["1"]))
    clock.now += 299
    await bounded(driver.query(["1"]))
    assert driver.calls["queue_size"] == 1
    driver.queued = 0
    clock.now += 1
    await bounded(driver.query(["1"]))
    assert driver.calls == {"queue_size": 2, "lookup": 2, "listing": 1}


async def test_concurrent_queries_share_one_queue_size_read(make_driver):
    driver = make_driver()
    await bounded(asyncio.gather(*(driver.query(["1"]) for _ in range(5))))
    assert driver.calls["queue_size"] == 1


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(QUEUE_DOWN, id="refused"),
        pytest.param(SlurmTimeout(["sdiag"], 30), id="timed-out"),
        pytest.param(ParseError("sdiag printed no 'Jobs pending:' count"), id="unreadable"),
    ],
)
async def test_a_failed_read_keeps_the_last_size_and_fails_no_query(
    make_driver, clock, caplog, error
):
    driver = make_driver()
    driver.jobs = {str(n): running(str(n)) for n in range(50)}
    job_ids = list(driver.jobs)
    driver.queued = 10_000
    await bounded(driver.query(job_ids))
    assert driver.calls == {"queue_size": 1, "lookup": 50}  # 50 < 77: lookups
    driver.queued = error
    clock.now += 300
    with caplog.at_level(logging.WARNING, "test.queryplan"):
        assert await bounded(driver.query(job_ids)) == driver.jobs
    # 10,000 jobs is still the estimate: lookups again (with none, 50 jobs would be listed)
    assert driver.calls == {"queue_size": 2, "lookup": 100}
    assert "Could not read the cluster's queue size" in caplog.text
    assert "the last one read (10000 jobs)" in caplog.text
    caplog.clear()
    clock.now += 299
    await bounded(driver.query(job_ids))  # not asked again before the interval
    assert driver.calls["queue_size"] == 2
    clock.now += 1
    with caplog.at_level(logging.WARNING, "test.queryplan"):
        await bounded(driver.query(job_ids))
    assert driver.calls["queue_size"] == 3
    assert caplog.text == ""  # failing still: said once


async def test_a_first_read_that_fails_leaves_no_size(make_driver, clock, caplog):
    driver = make_driver()
    driver.queued = QUEUE_DOWN
    with caplog.at_level(logging.INFO, "test.queryplan"):
        await bounded(driver.query(["1", "2"]))
        assert await bounded(driver.queue_size()) is None
        assert f"per-job lookups for up to {UNKNOWN_QUEUE_EACH_MAX} jobs" in caplog.text
        driver.queued = 0
        clock.now += 300
        await bounded(driver.query(["1", "2"]))
    assert driver.calls == {"queue_size": 2, "lookup": 2, "listing": 1}
    assert "Read the cluster's queue size again: 0 jobs" in caplog.text


async def test_a_driver_that_cannot_tell_the_queue_size(clock):
    class NoQueueSize(HookDriver):
        _read_queue_size = SlurmDriver._read_queue_size

    driver = NoQueueSize(monotonic=clock)
    assert await bounded(driver.queue_size()) is None
    await bounded(driver.query(["1"]))
    assert driver.calls == {"lookup": 1}


# ---------------------------------------------------------------- per-job lookups


async def test_lookups_run_at_most_job_query_concurrency_at_once(make_driver):
    driver = make_driver(job_query="each", job_query_concurrency=3)
    driver.gate = asyncio.Event()
    driver.jobs = {str(n): running(str(n)) for n in range(10)}
    query = asyncio.ensure_future(driver.query(list(driver.jobs)))
    await until(lambda: driver.looking_up == 3)
    for _ in range(10):  # give a fourth every chance to start
        await asyncio.sleep(0)
    assert driver.looking_up == 3
    driver.gate.set()
    assert await bounded(query) == driver.jobs
    assert driver.most_at_once == 3 and driver.calls == {"lookup": 10}


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(SlurmError(["squeue"], 1, "Socket timed out on send/recv"), id="error"),
        pytest.param(SlurmTimeout(["squeue"], 30), id="timeout"),
    ],
)
async def test_one_failed_lookup_fails_the_whole_query(make_driver, error):
    driver = make_driver(job_query="each", job_query_concurrency=2)
    driver.jobs = {str(n): running(str(n)) for n in range(6)}
    driver.failing = {"2": error}
    driver.gate = asyncio.Event()
    query = asyncio.ensure_future(driver.query(list(driver.jobs)))
    await until(lambda: driver.looking_up == 2)
    driver.gate.set()
    with pytest.raises(SlurmError) as caught:
        await bounded(query)
    assert caught.value is error
    assert driver.looking_up == 0  # the others were stopped, not left running


async def test_a_failed_lookup_stops_the_lookups_still_waiting(make_driver):
    driver = make_driver(job_query="each", job_query_concurrency=4)
    driver.jobs = {str(n): running(str(n)) for n in range(8)}
    driver.gate, driver.held = asyncio.Event(), {"1", "2", "3"}
    driver.failing = {"0": SlurmError(["squeue"], 1, "Socket timed out on send/recv")}
    with pytest.raises(SlurmError, match="Socket timed out"):
        await bounded(driver.query(list(driver.jobs)))
    assert driver.cancelled == 3 and driver.looking_up == 0
    assert driver.calls == {"lookup": 4}  # none after the failure


async def test_cancelling_the_query_stops_its_lookups(make_driver):
    driver = make_driver(job_query="each")
    driver.gate = asyncio.Event()
    query = asyncio.ensure_future(driver.query(["1", "2", "3"]))
    await until(lambda: driver.looking_up == 3)
    query.cancel()
    with pytest.raises(asyncio.CancelledError):
        await bounded(query)
    assert driver.cancelled == 3 and driver.looking_up == 0


async def test_the_poller_keeps_every_job_unknown_when_one_lookup_fails(make_driver):
    """A partial answer would make the failed job look gone: the poller sees none."""
    driver = make_driver(job_query="each")
    driver.jobs = {"1": running("1"), "2": running("2")}
    driver.failing = {"2": SlurmTimeout(["squeue"], 30)}
    poller = JobPoller(driver, interval=3600, min_gap=0)
    try:
        for job_id in ("1", "2", "3"):
            poller.track(job_id)
        await bounded(poller.refresh())
        assert {poller.cached(j).liveness for j in ("1", "2", "3")} == {Liveness.UNKNOWN}
        driver.failing = {}
        await bounded(poller.refresh())
        liveness = {j: poller.cached(j).liveness for j in ("1", "2", "3")}
        assert liveness == {"1": Liveness.ALIVE, "2": Liveness.ALIVE, "3": Liveness.GONE}
    finally:
        await bounded(poller.close())


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        pytest.param({"job_query": "sometimes"}, "job_query", id="job-query"),
        pytest.param({"job_query_concurrency": 0}, "at least 1", id="concurrency"),
        pytest.param({"queue_size_interval": -1.0}, "0 or more", id="interval"),
    ],
)
def test_bad_settings_are_refused_naming_the_fix(settings, words):
    with pytest.raises((TraitError, ValueError), match=words):
        HookDriver(**settings)


def test_the_defaults():
    driver = SlurmDriver()
    assert (driver.job_query, driver.queue_size_interval, driver.job_query_concurrency) == (
        "auto",
        300.0,
        4,
    )
