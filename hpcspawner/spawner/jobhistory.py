"""Why a job ended after ``squeue`` forgot it: one accounting lookup per vanished job.

The poller tells a spawner its job is gone; when ``squeue`` still listed it, its final
state says why (:func:`~hpcspawner.spawner.messages.end_reason`). When it did not (the
job ended more than MinJobAge ago, or while the hub was down), Slurm's accounting still
knows: the hub's one :class:`JobHistory` asks it (``sacct``; slurmrestd's ``dbv0.0.38``)
through :meth:`~hpcspawner.slurm.SlurmDriver.job_history`, once per job, in one request
for the jobs that vanish together, and remembers the answer. Nothing here raises for
accounting trouble: without an answer the user is told what they were told before.
"""

from __future__ import annotations

import asyncio
import logging
import pwd
import time
from collections import OrderedDict
from collections.abc import Callable

from ..accounts import posix
from ..slurm import ParseError, SlurmError
from ..slurm.history import JobEnd
from . import messages
from .poller import JobStatus
from .tasks import cancel_and_wait

log = logging.getLogger(__name__)

#: How many jobs' answers the hub remembers (each asked once).
REMEMBERED = 4096


def canceller_name(who: str, username: str) -> str | None:
    """The user name of who cancelled ``username``'s job: ``who`` is a uid (``sacct``'s
    ``CANCELLED by 1001``) or a name (slurmrestd's ``kill_request_user``). The uid is
    named from the hub host's users (the user's own first); None when not known here."""
    if not who.isdigit():
        return who or None
    if who == "0":
        return "root"
    account = posix.lookup_posix_account(username)
    if account is not None and str(account.uid) == who:
        return username
    try:
        return pwd.getpwuid(int(who)).pw_name
    except (KeyError, OverflowError):
        return None


class JobHistory:
    """The hub-wide accounting lookups of vanished jobs.

    Callers arriving within ``window`` seconds share one
    :meth:`~hpcspawner.slurm.SlurmDriver.job_history` call; each job is asked about once
    (its answer, or its failure, is remembered); "no accounting" is remembered for
    ``no_accounting_ttl`` seconds, in which nobody is asked.
    """

    def __init__(
        self,
        driver,
        *,
        window: float = 0.2,
        timeout: float = 15.0,
        no_accounting_ttl: float = 300.0,
        logger: logging.Logger | logging.LoggerAdapter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.driver = driver
        self.window = window
        self.timeout = timeout
        self.no_accounting_ttl = no_accounting_ttl
        self.log = logger or log
        self._clock = clock
        self._known: OrderedDict[str, JobEnd | None] = OrderedDict()
        #: the ids the next lookup asks about, and the lookup (waiting out its window)
        self._gathering: set[str] = set()
        self._next: asyncio.Task | None = None
        #: job id -> the lookup asking about it now
        self._asking: dict[str, asyncio.Task] = {}
        self._no_accounting_at: float | None = None
        self._failing = False
        #: lookups made (one driver call each), for tests
        self.lookups = 0

    async def end_of(self, job_id: str, username: str) -> JobEnd | None:
        """How ``username``'s job ``job_id`` ended, as accounting recorded it; None when
        accounting does not know it (yet), is not there, could not be asked, or
        answers about another user's job (a reused id)."""
        if job_id not in self._known:
            if self._no_accounting():
                return None
            task = self._asking.get(job_id)
            if task is None:
                self._gathering.add(job_id)
                if self._next is None:
                    self._next = asyncio.ensure_future(self._lookup())
                task = self._next
            await asyncio.shield(task)
        end = self._known.get(job_id)
        if end is None or not end.ended:
            return None
        if end.user != username:
            self.log.warning(
                "Accounting's job %s is %s's, not %s's: not using it", job_id, end.user, username
            )
            return None
        return end

    def _no_accounting(self) -> bool:
        at = self._no_accounting_at
        return at is not None and self._clock() - at < self.no_accounting_ttl

    async def _lookup(self) -> None:
        await asyncio.sleep(self.window)  # the batching window: jobs vanish together
        ids = sorted(self._gathering, key=lambda job_id: (len(job_id), job_id))
        self._gathering, self._next = set(), None
        current = asyncio.current_task()
        for job_id in ids:
            self._asking[job_id] = current
        try:
            found = await self._ask(ids)
        finally:
            for job_id in ids:
                self._asking.pop(job_id, None)
        for job_id in ids:
            self._known[job_id] = found.get(job_id)
            self._known.move_to_end(job_id)
        while len(self._known) > REMEMBERED:
            self._known.popitem(last=False)

    async def _ask(self, ids: list[str]) -> dict[str, JobEnd]:
        """The driver's answer for ``ids``; {} (logged) when there is none."""
        self.lookups += 1
        try:
            answer = await asyncio.wait_for(self.driver.job_history(ids), self.timeout)
        except (SlurmError, asyncio.TimeoutError) as e:
            level = logging.DEBUG if self._failing else logging.WARNING
            self._failing = True
            self.log.log(
                level,
                "Could not ask Slurm's accounting how job(s) %s ended: %s",
                ",".join(ids),
                str(e) or f"no answer within {self.timeout:g} s",
            )
            return {}
        except ParseError as e:
            self.log.error("Could not understand Slurm's accounting about job(s) %s: %s", ids, e)
            return {}
        except Exception:
            self.log.exception("Asking Slurm's accounting about job(s) %s failed", ids)
            return {}
        if self._failing:
            self.log.info("Slurm's accounting answers again")
        self._failing = False
        if answer is None:
            if not self._no_accounting():
                self.log.info("Slurm keeps no job accounting: ended jobs are not looked up")
            self._no_accounting_at = self._clock()
            return {}
        return answer

    async def close(self) -> None:
        """Cancel a lookup in flight (at hub shutdown)."""
        await cancel_and_wait((self._next, *self._asking.values()), self.log)


async def why_ended(
    history: JobHistory, status: JobStatus, username: str, *, ask: bool = True
) -> tuple[str, str]:
    """(why the job of ``status`` ended, in words; its state for the metrics, "" when not
    known). From squeue's last record, or, when squeue no longer lists the job, from
    accounting (:meth:`JobHistory.end_of`) unless not to ``ask`` (the hub is ending it)."""
    if status.info is not None:
        return messages.end_reason(status.info), status.info.state.split(" ")[0]
    end = await history.end_of(status.job_id, username) if ask else None
    if end is None:
        return messages.JOB_UNKNOWN, ""
    reason = messages.history_reason(end, username, lambda who: canceller_name(who, username))
    return reason, end.state


__all__ = ["REMEMBERED", "JobHistory", "canceller_name", "why_ended"]
