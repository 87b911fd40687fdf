"""hpcspawner.job.activity, the Jupyter Server extension in the job: a busy kernel or terminal
is activity, and a server idle for ``HPCSPAWNER_IDLE_TIMEOUT`` seconds stops.

The server here is a stand-in with the parts of Jupyter Server's ``ServerApp`` the extension
uses (its kernel manager's ``list_kernel_ids``/``get_kernel``, the web application's
``settings`` with the terminal manager and ``last_activity()``, ``io_loop.call_later``,
``stop()``), and a clock the test moves; the terminals are real shells in real ptys.
tests/integration/test_culling.py runs the extension in real servers, in real Slurm jobs,
with the hub's culler.
"""

from __future__ import annotations

import json
import logging
import os
import pty
import shutil
import signal
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
import tomllib

from hpcspawner.job import activity
from hpcspawner.job.activity import (
    SETTING,
    ActivityWatch,
    busy_kernels,
    busy_terminals,
    idle_seconds,
    read_seconds,
    tick_seconds,
    watch_from_environment,
)

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class KernelManager:
    """Jupyter Server's MappingKernelManager as the extension sees it."""

    def __init__(self, **states):
        self.kernels = {kid: SimpleNamespace(execution_state=s) for kid, s in states.items()}

    def list_kernel_ids(self):
        return list(self.kernels)

    def get_kernel(self, kernel_id):
        return self.kernels[kernel_id]  # KeyError for a kernel shut down meanwhile, as there


class WebApp:
    """``ServerWebApplication.last_activity()``: the latest of the start, the kernels'
    activity and every setting whose name ends in ``_last_activity``."""

    def __init__(self, started: datetime):
        self.settings = {"started": started, "api_last_activity": started}
        self.kernel_activity = started

    def last_activity(self) -> datetime:
        sources = [self.settings["started"], self.kernel_activity]
        sources += [v for k, v in self.settings.items() if k.endswith("_last_activity")]
        return max(sources)


class IOLoop:
    def __init__(self):
        self.scheduled: list[tuple[float, object]] = []

    def call_later(self, delay, callback):
        self.scheduled.append((delay, callback))

    def run_next(self):
        _, callback = self.scheduled.pop(0)
        callback()


class ServerApp:
    def __init__(self, clock: Clock, **kernel_states):
        self.kernel_manager = KernelManager(**kernel_states)
        self.web_app = WebApp(clock())
        self.io_loop = IOLoop()
        self.log = logging.getLogger("test-serverapp")
        self.stops = 0

    def stop(self):
        self.stops += 1


@pytest.fixture
def clock():
    return Clock()


def make_watch(clock, idle_timeout=60, tick=5.0, **kernel_states):
    server = ServerApp(clock, **kernel_states)
    watch = ActivityWatch(server, idle_timeout=idle_timeout, tick=tick, log=server.log, clock=clock)
    return watch, server


# ---------------------------------------------------------------- the pure parts


@pytest.mark.parametrize(
    ("env", "default", "expected"),
    [
        pytest.param({}, 0, 0, id="unset"),
        pytest.param({"X": ""}, 300, 300, id="empty-is-the-default"),
        pytest.param({"X": "3600"}, 0, 3600, id="seconds"),
        pytest.param({"X": " 60\n"}, 0, 60, id="spaces"),
        pytest.param({"X": "0"}, 300, 0, id="zero"),
    ],
)
def test_read_seconds(env, default, expected):
    assert read_seconds(env, "X", default) == expected


@pytest.mark.parametrize("text", ["-1", "1.5", "1h", "abc", "1e3", "٣"])
def test_read_seconds_refuses_what_is_not_whole_seconds(text):
    with pytest.raises(ValueError, match="^X="):
        read_seconds({"X": text}, "X")


