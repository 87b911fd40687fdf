"""Why a server ended after Slurm forgot its job, from accounting; usage on the spawn page.

Needs the cluster with slurmdbd (``scripts/cluster/setup.sh``, ACCOUNTING=1, the default,
and the site of ``scripts/cluster/make-site.sh``). MinJobAge is cluster-wide, so instead of
shortening it the hub is stopped while two servers' jobs end underneath it (one
``scancel`` by root, one running into its 1-minute walltime), and started again only once
``squeue --states=all`` no longer shows either job (MinJobAge, 300 s here, plus slurmctld's
purge cycle): the restarted hub finds the jobs gone with no squeue record and must ask
accounting why they ended. Takes ~6 minutes.
"""

from __future__ import annotations

import re
import signal
import time

import pytest

from .drills import login_session
from .hub import run, squeue_fields

POLL_INTERVAL = 5

pytestmark = pytest.mark.accounting  # slurmdbd (setup.sh ACCOUNTING=1, the default)


@pytest.fixture(scope="module")
def hub(hub_factory):
    answer = run(["sacctmgr", "--noheader", "--parsable2", "show", "cluster", "format=cluster"])
    assert answer.returncode == 0 and answer.stdout.strip(), (
        "this test needs Slurm's accounting (slurmdbd): scripts/cluster/setup.sh with "
        f"ACCOUNTING=1 and scripts/cluster/make-site.sh; sacctmgr said: {answer.stderr.strip()}"
    )
    hub = hub_factory(poll_interval=POLL_INTERVAL)
    for name in ("alice", "carol"):
        hub.create_user(name)
    return hub


def min_job_age() -> int:
    """slurmctld's MinJobAge (seconds)."""
    config = run(["scontrol", "show", "config"]).stdout
    found = re.search(r"^MinJobAge\s*=\s*(\d+)", config, re.MULTILINE)
    return int(found.group(1)) if found else 300


def wait_forgotten(job_ids, timeout: float) -> None:
    """Until ``squeue --states=all`` shows none of ``job_ids`` (the controller purged them)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(squeue_fields(job_id, "%T") for job_id in job_ids):
            return
        time.sleep(5)
    shown = {job_id: squeue_fields(job_id, "%T") for job_id in job_ids}
    raise AssertionError(f"squeue still shows {shown} after {timeout:.0f} s")


def wait_sacct_end(job_id: str, timeout: float = 60) -> str:
    """The job's state once accounting has its end (slurmctld sends it within seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = run(["sacct", "-nP", "-X", "-j", job_id, "-o", "State,End"]).stdout.strip()
        if line and not line.endswith("|Unknown"):
            return line.split("|")[0].split()[0]
        time.sleep(1)
    raise AssertionError(f"accounting has no end for job {job_id} after {timeout} s")


def spawn_page(hub, name: str) -> str:
    session = login_session(hub, name)
    r = session.get(f"{hub.url}/hub/spawn", timeout=60)
    r.raise_for_status()
    return r.text


def test_the_next_visit_says_why_a_forgotten_job_ended(hub):
    servers = {
        ("alice", "byroot"): {"partition": "debug", "memory": "512M"},
        ("carol", "walltime"): {"partition": "remote", "memory": "512M", "runtime": "1"},
    }
    for (name, server), options in servers.items():
        r = hub.spawn(name, server, options=options)
        assert r.status_code in (201, 202), r.text
    jobs = {key: hub.wait_ready(*key)["state"]["job_id"] for key in servers}

    # the hub goes away (cleanup_servers = False: the jobs keep running)
    hub.kill(signal.SIGKILL)
    assert run(["scancel", jobs["alice", "byroot"]]).returncode == 0  # as root
    assert wait_sacct_end(jobs["alice", "byroot"]) == "CANCELLED"
    assert wait_sacct_end(jobs["carol", "walltime"], timeout=180) == "TIMEOUT"
    wait_forgotten(list(jobs.values()), timeout=min_job_age() + 180)

    hub.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(hub.server_model(*key) for key in servers):
        time.sleep(1)
    assert not [key for key in servers if hub.server_model(*key)], "servers still listed"

    expected = {
        ("alice", "byroot"): "the job was cancelled by an administrator (root)",
        ("carol", "walltime"): "the job reached its time limit (walltime 00:01:00)",
    }
    log = hub.log_path.read_text(errors="replace")
    for (name, server), reason in expected.items():
        job_id = jobs[name, server]
        assert f"Job {job_id} of {name}:{server} is gone: {reason}" in log, (job_id, reason)
        r = hub.api("GET", f"/users/{name}", params={"include_stopped_servers": "1"})
        r.raise_for_status()
        state = (r.json()["servers"].get(server) or {}).get("state") or {}
        assert state.get("last_end") == {"job_id": job_id, "reason": reason}, state
    # one sacct per vanished job at most (both vanished together: usually one call)
    sacct_calls = [line for line in log.splitlines() if "Running" in line and "/sacct'" in line]
    assert 1 <= len(sacct_calls) <= 2, sacct_calls
    assert "no longer known to Slurm" not in log


def test_the_spawn_page_shows_alices_usage_per_account(hub):
    """alice's associations (make-site.sh: physics, chemistry) each get a usage line. The
    numbers are not asserted: this cluster runs priority/basic, where sshare prints
    RawUsage 0 and computes no fair-share (tests/unit/data/accounting/sshare_alice.txt)."""
    page = spawn_page(hub, "alice")
    lines = re.findall(r'class="form-text hpcspawner-usage">([^<]*)<', page)
    accounts = {line.split(":", 1)[0] for line in lines}
    assert accounts == {"physics", "chemistry"}, lines
    assert all(re.fullmatch(r"\w+: \d+\.\d CPU-hours used.*", line) for line in lines), lines
