"""The hub's metrics (hpcspawner.spawner.metrics), each part on its own registry.

- what happened, in a word: the closed sets of spawn failure and stop reasons, the server
  states, the driver's label (tables);
- a real driver (the local one, on fake commands) feeding them through its observer (the
  seam itself: test_driver_observer.py);
- :class:`HubMetrics` on a registry of its own: counters, histograms, and the server and
  job gauges counted from the hubs it watches at each scrape;
- :class:`ServerRecord` on a clock of its own: queue wait, start-up time, a start's
  failure, a server's end counted once;
- the Grafana dashboard in the docs asks only for metrics that exist, and for each.

The whole lifecycle on the in-memory Slurm, through the hub's own registry, is in
test_metrics_lifecycle.py; tests/integration/test_metrics.py scrapes a real hub.
"""

from __future__ import annotations

import ast
import asyncio
import json
import re
from pathlib import Path

import pytest
from fakeslurm import FakeSlurm
from prometheus_client import CollectorRegistry

from hpcspawner.slurm import (
    JobInfo,
    Liveness,
    SlurmError,
    SlurmTimeout,
)
from hpcspawner.slurm.jobstate import SQUEUE_FORMAT
from hpcspawner.slurm.local import LocalSlurmDriver
from hpcspawner.slurm.rest import RESTSlurmDriver
from hpcspawner.slurm.ssh import SSHSlurmDriver
from hpcspawner.spawner import metrics
from hpcspawner.spawner.errors import SpawnFailure
from hpcspawner.spawner.metrics import HubMetrics, ServerRecord
from hpcspawner.spawner.poller import JobStatus

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "docs" / "_static" / "grafana-hpcspawner.json"


def bounded(awaitable, timeout: float = 5.0):
    return asyncio.wait_for(awaitable, timeout)


def job(state: str, job_id: str = "7") -> JobInfo:
    return JobInfo(job_id=job_id, state=state, batch_host="n1" if state == "RUNNING" else None)


def value(registry: CollectorRegistry, name: str, **labels) -> float:
    """A sample's value; 0 for a series that does not exist (yet)."""
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


# ---------------------------------------------------------------- what happened, in a word


@pytest.mark.parametrize(
    ("error", "elapsed", "expected"),
    [
        pytest.param(SpawnFailure("m", reason="job-ended"), 5, "job-ended", id="spawn-failure"),
        pytest.param(SpawnFailure("m", reason="new-thing"), 5, "other", id="unknown-reason"),
        pytest.param(asyncio.TimeoutError(), 5, "start-timeout", id="resumed-start-limit"),
        pytest.param(asyncio.CancelledError(), 10, "cancelled", id="user-stopped-pending"),
        pytest.param(asyncio.CancelledError(), 299.5, "start-timeout", id="hub-start-timeout"),
        pytest.param(asyncio.CancelledError(), 400, "start-timeout", id="after-the-timeout"),
        pytest.param(SlurmError(["sbatch"], 1, "x"), 5, "error", id="unworded-slurm-error"),
        pytest.param(RuntimeError("bug"), 5, "error", id="bug"),
    ],
)
def test_spawn_failure_reason(error, elapsed, expected):
    assert metrics.spawn_failure_reason(error, elapsed, start_timeout=300) == expected
    assert expected in metrics.SPAWN_FAILURE_REASONS


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("TIMEOUT", "walltime"),
        ("DEADLINE", "deadline"),
        ("NODE_FAIL", "node-failure"),
        ("BOOT_FAIL", "node-failure"),
        ("PREEMPTED", "preempted"),
        ("OUT_OF_MEMORY", "out-of-memory"),
        ("COMPLETED", "server-exited"),
        ("FAILED", "server-failed"),
        ("CANCELLED by 1001", "cancelled-outside"),
        ("COMPLETING", "other"),
        ("REVOKED", "other"),
        ("", "job-unknown"),
    ],
)
def test_job_end_reason(state, expected):
    # the state as squeue last listed it, or as accounting recorded it ("": neither knows)
    assert metrics.job_end_reason(state) == expected
    assert expected in metrics.STOP_REASONS


@pytest.mark.parametrize(
    ("requester", "expected"),
    [
        (("user", "alice"), "user"),
        (("user", "root-admin"), "admin"),
        (("service", "idle-culler"), "culled"),
        (("service", "cull-idle"), "culled"),
        (("service", "announcer"), "service"),
        (None, "hub"),
    ],
)
def test_stop_reason(requester, expected):
    assert metrics.stop_reason(requester, "alice", {"idle-culler", "cull-idle"}) == expected
    assert expected in metrics.STOP_REASONS


def status(state: str | None, liveness=Liveness.ALIVE) -> JobStatus:
    return JobStatus("7", liveness, job(state) if state else None)


