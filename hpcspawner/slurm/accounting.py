"""Slurm accounting's limits: QOS definitions, association limits, default accounts (pure).

Parses what ``sacctmgr --noheader --parsable2`` prints (the commands are :data:`QOS_ARGS`,
:func:`assoc_limits_args` and :func:`user_args`; the recorded answers are in
``tests/unit/data/accounting/``) into plain records:

- :class:`JobLimits`: what one job may ask for (walltime, CPUs, memory, GPUs, nodes), each
  None for "no limit";
- :class:`QOSInfo`: one QOS and its per-job limits (``MaxWall``, ``MaxTRESPerJob``);
- :class:`UserAccounting`: a user's default account and each of their associations' own
  limits (``MaxTRES``, ``MaxWall``, ``GrpTRES``);
- :class:`AccountNode`: an account's own association (the row without a user): its
  ``GrpTRES`` and its parent accounts, read level by level (:func:`walk_accounts`) and
  folded into the user's limits (:func:`with_account_limits`).

The small parsers (:func:`parse_tres`, :func:`parse_walltime`) are shared with the
slurmrestd driver's version module where it reads the same strings.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from .records import (
    ParseError,
    check_user_name,
    parsable_fields,
    sacctmgr_args,
    show_assoc_args,
)

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

#: How many levels of the account tree the hub reads above the user's accounts (each level
#: one ``sacctmgr`` call or GET; sites have 2-3): the limits of accounts higher up are not read.
MAX_ACCOUNT_DEPTH = 10

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

#: an account name that can be asked about (no ``,``, ``=``, space or leading ``-``)
_ACCOUNT_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}")
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
    #: ``GrpTRES``: all the association's running jobs together (one job can be no bigger),
    #: within the ``GrpTRES`` of its account and of the accounts above it
    group: JobLimits = field(default_factory=JobLimits)
    #: which account's ``GrpTRES`` set each of :attr:`group`'s limits, by attribute
    #: (``{"cpus": "science"}``); missing: this association's own, or its account's
    group_set_by: Mapping[str, str] = field(default_factory=dict)

    def group_by_account(self) -> list[tuple[str, JobLimits]]:
        """:attr:`group` split by the account that set each limit, :attr:`account` first:
        ``[("chemistry", JobLimits(memory_mb=8192)), ("science", JobLimits(cpus=4))]``."""
        split: dict[str, dict[str, int]] = {self.account: {}}
        for name, value in self.group.__dict__.items():
            if value is not None:
                split.setdefault(self.group_set_by.get(name, self.account), {})[name] = value
        return [(account, JobLimits(**values)) for account, values in split.items()]


@dataclass(frozen=True)
class AccountNode:
    """An account's own association (the row without a user): its ``GrpTRES``, which holds
    for all the jobs of the account and of the accounts below it, and its parent accounts
    (none for root; more than one only where one database serves several clusters)."""

    name: str
    parents: tuple[str, ...] = ()
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


def check_account_name(name: object) -> str:
    """``name`` if it is one plain account name accounting can be asked about, else
    :class:`ParseError` (the names come from Slurm's own answers)."""
    if not isinstance(name, str) or not _ACCOUNT_NAME_RE.fullmatch(name):
        raise ParseError(f"{str(name)[:40]!r} is not an account name sacctmgr can be asked about")
    return name


def account_rows_args(accounts: Iterable[str]) -> list[str]:
    """``sacctmgr`` arguments for the accounts' own associations (``users=``, empty: the rows
    without a user), with their limits and parent (``parentname``)."""
    names = sorted({check_account_name(name) for name in accounts})
    return show_assoc_args([f"accounts={','.join(names)}", "users="], ASSOC_LIMIT_FIELDS)


def parse_account_rows(output: str) -> dict[str, AccountNode]:
    """``sacctmgr ... show assoc where accounts=A,B users= format=`` :data:`ASSOC_LIMIT_FIELDS`:
    each account's ``GrpTRES`` and parent, by name (:func:`by_account_name`)."""
    columns = {name: index for index, name in enumerate(ASSOC_LIMIT_FIELDS)}
    rows = []
    for parts in _rows(output, ASSOC_LIMIT_FIELDS, "sacctmgr show assoc"):
        if parts[columns["user"]]:
            raise ParseError(f"sacctmgr answered with user {parts[columns['user']]!r}'s row")
        account, parent = parts[columns["account"]], parts[columns["parentname"]]
        if not account:
            raise ParseError("an association without an account")
        rows.append(
            AccountNode(
                name=account,
                parents=(parent,) if parent else (),
                group=limits_from_tres(parse_tres(parts[columns["grptres"]])),
            )
        )
    return by_account_name(rows)


def by_account_name(rows: Iterable[AccountNode]) -> dict[str, AccountNode]:
    """Account rows by name; an account with several rows (one per cluster, where one
    database serves several) gets the lowest of each limit and all their parents."""
    nodes: dict[str, AccountNode] = {}
    for row in rows:
        known = nodes.get(row.name)
        if known is not None:
            row = AccountNode(
                row.name,
                tuple(dict.fromkeys(known.parents + row.parents)),
                known.group.within(row.group),
            )
        nodes[row.name] = row
    return nodes


async def walk_accounts(
    ask: Callable[[list[str]], Awaitable[Mapping[str, AccountNode] | None]],
    accounts: Iterable[str],
    max_depth: int = MAX_ACCOUNT_DEPTH,
) -> dict[str, AccountNode] | None:
    """The account rows of ``accounts`` and of the accounts above them up to root, asked one
    level at a time: ``ask(names)`` (one sacctmgr call or GET) answers the rows of ``names``,
    or None for no accounting (then this is None too). At most ``max_depth`` levels."""
    tree: dict[str, AccountNode] = {}
    asked: set[str] = set()
    wanted = sorted({check_account_name(name) for name in accounts})
    for _ in range(max_depth):
        if not wanted:
            break
        answer = await ask(wanted)
        if answer is None:
            return None
        asked.update(wanted)
        tree.update(answer)
        parents = {parent for node in tree.values() for parent in node.parents}
        wanted = sorted(check_account_name(name) for name in parents - asked)
    return tree


def ancestry(account: str, tree: Mapping[str, AccountNode]) -> list[AccountNode]:
    """``account``'s row and those of the accounts above it, nearest first, each once."""
    found: list[AccountNode] = []
    seen: set[str] = set()
    level = [account]
    while level:
        nodes = [tree[name] for name in level if name in tree and name not in seen]
        seen.update(node.name for node in nodes)
        found.extend(nodes)
        level = [parent for node in nodes for parent in node.parents]
    return found


def with_account_limits(
    limits: Mapping[str, AccountLimits], tree: Mapping[str, AccountNode]
) -> dict[str, AccountLimits]:
    """Each association's :attr:`~AccountLimits.group` within the ``GrpTRES`` of its account
    and of every account above it (the lowest wins; of equal ones the nearest), with
    :attr:`~AccountLimits.group_set_by` naming the account whose limit won."""
    folded = {}
    for account, association in limits.items():
        group, set_by = association.group, dict(association.group_set_by)
        for node in ancestry(account, tree):
            lower = group.within(node.group)
            set_by.update(
                (name, node.name)
                for name, value in lower.__dict__.items()
                if value != getattr(group, name)
            )
            group = lower
        folded[account] = replace(association, group=group, group_set_by=set_by)
    return folded


async def with_account_tree(
    accounting: UserAccounting,
    ask: Callable[[list[str]], Awaitable[Mapping[str, AccountNode] | None]],
) -> UserAccounting | None:
    """``accounting`` with the account limits above its associations folded in
    (:func:`walk_accounts` with ``ask``, then :func:`with_account_limits`); None when
    ``ask`` found no accounting. The drivers' one way to finish ``user_accounting``."""
    tree = await walk_accounts(ask, accounting.limits)
    if tree is None:
        return None
    return replace(accounting, limits=with_account_limits(accounting.limits, tree))


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
    "MAX_ACCOUNT_DEPTH",
    "QOS_ARGS",
    "QOS_FIELDS",
    "USER_FIELDS",
    "AccountLimits",
    "AccountNode",
    "JobLimits",
    "QOSInfo",
    "UserAccounting",
    "account_rows_args",
    "ancestry",
    "assoc_limits_args",
    "by_account",
    "by_account_name",
    "check_account_name",
    "limits_from_tres",
    "parse_account_rows",
    "parse_assoc_limits",
    "parse_default_account",
    "parse_qos",
    "parse_tres",
    "parse_walltime",
    "user_args",
    "walk_accounts",
    "with_account_limits",
    "with_account_tree",
]
