"""Slurm's cluster records: parsers for ``scontrol``, ``sacctmgr`` and ``sdiag`` output (pure).

- :func:`parse_partitions` reads ``scontrol --all --oneliner show partition``,
- :func:`parse_nodes` reads ``scontrol --all --details --oneliner show node``
  (``--details`` adds ``GresUsed``, the GPUs in use),
- :func:`parse_associations` reads ``sacctmgr --noheader --parsable2 show assoc``,
- :func:`parse_sdiag_queue` reads the queue's size from ``sdiag``.

Anything unexpected raises :class:`ParseError`. :mod:`hpcspawner.slurm.snapshot`
sums the records up per partition. (A job's record, :class:`~hpcspawner.slurm.jobstate.JobInfo`,
lives with its ``squeue`` parser in :mod:`hpcspawner.slurm.jobstate`.)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .hostlist import HostlistError, expand_hostlist, split_outside

#: Arguments of the two ``scontrol`` queries (after the command itself). ``--all`` includes
#: hidden partitions (an admin may offer one) and the nodes only they contain.
SCONTROL_PARTITIONS_ARGS = ("--all", "--oneliner", "show", "partition")
SCONTROL_NODES_ARGS = ("--all", "--details", "--oneliner", "show", "node")

#: ``sacctmgr`` columns, in output order. ``user`` lets the parser check that every row
#: belongs to the user asked about: a user never sees another user's accounts.
SACCTMGR_FIELDS = ("user", "account", "qos", "defaultqos", "partition")

#: sacctmgr's answer when the cluster has no slurmdbd (AccountingStorageType is not
#: accounting_storage/slurmdbd): rc 1, on stderr (tests/unit/data/sacctmgr_no_dbd.stderr).
NO_ACCOUNTING_RE = re.compile(r"not running a supported accounting_storage plugin")

#: ``sdiag``'s counts of the jobs in slurmctld's queue, as of its last count ("Job states ts"):
#: ``Jobs pending:   10006`` (tests/unit/data/sdiag_idle.txt).
_SDIAG_QUEUE_RE = re.compile(r"^Jobs (pending|running):[ \t]*([0-9]+)[ \t]*$", re.MULTILINE)

#: What scontrol prints instead of records when there are none.
_NO_RECORDS = ("No partitions in the system", "No nodes in the system")

#: Values that mean "no limit" / "not set".
_UNLIMITED = frozenset({"UNLIMITED", "INFINITE"})
_NOT_SET = frozenset({"", "NONE", "N/A", "(null)"})

#: The key of a GPU count that has no type (``Gres=gpu:4``, ``gres/gpu=4``).
UNTYPED = ""

#: POSIX-ish user names; no ``,`` (sacctmgr would read a list of users), ``=`` or spaces.
_USERNAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}")


class ParseError(ValueError):
    """Slurm printed something this module does not understand.

    Raised instead of guessing: a misread limit or free count is worse than
    the page saying that the cluster information is unavailable.
    """


# ---------------------------------------------------------------- records


@dataclass(frozen=True)
class NodeInfo:
    """One node as ``scontrol show node`` reports it. Memory in MB."""

    name: str
    #: base state, lowercased: idle, mixed, allocated, down, future, unknown, error
    state: str
    #: state flags, lowercased as Slurm prints them: drain, not_responding, reserved, ...
    flags: frozenset[str]
    cpus_total: int
    cpus_alloc: int
    #: CPUs jobs may use (CPUEfctv: without specialized cores); CPUTot where not printed
    cpus_effective: int
    memory_mb: int
    memory_alloc_mb: int
    #: GPU type (:data:`UNTYPED` for none) -> count
    gpus_total: Mapping[str, int] = field(default_factory=dict)
    #: GPU type -> count in use; None when Slurm did not say (no GresUsed, GPUs not a TRES)
    gpus_alloc: Mapping[str, int] | None = field(default_factory=dict)
    partitions: tuple[str, ...] = ()
    reason: str | None = None

    @property
    def down(self) -> bool:
        return self.state == "down"

    @property
    def drain(self) -> bool:
        return "drain" in self.flags

    @property
    def not_responding(self) -> bool:
        return "not_responding" in self.flags

    @property
    def usable(self) -> bool:
        """Can run new jobs without an admin's action (a reservation ends on its own)."""
        return self.state not in _UNUSABLE_STATES and not (self.flags & _UNUSABLE_FLAGS)

    @property
    def takes_jobs_now(self) -> bool:
        """Usable and not held back for now (reservation, maintenance, power transition)."""
        return self.usable and not (self.flags & _HELD_FLAGS)

    @property
    def idle(self) -> bool:
        return self.takes_jobs_now and self.state == "idle" and self.cpus_alloc == 0

    @property
    def free_cpus(self) -> int:
        return max(0, self.cpus_effective - self.cpus_alloc)

    @property
    def free_memory_mb(self) -> int:
        return max(0, self.memory_mb - self.memory_alloc_mb)

    @property
    def free_gpus(self) -> dict[str, int] | None:
        if self.gpus_alloc is None:
            return None
        return {
            kind: max(0, count - self.gpus_alloc.get(kind, 0))
            for kind, count in self.gpus_total.items()
        }


