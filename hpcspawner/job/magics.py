"""Slurm from the notebook: ``%squeue``, ``%sbatch``, ``%%sbatch``, ``%scancel``, ``%sinfo``,
``%slurm_job``.

``%load_ext hpcspawner.job.magics`` loads them; in a job environment built with ``pip install
hpcspawner`` they are loaded in every IPython kernel of that environment by the startup file the
package installs (``share/ipython/startup/50-hpcspawner-magics.py`` in the source tree,
``{sys.prefix}/etc/ipython/startup/`` once installed).

Every command runs as an argv list (no shell), with a timeout (``HPCSPAWNER_SLURM_TIMEOUT``
seconds, 60 by default); what the user types after a magic is split with :func:`shlex.split`
and each word is one argument. A command that fails, times out or is missing raises
:class:`SlurmMagicError`, which IPython shows as one message rather than a traceback, and which
stops the cell.

The hub's secrets (``JUPYTERHUB_*``, ``JPY_*``) stay out of the commands' environment: a job
submitted from the notebook exports its environment into Slurm's record of that job. ``sbatch``
also gets none of this job's ``SLURM_*`` variables (``SLURM_CONF`` apart), which would otherwise
leak into the new job's ``srun`` (e.g. ``SLURM_MEM_PER_NODE`` against its ``--mem-per-cpu``).

Standard library only: IPython calls :func:`load_ipython_extension` with its shell, and the
magics are registered as plain functions, so this module imports without IPython.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

DEFAULT_TIMEOUT = 60.0
#: prefixes of the variables the commands never see: the server's token and its neighbours
SECRET_PREFIXES = ("JUPYTERHUB_", "JPY_")


class SlurmMagicError(Exception):
    """What a magic tells the user when it cannot do what was asked; IPython shows only this."""

    def _render_traceback_(self) -> list[str]:
        return [str(self)]


class SlurmCommandError(SlurmMagicError):
    """A Slurm command that failed (``returncode``), timed out or is missing (None)."""

    def __init__(self, argv: list[str], message: str, returncode: int | None, stderr: str = ""):
        super().__init__(message)
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr


def timeout() -> float:
    value = os.environ.get("HPCSPAWNER_SLURM_TIMEOUT", "")
    try:
        return float(value) if value else DEFAULT_TIMEOUT
    except ValueError:
        raise SlurmMagicError(
            f"HPCSPAWNER_SLURM_TIMEOUT={value!r} is not a number of seconds"
        ) from None


def command_env(environ: dict[str, str], submit: bool = False) -> dict[str, str]:
    """The environment of a Slurm command: no hub secrets; for ``sbatch`` no ``SLURM_*``."""
    return {
        key: value
        for key, value in environ.items()
        if not key.startswith(SECRET_PREFIXES)
        and not (submit and key.startswith("SLURM_") and key != "SLURM_CONF")
    }


def split(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError as e:
        raise SlurmMagicError(f"cannot read the arguments {line!r}: {e}") from None


def run(argv: list[str], stdin: str | None = None, submit: bool = False) -> str:
    """Run ``argv`` and return its standard output, or raise :class:`SlurmCommandError`."""
    name = argv[0]
    seconds = timeout()
    try:
        result = subprocess.run(
            argv,
            input=stdin,
            # no cell: the command reads nothing (a kernel's own stdin is not the user's)
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=seconds,
            env=command_env(dict(os.environ), submit=submit),
            check=False,
        )
    except FileNotFoundError:
        raise SlurmCommandError(
            argv, f"{name}: command not found (is Slurm installed here, and on PATH?)", None
        ) from None
    except subprocess.TimeoutExpired:
        raise SlurmCommandError(
            argv, f"{name} gave no answer within {seconds:g} s (the controller may be busy)", None
        ) from None
    if result.returncode != 0:
        stderr = result.stderr.strip()
        message = f"{name} failed (exit {result.returncode})"
        raise SlurmCommandError(
            argv, f"{message}: {stderr}" if stderr else message, result.returncode, stderr
        )
    return result.stdout


def show(text: str) -> None:
    if text:
        print(text, end="" if text.endswith("\n") else "\n")


def squeue_argv(args: list[str]) -> list[str]:
    """The user's own jobs unless the arguments choose users or jobs themselves."""
    chooses = any(
        arg == "--me" or arg.split("=", 1)[0] in ("--user", "--jobs") or arg[:2] in ("-u", "-j")
        for arg in args
    )
    return ["squeue", *args] if chooses else ["squeue", "--me", *args]


def parse_job_id(stdout: str, argv: list[str]) -> str:
    """The job id from ``sbatch --parsable`` (``ID`` or ``ID;CLUSTER``)."""
    first = stdout.strip().splitlines()[0] if stdout.strip() else ""
    job_id = first.split(";", 1)[0]
    if not job_id.isdigit():
        raise SlurmCommandError(argv, f"sbatch gave no job id: {stdout.strip()!r}", 0)
    return job_id


# ---------------------------------------------------------------- the magics


def squeue(line: str) -> None:
    """%squeue [ARGS]: your jobs (``squeue --me``); ``-u``/``-j`` choose others."""
    show(run(squeue_argv(split(line))))


def sinfo(line: str) -> None:
    """%sinfo [ARGS]: the partitions and nodes."""
    show(run(["sinfo", *split(line)]))


def scancel(line: str) -> None:
    """%scancel JOBID... [ARGS]: cancel jobs."""
    args = split(line)
    if not args:
        raise SlurmMagicError("usage: %scancel JOBID [JOBID...]")
    show(run(["scancel", *args]))
    print(f"Cancel requested: {shlex.join(args)}")


def sbatch(line: str, cell: str | None = None) -> str:
    """%sbatch [OPTIONS] SCRIPT [ARGS]: submit a file; %%sbatch [OPTIONS]: submit the cell.

    Returns the job id (a string), e.g. ``job = %sbatch run.sh``.
    """
    args = split(line)
    if cell is None and not args:
        raise SlurmMagicError("usage: %sbatch [OPTIONS] SCRIPT [ARGS], or %%sbatch [OPTIONS]")
    argv = ["sbatch", "--parsable", *args]
    job_id = parse_job_id(run(argv, stdin=cell, submit=True), argv)
    print(f"Submitted batch job {job_id}")
    return job_id


def slurm_job(line: str) -> None:
    """%slurm_job: this job's details (``scontrol show job $SLURM_JOB_ID``)."""
    job_id = os.environ.get("SLURM_JOB_ID")
    if not job_id:
        print("Not inside a Slurm job: SLURM_JOB_ID is not set.", file=sys.stderr)
        return
    show(run(["scontrol", "show", "job", job_id, *split(line)]))


def load_ipython_extension(ip) -> None:
    """Called by ``%load_ext hpcspawner.job.magics`` (and the installed startup file)."""
    for function in (squeue, sinfo, scancel, slurm_job):
        ip.register_magic_function(function, "line")
    ip.register_magic_function(sbatch, "line_cell")
