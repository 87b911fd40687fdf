"""hpcspawner and batchspawner 1.3.0 side by side on the local Slurm cluster.

One command runs every scenario for both spawners, each on its own real hub
(JupyterHub 6.1.1 + CHP over HTTPS, as root), with the same timing shims in
front of every Slurm command:

    .venv/jh6/bin/python benchmarks/run_all.py                 # everything, then the docs
    .venv/jh6/bin/python benchmarks/run_all.py --only latency  # one scenario, merged in
    .venv/jh6/bin/python benchmarks/run_all.py --smoke         # tiny sizes (CI); writes nothing

Scenarios: ``latency`` (spawn phases and stop of one JupyterLab server, the
spawners taking turns), ``load`` (Slurm calls per minute, hub RSS and restart
recovery with N running servers), ``storm`` (N servers requested at once, all
queued; hub API latency from a second client; then the calls per minute with
those N queued). The results are merged into benchmarks/results/sidebyside.json
and the generated section of docs/topic/performance.md.

Needs: the cluster (``MULTINODE=2 scripts/cluster/setup.sh``; N running servers
need N free CPUs in partition ``compute``: ``FAKE_CPUS=64`` advertises more on node
vm), /opt/hpcspawner-dev/singleuser, CHP. batchspawner's hub venv is created
under /opt/hpcspawner-bench when missing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import report
import scenarios
from sidebyside import (
    BATCHSPAWNER_HUB_VENV,
    REPO,
    SINGLEUSER_VENV,
    SPAWNERS,
    HubSettings,
    ensure_batchspawner_venv,
    install_tiny_server,
    make_timing_shims,
    settings_summary,
)

from tests.integration.hub import CHP

RESULTS = REPO / "benchmarks" / "results" / "sidebyside.json"
DOCS = REPO / "docs" / "topic" / "performance.md"
SCENARIOS = ("latency", "load", "storm")


def _output(argv: list[str]) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except OSError as e:
        return f"? ({e})"
    return (result.stdout or result.stderr).strip()


def _package_version(python: Path | str, module: str) -> str:
    return _output([str(python), "-c", f"import {module}; print({module}.__version__)"])


def machine() -> dict[str, str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    os_name = next(
        (
            line.split("=", 1)[1].strip('"')
            for line in Path("/etc/os-release").read_text().splitlines()
            if line.startswith("PRETTY_NAME=")
        ),
        platform.system(),
    )
    return {
        "machine": f"{os.cpu_count()} CPUs ({cpu}), {mem_kib / 1024**2:.0f} GiB, {os_name}, "
        f"kernel {platform.release()}",
    }


def versions() -> dict[str, str]:
    commit = _output(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = _output(["git", "-C", str(REPO), "status", "--porcelain", "--", "hpcspawner"])
    bs_python = BATCHSPAWNER_HUB_VENV / "bin" / "python"
    su_python = SINGLEUSER_VENV / "bin" / "python"
    return {
        "hpcspawner": f"{_package_version(sys.executable, 'hpcspawner')} "
        f"(git {commit}{' + uncommitted changes' if dirty else ''}), "
        f"hub JupyterHub {_package_version(sys.executable, 'jupyterhub')}, "
        f"Python {platform.python_version()}",
        "batchspawner": f"{_package_version(bs_python, 'batchspawner')}, hub JupyterHub "
        f"{_package_version(bs_python, 'jupyterhub')} in {BATCHSPAWNER_HUB_VENV} "
        "(without hpcspawner)",
        "jobs": f"{SINGLEUSER_VENV}: JupyterLab {_package_version(su_python, 'jupyterlab')}, "
        f"JupyterHub {_package_version(su_python, 'jupyterhub')}",
        "Slurm": _output(["sinfo", "--version"]),
        "configurable-http-proxy": _output([str(CHP), "--version"]),
    }


def cluster() -> str:
    nodes = [
        line.split()
        for line in _output(["sinfo", "--noheader", "--Node", "--format=%N %c"]).splitlines()
    ]
    cpus = ", ".join(sorted({f"{n[0]} {n[1]} CPUs" for n in nodes if len(n) == 2})) or "?"
    params = next(
        (
            line.split("=", 1)[1].strip()
            for line in _output(["scontrol", "show", "config"]).splitlines()
            if line.startswith("SchedulerParameters")
        ),
        "?",
    )
    return f"{cpus}; SchedulerParameters={params}"


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M")


def meta(ctx) -> dict:
    return {
        "measured": now(),
        "cluster": cluster(),
        "loadavg": os.getloadavg()[0],
        "poll_interval": ctx.poll_interval,
    }


def run(args, ctx) -> dict:
    found: dict[str, dict] = {}
    kinds = args.spawners
    if "latency" in args.only:
        found["latency"] = {**meta(ctx), "runs": args.runs}
        runs = scenarios.latency(ctx, kinds, args.runs)
        for kind in kinds:
            found["latency"][kind] = {
                "summary": scenarios.summarize_latency(runs[kind]),
                "runs": runs[kind],
            }
    if "load" in args.only:
        found["load"] = {**meta(ctx), "sizes": args.sizes}
        for kind in kinds:
            found["load"][kind] = scenarios.load(ctx, kind, args.sizes)
    if "storm" in args.only:
        found["storm"] = {**meta(ctx), "sizes": args.storm}
        for kind in kinds:
            found["storm"][kind] = [
                scenarios.storm(ctx, kind, size, args.storm_queue) for size in args.storm
            ]
    return found


def merge(previous: dict, found: dict) -> dict:
    """New scenarios replace old ones, except that ``load`` keeps the sizes (per spawner)
    that this run did not measure: a run with ``--sizes 200 --spawners hpcspawner`` adds a row."""
    merged = {**previous, **found}
    old_load, new_load = previous.get("load"), found.get("load")
    if old_load and new_load:
        load = {**old_load, **new_load}
        for kind in SPAWNERS:
            if kind not in old_load:
                continue
            if kind not in new_load:
                load[kind] = old_load[kind]
                continue
            combined = dict(new_load[kind])
            for key in ("rows", "restart"):
                sizes = {row["servers"] for row in new_load[kind][key]}
                kept = [row for row in old_load[kind][key] if row["servers"] not in sizes]
                combined[key] = sorted(kept + new_load[kind][key], key=lambda r: r["servers"])
            load[kind] = combined
        load["sizes"] = sorted(set(old_load.get("sizes", [])) | set(new_load.get("sizes", [])))
        merged["load"] = load
    return merged


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes; writes no results")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="scenarios, comma-separated")
    parser.add_argument("--spawners", default=",".join(SPAWNERS))
    parser.add_argument("--runs", type=int, default=10, help="latency runs per spawner")
    parser.add_argument("--sizes", default="1,10,50", help="running servers for 'load'")
    parser.add_argument(
        "--storm", default="50", help="servers requested at once (comma-separated: one storm each)"
    )
    parser.add_argument(
        "--storm-queue",
        choices=("begin", "resources"),
        default="begin",
        help="storm jobs queue by --begin (no CPUs taken) or for the cluster's CPUs",
    )
    parser.add_argument("--poll-interval", type=int, default=5, help="seconds, both spawners")
    args = parser.parse_args(argv)
    if args.smoke:
        args.runs, args.sizes, args.storm, args.poll_interval = 1, "1,2", "3", 2
    args.only = [s for s in args.only.split(",") if s]
    args.spawners = [s for s in args.spawners.split(",") if s]
    args.sizes = [int(n) for n in args.sizes.split(",") if n]
    args.storm = [int(n) for n in args.storm.split(",") if n]
    unknown = (set(args.only) - set(SCENARIOS)) | (set(args.spawners) - set(SPAWNERS))
    if unknown:
        parser.error(f"unknown: {sorted(unknown)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("run as root: the hubs submit jobs as the test users through runuser")
    ensure_batchspawner_venv()
    install_tiny_server()
    work = Path(tempfile.mkdtemp(prefix="hpcspawner-sidebyside-"))
    # the shims run as the users too: their own world-readable directory
    shims = Path(tempfile.mkdtemp(prefix="hpcspawner-shims-"))
    calls_log = shims / "calls.log"
    make_timing_shims(shims, calls_log)
    ctx = scenarios.Context(work, shims, calls_log, args.smoke, args.poll_interval)
    try:
        found = run(args, ctx)
    finally:
        if not os.environ.get("HPCSPAWNER_BENCH_KEEP"):  # keep the logs to look into a run
            shutil.rmtree(shims, ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)

    previous = {} if args.smoke or not RESULTS.exists() else json.loads(RESULTS.read_text())
    results = {
        "generated": now(),
        "machine": machine(),
        "versions": versions(),
        "settings": settings_summary(HubSettings(poll_interval=args.poll_interval)),
        "scenarios": merge(previous.get("scenarios", {}), found),
    }
    markdown = report.render(results)
    print(markdown)
    if not args.smoke:
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
        report.write_docs(DOCS, markdown)
        print(f"\nwrote {RESULTS.relative_to(REPO)} and {DOCS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
