"""hpcspawner.spawner.clusterinfo, .slurm.records, .slurm.snapshot, .slurm.hostlist: parsers, host lists, summaries, policy, cache.

``tests/unit/data`` holds outputs recorded from the real local cluster by
``record_clusterinfo.sh`` and synthetic ones in the same format for what the
test cluster does not show (drained and down nodes, typed GPUs, limits, accounting);
see the README there.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from fakeslurm import FakeCluster, FakeSlurm

from hpcspawner.resources.offer import narrow_policy
from hpcspawner.resources.options import PartitionPolicy, Policy
from hpcspawner.slurm.errors import SlurmError
from hpcspawner.slurm.hostlist import HostlistError, expand_hostlist
from hpcspawner.slurm.records import (
    NO_ACCOUNTING_RE,
    UNTYPED,
    Association,
    NodeInfo,
    ParseError,
    PartitionInfo,
    association_choices,
    parse_associations,
    parse_gres_gpus,
    parse_node_state,
    parse_nodes,
    parse_partitions,
    parse_record,
    parse_time_minutes,
    parse_tres_gpus,
    sacctmgr_args,
)
from hpcspawner.slurm.snapshot import ClusterSnapshot, summarize
from hpcspawner.spawner.clusterinfo import ClusterInfo

DATA = Path(__file__).parent / "data"


def recorded(name: str) -> str:
    return (DATA / name).read_text()


def local_snapshot(nodes_file: str = "scontrol_nodes_idle.txt") -> ClusterSnapshot:
    return summarize(
        parse_partitions(recorded("scontrol_partitions.txt")),
        parse_nodes(recorded(nodes_file)),
        taken_at=1000.0,
    )


def synthetic_snapshot() -> ClusterSnapshot:
    return summarize(
        parse_partitions(recorded("scontrol_partitions_synthetic.txt")),
        parse_nodes(recorded("scontrol_nodes_synthetic.txt")),
        taken_at=1000.0,
    )


async def within(awaitable, timeout: float = 5.0):
    return await asyncio.wait_for(awaitable, timeout)


# ---------------------------------------------------------------- host lists

HOSTLISTS = [
    pytest.param("vm", ["vm"], id="single"),
    pytest.param("n[1-2],vm", ["n1", "n2", "vm"], id="local-compute"),
    pytest.param("n[1-2]", ["n1", "n2"], id="range"),
    pytest.param("node[01-03,10]", ["node01", "node02", "node03", "node10"], id="padded-list"),
    pytest.param("a[8-10]", ["a8", "a9", "a10"], id="unpadded-grows"),
    pytest.param("a[08-10]", ["a08", "a09", "a10"], id="padded-grows"),
    pytest.param("gpu[1],cpu[3-3]", ["gpu1", "cpu3"], id="one-element-ranges"),
    pytest.param("r[1-2]n[1-2]", ["r1n1", "r1n2", "r2n1", "r2n2"], id="two-dimensions"),
    pytest.param("n[1-2]-ib", ["n1-ib", "n2-ib"], id="suffix"),
    pytest.param("x-1.example.org,y", ["x-1.example.org", "y"], id="plain-names"),
    pytest.param("(null)", [], id="null"),
    pytest.param("", [], id="empty"),
]


@pytest.mark.parametrize("text, expected", HOSTLISTS)
def test_expand_hostlist(text, expected):
    assert expand_hostlist(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("n[1-2", id="unclosed"),
        pytest.param("n1-2]", id="unopened"),
        pytest.param("n[[1-2]]", id="nested"),
        pytest.param("n[2-1]", id="backwards"),
        pytest.param("n[a-b]", id="letters"),
        pytest.param("n[1-]", id="open-range"),
        pytest.param("n[]", id="empty-range"),
        pytest.param("n1,,n2", id="empty-name"),
        pytest.param("n1 n2", id="space"),
        pytest.param("n[1-1000000]", id="too-many"),
    ],
)
def test_expand_hostlist_rejects(text):
    with pytest.raises(HostlistError):
        expand_hostlist(text)


# ---------------------------------------------------------------- key=value records


def test_record_splits_free_text_only_at_known_keys():
    line = (
        "NodeName=x OS=Linux 6.1 #1 SMP foo=bar  RealMemory=10 State=IDLE+DRAIN "
        "Reason=bad dimm, see ticket=12 [root@2026-11-21T09:00:00] Comment=call vendor"
    )
    fields = parse_record(line, "NodeName", frozenset({"RealMemory", "State", "Comment"}))
    assert fields == {
        "NodeName": "x",
        "OS": "Linux 6.1 #1 SMP foo=bar",
        "RealMemory": "10",
        "State": "IDLE+DRAIN",
        "Reason": "bad dimm, see ticket=12 [root@2026-11-21T09:00:00]",
        "Comment": "call vendor",
    }


def test_record_free_text_may_name_keys_already_seen():
    line = "NodeName=x State=IDLE+DRAIN Reason=was State=DOWN [root@2026-11-21T09:00:00] Comment=c"
    fields = parse_record(line, "NodeName", frozenset({"State", "Comment"}))
    assert fields["Reason"] == "was State=DOWN [root@2026-11-21T09:00:00]"
    assert (fields["State"], fields["Comment"]) == ("IDLE+DRAIN", "c")


def test_record_keeps_empty_values_and_values_with_equals():
    fields = parse_record(
        "PartitionName=p TRES=cpu=2,mem=10M AllocTRES= JobDefaults=DefMemPerGPU=1 X=1",
        "PartitionName",
        frozenset(),
    )
    assert fields == {
        "PartitionName": "p",
        "TRES": "cpu=2,mem=10M",
        "AllocTRES": "",
        "JobDefaults": "DefMemPerGPU=1",
        "X": "1",
    }


@pytest.mark.parametrize(
    "line",
    [
        pytest.param("NodeName=a State=IDLE State=DOWN", id="duplicate-key"),
        pytest.param("PartitionName=a State=UP", id="wrong-record"),
        pytest.param(" NodeName=a", id="leading-space"),
        pytest.param("garbage", id="garbage"),
    ],
)
def test_record_rejects(line):
    with pytest.raises(ParseError):
        parse_record(line, "NodeName", frozenset())


# ---------------------------------------------------------------- values

TIMES = [
    pytest.param("01:00:00", 60, id="hour"),
    pytest.param("00:30:00", 30, id="half-hour"),
    pytest.param("1-00:00:00", 1440, id="day"),
    pytest.param("2-12:30:59", 2 * 1440 + 12 * 60 + 30, id="seconds-rounded-down"),
    pytest.param("UNLIMITED", None, id="unlimited"),
    pytest.param("INFINITE", None, id="infinite"),
    pytest.param("NONE", None, id="none"),
]


@pytest.mark.parametrize("text, minutes", TIMES)
def test_parse_time_minutes(text, minutes):
    assert parse_time_minutes(text) == minutes


@pytest.mark.parametrize("text", ["1h", "60", "1:00", "-1:00:00", "01:00:0"])
def test_parse_time_minutes_rejects(text):
    with pytest.raises(ParseError):
        parse_time_minutes(text)


STATES = [
    pytest.param("IDLE", "idle", set(), id="idle"),
    pytest.param("MIXED", "mixed", set(), id="mixed"),
    pytest.param("ALLOCATED", "allocated", set(), id="allocated"),
    pytest.param("IDLE+DRAIN", "idle", {"drain"}, id="drained"),
    pytest.param("MIXED+DRAIN", "mixed", {"drain"}, id="draining"),
    pytest.param("DOWN+NOT_RESPONDING", "down", {"not_responding"}, id="down-not-responding"),
    pytest.param("DOWN+DRAIN+NOT_RESPONDING", "down", {"drain", "not_responding"}, id="down-drain"),
    pytest.param(
        "IDLE+CLOUD+POWERED_DOWN", "idle", {"cloud", "powered_down"}, id="cloud-powered-down"
    ),
    pytest.param("DOWN*", "down", {"not_responding"}, id="sinfo-star"),
    pytest.param("idle~", "idle", {"powered_down"}, id="sinfo-tilde"),
    pytest.param("DRAINED", "idle", {"drain"}, id="sinfo-drained"),
    pytest.param("DRAINING", "allocated", {"drain"}, id="sinfo-draining"),
    pytest.param("UNKNOWN", "unknown", set(), id="unknown"),
]


@pytest.mark.parametrize("text, base, flags", STATES)
def test_parse_node_state(text, base, flags):
    assert parse_node_state(text) == (base, frozenset(flags))


@pytest.mark.parametrize("text", ["", "SLEEPING", "+DRAIN"])
def test_parse_node_state_rejects(text):
    with pytest.raises(ParseError):
        parse_node_state(text)


GRES = [
    pytest.param("gpu:fake:2", {"fake": 2}, id="typed"),
    pytest.param("gpu:fake:1(IDX:0)", {"fake": 1}, id="used-index"),
    pytest.param("gpu:fake:0(IDX:N/A)", {"fake": 0}, id="used-none"),
    pytest.param("gpu:0", {UNTYPED: 0}, id="untyped-zero"),
    pytest.param("gpu:4(S:0-1)", {UNTYPED: 4}, id="untyped-socket"),
    pytest.param(
        "gpu:a100:3(IDX:0,2-3),gpu:v100:0(IDX:N/A),mps:0",
        {"a100": 3, "v100": 0},
        id="several-types-commas-in-index",
    ),
    pytest.param(
        "gpu:h200_3g.71gb:6(S:0-1),VramPerGpu:no_consume:32G", {"h200_3g.71gb": 6}, id="mig"
    ),
    pytest.param("gpu:no_consume:2", {UNTYPED: 2}, id="no-consume"),
    pytest.param("mps:100,shard:8", {}, id="no-gpus"),
    pytest.param("(null)", {}, id="null"),
]


@pytest.mark.parametrize("text, gpus", GRES)
def test_parse_gres_gpus(text, gpus):
    assert parse_gres_gpus(text) == gpus


@pytest.mark.parametrize("text", ["gpu:a:b:c:1", "gpu:fake:two", "gpu:1K"])
def test_parse_gres_gpus_rejects(text):
    with pytest.raises(ParseError):
        parse_gres_gpus(text)


TRES = [
    pytest.param("cpu=2,mem=23849M,billing=2", None, id="no-gpus"),
    pytest.param("cpu=2,mem=4G,gres/gpu=2", {UNTYPED: 2}, id="untyped"),
    pytest.param("cpu=2,gres/gpu=2,gres/gpu:fake=2", {"fake": 2}, id="typed-wins"),
    pytest.param("", None, id="empty"),
]


@pytest.mark.parametrize("text, gpus", TRES)
def test_parse_tres_gpus(text, gpus):
    assert parse_tres_gpus(text) == gpus


# ---------------------------------------------------------------- partitions

#: name -> (state, default, max time, default time, max nodes, node list)
LOCAL_PARTITIONS = {
    "debug": ("UP", True, 60, 30, None, ("vm",)),
    "compute": ("UP", False, 1440, 60, None, ("n1", "n2", "vm")),
    "gpu": ("UP", False, 240, 60, None, ("vm",)),
    "remote": ("UP", False, 1440, 60, None, ("n1", "n2")),
}


def test_parse_recorded_partitions():
    partitions = parse_partitions(recorded("scontrol_partitions.txt"))
    assert [p.name for p in partitions] == list(LOCAL_PARTITIONS)
    for partition in partitions:
        state, default, max_time, default_time, max_nodes, nodes = LOCAL_PARTITIONS[partition.name]
        assert (
            partition.state,
            partition.default,
            partition.max_time_minutes,
            partition.default_time_minutes,
            partition.max_nodes,
            partition.nodes,
        ) == (state, default, max_time, default_time, max_nodes, nodes), partition.name
        assert partition.max_mem_per_node_mb is None
        assert partition.def_mem_per_node_mb is None
        assert partition.max_cpus_per_node is None
        assert not partition.hidden and not partition.root_only
        assert partition.allow_groups is None and partition.allow_accounts is None


def test_parse_synthetic_partitions():
    partitions = {
        p.name: p for p in parse_partitions(recorded("scontrol_partitions_synthetic.txt"))
    }
    batch, gpu, old, legacy = (partitions[n] for n in ("batch", "gpu", "old", "legacy"))
    assert batch.default and batch.max_time_minutes is None and batch.default_time_minutes is None
    assert batch.max_nodes == 4
    assert batch.nodes == tuple(f"node0{i}" for i in range(1, 7))
    assert batch.def_mem_per_cpu_mb == 1024 and batch.max_mem_per_node_mb is None
    assert gpu.max_time_minutes == 2 * 1440 and gpu.default_time_minutes == 240
    assert gpu.max_cpus_per_node == 16 and gpu.max_mem_per_node_mb == 64000
    assert gpu.allow_groups == ("hpc", "staff")
    assert partitions["offline"].state == "DOWN"
    assert old.state == "INACTIVE" and old.nodes == ()
    assert partitions["secret"].hidden and partitions["admin"].root_only
    assert legacy.max_mem_per_cpu_mb == 4000 and legacy.def_mem_per_cpu_mb == 2000


@pytest.mark.parametrize(
    "output",
    [
        pytest.param("No partitions in the system\n", id="none"),
        pytest.param("", id="empty"),
    ],
)
def test_parse_no_partitions(output):
    assert parse_partitions(output) == []


GOOD_PARTITION = (
    "PartitionName=p Default=NO DefaultTime=NONE Hidden=NO MaxNodes=UNLIMITED "
    "MaxTime=UNLIMITED Nodes=n[1-2] RootOnly=NO State=UP TotalNodes=2"
)


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(GOOD_PARTITION.replace("TotalNodes=2", "TotalNodes=3"), id="node-count"),
        pytest.param(GOOD_PARTITION.replace("State=UP", "State=SIDEWAYS"), id="state"),
        pytest.param(GOOD_PARTITION.replace("MaxTime=UNLIMITED", "MaxTime=soon"), id="time"),
        pytest.param(GOOD_PARTITION.replace("MaxNodes=UNLIMITED", "MaxNodes=-1"), id="max-nodes"),
        pytest.param(GOOD_PARTITION.replace("Default=NO", "Default=MAYBE"), id="yes-no"),
        pytest.param(GOOD_PARTITION.replace(" MaxTime=UNLIMITED", ""), id="no-max-time"),
        pytest.param(GOOD_PARTITION.replace(" Nodes=n[1-2]", ""), id="no-nodes"),
        pytest.param(GOOD_PARTITION.replace("Nodes=n[1-2]", "Nodes=n[2-1]"), id="bad-hostlist"),
        pytest.param(GOOD_PARTITION + "\n" + GOOD_PARTITION, id="twice"),
        pytest.param("NodeName=vm State=IDLE", id="node-record"),
        pytest.param(
            "slurm_load_partitions error: Unable to contact slurm controller", id="error-text"
        ),
    ],
)
def test_parse_partitions_rejects(line):
    assert parse_partitions(GOOD_PARTITION)  # the base line is fine
    with pytest.raises(ParseError):
        parse_partitions(line)


# ---------------------------------------------------------------- nodes

#: file -> node -> (state, flags, cpus alloc, memory alloc, gpus total, gpus alloc)
RECORDED_NODES = {
    "scontrol_nodes_idle.txt": {
        "vm": ("idle", set(), 0, 0, {"fake": 2}, {}),
        "n1": ("idle", set(), 0, 0, {}, {}),
        "n2": ("idle", set(), 0, 0, {}, {}),
    },
    "scontrol_nodes_busy.txt": {
        "vm": ("mixed", set(), 1, 256, {"fake": 2}, {"fake": 1}),
        "n1": ("mixed", set(), 1, 200, {}, {}),
        "n2": ("idle", set(), 0, 0, {}, {}),
    },
    # without --details there is no GresUsed, and GPUs are no TRES here: unknown
    "scontrol_nodes_busy_nodetails.txt": {
        "vm": ("mixed", set(), 1, 256, {"fake": 2}, None),
        "n1": ("mixed", set(), 1, 200, {}, {}),
        "n2": ("idle", set(), 0, 0, {}, {}),
    },
}


@pytest.mark.parametrize("name", list(RECORDED_NODES))
def test_parse_recorded_nodes(name):
    nodes = {node.name: node for node in parse_nodes(recorded(name))}
    assert set(nodes) == set(RECORDED_NODES[name])
    for node_name, expected in RECORDED_NODES[name].items():
        node = nodes[node_name]
        state, flags, cpus_alloc, memory_alloc, gpus_total, gpus_alloc = expected
        assert (
            node.state,
            node.flags,
            node.cpus_alloc,
            node.memory_alloc_mb,
            node.gpus_total,
            node.gpus_alloc,
        ) == (state, frozenset(flags), cpus_alloc, memory_alloc, gpus_total, gpus_alloc), node_name
        assert node.cpus_total == node.cpus_effective == 2
        assert node.memory_mb == (23849 if node_name == "vm" else 4000)
        assert node.usable and node.reason is None
    assert nodes["vm"].partitions == ("debug", "compute", "gpu")
    assert nodes["n1"].partitions == ("compute", "remote")


#: node -> (state, flags, usable, takes jobs now, idle, cpus effective, gpus total, gpus alloc, reason)
SYNTHETIC_NODES = {
    "gpu1": ("mixed", set(), True, True, False, 30, {"a100": 4, "v100": 2}, {"a100": 3}, None),
    # no --details: allocation from AllocTRES (typed)
    "gpu2": (
        "mixed",
        {"drain"},
        False,
        False,
        False,
        16,
        {"v100": 4},
        {"v100": 1},
        "replace fan, see ticket=4711 [root@2026-11-21T09:00:00]",
    ),
    "node01": ("idle", set(), True, True, True, 32, {}, {}, None),
    "node02": ("mixed", set(), True, True, False, 32, {}, {}, None),
    "node03": ("allocated", set(), True, True, False, 32, {}, {}, None),
    "node04": ("idle", {"maint", "reserved"}, True, False, False, 32, {}, {}, None),
    "node05": (
        "idle",
        {"drain"},
        False,
        False,
        False,
        32,
        {},
        {},
        "disk errors [root@2026-11-20T10:00:00]",
    ),
    "node06": (
        "down",
        {"not_responding"},
        False,
        False,
        False,
        32,
        {},
        {},
        "Not responding [slurm@2026-11-21T07:15:02]",
    ),
    "old1": ("mixed", set(), True, True, False, 8, {UNTYPED: 2}, {UNTYPED: 1}, None),
    "cloud1": ("idle", {"cloud", "powered_down"}, True, True, True, 8, {}, {}, None),
}


def test_parse_synthetic_nodes():
    nodes = {node.name: node for node in parse_nodes(recorded("scontrol_nodes_synthetic.txt"))}
    assert set(nodes) == set(SYNTHETIC_NODES)
    for name, expected in SYNTHETIC_NODES.items():
        node = nodes[name]
        assert (
            node.state,
            node.flags,
            node.usable,
            node.takes_jobs_now,
            node.idle,
            node.cpus_effective,
            node.gpus_total,
            node.gpus_alloc,
            node.reason,
        ) == (expected[0], frozenset(expected[1]), *expected[2:]), name
    assert nodes["node05"].drain and not nodes["node05"].down
    assert nodes["node06"].down and nodes["node06"].not_responding
    assert nodes["gpu1"].free_gpus == {"a100": 1, "v100": 2}
    assert nodes["gpu1"].cpus_total == 32 and nodes["gpu1"].free_cpus == 22


GOOD_NODE = "NodeName=a CPUAlloc=0 CPUTot=2 RealMemory=100 AllocMem=0 State=IDLE"


@pytest.mark.parametrize(
    "line, gpus_alloc",
    [
        pytest.param(GOOD_NODE + " Gres=gpu:2", None, id="gpus-usage-unknown"),
        pytest.param(GOOD_NODE + " Gres=gpu:2 GresUsed=gpu:1", {UNTYPED: 1}, id="untyped"),
        pytest.param(
            GOOD_NODE + " Gres=gpu:a:1,gpu:b:1 CfgTRES=gres/gpu=2 AllocTRES=gres/gpu=1",
            None,
            id="untyped-tres-for-two-types",
        ),
        pytest.param(
            GOOD_NODE + " Gres=gpu:a:2 CfgTRES=gres/gpu=2 AllocTRES=gres/gpu=1",
            {"a": 1},
            id="untyped-tres-one-type",
        ),
        pytest.param(
            GOOD_NODE + " Gres=gpu:a:2 GresUsed=gpu:b:1(IDX:0)", None, id="used-type-not-configured"
        ),
        pytest.param(GOOD_NODE + " CfgTRES=cpu=2,gres/gpu=2 AllocTRES=", {}, id="tres-only"),
    ],
)
def test_gpu_usage_is_unknown_rather_than_guessed(line, gpus_alloc):
    (node,) = parse_nodes(line)
    assert node.gpus_alloc == gpus_alloc


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(GOOD_NODE.replace("CPUTot=2", "CPUTot=two"), id="cpus"),
        pytest.param(GOOD_NODE.replace(" AllocMem=0", ""), id="no-alloc-mem"),
        pytest.param(GOOD_NODE.replace(" State=IDLE", ""), id="no-state"),
        pytest.param(GOOD_NODE.replace("State=IDLE", "State=ASLEEP"), id="odd-state"),
        pytest.param(GOOD_NODE + " Gres=gpu:fake:x", id="gres"),
        pytest.param(GOOD_NODE + "\n" + GOOD_NODE, id="twice"),
        pytest.param("NodeName=a", id="bare"),
    ],
)
def test_parse_nodes_rejects(line):
    assert parse_nodes(GOOD_NODE)
    with pytest.raises(ParseError):
        parse_nodes(line)


def test_parse_no_nodes():
    assert parse_nodes("No nodes in the system\n") == []


# ---------------------------------------------------------------- summaries

SUMMARY_FIELDS = (
    "available",
    "max_runtime_minutes",
    "max_nodes",
    "cpus_per_node",
    "memory_per_node_mb",
    "gpus_per_node",
    "max_gpus_per_node",
    "usable_nodes",
    "idle_nodes",
    "idle_cpus",
    "free_memory_mb",
    "free_gpus",
)

#: nodes file -> partition -> SUMMARY_FIELDS
LOCAL_SUMMARIES = {
    "scontrol_nodes_idle.txt": {
        "debug": (True, 60, 1, 2, 23849, {"fake": 2}, 2, 1, 1, 2, 23849, {"fake": 2}),
        "compute": (True, 1440, 3, 2, 23849, {"fake": 2}, 2, 3, 3, 6, 31849, {"fake": 2}),
        "gpu": (True, 240, 1, 2, 23849, {"fake": 2}, 2, 1, 1, 2, 23849, {"fake": 2}),
        "remote": (True, 1440, 2, 2, 4000, {}, 0, 2, 2, 4, 8000, {}),
    },
    "scontrol_nodes_busy.txt": {
        "debug": (True, 60, 1, 2, 23849, {"fake": 2}, 2, 1, 0, 1, 23593, {"fake": 1}),
        "compute": (True, 1440, 3, 2, 23849, {"fake": 2}, 2, 3, 1, 4, 31393, {"fake": 1}),
        "gpu": (True, 240, 1, 2, 23849, {"fake": 2}, 2, 1, 0, 1, 23593, {"fake": 1}),
        "remote": (True, 1440, 2, 2, 4000, {}, 0, 2, 1, 3, 7800, {}),
    },
    "scontrol_nodes_busy_nodetails.txt": {
        "debug": (True, 60, 1, 2, 23849, {"fake": 2}, 2, 1, 0, 1, 23593, None),
        "remote": (True, 1440, 2, 2, 4000, {}, 0, 2, 1, 3, 7800, {}),
    },
}


@pytest.mark.parametrize(
    "nodes_file, partition",
    [(f, p) for f, partitions in LOCAL_SUMMARIES.items() for p in partitions],
)
def test_summarize_recorded(nodes_file, partition):
    summary = local_snapshot(nodes_file).partitions[partition]
    expected = LOCAL_SUMMARIES[nodes_file][partition]
    assert tuple(getattr(summary, name) for name in SUMMARY_FIELDS) == expected


def test_snapshot_of_recorded_cluster():
    snapshot = local_snapshot()
    assert list(snapshot.partitions) == ["debug", "compute", "gpu", "remote"]
    assert snapshot.default_partition == "debug"
    assert snapshot.taken_at == 1000.0
    assert set(snapshot.nodes) == {"vm", "n1", "n2"}
    assert snapshot.partitions["compute"].nodes == ("n1", "n2", "vm")
    assert snapshot.partitions["debug"].default_runtime_minutes == 30


SYNTHETIC_SUMMARIES = {
    # node01 idle, node02 mixed, node03 full, node04 reserved, node05 drained, node06 down
    "batch": (True, None, 4, 32, 128000, {}, 0, 4, 1, 56, 224000, {}),
    # gpu2 is draining; MaxCPUsPerNode=16, MaxMemPerNode=64000
    "gpu": (
        True,
        2880,
        2,
        16,
        64000,
        {"a100": 4, "v100": 4},
        6,
        1,
        0,
        22,
        192000,
        {"a100": 1, "v100": 2},
    ),
    # partition DOWN, its node fine
    "offline": (False, 480, 1, 32, 128000, {}, 0, 1, 1, 32, 128000, {}),
    # partition UP, every node drained or down
    "broken": (False, 480, 2, 32, 128000, {}, 0, 0, 0, 0, 0, {}),
    "old": (False, None, 0, None, None, {}, None, 0, 0, 0, 0, {}),
    # nodes the node list does not report
    "future": (False, 1440, 2, None, None, {}, None, 0, 0, 0, 0, {}),
    # MaxMemPerCPU=4000 x 8 CPUs caps memory; untyped GPUs
    "legacy": (True, 120, 1, 8, 32000, {UNTYPED: 2}, 2, 1, 0, 7, 60000, {UNTYPED: 1}),
    # powered-down cloud node: usable and idle
    "cloud": (True, 720, 1, 8, 16000, {}, 0, 1, 1, 8, 16000, {}),
}


@pytest.mark.parametrize("partition", list(SYNTHETIC_SUMMARIES))
def test_summarize_synthetic(partition):
    summary = synthetic_snapshot().partitions[partition]
    expected = SYNTHETIC_SUMMARIES[partition]
    assert tuple(getattr(summary, name) for name in SUMMARY_FIELDS) == expected


def test_summarize_unknown_gpu_usage_makes_free_gpus_unknown():
    nodes = parse_nodes(recorded("scontrol_nodes_busy_nodetails.txt"))
    snapshot = summarize(parse_partitions(recorded("scontrol_partitions.txt")), nodes)
    assert snapshot.partitions["gpu"].free_gpus is None
    assert snapshot.partitions["remote"].free_gpus == {}


# ---------------------------------------------------------------- sacctmgr


def test_parse_several_associations():
    associations = parse_associations(recorded("sacctmgr_assoc_several.txt"), "alice")
    assert associations == [
        Association("physics", ("normal", "high"), "normal", None),
        Association("physics", ("normal", "gpu"), "normal", "gpu"),
        Association("chemistry", ("normal",), None, None),
        Association("teaching", ("debug", "normal"), "debug", "legacy"),
    ]
    assert association_choices(associations) == (
        ["physics", "chemistry", "teaching"],
        ["normal", "high", "gpu", "debug"],
    )
    assert association_choices(associations, partition="debug") == (
        ["physics", "chemistry"],
        ["normal", "high"],
    )


def test_parse_associations_none_and_case():
    assert parse_associations("", "alice") == []
    assert parse_associations("alice|a|normal|normal|\n", "Alice") == [
        Association("a", ("normal",), "normal", None)
    ]


@pytest.mark.parametrize(
    "output",
    [
        pytest.param("bob|physics|normal|normal|\n", id="another-user"),
        pytest.param("alice|physics|normal|normal\n", id="four-fields"),
        pytest.param("alice||normal|normal|\n", id="no-account"),
        pytest.param("physics|normal|normal|\n", id="old-format"),
    ],
)
def test_parse_associations_rejects(output):
    with pytest.raises(ParseError):
        parse_associations(output, "alice")


def test_no_accounting_message_is_recognised():
    assert NO_ACCOUNTING_RE.search(recorded("sacctmgr_no_dbd.stderr"))


def test_sacctmgr_args():
    assert sacctmgr_args("alice") == [
        "--noheader",
        "--parsable2",
        "show",
        "assoc",
        "where",
        "user=alice",
        "format=user,account,qos,defaultqos,partition",
    ]


@pytest.mark.parametrize("name", ["alice,bob", "alice format=x", "", "a=b", "-alice", 42, "x" * 65])
def test_sacctmgr_args_refuses_odd_names(name):
    with pytest.raises(ValueError):
        sacctmgr_args(name)


# ---------------------------------------------------------------- narrow_policy


def policy(**partitions) -> Policy:
    return Policy(
        partitions={
            name: PartitionPolicy(name=name, **limits) for name, limits in partitions.items()
        }
    )


LIMITS = ("max_nodes", "max_cpus", "max_memory_mb", "max_gpus", "max_runtime_minutes")

NARROW = [
    pytest.param(
        policy(),
        {
            "debug": (1, 2, 23849, 2, 60),
            "compute": (3, 2, 23849, 2, 1440),
            "gpu": (1, 2, 23849, 2, 240),
            "remote": (2, 2, 4000, 0, 1440),
        },
        id="none-listed-all-up-partitions",
    ),
    pytest.param(
        policy(debug={}, remote={"max_runtime_minutes": 30, "max_memory_mb": 8000}),
        {"debug": (1, 2, 23849, 2, 60), "remote": (2, 2, 4000, 0, 30)},
        id="listed-min-of-both",
    ),
    pytest.param(
        policy(gpu={"max_gpus": 1, "max_cpus": 1, "max_nodes": 5, "max_runtime_minutes": 9999}),
        {"gpu": (1, 1, 23849, 1, 240)},
        id="admin-tighter-or-looser",
    ),
    pytest.param(
        policy(nosuch={"max_cpus": 1}, debug={}),
        {"debug": (1, 2, 23849, 2, 60)},
        id="unknown-partition-dropped",
    ),
    pytest.param(
        policy(nosuch={"max_cpus": 1}),
        {"nosuch": (None, 1, None, None, None)},
        id="none-exists-unchanged",
    ),
]


def limits_of(result: Policy) -> dict:
    return {
        name: tuple(getattr(partition, limit) for limit in LIMITS)
        for name, partition in result.partitions.items()
    }


@pytest.mark.parametrize("admin, expected", NARROW)
def test_narrow_policy(admin, expected):
    assert limits_of(narrow_policy(admin, local_snapshot())) == expected


SYNTHETIC_NARROW = [
    pytest.param(
        policy(),
        {
            "batch": (4, 32, 128000, 0, None),
            "gpu": (2, 16, 64000, 6, 2880),
            "broken": (2, 32, 128000, 0, 480),
            "future": (2, None, None, None, 1440),
            "legacy": (1, 8, 32000, 2, 120),
            "cloud": (1, 8, 16000, 0, 720),
        },
        id="none-listed-skips-down-inactive-hidden-rootonly",
    ),
    pytest.param(
        policy(secret={}, offline={"max_runtime_minutes": 60}, future={"max_cpus": 4}),
        {
            "secret": (1, 32, 128000, 0, 1440),
            "offline": (1, 32, 128000, 0, 60),
            "future": (2, 4, None, None, 1440),
        },
        id="listed-hidden-down-unknown-nodes",
    ),
    pytest.param(
        policy(batch={"max_runtime_minutes": 120}),
        {"batch": (4, 32, 128000, 0, 120)},
        id="unlimited-runtime-keeps-admins",
    ),
]


@pytest.mark.parametrize("admin, expected", SYNTHETIC_NARROW)
def test_narrow_policy_synthetic(admin, expected):
    assert limits_of(narrow_policy(admin, synthetic_snapshot())) == expected


def test_narrow_policy_keeps_everything_else():
    admin = Policy(
        partitions={
            "debug": PartitionPolicy(name="debug", description="Quick tests"),
            "gone": PartitionPolicy(name="gone", description="Retired"),
        },
        accounts=("physics",),
        max_cpus=1,
        defaults={"memory": "1G"},
    )
    narrowed = narrow_policy(admin, local_snapshot())
    assert narrowed.partitions["debug"].description == "Quick tests"
    assert list(narrowed.partitions) == ["debug"]
    assert (narrowed.accounts, narrowed.max_cpus, narrowed.defaults) == (
        ("physics",),
        1,
        {"memory": "1G"},
    )


@pytest.mark.parametrize("admin", [policy(), policy(debug={"max_cpus": 1})])
def test_narrow_policy_without_snapshot_is_unchanged(admin):
    assert narrow_policy(admin, None) is admin


def test_narrow_policy_with_no_up_partition_is_unchanged():
    down = summarize([PartitionInfo("p", "DOWN", True, 60, None, None, ())], [], taken_at=0.0)
    admin = policy()
    assert narrow_policy(admin, down) is admin


# ---------------------------------------------------------------- the cache


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def snapshot_at(taken_at: float) -> ClusterSnapshot:
    return ClusterSnapshot(partitions={}, taken_at=taken_at)


@pytest.fixture
def cluster():
    """The scheduler the cache asks (tests/unit/fakeslurm.py); set its answers per test."""
    return FakeCluster()


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def driver(cluster):
    return FakeSlurm(cluster=cluster)


@pytest.fixture
async def make_info(driver, clock):
    made = []

    def make(**kwargs) -> ClusterInfo:
        kwargs.setdefault("ttl", 60.0)
        kwargs.setdefault("first_wait", 1.0)
        kwargs.setdefault("retry_after", 10.0)
        kwargs.setdefault("association_ttl", 300.0)
        info = ClusterInfo(driver, clock=clock, **kwargs)
        made.append(info)
        return info

    yield make
    for info in made:
        await within(info.close())  # also cancels calls still held


def snapshot_calls(cluster) -> int:
    return cluster.count("cluster_snapshot")


def association_calls(cluster) -> list[str]:
    return [call.args[0] for call in cluster.calls("user_associations")]


async def held(cluster, kind: str, calls: int = 1) -> None:
    """Wait until ``calls`` calls of ``kind`` wait at the cluster's hold."""
    await within(cluster.wait_for(lambda: cluster.held(kind) >= calls))


