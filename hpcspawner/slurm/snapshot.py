"""One look at the cluster: partitions and nodes summed up per partition (pure, no I/O).

:func:`summarize` turns the records of :mod:`hpcspawner.slurm.records` into one
:class:`ClusterSnapshot` of :class:`PartitionSummary` (limits per node, what is
free now). It is what :meth:`hpcspawner.slurm.SlurmDriver.cluster_snapshot`
returns; the admin's policy is applied to it outside this package.

Limits are per node, as the batch script asks for them (``--nodes=N
--ntasks-per-node=1 --cpus-per-task=C --mem=M --gres=gpu:G``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .records import NodeInfo, PartitionInfo


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
