"""The hub's metrics over whole server lifecycles on the in-memory Slurm (fakeslurm.py),
read from prometheus_client's default registry: what /hub/metrics serves.

Spawns, a failed start, stops by who asked and by how the job ended, the scheduler's
requests and operations against the fake scheduler's own record of them, the poller's
queries, and servers by state from the truth, after a hub restart too.

The registry is the process's: other tests count into it as well, so each test reads what
changed while it ran (:class:`Scrape`). tests/integration/test_metrics.py does the same
against a real hub and Slurm.
"""

from __future__ import annotations

import asyncio

import pytest
import test_hub_internals as internals
import test_lifecycle as lifecycle
from fakeslurm import COMMANDS, KINDS, FakeCluster, controller_down, report_port
from prometheus_client import REGISTRY, CollectorRegistry

from hpcspawner.spawner import SlurmSpawner
from hpcspawner.spawner.errors import SpawnFailure
from hpcspawner.spawner.metrics import SERVER_STATES, HubMetrics

# the lifecycle tests' fixtures: one in-memory Slurm, hubs and spawners on it
bounded = lifecycle.bounded
cluster = lifecycle.cluster
db = lifecycle.db
new_hub = lifecycle.new_hub
new_spawner = lifecycle.new_spawner
PORT = lifecycle.PORT

#: The fake driver's ``driver`` label (a driver that is not one of hpcspawner's: its class name).
DRIVER = "FakeSlurm"


class Scrape:
    """The ``hpcspawner_`` samples of the hub's registry now, counts only (counters,
    histograms' ``_count``, gauges): ``after - before`` is what changed, by
    ``name{label=value,...}``."""

    def __init__(self, registry: CollectorRegistry = REGISTRY):
        self.values = {}
        for family in registry.collect():
            if not family.name.startswith("hpcspawner_"):
                continue
            for sample in family.samples:
                if sample.name.endswith(("_created", "_sum", "_bucket")):
                    continue
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                self.values[f"{sample.name}{{{labels}}}"] = sample.value

    def __sub__(self, before: Scrape) -> dict[str, float]:
        keys = self.values.keys() | before.values.keys()
        changes = {k: self.values.get(k, 0) - before.values.get(k, 0) for k in keys}
        return {k: v for k, v in changes.items() if v}


def only(changes: dict[str, float], *prefixes: str) -> dict[str, float]:
    return {k: v for k, v in changes.items() if k.startswith(prefixes)}


def as_recorded(cluster: FakeCluster, since: int) -> dict[str, float]:
    """What the scheduler saw from ``since`` (its history's index), as the metrics count it:
    each call one request of its command and one operation of its driver method."""
    counts: dict[str, float] = {}
    for call in cluster.history[since:]:
        command, operation = COMMANDS[call.kind], call.kind
        for key in (
            f"hpcspawner_scheduler_requests_total{{command={command},driver={DRIVER}}}",
            f"hpcspawner_scheduler_operation_seconds_count{{driver={DRIVER},operation={operation}}}",
        ):
            counts[key] = counts.get(key, 0) + 1
    return counts


def servers(state: str) -> str:
    return f"hpcspawner_servers{{state={state}}}"


async def test_metrics_count_the_spawns_the_failure_and_the_stops_that_happened(
    cluster, new_spawner, new_hub
):
    hub = new_hub()
    before, history = Scrape(), len(cluster.history)

    # alice's job queues first: a queued server, then a running one
    cluster.on_submit = lambda job: cluster.pend(job.job_id, "Priority")
    alice = new_spawner("alice", hub=hub)
    starting = asyncio.ensure_future(alice.start())
    alice_job = await bounded(cluster.next_job("alice"))
    assert only(Scrape() - before, "hpcspawner_servers") == {servers("queued"): 1}
    cluster.on_submit = None
    cluster.run(alice_job.job_id, "n1")
    assert (await bounded(report_port(alice.user, alice_job.token, PORT)))[0] == 201
    assert await bounded(starting) == f"http://n1:{PORT}"
    # bob's runs at once
    bob = new_spawner("bob", hub=hub)
    bob_job, _ = await lifecycle.start_server(bob, cluster)
    assert only(Scrape() - before, "hpcspawner_servers") == {servers("running"): 2}

    # alice's second server fails: its job ends before its server reports
    broken = new_spawner("alice", "broken", hub=hub)
    failing = asyncio.ensure_future(broken.start())
    broken_job = await bounded(cluster.next_job("alice"))
    cluster.end(broken_job.job_id, "FAILED", "NonZeroExitCode")
    with pytest.raises(SpawnFailure):
        await bounded(failing)
    assert broken_job.job_id not in broken.poller.tracked  # not asked about again

    # the hub stops bob's server; alice's reaches its walltime
    await bounded(bob.stop())
    cluster.end(alice_job.job_id, "TIMEOUT", "TimeLimit")
    await bounded(lifecycle._until_poll_is(alice, 1))
    await bounded(alice.stop())  # JupyterHub's stop after the poll: nothing more to count
    for spawner in (alice, bob, broken):
        spawner.clear_state()  # as JupyterHub does after a stop

    changes = Scrape() - before
    assert only(
        changes,
        "hpcspawner_spawn_failures",
        "hpcspawner_server_stops",
        "hpcspawner_queue_wait",
        "hpcspawner_server_startup",
        "hpcspawner_servers",
        "hpcspawner_poller_jobs",  # each job followed until its server's state is cleared
    ) == {
        "hpcspawner_spawn_failures_total{reason=job-ended}": 1,
        "hpcspawner_server_stops_total{reason=hub}": 1,
        "hpcspawner_server_stops_total{reason=walltime}": 1,
        "hpcspawner_queue_wait_seconds_count{}": 2,
        "hpcspawner_server_startup_seconds_count{}": 2,
    }
    # every request and operation the scheduler saw, and nothing else
    assert only(
        changes, "hpcspawner_scheduler_requests", "hpcspawner_scheduler_operation_seconds"
    ) == as_recorded(cluster, history)
    submits = "hpcspawner_scheduler_requests_total{command=sbatch,driver=FakeSlurm}"
    cancels = "hpcspawner_scheduler_requests_total{command=scancel,driver=FakeSlurm}"
    assert (changes[submits], changes[cancels]) == (3, 1)
    assert not only(changes, "hpcspawner_scheduler_operation_errors")
    # each status query of the poller is one query operation of the driver
    cycles = changes["hpcspawner_poller_cycle_seconds_count{outcome=ok}"]
    assert cycles == cluster.count("query") >= 2
    assert "hpcspawner_poller_cycle_seconds_count{outcome=failed}" not in changes
    assert set(KINDS) >= {call.kind for call in cluster.history}


