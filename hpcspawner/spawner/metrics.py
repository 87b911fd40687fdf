"""hpcspawner's Prometheus metrics, served on the hub's ``/hub/metrics`` beside JupyterHub's.

JupyterHub serves ``/hub/metrics`` from prometheus_client's default registry (to a token
with the ``read:metrics`` scope while ``c.JupyterHub.authenticate_prometheus`` is on, its
default). :data:`METRICS` registers hpcspawner's metrics there when this module is first
imported (by the spawner and by the hub's shared driver). Every name starts with
``hpcspawner_``, and every label is a closed set: never a user name or a job id.

- ``hpcspawner_servers{state}``: servers queued, starting and running, counted at each
  scrape from the hub's spawners and its poller's cache (:func:`server_state`): after a hub
  restart they are what the restored servers are, never a count that drifted;
- ``hpcspawner_poller_jobs``: the jobs the hub's poller follows, also counted at each scrape;
- ``hpcspawner_queue_wait_seconds``: from ``sbatch``'s answer until the poller first sees the
  job running; ``hpcspawner_server_startup_seconds``: from then until the job's server
  reports its port (JupyterHub's ``jupyterhub_server_spawn_duration_seconds`` is the whole
  spawn, the hub's HTTP check included);
- ``hpcspawner_spawn_failures_total{reason}``: failed starts (:func:`spawn_failure_reason`);
- ``hpcspawner_server_stops_total{reason}``: servers that came up and then stopped, by who
  stopped them (:func:`stop_reason`) or why their job ended (:func:`job_end_reason`);
- ``hpcspawner_scheduler_requests_total{driver,command}``: each request that reached Slurm
  (a command run, a slurmrestd request);
  ``hpcspawner_scheduler_operation_seconds{driver,operation}`` and
  ``hpcspawner_scheduler_operation_errors_total{driver,operation,error}``: each driver
  operation (:data:`~hpcspawner.slurm.driver.OPERATIONS`), how long it took and how it
  failed (:func:`~hpcspawner.slurm.errors.failure_kind`);
- ``hpcspawner_poller_cycle_seconds{outcome}``: each status query of the poller (one for
  every job it follows).

A spawner keeps one :class:`ServerRecord` (a few calls from its start, poll and stop); the
hub's :class:`~hpcspawner.spawner.shared.SharedSlurm` wires its driver and poller here and
is counted while the hub runs (:meth:`HubMetrics.watch_hub`). docs/howto/metrics.md is the
admin's side, with a Grafana dashboard.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable, Iterable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from ..slurm import DriverObserver, JobInfo, Liveness, failure_kind
from .errors import SpawnFailure
from .poller import JobStatus
from .settings import DRIVERS

log = logging.getLogger(__name__)

INF = float("inf")

#: From seconds on an idle cluster to a day in a full queue.
QUEUE_WAIT_BUCKETS = (
    1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400, INF,
)  # fmt: skip
#: From the job's start to its server's port: the job's prologue, environment and JupyterLab.
STARTUP_BUCKETS = (1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, INF)
#: A Slurm command or request: milliseconds when well, ``command_timeout`` (30 s) at worst.
SCHEDULER_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, INF)

#: ``hpcspawner_servers``' states.
SERVER_STATES = ("queued", "starting", "running")

#: ``hpcspawner_spawn_failures_total``'s reasons: the ``reason`` of every
#: :class:`~hpcspawner.spawner.errors.SpawnFailure` hpcspawner raises (the account rules'
#: refusals among them), then what this module calls the rest (:func:`spawn_failure_reason`).
SPAWN_FAILURE_REASONS = (
    "invalid-config",
    "invalid-options",
    "no-account",
    "service-account",
    "system-account",
    "high-uid",
    "no-login-shell",
    "certificates",
    "token-file",
    "scheduler-unavailable",
    "job-rejected",
    "queue-timeout",
    "job-ended",
    "start-timeout",
    "cancelled",
    "server-unreachable",
    "error",
    "other",
)

#: Why a server's job ended by itself, by Slurm's state (its first word).
JOB_END_REASONS = {
    "TIMEOUT": "walltime",
    "DEADLINE": "deadline",
    "NODE_FAIL": "node-failure",
    "BOOT_FAIL": "node-failure",
    "PREEMPTED": "preempted",
    "OUT_OF_MEMORY": "out-of-memory",
    "COMPLETED": "server-exited",
    "FAILED": "server-failed",
    "CANCELLED": "cancelled-outside",
}

#: ``hpcspawner_server_stops_total``'s reasons: who asked the hub to stop the server
#: (:func:`stop_reason`), then why its job ended by itself (:func:`job_end_reason`).
STOP_REASONS = (
    "user",
    "admin",
    "culled",
    "service",
    "hub",
    *dict.fromkeys(JOB_END_REASONS.values()),
    "job-unknown",
    "other",
)

#: ``hpcspawner_poller_cycle_seconds``' outcomes.
POLL_OUTCOMES = ("ok", "failed")

#: Seconds before ``c.Spawner.start_timeout`` from which a cancelled start counts as timed out.
TIMEOUT_MARGIN = 1.0


# ---------------------------------------------------------------- what happened, in a word


def spawn_failure_reason(error: BaseException, elapsed: float, start_timeout: float) -> str:
    """The reason label of a start that raised ``error`` after ``elapsed`` seconds.

    A :class:`~hpcspawner.spawner.errors.SpawnFailure` carries its own. JupyterHub ends a
    start that outlives ``c.Spawner.start_timeout`` by cancelling it, as it does when the
    user stops a pending server: a cancellation counts as ``start-timeout`` from
    :data:`TIMEOUT_MARGIN` seconds before the timeout on (JupyterHub's clock starts a
    little before the spawner's), else as ``cancelled``. Anything else is ``error`` (a
    bug, or a failure the spawner does not word).
    """
    if isinstance(error, SpawnFailure):
        reason = error.reason
        return reason if reason in SPAWN_FAILURE_REASONS else "other"
    if isinstance(error, TimeoutError | asyncio.TimeoutError):  # a resumed start's own limit
        return "start-timeout"
    if isinstance(error, asyncio.CancelledError):
        return "start-timeout" if elapsed + TIMEOUT_MARGIN >= start_timeout else "cancelled"
    return "error"


def job_end_reason(state: str) -> str:
    """The stop reason of a server whose job ended by itself in ``state`` (Slurm's, as squeue
    last listed it or accounting recorded it; "": not known, Slurm no longer lists it)."""
    if not state.strip():
        return "job-unknown"
    return JOB_END_REASONS.get(state.split()[0], "other")


def stop_reason(requester: tuple[str, str] | None, owner: str, cullers: Iterable[str]) -> str:
    """The stop reason of a server the hub stops, from who asked (:func:`stop_requester`):
    ``user`` (its owner), ``admin`` (another user), ``culled`` (a service in ``cullers``),
    ``service`` (another service), ``hub`` (no request: the hub itself)."""
    if requester is None:
        return "hub"
    kind, name = requester
    if kind == "service":
        return "culled" if name in cullers else "service"
    return "user" if name == owner else "admin"


def stop_requester() -> tuple[str, str] | None:
    """Who asked the hub to stop the server stopping now: ``("user", name)`` or
    ``("service", name)``; None when no request did (the hub's shutdown, a server the hub
    found dead or unreachable) or it cannot be told.

    Call it from the spawner's ``stop()``.
    """
    # no public hook: JupyterHub does not tell a spawner who stops it. Every stop asked
    # through the hub (the REST API's DELETE .../server that the home page, the admin
    # page and the idle culler send, the removal of a user) runs in
    # BaseHandler.stop_single_user's inner coroutine ``stop``, as a task of its own that
    # holds the request's handler as ``self``; the handler's current_user is who asked.
    # tests/unit/test_hub_internals.py pins it on both tested JupyterHub versions.
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no event loop
        return None
    coro = task.get_coro() if task is not None else None
    if not getattr(coro, "__qualname__", "").endswith(".stop_single_user.<locals>.stop"):
        return None
    frame = getattr(coro, "cr_frame", None)
    handler = frame.f_locals.get("self") if frame is not None else None
    try:
        who = handler.current_user
    except Exception:  # noqa: BLE001 - not a handler after all: nobody to name
        return None
    kind, name = getattr(who, "kind", None), getattr(who, "name", None)
    if kind not in ("user", "service") or not isinstance(name, str):
        return None
    return kind, name


def server_state(spawning: bool, job_host: str, status: JobStatus | None) -> str | None:
    """A server's state for ``hpcspawner_servers``, or None (not counted).

    ``spawning``: its start runs (or JupyterHub still checks it); ``job_host``: the node
    its server reported from; ``status``: the poller's status of its job (None: no job).
    A server whose job is gone counts nowhere; one whose status is unknown counts as it
    was last seen (an unknown job is not gone).
    """
    if status is None:
        return "starting" if spawning else None
    if status.liveness is Liveness.GONE:
        return None
    if spawning:
        info = status.info
        return "queued" if info is None or info.pending else "starting"
    return "running" if job_host else None


def driver_label(cls: type) -> str:
    """The ``driver`` label of a driver class: its short name (``local``, ``ssh``,
    ``rest``), else the class's name."""
    path = f"{cls.__module__}.{cls.__qualname__}"
    for name, known in DRIVERS.items():
        if known == path:
            return name
    return cls.__name__


