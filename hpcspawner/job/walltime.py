"""The job's clock, pure: what the admin set, what ``squeue`` says, what is due.

The hub passes the admin's settings (``c.SlurmSpawner.walltime_warnings``,
``save_before_end``, ``walltime_refresh_interval``) to the job in environment variables
(:func:`clock_environment`); the job's server extension (:mod:`hpcspawner.job.clock`)
reads them back (:func:`settings_from_env`), asks ``squeue`` for the job's end
(:func:`squeue_argv`, :func:`parse_squeue`) and answers the JupyterLab extension with
:func:`clock_status`: the time left, and which warning and whether the save of open
documents are due. The same checks (:func:`check_warnings`, :func:`check_save_before_end`,
:func:`check_refresh_interval`) serve the hub's settings and the job's reading of them.

Standard library only, no I/O: the job environment has no hub packages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

#: Where the hub puts the admin's settings for the job.
WARNINGS_VARIABLE = "HPCSPAWNER_WALLTIME_WARNINGS"
SAVE_VARIABLE = "HPCSPAWNER_SAVE_BEFORE_END"
REFRESH_VARIABLE = "HPCSPAWNER_WALLTIME_REFRESH"

#: The defaults (also the job's, when the hub sent nothing: a job from an older hub).
DEFAULT_WARNINGS = (15 * 60, 5 * 60)
DEFAULT_SAVE_BEFORE_END = 120
DEFAULT_REFRESH_INTERVAL = 60.0

#: sbatch's ``--signal=...@N`` takes N up to 65535 seconds.
MAX_SIGNAL_LEAD = 65535
#: Slurm may send the signal up to this many seconds before the time asked for.
SIGNAL_EARLY = 60
#: Warnings further ahead than a week are a mistake (the value was meant in minutes?).
MAX_WARNING = 7 * 24 * 3600
MIN_REFRESH_INTERVAL = 10.0

#: What the job asks ``squeue`` (``|`` never appears in these fields; the node list,
#: which holds commas and brackets, comes last).
SQUEUE_FIELDS = ("%i", "%P", "%T", "%l", "%L", "%e", "%N")
SQUEUE_FORMAT = "|".join(SQUEUE_FIELDS)

#: Values Slurm prints for a time that has none.
_NO_TIME = {"UNLIMITED", "NOT_SET", "INVALID", "N/A", "NONE", "UNKNOWN", ""}
_DURATION_RE = re.compile(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d{2})")  # used with fullmatch


@dataclass(frozen=True)
class ClockSettings:
    """What the admin set for the clock: warnings (seconds before the end, largest
    first), the save lead (seconds, 0: off) and how often the job asks ``squeue``."""

    warnings: tuple[int, ...] = DEFAULT_WARNINGS
    save_before_end: int = DEFAULT_SAVE_BEFORE_END
    refresh_interval: float = DEFAULT_REFRESH_INTERVAL


@dataclass(frozen=True)
class JobTimes:
    """One job as ``squeue`` lists it with :data:`SQUEUE_FORMAT`."""

    job_id: str
    partition: str
    state: str
    time_limit: str
    #: seconds left when squeue answered; None: no limit (or Slurm does not know yet)
    seconds_left: int | None
    #: the end as Slurm prints it (the node's local time), ISO 8601; None: none known
    end_time: str | None
    nodes: str


# ---------------------------------------------------------------- the admin's settings


def check_warnings(values) -> tuple[int, ...]:
    """Warning thresholds in seconds before the end -> sorted, largest first.

    Raises ValueError naming the fix.
    """
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"walltime_warnings must be a list of seconds, not {values!r}")
    checked = set()
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(
                f"walltime_warnings: {value!r} is not a whole number of seconds "
                "(e.g. [15 * 60, 5 * 60] for 15 and 5 minutes before the end)"
            )
        if not 0 < value <= MAX_WARNING:
            raise ValueError(
                f"walltime_warnings: {value} is not between 1 second and a week "
                f"({MAX_WARNING} s) before the end"
            )
        checked.add(value)
    return tuple(sorted(checked, reverse=True))


def check_save_before_end(value) -> int:
    """The save lead in seconds (0: off); raises ValueError naming the fix."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"save_before_end {value!r} is not a whole number of seconds")
    if not 0 <= value <= MAX_SIGNAL_LEAD:
        raise ValueError(
            f"save_before_end {value} must be between 0 (off) and {MAX_SIGNAL_LEAD} seconds "
            "(the longest lead sbatch's --signal takes)"
        )
    return value


