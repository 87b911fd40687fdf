"""slurmrestd's ``openapi/v0.0.38`` (Slurm 22.05): request bodies and answers (pure, no I/O).

What :class:`~hpcspawner.slurm.rest.RESTSlurmDriver` sends and reads, for this one API
version; the driver picks the module by the version the daemon offers (``GET /openapi/v3``).
Checked against answers recorded from a real slurmrestd 22.05.8
(``tests/unit/data/rest/``) and against the plugin's source (``src/plugins/openapi/v0.0.38``).

The version's quirks, handled here:

- **#SBATCH lines are not read.** slurmrestd 22.05 gives the script to slurmctld as it
  is; only ``sbatch`` reads ``#SBATCH`` lines (the recording's ``--comment`` line left the
  job's comment empty). :func:`job_properties` therefore reads the script's directives the
  way ``sbatch`` does and sends them as the ``job`` object's keys, which slurmrestd
  feeds to the same option parser as sbatch's command line (``slurm_process_option_data``):
  values stay sbatch's strings (``"1:00:00"``, ``"4096M"``). An option this table does not
  know is refused by name, never dropped.
- **The environment is an object** (``{"NAME": "value"}``), and required: without it the
  submission fails with 400 ``environment must be set``.
- **Errors** are a list of ``{"error_number"|"error_code", "error", "description"?}``;
  an invalid, expired or mismatched token is HTTP 500 with error -1 "Unspecified error",
  not 401 (:func:`token_rejected`); an unknown job is error 2017 (:data:`INVALID_JOB_ID`).
- **Numbers are plain integers**; "unlimited" is -1 or Slurm's ``INFINITE``
  (4294967295) and "not set" is null or ``NO_VAL`` (4294967294): :func:`_count`.

A module for v0.0.39 and later goes beside this one and exports the same names. From
v0.0.40 a number is an object ``{"set": bool, "infinite": bool, "number": int}``: that
module's ``_count`` reads ``None`` when ``set`` is false, "unlimited" when ``infinite``,
else ``number``; times become such objects too, and ``job_state`` a list of words
(the first is the base state). Its parsers then build the same records.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from datetime import datetime

from .accounting import (
    AccountLimits,
    AccountNode,
    JobLimits,
    QOSInfo,
    UserAccounting,
    by_account,
    by_account_name,
    limits_from_tres,
)
from .hostlist import HostlistError, expand_hostlist
from .jobstate import JobInfo
from .records import Association, NodeInfo, ParseError, PartitionInfo, parse_node

VERSION = "v0.0.38"
PREFIX = f"/slurm/{VERSION}"
DB_PREFIX = f"/slurmdb/{VERSION}"

SUBMIT_PATH = f"{PREFIX}/job/submit"
JOBS_PATH = f"{PREFIX}/jobs"
PARTITIONS_PATH = f"{PREFIX}/partitions"
NODES_PATH = f"{PREFIX}/nodes"
DIAG_PATH = f"{PREFIX}/diag"
ASSOCIATIONS_PATH = f"{DB_PREFIX}/associations"
QOS_PATH = f"{DB_PREFIX}/qos"

#: What the daemon's spec must list for the driver to use this version.
REQUIRED_PATHS = (
    SUBMIT_PATH,
    JOBS_PATH,
    f"{PREFIX}/job/{{job_id}}",
    PARTITIONS_PATH,
    NODES_PATH,
)

#: Slurm's ESLURM_INVALID_JOB_ID: "Invalid job id specified" (the job is not known).
INVALID_JOB_ID = 2017

#: Slurm's NO_VAL and INFINITE (32 bit): "not set" and "unlimited".
NO_VAL = 0xFFFFFFFE
INFINITE = 0xFFFFFFFF


def job_path(job_id: str) -> str:
    if not str(job_id).isdigit():
        raise ValueError(f"{str(job_id)[:40]!r} is not a job id")
    return f"{PREFIX}/job/{job_id}"


def db_job_path(job_id: str) -> str:
    """``GET`` it for the job's accounting record (slurmdbd)."""
    if not str(job_id).isdigit():
        raise ValueError(f"{str(job_id)[:40]!r} is not a job id")
    return f"{DB_PREFIX}/job/{job_id}"