@pytest.mark.parametrize(
    ("idle_timeout", "report_interval", "expected"),
    [
        pytest.param(0, 300, 60.0, id="defaults-a-minute"),
        pytest.param(0, 5, 5.0, id="fast-hub-reports"),
        pytest.param(0, 0, 60.0, id="reports-off"),
        pytest.param(7200, 300, 60.0, id="hours-of-timeout"),
        pytest.param(30, 300, 3.0, id="a-tenth-of-a-short-timeout"),
        pytest.param(5, 300, 1.0, id="at-least-a-second"),
    ],
)
def test_tick_seconds(idle_timeout, report_interval, expected):
    assert tick_seconds(idle_timeout, report_interval) == expected


def test_idle_seconds_takes_naive_times_as_utc():
    assert idle_seconds(T0, T0 - timedelta(seconds=90)) == 90
    assert idle_seconds(T0, (T0 - timedelta(seconds=90)).replace(tzinfo=None)) == 90


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        pytest.param({}, [], id="no-kernels"),
        pytest.param({"a": "idle", "b": "starting"}, [], id="none-busy"),
        pytest.param({"a": "idle", "b": "busy", "c": "busy"}, ["b", "c"], id="two-busy"),
        pytest.param({"a": "dead"}, [], id="dead"),
    ],
)
def test_busy_kernels(states, expected):
    assert busy_kernels(KernelManager(**states)) == expected


def test_busy_kernels_skips_a_kernel_shut_down_since_the_listing():
    manager = KernelManager(a="busy", b="busy")
    manager.list_kernel_ids = lambda: ["a", "gone", "b"]
    assert busy_kernels(manager) == ["a", "b"]


def test_busy_kernels_skips_a_kernel_without_a_state():
    manager = KernelManager(a="busy")
    manager.kernels["remote"] = object()
    assert busy_kernels(manager) == ["a"]


