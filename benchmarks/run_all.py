"""hpcspawner and batchspawner 1.3.0 side by side on the local Slurm cluster.

One command runs every scenario for both spawners, each on its own real hub
(JupyterHub 6.1.1 + CHP over HTTPS, as root), with the same timing shims in
front of every Slurm command:

    .venv/jh6/bin/python benchmarks/run_all.py                 # everything, then the docs
    .venv/jh6/bin/python benchmarks/run_all.py --only latency  # one scenario, merged in
    .venv/jh6/bin/python benchmarks/run_all.py --smoke         # tiny sizes (CI); writes nothing
    .venv/jh6/bin/python benchmarks/run_all.py --drivers local,ssh,rest --only latency,load

``--drivers`` (default ``local``) adds hubs off the cluster (benchmarks/kinds.py):
hpcspawner with its ``ssh`` driver (a login node: this host's second sshd on
127.0.0.1:2222) and batchspawner with an ``ssh`` exec_prefix through the same login
node, and hpcspawner with its ``rest`` driver (slurmrestd on 127.0.0.1:6820). The
harness starts the sshd and slurmrestd they need unless they run, and stops by pid
those it started. The hubs run one after the other (``latency``: all up, spawning in
turns), so slurmctld's statistics (sdiag, reset per window) belong to one hub.

Scenarios: ``latency`` (spawn phases and stop of one JupyterLab server, the
spawners taking turns), ``load`` (Slurm calls per minute, hub RSS and restart
recovery with N running servers), ``storm`` (N servers requested at once, all
queued; hub API latency from a second client; then the calls per minute with
those N queued; local driver only). The results are merged into
benchmarks/results/sidebyside.json and the generated section of
docs/topic/performance.md.

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
from contextlib import ExitStack, contextmanager
from datetime import datetime, timezone
from pathlib import Path

import report
import scenarios
from kinds import DRIVERS, KINDS, SPAWNERS, driver_of, kinds_for
from sidebyside import (
    BATCHSPAWNER_HUB_VENV,
    REPO,
    SINGLEUSER_VENV,
    HubSettings,
    ensure_batchspawner_venv,
    install_tiny_server,
    make_login_sudo,
    make_timing_shims,
    settings_summary,
)

from tests.integration import offcluster
from tests.integration.hub import CHP

RESULTS = REPO / "benchmarks" / "results" / "sidebyside.json"
DOCS = REPO / "docs" / "topic" / "performance.md"
SCENARIOS = ("latency", "load", "storm")
#: sizes when not given on the command line
FULL = {"runs": 10, "sizes": "1,10,50", "storm": "50", "poll_interval": 5}
SMOKE = {"runs": 1, "sizes": "1,2", "storm": "3", "poll_interval": 2}


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
        "off the cluster": f"asyncssh {_package_version(sys.executable, 'asyncssh')}, "
        f"httpx {_package_version(sys.executable, 'httpx')}; login node "
        f"{_output(['ssh', '-V'])} (its sshd); slurmrestd of the Slurm above",
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
    kinds = args.kinds
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
    # the storm is the local comparison; off the cluster, latency and load compare drivers
    storm_kinds = [kind for kind in kinds if driver_of(kind) == "local"]
    if "storm" in args.only and storm_kinds:
        found["storm"] = {**meta(ctx), "sizes": args.storm}
        for kind in storm_kinds:
            found["storm"][kind] = [
                scenarios.storm(ctx, kind, size, args.storm_queue) for size in args.storm
            ]
    return found


def merge(previous: dict, found: dict) -> dict:
    """New scenarios replace old ones, except that ``load`` keeps the sizes (per kind of hub)
    that this run did not measure: a run with ``--sizes 200 --spawners hpcspawner`` adds a row,
    and ``latency`` and ``load`` keep the kinds this run did not measure (``--drivers ssh``
    leaves the local ones), each marked with the date it was measured."""
    merged = {**previous, **found}
    for name in ("latency", "load"):
        old, new = previous.get(name), found.get(name)
        if not old or not new:
            continue
        combined = dict(new)
        for kind in KINDS:
            if kind not in old:
                continue
            if kind not in new:
                combined[kind] = {"measured": old.get("measured"), **old[kind]}
            elif name == "load":
                combined[kind] = _merge_sizes(old[kind], new[kind])
        if name == "load":
            combined["sizes"] = sorted(set(old.get("sizes", [])) | set(new.get("sizes", [])))
        merged[name] = combined
    return merged


def _merge_sizes(old: dict, new: dict) -> dict:
    """One kind's load results: the new rows, and the old rows of sizes not measured again."""
    combined = dict(new)
    for key in ("rows", "restart"):
        sizes = {row["servers"] for row in new[key]}
        kept = [row for row in old[key] if row["servers"] not in sizes]
        combined[key] = sorted(kept + new[key], key=lambda r: r["servers"])
    return combined


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes; writes no results")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="scenarios, comma-separated")
    parser.add_argument("--spawners", default=",".join(SPAWNERS))
    parser.add_argument(
        "--drivers",
        default="local",
        help="how the hubs reach Slurm, comma-separated: local (the hub's host), ssh (a login "
        "node; batchspawner through ssh too), rest (slurmrestd; hpcspawner only)",
    )
    parser.add_argument("--runs", type=int, help="latency runs per hub (default 10; smoke 1)")
    parser.add_argument("--sizes", help="running servers for 'load' (default 1,10,50; smoke 1,2)")
    parser.add_argument(
        "--storm",
        help="servers requested at once, comma-separated: one storm each (default 50; smoke 3)",
    )
    parser.add_argument(
        "--storm-queue",
        choices=("begin", "resources"),
        default="begin",
        help="storm jobs queue by --begin (no CPUs taken) or for the cluster's CPUs",
    )
    parser.add_argument("--poll-interval", type=int, help="seconds, every hub (default 5; smoke 2)")
    args = parser.parse_args(argv)
    # what is not given: the smoke's tiny sizes, or the full run's
    defaults = SMOKE if args.smoke else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.only = [s for s in args.only.split(",") if s]
    args.spawners = [s for s in args.spawners.split(",") if s]
    args.drivers = [s for s in args.drivers.split(",") if s]
    args.sizes = [int(n) for n in args.sizes.split(",") if n]
    args.storm = [int(n) for n in args.storm.split(",") if n]
    unknown = (
        (set(args.only) - set(SCENARIOS))
        | (set(args.spawners) - set(SPAWNERS))
        | (set(args.drivers) - set(DRIVERS))
    )
    if unknown:
        parser.error(f"unknown: {sorted(unknown)}")
    args.kinds = kinds_for(args.spawners, args.drivers)
    if not args.kinds:
        parser.error(f"no hub is {args.spawners} over {args.drivers} (batchspawner has no rest)")
    return args


@contextmanager
def daemon_running(daemon: offcluster.Daemon):
    """The off-cluster tests' ``offcluster.running``: the daemon is started unless it runs,
    and one started here is stopped by pid at the end, also when the run failed (its
    generator goes on after ``yield`` as pytest's fixture teardown makes it)."""
    steps = offcluster.running(daemon)
    next(steps)
    try:
        yield
    finally:
        next(steps, None)


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
    if "ssh" in args.drivers:
        make_login_sudo(shims, calls_log)
    ctx = scenarios.Context(work, shims, calls_log, args.smoke, args.poll_interval)
    try:
        with ExitStack() as daemons:
            for driver in args.drivers:
                if driver in offcluster.DRIVERS:  # sshd, slurmrestd
                    daemons.enter_context(daemon_running(offcluster.DRIVERS[driver][0]))
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