def offered(paths: Iterable[str]) -> bool:
    """True when a spec's ``paths`` have everything this module uses."""
    have = {path.rstrip("/") for path in paths}
    return all(path in have for path in REQUIRED_PATHS)


def has_diag(paths: Iterable[str]) -> bool:
    """True when the daemon serves ``GET .../diag`` (slurmctld's statistics: the queue's size)."""
    return DIAG_PATH in {path.rstrip("/") for path in paths}


def user_path(username: str) -> str:
    """``GET /slurmdb/v0.0.38/user/NAME`` (the name checked by the caller: one plain name)."""
    return f"{DB_PREFIX}/user/{username}"


def has_accounting(paths: Iterable[str]) -> bool:
    """True when the daemon serves ``dbv0.0.38`` (slurmdbd) associations."""
    return ASSOCIATIONS_PATH in {path.rstrip("/") for path in paths}


# ---------------------------------------------------------------- the submission

#: sbatch's long options -> the ``job`` object's key (slurmrestd's ``job_params``).
OPTIONS = {
    "account": "account",
    "begin": "begin_time",
    "chdir": "current_working_directory",
    "comment": "comment",
    "constraint": "constraints",
    "cpus-per-gpu": "cpus_per_gpu",
    "cpus-per-task": "cpus_per_task",
    "dependency": "dependency",
    "error": "standard_error",
    "exclude": "exclude_nodes",
    "exclusive": "exclusive",
    "gpus": "gpus",
    "gpus-per-node": "gpus_per_node",
    "gpus-per-task": "gpus_per_task",
    "gres": "gres",
    "hint": "cpu_binding_hint",
    "input": "standard_input",
    "job-name": "name",
    "licenses": "licenses",
    "mail-type": "mail_type",
    "mail-user": "mail_user",
    "mem": "memory_per_node",
    "mem-per-cpu": "memory_per_cpu",
    "mem-per-gpu": "memory_per_gpu",
    "nodelist": "nodelist",
    "nodes": "nodes",
    "ntasks": "tasks",
    "ntasks-per-node": "tasks_per_node",
    "output": "standard_output",
    "partition": "partition",
    "qos": "qos",
    "reservation": "reservation",
    "signal": "signal",
    "time": "time_limit",
    "time-min": "time_minimum",
    "tmp": "temporary_disk_per_node",
    "wckey": "wckey",
}

#: Options without a value -> (key, value).
FLAGS = {"no-requeue": ("no_requeue", True), "requeue": ("requeue", True)}

#: Options whose value is optional -> the value sent without one (``--exclusive`` is
#: ``"true"`` in v0.0.38's enum ``user|mcs|true|false``).
OPTIONAL_VALUE = {"exclusive": "true"}

#: sbatch's short options -> long.
SHORT = {
    "A": "account",
    "C": "constraint",
    "D": "chdir",
    "G": "gpus",
    "J": "job-name",
    "N": "nodes",
    "c": "cpus-per-task",
    "e": "error",
    "i": "input",
    "n": "ntasks",
    "o": "output",
    "p": "partition",
    "q": "qos",
    "t": "time",
    "w": "nodelist",
    "x": "exclude",
}


def script_directives(script: str) -> list[str]:
    """The arguments of a script's ``#SBATCH`` lines, as ``sbatch`` reads them: from the
    top, skipping blank and comment lines, up to the first command."""
    args: list[str] = []
    for line in script.splitlines():
        text = line.rstrip()
        # at the start of the line, as sbatch wants it ("  #SBATCH" is a plain comment)
        if text.startswith("#SBATCH") and (len(text) == 7 or text[7].isspace()):
            try:
                args.extend(shlex.split(text[7:], comments=True))
            except ValueError as e:
                raise ValueError(f"cannot read the directive {text[:80]!r}: {e}") from None
        elif text.strip() and not text.lstrip().startswith("#"):
            break
    return args


