"""Idle culling end to end, on the real cluster with a real hub and proxy (local driver).

- jupyterhub-idle-culler, run by the hub as a service with the sample config's role, stops
  an idle server, and its job leaves Slurm;
- in the same period, a server whose kernel is busy with one long silent computation is not
  culled (hpcspawner.job.activity marks it active, jupyterhub-singleuser tells the hub); once
  the computation ends, it is culled too;
- with no culler, the job's own safety net (``c.SlurmSpawner.job_idle_timeout``) stops an
  idle server and its job ends by itself, without anyone asking the hub.

Short timeouts throughout: the culler's ``--timeout=30 --cull-every=10``, the servers' activity
reports every 5 s (``JUPYTERHUB_ACTIVITY_INTERVAL``), the job's idle timeout 20 s. About four
minutes in all.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest

from .hub import job_output_file, squeue_fields, tagged_jobs, wait_left_queue
from .kernel import run_cell, start_kernel

# What JupyterHub does with the culler's requests (activity, stops through the REST API)
# differs between its versions: runs under the lowest JupyterHub pyproject.toml allows too.
pytestmark = pytest.mark.jupyterhub_floor

CULL_TIMEOUT = 30  # --timeout
CULL_EVERY = 10  # --cull-every
REPORT_INTERVAL = 5  # JUPYTERHUB_ACTIVITY_INTERVAL: the servers' activity reports to the hub
JOB_IDLE_TIMEOUT = 20  # c.SlurmSpawner.job_idle_timeout
#: the longest a stop may take: scancel, and Slurm dropping the job
STOP_SLACK = 30

SMALL = {"partition": "debug", "cpus": 1, "memory": "512M", "runtime": "0:15:00"}
ON_NODE_N = {"partition": "remote", "cpus": 1, "memory": "512M", "runtime": "0:15:00"}

CULLER_CONFIG = f"""
import sys
c.JupyterHub.services.append({{
    "name": "jupyterhub-idle-culler",
    "command": [
        sys.executable, "-m", "jupyterhub_idle_culler",
        f"--url=http://127.0.0.1:{{c.JupyterHub.hub_port}}/hub/api",
        "--timeout={CULL_TIMEOUT}",
        "--cull-every={CULL_EVERY}",
    ],
}})
c.JupyterHub.load_roles.append({{
    "name": "jupyterhub-idle-culler",
    "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
    "services": ["jupyterhub-idle-culler"],
}})
c.Spawner.environment = {{"JUPYTERHUB_ACTIVITY_INTERVAL": "{REPORT_INTERVAL}"}}
"""

SAFETY_NET_CONFIG = f"""
c.SlurmSpawner.job_idle_timeout = {JOB_IDLE_TIMEOUT}
c.Spawner.environment = {{"JUPYTERHUB_ACTIVITY_INTERVAL": "{REPORT_INTERVAL}"}}
"""


@pytest.fixture(scope="module")
def culler_installed():
    """The hub runs the culler with its own interpreter (this one, see hub.Hub.python)."""
    result = subprocess.run(
        [sys.executable, "-c", "import jupyterhub_idle_culler"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        pytest.fail(
            f"jupyterhub-idle-culler is missing from {sys.prefix}: run "
            f"`sudo scripts/install-deps.sh` (hpcspawner's cull extra)\n{result.stderr}"
        )


@pytest.fixture(scope="module")
def hub(hub_factory, culler_installed):
    hub = hub_factory(extra_config=CULLER_CONFIG)
    yield hub
    hub_factory.stop(hub)


@pytest.fixture(scope="module")
def hub_without_culler(hub_factory):
    # polls Slurm every 5 s: it notices a job that ended by itself soon
    hub = hub_factory(extra_config=SAFETY_NET_CONFIG, poll_interval=5)
    yield hub
    hub_factory.stop(hub)


# ---------------------------------------------------------------- helpers


def wait_until(predicate, timeout: float, what: str, hub, interval: float = 1.0):
    """Call ``predicate`` until it returns something true; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:.0f} s\n{hub.log_tail(80)}")


def request_server(hub, name: str, options: dict) -> str:
    """Ask for ``name``'s default server; a token of the user."""
    hub.create_user(name)
    token = hub.user_token(name)
    r = hub.spawn(name, options=options)
    assert r.status_code in (201, 202), r.text
    return token


def job_when_ready(hub, name: str) -> str:
    return hub.wait_ready(name)["state"]["job_id"]


def is_gone(hub, name: str) -> bool:
    return hub.server_model(name) is None


def seconds_since(timestamp: str) -> float:
    when = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    return (datetime.now(timezone.utc) - when).total_seconds()


def culled_in_log(hub, name: str) -> bool:
    """The culler's own words, in the hub's log (a managed service's output goes there)."""
    return f"Culling server {name} " in hub.log_path.read_text(errors="replace")


# ---------------------------------------------------------------- the hub's culler


