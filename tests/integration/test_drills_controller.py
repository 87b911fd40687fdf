"""Drill 1: the Slurm controller goes away (stopped, then hung) under a live hub.

Running servers must survive (only a positive answer from Slurm ends a
server), a spawn during the outage must fail fast with a clear message, the
hub must work again after the controller is back without being restarted, and
a submission whose answer was lost (hung controller) must be found again by
its comment, never submitted twice and never leaked.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from .drills import (
    record,
    restore_cluster,
    slurmctld_pid,
    start_controller,
    stop_controller,
    tagged_jobs,
)
from .hub import squeue_fields

POLL_INTERVAL = 3
SERVERS = [("alice", "o1"), ("bob", "o1"), ("carol", "o1")]


@pytest.fixture(scope="module")
def hub(hub_factory):
    hub = hub_factory(poll_interval=POLL_INTERVAL)
    for name in {name for name, _ in SERVERS}:
        hub.create_user(name)
    hub.tokens = {name: hub.user_token(name) for name, _ in SERVERS}
    return hub


@pytest.fixture
def running(hub):
    """Three running servers (on vm, n1, n2 via partition compute); stopped afterwards."""
    for name, server in SERVERS:
        r = hub.spawn(name, server, options={"partition": "compute", "memory": "512M"})
        assert r.status_code in (201, 202), r.text
    jobs = {key: hub.wait_ready(*key)["state"]["job_id"] for key in SERVERS}
    yield jobs
    for key in SERVERS:
        if hub.server_model(*key) is not None:
            hub.stop_server(*key)


def reachable(hub, name, server) -> int:
    r = hub.session.get(
        f"{hub.url}/user/{name}/{server}/api/status",
        headers={"Authorization": f"token {hub.tokens[name]}"},
        timeout=30,
    )
    return r.status_code


def assert_all_running(hub, jobs):
    for key, job_id in jobs.items():
        model = hub.server_model(*key)
        assert model and model["ready"], (key, model)
        assert model["state"]["job_id"] == job_id, (key, model["state"])
        assert reachable(hub, *key) == 200, key


def test_controller_outage_keeps_servers_and_fails_new_spawns_clearly(hub, running):
    jobs = running
    try:
        t_stop = stop_controller()
        # a spawn during the outage: a clear, fast failure, not a traceback
        t0 = time.monotonic()
        r = hub.spawn("alice", "during", options={"partition": "compute", "memory": "512M"})
        if r.status_code in (201, 202):
            events = hub.progress_events("alice", "during", timeout=120)
            failure = events[-1]
            assert failure.get("failed"), events
            message = failure["message"]
        else:
            assert r.status_code == 503, (r.status_code, r.text)
            message = r.json()["message"]
        spawn_failed_s = time.monotonic() - t0
        assert "The scheduler is not answering" in message, message
        assert "Traceback" not in message
        assert hub.server_model("alice", "during") is None
        # bounded by sbatch's own give-up (MessageTimeout) well within command_timeout (30 s)
        assert spawn_failed_s < 30, spawn_failed_s

        # keep it down for at least two more poll intervals; servers stay
        while time.time() - t_stop < max(4 * POLL_INTERVAL, 15):
            assert_all_running(hub, jobs)
            time.sleep(1)
        outage_s = time.time() - t_stop
        start_controller()
        t_back = time.time()
    finally:
        if not _alive_ctld():
            restore_cluster()

    # nothing was stopped, cancelled or submitted
    assert_all_running(hub, jobs)
    for job_id in jobs.values():
        assert squeue_fields(job_id, "%T") == ["RUNNING"], job_id
    assert tagged_jobs(hub.job_tag, "alice", "during") == []

    # works again without a hub restart
    r = hub.spawn("alice", "after", options={"partition": "compute", "memory": "512M"})
    assert r.status_code in (201, 202), r.text
    hub.wait_ready("alice", "after", timeout=120)
    spawn_after_s = time.time() - t_back
    hub.stop_server("alice", "after")
    record(
        "controller-outage",
        poll_interval=POLL_INTERVAL,
        outage_s=round(outage_s, 1),
        servers_running=len(jobs),
        servers_stopped=0,
        spawn_during_outage_failed_after_s=round(spawn_failed_s, 2),
        message=message,
        restart_to_new_server_ready_s=round(spawn_after_s, 2),
    )


def _alive_ctld() -> bool:
    try:
        os.kill(slurmctld_pid(), 0)
        return True
    except (OSError, ValueError, AssertionError):
        return False


def test_hung_controller_submission_is_found_again_not_repeated(hub, running):
    jobs = running
    pid = slurmctld_pid()
    try:
        os.kill(pid, signal.SIGSTOP)
        t_stop = time.monotonic()
        r = hub.spawn("bob", "hung", options={"partition": "compute", "memory": "512M"})
        assert r.status_code in (201, 202), r.text  # it waits: the answer is not known yet
        # sbatch gives up after MessageTimeout (10 s); the spawner then looks for the job
        time.sleep(20)
        model = hub.server_model("bob", "hung")
        assert model is not None and model["pending"] == "spawn", model
        assert_all_running(hub, jobs)
        os.kill(pid, signal.SIGCONT)
        hung_s = time.monotonic() - t_stop
    finally:
        os.kill(pid, signal.SIGCONT)
    model = hub.wait_ready("bob", "hung", timeout=120)
    ready_s = time.monotonic() - t_stop
    found = tagged_jobs(hub.job_tag, "bob", "hung")
    # exactly one job for this spawn, and it is the server's
    assert [job_id for job_id, _ in found] == [model["state"]["job_id"]], found
    log = hub.log_path.read_text(errors="replace")
    assert "looking for job" in log and "after the lost sbatch answer" in log
    assert_all_running(hub, jobs)
    hub.stop_server("bob", "hung")
    record(
        "controller-hung",
        hung_s=round(hung_s, 1),
        spawn_ready_after_s=round(ready_s, 1),
        jobs_for_the_spawn=len(found),
        servers_stopped=0,
    )
