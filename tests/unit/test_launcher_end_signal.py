"""hpcspawner-singleuser and Slurm's signal ahead of the walltime (``#SBATCH
--signal=B:USR1@N``): the launcher, the job's batch shell, relays SIGUSR1 to a server that
handles it (jupyter_server, with hpcspawner's clock extension), and keeps it from one that
does not (a Python server without a handler dies of it). Either way the server keeps
running.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from test_launcher_token import (
    TOKEN,
    hub,  # noqa: F401 - the stand-in hub, a fixture
    launch,
)

from hpcspawner.job.launcher import catches_signal

#: A server that listens on its port, notes what happens in its first argument's file,
#: and handles SIGUSR1 if its second argument says so.
SERVER = """\
import os, signal, socket, sys, time
from urllib.parse import urlparse
def note(text):
    with open(sys.argv[1], "a") as f:
        f.write(text + "\\n")
if sys.argv[2] == "handles":
    signal.signal(signal.SIGUSR1, lambda *_: note("USR1"))
sock = socket.socket()
sock.bind(("127.0.0.1", urlparse(os.environ["JUPYTERHUB_SERVICE_URL"]).port))
sock.listen()
note("listening")
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    time.sleep(0.05)
"""


def wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("server", "relayed"),
    [
        pytest.param("handles", True, id="server-handles-usr1"),
        pytest.param("ignores", False, id="server-without-a-handler"),
    ],
)
def test_usr1_reaches_only_a_server_that_handles_it(tmp_path, hub, server, relayed):  # noqa: F811
    api_url, _, arrived = hub
    env = {
        "JUPYTERHUB_API_TOKEN": TOKEN,
        "JUPYTERHUB_API_URL": api_url,
        "JUPYTERHUB_SERVICE_URL": "http://127.0.0.1:0/user/alice/",
    }
    notes = tmp_path / "env.json"  # the server's first argument
    launcher = launch(tmp_path, env, SERVER, args=[server])
    try:
        assert arrived.wait(timeout=60), "the launcher reported no port"
        wait_for(lambda: notes.exists() and "listening" in notes.read_text())
        os.kill(launcher.pid, signal.SIGUSR1)
        if relayed:
            wait_for(lambda: "USR1" in notes.read_text())
        else:
            time.sleep(1.0)
            assert "USR1" not in notes.read_text()
        # neither the launcher (the batch shell) nor the server ended
        assert launcher.poll() is None
    finally:
        launcher.send_signal(signal.SIGTERM)
        _, err = launcher.communicate(timeout=30)
    assert launcher.returncode == 128 + signal.SIGTERM, err
    if relayed:
        assert "SIGUSR1: the job's time limit is near; relayed to the server" in err
    else:
        assert "not relayed (the server does not handle it)" in err


@pytest.mark.parametrize(
    ("status", "signum", "expected"),
    [
        # jupyter_server: SIGINT(2), SIGUSR1(10), SIGTERM(15) and SIGCHLD(17) caught
        pytest.param("SigCgt:\t0000000000014202\n", signal.SIGUSR1, True, id="usr1-caught"),
        pytest.param("SigCgt:\t0000000000014202\n", signal.SIGUSR2, False, id="usr2-not"),
        pytest.param("SigCgt:\t0000000000000000\n", signal.SIGUSR1, False, id="nothing"),
        pytest.param(
            "Name:\tpython3\nSigIgn:\t0000000000000200\nSigCgt:\t0000000000000002\n",
            signal.SIGUSR1,
            False,
            id="ignored-is-not-caught",
        ),
        pytest.param("SigCgt:\tzz\n", signal.SIGUSR1, False, id="garbled"),
        pytest.param("Name:\tpython3\n", signal.SIGUSR1, False, id="no-mask"),
    ],
)
def test_catches_signal(status, signum, expected):
    assert catches_signal(status, signum) is expected


def test_catches_signal_reads_this_process():
    previous = signal.signal(signal.SIGUSR2, lambda *_: None)
    try:
        with open(f"/proc/{os.getpid()}/status") as f:
            assert catches_signal(f.read(), signal.SIGUSR2)
    finally:
        signal.signal(signal.SIGUSR2, previous)
