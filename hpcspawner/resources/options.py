"""What a user may ask for, and the one validator for the form and the REST API (pure).

``user_options`` is hostile input. :func:`validate_options` turns it into a
:class:`ResourceRequest` whose every field was checked against the admin's
:class:`Policy`; nothing else reaches the batch script. All problems are
reported at once, per field, in words a researcher understands.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .limits import accounting_errors

#: The keys of ``user_options`` (REST API and form use the same names).
OPTION_FIELDS = (
    "partition",
    "account",
    "qos",
    "reservation",
    "nodes",
    "cpus",
    "memory",
    "gpus",
    "runtime",
    "profile",
    "environment",
)

#: Slurm object names (partitions, accounts, QOS, reservations), profiles, environments.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")  # used with fullmatch

#: Sanity bounds that hold whatever the admin configures.
MAX_NODES = 100_000
MAX_CPUS = 1_000_000
MAX_GPUS = 10_000
MAX_RUNTIME_MINUTES = 366 * 24 * 60

#: a size as Slurm takes it: a number, optionally K/M/G/T (also written KB, KiB, ...); no suffix = MB
_MEMORY_RE = re.compile(
    r"\s*([0-9]{1,9}(?:\.[0-9]{1,6})?)\s*(?:([KMGT])(?:I?B)?)?\s*", re.IGNORECASE
)
#: Slurm time fields: at most 9 digits each (no float overflow, no huge-int conversions)
_N = r"([0-9]{1,9})"
_MEMORY_FACTORS = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 * 1024}
_RUNTIME_RES = (
    # Slurm's --time formats (see `man sbatch`), most specific first.
    (re.compile(rf"{_N}-{_N}:{_N}:{_N}"), ("d", "h", "m", "s")),
    (re.compile(rf"{_N}-{_N}:{_N}"), ("d", "h", "m")),
    (re.compile(rf"{_N}-{_N}"), ("d", "h")),
    (re.compile(rf"{_N}:{_N}:{_N}"), ("h", "m", "s")),
    (re.compile(rf"{_N}:{_N}"), ("m", "s")),
    (re.compile(_N), ("m",)),
)


class OptionsError(ValueError):
    """One or more fields of a request are invalid.

    ``errors`` maps field name to a message for the user; the form shows each
    next to its field, the REST API returns them all.
    """

    def __init__(self, errors: Mapping[str, str]):
        self.errors = dict(errors)
        super().__init__(self.summary())

    def summary(self) -> str:
        return "; ".join(f"{name}: {message}" for name, message in self.errors.items())


# ---------------------------------------------------------------- value parsers


def parse_memory_mb(value) -> int:
    """``"4G"`` -> 4096. Plain numbers are megabytes, as in Slurm."""
    if isinstance(value, bool):
        raise ValueError("must be a size such as 4G or 512M")
    if isinstance(value, int):
        megabytes = value
        if megabytes > 10**12:
            raise ValueError(f"{value} is too large")
    else:
        match = _MEMORY_RE.fullmatch(str(value))
        if not match:
            raise ValueError(f"{str(value)[:40]!r} is not a size such as 4G or 512M")
        number, unit = match.groups()
        megabytes = math.ceil(float(number) * _MEMORY_FACTORS[(unit or "").upper()])
    if megabytes < 1:
        raise ValueError("must be at least 1M")
    return megabytes


def format_memory(megabytes: int) -> str:
    """4096 -> ``"4G"``; 1536 -> ``"1536M"`` (what sbatch --mem takes)."""
    if megabytes % (1024 * 1024) == 0:
        return f"{megabytes // (1024 * 1024)}T"
    if megabytes % 1024 == 0:
        return f"{megabytes // 1024}G"
    return f"{megabytes}M"


def parse_runtime_minutes(value) -> int:
    """Slurm time formats (``"1:30:00"``, ``"2-00:00:00"``, ``"90"``) -> minutes, rounded up."""
    if isinstance(value, bool):
        raise ValueError("must be a time such as 1:00:00")
    text = str(value).strip()
    for pattern, units in _RUNTIME_RES:
        match = pattern.fullmatch(text)
        if match:
            parts = dict(zip(units, (int(group) for group in match.groups()), strict=True))
            seconds = (
                parts.get("d", 0) * 86400
                + parts.get("h", 0) * 3600
                + parts.get("m", 0) * 60
                + parts.get("s", 0)
            )
            minutes = math.ceil(seconds / 60)
            if minutes < 1:
                raise ValueError("must be at least one minute")
            return minutes
    raise ValueError(f"{text[:40]!r} is not a time such as 1:00:00, 2-00:00:00 or 90 (minutes)")


def format_runtime(minutes: int) -> str:
    """90 -> ``"1:30:00"``; 1500 -> ``"1-01:00:00"`` (what sbatch --time takes)."""
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days}-{hours:02d}:{mins:02d}:00"
    return f"{hours}:{mins:02d}:00"


def _parse_count(value, *, minimum: int, maximum: int) -> int:
    if isinstance(value, bool):
        raise ValueError("must be a whole number")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"[0-9]{1,9}", value.strip()):
        number = int(value.strip())
    else:
        raise ValueError(f"{str(value)[:40]!r} is not a whole number")
    if number < minimum:
        raise ValueError(f"must be at least {minimum}")
    if number > maximum:
        raise ValueError(f"{number} exceeds the limit of {maximum}")
    return number


def _parse_name(value, what: str) -> str:
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        shown = str(value)[:40]
        raise ValueError(
            f"{shown!r} is not a valid {what} name "
            "(letters, digits, '_', '.', '+', '-'; at most 64 characters)"
        )
    return value


# ---------------------------------------------------------------- the admin's policy


@dataclass(frozen=True)
class PartitionPolicy:
    """Limits the admin sets for one partition (None: Slurm's own limits apply)."""

    name: str
    description: str = ""
    max_nodes: int | None = None
    max_cpus: int | None = None
    max_memory_mb: int | None = None
    max_gpus: int | None = None
    max_runtime_minutes: int | None = None


@dataclass(frozen=True)
class Environment:
    """A named software environment the server runs in, defined by the admin."""

    name: str
    description: str = ""
    #: A venv or conda prefix; its ``bin`` goes first on PATH.
    prefix: str | None = None
    #: Modules to ``module load`` (lmod / environment-modules).
    modules: tuple[str, ...] = ()
    #: Extra shell lines, written by the admin, run before the server starts.
    prologue: str = ""
    #: An Apptainer/Singularity image the server runs in (``container_exec`` + image + command).
    container: str | None = None


@dataclass(frozen=True)
class Profile:
    """A named preset of option values."""

    name: str
    description: str = ""
    options: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Policy:
    """Everything the admin allows; built once from the spawner's config."""

    partitions: Mapping[str, PartitionPolicy] = field(default_factory=dict)
    accounts: tuple[str, ...] | None = None
    qos: tuple[str, ...] | None = None
    reservations: tuple[str, ...] | None = None
    environments: Mapping[str, Environment] = field(default_factory=dict)
    profiles: Mapping[str, Profile] = field(default_factory=dict)
    defaults: Mapping[str, object] = field(default_factory=dict)
    max_nodes: int = 1
    max_cpus: int = 64
    max_memory_mb: int = 256 * 1024
    max_gpus: int = 8
    max_runtime_minutes: int = 24 * 60
    #: False: users may only pick a profile (and an environment), not their own values
    allow_custom: bool = True
    #: from Slurm's accounting (:mod:`hpcspawner.resources.offer`), empty without it:
    #: the QOS each account allows, and its default QOS
    account_qos: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    account_default_qos: Mapping[str, str] = field(default_factory=dict)
    #: the account Slurm charges when none is chosen
    default_account: str | None = None
    #: per-job limits of each QOS (:class:`hpcspawner.slurm.accounting.JobLimits`) and of
    #: each of the user's associations (:class:`~hpcspawner.slurm.accounting.AccountLimits`)
    qos_limits: Mapping[str, object] = field(default_factory=dict)
    account_limits: Mapping[str, object] = field(default_factory=dict)


#: What a user may still choose when custom values are disabled.
CHOICES_WITHOUT_CUSTOM = frozenset({"profile", "environment"})


@dataclass(frozen=True)
class ResourceRequest:
    """A validated request: every field is safe to put into a batch script."""

    partition: str | None
    account: str | None
    qos: str | None
    reservation: str | None
    nodes: int
    cpus: int
    memory_mb: int
    gpus: int
    runtime_minutes: int
    profile: str | None
    environment: str | None

    @property
    def memory(self) -> str:
        return format_memory(self.memory_mb)

    @property
    def runtime(self) -> str:
        return format_runtime(self.runtime_minutes)

    def to_user_options(self) -> dict:
        """The canonical ``user_options`` for this request (what is stored and shown)."""
        options = {
            "partition": self.partition,
            "account": self.account,
            "qos": self.qos,
            "reservation": self.reservation,
            "nodes": self.nodes,
            "cpus": self.cpus,
            "memory": self.memory,
            "gpus": self.gpus,
            "runtime": self.runtime,
            "profile": self.profile,
            "environment": self.environment,
        }
        return {key: value for key, value in options.items() if value is not None}


# ---------------------------------------------------------------- policy from config


#: config key -> (PartitionPolicy field, value kind)
_PARTITION_KEYS = {
    "description": ("description", str),
    "max_nodes": ("max_nodes", int),
    "max_cpus": ("max_cpus", int),
    "max_memory": ("max_memory_mb", "memory"),
    "max_gpus": ("max_gpus", int),
    "max_runtime": ("max_runtime_minutes", "runtime"),
}
_ENVIRONMENT_KEYS = {
    "description": str,
    "prefix": str,
    "modules": list,
    "prologue": str,
    "container": str,
}
_PROFILE_KEYS = {"description": str, "options": dict}


def _check_keys(where: str, value, allowed) -> None:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} must be a dict, not {type(value).__name__}")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ValueError(
            f"{where} has unknown key(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )


