"""The job's clock as JupyterLab reaches it: a real Jupyter server (jupyter_server, in a
subprocess), with the extension enabled by the package's own config file
(share/jupyter/jupyter_server_config.d/hpcspawner-clock.json, which the wheel installs
into etc/jupyter/jupyter_server_config.d/), a stand-in ``squeue`` first on PATH, and
``SLURM_JOB_ID`` set as in a job.

- ``GET {base_url}hpcspawner/job/clock`` answers with the job's times, to the server's
  token only (403 without it, as the server's own REST API);
- SIGUSR1 (Slurm's signal ahead of the limit, relayed by the launcher) does not end the
  server: the next answer says the save is due;
- outside a Slurm job the answer says so, and the server does not run squeue.

JupyterHub is not needed: the extension works in any Jupyter server of the job.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from hpcspawner.job import walltime
from hpcspawner.job.clockhandler import CLOCK_PATH

REPO = Path(__file__).resolve().parents[2]
TOKEN = "c10c4" * 8
BASE_URL = "/user/alice/"
LINE = "4242|debug|RUNNING|3:00|2:45|2030-01-02T03:04:05|vm\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def start_server(tmp_path):
    """Start a Jupyter server with ``env`` added; yield (url, process, squeue calls file)."""
    procs = []

    def start(env: dict[str, str]):
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        calls = tmp_path / "squeue-calls"
        squeue = bin_dir / "squeue"
        squeue.write_text(f'#!/bin/sh\necho "$*" >> {calls}\nprintf "%s" "{LINE.strip()}"\n')
        squeue.chmod(0o755)
        port = free_port()
        home = tmp_path / "home"
        home.mkdir()
        server_env = {
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "HOME": str(home),
            # the package's config directory, as etc/jupyter of the job's environment
            "JUPYTER_CONFIG_PATH": str(REPO / "share" / "jupyter"),
            "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
            "JUPYTER_DATA_DIR": str(tmp_path / "data"),
            "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
            "JUPYTER_PLATFORM_DIRS": "1",
            **env,
        }
        log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyter_server",
                "--no-browser",
                f"--port={port}",
                "--ip=127.0.0.1",
                f"--ServerApp.base_url={BASE_URL}",
                f"--IdentityProvider.token={TOKEN}",
                f"--ServerApp.root_dir={home}",
                "--ServerApp.port_retries=0",
                "--allow-root",  # the tests run as root on CI
            ],
            env=server_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        procs.append((proc, log))
        url = f"http://127.0.0.1:{port}{BASE_URL}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            try:
                requests.get(url + "api", timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()
                time.sleep(0.2)
        return url, proc, calls

    yield start
    for proc, log in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()


def get(url: str, token: str | None = TOKEN) -> requests.Response:
    headers = {"Authorization": f"token {token}"} if token else {}
    return requests.get(url + CLOCK_PATH, headers=headers, timeout=20)


def test_the_clock_answers_the_servers_owner_only(start_server, tmp_path):
    env = {"SLURM_JOB_ID": "4242", **walltime.clock_environment(walltime.ClockSettings())}
    url, proc, calls = start_server(env)

    assert get(url, token=None).status_code == 403
    assert get(url, token="not-the-token").status_code == 403
    assert not calls.exists(), "an unauthenticated request ran squeue"

    r = get(url)
    assert r.status_code == 200, r.text
    assert r.headers["Cache-Control"] == "no-store"
    status = r.json()
    assert status["in_job"] is True
    assert (status["job_id"], status["partition"], status["nodes"]) == ("4242", "debug", "vm")
    assert 160 <= status["seconds_left"] <= 165
    assert status["warnings"] == [900, 300]
    assert status["warning"] == 300
    assert status["save_due"] is False and status["end_signal"] is False
    assert calls.read_text().splitlines() == [
        f"--noheader --jobs=4242 --format={walltime.SQUEUE_FORMAT}"
    ]
    # a second request within the refresh interval: no squeue
    assert get(url).json()["job_id"] == "4242"
    assert len(calls.read_text().splitlines()) == 1

    # Slurm's signal ahead of the limit: the server lives on, the save is due
    os.kill(proc.pid, signal.SIGUSR1)
    deadline = time.monotonic() + 20
    while not (status := get(url).json())["end_signal"]:
        assert time.monotonic() < deadline, "the server did not take the signal"
        time.sleep(0.1)
    assert proc.poll() is None, "SIGUSR1 ended the server"
    assert status["save_due"] is True
    assert len(calls.read_text().splitlines()) == 2, "the signal makes the clock read again"
    log = (tmp_path / "server.log").read_text()
    assert "hpcspawner clock: job 4242, warnings at [900, 300] s before the end" in log
    assert "Slurm's signal SIGUSR1 ahead of job 4242's limit" in log


def test_outside_a_slurm_job_the_clock_says_so(start_server):
    url, proc, calls = start_server({})
    r = get(url)
    assert r.status_code == 200, r.text
    assert r.json() == {"in_job": False}
    assert not calls.exists()
    # and SIGUSR1 is jupyter_server's own again: it logs the server's info and goes on
    os.kill(proc.pid, signal.SIGUSR1)
    time.sleep(0.5)
    assert proc.poll() is None
    assert get(url).json() == {"in_job": False}
