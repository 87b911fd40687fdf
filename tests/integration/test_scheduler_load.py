"""One batched squeue per poll interval, however many servers run.

Counted with shims that log every call of the Slurm commands on the hub's
PATH (the same method the benchmarks use for batchspawner).
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from .hub import make_counting_shims

POLL_INTERVAL = 3
SERVERS = [("alice", "s1"), ("alice", "s2"), ("bob", "s1"), ("bob", "s2"), ("carol", "s1")]


@pytest.fixture(scope="module")
def counted_hub(hub_factory):
    # outside pytest's 0700 tmp tree: sbatch and scancel run the shims as the users
    shim_dir = Path(tempfile.mkdtemp(prefix="hpcspawner-shims-"))
    log = shim_dir / "calls.log"
    make_counting_shims(shim_dir, log)
    hub = hub_factory(poll_interval=POLL_INTERVAL, path_prepend=[shim_dir])
    hub.calls_log = log
    yield hub
    shutil.rmtree(shim_dir)


def squeue_calls(log, since: float):
    calls = []
    for line in log.read_text().splitlines():
        stamp, command, args = line.split(" ", 2)
        if command == "squeue" and float(stamp) >= since:
            calls.append(args)
    return calls


def test_one_squeue_per_poll_interval_for_five_servers(counted_hub):
    hub = counted_hub
    for name in {name for name, _ in SERVERS}:
        hub.create_user(name)
    for name, server in SERVERS:
        r = hub.spawn(name, server, options={"partition": "compute", "memory": "512M"})
        assert r.status_code in (201, 202), r.text
    jobs = set()
    for name, server in SERVERS:
        jobs.add(hub.wait_ready(name, server, timeout=240)["state"]["job_id"])
    assert len(jobs) == 5

    window = 4 * POLL_INTERVAL
    since = time.time()
    time.sleep(window)
    calls = squeue_calls(hub.calls_log, since)
    # every call asks about all five jobs at once
    for args in calls:
        asked = set(re.search(r"--jobs=(\S+)", args).group(1).split(","))
        assert jobs <= asked, args
    # one call per interval (one more if a boundary falls inside the window);
    # batchspawner would make 5 per interval here, 20 in the window
    assert window // POLL_INTERVAL - 1 <= len(calls) <= window // POLL_INTERVAL + 1, calls

    for name, server in SERVERS:
        hub.stop_server(name, server)


def test_restarted_hub_readopts_running_servers_with_one_query(counted_hub):
    hub = counted_hub
    servers = [("alice", ""), ("bob", ""), ("carol", "")]
    for name, server in servers:
        hub.create_user(name)
        r = hub.spawn(name, server, options={"partition": "compute", "memory": "512M"})
        assert r.status_code in (201, 202), r.text
    jobs = {name: hub.wait_ready(name, server)["state"]["job_id"] for name, server in servers}
    tokens = {name: hub.user_token(name) for name, _ in servers}

    hub.kill()  # SIGTERM; cleanup_servers = False keeps the jobs
    restart = time.time()
    hub.start()
    startup_calls = squeue_calls(hub.calls_log, restart)
    for name, server in servers:
        model = hub.server_model(name, server)
        assert model and model["ready"], (name, model)
        assert model["state"]["job_id"] == jobs[name]
        r = hub.session.get(
            f"{hub.url}/user/{name}/api/status",
            headers={"Authorization": f"token {tokens[name]}"},
            timeout=30,
        )
        assert r.status_code == 200, (name, r.text)
    # the hub checked all three servers with one batched query (at most one more from the
    # background loop if it came due while the hub was starting)
    assert 1 <= len(startup_calls) <= 2, startup_calls
    asked = set(re.search(r"--jobs=(\S+)", startup_calls[0]).group(1).split(","))
    assert set(jobs.values()) <= asked, startup_calls

    for name, server in servers:
        hub.stop_server(name, server)
