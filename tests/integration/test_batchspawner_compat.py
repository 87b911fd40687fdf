"""A hub in an environment where hpcspawner is installed still runs batchspawner.

JupyterHub imports every installed spawner's entry point at start-up, so hpcspawner's
callback handler is registered in batchspawner hubs too. It must serve batchspawner's
servers (port only, while starting) instead of locking them out.
"""

from __future__ import annotations

import pytest

from .hub import run

BATCHSPAWNER_CONFIG = """
c.JupyterHub.spawner_class = "batchspawner.SlurmSpawner"
import os
su = os.environ.get("HPCSPAWNER_SINGLEUSER_VENV", "/opt/hpcspawner-dev/singleuser")
c.BatchSpawnerBase.exec_prefix = "runuser -m -u {username} --"
c.BatchSpawnerBase.req_srun = ""
c.BatchSpawnerBase.req_partition = "debug"
c.BatchSpawnerBase.req_memory = "512M"
c.BatchSpawnerBase.req_runtime = "0:10:00"
c.BatchSpawnerBase.req_prologue = 'cd "$HOME"'
c.BatchSpawnerBase.env_keep = ["LANG", "LC_ALL", "JUPYTERHUB_SINGLEUSER_APP"]
c.BatchSpawnerBase.environment = {"PATH": f"{su}/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"}
# batchspawner 1.3 binds the server to 127.0.0.1 whatever c.Spawner.ip says
c.BatchSpawnerBase.args = ["--ServerApp.ip=0.0.0.0"]
"""


@pytest.fixture(scope="module")
def hub(hub_factory):
    return hub_factory(extra_config=BATCHSPAWNER_CONFIG)


def test_batchspawner_server_starts_through_hpcspawners_handler(hub):
    hub.create_user("bob")
    token = hub.user_token("bob")
    r = hub.spawn("bob")
    assert r.status_code in (201, 202), r.text
    job_id = None
    try:
        model = hub.wait_ready("bob", timeout=120)
        job_id = model["state"]["job_id"]
        r = hub.session.get(
            f"{hub.url}/user/bob/api/status",
            headers={"Authorization": f"token {token}"},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        log = hub.log_path.read_text()
        assert "201 POST /hub/api/batchspawner" in log
        hub.stop_server("bob")
    finally:
        if job_id:
            run(["scancel", job_id])