#: Base states and flags that keep a node from running new jobs until someone acts.
_UNUSABLE_STATES = frozenset({"down", "future", "error"})
_UNUSABLE_FLAGS = frozenset({"drain", "fail", "not_responding", "invalid_reg"})
#: Flags of usable nodes whose resources are not free for an ordinary job right now.
_HELD_FLAGS = frozenset({"reserved", "maint", "powering_down", "reboot_issued"})
_BASE_STATES = frozenset({"idle", "mixed", "allocated", "down", "future", "unknown", "error"})
#: sinfo-style words some Slurm versions print as the base state
_COMPOUND_STATES = {
    "drained": ("idle", "drain"),
    "draining": ("allocated", "drain"),
    "alloc": ("allocated", None),
}
#: sinfo-style state suffixes
_STATE_SUFFIXES = {
    "*": "not_responding",
    "~": "powered_down",
    "#": "powering_up",
    "%": "powering_down",
    "!": "power_down",
    "$": "maint",
    "@": "reboot_requested",
    "^": "reboot_issued",
    "-": "planned",
}


@dataclass(frozen=True)
class PartitionInfo:
    """One partition as ``scontrol show partition`` reports it. Memory in MB."""

    name: str
    #: UP, DOWN, DRAIN or INACTIVE
    state: str
    default: bool
    #: None: UNLIMITED
    max_time_minutes: int | None
    #: None: not set (the job gets MaxTime)
    default_time_minutes: int | None
    #: None: UNLIMITED
    max_nodes: int | None
    nodes: tuple[str, ...]
    max_cpus_per_node: int | None = None
    max_mem_per_node_mb: int | None = None
    max_mem_per_cpu_mb: int | None = None
    def_mem_per_node_mb: int | None = None
    def_mem_per_cpu_mb: int | None = None
    hidden: bool = False
    root_only: bool = False
    #: None: ALL
    allow_groups: tuple[str, ...] | None = None
    allow_accounts: tuple[str, ...] | None = None
    allow_qos: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Association:
    """One of a user's Slurm associations (sacctmgr)."""

    account: str
    qos: tuple[str, ...]
    default_qos: str | None
    #: None: the association holds for every partition
    partition: str | None


# ---------------------------------------------------------------- key=value records

_KEY_RE = re.compile(r"(?:^|(?<=\s))([A-Za-z][A-Za-z0-9_]*)=")

#: Keys whose values are free text (may hold spaces and even ``word=``).
_FREE_TEXT_KEYS = frozenset({"OS", "Reason", "Comment", "Extra"})

