"""What the cluster offers, for the spawn page: limits, free resources, accounts.

The pure part sums up the records of :mod:`hpcspawner.slurmrecords`:

- :func:`summarize` turns partitions and nodes into one :class:`ClusterSnapshot`
  of :class:`PartitionSummary` (limits per node, what is free now),
- :func:`narrow_policy` combines the admin's :class:`~hpcspawner.options.Policy`
  with the cluster's limits.

:class:`ClusterInfo` is the hub-wide cache in front of the driver: one
scheduler query per TTL serves every user's spawn page, concurrent callers
share one refresh, and a slow or failing scheduler yields the last known data
marked stale instead of an exception or a wait.

Limits are per node, as the batch script asks for them (``--nodes=N
--ntasks-per-node=1 --cpus-per-task=C --mem=M --gres=gpu:G``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

from .errors import SlurmError
from .options import PartitionPolicy, Policy
from .slurmrecords import (
    NO_ACCOUNTING_RE,
    SCONTROL_NODES_ARGS,
    SCONTROL_PARTITIONS_ARGS,
    UNTYPED,
    Association,
    NodeInfo,
    ParseError,
    PartitionInfo,
    association_choices,
    parse_associations,
    parse_nodes,
    parse_partitions,
    sacctmgr_args,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PartitionSummary:
    """A partition's limits and what is free in it now, as the spawn page shows them.

    Limits are per node and come from the partition's configured nodes, down or
    not (they come back): ``cpus_per_node`` is the *largest* node's CPU count,
    since a one-node job may land on that node; a job asking more than a smaller
    node has simply will not be placed there (Slurm decides). Free counts add up
    the nodes that take jobs now (not down, drained, reserved or in maintenance).
    """

    name: str
    state: str
    default: bool
    #: the partition is UP and at least one of its nodes can run jobs
    available: bool
    max_runtime_minutes: int | None
    default_runtime_minutes: int | None
    #: MaxNodes, but never more than the partition has
    max_nodes: int
    #: largest node's usable CPUs, capped by MaxCPUsPerNode; None: no node known
    cpus_per_node: int | None
    #: largest node's RealMemory, capped by MaxMemPerNode (or MaxMemPerCPU x cpus_per_node)
    memory_per_node_mb: int | None
    #: GPU type -> the most of that type on one node
    gpus_per_node: Mapping[str, int]
    #: the most GPUs (all types) on one node; None: no node known
    max_gpus_per_node: int | None
    nodes: tuple[str, ...]
    usable_nodes: int
    idle_nodes: int
    idle_cpus: int
    free_memory_mb: int
    #: GPU type -> free count; None: some node did not say how many it uses
    free_gpus: Mapping[str, int] | None
    hidden: bool = False
    root_only: bool = False

    @property
    def total_nodes(self) -> int:
        return len(self.nodes)


@dataclass(frozen=True)
class ClusterSnapshot:
    """The cluster at one moment."""

    partitions: Mapping[str, PartitionSummary]
    #: ``time.time()`` when Slurm answered
    taken_at: float
    partition_info: Mapping[str, PartitionInfo] = field(default_factory=dict)
    nodes: Mapping[str, NodeInfo] = field(default_factory=dict)

    @property
    def default_partition(self) -> str | None:
        return next((p.name for p in self.partitions.values() if p.default), None)


# ---------------------------------------------------------------- summary


def _min(*values: int | None) -> int | None:
    present = [value for value in values if value is not None]
    return min(present) if present else None


def summarize_partition(
    partition: PartitionInfo, nodes: Mapping[str, NodeInfo]
) -> PartitionSummary:
    known = [nodes[name] for name in partition.nodes if name in nodes]
    now = [node for node in known if node.takes_jobs_now]
    cpus = _min(
        max((node.cpus_effective for node in known), default=None), partition.max_cpus_per_node
    )
    memory = max((node.memory_mb for node in known), default=None)
    per_cpu_cap = (
        partition.max_mem_per_cpu_mb * cpus
        if partition.max_mem_per_cpu_mb is not None and cpus is not None
        else None
    )
    gpus_per_node: dict[str, int] = {}
    for node in known:
        for kind, count in node.gpus_total.items():
            gpus_per_node[kind] = max(gpus_per_node.get(kind, 0), count)
    free_gpus: dict[str, int] | None = {}
    for node in now:
        node_free = node.free_gpus
        if node_free is None:
            free_gpus = None
            break
        for kind, count in node_free.items():
            free_gpus[kind] = free_gpus.get(kind, 0) + count
    usable = sum(1 for node in known if node.usable)
    return PartitionSummary(
        name=partition.name,
        state=partition.state,
        default=partition.default,
        available=partition.state == "UP" and usable > 0,
        max_runtime_minutes=partition.max_time_minutes,
        default_runtime_minutes=partition.default_time_minutes,
        max_nodes=_min(partition.max_nodes, len(partition.nodes)),
        cpus_per_node=cpus,
        memory_per_node_mb=_min(memory, partition.max_mem_per_node_mb, per_cpu_cap),
        gpus_per_node=gpus_per_node,
        max_gpus_per_node=max((sum(node.gpus_total.values()) for node in known), default=None),
        nodes=partition.nodes,
        usable_nodes=usable,
        idle_nodes=sum(1 for node in now if node.idle),
        idle_cpus=sum(node.free_cpus for node in now),
        free_memory_mb=sum(node.free_memory_mb for node in now),
        free_gpus=free_gpus,
        hidden=partition.hidden,
        root_only=partition.root_only,
    )


def summarize(
    partitions: Iterable[PartitionInfo],
    nodes: Iterable[NodeInfo],
    *,
    taken_at: float | None = None,
) -> ClusterSnapshot:
    """Limits and free resources of every partition, in Slurm's order.

    A node a partition names but ``scontrol show node`` did not report (a FUTURE
    or powered-down cloud node on some versions) counts for nothing.
    """
    partition_info = {partition.name: partition for partition in partitions}
    node_info = {node.name: node for node in nodes}
    return ClusterSnapshot(
        partitions={
            name: summarize_partition(partition, node_info)
            for name, partition in partition_info.items()
        },
        taken_at=time.time() if taken_at is None else taken_at,
        partition_info=partition_info,
        nodes=node_info,
    )


def narrow_policy(policy: Policy, snapshot: ClusterSnapshot | None) -> Policy:
    """The admin's policy within the cluster's facts.

    - The admin lists partitions: keep those Slurm reports, each limit the lower
      of the admin's and Slurm's. If Slurm reports none of them, the policy stays
      as it is (an empty list would mean "any partition"; Slurm rejects at submit).
    - The admin lists none: every UP partition that is neither hidden nor root-only,
      with Slurm's limits.
    - No snapshot (Slurm never answered): the policy unchanged; Slurm still
      enforces its limits at submit.
    """
    if snapshot is None:
        return policy
    if policy.partitions:
        narrowed = {
            name: _narrow_partition(own, snapshot.partitions[name])
            for name, own in policy.partitions.items()
            if name in snapshot.partitions
        }
    else:
        narrowed = {
            summary.name: _narrow_partition(PartitionPolicy(name=summary.name), summary)
            for summary in snapshot.partitions.values()
            if summary.state == "UP" and not summary.hidden and not summary.root_only
        }
    if not narrowed:
        return policy
    return dataclasses.replace(policy, partitions=narrowed)


def _narrow_partition(own: PartitionPolicy, slurm: PartitionSummary) -> PartitionPolicy:
    return dataclasses.replace(
        own,
        max_nodes=_min(own.max_nodes, slurm.max_nodes),
        max_cpus=_min(own.max_cpus, slurm.cpus_per_node),
        max_memory_mb=_min(own.max_memory_mb, slurm.memory_per_node_mb),
        max_gpus=_min(own.max_gpus, slurm.max_gpus_per_node),
        max_runtime_minutes=_min(own.max_runtime_minutes, slurm.max_runtime_minutes),
    )


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


@dataclass
class _Slot:
    """One cached answer and the refresh that renews it."""

    value: object = None
    has_value: bool = False
    #: clock() of the last success / failure
    fetched_at: float = 0.0
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
        logger: logging.Logger | logging.LoggerAdapter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.driver = driver
        self.ttl = ttl
        self.first_wait = first_wait
        self.retry_after = retry_after
        self.association_ttl = association_ttl
        self.log = logger or log
        self._clock = clock
        self._snapshot = _Slot()
        self._associations: dict[str, _Slot] = {}
        #: clock() when sacctmgr last said accounting is / is not available
        self._accounting_at: float | None = None
        self._no_accounting_at: float | None = None
        #: while nobody knows whether accounting exists, one user's query answers for all
        self._probe: asyncio.Task | None = None
        #: scheduler queries made (for tests and benchmarks)
        self.refreshes = 0
        self.association_queries = 0

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
        tasks = [self._snapshot.task, *(slot.task for slot in self._associations.values())]
        for task in tasks:
            if task is not None and not task.done():
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass


__all__ = [
    "NO_ACCOUNTING_RE",
    "SCONTROL_NODES_ARGS",
    "SCONTROL_PARTITIONS_ARGS",
    "UNTYPED",
    "Association",
    "ClusterInfo",
    "ClusterSnapshot",
    "ClusterView",
    "NodeInfo",
    "ParseError",
    "PartitionInfo",
    "PartitionSummary",
    "association_choices",
    "narrow_policy",
    "parse_associations",
    "parse_nodes",
    "parse_partitions",
    "sacctmgr_args",
    "summarize",
]