def _config_value(where: str, kind, value):
    try:
        if kind == "memory":
            return parse_memory_mb(value)
        if kind == "runtime":
            return parse_runtime_minutes(value)
        if kind is int:
            return _parse_count(value, minimum=0, maximum=MAX_CPUS)
        if kind is str:
            if not isinstance(value, str):
                raise ValueError("must be a string")
            return value
        if kind is list:
            if not isinstance(value, list | tuple):
                raise ValueError("must be a list")
            return tuple(value)
        if kind is dict:
            if not isinstance(value, Mapping):
                raise ValueError("must be a dict")
            return dict(value)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    raise AssertionError(kind)


def _config_entries(config: Mapping, what: str, keys: Mapping):
    """``(name, where, values)`` for each entry of a dict-of-dicts setting such as
    ``c.SlurmSpawner.partitions``: the name checked, the keys known, each value of its kind.

    ``keys`` maps a config key to its kind, or to ``(attribute, kind)`` where the record's
    field has another name; ``values`` is keyed by that field."""
    for name, spec in config.items():
        where = f"{what}s[{name!r}]"
        _parse_name(name, what)
        _check_keys(where, spec, keys)
        values = {}
        for key, target in keys.items():
            attribute, kind = target if isinstance(target, tuple) else (key, target)
            if key in spec:
                values[attribute] = _config_value(f"{where}[{key!r}]", kind, spec[key])
        yield name, where, values


