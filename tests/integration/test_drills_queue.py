"""Drill 4: a server's job waits in the queue; the user gives up, or the queue-wait
limit (``c.SlurmSpawner.queue_timeout``, separate from ``start_timeout``) runs out.
Either way the job is cancelled and no allocation leaks."""

from __future__ import annotations

import time

import pytest

from .drills import record, tagged_jobs
from .hub import run, squeue_fields

QUEUE_TIMEOUT = 10

EXTRA_CONFIG = f"""
c.SlurmSpawner.queue_timeout = {QUEUE_TIMEOUT}
"""


@pytest.fixture(scope="module")
def hub(hub_factory):
    hub = hub_factory(extra_config=EXTRA_CONFIG)
    for name in ("alice", "bob"):
        hub.create_user(name)
    return hub


@pytest.fixture
def debug_full(hub):
    """Fill partition debug (2 CPUs on node vm) with a job of carol's."""
    blocker = run(
        [
            "runuser", "-u", "carol", "--", "sbatch", "--parsable", "--chdir=/tmp",
            "--partition=debug", "--cpus-per-task=2", "--mem=100M", "--time=5",
            f"--comment=hpcspawner:{hub.job_tag}:carol:blocker", "--output=/dev/null",
            "--wrap=sleep 300",
        ]
    )  # fmt: skip
    assert blocker.returncode == 0, blocker.stderr
    job_id = blocker.stdout.strip()
    deadline = time.monotonic() + 30
    while squeue_fields(job_id, "%T") != ["RUNNING"]:
        assert time.monotonic() < deadline, squeue_fields(job_id, "%T|%r")
        time.sleep(0.3)
    yield job_id
    run(["scancel", job_id])


def wait_pending(hub, name, server, timeout=30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = tagged_jobs(hub.job_tag, name, server)
        if found and found[0][1] == "PENDING":
            return found[0][0]
        time.sleep(0.2)
    raise AssertionError(tagged_jobs(hub.job_tag, name, server))


def test_queue_timeout_cancels_the_job_and_says_why(hub, debug_full):
    t0 = time.monotonic()
    r = hub.spawn("alice", "q", options={"partition": "debug", "memory": "512M"})
    assert r.status_code == 202, r.text
    job_id = wait_pending(hub, "alice", "q")
    events = hub.progress_events("alice", "q", timeout=90)
    failed_after = time.monotonic() - t0
    assert events[-1].get("failed"), events
    message = events[-1]["message"]
    assert f"Job {job_id} waited in the queue for more than {QUEUE_TIMEOUT} seconds" in message
    assert "was cancelled" in message, message
    assert QUEUE_TIMEOUT <= failed_after <= QUEUE_TIMEOUT + 10, failed_after
    assert hub.server_model("alice", "q") is None
    assert squeue_fields(job_id, "%T") == ["CANCELLED"]
    record(
        "queue-timeout",
        queue_timeout_s=QUEUE_TIMEOUT,
        spawn_failed_after_s=round(failed_after, 1),
        job_state="CANCELLED",
    )


def test_stop_while_queued_cancels_the_job(hub, debug_full):
    r = hub.spawn("bob", "q", options={"partition": "debug", "memory": "512M"})
    assert r.status_code == 202, r.text
    job_id = wait_pending(hub, "bob", "q")
    t0 = time.monotonic()
    hub.stop_server("bob", "q")
    stop_s = time.monotonic() - t0
    assert squeue_fields(job_id, "%T") == ["CANCELLED"]
    # nothing of this hub's is queued or running but the blocker
    assert [j for j in tagged_jobs(hub.job_tag, "bob", "q") if j[1] != "CANCELLED"] == []
    record("stop-while-queued", stop_s=round(stop_s, 2), job_state="CANCELLED")
