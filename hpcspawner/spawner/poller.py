"""One poller for the whole hub: one status query per refresh serves every spawner.

Spawners :meth:`~JobPoller.track` their job and read its status with
:meth:`~JobPoller.status`. The poller keeps one cache for all jobs and
refreshes it with one :meth:`SlurmDriver.query` call for every tracked job. How that
call asks Slurm is the driver's choice (``job_query``): one listing of all the jobs
(``squeue --jobs=a,b,...``), or, where that costs slurmctld more (a busy cluster, few
servers), one lookup per job; either way it answers for every job or fails as a whole.
The refreshes:

- in the background every ``interval`` seconds (running servers);
- on demand, when a caller needs fresher data than the cache holds (a server
  that is starting, a stop); concurrent demands share one query, and queries
  are never closer together than ``min_gap`` seconds.

A failed query leaves every job "unknown": only a successful answer ends a job.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..slurm import JobInfo, Liveness, SlurmError, liveness_of
from .tasks import cancel_and_wait

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobStatus:
    """What the poller knows about one job."""

    job_id: str
    liveness: Liveness
    #: The latest record from Slurm (may be older than this status when UNKNOWN).
    info: JobInfo | None = None
    #: When the status was last confirmed by Slurm (``time.monotonic()``), or None.
    checked_at: float | None = None
    #: Why the status is unknown (the error of the last query).
    error: str | None = None


@dataclass
class _Entry:
    status: JobStatus
    on_change: Callable[[JobStatus], None] | None = None


class JobPoller:
    """The hub-wide job status cache."""

    def __init__(
        self,
        driver,
        *,
        interval: float = 30.0,
        min_gap: float = 0.1,
        logger=None,
        on_query: Callable[[float, bool], None] | None = None,
    ):
        self.driver = driver
        self.interval = interval
        self.min_gap = min_gap
        self.log = logger or log
        #: told the seconds each status query took and whether it succeeded (the metrics)
        self.on_query = on_query
        self._jobs: dict[str, _Entry] = {}
        self._refresh_task: asyncio.Task | None = None
        #: the jobs the refresh in flight asks about; None until it has chosen them
        self._refresh_ids: frozenset[str] | None = None
        self._last_query_end = float("-inf")
        self._loop_task: asyncio.Task | None = None
        #: number of queries made (each one :meth:`SlurmDriver.query` call for every job)
        self.queries = 0

    # ------------------------------------------------------------ registry

    def track(self, job_id: str, on_change: Callable[[JobStatus], None] | None = None) -> None:
        """Start watching ``job_id``; ``on_change`` gets each new liveness."""
        entry = self._jobs.get(job_id)
        if entry is None:
            entry = self._jobs[job_id] = _Entry(JobStatus(job_id, Liveness.UNKNOWN))
        if on_change is not None:
            entry.on_change = on_change
        self._ensure_loop()

    def untrack(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)

    @property
    def tracked(self) -> list[str]:
        return list(self._jobs)

    # ------------------------------------------------------------ reading

    def cached(self, job_id: str) -> JobStatus:
        entry = self._jobs.get(job_id)
        return entry.status if entry else JobStatus(job_id, Liveness.UNKNOWN)

    async def status(self, job_id: str, max_age: float) -> JobStatus:
        """The status of ``job_id``, confirmed by Slurm at most ``max_age`` seconds ago.

        Joins (or starts) a batched refresh when the cache is older. If Slurm
        cannot be asked, the status is UNKNOWN, carrying the last known record.
        """
        if job_id not in self._jobs:
            self.track(job_id)
        current = self._jobs[job_id].status
        if current.checked_at is not None and time.monotonic() - current.checked_at <= max_age:
            return current
        await self.refresh(job_id)
        return self.cached(job_id)

    # ------------------------------------------------------------ refreshing

    async def refresh(self, job_id: str | None = None) -> None:
        """Refresh every tracked job with one query; share a query already on its way.

        If a query is in flight that does not cover ``job_id`` (tracked after
        it started), wait for it and then make the next one.
        """
        while True:
            task = self._refresh_task
            if task is None or task.done():
                self._refresh_ids = None
                task = self._refresh_task = asyncio.ensure_future(self._refresh())
                await asyncio.shield(task)
                return
            # a refresh that has not chosen its jobs yet will include this one
            covered = job_id is None or self._refresh_ids is None or job_id in self._refresh_ids
            await asyncio.shield(task)
            if covered:
                return

    async def _refresh(self) -> None:
        wait = self._last_query_end + self.min_gap - time.monotonic()
        if wait > 0:
            # also the batching window: callers arriving meanwhile share this query
            await asyncio.sleep(wait)
        ids = list(self._jobs)
        self._refresh_ids = frozenset(ids)
        if not ids:
            return
        self.queries += 1
        started = time.monotonic()
        try:
            answer = await self.driver.query(ids)
        except SlurmError as e:
            self._queried(started, ok=False)
            self.log.warning(
                "Job status query failed, keeping %d job(s) as unknown: %s", len(ids), e
            )
            for job_id in ids:
                self._set(job_id, Liveness.UNKNOWN, None, error=str(e))
            return
        except Exception as e:
            self._queried(started, ok=False)
            self.log.exception("Job status query failed unexpectedly")
            for job_id in ids:
                self._set(job_id, Liveness.UNKNOWN, None, error=str(e))
            return
        finally:
            self._last_query_end = time.monotonic()
        self._queried(started, ok=True)
        now = time.monotonic()
        for job_id in ids:
            self._set(job_id, liveness_of(job_id, answer), answer.get(job_id), checked_at=now)

    def _queried(self, started: float, *, ok: bool) -> None:
        """Tell :attr:`on_query` how long the query begun at ``started`` took."""
        if self.on_query is None:
            return
        try:
            self.on_query(time.monotonic() - started, ok)
        except Exception:
            self.log.exception("The status query's listener failed")

    def _set(self, job_id, liveness, info, *, checked_at=None, error=None) -> None:
        entry = self._jobs.get(job_id)
        if entry is None:  # untracked meanwhile
            return
        old = entry.status
        if liveness is Liveness.UNKNOWN:
            # keep the last record and the time it was confirmed
            info, checked_at = old.info, old.checked_at
        entry.status = JobStatus(job_id, liveness, info, checked_at, error)
        changed = old.liveness != liveness or (
            info is not None and (old.info is None or old.info.state != info.state)
        )
        if changed and entry.on_change is not None:
            try:
                entry.on_change(entry.status)
            except Exception:
                self.log.exception("Job %s status listener failed", job_id)

    # ------------------------------------------------------------ background loop

    def _ensure_loop(self) -> None:
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.ensure_future(self._loop())

    async def _loop(self) -> None:
        while self._jobs:
            # a refresh made on demand counts: the next one is due an interval after it
            delay = self._last_query_end + self.interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            try:
                await self.refresh()
            except Exception:
                self.log.exception("Background job status refresh failed")

    async def close(self) -> None:
        """Stop the background loop and a refresh in flight (at hub shutdown)."""
        await cancel_and_wait((self._loop_task, self._refresh_task), self.log)