#: Keys Slurm prints in node / partition records (22.05 as recorded here, plus keys seen in
#: other versions' output). After a free-text key only these start a new field; anywhere
#: else any ``Key=`` after whitespace does.
NODE_KEYS = frozenset(
    """NodeName Arch CoresPerSocket CPUAlloc CPUEfctv CPUErr CPUTot CPULoad AvailableFeatures
    ActiveFeatures Gres GresDrain GresUsed NodeAddr NodeHostName Port Version OS RealMemory
    AllocMem FreeMem Sockets Boards CoreSpecCount CPUSpecList MemSpecLimit State ThreadsPerCore
    TmpDisk Weight Owner MCS_label Partitions BootTime SlurmdStartTime LastBusyTime
    ResumeAfterTime CfgTRES AllocTRES CapWatts CurrentWatts AveWatts LowestJoules ConsumedJoules
    ExtSensorsJoules ExtSensorsWatts ExtSensorsTemp Reason Comment Extra NextState InstanceId
    InstanceType Topology""".split()
)
PARTITION_KEYS = frozenset(
    """PartitionName AllowGroups AllowAccounts AllowQos AllocNodes Default QoS DefaultTime
    DisableRootJobs ExclusiveUser ExclusiveTopo GraceTime Hidden MaxNodes MaxTime MinNodes LLN
    MaxCPUsPerNode MaxCPUsPerSocket Nodes PriorityJobFactor PriorityTier RootOnly ReqResv
    OverSubscribe OverTimeLimit PreemptMode State TotalCPUs TotalNodes SelectTypeParameters
    JobDefaults DefMemPerNode DefMemPerCPU MaxMemPerNode MaxMemPerCPU TRES TRESBillingWeights
    DenyAccounts DenyQos Alternate CpuBind ResumeTimeout SuspendTime SuspendTimeout PowerDownOnIdle
    Comment""".split()
)


def parse_record(line: str, first_key: str, known: frozenset[str]) -> dict[str, str]:
    """Split one ``--oneliner`` record into its ``Key=value`` fields.

    A field ends where whitespace and the next ``Key=`` begin; inside a free-text
    value (``OS=``, ``Reason=``, ...) only a key from ``known`` that has not been
    seen yet ends it, so a reason such as ``bad dimm, see x=1`` or ``was State=DOWN``
    stays whole.
    """
    matches = list(_KEY_RE.finditer(line))
    if not matches or matches[0].start() != 0 or matches[0].group(1) != first_key:
        raise ParseError(f"expected a record starting with {first_key}=, got {line[:80]!r}")
    fields: dict[str, str] = {}
    key, start = first_key, matches[0].end()

    def store(key: str, value: str) -> None:
        if key in fields:
            raise ParseError(f"{key}= appears twice in {line[:80]!r}")
        fields[key] = value.strip()

    for match in matches[1:]:
        if key in _FREE_TEXT_KEYS and (match.group(1) not in known or match.group(1) in fields):
            continue
        store(key, line[start : match.start()])
        key, start = match.group(1), match.end()
    store(key, line[start:])
    return fields


def _records(output: str, first_key: str, known: frozenset[str]) -> list[dict[str, str]]:
    lines = [line for line in output.splitlines() if line.strip()]
    if len(lines) == 1 and lines[0].strip() in _NO_RECORDS:
        return []
    return [parse_record(line, first_key, known) for line in lines]


def _need(fields: Mapping[str, str], key: str) -> str:
    try:
        return fields[key]
    except KeyError:
        name = next(iter(fields.values()), "?")
        raise ParseError(f"{key}= missing from the record of {name}") from None


def _int(fields: Mapping[str, str], key: str) -> int:
    value = _need(fields, key)
    if not value.isdigit():
        raise ParseError(f"{key}={value!r} is not a whole number")
    return int(value)


def _limit(fields: Mapping[str, str], key: str, *, required: bool = False) -> int | None:
    """A count or size that may be UNLIMITED (-> None); absent -> None unless required."""
    if key not in fields and not required:
        return None
    value = _need(fields, key)
    if value.upper() in _UNLIMITED or value.upper() in _NOT_SET:
        return None
    if not value.isdigit():
        raise ParseError(f"{key}={value!r} is neither a number nor UNLIMITED")
    return int(value)


_TIME_RE = re.compile(r"(?:([0-9]+)-)?([0-9]+):([0-9]{2}):([0-9]{2})")


def parse_time_minutes(value: str) -> int | None:
    """Slurm's ``[D-]HH:MM:SS`` -> whole minutes (rounded down); UNLIMITED/NONE -> None."""
    text = value.strip()
    if text.upper() in _UNLIMITED or text.upper() in _NOT_SET:
        return None
    match = _TIME_RE.fullmatch(text)
    if not match:
        raise ParseError(f"{value!r} is not a Slurm time ([D-]HH:MM:SS or UNLIMITED)")
    days, hours, minutes, _ = (int(part or 0) for part in match.groups())
    return days * 24 * 60 + hours * 60 + minutes


