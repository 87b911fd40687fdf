"""The benchmarks run in a quick mode in CI so that they cannot rot.

They measure; nothing here asserts on a time.
"""

from __future__ import annotations

import os
import subprocess
import sys

from .hub import REPO


def run_benchmark(script: str, *args: str) -> str:
    env = dict(os.environ)
    env["PATH"] = f"{REPO / 'node_modules' / '.bin'}:{env.get('PATH', '')}"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), "--smoke", *args],
        capture_output=True,
        text=True,
        timeout=600,
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
