"""Why a job ended, from Slurm's accounting (``sacct``, slurmrestd's ``dbv0.0.38``): pure.

``squeue`` forgets a job MinJobAge seconds (300 by default) after it ended; accounting
(slurmdbd) keeps it. The hub asks once per job that vanished from the queue::

    sacct --noheader --parsable2 -X --jobs=1,2,3 --format=<SACCT_FORMAT>

and :func:`parse_sacct` turns the answer into :class:`JobEnd` records;
:func:`from_rest_job` does the same for ``GET /slurmdb/v0.0.38/job/{id}``.
Recorded answers: ``tests/unit/data/accounting/`` (``record.sh``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from .jobstate import parse_slurm_time
from .records import ParseError, parsable_fields

#: ``sacct --format`` fields, in output order (as recorded by record.sh).
SACCT_FIELDS = (
    "JobID",
    "JobName",
    "User",
    "Account",
    "QOS",
    "Partition",
    "State",
    "ExitCode",
    "DerivedExitCode",
    "Reason",
    "Submit",
    "Start",
    "End",
    "Elapsed",
    "Timelimit",
    "NodeList",
    "AllocTRES",
    "Comment",
)
SACCT_FORMAT = ",".join(SACCT_FIELDS)


def sacct_args(job_ids: list[str]) -> list[str]:
    """sacct's arguments for the allocations (``-X``: no steps) of ``job_ids``."""
    for job_id in job_ids:
        if not str(job_id).isdigit():
            raise ValueError(f"{str(job_id)[:40]!r} is not a job id")
    return [
        "--noheader",
        "--parsable2",
        "-X",
        f"--jobs={','.join(map(str, job_ids))}",
        f"--format={SACCT_FORMAT}",
    ]


@dataclass(frozen=True)
class JobEnd:
    """One finished job as accounting recorded it."""

    job_id: str
    #: the job's owner (its user name)
    user: str
    #: the state's first word: ``TIMEOUT``, ``CANCELLED``, ``FAILED``, ...
    state: str
    #: who cancelled it: a uid (``sacct``'s ``CANCELLED by 1001``) or a user name
    #: (slurmrestd's ``kill_request_user``); None when not cancelled or not told
    cancelled_by: str | None = None
    #: the batch script's exit code and the signal that ended it (``ExitCode`` ``3:0``)
    exit_code: int | None = None
    signal: int | None = None
    #: the job's time limit as sacct prints it (``00:01:00``, ``1-00:00:00``)
    time_limit: str | None = None
    submit: datetime | None = None
    end: datetime | None = None

    @property
    def ended(self) -> bool:
        """Accounting has the job's end (a job still running or pending has none)."""
        return self.state not in ("PENDING", "RUNNING", "REQUEUED", "SUSPENDED", "RESIZING")


def _exit_code(value: str) -> tuple[int | None, int | None]:
    """``"3:0"`` -> (3, 0); anything else -> (None, None)."""
    code, _, signal = value.strip().partition(":")
    if code.isdigit() and signal.isdigit():
        return int(code), int(signal)
    return None, None


def parse_sacct_line(line: str) -> JobEnd:
    # the comment comes last and is the user's to write: it may hold the separator
    raw = parsable_fields(line, SACCT_FIELDS, "sacct", free_last=True)
    job_id, state_text = raw["JobID"].strip(), raw["State"].strip()
    if not job_id or not state_text:
        raise ParseError(f"sacct line without a job id or state: {line[:200]!r}")
    state, _, by = state_text.partition(" by ")
    exit_code, signal = _exit_code(raw["ExitCode"])
    return JobEnd(
        job_id=job_id,
        user=raw["User"].strip(),
        state=state.strip(),
        cancelled_by=by.strip() or None,
        exit_code=exit_code,
        signal=signal,
        time_limit=raw["Timelimit"].strip() or None,
        submit=parse_slurm_time(raw["Submit"]),
        end=parse_slurm_time(raw["End"]),
    )