@pytest.fixture
def shell():
    """An interactive bash in a pty, as a JupyterLab terminal runs it: (its terminal as
    terminado holds it, a function that types a line into it)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session of its own, the pty as its controlling terminal
        os.execvp("bash", ["bash", "--norc", "--noprofile", "-i"])  # noqa: S606 - argv
    terminal = SimpleNamespace(ptyproc=SimpleNamespace(fd=fd, pid=pid))

    def type_line(line: str) -> None:
        os.write(fd, line.encode() + b"\n")

    try:
        yield terminal, type_line
    finally:
        foreground = os.tcgetpgrp(fd)
        # a command still running goes first (0: the shell had not started; never our group)
        if foreground > 0 and foreground not in (pid, os.getpgrp()):
            os.killpg(foreground, signal.SIGKILL)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)


def wait_for(condition, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.05)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_busy_terminals_is_a_command_in_the_foreground(shell):
    terminal, type_line = shell
    manager = SimpleNamespace(terminals={"1": terminal})
    wait_for(lambda: os.tcgetpgrp(terminal.ptyproc.fd) == terminal.ptyproc.pid)  # the prompt
    assert busy_terminals(manager) == []
    type_line("sleep 2")
    wait_for(lambda: busy_terminals(manager) == ["1"])
    wait_for(lambda: busy_terminals(manager) == [])  # done: back at the prompt
    type_line("sleep 1 &")  # a background job: the shell is at its prompt
    time.sleep(0.5)
    assert busy_terminals(manager) == []


def test_a_terminal_whose_shell_has_not_started_is_not_busy():
    """No session on the pty yet: no foreground process group (tcgetpgrp says 0)."""
    master, slave = os.openpty()
    try:
        assert os.tcgetpgrp(master) == 0
        terminal = SimpleNamespace(ptyproc=SimpleNamespace(fd=master, pid=2**22 + 1))
        assert busy_terminals(SimpleNamespace(terminals={"1": terminal})) == []
    finally:
        os.close(master)
        os.close(slave)


@pytest.mark.parametrize(
    "manager",
    [
        pytest.param(None, id="no-terminals-extension"),
        pytest.param(SimpleNamespace(terminals={}), id="no-terminals"),
        pytest.param(
            SimpleNamespace(terminals={"1": SimpleNamespace(ptyproc=None)}), id="not-a-pty"
        ),
        pytest.param(
            SimpleNamespace(terminals={"1": SimpleNamespace(ptyproc=SimpleNamespace(fd=-1))}),
            id="closed",
        ),
    ],
)
def test_busy_terminals_without_a_running_terminal(manager):
    assert busy_terminals(manager) == []


# ---------------------------------------------------------------- one look


def test_a_busy_kernel_is_activity_now(clock):
    watch, server = make_watch(clock, idle_timeout=60, k1="idle", k2="busy")
    clock.advance(3600)  # an hour since anything else happened
    watch.check()
    assert server.web_app.settings[SETTING] == clock.now
    assert server.web_app.last_activity() == clock.now
    assert server.stops == 0 and not watch.stopping


def test_a_busy_terminal_is_activity_now(clock, shell):
    terminal, type_line = shell
    watch, server = make_watch(clock, idle_timeout=60, k1="idle")
    server.web_app.settings["terminal_manager"] = SimpleNamespace(terminals={"1": terminal})
    wait_for(lambda: os.tcgetpgrp(terminal.ptyproc.fd) == terminal.ptyproc.pid)  # the prompt
    type_line("sleep 30")
    wait_for(lambda: busy_terminals(server.web_app.settings["terminal_manager"]) == ["1"])
    clock.advance(3600)
    watch.check()
    assert server.web_app.settings[SETTING] == clock.now
    assert server.stops == 0


def test_without_a_busy_kernel_the_activity_is_left_alone(clock):
    watch, server = make_watch(clock, idle_timeout=0, k1="idle")
    clock.advance(10)
    watch.check()
    assert SETTING not in server.web_app.settings


@pytest.mark.parametrize(
    ("idle_timeout", "idle_for", "stops"),
    [
        pytest.param(60, 59, 0, id="not-yet"),
        pytest.param(60, 60, 1, id="at-the-timeout"),
        pytest.param(60, 86400, 1, id="long-after"),
        pytest.param(0, 86400 * 30, 0, id="off"),
    ],
)
def test_an_idle_server_stops_after_the_timeout(clock, idle_timeout, idle_for, stops):
    watch, server = make_watch(clock, idle_timeout=idle_timeout, k1="idle")
    clock.advance(idle_for)
    watch.check()
    assert server.stops == stops
    assert watch.stopping is bool(stops)


def test_idle_means_since_the_last_activity_of_any_kind(clock):
    watch, server = make_watch(clock, idle_timeout=60)
    clock.advance(50)
    server.web_app.settings["api_last_activity"] = clock.now  # a browser's request
    clock.advance(50)
    watch.check()
    assert server.stops == 0
    clock.advance(10)
    server.web_app.kernel_activity = T0  # older than the request: changes nothing
    watch.check()
    assert server.stops == 1


def test_the_stop_is_logged_as_a_warning_naming_the_setting(clock, caplog):
    watch, server = make_watch(clock, idle_timeout=600)
    clock.advance(601)
    with caplog.at_level(logging.INFO, logger="test-serverapp"):
        watch.check()
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert "no activity for 601 s" in message
    assert "c.SlurmSpawner.job_idle_timeout = 600 s" in message
    assert "frees its allocation" in message


# ---------------------------------------------------------------- the watch over time


def test_a_long_silent_computation_keeps_the_server_until_it_ends_and_then_the_timeout(clock):
    """A kernel busy for ten times the timeout: the server stays; once the kernel is idle,
    it stops one timeout (within a tick) later."""
    watch, server = make_watch(clock, idle_timeout=60, tick=5.0, k1="busy")
    watch.start()
    for _ in range(120):  # ten minutes of ticks
        delay, _callback = server.io_loop.scheduled[0]
        clock.advance(delay)
        server.io_loop.run_next()
    assert server.stops == 0
    finished = clock.now
    server.kernel_manager.kernels["k1"].execution_state = "idle"
    while not server.stops:
        delay, _callback = server.io_loop.scheduled[0]
        clock.advance(delay)
        server.io_loop.run_next()
    waited = (clock.now - finished).total_seconds()
    assert 60 <= waited <= 65
    assert server.io_loop.scheduled == []  # no look after the stop


def test_a_failed_look_is_logged_and_the_watch_goes_on(clock, caplog):
    watch, server = make_watch(clock, idle_timeout=60)

    def broken():
        raise RuntimeError("kernel manager in a bad mood")

    server.kernel_manager.list_kernel_ids = broken
    watch.start()
    with caplog.at_level(logging.ERROR, logger="test-serverapp"):
        server.io_loop.run_next()
    assert "looking at the kernels and terminals failed" in caplog.text
    assert [delay for delay, _ in server.io_loop.scheduled] == [5.0]


# ---------------------------------------------------------------- from the job's environment


@pytest.mark.parametrize(
    ("env", "idle_timeout", "tick"),
    [
        pytest.param({}, 0, 60.0, id="nothing-set"),
        pytest.param({"HPCSPAWNER_IDLE_TIMEOUT": "7200"}, 7200, 60.0, id="safety-net"),
        pytest.param(
            {"HPCSPAWNER_IDLE_TIMEOUT": "30", "JUPYTERHUB_ACTIVITY_INTERVAL": "5"},
            30,
            3.0,
            id="short-test-timeouts",
        ),
        pytest.param({"JUPYTERHUB_ACTIVITY_INTERVAL": "10"}, 0, 10.0, id="fast-reports"),
        pytest.param({"JUPYTERHUB_ACTIVITY_INTERVAL": "soon"}, 0, 60.0, id="bad-interval"),
    ],
)
def test_watch_from_environment(clock, env, idle_timeout, tick):
    watch = watch_from_environment(ServerApp(clock), env)
    assert (watch.idle_timeout, watch.tick) == (idle_timeout, tick)


def test_a_bad_idle_timeout_is_logged_and_turns_only_the_safety_net_off(clock, caplog):
    with caplog.at_level(logging.ERROR, logger="test-serverapp"):
        watch = watch_from_environment(ServerApp(clock), {"HPCSPAWNER_IDLE_TIMEOUT": "2h"})
    assert watch.idle_timeout == 0
    assert "HPCSPAWNER_IDLE_TIMEOUT='2h' is not a whole number of seconds" in caplog.text


def test_loading_the_extension_schedules_the_first_look(clock, monkeypatch, caplog):
    monkeypatch.setenv("HPCSPAWNER_IDLE_TIMEOUT", "3600")
    monkeypatch.delenv("JUPYTERHUB_ACTIVITY_INTERVAL", raising=False)
    server = ServerApp(clock)
    with caplog.at_level(logging.INFO, logger="test-serverapp"):
        activity._load_jupyter_server_extension(server)
    assert [delay for delay, _ in server.io_loop.scheduled] == [60.0]
    assert "the server stops after 3600 s without activity" in caplog.text


# ---------------------------------------------------------------- how Jupyter Server finds it


def test_the_extension_point_is_the_module_itself():
    assert activity._jupyter_server_extension_points() == [{"module": "hpcspawner.job.activity"}]


def test_the_package_enables_the_extension_in_every_server_of_its_environment():
    """The config file pyproject.toml installs into {sys.prefix}/etc/jupyter/
    jupyter_server_config.d/, where Jupyter Server reads the extensions to enable."""
    data_files = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "data-files"
    ]
    # other server extensions of the package may have their own file beside it
    (source,) = [
        path
        for path in data_files["etc/jupyter/jupyter_server_config.d"]
        if Path(path).name == "hpcspawner-activity.json"
    ]
    config = json.loads((REPO / source).read_text())
    assert config == {"ServerApp": {"jpserver_extensions": {"hpcspawner.job.activity": True}}}