def _options(args: list[str]) -> list[tuple[str, str | None]]:
    """``["--mem=4G", "-p", "gpu", "--no-requeue"]`` -> ``[("mem", "4G"), ("partition",
    "gpu"), ("no-requeue", None)]``; an option not in the tables raises ValueError."""
    found, i = [], 0
    while i < len(args):
        arg = args[i]
        i += 1
        value: str | None = None
        if arg.startswith("--"):
            name, eq, rest = arg[2:].partition("=")
            value = rest if eq else None
        elif arg.startswith("-") and len(arg) >= 2 and arg[1] in SHORT:
            name, value = SHORT[arg[1]], (arg[2:] or None)
        else:
            raise ValueError(f"#SBATCH {arg}: not an option slurmrestd's driver knows")
        if name == "export":
            if value != "ALL":
                raise ValueError(
                    f"#SBATCH --export={value}: through slurmrestd the job's environment is "
                    "the one the hub sends, whole (only --export=ALL fits)"
                )
            continue
        if name in FLAGS:
            if value is not None:
                raise ValueError(f"#SBATCH --{name} takes no value")
            found.append((name, None))
            continue
        if name in OPTIONAL_VALUE:
            found.append((name, OPTIONAL_VALUE[name] if value is None else value))
            continue
        if name not in OPTIONS:
            raise ValueError(
                f"#SBATCH --{name}: not an option the slurmrestd driver ({VERSION}) can "
                "pass on (slurmrestd does not read #SBATCH lines itself)"
            )
        if value is None:
            if i >= len(args):
                raise ValueError(f"#SBATCH --{name} needs a value")
            value = args[i]
            i += 1
        found.append((name, value))
    return found


def job_properties(script: str, env: Mapping[str, str]) -> dict:
    """The ``job`` object of a submission: the script's directives and the environment.

    Raises ValueError naming a directive that cannot be passed on, a missing working
    directory (slurmrestd has no submit directory to default to) or an empty environment.
    """
    job: dict = {}
    for name, value in _options(script_directives(script)):
        key, sent = FLAGS[name] if value is None else (OPTIONS[name], value)
        job[key] = sent
    if "current_working_directory" not in job:
        raise ValueError(
            "the batch script has no #SBATCH --chdir: slurmrestd needs the job's working directory"
        )
    if not env:
        raise ValueError("the job's environment is empty: slurmrestd refuses such a job")
    for name, value in env.items():
        if not isinstance(name, str) or not name or "=" in name or "\0" in name:
            raise ValueError(f"{str(name)[:60]!r} is not an environment variable name")
        if not isinstance(value, str) or "\0" in value:
            raise ValueError(f"the value of {name} is not text without NUL characters")
    job["environment"] = dict(env)
    return job


def submit_body(script: str, env: Mapping[str, str]) -> dict:
    """The body of ``POST .../job/submit``."""
    return {"script": script, "job": job_properties(script, env)}


# ---------------------------------------------------------------- answers


def errors_of(body: object) -> list[tuple[int | None, str]]:
    """(number, text) of each error in an answer; text is Slurm's words."""
    if not isinstance(body, dict):
        return []
    found = []
    for error in body.get("errors") or []:
        if not isinstance(error, dict):
            continue
        number = next(
            (error[key] for key in ("error_number", "error_code", "errno") if key in error),
            None,
        )
        words = [str(error[key]) for key in ("error", "description") if error.get(key)]
        found.append((number if isinstance(number, int) else None, ": ".join(words)))
    return found


def token_rejected(status: int, body: object) -> bool:
    """slurmrestd's answer to an invalid, expired or mismatched token: HTTP 500 whose
    errors are all -1 "Unspecified error" (HTTP 401 is a request without a token)."""
    errors = errors_of(body)
    return status == 500 and bool(errors) and all(number == -1 for number, _ in errors)


def job_unknown(body: object) -> bool:
    """The answer says the job is not known to Slurm (error 2017)."""
    return any(number == INVALID_JOB_ID for number, _ in errors_of(body))


def submitted_job_id(body: object) -> str:
    job_id = body.get("job_id") if isinstance(body, dict) else None
    if not isinstance(job_id, int) or isinstance(job_id, bool) or job_id <= 0:
        raise ParseError(f"the submission's answer has no job id: {str(body)[:200]}")
    return str(job_id)


def _list(body: object, key: str) -> list[dict]:
    items = body.get(key) if isinstance(body, dict) else None
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ParseError(f"the answer has no list of {key}: {str(body)[:200]}")
    return items