@pytest.mark.parametrize(
    ("spawning", "job_host", "job_status", "expected"),
    [
        pytest.param(False, "", None, None, id="no-server"),
        pytest.param(True, "", None, "starting", id="before-sbatch"),
        pytest.param(True, "", status(None, Liveness.UNKNOWN), "queued", id="submitted-unseen"),
        pytest.param(True, "", status("PENDING"), "queued", id="pending"),
        pytest.param(True, "", status("CONFIGURING"), "starting", id="nodes-booting"),
        pytest.param(True, "", status("RUNNING"), "starting", id="waiting-for-the-port"),
        pytest.param(True, "n1", status("RUNNING"), "starting", id="hub-checks-it"),
        pytest.param(False, "n1", status("RUNNING"), "running", id="running"),
        pytest.param(
            False, "n1", JobStatus("7", Liveness.UNKNOWN, job("RUNNING")), "running", id="unknown"
        ),
        pytest.param(False, "n1", status("TIMEOUT", Liveness.GONE), None, id="gone"),
        pytest.param(False, "", status("RUNNING"), None, id="failed-start-not-cleared"),
    ],
)
def test_server_state(spawning, job_host, job_status, expected):
    assert metrics.server_state(spawning, job_host, job_status) == expected


@pytest.mark.parametrize(
    ("cls", "label"),
    [
        (LocalSlurmDriver, "local"),
        (SSHSlurmDriver, "ssh"),
        (RESTSlurmDriver, "rest"),
        (FakeSlurm, "FakeSlurm"),
    ],
)
def test_driver_label(cls, label):
    assert metrics.driver_label(cls) == label


def _literal_reasons(call: str, paths, *, first_argument: bool = False) -> set[str]:
    """The constant reasons of every ``call(...)`` in ``paths``: its ``reason=``, or its
    first argument (a MappingError's)."""
    found = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            if getattr(node.func, "id", getattr(node.func, "attr", "")) != call:
                continue
            args = [k.value for k in node.keywords if k.arg == "reason"]
            args += node.args[:1] if first_argument else []
            found |= {a.value for a in args if isinstance(a, ast.Constant)}
    return found


def test_every_spawn_failure_reason_is_in_the_closed_set():
    """The reasons a start fails with: every SpawnFailure's, and the account rules'
    refusals, which userfiles.check_account passes on as SpawnFailures."""
    package = REPO / "hpcspawner"
    spawn = _literal_reasons("SpawnFailure", package.rglob("*.py"))
    refusals = _literal_reasons(
        "MappingError", [package / "accounts" / "rules.py"], first_argument=True
    )
    assert {"invalid-options", "job-ended", "queue-timeout", "job-rejected"} <= spawn
    assert {"service-account", "high-uid"} <= refusals
    reasons = set(metrics.SPAWN_FAILURE_REASONS)
    assert spawn | refusals <= reasons, (spawn | refusals) - reasons


# ---------------------------------------------------------------- a real driver's metrics


FAKE_SLURM = {
    "sbatch": "cat >/dev/null; echo '4242;cluster'",
    "squeue": "echo '4242|RUNNING|None|n1|n1|2030-01-01T00:00:00|debug|alice|1:00:00|0:05|1'",
    "scancel": "echo 'scancel: error: Unable to contact slurm controller (connect failure)' >&2;"
    " exit 1",
}


async def test_the_local_driver_on_fake_commands_feeds_the_hubs_metrics(tmp_path):
    """The real local driver (argv, subprocesses, its errors) under a registry of its own:
    each command is a request, each method an operation, a failure counted by kind."""
    assert SQUEUE_FORMAT.count("|") == 10  # the fake squeue's line has its fields
    for name, body in FAKE_SLURM.items():
        path = tmp_path / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    registry = CollectorRegistry()
    hub = HubMetrics(registry)
    driver = LocalSlurmDriver(
        commands_path=f"{tmp_path}:/usr/bin:/bin", user_command_prefix=[], job_query="batch"
    )
    driver.observer = hub.driver_observer(metrics.driver_label(LocalSlurmDriver))
    assert await bounded(driver.submit("alice", "#!/bin/sh\n", {"A": "1"})) == "4242"
    answer = await bounded(driver.query(["4242"]))
    assert answer["4242"].running
    with pytest.raises(SlurmError):
        await bounded(driver.cancel("alice", "4242"))
    for command in ("sbatch", "squeue", "scancel"):
        assert (
            value(registry, "hpcspawner_scheduler_requests_total", driver="local", command=command)
            == 1
        ), command
    for operation in ("submit", "query", "cancel"):
        assert (
            value(
                registry,
                "hpcspawner_scheduler_operation_seconds_count",
                driver="local",
                operation=operation,
            )
            == 1
        ), operation
    errors = {
        (s.labels["operation"], s.labels["error"]): s.value
        for family in registry.collect()
        if family.name == "hpcspawner_scheduler_operation_errors"
        for s in family.samples
        if s.name.endswith("_total")
    }
    assert errors == {("cancel", "unreachable"): 1}