def partition_policies(config: Mapping) -> dict[str, PartitionPolicy]:
    """Build partition limits from ``c.SlurmSpawner.partitions``; raise ValueError naming the fix."""
    return {
        name: PartitionPolicy(name=name, **values)
        for name, _, values in _config_entries(config, "partition", _PARTITION_KEYS)
    }


def environments_from_config(config: Mapping) -> dict[str, Environment]:
    environments = {}
    for name, where, values in _config_entries(config, "environment", _ENVIRONMENT_KEYS):
        for module in values.get("modules", ()):
            if not isinstance(module, str) or not re.fullmatch(r"[A-Za-z0-9_.+/-]+", module):
                raise ValueError(f"{where}['modules']: {module!r} is not a module name")
        environments[name] = Environment(name=name, **values)
    return environments


def profiles_from_config(config: Mapping) -> dict[str, Profile]:
    profiles = {}
    for name, where, values in _config_entries(config, "profile", _PROFILE_KEYS):
        options = values.get("options", {})
        allowed = [name for name in OPTION_FIELDS if name != "profile"]
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ValueError(
                f"{where}['options'] has unknown option(s) {', '.join(map(repr, unknown))}; "
                f"allowed: {', '.join(allowed)}"
            )
        profiles[name] = Profile(
            name=name, description=values.get("description", ""), options=options
        )
    return profiles


def check_defaults(defaults: Mapping) -> dict:
    unknown = sorted(set(defaults) - set(OPTION_FIELDS))
    if unknown:
        raise ValueError(
            f"default_options has unknown key(s) {unknown}; allowed: {', '.join(OPTION_FIELDS)}"
        )
    return dict(defaults)


# ---------------------------------------------------------------- the validator


