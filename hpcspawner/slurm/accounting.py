"""Slurm accounting's limits: QOS definitions, association limits, default accounts (pure).

Parses what ``sacctmgr --noheader --parsable2`` prints (the commands are :data:`QOS_ARGS`,
:func:`assoc_limits_args` and :func:`user_args`; the recorded answers are in
``tests/unit/data/accounting/``) into plain records:

- :class:`JobLimits`: what one job may ask for (walltime, CPUs, memory, GPUs, nodes), each
  None for "no limit";
- :class:`QOSInfo`: one QOS and its per-job limits (``MaxWall``, ``MaxTRESPerJob``);
- :class:`UserAccounting`: a user's default account and each of their associations' own
  limits (``MaxTRES``, ``MaxWall``, ``GrpTRES``).

The small parsers (:func:`parse_tres`, :func:`parse_walltime`) are shared with the
slurmrestd driver's version module where it reads the same strings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .records import ParseError, check_user_name, parsable_fields, sacctmgr_args

#: ``sacctmgr show qos`` columns, in output order (as recorded).
QOS_FIELDS = (
    "name",
    "priority",
    "maxwall",
    "maxtresperjob",
    "maxtrespernode",
    "maxtrespu",
    "maxjobspu",
    "maxsubmitpu",
    "grptres",
    "mintresperjob",
    "flags",
    "description",
)
#: ``sacctmgr show assoc`` columns with the association's limits, in output order.
ASSOC_LIMIT_FIELDS = (
    "user",
    "account",
    "qos",
    "defaultqos",
    "partition",
    "grptres",
    "grpjobs",
    "grpsubmit",
    "maxtres",
    "maxtrespernode",
    "maxwall",
    "maxjobs",
    "maxsubmit",
    "priority",
    "fairshare",
    "parentname",
)
#: ``sacctmgr show user U withassoc`` columns: one row per association, the default account
#: repeated on each.
USER_FIELDS = ("user", "defaultaccount", "account", "qos")

QOS_ARGS = ("--noheader", "--parsable2", "show", "qos", f"format={','.join(QOS_FIELDS)}")

#: What a Slurm client prints when slurmdbd does not answer (recorded:
#: ``sacctmgr_dbd_down.stderr``; slurmrestd: "Unable to connect to database", error 7000).
#: Unlike :data:`~hpcspawner.slurm.records.NO_ACCOUNTING_RE` this is an outage: the
#: cluster has accounting, and slurmctld still enforces its cached associations.
DBD_DOWN_RE = re.compile(
    r"persistent connection|Connection refused|Unable to connect to database"
    r"|Failed connecting to slurmdbd",
    re.IGNORECASE,
)

_UNLIMITED = frozenset({"", "UNLIMITED", "INFINITE", "NONE", "N/A"})
_TRES_MEMORY_FACTORS = {"": 1, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024, "P": 1024**3}
#: one TRES: a name (``cpu``, ``gres/gpu:a100``, ``license/matlab@db``), a count, a size suffix
_TRES_ITEM_RE = re.compile(r"([a-z][^=,\s]*)=([0-9]{1,12})([KMGTP]?)", re.IGNORECASE)
_WALLTIME_RE = re.compile(r"(?:([0-9]{1,5})-)?(?:([0-9]{1,2}):)?([0-9]{1,2}):([0-9]{1,2})")


# ---------------------------------------------------------------- small parsers


def parse_tres(text: str) -> dict[str, int]:
    """``cpu=2,gres/gpu=0,mem=4G`` -> ``{"cpu": 2, "gres/gpu": 0, "mem": 4096}``.

    Memory (``mem``) in MB; other counts as printed. Empty: ``{}`` (no limit).
    Raises :class:`ParseError` for anything else.
    """
    tres: dict[str, int] = {}
    text = text.strip()
    if not text:
        return tres
    for item in text.split(","):
        match = _TRES_ITEM_RE.fullmatch(item.strip())
        if match is None:
            raise ParseError(f"not a TRES list: {text[:80]!r}")
        name, count, suffix = match.group(1).lower(), int(match.group(2)), match.group(3).upper()
        if suffix and name != "mem":
            raise ParseError(f"unexpected size suffix in TRES {item[:40]!r}")
        if name == "mem":
            count = int(count * _TRES_MEMORY_FACTORS[suffix])
        tres[name] = count
    return tres


def parse_walltime(text: str) -> int | None:
    """A limit as sacctmgr prints it -> minutes (rounded up); None for no limit.

    ``02:00:00`` -> 120, ``1-00:00:00`` -> 1440, ``30:00`` -> 30, ``""``/``UNLIMITED`` -> None.
    """
    text = text.strip()
    if text.upper() in _UNLIMITED:
        return None
    match = _WALLTIME_RE.fullmatch(text)
    if match is None:
        raise ParseError(f"not a walltime: {text[:40]!r}")
    days, hours, minutes, seconds = (int(group or 0) for group in match.groups())
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    return -(-total // 60)


# ---------------------------------------------------------------- records


@dataclass(frozen=True)
class JobLimits:
    """What one job may use; None: no limit. CPUs, memory (MB) and GPUs for the whole job."""

    runtime_minutes: int | None = None
    cpus: int | None = None
    memory_mb: int | None = None
    gpus: int | None = None
    nodes: int | None = None

    @property
    def empty(self) -> bool:
        return all(value is None for value in self.__dict__.values())

    def within(self, other: JobLimits) -> JobLimits:
        """Each limit the lower of this and ``other``'s."""
        return JobLimits(
            **{name: _min(value, getattr(other, name)) for name, value in self.__dict__.items()}
        )