async def test_a_failed_status_query_is_counted_by_kind(cluster, new_spawner):
    spawner = new_spawner()
    await lifecycle.start_server(spawner, cluster)
    before = Scrape()
    cluster.fail("query", controller_down("query"))
    seen = cluster.count("query")
    await bounded(spawner.poller.refresh())
    assert cluster.count("query") == seen + 1
    changes = Scrape() - before
    assert only(changes, "hpcspawner_scheduler_operation_errors", "hpcspawner_poller") == {
        "hpcspawner_scheduler_operation_errors_total"
        "{driver=FakeSlurm,error=unreachable,operation=query}": 1,
        "hpcspawner_poller_cycle_seconds_count{outcome=failed}": 1,
    }
    # the server still runs: an unknown status is not an end
    assert await bounded(spawner.poll()) is None
    assert spawner.server_state() == "running"


@pytest.mark.parametrize(
    ("kind", "name", "reason"),
    [
        pytest.param("service", "idle-culler", "culled", id="idle-culler"),
        pytest.param("service", "announcements", "service", id="another-service"),
        pytest.param("user", "alice", "user", id="the-user"),
        pytest.param("user", "an-admin", "admin", id="an-admin"),
    ],
)
async def test_a_stop_asked_through_the_hub_counts_who_asked(db, kind, name, reason):
    """The idle culler, the user, an admin: each stops the server with a DELETE of the
    REST API, which JupyterHub serves with BaseHandler.stop_single_user."""
    cluster = FakeCluster()
    user = internals.running_server(db, cluster, SlurmSpawner)
    before = Scrape()
    await internals.stop_through_the_api(user, "", kind, name)
    assert cluster.job("42").state == "CANCELLED"
    assert only(Scrape() - before, "hpcspawner_server_stops") == {
        f"hpcspawner_server_stops_total{{reason={reason}}}": 1
    }


async def test_a_server_the_hub_never_reached_is_a_failed_spawn_not_a_stop(cluster, new_spawner):
    spawner = new_spawner()
    job, _ = await lifecycle.start_server(spawner, cluster)
    before = Scrape()
    spawner._waiting_for_response = True  # JupyterHub gave up its HTTP check (http_timeout)
    await bounded(spawner.stop())
    assert job.state == "CANCELLED"
    assert only(Scrape() - before, "hpcspawner_spawn_failures", "hpcspawner_server_stops") == {
        "hpcspawner_spawn_failures_total{reason=server-unreachable}": 1
    }


async def test_after_a_restart_servers_are_counted_as_they_are(cluster, new_spawner, new_hub):
    """The new hub counted nothing up: its gauge is what its restored servers are, and
    the start it resumes adds no queue wait it did not see."""
    old = new_hub()
    alice = new_spawner("alice", hub=old)
    await lifecycle.start_server(alice, cluster)
    bob = new_spawner("bob", hub=old)
    cluster.on_submit = lambda job: cluster.pend(job.job_id, "Resources")
    starting = asyncio.ensure_future(bob.start())
    bob_job = await bounded(cluster.next_job("bob"))
    bob_state = await bounded(
        cluster.wait_for(lambda: bob.get_state().get("job_id") and bob.get_state())
    )
    states = {"alice": alice.get_state(), "bob": bob_state}
    # the old hub dies: nothing it would do on the way out happens
    cluster.fail("cancel")
    cluster.fail("remove_file")
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await bounded(starting)

    hub = new_hub()
    restored = [new_spawner(name, hub=hub, token="") for name in states]
    counted = HubMetrics(CollectorRegistry())  # the new hub's gauge alone
    counted.watch_hub(restored[0].shared)
    before = Scrape()
    for spawner, state in zip(restored, states.values(), strict=True):
        spawner.load_state(state)
    assert await bounded(asyncio.gather(*(s.poll() for s in restored))) == [None, None]
    assert {state: counted_servers(counted, state) for state in SERVER_STATES} == {
        "queued": 1,
        "starting": 0,
        "running": 1,
    }
    cluster.run(bob_job.job_id, "n2")
    assert (await bounded(report_port(restored[1].user, bob_job.token, PORT)))[0] == 201
    assert await bounded(restored[1].get_url()) == f"http://n2:{PORT}"
    assert counted_servers(counted, "running") == 2
    assert (
        only(
            Scrape() - before,
            "hpcspawner_queue_wait",
            "hpcspawner_server_startup",
            "hpcspawner_spawn",
        )
        == {}
    )


def counted_servers(metrics: HubMetrics, state: str) -> float:
    (family,) = [f for f in metrics.collect() if f.name == "hpcspawner_servers"]
    return next(s.value for s in family.samples if s.labels["state"] == state)