def _newest(found: dict[str, JobEnd], end: JobEnd) -> None:
    """Keep ``end`` unless ``found`` has a later job of the same id (a reused id)."""
    known = found.get(end.job_id)
    if known is None or (end.submit or datetime.min) >= (known.submit or datetime.min):
        found[end.job_id] = end


def parse_sacct(output: str) -> dict[str, JobEnd]:
    """job id -> :class:`JobEnd` from ``sacct --parsable2`` output (``-X``, :data:`SACCT_FORMAT`).

    An id accounting does not know is missing (``sacct`` prints nothing for it). When an
    id has several records (ids start again after a database reset), the newest counts.
    Raises :class:`~hpcspawner.slurm.records.ParseError` for a line that is not one.
    """
    found: dict[str, JobEnd] = {}
    for line in output.splitlines():
        if line.strip():
            _newest(found, parse_sacct_line(line))
    return found


def _rest_code(value: object) -> tuple[int | None, int | None]:
    """dbv0.0.38's ``exit_code`` (``{"status": "SIGNALED", "return_code": 0, "signal":
    {"signal_id": 9}}``) -> (exit code, signal)."""
    if not isinstance(value, Mapping):
        return None, None
    code = value.get("return_code")
    signal = value.get("signal")
    signal_id = signal.get("signal_id") if isinstance(signal, Mapping) else None
    return (
        code if isinstance(code, int) and not isinstance(code, bool) else None,
        signal_id if isinstance(signal_id, int) and not isinstance(signal_id, bool) else 0,
    )


def _epoch(value: object) -> datetime | None:
    """An epoch time as the naive local time ``sacct`` prints; 0 or missing -> None."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return datetime.fromtimestamp(value)
    return None


def _hms(minutes: object) -> str | None:
    """A time limit in minutes as sacct prints it: ``00:01:00``, ``1-00:00:00``."""
    if not isinstance(minutes, int) or isinstance(minutes, bool) or not 0 < minutes < 0xFFFFFFFE:
        return None
    days, rest = divmod(minutes, 1440)
    text = f"{rest // 60:02}:{rest % 60:02}:00"
    return f"{days}-{text}" if days else text


def from_rest_job(job: object) -> JobEnd:
    """One job of slurmrestd's ``GET /slurmdb/v0.0.38/job/{id}`` answer (``jobs[i]``)."""
    if not isinstance(job, Mapping):
        raise ParseError(f"a job of the accounting answer is not an object: {str(job)[:200]}")
    state = job.get("state")
    current = state.get("current") if isinstance(state, Mapping) else None
    job_id = job.get("job_id")
    if not isinstance(current, str) or not isinstance(job_id, int) or isinstance(job_id, bool):
        raise ParseError(f"an accounting job without an id or state: {str(job)[:200]}")
    times = job.get("time") if isinstance(job.get("time"), Mapping) else {}
    exit_code, signal = _rest_code(job.get("exit_code"))
    killer = job.get("kill_request_user")
    word = current.split()[0] if current.strip() else current
    return JobEnd(
        job_id=str(job_id),
        user=str(job.get("user") or ""),
        state=word,
        cancelled_by=killer if word == "CANCELLED" and isinstance(killer, str) and killer else None,
        exit_code=exit_code,
        signal=signal,
        time_limit=_hms(times.get("limit")),
        submit=_epoch(times.get("submission")),
        end=_epoch(times.get("end")),
    )


def parse_rest_jobs(body: object) -> dict[str, JobEnd]:
    """job id -> :class:`JobEnd` from a ``dbv0.0.38`` job answer (``{"jobs": [...]}``)."""
    jobs = body.get("jobs") if isinstance(body, Mapping) else None
    if not isinstance(jobs, list):
        raise ParseError(f"the accounting answer has no list of jobs: {str(body)[:200]}")
    found: dict[str, JobEnd] = {}
    for job in jobs:
        _newest(found, from_rest_job(job))
    return found


__all__ = [
    "SACCT_FIELDS",
    "SACCT_FORMAT",
    "JobEnd",
    "from_rest_job",
    "parse_rest_jobs",
    "parse_sacct",
    "parse_sacct_line",
    "sacct_args",
]
