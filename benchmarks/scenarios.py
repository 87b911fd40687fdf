"""The side-by-side scenarios. Each takes a :class:`Context` and one kind of hub
(benchmarks/kinds.py) and returns plain data (seconds, counts) for the report; nothing
here judges a result.
"""

from __future__ import annotations

import os
import pwd
import re
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import requests
from kinds import spawner_of
from observe import (
    ApiSampler,
    ListenWatcher,
    calls_between,
    count_by_command,
    cpu_seconds,
    daemon_counts,
    hub_log_events,
    hub_rpcs,
    job_start_times,
    job_submit_times,
    job_visible,
    log_offsets,
    percentile,
    rss_mib,
    sdiag_reset,
    sdiag_rpcs,
    spread,
)
from sidebyside import BenchHub, HubSettings, Workload, make_hub

from tests.integration.hub import cancel_tagged_jobs

#: the hub log line of start() returning, with the port (per spawner)
STARTED_LINE = {
    "hpcspawner": r"Job \d+ of \S+ reported port (\d+)",
    "batchspawner": r"Notebook server job \d+ started at [^:\s]+:(\d+)",
}
CALLBACK_LINE = r"POST /hub/api/batchspawner"
SERVING_LINE = re.compile(r"^\[I (\S+ \S+) ServerApp\] Jupyter Server \S+ is running at:")
#: where each spawner's job writes its output (in the user's home)
JOB_OUTPUT = {
    "hpcspawner": ".jupyterhub-slurm-{job_id}.log",
    "batchspawner": "jupyterhub_slurmspawner_{job_id}.log",
}


@dataclass
class Context:
    work: Path
    shims: Path
    calls_log: Path
    smoke: bool
    poll_interval: int


@contextmanager
def running_hub(ctx: Context, kind: str, name: str, work: Workload, settings: HubSettings):
    bench = make_hub(kind, ctx.work / f"{name}-{kind}", ctx.shims, work, settings)
    bench.hub.start()
    try:
        for user in bench.users:
            bench.hub.create_user(user)
        yield bench
    finally:
        bench.hub.stop()
        cancel_tagged_jobs(bench.tag)


# ---------------------------------------------------------------- many servers


def server_names(users, start: int, stop: int) -> list[tuple[str, str]]:
    """Named servers spread over ``users``: (user, "b001"), ..."""
    return [(users[i % len(users)], f"b{i:03d}") for i in range(start, stop)]


_local = threading.local()


def _session(hub) -> requests.Session:
    """One session per thread and hub (each hub has its own certificate)."""
    sessions = _local.__dict__.setdefault("sessions", {})
    session = sessions.get(hub.url)
    if session is None:
        session = sessions[hub.url] = requests.Session()
        session.trust_env = False
        session.verify = hub.session.verify
    return session


def _call(hub, method: str, path: str, **kwargs) -> tuple[int, float]:
    t0 = time.perf_counter()
    r = _session(hub).request(
        method,
        f"{hub.url}/hub/api{path}",
        headers={"Authorization": f"token {hub.admin_token}"},
        timeout=kwargs.pop("timeout", 120),
        **kwargs,
    )
    return r.status_code, time.perf_counter() - t0


def spawn_many(bench: BenchHub, names, workers: int = 50) -> list[tuple[int, float]]:
    def one(name_server):
        name, server = name_server
        return _call(bench.hub, "POST", f"/users/{name}/servers/{server}", json={})

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(names)))) as pool:
        return list(pool.map(one, names))


def server_models(bench: BenchHub) -> dict[tuple[str, str], dict]:
    models = {}
    for user in bench.users:
        r = bench.hub.api("GET", f"/users/{user}")
        r.raise_for_status()
        for server, model in (r.json().get("servers") or {}).items():
            models[(user, server)] = model
    return models


class ServersLost(RuntimeError):
    """Servers the hub was asked for are gone from its API: failed to start, or stopped
    because the spawner thought them dead."""


