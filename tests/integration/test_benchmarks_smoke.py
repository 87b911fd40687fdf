"""The benchmarks run in a quick mode in CI so that they cannot rot.

They measure; nothing here asserts on a time.
"""

from __future__ import annotations

import os
import subprocess
import sys

from .hub import REPO


def run_benchmark(script: str, *args: str, timeout: float = 600) -> str:
    env = dict(os.environ)
    env["PATH"] = f"{REPO / 'node_modules' / '.bin'}:{env.get('PATH', '')}"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), "--smoke", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_spawn_page_benchmark_smoke(cluster, singleuser_venv, proxy_command):
    out = run_benchmark("spawn_page.py")
    assert "| warm (cached cluster view), 10 views |" in out
    # the page views after the first used the cached cluster view
    assert "scheduler calls per 100 warm views: 0" in out


def test_side_by_side_benchmarks_smoke(cluster, singleuser_venv, proxy_command):
    # hpcspawner and batchspawner 1.3.0 (its own hub venv, created when missing)
    out = run_benchmark("run_all.py", timeout=1200)
    for heading in (
        "### Scheduler load (poll_interval = 2 s for both)",
        "### Spawn latency: one JupyterLab server, 1 run each",
        "### Stop latency",
        "### Spawn storm",
        "### Restart recovery",
    ):
        assert heading in out, out[-3000:]
    assert "| 2 running |" in out
    assert "| **total: request → ready** |" in out


def test_side_by_side_off_the_cluster_smoke(cluster, singleuser_venv, proxy_command):
    # hpcspawner's ssh and rest drivers and batchspawner through ssh, with one latency run
    # and one running server each; the harness starts the login node's sshd and slurmrestd
    # unless they run, and stops them again
    out = run_benchmark(
        "run_all.py", "--drivers", "ssh,rest", "--only", "latency,load", "--sizes", "1",
        timeout=1200,
    )  # fmt: skip
    for heading in (
        "### Off the cluster: per driver",
        "#### Scheduler load (poll_interval = 2 s)",
        "#### Spawn and stop, one JupyterLab server",
        "#### Restart recovery",
    ):
        assert heading in out, out[-3000:]
    rows = {
        hub: next((line for line in out.splitlines() if line.startswith(f"| 1 running | {hub} |")), "")
        for hub in ("hpcspawner ssh", "hpcspawner rest", "batchspawner ssh")
    }  # fmt: skip
    assert all(rows.values()), out[-3000:]
    # the pooled connection: no SSH login while the hub polls its running server
    assert "| 0.0 SSH logins (0) |" in rows["hpcspawner ssh"], rows


def test_controller_cost_smoke(cluster):
    # the controller's time per status query, per driver and query form, on a tiny queue
    out = run_benchmark("controller_cost.py", timeout=600)
    assert out.splitlines()[-1].startswith("| 20 | 3 | "), out[-3000:]
    header = next(line for line in out.splitlines() if line.startswith("| foreign jobs"))
    for column in ("local batch", "ssh each", "rest auto", "batchspawner"):
        assert column in header, header