SLURM_DOWN = SlurmError(["scontrol"], 1, "Unable to contact slurm controller (connect failure)")


async def test_first_call_waits_for_the_first_answer(make_info, cluster):
    first = cluster.snapshot = snapshot_at(1.0)
    info = make_info()
    view = await within(info.snapshot())
    assert (view.snapshot, view.stale, view.error, view.age_s) == (first, False, None, 0.0)
    assert info.refreshes == snapshot_calls(cluster) == 1


async def test_within_ttl_no_scheduler_call(make_info, cluster, clock):
    cluster.snapshot = snapshot_at(1.0)
    info = make_info()
    await within(info.snapshot())
    for _ in range(100):
        clock.now += 0.5
        view = await within(info.snapshot())
        assert not view.stale
    assert view.age_s == pytest.approx(50.0)
    assert snapshot_calls(cluster) == 1


async def test_concurrent_callers_share_one_refresh(make_info, cluster):
    cluster.snapshot = snapshot_at(1.0)
    release = cluster.hold("cluster_snapshot")
    info = make_info()
    callers = [asyncio.ensure_future(info.snapshot()) for _ in range(50)]
    await held(cluster, "cluster_snapshot")  # every caller has asked by then
    release.set()
    views = await within(asyncio.gather(*callers))
    assert {id(view.snapshot) for view in views} == {id(views[0].snapshot)}
    assert views[0].snapshot is not None
    assert snapshot_calls(cluster) == info.refreshes == 1