def _count(value: object) -> int | None:
    """A count or size: None for "not set" (null, NO_VAL) and "unlimited" (-1, INFINITE)."""
    if value is None or isinstance(value, bool):
        return None
    if not isinstance(value, int):
        raise ParseError(f"{value!r} is not a whole number")
    if value < 0 or value >= NO_VAL:
        return None
    return value


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _time(value: object) -> datetime | None:
    """An epoch time as the naive local time ``squeue`` prints; 0 -> None."""
    seconds = _count(value)
    return datetime.fromtimestamp(seconds) if seconds else None


def format_minutes(value: object) -> str | None:
    """A time limit in minutes as ``squeue %l`` prints it: ``30:00``, ``1:00:00``,
    ``1-00:00:00``, ``UNLIMITED``."""
    if value == INFINITE or value == -1:
        return "UNLIMITED"
    minutes = _count(value)
    if minutes is None:
        return None
    days, rest = divmod(minutes * 60, 86400)
    hours, rest = divmod(rest, 3600)
    mins, secs = divmod(rest, 60)
    if days:
        return f"{days}-{hours:02}:{mins:02}:{secs:02}"
    if hours:
        return f"{hours}:{mins:02}:{secs:02}"
    return f"{mins}:{secs:02}"


def _none_word(value: object) -> str | None:
    """Like squeue's fields: "", "None", "N/A", "(null)" -> None."""
    text = _text(value)
    return None if text is None or text.strip() in ("None", "N/A", "n/a", "(null)") else text


def parse_job(job: Mapping) -> JobInfo:
    """One job of ``GET .../jobs`` as :func:`~hpcspawner.slurm.jobstate.parse_squeue`
    reads it from ``squeue``. ``time_used`` stays None: v0.0.38 does not report it."""
    job_id = job.get("job_id")
    state = job.get("job_state")
    if not isinstance(job_id, int) or not isinstance(state, str) or not state.strip():
        raise ParseError(f"a job without id or state: {str(job)[:200]}")
    nodes = job.get("node_count")
    return JobInfo(
        job_id=str(job_id),
        state=state.strip(),
        reason=_none_word(job.get("state_reason")),
        batch_host=_none_word(job.get("batch_host")),
        node_list=_none_word(job.get("nodes")),
        start_time=_time(job.get("start_time")),
        partition=_none_word(job.get("partition")),
        user=_none_word(job.get("user_name")),
        time_limit=format_minutes(job.get("time_limit")),
        time_used=None,
        num_nodes=nodes if isinstance(nodes, int) and not isinstance(nodes, bool) else None,
    )


def parse_jobs(body: object) -> dict[str, JobInfo]:
    """Every job of ``GET .../jobs``: job id -> record."""
    jobs = {}
    for job in _list(body, "jobs"):
        info = parse_job(job)
        jobs[info.job_id] = info
    return jobs


def parse_job_lookup(body: object, job_id: str) -> JobInfo | None:
    """``GET .../job/{job_id}`` (HTTP 200): the job's record, or None when the answer holds
    none (Slurm answered without it, as a listing without it: gone)."""
    return parse_jobs(body).get(str(job_id))


def parse_diag(body: object) -> int:
    """``GET .../diag``: the jobs in slurmctld's queue, pending plus running (as ``sdiag``
    prints them, counted at ``job_states_ts``)."""
    statistics = body.get("statistics") if isinstance(body, dict) else None
    if not isinstance(statistics, dict):
        raise ParseError(f"the answer has no statistics: {str(body)[:200]}")
    counts = [statistics.get(key) for key in ("jobs_pending", "jobs_running")]
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts):
        raise ParseError(f"the statistics have no job counts: {str(statistics)[:200]}")
    return sum(counts)


def comment_matches(body: object, username: str, comment: str) -> list[str]:
    """Ids of ``username``'s jobs whose comment is exactly ``comment``."""
    return [
        str(job["job_id"])
        for job in _list(body, "jobs")
        if job.get("user_name") == username and job.get("comment") == comment
    ]


def _names(value: object) -> tuple[str, ...] | None:
    """``""`` (ALL) -> None; ``"a,b"`` -> ("a", "b")."""
    text = _text(value)
    if text is None or text.upper() == "ALL":
        return None
    return tuple(part for part in text.split(",") if part)


