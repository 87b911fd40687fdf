"""hpcspawner-singleuser end to end, without Slurm: the job's environment names only the
token file; the launcher deletes the file, gives the token to the server's environment
and reports the port with it.

A stand-in hub (http.server) takes the report; a stand-in server (a Python script)
listens on the port it is given and writes its environment down.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

TOKEN = "d1c2b3a4" * 4

SERVER = """\
import json, os, socket, sys, time
from urllib.parse import urlparse
with open(sys.argv[1], "w") as f:
    json.dump(dict(os.environ), f)
sock = socket.socket()
sock.bind(("127.0.0.1", urlparse(os.environ["JUPYTERHUB_SERVICE_URL"]).port))
sock.listen()
sock.settimeout(60)
try:
    sock.accept()
except OSError:
    pass
"""


@pytest.fixture
def hub():
    reports = []
    arrived = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            reports.append((self.path, self.headers["Authorization"], json.loads(body)))
            self.send_response(201)
            self.end_headers()
            arrived.set()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hub/api", reports, arrived
    server.shutdown()
    server.server_close()


def launch(tmp_path, env, server_code=SERVER, args=()):
    """hpcspawner-singleuser running ``server_code`` as the server; its first argument
    is ``tmp_path / "env.json"``, then ``args``."""
    server = tmp_path / "server.py"
    server.write_text(server_code)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hpcspawner.job.launcher",
            sys.executable,
            str(server),
            str(tmp_path / "env.json"),
            *args,
        ],
        env={
            "PATH": os.environ["PATH"],
            "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
            "HPCSPAWNER_FAST_EXIT": "0",
            **env,
        },
        cwd=os.getcwd(),
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_token_comes_from_the_file_and_reaches_only_the_server(tmp_path, hub):
    api_url, reports, arrived = hub
    token_file = tmp_path / "api-token-1a2b"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    env = {
        "HPCSPAWNER_TOKEN_FILE": str(token_file),
        "JUPYTERHUB_API_URL": api_url,
        "JUPYTERHUB_SERVICE_URL": "http://127.0.0.1:0/user/alice/",
    }
    launcher = launch(tmp_path, env)
    try:
        assert arrived.wait(timeout=60), "the launcher reported no port"
        assert not token_file.exists(), "the launcher must delete the token file"
        ((path, authorization, body),) = reports
        assert path == "/hub/api/batchspawner"
        assert authorization == f"token {TOKEN}"
        assert set(body) == {"port"}
        server_env = json.loads((tmp_path / "env.json").read_text())
        assert server_env["JUPYTERHUB_API_TOKEN"] == TOKEN
        assert server_env["JPY_API_TOKEN"] == TOKEN
        assert "HPCSPAWNER_TOKEN_FILE" not in server_env
        # the launcher's own environment (what /proc/PID/environ shows) never held it
        with open(f"/proc/{launcher.pid}/environ", "rb") as f:
            assert TOKEN.encode() not in f.read()
    finally:
        launcher.send_signal(signal.SIGTERM)
        _, err = launcher.communicate(timeout=30)
    assert TOKEN not in err


def test_a_job_started_again_finds_no_token_and_stops(tmp_path, hub):
    api_url, reports, _ = hub
    env = {
        "HPCSPAWNER_TOKEN_FILE": str(tmp_path / "api-token-gone"),
        "JUPYTERHUB_API_URL": api_url,
    }
    launcher = launch(tmp_path, env)
    _, err = launcher.communicate(timeout=30)
    assert launcher.returncode == 2
    assert "cannot read the token file" in err
    assert reports == []
    assert not (tmp_path / "env.json").exists(), "no server may start without its token"