# ---------------------------------------------------------------- HubMetrics


def test_the_driver_observer_counts_by_driver_command_operation_and_error():
    registry = CollectorRegistry()
    hub = HubMetrics(registry)
    ssh = hub.driver_observer("ssh")
    ssh.request("squeue")
    ssh.request("squeue")
    ssh.operation("query", 0.02, None)
    ssh.operation("submit", 3.0, SlurmTimeout(["sbatch"], 30))
    ssh.operation("submit", 1.0, asyncio.CancelledError())  # cut short by the hub: not counted
    labels = {"driver": "ssh"}
    assert value(registry, "hpcspawner_scheduler_requests_total", command="squeue", **labels) == 2
    assert (
        value(
            registry, "hpcspawner_scheduler_operation_seconds_count", operation="submit", **labels
        )
        == 1
    )
    assert (
        value(
            registry,
            "hpcspawner_scheduler_operation_seconds_bucket",
            operation="query",
            le="0.025",
            **labels,
        )
        == 1
    )
    assert (
        value(
            registry,
            "hpcspawner_scheduler_operation_errors_total",
            operation="submit",
            error="timeout",
            **labels,
        )
        == 1
    )


def test_poll_cycles_by_outcome():
    registry = CollectorRegistry()
    hub = HubMetrics(registry)
    hub.poll_done(0.05, True)
    hub.poll_done(30.0, False)
    hub.poll_done(0.01, True)
    assert value(registry, "hpcspawner_poller_cycle_seconds_count", outcome="ok") == 2
    assert value(registry, "hpcspawner_poller_cycle_seconds_count", outcome="failed") == 1
    assert value(registry, "hpcspawner_poller_cycle_seconds_sum", outcome="failed") == 30.0


def test_reasons_and_outcomes_exist_at_zero_before_anything_happens():
    """Dashboards and alerts see every series from the hub's start on (as JupyterHub
    does for its own), and nothing else: the label sets are closed."""
    registry = CollectorRegistry()
    HubMetrics(registry)
    for reason in metrics.SPAWN_FAILURE_REASONS:
        assert registry.get_sample_value("hpcspawner_spawn_failures_total", {"reason": reason}) == 0
    for reason in metrics.STOP_REASONS:
        assert registry.get_sample_value("hpcspawner_server_stops_total", {"reason": reason}) == 0
    reasons = {
        s.labels["reason"]
        for family in registry.collect()
        if family.name in ("hpcspawner_spawn_failures", "hpcspawner_server_stops")
        for s in family.samples
    }
    assert reasons == set(metrics.SPAWN_FAILURE_REASONS) | set(metrics.STOP_REASONS)


class Server:
    """A spawner as the gauge sees it."""

    def __init__(self, state):
        self.state = state

    def server_state(self):
        if isinstance(self.state, Exception):
            raise self.state
        return self.state


class Hub:
    """A hub as the gauge sees it (a SharedSlurm: its servers, its poller's jobs)."""

    def __init__(self, *servers, tracked: int = 0):
        self.servers = set(servers)
        self.tracked_jobs = tracked


def test_servers_by_state_are_counted_from_the_hubs_at_each_scrape():
    registry = CollectorRegistry()
    metrics_ = HubMetrics(registry)

    def servers(state):
        return value(registry, "hpcspawner_servers", state=state)

    assert [servers(s) for s in metrics.SERVER_STATES] == [0, 0, 0]
    first = Hub(Server("queued"), Server("running"), Server("running"), Server(None), tracked=3)
    broken = Server(RuntimeError("a spawner's bug"))
    second = Hub(Server("starting"), broken, tracked=1)
    metrics_.watch_hub(first)
    metrics_.watch_hub(second)
    assert [servers(s) for s in metrics.SERVER_STATES] == [1, 1, 2]
    assert value(registry, "hpcspawner_poller_jobs") == 4
    # the truth at the next scrape: a server started, one stopped
    next(s for s in first.servers if s.state == "queued").state = "starting"
    second.servers.discard(next(s for s in second.servers if s.state == "starting"))
    assert [servers(s) for s in metrics.SERVER_STATES] == [0, 1, 2]
    metrics_.forget_hub(first)
    assert [servers(s) for s in metrics.SERVER_STATES] == [0, 0, 0]
    assert value(registry, "hpcspawner_poller_jobs") == 1


# ---------------------------------------------------------------- ServerRecord


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def record():
    registry = CollectorRegistry()
    clock = Clock()
    rec = ServerRecord(["idle-culler"], metrics=HubMetrics(registry), clock=clock)
    rec.registry, rec.time = registry, clock
    return rec


