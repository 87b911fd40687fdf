"""LocalSlurmDriver.cluster_snapshot / user_associations and ClusterInfo against the real cluster.

The cluster is shared with other tests, so free counts are only checked where a job of
this module holds resources; limits and node lists come from slurm.conf
(``MULTINODE=2 scripts/cluster/setup.sh``) and do not change.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from hpcspawner.resources.offer import narrow_policy
from hpcspawner.resources.options import PartitionPolicy, Policy
from hpcspawner.slurm.local import LocalSlurmDriver
from hpcspawner.spawner.clusterinfo import ClusterInfo

from .hub import run

#: partition -> (max runtime minutes, default runtime, max nodes, nodes, cpus/node, MB/node, GPUs/node)
EXPECTED = {
    "debug": (60, 30, 1, ("vm",), 2, 23849, {"fake": 2}),
    "compute": (1440, 60, 3, ("n1", "n2", "vm"), 2, 23849, {"fake": 2}),
    "gpu": (240, 60, 1, ("vm",), 2, 23849, {"fake": 2}),
    "remote": (1440, 60, 2, ("n1", "n2"), 2, 4000, {}),
}


async def within(awaitable, timeout: float = 60.0):
    return await asyncio.wait_for(awaitable, timeout)


@pytest.fixture
def driver(cluster):
    return LocalSlurmDriver()


@pytest.fixture
def gpu_job(cluster):
    """A small job of alice's holding one fake GPU, one CPU and 128 MB on vm."""
    result = run(
        [
            "runuser",
            "-u",
            "alice",
            "--",
            "sbatch",
            "--parsable",
            "--chdir=/tmp",
            "--output=/dev/null",
            "--partition=gpu",
            "--gres=gpu:1",
            "--cpus-per-task=1",
            "--mem=128M",
            "--time=2",
            "--job-name=clusterinfo-live",
            "--wrap=sleep 90",
        ]
    )
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip().split(";")[0]
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = run(["squeue", "--noheader", f"--jobs={job_id}", "--format=%T"]).stdout.strip()
            if state == "RUNNING":
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"job {job_id} did not start within 60 s (state {state!r})")
        yield job_id
    finally:
        run(["scancel", job_id])


async def test_cluster_snapshot_has_the_configured_partitions(driver):
    snapshot = await within(driver.cluster_snapshot())
    assert {"debug", "compute", "gpu", "remote"} <= set(snapshot.partitions)
    assert snapshot.default_partition == "debug"
    assert abs(snapshot.taken_at - time.time()) < 60
    for name, expected in EXPECTED.items():
        summary = snapshot.partitions[name]
        assert (
            summary.max_runtime_minutes,
            summary.default_runtime_minutes,
            summary.max_nodes,
            summary.nodes,
            summary.cpus_per_node,
            summary.memory_per_node_mb,
            summary.gpus_per_node,
        ) == expected, name
        assert summary.state == "UP" and summary.available, summary
        assert summary.usable_nodes == len(summary.nodes)
        assert 0 <= summary.idle_cpus <= 2 * len(summary.nodes)
    assert snapshot.nodes["n1"].partitions == ("compute", "remote")
    assert snapshot.nodes["n2"].partitions == ("compute", "remote")
    vm = snapshot.nodes["vm"]
    assert vm.gpus_total == {"fake": 2} and vm.gpus_alloc is not None
    assert driver.calls["scontrol"] == 2


async def test_cluster_snapshot_sees_an_allocated_gpu(driver, gpu_job):
    snapshot = await within(driver.cluster_snapshot())
    vm = snapshot.nodes["vm"]
    assert vm.gpus_alloc.get("fake", 0) >= 1
    assert vm.cpus_alloc >= 1 and vm.memory_alloc_mb >= 128
    assert vm.state in ("mixed", "allocated")
    gpu = snapshot.partitions["gpu"]
    assert gpu.free_gpus["fake"] <= 1
    assert gpu.idle_nodes == 0 and gpu.idle_cpus <= 1
    assert gpu.free_memory_mb <= 23849 - 128


async def test_user_associations_from_slurmdbd(driver):
    """alice's associations of make-site.sh: physics (QOS normal, short, long), chemistry."""
    associations = await within(driver.user_associations("alice"))
    assert driver.calls["sacctmgr"] == 1
    qos = {a.account: set(a.qos) for a in associations}
    assert qos == {"physics": {"normal", "short", "long"}, "chemistry": {"normal", "short"}}
    assert {a.partition for a in associations} == {None}


async def test_cluster_info_one_query_for_many_callers(driver):
    info = ClusterInfo(driver, ttl=60, first_wait=30)
    try:
        views = await within(asyncio.gather(*(info.snapshot() for _ in range(20))))
        assert all(view.snapshot is views[0].snapshot and not view.stale for view in views)
        await within(info.snapshot())
        assert info.refreshes == 1 and driver.calls["scontrol"] == 2
        users = ["alice", "bob", "carol"] * 3
        answers = await within(asyncio.gather(*(info.associations(name) for name in users)))
        accounts = [sorted(a.account for a in answer) for answer in answers]
        assert accounts == [["chemistry", "physics"], ["chemistry"], ["physics"]] * 3
        # one sacctmgr for each user, however many callers asked at once
        assert info.association_queries == 3 and driver.calls["sacctmgr"] == 3
    finally:
        await within(info.close())


async def test_narrow_policy_with_the_live_cluster(driver):
    snapshot = await within(driver.cluster_snapshot())
    admin = Policy(
        partitions={
            "debug": PartitionPolicy(name="debug", max_runtime_minutes=120, max_cpus=1),
            "remote": PartitionPolicy(name="remote", description="Two small nodes"),
            "retired": PartitionPolicy(name="retired"),
        }
    )
    narrowed = narrow_policy(admin, snapshot)
    assert list(narrowed.partitions) == ["debug", "remote"]
    debug, remote = narrowed.partitions["debug"], narrowed.partitions["remote"]
    assert (debug.max_runtime_minutes, debug.max_cpus, debug.max_gpus) == (60, 1, 2)
    assert (remote.max_nodes, remote.max_memory_mb, remote.max_gpus) == (2, 4000, 0)
    assert remote.description == "Two small nodes"
