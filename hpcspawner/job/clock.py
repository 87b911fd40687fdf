"""The job's clock: a Jupyter server extension in the job that tells JupyterLab how long
the Slurm job has left.

``GET {base_url}hpcspawner/job/clock`` (authenticated, :mod:`hpcspawner.job.clockhandler`)
answers with :func:`hpcspawner.job.walltime.clock_status`: the job's id, partition and
nodes, its end, the seconds left, the admin's warning thresholds, and whether the save of
open documents is due. The JupyterLab extension (``labextension/`` in the source tree,
installed by the same ``pip install``) shows it in the status bar, warns, and saves.

- The job's times come from ``squeue --jobs=$SLURM_JOB_ID`` (argv, a timeout), read when a
  request finds the last read older than ``HPCSPAWNER_WALLTIME_REFRESH`` seconds (an admin
  may change the limit of a running job): no browser open, no ``squeue``; several tabs
  share one read. A read that fails keeps the last answer and says so (``stale``).
- Slurm's signal ahead of the limit (``#SBATCH --signal=B:USR1@N``, which the launcher
  relays to the server because it catches SIGUSR1, see :mod:`hpcspawner.job.launcher`)
  is recorded: the save is then due whatever the clock says, and the next request reads
  ``squeue`` again. jupyter_server's own SIGUSR1 handler (it logs the server's info)
  still runs.
- Outside a Slurm job (no ``SLURM_JOB_ID``) the answer is ``{"in_job": false}`` and the
  status bar item hides.

Enabled for every server of the environment by the data file
``etc/jupyter/jupyter_server_config.d/hpcspawner-clock.json``. Loading it costs no
``squeue`` and no waiting. This module imports only the standard library; jupyter_server
is imported when the server loads the extension.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time

from . import walltime

#: Seconds one ``squeue`` may take.
SQUEUE_TIMEOUT = 15.0
#: What of squeue's error output reaches the answer and the log.
MAX_ERROR_TEXT = 300

log = logging.getLogger(__name__)


class JobClock:
    """The job's times, read from ``squeue`` at most every ``refresh_interval`` seconds.

    ``squeue`` (the command), ``monotonic`` and ``wall`` (clocks) are parameters so that
    tests can give a fake command and time.
    """

    def __init__(
        self,
        job_id: str,
        settings: walltime.ClockSettings,
        *,
        squeue: str = "squeue",
        timeout: float = SQUEUE_TIMEOUT,
        logger: logging.Logger | None = None,
        monotonic=time.monotonic,
        wall=time.time,
    ):
        self.job_id = job_id
        self.settings = settings
        self.squeue = squeue
        self.timeout = timeout
        self.log = logger or log
        self._monotonic = monotonic
        self._wall = wall
        self._times: walltime.JobTimes | None = None
        self._read_at: float | None = None  # monotonic time of the last good read
        self._tried_at: float | None = None  # monotonic time of the last read, good or not
        self._error: str | None = None
        self._reading: asyncio.Task | None = None
        self._end_signal_at: float | None = None  # wall time
        self.reads = 0  # squeue runs, for the log and the tests

    # ------------------------------------------------------------ what the handler asks

    async def status(self) -> dict:
        """The answer for JupyterLab; reads ``squeue`` first if the last read is due."""
        if self._due():
            await self.refresh()
        age = 0.0 if self._read_at is None else self._monotonic() - self._read_at
        return walltime.clock_status(
            self.job_id,
            self.settings,
            self._times,
            age=age,
            now=self._wall(),
            end_signal_at=self._end_signal_at,
            error=self._error,
        )

    def end_signal(self) -> None:
        """Slurm's signal ahead of the limit came (a signal handler: no I/O, no await)."""
        self._end_signal_at = self._wall()
        self._tried_at = None  # read squeue at the next request: the limit may have moved

    async def refresh(self) -> None:
        """Read ``squeue`` once; callers that come while a read runs share it."""
        if self._reading is None or self._reading.done():
            self._reading = asyncio.ensure_future(self._read())
        await asyncio.shield(self._reading)

    # ------------------------------------------------------------ inside

    def _due(self) -> bool:
        if self._tried_at is None:
            return True
        return self._monotonic() - self._tried_at >= self.settings.refresh_interval

    async def _read(self) -> None:
        self._tried_at = self._monotonic()
        self.reads += 1
        argv = walltime.squeue_argv(self.job_id, self.squeue)
        self.log.debug("hpcspawner clock: running %s", argv)
        try:
            stdout = await self._run(argv)
            times = walltime.parse_squeue(stdout, self.job_id)
            if times is None:
                raise ClockReadError(f"Slurm does not list job {self.job_id}")
        except (ClockReadError, ValueError) as e:
            if str(e) != self._error:
                self.log.warning(
                    "hpcspawner clock: cannot read job %s's time left: %s (keeping the last "
                    "answer; trying again in %.0f s)",
                    self.job_id,
                    e,
                    self.settings.refresh_interval,
                )
            self._error = str(e)
            return
        if self._error is not None:
            self.log.info("hpcspawner clock: squeue answers again for job %s", self.job_id)
        if self._times is None or times.seconds_left != self._times.seconds_left:
            self.log.debug(
                "hpcspawner clock: job %s has %s s left (limit %s)",
                self.job_id,
                times.seconds_left,
                times.time_limit,
            )
        self._times, self._read_at, self._error = times, self._tried_at, None

    async def _run(self, argv: list[str]) -> str:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as e:
            raise ClockReadError(f"cannot run {argv[0]}: {e.strerror}") from None
        try:
            stdout, stderr = await asyncio.wait_for(proc.communicate(), self.timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise ClockReadError(f"squeue did not answer within {self.timeout:.0f} s") from None
        if proc.returncode != 0:
            detail = stderr.decode(errors="replace").strip()[-MAX_ERROR_TEXT:]
            raise ClockReadError(f"squeue exited with {proc.returncode}: {detail}")
        return stdout.decode(errors="replace")


class ClockReadError(Exception):
    """``squeue`` could not be run or did not answer with the job."""


def clock_from_env(env, logger: logging.Logger | None = None) -> JobClock | None:
    """The job's clock for this environment; None outside a Slurm job."""
    job_id = env.get("SLURM_JOB_ID", "").strip()
    if not job_id:
        return None
    logger = logger or log
    try:
        settings = walltime.settings_from_env(env)
    except ValueError as e:
        logger.warning("hpcspawner clock: %s; using the defaults", e)
        settings = walltime.ClockSettings()
    return JobClock(job_id, settings, logger=logger)


def install_end_signal(clock: JobClock, signum: int = signal.SIGUSR1) -> None:
    """Record ``signum`` as Slurm's end signal; the handler it replaces still runs."""
    previous = signal.getsignal(signum)

    def on_end_signal(sig, frame):
        clock.end_signal()
        clock.log.info(
            "hpcspawner clock: Slurm's signal %s ahead of job %s's limit: open documents are saved",
            signal.Signals(sig).name,
            clock.job_id,
        )
        if callable(previous):
            previous(sig, frame)

    signal.signal(signum, on_end_signal)


# ---------------------------------------------------------------- the extension's hooks


def _jupyter_server_extension_points():
    return [{"module": "hpcspawner.job.clock"}]


def _load_jupyter_server_extension(serverapp) -> None:
    from .clockhandler import add_handlers

    clock = clock_from_env(os.environ, serverapp.log)
    add_handlers(serverapp.web_app, clock)
    if clock is None:
        serverapp.log.debug("hpcspawner clock: not in a Slurm job (no SLURM_JOB_ID)")
        return
    try:
        install_end_signal(clock)
    except ValueError as e:  # not the main thread
        serverapp.log.warning("hpcspawner clock: cannot handle SIGUSR1 (%s)", e)
    serverapp.log.info(
        "hpcspawner clock: job %s, warnings at %s s before the end, save %s s before",
        clock.job_id,
        list(clock.settings.warnings),
        clock.settings.save_before_end,
    )
