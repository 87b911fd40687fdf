"""Slurm job states and the parser for ``squeue`` output (pure, no I/O).

The poller asks Slurm about every job of the hub in one call::

    squeue --noheader --states=all --jobs=1,2,3 --format=<SQUEUE_FORMAT>

and :func:`parse_squeue` turns the answer into :class:`JobInfo` records.
:func:`classify` maps a record (or its absence) onto the three answers a
spawner cares about: the job is alive, it is gone, or nobody knows.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime

#: Field separator for ``squeue --format``. Slurm never puts it into the
#: fields we ask for (ids, state names, reasons, host lists, timestamps).
FIELD_SEPARATOR = "|"

#: ``(name, squeue format code)`` in output order.
SQUEUE_FIELDS = (
    ("job_id", "%i"),
    ("state", "%T"),
    ("reason", "%r"),
    ("batch_host", "%B"),
    ("node_list", "%N"),
    ("start_time", "%S"),
    ("partition", "%P"),
    ("user", "%u"),
    ("time_limit", "%l"),
    ("time_used", "%M"),
    ("num_nodes", "%D"),
)
SQUEUE_FORMAT = FIELD_SEPARATOR.join(code for _, code in SQUEUE_FIELDS)

#: stderr of ``squeue -j ID`` when ID has been purged from the controller's
#: memory. It is a positive answer: the scheduler does not know the job.
INVALID_JOB_ID_RE = re.compile(r"Invalid job id specified")

#: Slurm job states (``squeue %T``) in which the job still holds or waits for
#: an allocation and its server may (still) come up.
ALIVE_STATES = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "SUSPENDED",
        "RESIZING",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "RESV_DEL_HOLD",
        "SIGNALING",
        "STAGE_OUT",
        "STOPPED",
    }
)

#: States in which the job has ended (or is being torn down): its server is gone.
ENDED_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "COMPLETING",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "REVOKED",
        "SPECIAL_EXIT",
        "TIMEOUT",
    }
)

#: Why a job ended, in words for the user.
ENDED_EXPLANATIONS = {
    "BOOT_FAIL": "the node failed to boot",
    "CANCELLED": "the job was cancelled",
    "COMPLETED": "the job finished",
    "COMPLETING": "the job ended (Slurm is still cleaning up)",
    "DEADLINE": "the job reached its deadline",
    "FAILED": "the job failed",
    "NODE_FAIL": "the node running the job failed",
    "OUT_OF_MEMORY": "the job ran out of memory",
    "PREEMPTED": "the job was preempted",
    "REVOKED": "the job was revoked",
    "SPECIAL_EXIT": "the job ended with a special exit state",
    "TIMEOUT": "the job reached its time limit",
}

#: Pending reasons (``squeue %r``) explained for the user. Unknown reasons are
#: shown as Slurm prints them.
PENDING_REASONS = {
    "Priority": "other jobs have a higher priority",
    "Resources": "waiting for resources to become free",
    "None": "waiting for the scheduler",
    "BeginTime": "waiting for its start time",
    "Dependency": "waiting for a dependency",
    "JobHeldUser": "held by the user",
    "JobHeldAdmin": "held by an administrator",
    "ReqNodeNotAvail": "a requested node is not available",
    "PartitionDown": "the partition is down",
    "PartitionInactive": "the partition is inactive",
    "PartitionTimeLimit": "the time limit exceeds the partition's limit",
    "PartitionNodeLimit": "the node count exceeds the partition's limit",
    "QOSMaxJobsPerUserLimit": "you have reached your QOS's limit of jobs",
    "AssocGrpCpuLimit": "your account's CPU limit is reached",
    "AssocMaxJobsLimit": "your account's job limit is reached",
    "Reservation": "waiting for its reservation",
}

_NONE_VALUES = frozenset({"", "N/A", "n/a", "(null)", "None", "Unknown"})


class Liveness(enum.Enum):
    """The three answers about a job."""

    ALIVE = "alive"  #: the scheduler says the job waits or runs
    GONE = "gone"  #: the scheduler says the job ended, or does not know it
    UNKNOWN = "unknown"  #: we could not ask (error, timeout): assume nothing


@dataclass(frozen=True)
class JobInfo:
    """One job as ``squeue`` reports it."""

    job_id: str
    state: str
    reason: str | None = None
    batch_host: str | None = None
    node_list: str | None = None
    start_time: datetime | None = None
    partition: str | None = None
    user: str | None = None
    time_limit: str | None = None
    time_used: str | None = None
    num_nodes: int | None = None

    @property
    def liveness(self) -> Liveness:
        return classify_state(self.state)

    @property
    def pending(self) -> bool:
        return self.state == "PENDING"

    @property
    def running(self) -> bool:
        return self.state == "RUNNING"

    def describe_reason(self) -> str | None:
        """The pending reason in words, or None."""
        if not self.reason:
            return None
        return PENDING_REASONS.get(self.reason, self.reason)

    def describe_end(self) -> str:
        """Why the job ended, in words."""
        word = self.state.split()[0] if self.state.strip() else self.state
        text = ENDED_EXPLANATIONS.get(word, f"the job is {self.state}")
        if word == "CANCELLED":
            # a job cancelled while pending keeps its pending reason: not why it ended
            return text
        if self.reason and self.reason not in ("None", "NonZeroExitCode"):
            text = f"{text} ({self.reason})"
        elif self.reason == "NonZeroExitCode":
            text = f"{text} (non-zero exit code)"
        return text


class SqueueParseError(ValueError):
    """squeue printed something that is not what we asked for."""


def classify_state(state: str) -> Liveness:
    """Map a Slurm job state onto alive/gone.

    Slurm may append flags (``CANCELLED by 1001``); only the first word counts.
    A state this table does not know counts as alive: ending a user's server
    needs a positive answer.
    """
    word = state.split()[0] if state.strip() else ""
    if word in ENDED_STATES:
        return Liveness.GONE
    return Liveness.ALIVE


def _optional(value: str) -> str | None:
    value = value.strip()
    return None if value in _NONE_VALUES else value


def parse_slurm_time(value: str) -> datetime | None:
    """Parse Slurm's ISO-like timestamp (``2026-11-21T22:47:50``), or None."""
    value = value.strip()
    if value in _NONE_VALUES:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return None