def check_refresh_interval(value) -> float:
    """Seconds between two ``squeue`` reads in the job; raises ValueError naming the fix."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"walltime_refresh_interval {value!r} is not a number of seconds")
    if not value >= MIN_REFRESH_INTERVAL:
        raise ValueError(
            f"walltime_refresh_interval {value} is below {MIN_REFRESH_INTERVAL:.0f} seconds: "
            "every job of the hub asks slurmctld that often"
        )
    return float(value)


def clock_environment(settings: ClockSettings) -> dict[str, str]:
    """The variables that carry ``settings`` to the job (checked first)."""
    warnings = check_warnings(settings.warnings)
    return {
        WARNINGS_VARIABLE: ",".join(str(w) for w in warnings),
        SAVE_VARIABLE: str(check_save_before_end(settings.save_before_end)),
        REFRESH_VARIABLE: f"{check_refresh_interval(settings.refresh_interval):g}",
    }


def settings_from_env(env) -> ClockSettings:
    """The settings the hub put into the job's environment; the defaults for what is
    unset. Raises ValueError naming a variable that holds nonsense."""
    try:
        warnings = DEFAULT_WARNINGS
        text = env.get(WARNINGS_VARIABLE)
        if text is not None:
            warnings = check_warnings(
                [_whole_number(part) for part in text.split(",") if part.strip()]
            )
        save = DEFAULT_SAVE_BEFORE_END
        if env.get(SAVE_VARIABLE) is not None:
            save = check_save_before_end(_whole_number(env[SAVE_VARIABLE]))
        refresh = DEFAULT_REFRESH_INTERVAL
        if env.get(REFRESH_VARIABLE) is not None:
            refresh = check_refresh_interval(_number(env[REFRESH_VARIABLE]))
    except ValueError as e:
        raise ValueError(f"the job's clock settings from the hub: {e}") from None
    return ClockSettings(warnings, save, refresh)


def _whole_number(text: str):
    text = text.strip()
    return int(text) if text.isdigit() else text


def _number(text: str):
    try:
        return float(text)
    except ValueError:
        return text


# ---------------------------------------------------------------- what squeue says


def squeue_argv(job_id: str, squeue: str = "squeue") -> list[str]:
    """The one job's times, without a header."""
    return [squeue, "--noheader", f"--jobs={job_id}", f"--format={SQUEUE_FORMAT}"]


def parse_duration(text: str) -> int | None:
    """Slurm's ``[D-][H:]M:SS`` (how ``%L`` prints the time left) -> seconds;
    ``UNLIMITED``, ``NOT_SET``, ``INVALID`` -> None; raises ValueError otherwise."""
    text = text.strip()
    if text.upper() in _NO_TIME:
        return None
    match = _DURATION_RE.fullmatch(text)
    if not match:
        raise ValueError(f"{text[:40]!r} is not a Slurm duration such as 1-02:03:04 or 4:05")
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def parse_end_time(text: str) -> str | None:
    """``%e`` (``2030-01-02T03:04:05``, or ``N/A``, ``Unknown``) -> ISO 8601 or None."""
    text = text.strip()
    if text.upper() in _NO_TIME:
        return None
    try:
        return datetime.fromisoformat(text).isoformat()
    except ValueError:
        raise ValueError(f"{text[:40]!r} is not a time such as 2030-01-02T03:04:05") from None


def parse_squeue(stdout: str, job_id: str) -> JobTimes | None:
    """The line of ``job_id`` in ``squeue`` output of :data:`SQUEUE_FORMAT`; None when
    Slurm does not list it. Raises ValueError on a line it cannot read."""
    for line in stdout.splitlines():
        if not line.strip():
            continue
        fields = line.split("|", len(SQUEUE_FIELDS) - 1)
        if len(fields) != len(SQUEUE_FIELDS):
            raise ValueError(f"squeue printed {line[:120]!r}, not {SQUEUE_FORMAT}")
        jid, partition, state, limit, left, end, nodes = (field.strip() for field in fields)
        if jid != job_id:
            continue
        return JobTimes(
            job_id=jid,
            partition=partition,
            state=state,
            time_limit=limit,
            seconds_left=parse_duration(left),
            end_time=parse_end_time(end),
            nodes=nodes,
        )
    return None


# ---------------------------------------------------------------- what is due


def due_warning(seconds_left: float | None, warnings: tuple[int, ...]) -> int | None:
    """The smallest threshold the time left has reached (the one to show now), or None."""
    if seconds_left is None:
        return None
    reached = [w for w in warnings if seconds_left <= w]
    return min(reached) if reached else None


def save_due(seconds_left: float | None, save_before_end: int, end_signal: bool) -> bool:
    """Whether the open documents are to be saved now: the lead is reached on the
    clock, or Slurm's end signal came (the limit may have changed since the last read)."""
    if save_before_end <= 0:
        return False
    if end_signal:
        return True
    return seconds_left is not None and seconds_left <= save_before_end


def clock_status(
    job_id: str,
    settings: ClockSettings,
    times: JobTimes | None,
    *,
    age: float,
    now: float,
    end_signal_at: float | None,
    error: str | None,
) -> dict:
    """The answer of ``GET /hpcspawner/job/clock`` (JSON).

    ``times``: the last answer of squeue (None: none yet), read ``age`` seconds ago;
    ``now``: the server's clock (epoch seconds), for ``ends_at``; ``error``: why the
    last read failed (the values are then the last known ones, ``stale``).
    """
    seconds_left = None
    if times is not None and times.seconds_left is not None:
        seconds_left = max(0, round(times.seconds_left - age))
    end_signal = end_signal_at is not None
    return {
        "in_job": True,
        "job_id": job_id,
        "partition": times.partition if times else None,
        "nodes": times.nodes if times else None,
        "state": times.state if times else None,
        "time_limit": times.time_limit if times else None,
        "end_time": times.end_time if times else None,
        "seconds_left": seconds_left,
        "ends_at": None if seconds_left is None else now + seconds_left,
        "warnings": list(settings.warnings),
        "warning": due_warning(seconds_left, settings.warnings),
        "save_before_end": settings.save_before_end,
        "save_due": save_due(seconds_left, settings.save_before_end, end_signal),
        "end_signal": end_signal,
        "end_signal_at": end_signal_at,
        "refresh_interval": settings.refresh_interval,
        "read_at": None if times is None else now - age,
        "stale": error is not None,
        "error": error,
    }


#: The answer outside a Slurm job (no ``SLURM_JOB_ID``): the status bar item hides.
NOT_IN_A_JOB = {"in_job": False}
