"""Drill 2: the hub is SIGKILLed with servers running and one still queued.

After a restart with the same database (``cleanup_servers = False``), the
running servers are reachable through the proxy with the same jobs, and the
queued one becomes ready when its job starts: one job per server, none
cancelled, duplicated or orphaned. Then the same with the proxy killed too.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from .drills import record, tagged_jobs
from .hub import Hub, run, squeue_fields

# What JupyterHub does with the spawner here differs between its versions: runs under the
# lowest JupyterHub pyproject.toml allows too (scripts/test.sh).
pytestmark = pytest.mark.jupyterhub_floor

POLL_INTERVAL = 5


@pytest.fixture(scope="module")
def hub(hub_factory):
    hub = hub_factory(poll_interval=POLL_INTERVAL)
    for name in ("alice", "bob", "carol"):
        hub.create_user(name)
    hub.tokens = {name: hub.user_token(name) for name in ("alice", "bob", "carol")}
    return hub


def reachable(hub, name, server) -> int:
    r = hub.session.get(
        f"{hub.url}/user/{name}/{server}/api/status",
        headers={"Authorization": f"token {hub.tokens[name]}"},
        timeout=30,
    )
    return r.status_code


def wait_queued(hub, name, server, timeout=60) -> str:
    """Wait until the server's job is PENDING in Slurm; return its id (from the state)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = tagged_jobs(hub.job_tag, name, server)
        if found and found[0][1] == "PENDING":
            return found[0][0]
        time.sleep(0.3)
    raise AssertionError(f"{name}/{server} not queued: {tagged_jobs(hub.job_tag, name, server)}")


def crash_and_restart(hub: Hub, running, queued, *, kill_proxy: bool) -> dict:
    """Fill debug (2 CPUs) with ``running``, queue ``queued``, SIGKILL the hub, restart it."""
    for key in running:
        r = hub.spawn(*key, options={"partition": "debug", "memory": "512M"})
        assert r.status_code in (201, 202), r.text
    jobs = {key: hub.wait_ready(*key)["state"]["job_id"] for key in running}
    r = hub.spawn(*queued, options={"partition": "debug", "memory": "512M"})
    assert r.status_code == 202, r.text
    queued_job = wait_queued(hub, *queued)

    hub.kill(signal.SIGKILL)
    if kill_proxy:
        Hub._kill_pidfile(Path(hub.directory) / "proxy.pid")
    else:
        # the proxy keeps routing to the running servers while the hub is dead (their
        # unauthenticated /api answers; token checks need the hub)
        for key in running:
            r = hub.session.get(f"{hub.url}/user/{key[0]}/{key[1]}/api", timeout=30)
            assert r.status_code == 200 and "version" in r.json(), (key, r.status_code)
    t_restart = time.monotonic()
    hub.start()
    restart_s = time.monotonic() - t_restart

    # running servers: same jobs, reachable
    for key, job_id in jobs.items():
        model = hub.wait_ready(*key, timeout=60)
        assert model["state"]["job_id"] == job_id, (key, model["state"])
        assert reachable(hub, *key) == 200, key
    # the queued server is still there, still waiting for the same job
    model = hub.server_model(*queued)
    assert model is not None and not model["ready"], model
    assert tagged_jobs(hub.job_tag, *queued) == [(queued_job, "PENDING")]

    # free a CPU: the queued job starts, reports to the new hub, becomes ready
    freed = running[-1]
    hub.stop_server(*freed)
    t_freed = time.monotonic()
    model = hub.wait_ready(*queued, timeout=120)
    ready_s = time.monotonic() - t_freed
    assert model["state"]["job_id"] == queued_job, model["state"]
    assert reachable(hub, *queued) == 200
    # one job per server; nothing cancelled but the one we stopped
    for key, job_id in jobs.items():
        expected = ["RUNNING"] if key != freed else ["CANCELLED"]
        assert squeue_fields(job_id, "%T") == expected, (key, job_id)
    assert tagged_jobs(hub.job_tag, *queued) == [(queued_job, "RUNNING")]
    survivors = [key for key in running if key != freed] + [queued]
    for key in survivors:
        hub.stop_server(*key)
    return {
        "hub_restart_s": round(restart_s, 1),
        "queued_ready_after_cpu_freed_s": round(ready_s, 1),
    }


def test_hub_crash_keeps_running_and_queued_servers(hub):
    figures = crash_and_restart(
        hub, [("alice", "h1"), ("bob", "h1")], ("carol", "h1"), kill_proxy=False
    )
    record("hub-crash", proxy="kept", servers_running=2, servers_queued=1, **figures)


def test_hub_and_proxy_crash_keeps_running_and_queued_servers(hub):
    figures = crash_and_restart(
        hub, [("carol", "h2"), ("alice", "h2")], ("bob", "h2"), kill_proxy=True
    )
    record("hub-crash", proxy="killed", servers_running=2, servers_queued=1, **figures)
    # no job of this hub is left behind
    leftover = run(["squeue", "--noheader", "--format=%k"]).stdout.split()
    assert not [c for c in leftover if c.startswith(f"hpcspawner:{hub.job_tag}:")], leftover