def parse_partition(partition: Mapping) -> PartitionInfo:
    """One partition of ``GET .../partitions`` as ``scontrol show partition`` gives it."""
    name = _text(partition.get("name"))
    if name is None:
        raise ParseError(f"a partition without a name: {str(partition)[:200]}")
    try:
        nodes = tuple(expand_hostlist(partition.get("nodes") or ""))
    except HostlistError as e:
        raise ParseError(f"partition {name}: {e}") from None
    total = partition.get("total_nodes")
    if isinstance(total, int) and total != len(nodes):
        raise ParseError(f"partition {name}: nodes names {len(nodes)}, total_nodes is {total}")
    state = str(partition.get("state", "")).upper()
    if state not in ("UP", "DOWN", "DRAIN", "INACTIVE"):
        raise ParseError(f"partition {name}: unknown state {state!r}")
    flags = {str(flag).lower() for flag in partition.get("flags") or []}
    return PartitionInfo(
        name=name,
        state=state,
        default="default" in flags,
        max_time_minutes=_count(partition.get("max_time_limit")),
        default_time_minutes=_count(partition.get("default_time_limit")),
        max_nodes=_count(partition.get("maximum_nodes_per_job")),
        nodes=nodes,
        max_cpus_per_node=_count(partition.get("maximum_cpus_per_node")),
        max_mem_per_node_mb=_count(partition.get("maximum_memory_per_node")),
        max_mem_per_cpu_mb=_count(partition.get("maximum_memory_per_cpu")),
        def_mem_per_node_mb=_count(partition.get("default_memory_per_node")),
        def_mem_per_cpu_mb=_count(partition.get("default_memory_per_cpu")),
        hidden="hidden" in flags,
        root_only="root_only" in flags,
        allow_groups=_names(partition.get("allowed_groups")),
        allow_accounts=_names(partition.get("allowed_accounts")),
        allow_qos=_names(partition.get("allowed_qos")),
    )


def parse_partitions(body: object) -> list[PartitionInfo]:
    return [parse_partition(partition) for partition in _list(body, "partitions")]


def parse_node_entry(node: Mapping) -> NodeInfo:
    """One node of ``GET .../nodes``, read by :func:`~hpcspawner.slurm.records.parse_node`
    as if ``scontrol --details`` had printed it (``gres_used`` is its ``GresUsed``), so
    both drivers' records follow one set of rules. v0.0.38 has no effective CPU count:
    ``cpus`` stands for it (as ``scontrol`` output without ``CPUEfctv``)."""
    state = _text(node.get("state"))
    if state is None:
        raise ParseError(f"a node without a state: {str(node)[:200]}")
    words = [state.upper(), *(str(flag).upper() for flag in node.get("state_flags") or [])]

    def number(key: str) -> str:
        value = node.get(key)
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else ""

    fields = {
        "NodeName": str(node.get("name") or ""),
        "State": "+".join(words),
        "CPUTot": number("cpus"),
        "CPUAlloc": number("alloc_cpus"),
        "RealMemory": number("real_memory"),
        "AllocMem": number("alloc_memory"),
        "Gres": str(node.get("gres") or ""),
        "GresUsed": str(node.get("gres_used") or ""),
        "Partitions": ",".join(str(p) for p in node.get("partitions") or []),
        "Reason": str(node.get("reason") or ""),
    }
    if not fields["NodeName"]:
        raise ParseError(f"a node without a name: {str(node)[:200]}")
    return parse_node(fields)


def parse_nodes(body: object) -> list[NodeInfo]:
    return [parse_node_entry(node) for node in _list(body, "nodes")]


def parse_associations(body: object, username: str) -> list[Association]:
    """``GET /slurmdb/v0.0.38/associations?user=NAME``: the user's associations
    (``qos`` a list of names, ``default.qos``, ``partition`` empty for all)."""
    associations = []
    for entry in _list(body, "associations"):
        user = str(entry.get("user") or "")
        if user.lower() != username.lower():
            raise ParseError(f"slurmrestd answered about user {user!r}, not {username!r}")
        account = _text(entry.get("account"))
        if account is None:
            raise ParseError(f"association without an account: {str(entry)[:200]}")
        qos = entry.get("qos") or []
        if not isinstance(qos, list):
            raise ParseError(f"association qos is not a list: {qos!r:.100}")
        default = entry.get("default") if isinstance(entry.get("default"), dict) else {}
        associations.append(
            Association(
                account=account,
                qos=tuple(str(name) for name in qos if name),
                default_qos=_text(default.get("qos")),
                partition=_text(entry.get("partition")),
            )
        )
    return associations


