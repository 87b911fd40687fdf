"""Drills per off-cluster driver: the part between the hub and Slurm goes away.

The hub runs off the cluster (a mount namespace without Slurm's clients and munge,
tests/integration/offcluster.py) with a short poll interval, through the SSH driver
(the login node's sshd) or the REST driver (slurmrestd). In each drill:

- running servers survive: the poller says "unknown", never "gone" (the server stays
  in the hub, its job keeps running in Slurm, asked with squeue from this process,
  which is on the cluster), over at least three poll intervals;
- a spawn meanwhile fails within seconds (the hung slurmrestd: it waits, as for a hung
  controller) and the hub's log names the cause (the login node, slurmrestd, the
  known_hosts file, the token file);
- service resumes by itself when the part comes back, without a hub restart.

SSH: (a) sshd stopped (its listener by pid file, then the connection it served the hub
on: Debian's ssh.service keeps open connections when sshd stops, so stopping only the
listener would change nothing for a hub with a pooled connection); (b) the hub's
connection cut (its sshd process killed): one reconnection, the next poll works;
(c) the host key changed (``SSH_NEW_HOST_KEY=1 scripts/cluster/start-sshd.sh``):
refused, with a log line naming the node and known_hosts. REST: (a) slurmrestd
stopped; (b) slurmrestd hung (SIGSTOP, then SIGCONT): requests time out after
``request_timeout``; (c) the admin's token file holds an expired or a forged token.

Each drill puts back what it changed in ``finally`` (the daemon running, the host
key, the token) and stops by pid only what it started. Figures go to
.test-artifacts/drills.jsonl (``record``), the source of docs/topic/reliability.md.
Not marked jupyterhub_floor: these run in the JupyterHub 6 run only.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from hpcspawner.slurm import jwt

from . import offcluster
from .drills import record, tagged_jobs, wait_gone
from .hub import squeue_fields
from .offcluster import (
    KNOWN_HOSTS,
    LOGIN_NODE,
    REST_BASE_CONFIG,
    REST_CONFIG,
    SLURMRESTD,
    SSH_CONFIG,
    SSHD,
    accepted_logins,
    children,
    running,
)

pytestmark = [pytest.mark.slurm, pytest.mark.drill]

off_cluster = offcluster.off_cluster

POLL_INTERVAL = 3
#: c.RESTSlurmDriver.request_timeout of the REST drills' hubs
REQUEST_TIMEOUT = 5
OPTIONS = {"partition": "debug", "cpus": 1, "memory": "512M", "runtime": "0:10:00"}
#: how long each outage lasts at least: three poll intervals and then some
OUTAGE_S = max(4 * POLL_INTERVAL, 15)
#: a spawn during an outage fails within this (the refusal is immediate; this is slack)
SPAWN_FAILS_WITHIN_S = 10
#: the user's message for a scheduler the hub cannot reach (hpcspawner.spawner.errors)
SCHEDULER_UNAVAILABLE = "The scheduler is not answering"
UNKNOWN_LINE = r"Job status query failed, keeping \d+ job\(s\) as unknown: .*"


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def sshd(cluster):
    """The login node's sshd (started here unless it runs; then stopped by pid)."""
    yield from running(SSHD)


@pytest.fixture(scope="module")
def restd(cluster):
    """slurmrestd (started here unless it runs; then stopped by pid)."""
    yield from running(SLURMRESTD)


def make_hub(hub_factory, off_cluster, config: str):
    prefix, _ = off_cluster
    hub = hub_factory(extra_config=config, command_prefix=prefix, poll_interval=POLL_INTERVAL)
    hub.tokens = {}
    for name in ("alice", "bob"):  # the login node's sudoers: members of jupyter-users
        hub.create_user(name)
        hub.tokens[name] = hub.user_token(name)
    return hub


@pytest.fixture(scope="module")
def ssh_hub(hub_factory, off_cluster, sshd):
    return make_hub(hub_factory, off_cluster, SSH_CONFIG)