def _min(*values: int | None) -> int | None:
    present = [value for value in values if value is not None]
    return min(present) if present else None


def limits_from_tres(tres: Mapping[str, int], runtime_minutes: int | None = None) -> JobLimits:
    """A TRES limit (:func:`parse_tres`) as :class:`JobLimits`; GPUs are ``gres/gpu``
    (untyped; a typed ``gres/gpu:a100`` alone limits only that type and is not read)."""
    return JobLimits(
        runtime_minutes=runtime_minutes,
        cpus=tres.get("cpu"),
        memory_mb=tres.get("mem"),
        gpus=tres.get("gres/gpu"),
        nodes=tres.get("node"),
    )


@dataclass(frozen=True)
class QOSInfo:
    """One QOS: its per-job limits and whether Slurm refuses jobs over them at submit."""

    name: str
    limits: JobLimits = field(default_factory=JobLimits)
    #: ``Flags=DenyOnLimit``: a job over a limit is refused at submit (else it stays pending)
    deny_on_limit: bool = False
    description: str = ""


@dataclass(frozen=True)
class AccountLimits:
    """The limits of one of a user's associations (the user's row, not the account's)."""

    account: str
    #: ``MaxTRES`` and ``MaxWall``: per job
    per_job: JobLimits = field(default_factory=JobLimits)
    #: ``GrpTRES``: all the association's running jobs together (one job can be no bigger)
    group: JobLimits = field(default_factory=JobLimits)


@dataclass(frozen=True)
class UserAccounting:
    """A user's default account and their associations' limits, by account."""

    default_account: str | None = None
    limits: Mapping[str, AccountLimits] = field(default_factory=dict)


# ---------------------------------------------------------------- sacctmgr


def _rows(output: str, fields: tuple[str, ...], what: str) -> Iterable[list[str]]:
    """Each non-blank line's fields, stripped (:func:`~hpcspawner.slurm.records.parsable_fields`
    checks their count)."""
    for line in output.splitlines():
        if line.strip():
            yield [part.strip() for part in parsable_fields(line, fields, what).values()]


