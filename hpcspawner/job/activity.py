"""A Jupyter Server extension for the job: busy kernels and terminals count as activity, and a
server left idle ends its job by itself.

Jupyter Server counts as activity the API requests it serves, its kernels' messages and its
terminals' output (``ServerWebApplication.last_activity()``). A kernel that runs one long
computation (``time.sleep(3600)``, a training loop that prints nothing) sends no message
between "busy" and "idle", so for hours the server looks idle: ``jupyterhub-singleuser``
reports that stale time to the hub, and the hub's idle culler would stop the server in the
middle of the computation. The same goes for a command running silently in a terminal
(``python train.py > log``). This extension looks at the kernels and the terminals every few
seconds and, while a kernel is busy or a terminal runs a command in the foreground (its shell
is not at the prompt), marks the server active (in the web application's setting
:data:`SETTING`: Jupyter Server adds every setting whose name ends in ``_last_activity`` to
``last_activity()``, its hook for extensions). The hub then hears of the activity with the
server's next report (``JUPYTERHUB_ACTIVITY_INTERVAL``, 300 s by default).

It also holds the job's safety net against the hub not reaching the server (a hub that is
down, a network between the hub and the nodes that is cut): when ``HPCSPAWNER_IDLE_TIMEOUT``
(seconds, ``c.SlurmSpawner.job_idle_timeout``) is set and the server has had no activity for
that long, busy kernels and terminals included, the server stops. Its launcher then exits, and
with it the batch script it replaced: the job ends and Slurm frees the allocation. Jupyter Server's own
``ServerApp.shutdown_no_activity_timeout`` would not do: it waits until no kernel and no
terminal is open at all, and one forgotten idle notebook keeps the allocation for the whole
walltime.

The package enables the extension in every server of the environment it is installed in
(``{sys.prefix}/etc/jupyter/jupyter_server_config.d/hpcspawner-activity.json``). Standard
library only: the server, its kernel manager and its terminals are reached through the
``serverapp`` Jupyter Server hands to :func:`_load_jupyter_server_extension`, so this module
imports without Jupyter Server, JupyterHub or tornado.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from datetime import datetime, timezone

#: The web application's setting this extension keeps: when a kernel or a terminal was last
#: seen busy.
SETTING = "hpcspawner_busy_last_activity"
#: Seconds of inactivity after which the server stops (the job's safety net); unset or 0: never.
IDLE_TIMEOUT_VARIABLE = "HPCSPAWNER_IDLE_TIMEOUT"
#: How often ``jupyterhub-singleuser`` reports activity to the hub (JupyterHub's variable).
REPORT_INTERVAL_VARIABLE = "JUPYTERHUB_ACTIVITY_INTERVAL"
#: jupyterhub-singleuser's default report interval.
DEFAULT_REPORT_INTERVAL = 300
#: The longest pause between two looks at the kernels and terminals, in seconds.
MAX_TICK = 60.0


def _jupyter_server_extension_points() -> list[dict]:
    return [{"module": __name__}]


def utcnow() -> datetime:
    """Now, as Jupyter Server's times are: aware, in UTC."""
    return datetime.now(timezone.utc)


# ---------------------------------------------------------------- pure


def read_seconds(env: Mapping[str, str], name: str, default: int = 0) -> int:
    """``env[name]`` as a whole number of seconds >= 0, ``default`` when unset or empty;
    ValueError naming the variable otherwise."""
    text = env.get(name, "").strip()
    if not text:
        return default
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"{name}={text[:20]!r} is not a whole number of seconds")
    return int(text)


def tick_seconds(idle_timeout: int, report_interval: int) -> float:
    """How often to look at the kernels and terminals: often enough that the hub's next
    activity report (every ``report_interval`` s) carries a busy kernel's activity, and that
    the safety net (``idle_timeout``, 0: off) fires within a tenth of its time; at most
    :data:`MAX_TICK`, at least one second."""
    candidates = [MAX_TICK]
    if report_interval > 0:
        candidates.append(report_interval)
    if idle_timeout > 0:
        candidates.append(idle_timeout / 10)
    return max(1.0, min(candidates))


def idle_seconds(now: datetime, last_activity: datetime) -> float:
    """Seconds since ``last_activity``; a naive time is taken as UTC, as JupyterHub does."""
    if last_activity.tzinfo is None:
        last_activity = last_activity.replace(tzinfo=timezone.utc)
    return (now - last_activity).total_seconds()


def busy_kernels(kernel_manager) -> list[str]:
    """The ids of the kernels that are executing now (``execution_state`` "busy").

    Jupyter Server's kernel manager records each kernel's state from its status messages;
    a kernel that is busy stays so until it says "idle" (or dies)."""
    return [
        kernel_id
        for kernel_id in kernel_manager.list_kernel_ids()
        if getattr(_kernel(kernel_manager, kernel_id), "execution_state", None) == "busy"
    ]