# ---------------------------------------------------------------- the metrics


class _DriverMetrics(DriverObserver):
    """What one driver tells, into :class:`HubMetrics` under its ``driver`` label."""

    def __init__(self, metrics: HubMetrics, label: str):
        self.metrics = metrics
        self.label = label

    def request(self, command: str) -> None:
        self.metrics.scheduler_requests.labels(self.label, command).inc()

    def operation(self, name: str, seconds: float, error: BaseException | None) -> None:
        if isinstance(error, asyncio.CancelledError):
            return  # cut short by the hub (a start given up): neither an answer nor an error
        self.metrics.scheduler_seconds.labels(self.label, name).observe(seconds)
        if error is not None:
            self.metrics.scheduler_errors.labels(self.label, name, failure_kind(error)).inc()


class HubMetrics:
    """hpcspawner's metrics, registered in ``registry`` (a test gives its own).

    Besides its counters and histograms it is itself a collector: the server and job
    gauges are counted at each scrape from the hubs it watches (:meth:`watch_hub`).
    """

    def __init__(self, registry: CollectorRegistry = REGISTRY):
        self.queue_wait = Histogram(
            "hpcspawner_queue_wait_seconds",
            "Seconds from sbatch's answer until the hub first saw the server's job running",
            buckets=QUEUE_WAIT_BUCKETS,
            registry=registry,
        )
        self.startup = Histogram(
            "hpcspawner_server_startup_seconds",
            "Seconds from the server's job running until its server reported its port",
            buckets=STARTUP_BUCKETS,
            registry=registry,
        )
        self.spawn_failures = Counter(
            "hpcspawner_spawn_failures",
            "Failed starts of servers, by reason",
            ["reason"],
            registry=registry,
        )
        self.stops = Counter(
            "hpcspawner_server_stops",
            "Servers that came up and then stopped, by who stopped them or why their job ended",
            ["reason"],
            registry=registry,
        )
        self.scheduler_requests = Counter(
            "hpcspawner_scheduler_requests",
            "Requests that reached Slurm (commands run, slurmrestd requests), by command",
            ["driver", "command"],
            registry=registry,
        )
        self.scheduler_seconds = Histogram(
            "hpcspawner_scheduler_operation_seconds",
            "Seconds each scheduler operation of the driver took (answered or failed)",
            ["driver", "operation"],
            buckets=SCHEDULER_BUCKETS,
            registry=registry,
        )
        self.scheduler_errors = Counter(
            "hpcspawner_scheduler_operation_errors",
            "Scheduler operations of the driver that failed, by kind of failure",
            ["driver", "operation", "error"],
            registry=registry,
        )
        self.poll_cycle = Histogram(
            "hpcspawner_poller_cycle_seconds",
            "Seconds each status query of the hub's poller (one for all its jobs) took",
            ["outcome"],
            buckets=SCHEDULER_BUCKETS,
            registry=registry,
        )
        for reason in SPAWN_FAILURE_REASONS:
            self.spawn_failures.labels(reason)
        for reason in STOP_REASONS:
            self.stops.labels(reason)
        for outcome in POLL_OUTCOMES:
            self.poll_cycle.labels(outcome)
        #: the hubs whose servers are counted (SharedSlurm objects, by id)
        self._hubs: weakref.WeakValueDictionary[int, object] = weakref.WeakValueDictionary()
        registry.register(self)

    # ------------------------------------------------------------ wiring

    def driver_observer(self, label: str) -> DriverObserver:
        """The observer to give a driver (``label``: :func:`driver_label`)."""
        return _DriverMetrics(self, label)

    def poll_done(self, seconds: float, ok: bool) -> None:
        """A status query of the poller took ``seconds`` (the poller's ``on_query``)."""
        self.poll_cycle.labels("ok" if ok else "failed").observe(seconds)

    def watch_hub(self, hub) -> None:
        """Count ``hub``'s servers (its ``servers``) and poller (its ``tracked_jobs``) at
        each scrape, until :meth:`forget_hub` or until it is gone."""
        self._hubs[id(hub)] = hub

    def forget_hub(self, hub) -> None:
        if self._hubs.get(id(hub)) is hub:
            del self._hubs[id(hub)]

    # ------------------------------------------------------------ the collector

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        servers = GaugeMetricFamily(
            "hpcspawner_servers",
            "Servers by state: queued (its job waits in Slurm's queue), starting (its job "
            "runs, the server is not up yet), running",
            labels=["state"],
        )
        jobs = GaugeMetricFamily("hpcspawner_poller_jobs", "Jobs the hub's poller follows")
        return servers, jobs

    def describe(self):
        return list(self._families())

    def collect(self):
        counts = dict.fromkeys(SERVER_STATES, 0)
        tracked = 0
        for hub in list(self._hubs.values()):
            tracked += hub.tracked_jobs
            for server in list(hub.servers):
                try:
                    state = server.server_state()
                except Exception:
                    log.exception("Could not tell the state of a server for the metrics")
                    continue
                if state in counts:
                    counts[state] += 1
        servers, jobs = self._families()
        for state, count in counts.items():
            servers.add_metric([state], count)
        jobs.add_metric([], tracked)
        return [servers, jobs]