@pytest.fixture(scope="module")
def rest_hub(hub_factory, off_cluster, restd):
    return make_hub(
        hub_factory,
        off_cluster,
        REST_CONFIG + f"c.RESTSlurmDriver.request_timeout = {REQUEST_TIMEOUT}\n",
    )


def slurm_token(lifespan: int) -> str:
    """A token for SlurmUser from ``scontrol token`` (run here, on the cluster)."""
    result = subprocess.run(
        ["scontrol", "token", "username=slurm", f"lifespan={lifespan}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout.strip().removeprefix("SLURM_JWT=")


def put_token(path: Path, token: str) -> None:
    """Replace the token file as an admin rotating it would (a new file, moved in place)."""
    new = path.with_name(path.name + ".new")
    new.write_text(token + "\n")
    new.chmod(0o600)
    os.replace(new, path)


@pytest.fixture(scope="module")
def token_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("token") / "slurmrestd.jwt"
    put_token(path, slurm_token(3600))
    return path


@pytest.fixture(scope="module")
def token_hub(hub_factory, off_cluster, restd, token_file):
    """A REST hub with a token the admin rotates (c.RESTSlurmDriver.token_file)."""
    return make_hub(
        hub_factory,
        off_cluster,
        REST_BASE_CONFIG
        + f'c.RESTSlurmDriver.token_file = "{token_file}"\n'
        + f"c.RESTSlurmDriver.request_timeout = {REQUEST_TIMEOUT}\n",
    )


# ---------------------------------------------------------------- helpers


def start_servers(hub, keys) -> dict[tuple[str, str], str]:
    """Start each (user, server); return their job ids."""
    for name, server in keys:
        r = hub.spawn(name, server, options=OPTIONS)
        assert r.status_code in (201, 202), r.text
    return {key: hub.wait_ready(*key)["state"]["job_id"] for key in keys}


def stop_servers(hub, keys) -> None:
    for key in keys:
        if hub.server_model(*key) is not None:
            hub.stop_server(*key)


def reachable(hub, name, server) -> int:
    r = hub.session.get(
        f"{hub.url}/user/{name}/{server}/api/status",
        headers={"Authorization": f"token {hub.tokens[name]}"},
        timeout=30,
    )
    return r.status_code


def assert_all_running(hub, jobs) -> None:
    """Each server is in the hub, ready, with its job, reachable, and the job runs."""
    for key, job_id in jobs.items():
        model = hub.server_model(*key)
        assert model and model["ready"], (key, model)
        assert model["state"]["job_id"] == job_id, (key, model["state"])
        assert reachable(hub, *key) == 200, key
        assert squeue_fields(job_id, "%T") == ["RUNNING"], (key, job_id)


def hold(hub, jobs, since: float) -> float:
    """Check the servers every second until the outage begun at ``since`` (time.time())
    lasted OUTAGE_S; return how long it lasted."""
    while time.time() - since < OUTAGE_S:
        assert_all_running(hub, jobs)
        time.sleep(1)
    assert_all_running(hub, jobs)
    return time.time() - since


def log_size(hub) -> int:
    return hub.log_path.stat().st_size


def log_since(hub, offset: int) -> str:
    with open(hub.log_path, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def wait_for_log(hub, offset: int, pattern: str, timeout: float, start: int = 0) -> re.Match:
    """The first match of ``pattern`` in the hub's log after byte ``offset`` (and after
    ``start`` in that text), waited for up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        match = re.compile(pattern).search(log_since(hub, offset), start)
        if match:
            return match
        assert time.monotonic() < deadline, (
            f"no {pattern!r} in the hub's log within {timeout} s:\n{hub.log_tail()}"
        )
        time.sleep(0.2)


def failed_spawn(hub, name: str, server: str) -> tuple[str, float]:
    """Spawn during an outage: (the user's message, seconds until it failed)."""
    t0 = time.monotonic()
    r = hub.spawn(name, server, options=OPTIONS)
    if r.status_code in (201, 202):
        events = hub.progress_events(name, server, timeout=120)
        failure = events[-1]
        assert failure.get("failed"), events
        message = failure["message"]
    else:
        assert r.status_code in (400, 500, 503), (r.status_code, r.text)
        message = r.json()["message"]
    seconds = time.monotonic() - t0
    assert "Traceback" not in message, message
    assert hub.server_model(name, server) is None
    assert tagged_jobs(hub.job_tag, name, server) == []
    return message, seconds


def failure_logged(hub, offset: int, name: str, server: str) -> str:
    """The hub's line about the failed spawn (JupyterHub's, with the spawner's detail)."""
    return wait_for_log(hub, offset, rf"Not starting {name}'s server {server}: .*", 30).group(0)


def cut_connections(pids: list[int]) -> None:
    """SIGTERM the login node's per-connection sshd processes (by pid, checked) and
    wait until they exited: the hub's open connection ends."""
    for pid in pids:
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue  # gone already
        assert comm == "sshd", (pid, comm)
        os.kill(pid, signal.SIGTERM)
    for pid in pids:
        wait_gone(pid, 20)


def spawn_works_again(hub, name: str, server: str) -> float:
    """A new server starts; return how long it took."""
    t0 = time.monotonic()
    start_servers(hub, [(name, server)])
    seconds = time.monotonic() - t0
    hub.stop_server(name, server)
    return seconds


# ---------------------------------------------------------------- SSH


def test_ssh_login_node_stopped(ssh_hub):
    """(a) The login node's sshd stops (listener and the hub's connection), then comes back."""
    hub = ssh_hub
    keys = [("alice", "sa")]
    jobs = start_servers(hub, keys)
    try:
        offset = log_size(hub)
        pid = SSHD.pid()
        connections = children(pid)
        assert connections, "the hub holds no connection to the login node"
        try:
            t_stop = time.time()
            SSHD.stop(pid)
            cut_connections(connections)
            unknown = wait_for_log(hub, offset, UNKNOWN_LINE, 3 * POLL_INTERVAL + 10).group(0)
            assert LOGIN_NODE in unknown, unknown
            message, spawn_failed_s = failed_spawn(hub, "alice", "during")
            assert SCHEDULER_UNAVAILABLE in message, message
            cause = failure_logged(hub, offset, "alice", "during")
            assert LOGIN_NODE in cause and "cannot connect" in cause, cause
            assert spawn_failed_s < SPAWN_FAILS_WITHIN_S, spawn_failed_s
            outage_s = hold(hub, jobs, t_stop)
            back = log_size(hub)
            SSHD.start()
        finally:
            if SSHD.pid() is None:
                SSHD.start()
        # by itself: the next command opens a new connection
        wait_for_log(hub, back, rf"Connected to login node \S+@{re.escape(LOGIN_NODE)}", 30)
        assert_all_running(hub, jobs)
        spawn_after_s = spawn_works_again(hub, "alice", "after")
        assert_all_running(hub, jobs)
    finally:
        stop_servers(hub, keys)
    record(
        "offcluster-ssh-sshd-stopped",
        poll_interval=POLL_INTERVAL,
        outage_s=round(outage_s, 1),
        servers_running=len(jobs),
        servers_stopped=0,
        spawn_during_outage_failed_after_s=round(spawn_failed_s, 2),
        message=message,
        logged=cause,
        restart_to_new_server_ready_s=round(spawn_after_s, 2),
    )


def test_ssh_connection_cut(ssh_hub):
    """(b) The hub's connection to the login node is cut: it reconnects once, polls go on."""
    hub = ssh_hub
    keys = [("bob", "sb")]
    jobs = start_servers(hub, keys)
    try:
        connections = children(SSHD.pid())
        assert connections, "the hub holds no connection to the login node"
        logins = accepted_logins()
        offset = log_size(hub)
        t_cut = time.monotonic()
        cut_connections(connections)
        connected = wait_for_log(
            hub, offset, rf"Connected to login node \S+@{re.escape(LOGIN_NODE)}", 3 * POLL_INTERVAL
        )
        reconnect_s = time.monotonic() - t_cut
        # two polls started after the reconnection: the first of them has ended
        poll = r"Running \[.*'squeue'.*'--jobs="
        first = wait_for_log(hub, offset, poll, 3 * POLL_INTERVAL, start=connected.end())
        second = wait_for_log(hub, offset, poll, 3 * POLL_INTERVAL, start=first.end())
        after = log_since(hub, offset)[connected.end() : second.start()]
        assert not re.search(UNKNOWN_LINE, after), after
        # a poll during the cut may have been "unknown"; never "gone"
        assert "is gone" not in log_since(hub, offset)
        assert_all_running(hub, jobs)
        assert accepted_logins() - logins == 1, "expected exactly one new connection"
        failed_polls = len(re.findall(UNKNOWN_LINE, log_since(hub, offset)))
    finally:
        stop_servers(hub, keys)
    record(
        "offcluster-ssh-connection-cut",
        poll_interval=POLL_INTERVAL,
        servers_running=len(jobs),
        servers_stopped=0,
        reconnected_after_s=round(reconnect_s, 2),
        new_connections=1,
        polls_unknown=failed_polls,
    )


def test_ssh_host_key_changed(ssh_hub):
    """(c) The login node comes back with another host key: refused, loudly; servers stay."""
    hub = ssh_hub
    keys = [("alice", "sc")]
    jobs = start_servers(hub, keys)
    known_before = KNOWN_HOSTS.read_bytes()
    try:
        offset = log_size(hub)
        connections = children(SSHD.pid())
        try:
            t_change = time.time()
            SSHD.start(env={"SSH_NEW_HOST_KEY": "1"})  # replaces the daemon: the new key
            cut_connections(connections)  # the hub must connect again, and meet the key
            assert KNOWN_HOSTS.read_bytes() == known_before, "known_hosts was changed"
            refused = wait_for_log(
                hub,
                offset,
                rf"Refused login node {re.escape(LOGIN_NODE)}: .*",
                3 * POLL_INTERVAL + 10,
            ).group(0)
            assert "does not match" in refused and str(KNOWN_HOSTS) in refused, refused
            unknown = wait_for_log(hub, offset, UNKNOWN_LINE, 3 * POLL_INTERVAL + 10).group(0)
            assert LOGIN_NODE in unknown, unknown
            message, spawn_failed_s = failed_spawn(hub, "alice", "during")
            assert SCHEDULER_UNAVAILABLE in message, message
            cause = failure_logged(hub, offset, "alice", "during")
            assert "host key" in cause and str(KNOWN_HOSTS) in cause, cause
            assert spawn_failed_s < SPAWN_FAILS_WITHIN_S, spawn_failed_s
            outage_s = hold(hub, jobs, t_change)
            back = log_size(hub)
        finally:
            SSHD.start()  # the old key back (start-sshd.sh keeps it across a rotation)
        assert KNOWN_HOSTS.read_bytes() == known_before
        wait_for_log(hub, back, rf"Connected to login node \S+@{re.escape(LOGIN_NODE)}", 30)
        assert_all_running(hub, jobs)
        spawn_after_s = spawn_works_again(hub, "alice", "after")
    finally:
        stop_servers(hub, keys)
    record(
        "offcluster-ssh-host-key-changed",
        poll_interval=POLL_INTERVAL,
        refused_s=round(outage_s, 1),
        servers_running=len(jobs),
        servers_stopped=0,
        spawn_during_refusal_failed_after_s=round(spawn_failed_s, 2),
        message=message,
        logged=refused,
        key_back_to_new_server_ready_s=round(spawn_after_s, 2),
    )


# ---------------------------------------------------------------- REST


def test_rest_slurmrestd_stopped(rest_hub):
    """(a) slurmrestd stops, then comes back."""
    hub = rest_hub
    keys = [("alice", "ra")]
    jobs = start_servers(hub, keys)
    try:
        offset = log_size(hub)
        try:
            t_stop = time.time()
            SLURMRESTD.stop(SLURMRESTD.pid())
            unknown = wait_for_log(hub, offset, UNKNOWN_LINE, 3 * POLL_INTERVAL + 10).group(0)
            assert "slurmrestd" in unknown, unknown
            message, spawn_failed_s = failed_spawn(hub, "alice", "during")
            assert SCHEDULER_UNAVAILABLE in message, message
            cause = failure_logged(hub, offset, "alice", "during")
            assert "cannot connect to slurmrestd" in cause, cause
            assert spawn_failed_s < SPAWN_FAILS_WITHIN_S, spawn_failed_s
            outage_s = hold(hub, jobs, t_stop)
            SLURMRESTD.start()
        finally:
            if SLURMRESTD.pid() is None:
                SLURMRESTD.start()
        assert_all_running(hub, jobs)
        spawn_after_s = spawn_works_again(hub, "alice", "after")
        assert_all_running(hub, jobs)
    finally:
        stop_servers(hub, keys)
    record(
        "offcluster-rest-slurmrestd-stopped",
        poll_interval=POLL_INTERVAL,
        outage_s=round(outage_s, 1),
        servers_running=len(jobs),
        servers_stopped=0,
        spawn_during_outage_failed_after_s=round(spawn_failed_s, 2),
        message=message,
        logged=cause,
        restart_to_new_server_ready_s=round(spawn_after_s, 2),
    )


def test_rest_slurmrestd_hung(rest_hub):
    """(b) slurmrestd hangs (SIGSTOP) under a live hub, then goes on (SIGCONT).

    Requests time out after request_timeout ("unknown"); a submission sent meanwhile
    may still be served when the daemon resumes, so the spawn waits and looks for its
    job (as for a hung controller) instead of failing: one job for it, or none left."""
    hub = rest_hub
    keys = [("alice", "rb")]
    jobs = start_servers(hub, keys)
    try:
        offset = log_size(hub)
        pid = SLURMRESTD.pid()
        try:
            os.kill(pid, signal.SIGSTOP)
            t_stop = time.time()
            unknown = wait_for_log(
                hub, offset, UNKNOWN_LINE, 3 * POLL_INTERVAL + 2 * REQUEST_TIMEOUT + 5
            ).group(0)
            assert f"no answer within {REQUEST_TIMEOUT:g} s" in unknown, unknown
            unknown_after_s = time.time() - t_stop
            r = hub.spawn("alice", "hung", options=OPTIONS)
            assert r.status_code in (201, 202), r.text  # it waits: the answer is not known
            hung_s = hold(hub, jobs, t_stop)
            model = hub.server_model("alice", "hung")
            assert model is not None and model["pending"] == "spawn", model
        finally:
            os.kill(pid, signal.SIGCONT)
        t_cont = time.monotonic()
        events = hub.progress_events("alice", "hung", timeout=240)
        last = events[-1]
        found = tagged_jobs(hub.job_tag, "alice", "hung")
        if last.get("ready"):
            job_id = hub.server_model("alice", "hung")["state"]["job_id"]
            assert [j for j, _ in found] == [job_id], found  # found again, never twice
            outcome = "found its job"
            hub.stop_server("alice", "hung")
        else:
            assert last.get("failed") and SCHEDULER_UNAVAILABLE in last["message"], events
            # a job that arrived late is cancelled by the hub's reaper, never leaked
            deadline = time.monotonic() + 6 * POLL_INTERVAL + 30
            while any(
                state in ("PENDING", "CONFIGURING", "RUNNING")
                for _, state in tagged_jobs(hub.job_tag, "alice", "hung")
            ):
                assert time.monotonic() < deadline, tagged_jobs(hub.job_tag, "alice", "hung")
                time.sleep(0.5)
            outcome = "failed, nothing left running"
        spawn_end_s = time.monotonic() - t_cont
        assert_all_running(hub, jobs)
        spawn_after_s = spawn_works_again(hub, "alice", "after")
    finally:
        stop_servers(hub, keys)
    record(
        "offcluster-rest-slurmrestd-hung",
        poll_interval=POLL_INTERVAL,
        request_timeout=REQUEST_TIMEOUT,
        hung_s=round(hung_s, 1),
        first_unknown_after_s=round(unknown_after_s, 1),
        servers_running=len(jobs),
        servers_stopped=0,
        spawn_during_hang=outcome,
        spawn_settled_after_sigcont_s=round(spawn_end_s, 1),
        jobs_for_the_spawn=len(found),
        new_server_ready_after_s=round(spawn_after_s, 2),
    )


def forged_token() -> str:
    """A well-formed token for SlurmUser signed with a key that is not the cluster's."""
    return jwt.mint(os.urandom(32), "slurm", int(time.time()), 3600)


@pytest.mark.parametrize("bad", ["expired", "forged"])
def test_rest_token_rejected(token_hub, token_file, bad):
    """(c) The admin's token file holds an expired token (``scontrol token`` with a short
    lifespan, read by the hub and then run out) or a forged one (slurmrestd's HTTP 500):
    a log line names the token, servers stay, a spawn fails; a good token brings it back."""
    hub = token_hub
    keys = [("bob", f"t{bad}")]
    jobs = start_servers(hub, keys)
    try:
        offset = log_size(hub)
        try:
            t_bad = time.time()
            if bad == "expired":
                token = slurm_token(10)
                put_token(token_file, token)
                expires = jwt.claims_of(token)["exp"]
                wait_for_log(hub, offset, r"Read the slurmrestd token from ", 2 * POLL_INTERVAL)
                # the hub takes the new file at its next request and uses it until it ends
                while time.time() <= expires + 1:
                    assert_all_running(hub, jobs)
                    time.sleep(1)
                offset = log_size(hub)  # what follows is about the expired token
                t_bad = time.time()
                logged_pattern = rf"the token in {re.escape(str(token_file))} expired at .*"
            else:
                put_token(token_file, forged_token())
                logged_pattern = (
                    r"slurmrestd rejected the hub's token .*"
                    rf"the token in {re.escape(str(token_file))} is current.*"
                )
            unknown = wait_for_log(hub, offset, UNKNOWN_LINE, 3 * POLL_INTERVAL + 10).group(0)
            logged = wait_for_log(hub, offset, logged_pattern, 3 * POLL_INTERVAL + 10).group(0)
            message, spawn_failed_s = failed_spawn(hub, "bob", "during")
            assert "token" in message or SCHEDULER_UNAVAILABLE in message, message
            cause = failure_logged(hub, offset, "bob", "during")
            assert "token" in cause, cause
            assert spawn_failed_s < SPAWN_FAILS_WITHIN_S, spawn_failed_s
            outage_s = hold(hub, jobs, t_bad)
        finally:
            put_token(token_file, slurm_token(3600))  # a good one: read at the next request
        spawn_after_s = spawn_works_again(hub, "bob", "after")
        assert_all_running(hub, jobs)
    finally:
        stop_servers(hub, keys)
    record(
        f"offcluster-rest-token-{bad}",
        poll_interval=POLL_INTERVAL,
        outage_s=round(outage_s, 1),
        servers_running=len(jobs),
        servers_stopped=0,
        spawn_during_outage_failed_after_s=round(spawn_failed_s, 2),
        message=message,
        logged=logged,
        poll_logged=unknown,
        good_token_to_new_server_ready_s=round(spawn_after_s, 2),
    )