def parse_squeue_line(line: str) -> JobInfo:
    parts = line.split(FIELD_SEPARATOR)
    if len(parts) != len(SQUEUE_FIELDS):
        raise SqueueParseError(
            f"expected {len(SQUEUE_FIELDS)} fields separated by {FIELD_SEPARATOR!r}, "
            f"got {len(parts)}: {line!r}"
        )
    raw = dict(zip((name for name, _ in SQUEUE_FIELDS), parts, strict=True))
    job_id = raw["job_id"].strip()
    state = raw["state"].strip()
    if not job_id or not state:
        raise SqueueParseError(f"missing job id or state: {line!r}")
    num_nodes = raw["num_nodes"].strip()
    return JobInfo(
        job_id=job_id,
        state=state,
        reason=_optional(raw["reason"]),
        batch_host=_optional(raw["batch_host"]),
        node_list=_optional(raw["node_list"]),
        start_time=parse_slurm_time(raw["start_time"]),
        partition=_optional(raw["partition"]),
        user=_optional(raw["user"]),
        time_limit=_optional(raw["time_limit"]),
        time_used=_optional(raw["time_used"]),
        num_nodes=int(num_nodes) if num_nodes.isdigit() else None,
    )


def parse_squeue(output: str) -> dict[str, JobInfo]:
    """Parse ``squeue --noheader --format=SQUEUE_FORMAT`` output.

    Returns job id -> record. Blank lines are ignored; any other line that does
    not have the expected fields raises :class:`SqueueParseError` (so that a
    changed Slurm output format is an error, never "every job is gone").
    """
    jobs: dict[str, JobInfo] = {}
    for line in output.splitlines():
        if not line.strip():
            continue
        info = parse_squeue_line(line)
        jobs[info.job_id] = info
    return jobs


def liveness_of(job_id: str, answer: dict[str, JobInfo]) -> Liveness:
    """Liveness of ``job_id`` given a *successful* squeue answer.

    A job missing from a successful answer is unknown to the scheduler (purged
    after MinJobAge, or lost): it is gone.
    """
    info = answer.get(job_id)
    if info is None:
        return Liveness.GONE
    return info.liveness


def parse_comment_matches(output: str, comment: str) -> list[str]:
    """Job ids from ``squeue --noheader --format=%i|%k`` output whose comment is ``comment``."""
    ids = []
    for line in output.splitlines():
        job_id, sep, job_comment = line.strip().partition(FIELD_SEPARATOR)
        if sep and job_comment == comment and job_id.strip():
            ids.append(job_id.strip())
    return ids