#: The hub's metrics, in prometheus_client's default registry (what /hub/metrics serves).
METRICS = HubMetrics()


# ---------------------------------------------------------------- one server


class ServerRecord:
    """One server's part in the metrics: the times of its current start, its failure, and
    its end, counted once per job. The spawner tells it what happens; it counts."""

    def __init__(
        self,
        cullers: Iterable[str] = (),
        *,
        metrics: HubMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        #: the JupyterHub services whose stops count as ``culled``
        self.cullers = frozenset(cullers)
        self.metrics = metrics if metrics is not None else METRICS
        self.clock = clock
        self._began: float | None = None
        self._submitted: float | None = None
        self._running: float | None = None
        #: the job whose end was counted (its server's stop, or a failed start)
        self._counted_end: str | None = None

    # ------------------------------------------------------------ a start

    def start_began(self) -> None:
        """A start (or a start resumed after a hub restart) begins."""
        self._began = self.clock()
        self._submitted = self._running = None

    def submitted(self) -> None:
        """``sbatch`` answered with the job of this start: its queue wait begins."""
        self._submitted = self.clock()

    def job_changed(self, info: JobInfo | None) -> None:
        """The poller saw the job change (``info``: as Slurm lists it now)."""
        if info is None or not info.running:
            return
        if self._submitted is not None and self._running is None:
            self._running = self.clock()
            self.metrics.queue_wait.observe(self._running - self._submitted)

    def server_up(self) -> None:
        """The job's server reported its port."""
        if self._running is not None:
            self.metrics.startup.observe(self.clock() - self._running)
        self._submitted = self._running = None

    def start_failed(self, error: BaseException, start_timeout: float) -> None:
        """The start raised ``error`` (:func:`spawn_failure_reason`)."""
        elapsed = self.clock() - self._began if self._began is not None else 0.0
        reason = spawn_failure_reason(error, elapsed, start_timeout)
        self.metrics.spawn_failures.labels(reason).inc()
        self._submitted = self._running = None

    # ------------------------------------------------------------ the end of a server that came up

    def job_ended(self, job_id: str, state: str) -> None:
        """The job of the server ended by itself in ``state`` (Slurm's; "": not known)."""
        self._count_end(job_id, job_end_reason(state))

    def hub_stops(self, job_id: str, owner: str, *, checking: bool) -> None:
        """The hub stops the server of ``job_id``, which is alive, on request
        (:func:`stop_requester`) or by itself. ``checking``: JupyterHub gave up waiting
        for the server's first answer (``c.Spawner.http_timeout``): a failed start."""
        if job_id == self._counted_end:
            return
        if checking:
            self._counted_end = job_id
            self.metrics.spawn_failures.labels("server-unreachable").inc()
            return
        self._count_end(job_id, stop_reason(stop_requester(), owner, self.cullers))

    def _count_end(self, job_id: str, reason: str) -> None:
        if job_id == self._counted_end:
            return  # the hub's poll and its stop both see one end
        self._counted_end = job_id
        self.metrics.stops.labels(reason).inc()


__all__ = [
    "JOB_END_REASONS",
    "METRICS",
    "SERVER_STATES",
    "SPAWN_FAILURE_REASONS",
    "STOP_REASONS",
    "HubMetrics",
    "ServerRecord",
    "driver_label",
    "job_end_reason",
    "server_state",
    "spawn_failure_reason",
    "stop_reason",
    "stop_requester",
]
