"""The sample jupyterhub_config.py's culling policy: jupyterhub-idle-culler as a hub service
with only the scopes it needs, and the job's safety net behind it (docs/howto/culling.md).

tests/integration/test_culling.py runs the same service against real servers in Slurm jobs.
"""

from __future__ import annotations

import sys
from pathlib import Path

from idleculler import SERVER_SCOPES, culler_of

from hpcspawner.checkconfig import load

REPO = Path(__file__).resolve().parents[2]


def test_the_sample_config_runs_the_culler_with_only_the_scopes_to_stop_servers():
    c = load(str(REPO / "jupyterhub_config.py"))
    culler = culler_of(c)
    assert culler.service["command"][0] == sys.executable  # the hub's own interpreter
    assert "api_token" not in culler.service  # the hub makes the managed service's token
    assert set(culler.role["scopes"]) == SERVER_SCOPES
    options = culler.options
    assert options.url == f"http://127.0.0.1:{c.JupyterHub.hub_port}/hub/api"
    assert (options.timeout, options.cull_every, options.concurrency) == (3600, 300, 5)
    assert not options.cull_users and not options.remove_named_servers
    assert options.max_age == 0


def test_the_sample_configs_safety_net_comes_after_the_culler():
    c = load(str(REPO / "jupyterhub_config.py"))
    assert c.SlurmSpawner.job_idle_timeout > culler_of(c).options.timeout
