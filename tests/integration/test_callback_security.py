"""The port callback is strict, and the server's API token stays out of sight."""

from __future__ import annotations

import pytest

from .hub import job_environ, run, squeue_fields

EXTRA_CONFIG = """
c.SlurmSpawner.environments = {
    # keeps the job busy before the server starts, so the callback can be probed
    "slowstart": {"description": "slow site set-up", "prologue": "sleep 12"},
}
"""


@pytest.fixture(scope="module")
def hub(hub_factory):
    return hub_factory(extra_config=EXTRA_CONFIG)


def post_port(hub, token, body, *, raw=False):
    headers = {"Authorization": f"token {token}"} if token else {"Authorization": ""}
    if raw:
        return hub.api("POST", "/batchspawner", headers=headers, data=body)
    return hub.api("POST", "/batchspawner", headers=headers, json=body)


def proxy_target(hub, route):
    r = hub.session.get(
        f"http://127.0.0.1:{hub.proxy_api_port}/api/routes",
        headers={"Authorization": f"token {hub.proxy_token}"},
        timeout=10,
    )
    r.raise_for_status()
    return r.json()[route]["target"]


@pytest.fixture(scope="module")
def servers(hub):
    """bob's server running; alice's server 'cb' starting (its job sleeps before the server)."""
    for name in ("alice", "bob"):
        hub.create_user(name)
    assert hub.spawn("bob", options={"memory": "512M"}).status_code in (201, 202)
    hub.wait_ready("bob")
    r = hub.spawn("alice", "cb", options={"environment": "slowstart", "memory": "512M"})
    assert r.status_code in (201, 202), r.text
    starting = job_environ("alice", "cb")
    running = job_environ("bob", "")
    return {"starting": starting, "running": running}


def test_callback_rejects_what_it_must(hub, servers):
    starting_token = servers["starting"]["JUPYTERHUB_API_TOKEN"]
    running_token = servers["running"]["JUPYTERHUB_API_TOKEN"]
    user_token = hub.user_token("alice")
    model = hub.server_model("alice", "cb")
    assert model and not model["ready"], "alice/cb must still be starting for this test"

    cases = [
        # (token, body, raw, expected status, text in the message)
        (None, {"port": 40000}, False, 403, ""),
        (user_token, {"port": 40000}, False, 403, "does not belong to a server"),
        (starting_token, {"port": 40000, "ip": "10.9.9.9"}, False, 400, "'ip'"),
        (starting_token, {"port": 40000, "job_id": "1"}, False, 400, "'job_id'"),
        (starting_token, {"port": 70000}, False, 400, "outside the allowed range"),
        (starting_token, {"port": 0}, False, 400, "outside the allowed range"),
        (starting_token, {"port": "40000"}, False, 400, "must be an integer"),
        (starting_token, {"port": True}, False, 400, "must be an integer"),
        (starting_token, [40000], False, 400, "JSON object"),
        (starting_token, b"port=40000", True, 400, "must be JSON"),
        (running_token, {"port": 40000}, False, 409, "not waiting"),
    ]
    for token, body, raw, status, text in cases:
        r = post_port(hub, token, body, raw=raw)
        assert r.status_code == status, (body, r.status_code, r.text)
        assert text in r.text, (body, r.text)

    # none of that lost or changed anything: the server comes up where Slurm put it
    model = hub.wait_ready("alice", "cb")
    node = model["state"]["job_host"]
    assert squeue_fields(model["state"]["job_id"], "%B") == [node]
    target = proxy_target(hub, "/user/alice/cb")
    assert target.startswith(f"http://{node}:"), target
    assert not target.endswith(":40000"), target
    # and now that it runs, its token cannot move it
    r = post_port(hub, starting_token, {"port": 40001})
    assert r.status_code == 409, r.text
    assert proxy_target(hub, "/user/alice/cb") == target


def test_token_stays_out_of_sight(hub, servers):
    hub.wait_ready("alice", "cb")
    for name, server, env in (
        ("alice", "cb", servers["starting"]),
        ("bob", "", servers["running"]),
    ):
        token = env["JUPYTERHUB_API_TOKEN"]
        assert len(token) >= 32
        job_id = hub.server_model(name, server)["state"]["job_id"]
        script = run(["scontrol", "write", "batch_script", job_id, "-"])
        assert script.returncode == 0, script.stderr
        assert "#SBATCH" in script.stdout
        assert token not in script.stdout
        record = run(["scontrol", "show", "job", "-dd", job_id])
        assert record.returncode == 0 and job_id in record.stdout
        assert token not in record.stdout
        argv = run(["ps", "-eww", "-o", "args"])
        assert token not in argv.stdout
        output = run(["cat", f"/home/{name}/.jupyterhub-slurm-{job_id}.log"])
        assert output.returncode == 0
        assert token not in output.stdout
        log = hub.log_path.read_text(errors="replace")
        assert "[D " in log, "the hub must log at debug level for this check"
        assert token not in log