def test_queue_wait_and_startup_of_one_start(record):
    registry, clock = record.registry, record.time
    record.start_began()
    clock.now += 2
    record.submitted()
    record.job_changed(job("PENDING"))
    clock.now += 40
    record.job_changed(job("CONFIGURING"))
    clock.now += 20
    record.job_changed(job("RUNNING"))  # 60 s after sbatch answered
    clock.now += 7
    record.job_changed(job("RUNNING"))  # seen again: counted once
    record.server_up()  # 7 s after the job ran
    record.job_changed(job("COMPLETING"))
    assert value(registry, "hpcspawner_queue_wait_seconds_count") == 1
    assert value(registry, "hpcspawner_queue_wait_seconds_sum") == 60
    assert value(registry, "hpcspawner_queue_wait_seconds_bucket", le="60.0") == 1
    assert value(registry, "hpcspawner_queue_wait_seconds_bucket", le="30.0") == 0
    assert value(registry, "hpcspawner_server_startup_seconds_count") == 1
    assert value(registry, "hpcspawner_server_startup_seconds_sum") == 7


def test_a_resumed_start_observes_no_times_it_did_not_see(record):
    """After a hub restart the submission happened in the old hub: no queue wait, no
    start-up time (they would start at the restart)."""
    record.start_began()
    record.job_changed(job("RUNNING"))
    record.server_up()
    assert value(record.registry, "hpcspawner_queue_wait_seconds_count") == 0
    assert value(record.registry, "hpcspawner_server_startup_seconds_count") == 0


def test_a_failed_start_counts_its_reason_and_no_times(record):
    registry, clock = record.registry, record.time
    record.start_began()
    record.submitted()
    clock.now += 300
    record.start_failed(asyncio.CancelledError(), start_timeout=300)
    record.job_changed(job("RUNNING"))  # the cancelled job ran after all: no queue wait
    assert value(registry, "hpcspawner_spawn_failures_total", reason="start-timeout") == 1
    assert value(registry, "hpcspawner_queue_wait_seconds_count") == 0
    record.start_began()
    clock.now += 3
    record.start_failed(asyncio.CancelledError(), start_timeout=300)
    assert value(registry, "hpcspawner_spawn_failures_total", reason="cancelled") == 1


def test_an_end_is_counted_once_per_job(record):
    registry = record.registry
    record.job_ended("7", "TIMEOUT")
    record.job_ended("7", "TIMEOUT")  # the hub's poll and its notification
    record.hub_stops("7", "alice", checking=False)  # JupyterHub's stop after it
    assert value(registry, "hpcspawner_server_stops_total", reason="walltime") == 1
    assert value(registry, "hpcspawner_server_stops_total", reason="hub") == 0
    record.hub_stops("8", "alice", checking=False)  # no request behind it: the hub's own
    record.job_ended("8", "CANCELLED")  # its scancel, seen afterwards
    assert value(registry, "hpcspawner_server_stops_total", reason="hub") == 1
    assert value(registry, "hpcspawner_server_stops_total", reason="cancelled-outside") == 0
    record.job_ended("9", "")
    assert value(registry, "hpcspawner_server_stops_total", reason="job-unknown") == 1


def test_a_server_the_hub_never_reached_is_a_failed_start_not_a_stop(record):
    record.hub_stops("7", "alice", checking=True)
    record.job_ended("7", "CANCELLED")
    assert value(record.registry, "hpcspawner_spawn_failures_total", reason="server-unreachable")
    assert value(record.registry, "hpcspawner_server_stops_total", reason="hub") == 0
    assert value(record.registry, "hpcspawner_server_stops_total", reason="cancelled-outside") == 0


# ---------------------------------------------------------------- the dashboard


def _sample_names(registry: CollectorRegistry) -> set[str]:
    names = set()
    for family in registry.collect():
        names.add(family.name)
        names |= {sample.name for sample in family.samples}
    return names


def test_the_grafana_dashboard_asks_for_each_metric_and_only_those():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    expressions = []
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel.get("description"), f"{panel['title']} has no description"
        for target in panel["targets"]:
            expressions.append(target["expr"])
    used = {name for expr in expressions for name in re.findall(r"\bhpcspawner_\w+", expr)}
    registry = CollectorRegistry()
    hub = HubMetrics(registry)
    hub.driver_observer("local").operation("query", 0.1, SlurmTimeout(["squeue"], 1))
    hub.driver_observer("local").request("squeue")
    known = _sample_names(registry)
    assert used <= known, used - known
    families = {family.name for family in registry.collect()}
    asked = {name for name in families if any(name in expr for expr in expressions)}
    assert asked == families, families - asked
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