def _kernel(kernel_manager, kernel_id: str):
    try:
        return kernel_manager.get_kernel(kernel_id)
    except KeyError:  # shut down between the listing and now
        return None


def busy_terminals(terminal_manager) -> list[str]:
    """The names of the terminals that run a command in the foreground.

    ``terminal_manager`` is jupyter_server_terminals' (terminado's), or None without
    terminals. A terminal's shell at its prompt is its terminal's foreground process group;
    a command it runs (``python train.py``) gets a group of its own. A command sent to the
    background (``&``, ``nohup``) is not seen, as it is not by Jupyter Server."""
    busy = []
    for name, terminal in list(getattr(terminal_manager, "terminals", {}).items()):
        process = getattr(terminal, "ptyproc", None)
        try:
            foreground = os.tcgetpgrp(process.fd)
        except (AttributeError, OSError):  # not a local pty, or closed meanwhile
            continue
        # 0: no process group in the foreground yet (the shell is still starting)
        if foreground > 0 and foreground != process.pid:
            busy.append(name)
    return busy


# ---------------------------------------------------------------- the watch


class ActivityWatch:
    """Looks at the server every ``tick`` seconds: marks it active while a kernel or a
    terminal is busy, and stops it after ``idle_timeout`` seconds (0: never) without activity.

    ``serverapp`` is Jupyter Server's ``ServerApp`` (its ``kernel_manager``, ``web_app``
    with the terminal manager in its settings, ``io_loop``, ``stop()``); ``clock`` gives the
    time."""

    def __init__(
        self,
        serverapp,
        *,
        idle_timeout: int,
        tick: float,
        log: logging.Logger,
        clock: Callable[[], datetime] = utcnow,
    ):
        self.serverapp = serverapp
        self.idle_timeout = idle_timeout
        self.tick = tick
        self.log = log
        self.clock = clock
        self.stopping = False

    def start(self) -> None:
        """Look for the first time one tick from now, and every tick after that."""
        self.serverapp.io_loop.call_later(self.tick, self._run)

    def _run(self) -> None:
        try:
            self.check()
        except Exception:  # one failed look must not end the watch
            self.log.exception("hpcspawner activity: looking at the kernels and terminals failed")
        if not self.stopping:
            self.serverapp.io_loop.call_later(self.tick, self._run)

    def check(self) -> None:
        """One look: a busy kernel or terminal is activity now; without one, is the server
        idle too long?"""
        now = self.clock()
        web_app = self.serverapp.web_app
        kernels = busy_kernels(self.serverapp.kernel_manager)
        terminals = busy_terminals(web_app.settings.get("terminal_manager"))
        if kernels or terminals:
            web_app.settings[SETTING] = now
            self.log.debug("hpcspawner activity: busy kernels %s, terminals %s", kernels, terminals)
            return
        if not self.idle_timeout:
            return
        idle = idle_seconds(now, web_app.last_activity())
        if idle < self.idle_timeout:
            return
        self.log.warning(
            "hpcspawner activity: no activity for %d s and no busy kernel or terminal "
            "(c.SlurmSpawner.job_idle_timeout = %d s): stopping the server; "
            "the job ends and frees its allocation",
            idle,
            self.idle_timeout,
        )
        self.stopping = True
        self.serverapp.stop()


def watch_from_environment(serverapp, env: Mapping[str, str]) -> ActivityWatch:
    """The watch the job's environment asks for (see the module's help)."""
    log = serverapp.log
    try:
        idle_timeout = read_seconds(env, IDLE_TIMEOUT_VARIABLE)
    except ValueError as e:
        log.error("hpcspawner activity: %s; the server will not stop when idle", e)
        idle_timeout = 0
    try:
        report_interval = read_seconds(env, REPORT_INTERVAL_VARIABLE, DEFAULT_REPORT_INTERVAL)
    except ValueError:  # jupyterhub-singleuser says so itself
        report_interval = DEFAULT_REPORT_INTERVAL
    tick = tick_seconds(idle_timeout, report_interval)
    return ActivityWatch(serverapp, idle_timeout=idle_timeout, tick=tick, log=log)


def _load_jupyter_server_extension(serverapp) -> None:
    """Jupyter Server calls this once its web application and its event loop exist."""
    watch = watch_from_environment(serverapp, os.environ)
    if watch.idle_timeout:
        serverapp.log.info(
            "hpcspawner activity: busy kernels and terminals count as activity (checked "
            "every %.0f s); the server stops after %d s without activity",
            watch.tick,
            watch.idle_timeout,
        )
    else:
        serverapp.log.info(
            "hpcspawner activity: busy kernels and terminals count as activity (checked "
            "every %.0f s)",
            watch.tick,
        )
    watch.start()