async def test_after_ttl_old_snapshot_at_once_marked_stale(make_info, cluster, clock):
    old, new = snapshot_at(1.0), snapshot_at(2.0)
    cluster.snapshot = old
    info = make_info()
    await within(info.snapshot())
    clock.now += 61
    cluster.snapshot = new
    release = cluster.hold("cluster_snapshot")  # the scheduler is slow now
    views = [await within(info.snapshot(), timeout=0.5) for _ in range(10)]
    assert all(view.snapshot is old and view.stale and view.error is None for view in views)
    assert views[0].age_s == pytest.approx(61)
    assert snapshot_calls(cluster) == 2  # one refresh for all ten
    release.set()
    await within(cluster.answered("cluster_snapshot", 2))
    view = await within(info.snapshot())
    assert (view.snapshot, view.stale) == (new, False)
    assert snapshot_calls(cluster) == 2


async def test_failed_refresh_keeps_the_last_snapshot(make_info, cluster, clock, caplog):
    old, new = snapshot_at(1.0), snapshot_at(2.0)
    cluster.snapshot = old
    info = make_info()
    await within(info.snapshot())
    clock.now += 61
    cluster.fail("cluster_snapshot", SLURM_DOWN)
    await within(info.snapshot())
    await within(cluster.answered("cluster_snapshot", 2))
    view = await within(info.snapshot())
    assert view.snapshot is old and view.stale
    assert "Unable to contact slurm controller" in view.error
    assert "keeping the last known" in caplog.text
    # no new attempt within retry_after, then one
    clock.now += 5
    await within(info.snapshot())
    assert snapshot_calls(cluster) == 2
    clock.now += 6
    cluster.snapshot = new
    await within(info.snapshot())
    await within(cluster.answered("cluster_snapshot", 3))
    view = await within(info.snapshot())
    assert (view.snapshot, view.stale, view.error) == (new, False, None)
    assert snapshot_calls(cluster) == 3