# ---------------------------------------------------------------- accounting's limits


def _tres_limits(items: object, runtime_minutes: int | None = None) -> JobLimits:
    """A list of ``{"type": "cpu"|"mem"|"gres"|"node", "name": ..., "count": N}`` (memory
    in MB) as :class:`~hpcspawner.slurm.accounting.JobLimits`; GPUs are the untyped
    ``gres``/``gpu``, as :func:`hpcspawner.slurm.accounting.limits_from_tres` reads them."""
    if items is None:
        items = []
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ParseError(f"a TRES limit is not a list of objects: {str(items)[:100]}")
    counts = {}
    for item in items:
        kind, name = str(item.get("type") or ""), item.get("name")
        key = f"{kind}/{name}" if name else kind
        counts[key] = _count(item.get("count"))
    return limits_from_tres(counts, runtime_minutes)


def _dig(body: object, *keys: str) -> object:
    for key in keys:
        if not isinstance(body, dict):
            return None
        body = body.get(key)
    return body


def parse_qos(body: object) -> dict[str, QOSInfo]:
    """``GET /slurmdb/v0.0.38/qos``: every QOS with its per-job limits, by name."""
    qos = {}
    for entry in _list(body, "QOS"):
        name = _text(entry.get("name"))
        if name is None:
            raise ParseError(f"a QOS without a name: {str(entry)[:200]}")
        limits = _dig(entry, "limits", "max")
        qos[name] = QOSInfo(
            name=name,
            limits=_tres_limits(
                _dig(limits, "tres", "per", "job"),
                _count(_dig(limits, "wall_clock", "per", "job")),
            ),
            deny_on_limit="DENY_LIMIT" in (entry.get("flags") or []),
            description=str(entry.get("description") or ""),
        )
    return qos


def parse_user_accounting(associations: object, user: object, username: str) -> UserAccounting:
    """``GET .../associations?user=NAME`` and ``GET .../user/NAME``: the default account
    (the user record's ``default.account``) and each association's limits (``max.tres.per.job``,
    ``max.jobs.per.wall_clock``: MaxTRES and MaxWall; ``max.tres.total``: GrpTRES)."""
    rows = []
    for entry in _list(associations, "associations"):
        if str(entry.get("user") or "").lower() != username.lower():
            raise ParseError(f"slurmrestd answered about user {entry.get('user')!r}")
        rows.append(
            AccountLimits(
                account=_account_of(entry),
                per_job=_tres_limits(
                    _dig(entry, "max", "tres", "per", "job"),
                    _count(_dig(entry, "max", "jobs", "per", "wall_clock")),
                ),
                group=_tres_limits(_dig(entry, "max", "tres", "total")),
            )
        )
    default = None
    for entry in _list(user, "users"):
        if str(entry.get("name") or "").lower() != username.lower():
            raise ParseError(f"slurmrestd answered about user {entry.get('name')!r}")
        default = _text(_dig(entry, "default", "account"))
    return UserAccounting(default_account=default, limits=by_account(rows))


def parse_account_rows(body: object) -> dict[str, AccountNode]:
    """``GET .../associations?account=A,B``: the accounts' own associations (the entries
    without a ``user``; the users' entries in the same answer are left out): their
    ``max.tres.total`` (GrpTRES) and ``parent_account``, by name
    (:func:`~hpcspawner.slurm.accounting.by_account_name`)."""
    rows = []
    for entry in _list(body, "associations"):
        if _text(entry.get("user")) is not None:
            continue
        parent = _text(entry.get("parent_account"))
        rows.append(
            AccountNode(
                name=_account_of(entry),
                parents=(parent,) if parent else (),
                group=_tres_limits(_dig(entry, "max", "tres", "total")),
            )
        )
    return by_account_name(rows)


def _account_of(entry: dict) -> str:
    account = _text(entry.get("account"))
    if account is None:
        raise ParseError(f"association without an account: {str(entry)[:200]}")
    return account