def wait_all_ready(bench: BenchHub, names, timeout: float) -> dict[tuple[str, str], dict]:
    deadline = time.monotonic() + timeout
    while True:
        models = server_models(bench)
        missing = [n for n in names if n not in models]
        if missing:
            raise ServersLost(f"{bench.kind}: {len(missing)} servers failed to start or were "
                              f"dropped: {missing[:5]}\n{bench.hub.log_tail(40)}")  # fmt: skip
        if all(models[n].get("ready") for n in names):
            return models
        if time.monotonic() > deadline:
            pending = [n for n in names if not models[n].get("ready")]
            raise RuntimeError(f"{bench.kind}: {len(pending)} servers not ready in {timeout} s")
        time.sleep(0.5)


def stop_many(bench: BenchHub, names) -> None:
    def one(name_server):
        name, server = name_server
        return _call(bench.hub, "DELETE", f"/users/{name}/servers/{server}")

    with ThreadPoolExecutor(max_workers=max(1, min(50, len(names)))) as pool:
        list(pool.map(one, names))
    deadline = time.monotonic() + 120
    while any(n in server_models(bench) for n in names) and time.monotonic() < deadline:
        time.sleep(0.5)


def free_cpus(partition: str) -> int:
    out = subprocess.run(
        ["/usr/bin/sinfo", "--noheader", f"--partition={partition}", "--format=%C"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    try:
        return int(out.split("/")[1])  # allocated/idle/other/total
    except (IndexError, ValueError):
        return 0


# ---------------------------------------------------------------- 1 + 4 + 6: load, restart, RSS


def steady_window(ctx: Context, bench: BenchHub, n: int) -> dict:
    """Scheduler calls over whole poll intervals, once the servers have settled: the
    shims' Slurm commands, slurmctld's RPCs (sdiag, reset at the start: this hub is the
    only one running), the login node's SSH logins and slurmrestd's requests."""
    interval = ctx.poll_interval
    time.sleep(interval + 1)
    intervals = 2 if ctx.smoke else 6
    offsets = log_offsets()
    sdiag_reset()
    since = time.time()
    cpu_before = cpu_seconds(bench.hub.proc.pid)
    time.sleep(intervals * interval)
    cpu_after = cpu_seconds(bench.hub.proc.pid)
    rpcs = sdiag_rpcs()
    daemons = daemon_counts(offsets)
    calls = calls_between(ctx.calls_log, since, since + intervals * interval)
    counts = count_by_command(calls)
    total = sum(counts.values())
    return {
        "servers": n,
        "measured": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "loadavg": os.getloadavg()[0],
        "window_s": intervals * interval,
        "calls": counts,
        "per_minute": total * 60 / (intervals * interval),
        "per_poll_interval": total / intervals,
        "hub_rss_mib": rss_mib(bench.hub.proc.pid),
        # CPU share of one core over the window: the hub, and the Slurm commands it ran
        "hub_cpu": (cpu_after[0] - cpu_before[0]) / (intervals * interval),
        "commands_cpu": (cpu_after[1] - cpu_before[1]) / (intervals * interval),
        # slurmctld's view (all users), and what of it a hub can have asked
        "rpcs_by_type": rpcs["by_type"],
        "rpcs_by_user": rpcs["by_user"],
        "hub_rpcs": hub_rpcs(rpcs["by_type"]),
        **daemons,
    }


def restart_recovery(ctx: Context, bench: BenchHub, names) -> dict:
    """SIGTERM the hub (cleanup_servers=False), start it again, wait until every server is back."""
    before = {n: m["state"].get("job_id") for n, m in server_models(bench).items()}
    offsets = log_offsets()
    bench.hub.kill()
    restarted = time.time()
    bench.hub.start(timeout=300)
    api_up = time.time()
    try:
        models = wait_all_ready(bench, names, timeout=300)
    except RuntimeError:  # the restarted hub dropped servers: that is the result
        models = server_models(bench)
    back = time.time()
    daemons = daemon_counts(offsets)
    lost = [
        n
        for n in names
        if n not in models
        or not models[n].get("ready")
        or str(models[n]["state"].get("job_id")) != str(before.get(n))
    ]
    calls = calls_between(ctx.calls_log, restarted, back + 0.5)
    # JupyterHub's own measure of re-adoption: "Initialized N spawners in S seconds"
    init = hub_log_events(
        bench.hub.log_path, r"Initialized \d+ spawners in ([\d.]+) seconds", restarted
    )
    return {
        "init_spawners_s": float(init[-1][1].group(1)) if init else None,
        "servers": len(names),
        "api_up_s": api_up - restarted,
        "all_ready_s": back - restarted,
        "calls": count_by_command(calls),
        "servers_with_other_job": len(lost),
        "hub_rss_mib": rss_mib(bench.hub.proc.pid),
        **daemons,
    }


def load(ctx: Context, kind: str, sizes: list[int]) -> dict:
    """N running servers (tiny server through the real launcher): calls/min, RSS, restart."""
    work = Workload(server="tiny", partition="compute", memory="100M")
    settings = HubSettings(poll_interval=ctx.poll_interval)
    result = {"rows": [], "restart": [], "skipped": []}
    with running_hub(ctx, kind, "load", work, settings) as bench:
        result["idle_rss_mib"] = rss_mib(bench.hub.proc.pid)
        names: list[tuple[str, str]] = []
        for n in sizes:
            if n - len(names) > free_cpus(work.partition):
                result["skipped"].append({"servers": n, "why": "not enough free CPUs"})
                continue
            new = server_names(bench.users, len(names), n)
            t0 = time.time()
            replies = []
            wave = bench.spawn_wave or len(new)
            try:
                for start in range(0, len(new), wave):
                    replies += spawn_many(bench, new[start : start + wave])
                    wait_all_ready(bench, names + new[: start + wave], timeout=300)
            except ServersLost as e:
                # a result, not a crash of the run: larger sizes would not compare
                result["lost"] = {"servers": n, "what": str(e).splitlines()[0]}
                names += new
                break
            names += new
            row = {"spawned_s": time.time() - t0, "spawn_http": sorted({s for s, _ in replies})}
            row.update(steady_window(ctx, bench, n))
            result["rows"].append(row)
            restart = restart_recovery(ctx, bench, names)
            result["restart"].append(restart)
            if restart["servers_with_other_job"]:
                break  # servers were lost: larger sizes would not compare
        stop_many(bench, [n for n in names if n in server_models(bench)])
    return result


# ---------------------------------------------------------------- 3: spawn storm (+ M queued)


def storm(ctx: Context, kind: str, size: int, queue: str = "begin") -> dict:
    """``size`` servers requested at once.

    ``queue="begin"``: every job queues (``--begin``, no CPU taken: the cluster
    stays free for others); ``"resources"``: as many run as partition compute
    has CPUs, the rest queue for resources.
    """
    work = Workload(server="tiny", partition="compute", memory="100M", queued=queue == "begin")
    settings = HubSettings(poll_interval=ctx.poll_interval)
    window = 5 if ctx.smoke else 20
    with running_hub(ctx, kind, "storm", work, settings) as bench:
        names = server_names(bench.users, 0, size)
        with ApiSampler(bench.hub) as api:
            time.sleep(2)  # API latency before the storm
            t0 = time.time()
            replies = spawn_many(bench, names, workers=size)
            replied = time.time()
            submitted = _all_submitted(ctx, t0, size, deadline=t0 + 120)
            time.sleep(max(0.0, t0 + window - time.time()))
        # then the M queued servers, steady state (without the second client)
        steady_since = time.time()
        cpu_before = cpu_seconds(bench.hub.proc.pid)
        intervals = 2 if ctx.smoke else 6
        time.sleep(intervals * ctx.poll_interval)
        steady_until = time.time()
        cpu_after = cpu_seconds(bench.hub.proc.pid)
        rss = rss_mib(bench.hub.proc.pid)
        states = job_states(bench.tag)
    during = [s for at, s, _ in api.samples if t0 <= at < t0 + window]
    before = [s for at, s, _ in api.samples if at < t0]
    steady = calls_between(ctx.calls_log, steady_since, steady_until)
    return {
        "servers": size,
        "window_s": window,
        "all_replied_s": replied - t0,
        "spawn_http": sorted({s for s, _ in replies}),
        "all_submitted_s": None if submitted is None else submitted - t0,
        "api_before_p50_s": percentile(before, 50) if before else None,
        "api_p50_s": percentile(during, 50) if during else None,
        "api_p99_s": percentile(during, 99) if during else None,
        "api_max_s": max(during) if during else None,
        "api_samples": len(during),
        "api_errors": sum(1 for at, _, st in api.samples if t0 <= at < t0 + window and st != 200),
        "calls_during": count_by_command(calls_between(ctx.calls_log, t0, t0 + window)),
        "queue": queue,
        "steady_running": states.get("RUNNING", 0),
        "steady_pending": states.get("PENDING", 0),
        "queued_per_minute": len(steady) * 60 / (steady_until - steady_since),
        "queued_calls": count_by_command(steady),
        "queued_hub_cpu": (cpu_after[0] - cpu_before[0]) / (steady_until - steady_since),
        "queued_commands_cpu": (cpu_after[1] - cpu_before[1]) / (steady_until - steady_since),
        "hub_rss_mib": rss,
    }


def job_states(tag: str) -> dict[str, int]:
    """How many of the hub's jobs (by comment) are in each state."""
    out = subprocess.run(
        ["/usr/bin/squeue", "--noheader", "--format=%T|%k"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    states: dict[str, int] = {}
    for line in out.splitlines():
        state, _, comment = line.partition("|")
        if comment.startswith(f"hpcspawner:{tag}:"):
            states[state] = states.get(state, 0) + 1
    return states


def _all_submitted(ctx: Context, t0: float, size: int, deadline: float) -> float | None:
    """When the ``size``-th sbatch after ``t0`` returned."""
    while time.time() < deadline:
        calls = calls_between(ctx.calls_log, t0)
        ends = sorted(c.end for c in calls if c.command == "sbatch" and c.end is not None)
        if len(ends) >= size:
            return ends[size - 1]
        time.sleep(0.2)
    return None


# ---------------------------------------------------------------- 2 + 5: latency, stop


def latency(ctx: Context, kinds, runs: int) -> dict[str, list[dict]]:
    """One JupyterLab server at a time on node vm, the spawners taking turns."""
    work = Workload(server="lab", partition="debug", memory="512M")
    settings = HubSettings(poll_interval=ctx.poll_interval)
    uid = pwd.getpwnam("alice").pw_uid
    results: dict[str, list[dict]] = {kind: [] for kind in kinds}
    with ExitStack() as stack:
        benches = {
            kind: stack.enter_context(running_hub(ctx, kind, "latency", work, settings))
            for kind in kinds
        }
        for _ in range(runs):
            for kind in kinds:
                results[kind].append(_one_spawn(ctx, benches[kind], uid))
    return results


def _one_spawn(ctx: Context, bench: BenchHub, uid: int) -> dict:
    hub = bench.hub
    offsets = log_offsets()
    with ListenWatcher(uid) as watcher:
        t_req = time.time()
        status, post_s = _call(hub, "POST", "/users/alice/server", json={})
        while True:
            model = hub.server_model("alice")
            if model is None:
                raise RuntimeError(f"{bench.kind}: spawn failed\n{hub.log_tail(40)}")
            if model.get("ready"):
                t_ready = time.time()
                break
            time.sleep(0.05)
    daemons = daemon_counts(offsets)
    job_id = str(model["state"]["job_id"])
    sbatch = [c for c in calls_between(ctx.calls_log, t_req) if c.command == "sbatch"]
    t_sbatch = sbatch[0].end if sbatch else None
    t_submitted = job_submit_times({job_id}).get(job_id)
    t_running = job_start_times({job_id}).get(job_id)
    started = hub_log_events(hub.log_path, STARTED_LINE[spawner_of(bench.kind)], t_req)
    callback = hub_log_events(hub.log_path, CALLBACK_LINE, t_req)
    port = int(started[0][1].group(1)) if started else None
    t_socket = watcher.first_seen.get(port)
    t_listen = serving_since(bench.kind, job_id)
    spawn_calls = count_by_command(calls_between(ctx.calls_log, t_req, t_ready))
    time.sleep(1)
    run = {
        "job_id": job_id,
        "post_http": status,
        "post_s": post_s,
        "submit_s": _diff(t_sbatch, t_req),
        # from sbatch returned, or for slurmrestd (no sbatch) from the controller's accept
        "queue_s": _diff(t_running, t_sbatch if t_sbatch is not None else t_submitted),
        "boot_s": _diff(t_listen, t_running),
        "ready_s": _diff(t_ready, t_listen),
        "total_s": t_ready - t_req,
        "socket_after_listen_s": _diff(t_socket, t_listen),
        "callback_after_listen_s": _diff(callback[0][0] if callback else None, t_listen),
        "start_returned_after_listen_s": _diff(started[0][0] if started else None, t_listen),
        "spawn_calls": spawn_calls,
        # the same clock for every driver (there is no sbatch through slurmrestd)
        "submitted_s": _diff(t_submitted, t_req),
        "spawn_ssh_logins": daemons["ssh_logins"],
        "spawn_rest_requests": daemons["rest_requests"],
    }
    if run["submit_s"] is not None and run["ready_s"] is not None:
        run["hub_overhead_s"] = run["submit_s"] + run["ready_s"]
    if run["submitted_s"] is not None and run["ready_s"] is not None:
        run["hub_share_s"] = run["submitted_s"] + run["ready_s"]
    run.update(_one_stop(ctx, bench, job_id))
    return run


def serving_since(kind: str, job_id: str) -> float | None:
    """When jupyter-server logged "is running at" (it serves from then on)."""
    output = JOB_OUTPUT[spawner_of(kind)]
    path = Path(pwd.getpwnam("alice").pw_dir) / output.format(job_id=job_id)
    for _ in range(20):  # the line may still be on its way to the file
        try:
            for line in path.read_text(errors="replace").splitlines():
                match = SERVING_LINE.match(line)
                if match:
                    return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        except OSError:
            pass
        time.sleep(0.1)
    return None


def _one_stop(ctx: Context, bench: BenchHub, job_id: str) -> dict:
    hub = bench.hub
    gone: dict[str, float] = {}

    def watch_job():
        while job_visible(job_id):
            time.sleep(0.05)
        gone["job"] = time.time()

    watcher = threading.Thread(target=watch_job, daemon=True)
    offsets = log_offsets()
    t_del = time.time()
    watcher.start()
    status, delete_s = _call(hub, "DELETE", "/users/alice/server")
    while hub.server_model("alice") is not None:
        time.sleep(0.05)
    t_api = time.time()
    watcher.join(timeout=60)
    daemons = daemon_counts(offsets)
    return {
        "delete_http": status,
        "delete_s": delete_s,
        "stop_job_gone_s": _diff(gone.get("job"), t_del),
        "stop_api_gone_s": t_api - t_del,
        "stop_calls": count_by_command(calls_between(ctx.calls_log, t_del, t_api)),
        "stop_ssh_logins": daemons["ssh_logins"],
        "stop_rest_requests": daemons["rest_requests"],
    }


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def summarize_latency(runs: list[dict]) -> dict:
    keys = [
        "submit_s", "queue_s", "boot_s", "ready_s", "total_s", "hub_overhead_s",
        "socket_after_listen_s", "callback_after_listen_s", "start_returned_after_listen_s",
        "post_s",
        "stop_job_gone_s", "stop_api_gone_s", "delete_s",
        "submitted_s", "hub_share_s", "spawn_ssh_logins", "stop_ssh_logins",
    ]  # fmt: skip
    summary = {key: spread([r.get(key) for r in runs]) for key in keys}
    for key in ("spawn_calls", "stop_calls", "spawn_rest_requests", "stop_rest_requests"):
        summary[key] = spread([sum(r[key].values()) for r in runs if key in r])
    return summary