@pytest.mark.parametrize(
    "failure, message",
    [
        pytest.param(SLURM_DOWN, "Unable to contact slurm controller", id="slurm-error"),
        pytest.param(ParseError("odd"), "unexpected output from Slurm: odd", id="parse-error"),
        pytest.param(RuntimeError("bug"), "RuntimeError: bug", id="unexpected"),
        pytest.param(NotImplementedError(), "NotImplementedError", id="driver-without-it"),
    ],
)
async def test_never_answered_gives_an_empty_view(make_info, cluster, failure, message):
    cluster.fail("cluster_snapshot", failure)
    info = make_info()
    view = await within(info.snapshot())
    assert view.snapshot is None and view.partitions == {} and not view.stale
    assert message in view.error
    # within retry_after: no new attempt, same answer, no wait
    view = await within(info.snapshot(), timeout=0.1)
    assert message in view.error
    assert snapshot_calls(cluster) == 1


async def test_first_wait_bounds_the_wait_for_a_slow_scheduler(make_info, cluster):
    cluster.snapshot = snapshot_at(1.0)
    release = cluster.hold("cluster_snapshot")
    info = make_info(first_wait=0.05)
    # the 0.05 s are the behaviour under test: the caller gives up waiting after first_wait
    view = await within(info.snapshot(), timeout=1.0)
    assert view.snapshot is None
    assert "not answered within 0.05 s" in view.error
    # the refresh goes on; callers meanwhile wait again (bounded), and share it
    view = await within(info.snapshot(), timeout=1.0)
    assert view.snapshot is None and snapshot_calls(cluster) == 1
    release.set()
    await within(cluster.answered("cluster_snapshot", 1))
    view = await within(info.snapshot())
    assert view.snapshot is not None and view.error is None


