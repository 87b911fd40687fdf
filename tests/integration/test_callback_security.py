"""The port callback is strict, and the server's API token stays out of sight.

With the default ``token_delivery = "file"`` the token is not in Slurm's record of the
job at all: not in the batch script, not in ``scontrol show job``, not in slurmctld's
saved state (``StateSaveLocation/hash.N/job.ID/{environment,script}``), not in the job's
environment (the batch shell's and the launcher's ``/proc/PID/environ``); only the
server's own process has it, and the file it came in is gone once the server runs.
With ``token_delivery = "environment"`` the same check finds it in slurmctld's state:
the check can see a leak.
"""

from __future__ import annotations

import os
import re
import stat
import time
from pathlib import Path

import pytest

from .drills import login_session
from .hub import job_environ, run, squeue_fields

# What JupyterHub does with the spawner here differs between its versions: runs under the
# lowest JupyterHub pyproject.toml allows too (scripts/test.sh).
pytestmark = pytest.mark.jupyterhub_floor

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


def token_file(hub, name: str, server: str, timeout: float = 30) -> Path:
    """The file the hub put the token of ``name``'s server into (default ``token_dir``)."""
    deadline = time.monotonic() + timeout
    while not (hub.server_model(name, server) or {}).get("state", {}).get("spawn_id"):
        assert time.monotonic() < deadline, f"{name}/{server} has no spawn id"
        time.sleep(0.2)
    spawn_id = hub.server_model(name, server)["state"]["spawn_id"]
    return Path(f"/home/{name}/.jupyterhub-tokens/{server or 'default'}/api-token-{spawn_id}")


def read_token_file(hub, name: str, server: str, timeout: float = 30) -> str:
    """The token of a starting server, read (as root) from its file, which must be
    the user's, 0600, in a 0700 directory of the user's."""
    path = token_file(hub, name, server, timeout)
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} was not written"
        time.sleep(0.2)
    uid = os.stat(f"/home/{name}").st_uid
    for item, mode in ((path.parent, 0o700), (path, 0o600)):
        info = os.stat(item)
        assert (stat.S_IMODE(info.st_mode), info.st_uid) == (mode, uid), (item, oct(info.st_mode))
    return path.read_text().strip()


def job_processes(name: str, server: str) -> list[dict[str, str]]:
    """The environments of ``name``'s processes of server ``server`` (read as root)."""
    uid = os.stat(f"/home/{name}").st_uid
    marker = f"JUPYTERHUB_SERVER_NAME={server}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != uid:
                continue
            with open(f"/proc/{entry}/environ", "rb") as f:
                variables = f.read().split(b"\0")
        except OSError:
            continue
        if marker in variables:
            found.append(
                dict(v.decode(errors="replace").split("=", 1) for v in variables if b"=" in v)
            )
    return found


def server_token(name: str, server: str) -> str:
    """The token in the environment of the running server's process."""
    tokens = {
        env["JUPYTERHUB_API_TOKEN"]
        for env in job_processes(name, server)
        if "JUPYTERHUB_API_TOKEN" in env
    }
    assert len(tokens) == 1, f"{name}/{server}: {len(tokens)} tokens in its processes"
    return tokens.pop()


def slurm_config(name: str) -> str:
    result = run(["scontrol", "show", "config"])
    assert result.returncode == 0, result.stderr
    match = re.search(rf"^{name}\s*=\s*(\S+)", result.stdout, re.MULTILINE)
    assert match, f"{name} not in scontrol show config"
    return match.group(1)


