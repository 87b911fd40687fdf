"""The hub-wide cache of what the cluster offers.

The Slurm side (parsing, summing up partitions and nodes into a
:class:`~hpcspawner.slurm.snapshot.ClusterSnapshot`) lives in the hub-free
:mod:`hpcspawner.slurm`; the admin's policy is narrowed to it (and to the login's
accounts and the user's associations) in :mod:`hpcspawner.resources.offer`. Here:

- :class:`ClusterInfo` is the hub-wide cache in front of the driver: one
  scheduler query per TTL serves every user's spawn page, concurrent callers
  share one refresh, and a slow or failing scheduler yields the last known data
  marked stale instead of an exception or a wait.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from ..slurm import Association, ClusterSnapshot, ParseError, PartitionSummary, SlurmError
from ..slurm.accounting import QOSInfo, UserAccounting
from ..slurm.usage import AccountUsage
from .tasks import cancel_and_wait

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- the hub-wide cache


@dataclass(frozen=True)
class ClusterView:
    """What :meth:`ClusterInfo.snapshot` answers."""

    #: None: Slurm has not answered yet (or never did)
    snapshot: ClusterSnapshot | None
    #: the snapshot is older than the TTL (a refresh is on its way or failed)
    stale: bool = False
    #: why the data is missing or stale (the last refresh's error), for the page and the log
    error: str | None = None
    #: seconds since Slurm answered; None without a snapshot
    age_s: float | None = None

    @property
    def partitions(self) -> Mapping[str, PartitionSummary]:
        return self.snapshot.partitions if self.snapshot is not None else {}


@dataclass(frozen=True)
class AccountingView:
    """What :meth:`ClusterInfo.accounting` answers: the facts the offer narrows to."""

    #: every QOS's limits (hub-wide); None: not known (no accounting, or never answered)
    qos: Mapping[str, QOSInfo] | None = None
    #: the user's default account and association limits; None: not known
    user: UserAccounting | None = None
    #: for the page when accounting does not answer: since when the shown accounts are
    #: known, or that they are the admin's
    notice: str | None = None


#: The page's notice while accounting does not answer ({} is the time of the last answer).
OUTAGE_NOTICE = "Slurm's accounting database is not answering; the accounts shown are from {}."
OUTAGE_NOTICE_CONFIG = (
    "Slurm's accounting database is not answering; the accounts shown are the hub's "
    "configured ones, and Slurm checks your choice when the server starts."
)


@dataclass
class _Slot:
    """One cached answer and the refresh that renews it."""

    value: object = None
    has_value: bool = False
    #: clock() of the last success / failure
    fetched_at: float = 0.0
    #: wall_clock() of the last success (for the page: "the accounts shown are from 10:42")
    fetched_wall: float = 0.0
    failed_at: float | None = None
    error: str | None = None
    task: asyncio.Task | None = None

    def fresh(self, now: float, ttl: float) -> bool:
        return self.has_value and now - self.fetched_at < ttl

    @property
    def refreshing(self) -> bool:
        return self.task is not None and not self.task.done()


class ClusterInfo:
    """The hub-wide cache of cluster facts, shared by every user's spawn page.

    - :meth:`snapshot`: within ``ttl`` of the last answer, the cached snapshot
      (no scheduler call). After that, one refresh starts, shared by concurrent
      callers, and callers get the old snapshot at once, marked stale. With no
      snapshot yet, callers wait for the refresh up to ``first_wait`` seconds.
      A failed refresh keeps the old snapshot and records the error; the next
      one starts no sooner than ``retry_after`` seconds later.
    - :meth:`associations`: a user's Slurm associations, cached per user for
      ``association_ttl``; "accounting not available" is cached once for the hub.
    - :meth:`accounting`: the QOS definitions (hub-wide) and a user's default account and
      association limits, cached for ``association_ttl``, with a notice while accounting
      does not answer.
    - :meth:`usage`: a user's use of their accounts, cached per user for ``usage_ttl``.

    Nothing here raises for scheduler trouble. ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        driver,
        *,
        ttl: float = 60.0,
        first_wait: float = 5.0,
        retry_after: float = 10.0,
        association_ttl: float = 300.0,
        usage_ttl: float = 300.0,
        logger: logging.Logger | logging.LoggerAdapter | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ):
        self.driver = driver
        self.ttl = ttl
        self.first_wait = first_wait
        self.retry_after = retry_after
        self.association_ttl = association_ttl
        self.usage_ttl = usage_ttl
        self.log = logger or log
        self._clock = clock
        self._wall_clock = wall_clock
        self._snapshot = _Slot()
        self._associations: dict[str, _Slot] = {}
        self._qos = _Slot()
        self._user_accounting: dict[str, _Slot] = {}
        self._usage: dict[str, _Slot] = {}
        #: sshare's last answer failed (logged once until it answers again)
        self._usage_failing = False
        #: clock() when sacctmgr last said accounting is / is not available
        self._accounting_at: float | None = None
        self._no_accounting_at: float | None = None
        #: while nobody knows whether accounting exists, one user's query answers for all
        self._probe: asyncio.Task | None = None
        #: scheduler queries made (for tests and benchmarks)
        self.refreshes = 0
        self.association_queries = 0
        self.qos_queries = 0

    # ------------------------------------------------------------ cluster snapshot

    async def snapshot(self) -> ClusterView:
        slot = self._snapshot
        if not slot.fresh(self._clock(), self.ttl):
            self._start(slot, self._fetch_snapshot, "cluster information")
            if not slot.has_value and slot.refreshing:
                await self._wait(slot.task)
        return self._view()

    def cached(self) -> ClusterView:
        """The current view without starting a refresh."""
        return self._view()

    async def _fetch_snapshot(self) -> ClusterSnapshot:
        self.refreshes += 1
        return await self.driver.cluster_snapshot()

    def _view(self) -> ClusterView:
        slot = self._snapshot
        error = slot.error
        if not slot.has_value:
            if error is None and slot.refreshing:
                error = f"Slurm has not answered within {self.first_wait:g} s"
            return ClusterView(None, stale=False, error=error or "no cluster information yet")
        age = max(0.0, self._clock() - slot.fetched_at)
        stale = age >= self.ttl or error is not None
        return ClusterView(slot.value, stale=stale, error=error, age_s=age)

    # ------------------------------------------------------------ associations

    async def associations(self, username: str) -> list[Association] | None:
        """``username``'s associations; None when accounting is not available or unknown.

        On a failed query the last known list (if any) is returned; the caller
        then falls back to the admin's accounts and QOS, and Slurm still checks
        at submit.
        """
        if self._no_accounting():
            return None
        if (
            self._accounting_at is None
            or self._clock() - self._accounting_at >= self.association_ttl
        ):
            probe = self._probe
            if probe is not None and not probe.done():
                await self._wait(probe)
                if self._no_accounting():
                    return None
        slot = self._associations.setdefault(username, _Slot())
        if not slot.fresh(self._clock(), self.association_ttl):
            self._start(
                slot, lambda: self._fetch_associations(username), f"associations of {username}"
            )
            if slot.refreshing and (self._probe is None or self._probe.done()):
                self._probe = slot.task
            if not slot.has_value and slot.refreshing:
                await self._wait(slot.task)
        if self._no_accounting() or not slot.has_value or slot.value is None:
            return None
        return list(slot.value)

    def _no_accounting(self) -> bool:
        at = self._no_accounting_at
        return at is not None and self._clock() - at < self.association_ttl

    async def _fetch_associations(self, username: str) -> list[Association] | None:
        self.association_queries += 1
        answer = await self.driver.user_associations(username)
        if answer is None:
            if not self._no_accounting():
                self.log.info(
                    "Slurm accounting is not available: accounts and QOS come from config"
                )
            self._no_accounting_at = self._clock()
        else:
            self._accounting_at = self._clock()
            self._no_accounting_at = None
        return answer

    # ------------------------------------------------------------ accounting's limits

    async def accounting(self, username: str) -> AccountingView:
        """The QOS definitions (one query per ``association_ttl`` for the whole hub), the
        user's default account and association limits (cached per user as the
        associations are), and the outage notice. Call after :meth:`associations`, which
        finds out whether accounting exists. Never raises for Slurm trouble: what
        accounting last said, or nothing."""
        if self._no_accounting() or self._accounting_at is None and not self._failed(username):
            return AccountingView()
        qos = await self._cached(self._qos, self._fetch_qos, "QOS definitions")
        slot = self._user_accounting.setdefault(username, _Slot())
        user = await self._cached(
            slot,
            lambda: self.driver.user_accounting(username),
            f"accounting limits of {username}",
        )
        return AccountingView(qos=qos, user=user, notice=self._outage_notice(username))

    async def _fetch_qos(self) -> dict[str, QOSInfo] | None:
        self.qos_queries += 1
        return await self.driver.qos_limits()

    async def _cached(
        self, slot: _Slot, fetch: Callable[[], Awaitable], what: str, ttl: float | None = None
    ):
        """``slot``'s value, refreshed after ``ttl`` (default ``association_ttl``); None
        before any answer (waiting up to ``first_wait`` for the first)."""
        if not slot.fresh(self._clock(), self.association_ttl if ttl is None else ttl):
            self._start(slot, fetch, what)
            if not slot.has_value and slot.refreshing:
                await self._wait(slot.task)
        return slot.value if slot.has_value else None

    def _failed(self, username: str) -> bool:
        slot = self._associations.get(username)
        return slot is not None and slot.error is not None

    def _outage_notice(self, username: str) -> str | None:
        """The page's notice when the user's last association query failed (slurmdbd
        down, or not understood): the accounts shown are from the last answer, or the
        admin's."""
        slot = self._associations.get(username)
        if slot is None or slot.error is None:
            return None
        if not slot.has_value:
            return OUTAGE_NOTICE_CONFIG
        return OUTAGE_NOTICE.format(time.strftime("%H:%M", time.localtime(slot.fetched_wall)))

    # ------------------------------------------------------------ account usage

    async def usage(self, username: str) -> list[AccountUsage] | None:
        """``username``'s use of their accounts (``sshare``), cached per user for
        ``usage_ttl``; None when not available: the driver cannot tell, or Slurm did not
        answer (logged once until it answers again; the page then shows no usage)."""
        usage = await self._cached(
            self._usage.setdefault(username, _Slot()),
            lambda: self._fetch_usage(username),
            f"account usage of {username}",
            self.usage_ttl,
        )
        return list(usage) if usage is not None else None

    async def _fetch_usage(self, username: str) -> list[AccountUsage] | None:
        try:
            answer = await self.driver.user_usage(username)
        except (SlurmError, ParseError, ValueError) as e:
            if not self._usage_failing:
                self.log.warning("Not showing account usage: sshare for %s failed: %s", username, e)
            self._usage_failing = True
            return None
        self._usage_failing = False
        return answer

    # ------------------------------------------------------------ refreshing

    def _start(self, slot: _Slot, fetch: Callable[[], Awaitable], what: str) -> None:
        """Start a refresh of ``slot`` unless one runs or the last failure is too recent."""
        if slot.refreshing:
            return
        if slot.failed_at is not None and self._clock() - slot.failed_at < self.retry_after:
            return
        slot.task = asyncio.ensure_future(self._refresh(slot, fetch, what))

    async def _refresh(self, slot: _Slot, fetch: Callable[[], Awaitable], what: str) -> None:
        try:
            value = await fetch()
        except SlurmError as e:
            self.log.warning("Could not refresh %s, keeping the last known: %s", what, e)
            error = str(e)
        except ParseError as e:
            self.log.error("Could not understand Slurm's answer for %s: %s", what, e)
            error = f"unexpected output from Slurm: {e}"
        except Exception as e:
            self.log.exception("Refreshing %s failed unexpectedly", what)
            error = f"{type(e).__name__}: {e}"
        else:
            slot.value, slot.has_value = value, True
            slot.fetched_at, slot.failed_at, slot.error = self._clock(), None, None
            slot.fetched_wall = self._wall_clock()
            return
        slot.failed_at, slot.error = self._clock(), error

    async def _wait(self, task: asyncio.Task | None) -> None:
        """Wait for ``task`` up to ``first_wait`` seconds; it goes on in the background."""
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), self.first_wait)
        except asyncio.TimeoutError:
            pass

    async def close(self) -> None:
        """Cancel refreshes in flight (at hub shutdown)."""
        tasks = [
            self._snapshot.task,
            self._qos.task,
            *(slot.task for slot in self._associations.values()),
            *(slot.task for slot in self._user_accounting.values()),
            *(slot.task for slot in self._usage.values()),
        ]
        await cancel_and_wait(tasks, self.log)