async def test_cancelled_caller_does_not_cancel_the_refresh(make_info, cluster):
    cluster.snapshot = snapshot_at(1.0)
    release = cluster.hold("cluster_snapshot")
    info = make_info()
    caller = asyncio.ensure_future(info.snapshot())
    await held(cluster, "cluster_snapshot")
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await within(caller)
    release.set()
    await within(cluster.answered("cluster_snapshot", 1))
    assert (await within(info.snapshot())).snapshot is not None
    assert snapshot_calls(cluster) == 1


async def test_cached_never_refreshes(make_info, cluster):
    info = make_info()
    assert info.cached().snapshot is None
    assert snapshot_calls(cluster) == 0


async def test_close_cancels_a_refresh_in_flight(make_info, cluster):
    cluster.snapshot = snapshot_at(1.0)
    cluster.hold("cluster_snapshot")
    info = make_info(first_wait=0.01)
    await within(info.snapshot())
    await held(cluster, "cluster_snapshot")
    await within(info.close())
    assert [call.outcome for call in cluster.calls("cluster_snapshot")] == ["cancelled"]


# ---------------------------------------------------------------- associations cache

ALICE = [Association("physics", ("normal",), "normal", None)]
BOB = [Association("chemistry", ("normal", "high"), "normal", None)]
NO_DBD = SlurmError(["sacctmgr"], 1, "Problem talking to the database: Connection refused")