def validate_options(raw: Mapping, policy: Policy) -> ResourceRequest:
    """Validate ``user_options`` against ``policy``.

    Values come from, in order: the admin's defaults, the chosen profile, the
    user. Raises :class:`OptionsError` listing every invalid field.
    """
    if not isinstance(raw, Mapping):
        raise OptionsError({"options": "must be an object of option names to values"})
    errors: dict[str, str] = {}
    unknown = sorted(str(key)[:40] for key in raw if key not in OPTION_FIELDS)
    if unknown:
        errors["options"] = (
            f"unknown option(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(OPTION_FIELDS)}"
        )

    # drop empty values (an empty form field means "the default")
    given = {k: v for k, v in raw.items() if k in OPTION_FIELDS and v not in (None, "")}

    if not policy.allow_custom:
        custom = sorted(set(given) - CHOICES_WITHOUT_CUSTOM)
        if custom:
            message = (
                f"custom values ({', '.join(custom)}) are disabled on this hub; "
                "choose a profile instead"
            )
            errors["options"] = (
                f"{errors['options']}; {message}" if "options" in errors else message
            )
            given = {k: v for k, v in given.items() if k in CHOICES_WITHOUT_CUSTOM}

    merged = dict(policy.defaults)
    profile_name = given.get("profile", merged.get("profile"))
    if profile_name is not None:
        profile = policy.profiles.get(profile_name) if isinstance(profile_name, str) else None
        if profile is None:
            errors["profile"] = _unknown_choice("profile", profile_name, policy.profiles)
        else:
            merged.update(profile.options)
    merged.update(given)

    values: dict[str, object] = {}

    def check(name, parse):
        if name not in merged:
            return None
        try:
            values[name] = parse(merged[name])
        except ValueError as e:
            errors.setdefault(name, str(e))
        return values.get(name)

    partition_name = check("partition", lambda v: _parse_name(v, "partition"))
    partition = None
    if partition_name is not None and policy.partitions:
        partition = policy.partitions.get(partition_name)
        if partition is None:
            errors["partition"] = _unknown_choice("partition", partition_name, policy.partitions)
    for name, allowed in (
        ("account", policy.accounts),
        ("qos", policy.qos),
        ("reservation", policy.reservations),
    ):
        chosen = check(name, lambda v, n=name: _parse_name(v, n))
        if chosen is not None and allowed is not None and chosen not in allowed:
            errors[name] = _unknown_choice(name, chosen, allowed)
    environment = check("environment", lambda v: _parse_name(v, "environment"))
    if environment is not None and environment not in policy.environments:
        errors["environment"] = _unknown_choice("environment", environment, policy.environments)
    if profile_name is not None and "profile" not in errors:
        values["profile"] = profile_name

    # each limit: the lower of the partition's and the global one, named after whichever binds
    limits: dict[str, tuple[int, str]] = {}
    for name, attribute in (
        ("nodes", "max_nodes"),
        ("cpus", "max_cpus"),
        ("gpus", "max_gpus"),
        ("memory", "max_memory_mb"),
        ("runtime", "max_runtime_minutes"),
    ):
        overall = getattr(policy, attribute)
        own = getattr(partition, attribute) if partition else None
        if own is not None and own <= overall:
            limits[name] = (own, f" of partition {partition.name}")
        else:
            limits[name] = (overall, "")
    merged.setdefault("nodes", 1)
    merged.setdefault("cpus", 1)
    merged.setdefault("gpus", 0)
    for name, minimum, label in (("nodes", 1, "Nodes"), ("cpus", 1, "CPUs"), ("gpus", 0, "GPUs")):
        number = check(name, lambda v, m=minimum: _parse_count(v, minimum=m, maximum=MAX_CPUS))
        limit, where = limits[name]
        if number is not None and number > limit:
            errors[name] = f"{label} {number} exceeds the limit of {limit}{where}"

    for name, parse, show, too_much in (
        ("memory", parse_memory_mb, format_memory, "Memory {} exceeds the limit of {}{}"),
        ("runtime", parse_runtime_minutes, format_runtime, "Walltime {} exceeds the {} limit{}"),
    ):
        if name not in merged:
            errors[name] = "is required (the admin set no default)"
            continue
        amount = check(name, parse)
        limit, where = limits[name]
        if amount is not None and amount > limit:
            errors[name] = too_much.format(show(amount), show(limit), where)

    for name, message in accounting_errors(values, policy).items():
        errors.setdefault(name, message)
    if errors:
        raise OptionsError(errors)
    return ResourceRequest(
        partition=values.get("partition"),
        account=values.get("account"),
        qos=values.get("qos"),
        reservation=values.get("reservation"),
        nodes=values["nodes"],
        cpus=values["cpus"],
        memory_mb=values["memory"],
        gpus=values["gpus"],
        runtime_minutes=values["runtime"],
        profile=values.get("profile"),
        environment=values.get("environment"),
    )


def _unknown_choice(what: str, value, allowed) -> str:
    if what == "account":
        yours = ", ".join(allowed) or "none"
        return f"you may not charge Slurm account {str(value)[:40]!r} (your accounts: {yours})"
    choices = ", ".join(sorted(allowed)) or "none"
    return f"{str(value)[:40]!r} is not an available {what} (choose from: {choices})"


__all__ = [
    "OPTION_FIELDS",
    "Environment",
    "OptionsError",
    "PartitionPolicy",
    "Policy",
    "Profile",
    "ResourceRequest",
    "check_defaults",
    "environments_from_config",
    "format_memory",
    "format_runtime",
    "parse_memory_mb",
    "parse_runtime_minutes",
    "partition_policies",
    "profiles_from_config",
    "validate_options",
]