def _names(value: str) -> tuple[str, ...] | None:
    """``ALL`` -> None (everyone); ``a,b`` -> ("a", "b")."""
    if value.upper() == "ALL":
        return None
    return tuple(part for part in value.split(",") if part and part not in _NOT_SET)


def _yes(fields: Mapping[str, str], key: str) -> bool:
    value = fields.get(key, "NO").upper()
    if value not in ("YES", "NO"):
        raise ParseError(f"{key}={value!r} is neither YES nor NO")
    return value == "YES"


# ---------------------------------------------------------------- GPUs


def _split_gres(value: str) -> list[str]:
    """Split a GRES list on commas outside parentheses (``IDX:0,2-3`` holds commas)."""
    return [item.strip() for item in split_outside(value, "(", ")") if item.strip()]


def parse_gres_gpus(value: str) -> dict[str, int]:
    """GPUs in a ``Gres=``/``GresUsed=`` value: ``gpu:a100:4(S:0-1),mps:100`` -> {"a100": 4}.

    Untyped GPUs (``gpu:2``) count under :data:`UNTYPED`; other GRES are ignored.
    """
    if value.strip() in _NOT_SET:
        return {}
    gpus: dict[str, int] = {}
    for item in _split_gres(value):
        parts = item.split("(", 1)[0].split(":")
        if parts[0] != "gpu":
            continue
        parts = [part for part in parts[1:] if part != "no_consume"]
        if len(parts) == 1:
            kind, count = UNTYPED, parts[0]
        elif len(parts) == 2:
            kind, count = parts
        else:
            raise ParseError(f"unexpected GPU entry {item!r} in {value!r}")
        if not count.isdigit():
            raise ParseError(f"GPU count {count!r} in {value!r} is not a whole number")
        gpus[kind] = gpus.get(kind, 0) + int(count)
    return gpus


def parse_tres_gpus(value: str) -> dict[str, int] | None:
    """GPUs in a TRES list (``cpu=2,gres/gpu=2,gres/gpu:fake=2``) -> {"fake": 2}.

    Typed entries win over the untyped total; None when the list names no GPUs.
    """
    typed: dict[str, int] = {}
    untyped = None
    for item in value.split(","):
        name, _, count = item.partition("=")
        if name != "gres/gpu" and not name.startswith("gres/gpu:"):
            continue
        if not count.isdigit():
            raise ParseError(f"GPU count in {item!r} is not a whole number")
        if name == "gres/gpu":
            untyped = int(count)
        else:
            typed[name.split(":", 1)[1]] = int(count)
    if typed:
        return typed
    return None if untyped is None else {UNTYPED: untyped}


def _align_gpus(alloc: Mapping[str, int] | None, total: Mapping[str, int]) -> dict | None:
    """Allocated GPUs keyed like the node's total, or None when they cannot be matched."""
    if alloc is None:
        return None
    alloc = {kind: count for kind, count in alloc.items() if count}
    if set(alloc) <= set(total):
        return alloc
    if set(alloc) == {UNTYPED} and len(total) == 1:  # TRES counts GPUs without their type
        return {next(iter(total)): alloc[UNTYPED]}
    if set(total) == {UNTYPED}:
        return {UNTYPED: sum(alloc.values())}
    return None


# ---------------------------------------------------------------- parsers


def parse_node_state(value: str) -> tuple[str, frozenset[str]]:
    """``IDLE+DRAIN`` -> ("idle", {"drain"}); ``DOWN*`` -> ("down", {"not_responding"})."""
    words = value.strip().split("+")
    base = words[0]
    flags = {word.lower() for word in words[1:] if word}
    while base and base[-1] in _STATE_SUFFIXES:
        flags.add(_STATE_SUFFIXES[base[-1]])
        base = base[:-1]
    base = base.lower()
    if base in _COMPOUND_STATES:
        base, flag = _COMPOUND_STATES[base]
        if flag:
            flags.add(flag)
    if base not in _BASE_STATES:
        raise ParseError(f"unknown node state {value!r}")
    flags = {"drain" if flag in ("drained", "draining") else flag for flag in flags}
    return base, frozenset(flags)