async def test_associations_cached_per_user(make_info, cluster, clock):
    cluster.associations = {"alice": ALICE, "bob": BOB}
    info = make_info()
    assert await within(info.associations("alice")) == ALICE
    assert await within(info.associations("alice")) == ALICE
    assert await within(info.associations("bob")) == BOB
    assert association_calls(cluster) == ["alice", "bob"]
    clock.now += 299
    assert await within(info.associations("alice")) == ALICE
    assert info.association_queries == 2
    # after the TTL: the cached list at once, one query in the background
    clock.now += 2
    cluster.associations["alice"] = BOB
    assert await within(info.associations("alice")) == ALICE
    await within(cluster.answered("user_associations", 3))
    assert await within(info.associations("alice")) == BOB
    assert association_calls(cluster) == ["alice", "bob", "alice"]


async def test_a_users_list_is_a_copy(make_info, cluster):
    cluster.associations = {"alice": ALICE}
    info = make_info()
    (await within(info.associations("alice"))).clear()
    assert await within(info.associations("alice")) == ALICE


async def test_no_accounting_costs_one_query_per_ttl_for_the_hub(make_info, cluster, clock):
    cluster.associations = {name: None for name in ("alice", "bob", "carol")}
    info = make_info()
    for name in ("alice", "bob", "carol", "alice"):
        assert await within(info.associations(name)) is None
    assert association_calls(cluster) == ["alice"]
    clock.now += 301
    for name in ("bob", "carol"):
        assert await within(info.associations(name)) is None
    assert association_calls(cluster) == ["alice", "bob"]


