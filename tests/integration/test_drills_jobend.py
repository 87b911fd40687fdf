"""Drills 3 and 5: the job ends underneath a running server.

Four servers run at once, each ended a different way: ``scancel`` from outside,
its walltime (1 minute), the loss of its node (slurmd SIGKILLed; the job was
submitted with --no-requeue, so it ends NODE_FAIL after SlurmdTimeout), and the
death of the server process inside the job. The hub must notice each within one
poll interval, mark the server stopped, and tell the user why.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from .drills import login_session, record, restore_cluster, singleuser_pid, slurmd_pid
from .hub import run, squeue_fields

POLL_INTERVAL = 5


EXTRA_CONFIG = """
c.SlurmSpawner.environments = {
    # keeps the start pending long enough to read its progress events
    "slowstart": {"description": "slow site set-up", "prologue": "sleep 8"},
}
"""


@pytest.fixture(scope="module")
def hub(hub_factory):
    return hub_factory(poll_interval=POLL_INTERVAL, extra_config=EXTRA_CONFIG)


def stopped_state(hub, name, server):
    """The stored state of a stopped server (admin view, include_stopped_servers)."""
    r = hub.api("GET", f"/users/{name}", params={"include_stopped_servers": "1"})
    r.raise_for_status()
    return (r.json().get("servers", {}).get(server) or {}).get("state") or {}


def test_job_ending_underneath_stops_the_server_and_says_why(hub):
    cases = {
        # (user, server): (options, expected reason text)
        ("alice", "cancelled"): ({"partition": "compute"}, "the job was cancelled"),
        ("bob", "walltime"): ({"partition": "debug", "runtime": "1"}, "time limit"),
        ("carol", "nodelost"): ({"partition": "remote"}, "node running the job failed"),
        ("alice", "died"): ({"partition": "debug"}, "the job failed"),
    }
    for name in {name for name, _ in cases}:
        hub.create_user(name)
    for (name, server), (options, _) in cases.items():
        r = hub.spawn(name, server, options={"memory": "512M", **options})
        assert r.status_code in (201, 202), r.text
    jobs = {}
    for name, server in cases:
        model = hub.wait_ready(name, server)
        jobs[name, server] = (model["state"]["job_id"], model["state"]["job_host"])

    node = jobs["carol", "nodelost"][1]
    assert node in ("n1", "n2"), jobs
    events: dict[tuple[str, str], float] = {}
    ended_at: dict[tuple[str, str], float] = {}
    gone_at: dict[tuple[str, str], float] = {}

    def observe(keys, timeout):
        """Record when Slurm says each job ended, and when the hub dropped its server."""
        deadline = time.monotonic() + timeout
        while not set(keys) <= set(gone_at) and time.monotonic() < deadline:
            for key in keys:
                job_id = jobs[key][0]
                if key not in ended_at:
                    state = squeue_fields(job_id, "%T")
                    if state and state[0] not in ("RUNNING", "PENDING", "CONFIGURING"):
                        ended_at[key] = time.time()
                if key not in gone_at and hub.server_model(*key) is None:
                    gone_at[key] = time.time()
            time.sleep(0.25)
        assert set(keys) <= set(gone_at), f"still running: {set(keys) - set(gone_at)}"

    # the server process dies, an admin cancels the job
    os.kill(singleuser_pid("alice", "died"), signal.SIGKILL)
    events["alice", "died"] = time.time()
    assert run(["scancel", jobs["alice", "cancelled"][0]]).returncode == 0
    events["alice", "cancelled"] = time.time()
    observe([("alice", "died"), ("alice", "cancelled")], 30)
    # then the node is lost (last: jobs on a node without slurmd cannot finish ending)
    try:
        events["carol", "nodelost"] = time.time()
        os.kill(slurmd_pid(node), signal.SIGKILL)
        observe(list(cases), 150)
    finally:
        restore_cluster()

    for key, (_, reason) in cases.items():
        job_id = jobs[key][0]
        # the hub noticed within one poll interval of Slurm's answer (+ the test's own 0.25 s
        # loop and one squeue round trip)
        lag = gone_at[key] - ended_at.get(key, gone_at[key])
        assert lag <= POLL_INTERVAL + 1.5, (key, lag)
        last_end = stopped_state(hub, *key).get("last_end")
        assert last_end and last_end["job_id"] == job_id, (key, last_end)
        assert reason in last_end["reason"], (key, last_end)
        record(
            "job-ends-underneath",
            case=key[1],
            poll_interval=POLL_INTERVAL,
            action_to_slurm_end_s=round(ended_at[key] - events[key], 2) if key in events else None,
            slurm_end_to_server_stopped_s=round(lag, 2),
            reason=last_end["reason"],
        )
    # nothing left running: every allocation is freed
    for job_id, _ in jobs.values():
        assert squeue_fields(job_id, "%T", all_states=False) is None, job_id

    # the user sees why: in the spawn form, and as the first event of the next start
    page = login_session(hub, "bob").get(f"{hub.url}/hub/spawn/bob/walltime", timeout=30)
    assert page.status_code == 200, page.status_code
    assert "hpcspawner-last-end" in page.text and "time limit" in page.text, page.text[:2000]
    r = hub.spawn(
        "bob",
        "walltime",
        options={"memory": "512M", "partition": "debug", "environment": "slowstart"},
    )
    assert r.status_code in (201, 202), r.text
    events_seen = hub.progress_events("bob", "walltime", timeout=60)
    previous = f"Your previous server (job {jobs['bob', 'walltime'][0]}) stopped: "
    assert any(e.get("message", "").startswith(previous) for e in events_seen), events_seen
    hub.wait_ready("bob", "walltime")
    # shown once: a normal stop is not "underneath"
    hub.stop_server("bob", "walltime")
    assert stopped_state(hub, "bob", "walltime").get("last_end") is None
