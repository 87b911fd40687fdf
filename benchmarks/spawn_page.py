"""Spawn-page benchmark: render time with the cluster view cached (warm) and not yet
fetched (cold), and scheduler calls per 100 page views.

Runs a real hub + proxy against the local Slurm cluster (as root, like the tests):

    .venv/jh6/bin/python benchmarks/spawn_page.py            # 200 warm views, 5 cold starts
    .venv/jh6/bin/python benchmarks/spawn_page.py --smoke    # a few of each (CI)

Scheduler calls are counted by shims in front of scontrol/sacctmgr/squeue on the hub's
PATH. Prints a markdown table and writes JSON to benchmarks/results/spawn_page.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import requests  # noqa: E402

from tests.integration.hub import Hub, make_counting_shims  # noqa: E402

EXTRA_CONFIG = """
c.SlurmSpawner.partitions = {"debug": {}, "compute": {}, "remote": {}, "gpu": {}}
c.SlurmSpawner.cluster_info_ttl = 60
"""


def percentile(values, q):
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def count_calls(log: Path, since: float) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in log.read_text().splitlines():
        stamp, command, _ = (line.split(" ", 2) + [""])[:3]
        if float(stamp) >= since:
            counts[command] = counts.get(command, 0) + 1
    return counts


def login(hub: Hub, name: str):
    """A browser-like session: the login form, then the session cookie."""
    session = requests.Session()
    session.trust_env = False
    session.verify = hub.session.verify
    session.get(f"{hub.url}/hub/login", timeout=30)
    r = session.post(
        f"{hub.url}/hub/login",
        data={"username": name, "password": "any", "_xsrf": session.cookies.get("_xsrf")},
        timeout=30,
        allow_redirects=False,  # the redirect would open the spawn page (and fill the cache)
    )
    if r.status_code != 302:
        raise RuntimeError(f"login: HTTP {r.status_code}")
    return session


def view(session) -> float:
    t0 = time.perf_counter()
    r = session.get(session.spawn_url, timeout=60)
    elapsed = time.perf_counter() - t0
    if r.status_code != 200 or "hpc-partitions" not in r.text:
        raise RuntimeError(f"spawn page: HTTP {r.status_code}: {r.text[:300]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--views", type=int, default=200)
    parser.add_argument("--cold", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="a quick run for CI")
    args = parser.parse_args()
    if args.smoke:
        args.views, args.cold = 10, 1

    work = Path(tempfile.mkdtemp(prefix="hpcspawner-bench-"))
    shims = make_counting_shims(
        work / "shims", work / "calls.log", ("scontrol", "sacctmgr", "squeue")
    )
    hub = Hub(directory=work / "hub", extra_config=EXTRA_CONFIG, path_prepend=[shims])
    (work / "hub").mkdir()
    try:
        cold = []
        for _ in range(args.cold):
            hub.start()
            session = login(hub, "alice")
            session.spawn_url = f"{hub.url}/hub/spawn"
            cold.append(view(session))  # first view: nothing cached yet
            hub.kill()
        hub.start()
        session = login(hub, "alice")
        session.spawn_url = f"{hub.url}/hub/spawn"
        view(session)  # fill the cache
        since = time.time()
        warm = [view(session) for _ in range(args.views)]
        calls = count_calls(work / "calls.log", since)
    finally:
        hub.stop()
        shutil.rmtree(work, ignore_errors=True)

    per_100 = {k: v * 100 / args.views for k, v in calls.items()}
    result = {
        "machine": f"{platform.node()} {platform.machine()}, {platform.python_version()}",
        "views": args.views,
        "warm_ms": {
            "p50": 1000 * statistics.median(warm),
            "p99": 1000 * percentile(warm, 99),
            "max": 1000 * max(warm),
        },
        "cold_ms": {"p50": 1000 * statistics.median(cold), "max": 1000 * max(cold)},
        "scheduler_calls_per_100_views": per_100,
    }
    out = REPO / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    if not args.smoke:
        (out / "spawn_page.json").write_text(json.dumps(result, indent=2) + "\n")
    print("| spawn page | p50 | p99 | max |")
    print("|---|---|---|---|")
    w, c = result["warm_ms"], result["cold_ms"]
    print(
        f"| warm (cached cluster view), {args.views} views | {w['p50']:.1f} ms | {w['p99']:.1f} ms | {w['max']:.1f} ms |"
    )
    print(
        f"| cold (first view after hub start), {args.cold} runs | {c['p50']:.1f} ms | | {c['max']:.1f} ms |"
    )
    total = sum(per_100.values())
    print(f"\nscheduler calls per 100 warm views: {total:g} {per_100 or ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
