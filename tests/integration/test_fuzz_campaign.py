"""CI's sample of the fuzz campaign (benchmarks/fuzz_campaign.py): 200 inputs, four zeros.

The full campaign (10,000 inputs, figures in docs/topic/security.md) runs by hand; this
runs the same script with a small count so that it cannot rot, and holds it to the same
oracles: no 5xx, no job outside the policy, no line in a job's script the template does
not make, no login mapped to an account that is not a person's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .drills import record
from .hub import REPO

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

COUNT = 200


def test_fuzz_campaign_sample_has_four_zeros(cluster, singleuser_venv, proxy_command, tmp_path):
    out = tmp_path / "fuzz_campaign.json"
    env = dict(os.environ)
    env["PATH"] = f"{REPO / 'node_modules' / '.bin'}:{env.get('PATH', '')}"
    argv = [sys.executable, str(REPO / "benchmarks" / "fuzz_campaign.py")]
    argv += ["--count", str(COUNT), "--seed", "7", "--logins", "10", "--out", str(out)]
    argv += ["--keep-log", str(tmp_path / "hub.log")]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
    assert out.exists(), result.stdout[-3000:] + result.stderr[-3000:]
    figures = json.loads(out.read_text())
    record(
        "fuzz-campaign-sample",
        inputs=figures["inputs"],
        jobs_checked=figures["jobs_checked"],
        seconds=figures["seconds"],
        **figures["zeros"],
    )
    assert figures["zeros"] == {
        "server_errors": 0,
        "jobs_outside_policy": 0,
        "injected_lines": 0,
        "refused_mappings": 0,
    }, figures["examples"]
    assert figures["campaign_errors"] == 0, figures["examples"]
    assert figures["total_inputs"] == COUNT
    # every kind ran, and the oracles had something to judge
    assert all(figures["inputs"][kind] > 0 for kind in ("user_options", "spawn_form"))
    assert all(figures["inputs"][kind] > 0 for kind in ("callback", "claims"))
    assert figures["jobs_checked"] > 0
    assert figures["outcomes"]["user_options"].get("rejected", 0) > 0
    claims = figures["outcomes"]["claims"]
    assert claims.get("mapped", 0) + claims.get("login-mapped", 0) > 0, claims
    # every server it started was gone before it stopped the hub
    assert figures["jobs_left_at_the_end"] == []
    assert result.returncode == 0, result.stdout[-3000:]