def slurm_record(job_id: str) -> dict[str, bytes]:
    """Everything Slurm keeps about a job where the hub's token could be: what scontrol
    shows, slurmctld's saved state (read as root) and the node's spool (if there)."""
    record = {}
    for argv in (
        ["scontrol", "show", "job", "-dd", job_id],
        ["scontrol", "write", "batch_script", job_id, "-"],
    ):
        result = run(argv)
        assert result.returncode == 0 and result.stdout, (argv, result.stderr)
        record[" ".join(argv)] = result.stdout.encode()
    state = Path(slurm_config("StateSaveLocation")) / f"hash.{int(job_id) % 10}" / f"job.{job_id}"
    for name in ("environment", "script"):
        path = state / name
        assert path.is_file(), f"slurmctld keeps no {path}: the check would see nothing"
        record[str(path)] = path.read_bytes()
    spool = slurm_config("SlurmdSpoolDir").replace("%n", "*").lstrip("/")
    for directory in Path("/").glob(f"{spool}/job*{job_id}"):
        if re.fullmatch(rf"job0*{job_id}", directory.name):
            for path in directory.rglob("*"):
                if path.is_file():
                    record[str(path)] = path.read_bytes()
    return record


def slurmdbd_record(job_id: str, timeout: float = 60) -> dict[str, bytes]:
    """slurmdbd's copies of the job's environment and batch script (the cluster stores
    both: AccountingStoreFlags=job_env,job_script).  slurmctld sends them when the job
    starts, through its queue to slurmdbd: wait until sacct has them (before, it prints
    its heading alone: "Environment used for N (must be batch to display)")."""
    record = {}
    for flag, present in (("--env-vars", "\nPATH="), ("--batch-script", "#SBATCH")):
        argv = ["sacct", "-j", job_id, flag, "--noheader"]
        deadline = time.monotonic() + timeout
        while True:
            result = run(argv)
            assert result.returncode == 0, (argv, result.stderr)
            if present in result.stdout:
                break
            assert time.monotonic() < deadline, f"{argv}: nothing after {timeout} s"
            time.sleep(1)
        record[" ".join(argv)] = result.stdout.encode()
    return record


def places_with(token: str, record: dict[str, bytes]) -> list[str]:
    return [where for where, data in record.items() if token.encode() in data]


@pytest.fixture(scope="module")
def servers(hub):
    """bob's server running; alice's server 'cb' starting (its job sleeps before the server).

    The tokens: alice's from the file the hub wrote (the job has not read it yet),
    bob's from his server's process (the only place it is once the server runs)."""
    for name in ("alice", "bob"):
        hub.create_user(name)
    assert hub.spawn("bob", options={"memory": "512M"}).status_code in (201, 202)
    hub.wait_ready("bob")
    r = hub.spawn("alice", "cb", options={"environment": "slowstart", "memory": "512M"})
    assert r.status_code in (201, 202), r.text
    starting = read_token_file(hub, "alice", "cb")
    running = server_token("bob", "")
    return {"starting": starting, "running": running}


def test_callback_rejects_what_it_must(hub, servers):
    starting_token = servers["starting"]
    running_token = servers["running"]
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


def test_bad_tokens_are_403_never_500(hub, servers):
    """Finding 7: any Authorization token is a 403, never a 500.

    The requests carry alice's login cookie (and the XSRF token), so the hub lets them
    through to the callback handler, which then compares the header's token with her
    servers' tokens; Tornado decodes header bytes as latin-1. Without the cookie the hub
    itself answers 403 before the handler (asserted too)."""
    session = login_session(hub, "alice")
    session.get(f"{hub.url}/hub/home", timeout=30).raise_for_status()  # the session's _xsrf
    xsrf = session.cookies.get("_xsrf", "")
    assert xsrf, "no _xsrf cookie after login"
    running = servers["running"]
    bad_tokens = {
        "utf-8-non-ascii": b"token " + "é".encode() * 32,
        "latin-1-bytes": b"token " + b"\xe9\xff" * 24,
        "latin-1-text": "token " + "Ä" * 40,
        "near-miss-non-ascii": b"token " + running[:-2].encode() + "é".encode(),
        "wrong": f"token {running.upper()}x",
        "10-kB": f"token {'a' * 10_000}",
        "empty": "token ",
        "no-token": "",
        "bearer-wrong": f"bearer {running[::-1]}",
    }
    before = len(hub.log_path.read_bytes())
    for label, authorization in bad_tokens.items():
        for with_cookie in (True, False):
            client = session if with_cookie else hub.session
            headers = {"Authorization": authorization}
            if with_cookie:
                headers["X-XSRFToken"] = xsrf
            r = client.post(
                f"{hub.url}/hub/api/batchspawner", headers=headers, json={"port": 40000}, timeout=30
            )
            assert r.status_code == 403, (label, with_cookie, r.status_code, r.text[:300])
            if with_cookie:
                # it reached the handler: its own refusal, not the hub's XSRF check
                assert "does not belong to a server" in r.text, (label, r.text[:300])
    log = hub.log_path.read_bytes()[before:].decode(errors="replace")
    assert "Traceback" not in log and " 500 POST" not in log, log[-3000:]
    # alice's starting server was not disturbed: it still waits for its own report
    assert hub.wait_ready("alice", "cb")["ready"]