def parse_node(fields: Mapping[str, str]) -> NodeInfo:
    name = _need(fields, "NodeName")
    state, flags = parse_node_state(_need(fields, "State"))
    cpus_total = _int(fields, "CPUTot")
    gpus_total = parse_gres_gpus(fields.get("Gres", ""))
    if not gpus_total:
        gpus_total = parse_tres_gpus(fields.get("CfgTRES", "")) or {}
    if "GresUsed" in fields:
        alloc = parse_gres_gpus(fields["GresUsed"])
    elif parse_tres_gpus(fields.get("CfgTRES", "")) is not None:
        alloc = parse_tres_gpus(fields.get("AllocTRES", "")) or {}
    else:  # without --details and without GPUs as a TRES nobody says what is in use
        alloc = None if gpus_total else {}
    reason = fields.get("Reason", "")
    return NodeInfo(
        name=name,
        state=state,
        flags=flags,
        cpus_total=cpus_total,
        cpus_alloc=_int(fields, "CPUAlloc"),
        cpus_effective=_int(fields, "CPUEfctv") if "CPUEfctv" in fields else cpus_total,
        memory_mb=_int(fields, "RealMemory"),
        memory_alloc_mb=_int(fields, "AllocMem"),
        gpus_total=gpus_total,
        gpus_alloc=_align_gpus(alloc, gpus_total),
        partitions=_names(fields.get("Partitions", "")) or (),
        reason=None if reason in _NOT_SET else reason,
    )


def parse_nodes(output: str) -> list[NodeInfo]:
    """Parse ``scontrol --all --details --oneliner show node``."""
    nodes = [parse_node(fields) for fields in _records(output, "NodeName", NODE_KEYS)]
    _check_unique("node", [node.name for node in nodes])
    return nodes


def parse_partition(fields: Mapping[str, str]) -> PartitionInfo:
    name = _need(fields, "PartitionName")
    try:
        nodes = tuple(expand_hostlist(_need(fields, "Nodes")))
    except HostlistError as e:
        raise ParseError(f"partition {name}: {e}") from None
    if "TotalNodes" in fields and _int(fields, "TotalNodes") != len(nodes):
        raise ParseError(
            f"partition {name}: Nodes={fields['Nodes']} names {len(nodes)} node(s) "
            f"but TotalNodes={fields['TotalNodes']}"
        )
    state = _need(fields, "State").upper()
    if state not in ("UP", "DOWN", "DRAIN", "INACTIVE"):
        raise ParseError(f"partition {name}: unknown state {state!r}")
    return PartitionInfo(
        name=name,
        state=state,
        default=_yes(fields, "Default"),
        max_time_minutes=parse_time_minutes(_need(fields, "MaxTime")),
        default_time_minutes=parse_time_minutes(fields.get("DefaultTime", "NONE")),
        max_nodes=_limit(fields, "MaxNodes", required=True),
        nodes=nodes,
        max_cpus_per_node=_limit(fields, "MaxCPUsPerNode"),
        max_mem_per_node_mb=_limit(fields, "MaxMemPerNode"),
        max_mem_per_cpu_mb=_limit(fields, "MaxMemPerCPU"),
        def_mem_per_node_mb=_limit(fields, "DefMemPerNode"),
        def_mem_per_cpu_mb=_limit(fields, "DefMemPerCPU"),
        hidden=_yes(fields, "Hidden"),
        root_only=_yes(fields, "RootOnly"),
        allow_groups=_names(fields.get("AllowGroups", "ALL")),
        allow_accounts=_names(fields.get("AllowAccounts", "ALL")),
        allow_qos=_names(fields.get("AllowQos", "ALL")),
    )


def parse_partitions(output: str) -> list[PartitionInfo]:
    """Parse ``scontrol --all --oneliner show partition``."""
    partitions = [
        parse_partition(fields) for fields in _records(output, "PartitionName", PARTITION_KEYS)
    ]
    _check_unique("partition", [partition.name for partition in partitions])
    return partitions


