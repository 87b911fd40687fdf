"""The driver interface: scheduler access behind one small set of coroutines.

A driver knows how to reach Slurm; the spawner, the poller and the cluster
cache only ever call these methods. :class:`~hpcspawner.slurm.local.LocalSlurmDriver`
runs the Slurm commands on the hub's host, :class:`~hpcspawner.slurm.ssh.SSHSlurmDriver`
on a login node over SSH (both share :class:`~hpcspawner.slurm.cli.CommandDriver`),
and :class:`~hpcspawner.slurm.rest.RESTSlurmDriver` asks slurmrestd (JWT) over HTTP.

Every driver tells its :attr:`SlurmDriver.observer` what it does: each request that
reaches Slurm (a command run, a slurmrestd request) and each of its :data:`OPERATIONS`
(how long it took, what it raised). The hub's metrics listen there
(:mod:`hpcspawner.spawner.metrics`); a driver implements nothing for it.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import logging
import re
import time

from traitlets import Callable, Enum, Float, Integer, validate
from traitlets.config import LoggingConfigurable

from . import querycost
from .accounting import QOSInfo, UserAccounting
from .errors import SlurmError
from .history import JobEnd
from .jobstate import JobInfo
from .records import Association
from .snapshot import ClusterSnapshot
from .usage import AccountUsage

#: How many bytes (from its end) of a job's output file :meth:`SlurmDriver.read_output` reads.
OUTPUT_TAIL_BYTES = 4096


#: The user names a driver acts as: POSIX names (either case, ASCII, at most 32
#: characters). Nothing that could be read as an option (``-x``) or carry a path.
USER_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")


def may_act_as(username: object) -> bool:
    """True when a driver may run commands as ``username``: a plain name, never root.

    The last guard of every driver whatever its callers checked (who may log in
    is decided by :mod:`hpcspawner.accounts.rules`, above this package).
    """
    return (
        isinstance(username, str)
        and USER_NAME_RE.fullmatch(username) is not None
        and username.lower() != "root"
    )


@dataclasses.dataclass(frozen=True)
class JobOutput:
    """The end of a job's output file, or why it was not read.

    ``text`` is "" when the file was not read; ``problem`` then says why, in words
    for the user that complete "The job's output file ...": "does not exist",
    "is not a regular file (it is a FIFO)", "could not be read within 5 s".
    """

    text: str = ""
    problem: str = ""


#: The driver's operations that its :attr:`~SlurmDriver.observer` is told about: each call,
#: how long it took and what it raised (the hub's metrics label them so). ``query`` is the
#: poller's status query for every job, whichever form it takes (one listing, lookups).
OPERATIONS = (
    "submit",
    "query",
    "cancel",
    "find_jobs",
    "cluster_snapshot",
    "user_associations",
    "qos_limits",
    "user_accounting",
    "job_history",
    "user_usage",
    "install_files",
    "remove_file",
    "read_output",
)


class DriverObserver:
    """Told what a driver does; this one does nothing with it (a driver of its own, a test).

    The hub gives its driver one that feeds its metrics
    (:meth:`hpcspawner.spawner.metrics.HubMetrics.driver_observer`).
    """

    def request(self, command: str) -> None:
        """One request reached Slurm: a command run (``sbatch``, ``squeue``, ...) or a
        slurmrestd request, named as :attr:`SlurmDriver.calls` counts it."""

    def operation(self, name: str, seconds: float, error: BaseException | None) -> None:
        """The operation ``name`` (one of :data:`OPERATIONS`) returned (``error`` None) or
        raised ``error`` after ``seconds``."""


#: Set while an operation is being told: one that runs inside it (a driver delegating the
#: user's files to another driver, a subclass calling ``super()``) is part of it.
_in_operation: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "hpcspawner_driver_operation", default=False
)


def _observed(name: str, method):
    """``method`` (a driver's coroutine ``name``), timed and told to the driver's observer."""

    @functools.wraps(method)
    async def operation(self, *args, **kwargs):
        if _in_operation.get():
            return await method(self, *args, **kwargs)
        token = _in_operation.set(True)
        started = time.perf_counter()
        error = None
        try:
            return await method(self, *args, **kwargs)
        except BaseException as e:
            error = e
            raise
        finally:
            _in_operation.reset(token)
            try:
                self.observer.operation(name, time.perf_counter() - started, error)
            except Exception:
                self.log.exception("The driver's observer failed on %s", name)

    operation.observed_operation = name
    return operation


def _observe_operations(cls: type) -> None:
    """Wrap the :data:`OPERATIONS` that ``cls`` itself defines (see :func:`_observed`)."""
    for name in OPERATIONS:
        method = cls.__dict__.get(name)
        if method is not None and not hasattr(method, "observed_operation"):
            setattr(cls, name, _observed(name, method))


#: The least value of the query settings, and what the refusal tells the admin.
_MINIMUMS = {
    "queue_size_interval": (0, "seconds, 0 or more (0: read it for every status query)"),
    "job_query_concurrency": (1, "at least 1"),
}


class SlurmDriver(LoggingConfigurable):
    """Base class of scheduler drivers. One instance serves the whole hub.

    Each subclass's :data:`OPERATIONS` are timed and told to :attr:`observer` (wrapped
    when the class is made: one seam for every driver, the local, SSH and REST ones, a
    site's own, the tests' fake); each request to Slurm is told by :meth:`_count`.
    """

    #: Whether a job it submits may ask Slurm to signal its batch shell ahead of the time
    #: limit (``#SBATCH --signal=B:USR1@N``, the job's clock's save before the end).
    batch_signal: bool = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _observe_operations(cls)

    command_timeout = Float(
        30.0,
        config=True,
        help="""Seconds a scheduler request may take before it is abandoned.

        Slurm clients wait MessageTimeout (10 s by default) per attempt when the
        controller is down and retry once, so keep this above 2 x MessageTimeout.
        A timed-out status query counts as "unknown" and never stops a server.

            c.LocalSlurmDriver.command_timeout = 30
        """,
    )

    job_query = Enum(
        ["auto", "batch", "each"],
        "auto",
        config=True,
        help="""How the hub's status query asks slurmctld about its jobs (the poller's one
        query per interval for every server).

        - ``"batch"``: one listing of all of them (``squeue --jobs=a,b,...``; slurmrestd's
          ``GET .../jobs``). slurmctld packs *every* job record of the cluster for it, so
          it costs the controller about 0.15 ms + 1.9 µs per job in the cluster's queue
          (19 ms at 10,000 queued jobs), however few servers the hub has.
        - ``"each"``: one lookup per job (``squeue --jobs=ID``; ``GET .../job/ID``), about
          0.25 ms each whatever the queue, :attr:`job_query_concurrency` at a time.
        - ``"auto"``: whichever costs slurmctld less, from the queue's size (see
          :attr:`queue_size_interval`): lookups while the hub has fewer jobs than
          (0.15 + 0.0019 x queued) / 0.25, about 23 at 3,000 queued jobs and 77 at
          10,000; the listing above that, and always on a quiet cluster. See
          :doc:`/topic/architecture` ("The poller").

        Either way a lookup that fails or times out makes every job's status "unknown"
        for this round: no server is stopped for it.

            c.LocalSlurmDriver.job_query = "auto"
        """,
    )

    queue_size_interval = Float(
        300.0,
        config=True,
        help=f"""Seconds between two reads of the cluster's queue size for
        ``job_query = "auto"``: pending plus running jobs, from ``sdiag`` (the command
        drivers) or slurmrestd's ``GET .../diag``.

        Read when a status query needs it, never on a timer of its own (slurmctld itself
        refreshes these counts about once a minute). A read that fails (refused, timed
        out, not understood) never fails the status query: the hub keeps the last size it
        read, or, with none, looks up to {querycost.UNKNOWN_QUEUE_EACH_MAX} jobs one by one
        and lists more; it logs a warning and tries again after this interval. If your
        site refuses ``sdiag`` to the hub, set ``job_query`` to ``"batch"`` or ``"each"``.

            c.LocalSlurmDriver.queue_size_interval = 300
        """,
    )

    job_query_concurrency = Integer(
        4,
        config=True,
        help="""How many per-job lookups (``job_query`` "each", or "auto" on a busy cluster)
        run at once.

        Each is a ``squeue`` process on the hub (local driver), an SSH channel on the one
        connection to the login node (SSH driver: keep it below ``max_sessions_per_host``,
        itself below sshd's ``MaxSessions``, 10 by default, so that submissions still find
        a free channel) or an HTTP request to slurmrestd (REST driver).

            c.LocalSlurmDriver.job_query_concurrency = 4
        """,
    )

    @validate("queue_size_interval", "job_query_concurrency")
    def _check_minimum(self, proposal):
        least, words = _MINIMUMS[proposal.trait.name]
        if proposal.value < least:
            raise ValueError(
                f"c.{type(self).__name__}.{proposal.trait.name} = {proposal.value}: {words}"
            )
        return proposal.value

    monotonic = Callable(
        time.monotonic,
        help="""The clock :attr:`queue_size_interval` is measured with (seconds, never going
        back); a test gives its own.""",
    )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        #: How many scheduler requests this driver made, by kind (for tests and benchmarks).
        self.calls: dict[str, int] = {}
        #: Told of each request and operation (the hub's metrics; nobody by default).
        self.observer: DriverObserver = DriverObserver()
        #: the queue size last read (None: never read), when it was last asked for, and
        #: whether that failed
        self._queued: int | None = None
        self._queued_asked_at: float | None = None
        self._queue_size_failing = False
        self._queue_size_lock = asyncio.Lock()

    def _count(self, kind: str) -> None:
        """One request of ``kind`` reaches Slurm: counted in :attr:`calls`, told to
        :attr:`observer`."""
        self.calls[kind] = self.calls.get(kind, 0) + 1
        try:
            self.observer.request(kind)
        except Exception:
            self.log.exception("The driver's observer failed on %s", kind)

    async def close(self) -> None:
        """Release what the driver holds open (connections); the hub calls it at shutdown.

        Nothing to do for a driver that holds nothing (the local one). The driver
        stays usable: a later call opens what it needs again.
        """

    #: Whether the driver can write and read the user's files (the token file, the TLS
    #: files, a failed job's output): slurmrestd cannot, without a ``files`` delegate.
    handles_files = True

    def config_problems(self) -> list[str]:
        """What in this driver's settings an admin must fix, each naming the setting; checked
        without asking Slurm (``hpcspawner-check-config`` prints them). None by default."""
        return []

    async def submit(self, username: str, script: str, env: dict[str, str]) -> str:
        """Submit ``script`` as ``username`` with ``env``; return the job id.

        ``env`` is the job's whole environment and may hold secrets: it must
        never reach argv, the script, or a log.
        """
        raise NotImplementedError

    async def query(self, job_ids: list[str]) -> dict[str, JobInfo]:
        """Ask about many jobs at once: one listing or one lookup per job, as
        :attr:`job_query` chooses.

        Returns the records Slurm has; a job missing from the result is unknown
        to Slurm (gone). Raises :class:`~hpcspawner.slurm.errors.SlurmError` when
        Slurm could not be asked, about any of the jobs: callers must treat that as
        "unknown" for all of them. A driver implements :meth:`_query_batch` and
        :meth:`_query_one` (and :meth:`_read_queue_size` for ``"auto"``).
        """
        ids = sorted(set(map(str, job_ids)), key=lambda job_id: (len(job_id), job_id))
        if not ids:
            return {}
        if await self._query_plan(len(ids)) == querycost.BATCH:
            return await self._query_batch(ids)
        return await self._query_each(ids)

    async def _query_plan(self, count: int) -> str:
        """:data:`~hpcspawner.slurm.querycost.BATCH` or ``EACH`` for ``count`` jobs."""
        if self.job_query != "auto":
            return self.job_query
        queued = await self.queue_size()
        plan = querycost.choose(count, queued)
        self.log.debug(
            "Status query for %d job(s), %s jobs queued: %s",
            count,
            "unknown" if queued is None else queued,
            plan,
        )
        return plan

    async def queue_size(self) -> int | None:
        """The cluster's queue (pending + running jobs) as last read, read again when the
        last try is :attr:`queue_size_interval` old; None when no read succeeded yet.

        Never raises for a failed read: it logs it and keeps the last size.
        """
        async with self._queue_size_lock:
            now = self.monotonic()
            asked_at = self._queued_asked_at
            if asked_at is not None and now - asked_at < self.queue_size_interval:
                return self._queued
            self._queued_asked_at = now
            try:
                queued = await self._read_queue_size()
            except (SlurmError, ValueError) as e:
                level = logging.DEBUG if self._queue_size_failing else logging.WARNING
                self._queue_size_failing = True
                self.log.log(
                    level,
                    "Could not read the cluster's queue size (%s); the status query "
                    "chooses with %s and asks again in %g s",
                    e,
                    f"no size: per-job lookups for up to {querycost.UNKNOWN_QUEUE_EACH_MAX} jobs"
                    if self._queued is None
                    else f"the last one read ({self._queued} jobs)",
                    self.queue_size_interval,
                )
                return self._queued
            if self._queue_size_failing:
                self.log.info("Read the cluster's queue size again: %s jobs", queued)
            self._queue_size_failing = False
            self._queued = queued
            return queued

    async def _query_each(self, ids: list[str]) -> dict[str, JobInfo]:
        """One :meth:`_query_one` per id, :attr:`job_query_concurrency` at a time; the
        first that fails stops the others and fails the whole query (never a partial
        answer, which would make the failed ids look gone)."""
        found: dict[str, JobInfo] = {}
        todo = iter(ids)

        async def lookups():
            for job_id in todo:  # shared: each id is taken by one worker
                info = await self._query_one(job_id)
                if info is not None:
                    found[job_id] = info

        workers = [
            asyncio.ensure_future(lookups())
            for _ in range(min(self.job_query_concurrency, len(ids)))
        ]
        try:
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        return found

    async def _query_batch(self, job_ids: list[str]) -> dict[str, JobInfo]:
        """One listing for all of ``job_ids`` (distinct, sorted): the records Slurm has.
        Raises :class:`~hpcspawner.slurm.errors.SlurmError` when Slurm could not be asked."""
        raise NotImplementedError

    async def _query_one(self, job_id: str) -> JobInfo | None:
        """One job's record; None when Slurm answers that it does not know the job (gone).
        Raises :class:`~hpcspawner.slurm.errors.SlurmError` when Slurm could not be asked."""
        raise NotImplementedError

    async def _read_queue_size(self) -> int | None:
        """Pending plus running jobs in the cluster, as slurmctld last counted them; None
        when this driver cannot tell. Raises :class:`~hpcspawner.slurm.errors.SlurmError`
        or :class:`ValueError` when the read failed."""
        return None

    async def cancel(self, username: str, job_id: str) -> None:
        """Cancel a job of ``username``. Cancelling a finished job is not an error."""
        raise NotImplementedError

    async def find_jobs(self, username: str, comment: str) -> list[str]:
        """Ids of ``username``'s jobs (in any state Slurm still remembers) whose comment
        is exactly ``comment``. Raises :class:`~hpcspawner.slurm.errors.SlurmError` when
        Slurm could not be asked."""
        raise NotImplementedError

    async def install_files(self, username: str, directory: str, files: dict[str, bytes]) -> None:
        """Write ``files`` (name -> content) into ``directory`` as ``username``: the
        directory mode 0700, each file 0600. Content never reaches argv. Raises
        :class:`~hpcspawner.slurm.errors.SlurmError` on failure."""
        raise NotImplementedError

    async def remove_file(self, username: str, path: str) -> None:
        """Remove the file ``path`` as ``username``; a missing file is not an error.
        Raises :class:`~hpcspawner.slurm.errors.SlurmError` on failure."""
        raise NotImplementedError

    async def read_output(
        self, username: str, path: str, max_bytes: int = OUTPUT_TAIL_BYTES
    ) -> JobOutput:
        """The last ``max_bytes`` bytes of a job's output file, read as ``username``.

        The file is the user's to make anything: a driver reads it only if it is a
        regular file (following symlinks, checked without opening it, so a FIFO or
        ``/dev/zero`` is refused), reads at most ``max_bytes`` from its end, holds at
        most that much (plus error messages), and gives up after a few seconds. It
        never raises for a file it cannot read: it logs why and returns a
        :class:`JobOutput` with empty ``text`` and the ``problem``. The text may hold
        anything (control characters, escapes): callers escape it before logging
        (:func:`hpcspawner.logtext.loggable`).
        """
        return JobOutput(problem="is not read by this driver")

    async def cluster_snapshot(self) -> ClusterSnapshot:
        """Partitions, nodes, limits and free resources, from one look at the cluster.

        Asks as the hub (not as a user). Raises :class:`~hpcspawner.slurm.errors.SlurmError`
        when Slurm could not be asked and :class:`~hpcspawner.slurm.records.ParseError`
        when its answer is not understood. :class:`~hpcspawner.spawner.clusterinfo.ClusterInfo`
        caches the result for the whole hub; call that, not this, from request handlers.
        """
        raise NotImplementedError

    async def user_associations(self, username: str) -> list[Association] | None:
        """``username``'s Slurm associations (account, QOS, partition).

        Returns None when the cluster has no accounting database (no slurmdbd):
        accounts and QOS then come from the admin's config. Raises
        :class:`~hpcspawner.slurm.errors.SlurmError` when accounting exists but could not
        be asked, :class:`ValueError` for a user name that is not a plain name.
        """
        raise NotImplementedError

    async def qos_limits(self) -> dict[str, QOSInfo] | None:
        """Every QOS of the cluster with its per-job limits, by name (asked as the hub).

        None when the cluster has no accounting database, or this driver does not read
        limits (this default). Raises :class:`~hpcspawner.slurm.errors.SlurmError` when
        accounting exists but could not be asked (slurmdbd down)."""
        return None

    async def user_accounting(self, username: str) -> UserAccounting | None:
        """``username``'s default account and their associations' limits, each association's
        ``GrpTRES`` within those of its account and of the accounts above it (asked one level
        of the account tree at a time: :func:`~hpcspawner.slurm.accounting.walk_accounts`).

        None and errors as :meth:`qos_limits`; :class:`ValueError` for a user name that is
        not a plain name."""
        return None

    async def job_history(self, job_ids: list[str]) -> dict[str, JobEnd] | None:
        """How the jobs ``job_ids`` ended, from Slurm's accounting (slurmdbd): one request
        for all of them, as the hub. The hub asks once for each job that left the queue
        without its end being seen (:mod:`hpcspawner.spawner.jobhistory`).

        Returns the records accounting has (a job it does not know is missing), or None
        when this driver or the cluster has no job accounting (the default: a driver that
        does not implement it). Raises :class:`~hpcspawner.slurm.errors.SlurmError` when
        accounting exists but could not be asked (slurmdbd down), and
        :class:`~hpcspawner.slurm.records.ParseError` for an answer not understood.
        """
        return None

    async def user_usage(self, username: str) -> list[AccountUsage] | None:
        """``username``'s use of each of their accounts (``sshare``), as the hub.

        Returns None when this driver cannot tell (the default; slurmrestd 22.05 has no
        shares endpoint). Raises :class:`~hpcspawner.slurm.errors.SlurmError` when Slurm
        could not be asked, :class:`~hpcspawner.slurm.records.ParseError` for an answer
        not understood, :class:`ValueError` for a user name that is not a plain name.
        """
        return None


_observe_operations(SlurmDriver)