def test_token_stays_out_of_sight(hub, servers):
    hub.wait_ready("alice", "cb")
    for name, server, token in (
        ("alice", "cb", servers["starting"]),
        ("bob", "", servers["running"]),
    ):
        assert len(token) >= 32
        job_id = hub.server_model(name, server)["state"]["job_id"]
        assert server_token(name, server) == token  # the server has it, from the launcher
        # the file it came in is gone: the launcher deleted it before starting the server
        path = token_file(hub, name, server)
        assert path.parent.is_dir() and not path.exists(), path
        # Slurm's record of the job: scontrol, slurmctld's state, the node's spool
        record = slurm_record(job_id) | slurmdbd_record(job_id)
        assert "#SBATCH" in record[f"scontrol write batch_script {job_id} -"].decode()
        assert "#SBATCH" in record[f"sacct -j {job_id} --batch-script --noheader"].decode()
        assert (
            "HPCSPAWNER_TOKEN_FILE=" in record[f"sacct -j {job_id} --env-vars --noheader"].decode()
        )
        assert places_with(token, record) == []
        # the job's own environment (what Slurm gave the batch shell and the launcher)
        job_envs = [env for env in job_processes(name, server) if "JUPYTERHUB_API_TOKEN" not in env]
        assert job_envs, "no process of the job besides the server"
        for env in job_envs:
            assert env["HPCSPAWNER_TOKEN_FILE"] == str(path)
            assert token not in "\0".join(f"{k}={v}" for k, v in env.items())
        argv = run(["ps", "-eww", "-o", "args"])
        assert token not in argv.stdout
        output = run(["cat", f"/home/{name}/.jupyterhub-slurm-{job_id}.log"])
        assert output.returncode == 0
        assert token not in output.stdout
        log = hub.log_path.read_text(errors="replace")
        assert "[D " in log, "the hub must log at debug level for this check"
        assert token not in log


def test_environment_delivery_puts_the_token_in_slurms_record(hub_factory):
    """The control for the check above: with ``token_delivery = "environment"`` (the
    batchspawner way) the same look at Slurm's record finds the token."""
    other = hub_factory(
        extra_config=EXTRA_CONFIG + 'c.SlurmSpawner.token_delivery = "environment"\n'
    )
    other.create_user("carol")
    # on the nodes of its own: this module's servers of alice and bob fill vm's two CPUs
    options = {"environment": "slowstart", "memory": "512M", "partition": "remote"}
    r = other.spawn("carol", "envtoken", options=options)
    assert r.status_code in (201, 202), r.text
    try:
        token = job_environ("carol", "envtoken", require="JUPYTERHUB_API_TOKEN")[
            "JUPYTERHUB_API_TOKEN"
        ]
        job_id = other.server_model("carol", "envtoken")["state"]["job_id"]
        assert squeue_fields(job_id, "%u") == ["carol"]
        where = places_with(token, slurm_record(job_id) | slurmdbd_record(job_id))
        state = Path(slurm_config("StateSaveLocation"))
        assert str(state / f"hash.{int(job_id) % 10}" / f"job.{job_id}" / "environment") in where
        assert f"sacct -j {job_id} --env-vars --noheader" in where
    finally:
        other.stop_server("carol", "envtoken")