async def test_no_accounting_concurrent_first_callers_share_one_query(make_info, cluster):
    users = [f"user{i}" for i in range(20)]
    cluster.associations = dict.fromkeys(users)
    release = cluster.hold("user_associations")
    info = make_info()
    callers = [asyncio.ensure_future(info.associations(name)) for name in users]
    await held(cluster, "user_associations")  # every caller has asked by then
    release.set()
    assert await within(asyncio.gather(*callers)) == [None] * 20
    assert association_calls(cluster) == ["user0"]


async def test_with_accounting_concurrent_users_each_asked_once(make_info, cluster):
    cluster.associations = {"alice": ALICE, "bob": BOB}
    info = make_info()
    assert await within(info.associations("alice")) == ALICE  # accounting exists
    release = cluster.hold("user_associations")
    callers = [asyncio.ensure_future(info.associations(n)) for n in ["bob"] * 5 + ["carol"] * 5]
    cluster.associations["carol"] = []
    await held(cluster, "user_associations", 2)  # bob's and carol's
    release.set()
    assert await within(asyncio.gather(*callers)) == [BOB] * 5 + [[]] * 5
    assert sorted(association_calls(cluster)) == ["alice", "bob", "carol"]


async def test_association_errors_fall_back(make_info, cluster, clock, caplog):
    caplog.set_level(logging.WARNING)
    cluster.associations = {"alice": NO_DBD, "bob": BOB}
    info = make_info()
    assert await within(info.associations("alice")) is None
    assert "Connection refused" in caplog.text
    assert await within(info.associations("bob")) == BOB
    # a failing refresh keeps bob's last list; no retry within retry_after
    clock.now += 301
    cluster.associations["bob"] = NO_DBD
    assert await within(info.associations("bob")) == BOB
    await within(cluster.answered("user_associations", 3))
    assert await within(info.associations("bob")) == BOB
    assert association_calls(cluster) == ["alice", "bob", "bob"]
    clock.now += 11
    cluster.associations["bob"] = []
    await within(info.associations("bob"))
    await within(cluster.answered("user_associations", 4))
    assert await within(info.associations("bob")) == []


async def test_associations_of_an_odd_name_are_none(make_info, cluster, caplog):
    # the driver checks the name before any command (as the local driver's sacctmgr_args)
    info = make_info()
    assert await within(info.associations("alice,bob")) is None
    assert "not a user name" in caplog.text
    assert association_calls(cluster) == []


def test_node_info_defaults():
    node = NodeInfo("x", "idle", frozenset(), 4, 0, 4, 1000, 0)
    assert node.idle and node.free_gpus == {} and node.partitions == ()