def _check_unique(what: str, names: list[str]) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise ParseError(f"{what} {name} reported twice")
        seen.add(name)


def check_user_name(username: object) -> str:
    """``username`` if it is one plain name accounting can be asked about, else ValueError."""
    if not isinstance(username, str) or not _USERNAME_RE.fullmatch(username):
        raise ValueError(f"{str(username)[:40]!r} is not a user name sacctmgr can be asked about")
    return username


def show_assoc_args(where: Iterable[str], fields: Iterable[str]) -> list[str]:
    """``sacctmgr --noheader --parsable2 show assoc where WHERE... format=FIELDS`` (the
    conditions checked by the caller)."""
    return [
        "--noheader",
        "--parsable2",
        "show",
        "assoc",
        "where",
        *where,
        f"format={','.join(fields)}",
    ]


def sacctmgr_args(username: str) -> list[str]:
    """Arguments of ``sacctmgr`` for ``username``'s associations (checked: one plain name)."""
    return show_assoc_args([f"user={check_user_name(username)}"], SACCTMGR_FIELDS)


def parse_associations(output: str, username: str) -> list[Association]:
    """Parse ``sacctmgr --noheader --parsable2 ... format=user,account,qos,defaultqos,partition``.

    Every row must belong to ``username`` (Slurm may store names lowercased).
    """
    associations = []
    for line in output.splitlines():
        if not line.strip():
            continue
        parts = [part.strip() for part in line.split("|")]
        if len(parts) != len(SACCTMGR_FIELDS):
            raise ParseError(
                f"expected {len(SACCTMGR_FIELDS)} fields separated by '|', got {len(parts)}: "
                f"{line[:80]!r}"
            )
        user, account, qos, default_qos, partition = parts
        if user.lower() != username.lower():
            raise ParseError(f"sacctmgr answered about user {user!r}, not {username!r}")
        if not account:
            raise ParseError(f"association without an account: {line[:80]!r}")
        associations.append(
            Association(
                account=account,
                qos=tuple(name for name in qos.split(",") if name),
                default_qos=default_qos or None,
                partition=partition or None,
            )
        )
    return associations


def association_choices(
    associations: Iterable[Association], partition: str | None = None
) -> tuple[list[str], list[str]]:
    """The accounts and QOS a user may choose (for ``partition``, if given), in Slurm's order."""
    accounts: list[str] = []
    qos: list[str] = []
    for association in associations:
        if partition is not None and association.partition not in (None, partition):
            continue
        if association.account not in accounts:
            accounts.append(association.account)
        qos.extend(name for name in association.qos if name not in qos)
    return accounts, qos


def parse_sdiag_queue(output: str) -> int:
    """The jobs in slurmctld's queue, pending plus running, from ``sdiag``'s output.

    slurmctld refreshes these counts periodically (``Job states ts``), so they may be up to
    a minute old: an estimate, for :mod:`hpcspawner.slurm.querycost`. Raises
    :class:`ParseError` unless each count appears exactly once.
    """
    counts: dict[str, int] = {}
    for match in _SDIAG_QUEUE_RE.finditer(output):
        if match.group(1) in counts:
            raise ParseError(f"sdiag printed 'Jobs {match.group(1)}:' twice")
        counts[match.group(1)] = int(match.group(2))
    missing = [name for name in ("pending", "running") if name not in counts]
    if missing:
        raise ParseError(f"sdiag printed no 'Jobs {missing[0]}:' count: {output.strip()[:120]!r}")
    return counts["pending"] + counts["running"]


def parsable_fields(
    line: str, names: tuple[str, ...], command: str, *, free_last: bool = False
) -> dict[str, str]:
    """One line of ``--parsable2`` output (fields separated by ``|``) as name -> field.
    ``free_last``: the last field is free text (a job's comment) that may hold ``|``.
    Raises :class:`ParseError` unless the line has one field per name."""
    parts = line.split("|", len(names) - 1 if free_last else -1)
    if len(parts) != len(names):
        raise ParseError(
            f"expected {len(names)} {command} fields separated by '|', "
            f"got {len(parts)}: {line[:200]!r}"
        )
    return dict(zip(names, parts, strict=True))