def parse_qos(output: str) -> dict[str, QOSInfo]:
    """``sacctmgr --noheader --parsable2 show qos format=`` :data:`QOS_FIELDS`, by name."""
    columns = {name: index for index, name in enumerate(QOS_FIELDS)}
    qos = {}
    for parts in _rows(output, QOS_FIELDS, "sacctmgr show qos"):
        name = parts[columns["name"]]
        if not name:
            raise ParseError("a QOS without a name")
        flags = {flag.strip().lower() for flag in parts[columns["flags"]].split(",")}
        qos[name] = QOSInfo(
            name=name,
            limits=limits_from_tres(
                parse_tres(parts[columns["maxtresperjob"]]),
                parse_walltime(parts[columns["maxwall"]]),
            ),
            deny_on_limit="denyonlimit" in flags,
            description=parts[columns["description"]],
        )
    return qos


def assoc_limits_args(username: str) -> list[str]:
    """``sacctmgr`` arguments for ``username``'s associations with their limits (the
    associations' own query, :func:`~hpcspawner.slurm.records.sacctmgr_args`, with more
    columns)."""
    *args, _ = sacctmgr_args(username)
    return [*args, f"format={','.join(ASSOC_LIMIT_FIELDS)}"]


def user_args(username: str) -> list[str]:
    """``sacctmgr`` arguments for ``username``'s default account."""
    check_user_name(username)
    return [
        "--noheader",
        "--parsable2",
        "show",
        "user",
        username,
        "withassoc",
        f"format={','.join(USER_FIELDS)}",
    ]


def parse_assoc_limits(output: str, username: str) -> dict[str, AccountLimits]:
    """``sacctmgr ... show assoc where user=U format=`` :data:`ASSOC_LIMIT_FIELDS`, by account
    (:func:`by_account`)."""
    columns = {name: index for index, name in enumerate(ASSOC_LIMIT_FIELDS)}
    rows = []
    for parts in _rows(output, ASSOC_LIMIT_FIELDS, "sacctmgr show assoc"):
        user, account = parts[columns["user"]], parts[columns["account"]]
        if user.lower() != username.lower():
            raise ParseError(f"sacctmgr answered about user {user!r}, not {username!r}")
        if not account:
            raise ParseError("an association without an account")
        rows.append(
            AccountLimits(
                account=account,
                per_job=limits_from_tres(
                    parse_tres(parts[columns["maxtres"]]), parse_walltime(parts[columns["maxwall"]])
                ),
                group=limits_from_tres(parse_tres(parts[columns["grptres"]])),
            )
        )
    return by_account(rows)


def by_account(rows: Iterable[AccountLimits]) -> dict[str, AccountLimits]:
    """Association limits by account; an account with several associations (one per
    partition) gets the lowest of each limit (the hub does not tie limits to partitions)."""
    limits: dict[str, AccountLimits] = {}
    for row in rows:
        known = limits.get(row.account)
        if known is not None:
            row = AccountLimits(
                row.account, known.per_job.within(row.per_job), known.group.within(row.group)
            )
        limits[row.account] = row
    return limits


def parse_default_account(output: str, username: str) -> str | None:
    """``sacctmgr ... show user U withassoc format=`` :data:`USER_FIELDS`: the default account."""
    defaults = set()
    for parts in _rows(output, USER_FIELDS, "sacctmgr show user"):
        if parts[0].lower() != username.lower():
            raise ParseError(f"sacctmgr answered about user {parts[0]!r}, not {username!r}")
        if parts[1]:
            defaults.add(parts[1])
    if len(defaults) > 1:
        raise ParseError(f"several default accounts for {username}: {sorted(defaults)}")
    return next(iter(defaults), None)


__all__ = [
    "ASSOC_LIMIT_FIELDS",
    "DBD_DOWN_RE",
    "QOS_ARGS",
    "QOS_FIELDS",
    "USER_FIELDS",
    "AccountLimits",
    "JobLimits",
    "QOSInfo",
    "UserAccounting",
    "assoc_limits_args",
    "by_account",
    "limits_from_tres",
    "parse_assoc_limits",
    "parse_default_account",
    "parse_qos",
    "parse_tres",
    "parse_walltime",
    "user_args",
]