def test_an_idle_server_is_culled_and_its_job_leaves_slurm(hub):
    request_server(hub, "alice", SMALL)
    job_id = job_when_ready(hub, "alice")
    ready = time.monotonic()
    wait_until(
        lambda: is_gone(hub, "alice"),
        CULL_TIMEOUT + CULL_EVERY + STOP_SLACK + 30,
        "alice's idle server culled",
        hub,
    )
    culled_after = time.monotonic() - ready
    # the hub's stop() returns once Slurm has dropped the job; allow squeue a moment
    wait_left_queue(job_id, timeout=30)
    assert squeue_fields(job_id, "%T") in (None, ["CANCELLED"], ["COMPLETED"])
    assert culled_in_log(hub, "alice")
    # the stop came through the hub's API, from the culler's service
    log = hub.log_path.read_text(errors="replace")
    assert "DELETE /hub/api/users/alice/server (jupyterhub-idle-culler@" in log
    print(f"alice's idle server culled {culled_after:.0f} s after it was ready")


def test_a_busy_kernel_keeps_its_server_until_the_computation_ends(hub):
    """bob's kernel sleeps for ten minutes, silently; carol's server, started alongside,
    stays idle. The culler stops carol's within the period, never bob's; once bob's
    computation is interrupted, his server is culled in turn."""
    request_server(hub, "carol", ON_NODE_N)
    (carol_job,) = wait_until(
        lambda: tagged_jobs(hub.job_tag, "carol"), 60, "carol's job submitted", hub
    )
    bob_token = request_server(hub, "bob", SMALL)
    # bob's kernel runs as soon as his server is ready, before it could sit idle for long;
    # carol's server may be ready before or after (the log says the culler took it)
    bob_job = job_when_ready(hub, "bob")
    kernel_id = start_kernel(hub, "bob", bob_token)
    run_cell(hub, "bob", bob_token, kernel_id, "import time; time.sleep(600)", wait=False)
    busy_since = time.monotonic()
    # From here on, nothing talks to bob's server: only the busy kernel can keep it.
    observe = 3 * CULL_TIMEOUT + CULL_EVERY
    carol_culled = None
    while time.monotonic() - busy_since < observe or carol_culled is None:
        assert time.monotonic() - busy_since < observe + 120, "carol's idle server not culled"
        model = hub.server_model("bob")
        assert model is not None and model.get("pending") != "stop", (
            f"bob's server, busy, was culled after {time.monotonic() - busy_since:.0f} s\n"
            f"{hub.log_tail(80)}"
        )
        if carol_culled is None and is_gone(hub, "carol"):
            carol_culled = time.monotonic() - busy_since
        time.sleep(2)
    # the idle server went in the same period, and its job with it
    wait_left_queue(carol_job, timeout=30)
    assert culled_in_log(hub, "carol"), "carol's server went, but not by the culler"
    # bob's is still there, its job still running, and the hub hears of its activity
    assert squeue_fields(bob_job, "%T") == ["RUNNING"]
    model = hub.server_model("bob")
    age = seconds_since(model["last_activity"])
    assert age < 3 * REPORT_INTERVAL + CULL_EVERY, (age, model)
    assert not culled_in_log(hub, "bob")

    # the computation ends: the server is idle from now on, and the culler takes it
    r = hub.session.post(
        f"{hub.url}/user/bob/api/kernels/{kernel_id}/interrupt",
        headers={"Authorization": f"token {bob_token}"},
        timeout=30,
    )
    assert r.status_code == 204, r.text
    idle_since = time.monotonic()
    wait_until(
        lambda: is_gone(hub, "bob"),
        CULL_TIMEOUT + CULL_EVERY + REPORT_INTERVAL + STOP_SLACK + 30,
        "bob's server culled once his kernel was idle",
        hub,
    )
    culled_after = time.monotonic() - idle_since
    # the culler waited for the timeout since the last activity (the interrupt, reported
    # within REPORT_INTERVAL), not less
    assert culled_after >= CULL_TIMEOUT - REPORT_INTERVAL - 1, culled_after
    wait_left_queue(bob_job, timeout=30)
    assert culled_in_log(hub, "bob")
    print(
        f"carol (idle) culled {carol_culled:.0f} s into bob's computation; bob kept for "
        f"{observe} s while busy, culled {culled_after:.0f} s after it ended "
        f"(his last activity {age:.0f} s old before that)"
    )


# ---------------------------------------------------------------- the job's safety net


def test_with_no_culler_an_idle_job_ends_by_itself(hub_without_culler):
    hub = hub_without_culler
    request_server(hub, "alice", SMALL)
    job_id = job_when_ready(hub, "alice")
    ready = time.monotonic()
    # the server stops itself (tick: 2 s), the launcher exits, Slurm drops the job; the
    # hub's poller (every 5 s) notices and marks the server stopped
    wait_until(
        lambda: is_gone(hub, "alice"),
        JOB_IDLE_TIMEOUT + 60,
        "alice's idle job ended by itself",
        hub,
    )
    ended_after = time.monotonic() - ready
    wait_left_queue(job_id, timeout=30)
    # nobody cancelled it: it completed, with the server's exit code 0
    assert squeue_fields(job_id, "%T") in (None, ["COMPLETED"])
    # not before the idle timeout: the server was ready a few seconds after its start
    assert ended_after >= JOB_IDLE_TIMEOUT - 10, ended_after
    output = job_output_file("alice", job_id).read_text(errors="replace")
    assert f"c.SlurmSpawner.job_idle_timeout = {JOB_IDLE_TIMEOUT} s" in output, output[-2000:]
    assert "stopping the server; the job ends and frees its allocation" in output
    # the hub was not asked to stop it
    log = hub.log_path.read_text(errors="replace")
    assert "DELETE /hub/api/users/alice/server" not in log
    print(f"alice's idle job ended by itself {ended_after:.0f} s after the server was ready")
