"""What a start tells the user and the log, as text (pure: no I/O, no JupyterHub).

The spawner decides when to say something; this module decides the words:
the progress lines of a start (:func:`start_progress`), the request in a few
words (:func:`describe_request`), why a queued job was given up
(:func:`queue_timeout`) and why a job ended before its server ran
(:func:`job_ended`, with the last lines of its output); why a job that ``squeue``
no longer lists ended, from accounting (:func:`history_reason`).
"""

from __future__ import annotations

from datetime import datetime

from ..logtext import loggable
from ..slurm.jobstate import ENDED_EXPLANATIONS, Liveness

#: How many of the last lines of a failed job's output the user sees, and how long each may be.
OUTPUT_TAIL_LINES = 20
OUTPUT_LINE_LIMIT = 300
#: How much of that output goes to the log (characters, from the end).
OUTPUT_LOG_LIMIT = 2000

#: Why a job ended when Slurm no longer lists it.
JOB_UNKNOWN = "the job is no longer known to Slurm"


def format_duration(seconds: float) -> str:
    """``90`` -> ``"90 seconds"``, ``600`` -> ``"10 minutes"``."""
    if seconds < 120:
        return f"{seconds:.0f} seconds"
    return f"{seconds / 60:.0f} minutes"


def format_time(when: datetime) -> str:
    """A time the scheduler expects, to the minute: ``2030-01-02 03:04``."""
    return when.strftime("%Y-%m-%d %H:%M")


def _count(number: int, unit: str) -> str:
    return f"{number} {unit}{'s' if number > 1 else ''}"


def describe_request(request) -> str:
    """A validated request in a few words: ``partition debug, 1 node, 2 CPUs, 4G, 1:00:00``."""
    parts = [f"partition {request.partition}"] if request.partition else []
    parts += [_count(request.nodes, "node"), _count(request.cpus, "CPU"), request.memory]
    if request.gpus:
        parts.append(_count(request.gpus, "GPU"))
    parts.append(request.runtime)
    return ", ".join(parts)


def end_reason(info) -> str:
    """Why the job (a :class:`~hpcspawner.slurm.JobInfo`, or None: not listed) ended."""
    return info.describe_end() if info is not None else JOB_UNKNOWN


#: Why a job ended, by accounting's state, where it says more than squeue's words.
HISTORY_EXPLANATIONS = {
    "OUT_OF_MEMORY": "the job ran out of memory (ask for more memory next time)",
    "PREEMPTED": "the job was preempted (a job of higher priority took its resources)",
    "COMPLETED": "the job finished (the server exited)",
}


def history_reason(end, username: str, name_of_uid) -> str:
    """Why the job ended, from accounting's record ``end`` (a
    :class:`~hpcspawner.slurm.history.JobEnd` of ``username``'s job). ``name_of_uid``
    names the uid (or name) that cancelled it, or returns None; only "you", "root"
    and "an administrator" are ever said, never another user's name."""
    state = end.state
    if state == "TIMEOUT":
        limit = f" {end.time_limit}" if end.time_limit else ""
        return f"the job reached its time limit (walltime{limit})"
    if state == "FAILED":
        if end.signal:
            return f"the job failed: it was killed by signal {end.signal}"
        if end.exit_code is not None:
            return f"the job failed with exit code {end.exit_code}"
    if state == "CANCELLED" and end.cancelled_by:
        name = name_of_uid(end.cancelled_by)
        if name is not None and name == username:
            return "you cancelled the job"
        if end.cancelled_by in ("0", "root") or name == "root":
            return "the job was cancelled by an administrator (root)"
        if name is None:
            return f"the job was cancelled by user id {end.cancelled_by}"
        return "the job was cancelled by an administrator"
    return HISTORY_EXPLANATIONS.get(state) or ENDED_EXPLANATIONS.get(
        state, f"the job ended ({state})"
    )


def start_progress(job_id: str, status) -> tuple[str, int]:
    """The progress line and percentage of a start whose job has ``status`` (a poller's
    :class:`~hpcspawner.spawner.poller.JobStatus`)."""
    info = status.info
    if status.liveness is Liveness.UNKNOWN:
        return (f"Job {job_id}: the scheduler is not answering, still trying", 20)
    if info is None or info.pending:
        text = f"Job {job_id} is queued"
        reason = info.describe_reason() if info else None
        if reason:
            text += f": {reason}"
        if info and info.start_time:
            text += f"; expected start {format_time(info.start_time)}"
        return (text, 20)
    if info.running:
        return (f"Job {job_id} is running on {info.batch_host}; waiting for the server", 50)
    return (f"Job {job_id} is {info.state}", 30)


def queue_timeout(job_id: str, info, waited: float) -> str:
    """The user's message when job ``job_id`` (``info``: as last seen) queued too long."""
    reason = info.describe_reason() if info else None
    return (
        f"Job {job_id} waited in the queue for more than {format_duration(waited)}"
        + (f" ({reason})" if reason else "")
        + " and was cancelled. Try fewer resources, a shorter runtime or another partition."
    )


def job_ended(job_id: str, why: str, output_path: str, output) -> tuple[str, str]:
    """(the user's message, what the log adds) when job ``job_id`` ended (``why``) before
    its server started; ``output`` is the :class:`~hpcspawner.slurm.JobOutput` read from
    ``output_path``. Its last lines are shown as text, without terminal escapes or
    bidi controls (JupyterHub escapes the HTML)."""
    text = output.text.strip()
    message = f"Job {job_id} ended before the server started: {why}."
    if text:
        lines = text.splitlines()[-OUTPUT_TAIL_LINES:]
        shown = "\n".join(loggable(line, OUTPUT_LINE_LIMIT) for line in lines)
        message += f" Last lines of {output_path}:\n{shown}"
        logged = f"its output ends: {loggable(text[-OUTPUT_LOG_LIMIT:])}"
    else:
        problem = output.problem or "is empty"
        message += f" Its output file {output_path} {problem}."
        logged = f"its output file {problem}"
    return message, f"{output_path}: {logged}"


__all__ = [
    "JOB_UNKNOWN",
    "OUTPUT_LINE_LIMIT",
    "OUTPUT_TAIL_LINES",
    "describe_request",
    "end_reason",
    "format_duration",
    "format_time",
    "history_reason",
    "job_ended",
    "queue_timeout",
    "start_progress",
]
