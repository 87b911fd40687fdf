"""The spawn options form: from the offer to HTML, and back to user_options.

Pure: :func:`form_context` builds what the template shows, :func:`render`
renders it (autoescaped HTML), :func:`options_from_form` reshapes the posted
form into ``user_options``. Validation is not done here: the one validator in
:mod:`hpcspawner.resources.options` checks form and REST requests alike, against the
same :class:`~hpcspawner.resources.offer.Offer` whose policy the form lists. The page
around the form (what a refusal leaves for it, the notices) is :mod:`.page`.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

import jinja2

from ..resources.limits import describe_limits
from ..resources.options import OPTION_FIELDS, Policy, format_memory, format_runtime

DEFAULT_TEMPLATE = "options_form.html.j2"

#: the numeric/size fields of the form, in order
NUMBER_FIELDS = (
    ("nodes", "Nodes", "numeric"),
    ("cpus", "CPUs per node", "numeric"),
    ("memory", "Memory per node", "text"),
    ("gpus", "GPUs per node", "numeric"),
    ("runtime", "Walltime", "text"),
)


@dataclass(frozen=True)
class PartitionRow:
    """One partition as the form shows it."""

    name: str
    description: str = ""
    max_runtime: str | None = None
    max_nodes: int | None = None
    cpus_per_node: int | None = None
    memory_per_node: str | None = None
    gpus_per_node: str | None = None
    free: str | None = None
    available: bool = True


def partition_rows(policy: Policy, snapshot) -> list[PartitionRow]:
    """The partitions the user may choose (``policy``), with what Slurm says is free."""
    rows = []
    summaries = snapshot.partitions if snapshot is not None else {}
    for name, allowed in policy.partitions.items():
        summary = summaries.get(name)
        gpus = None
        free = None
        if summary is not None:
            if summary.gpus_per_node:
                gpus = ", ".join(f"{count} {kind}" for kind, count in summary.gpus_per_node.items())
            free = _free_text(summary)
        rows.append(
            PartitionRow(
                name=name,
                description=allowed.description,
                max_runtime=format_runtime(allowed.max_runtime_minutes)
                if allowed.max_runtime_minutes
                else None,
                max_nodes=allowed.max_nodes,
                cpus_per_node=allowed.max_cpus,
                memory_per_node=human_memory(allowed.max_memory_mb)
                if allowed.max_memory_mb
                else None,
                gpus_per_node=gpus if allowed.max_gpus != 0 else None,
                free=free,
                available=summary.available if summary is not None else True,
            )
        )
    return rows


def human_memory(megabytes: int) -> str:
    """23849 -> ``"23.3G"``, 4000 -> ``"3.9G"``, 512 -> ``"512M"`` (rounded down: a limit)."""
    if megabytes < 1024:
        return f"{megabytes}M"
    gigabytes = int(megabytes * 10 / 1024) / 10
    return f"{gigabytes:g}G"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _free_text(summary) -> str:
    parts = [_plural(summary.idle_nodes, "idle node"), _plural(summary.idle_cpus, "CPU")]
    if summary.free_gpus:
        parts.append(_plural(sum(summary.free_gpus.values()), "GPU"))
    return ", ".join(parts)


def usage_lines(usages) -> list[str]:
    """One line per account of the user's usage (:class:`~hpcspawner.slurm.usage.AccountUsage`):
    ``physics: 12.3 CPU-hours used of 100 granted, fair-share 0.87, 40% of the account's use``."""
    lines = []
    for usage in usages or ():
        text = f"{usage.account}: {usage.cpu_hours:.1f} CPU-hours used"
        if usage.granted_cpu_hours is not None:
            text += f" of {usage.granted_cpu_hours:g} granted"
        if usage.fair_share is not None:
            text += f", fair-share {usage.fair_share:.2f}"
        if usage.effective_usage is not None:
            text += f", {usage.effective_usage:.0%} of the account's use"
        lines.append(text)
    return lines


def options_from_form(formdata: Mapping[str, list]) -> dict:
    """Reshape posted form data (each value a list of strings) into ``user_options``.

    Keeps only the known fields, takes the first value of each, drops empty
    ones ("use the default"). No validation, no side effects.
    """
    options = {}
    for name in OPTION_FIELDS:
        values = formdata.get(name) or []
        if not isinstance(values, list | tuple):
            values = [values]
        value = values[0] if values else ""
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        if isinstance(value, str):
            value = value.strip()
        if value not in ("", None):
            options[name] = value
    return options


def _limit_text(policy: Policy, name: str, value) -> str:
    if name == "memory":
        return format_memory(value)
    if name == "runtime":
        return format_runtime(value)
    return str(value)


def form_context(
    *,
    policy: Policy,
    partitions: list[PartitionRow],
    values: Mapping,
    errors: Mapping[str, str] | None = None,
    cluster_error: str | None = None,
    stale: bool = False,
    cluster_age: str | None = None,
    cluster_taken_at: str | None = None,
    usage: list[str] | None = None,
    accounting_notice: str | None = None,
) -> dict:
    """Everything the template needs, as plain data.

    ``policy`` is what the user may choose (the ``policy`` of an
    :class:`~hpcspawner.resources.offer.Offer`): its accounts, QOS and reservations are
    listed as they are (None: a text field, any name may be typed). ``usage``: the lines
    shown under the Account field (:func:`usage_lines`)."""
    defaults = dict(policy.defaults)
    limits = {
        "nodes": policy.max_nodes,
        "cpus": policy.max_cpus,
        "memory": policy.max_memory_mb,
        "gpus": policy.max_gpus,
        "runtime": policy.max_runtime_minutes,
    }
    help_texts = {
        "nodes": "More than 1: the server runs on the first node; srun uses them all.",
        "cpus": "Cores for your server on each node.",
        "memory": "e.g. 4G or 512M.",
        "gpus": "0 for none.",
        "runtime": "HH:MM:SS, D-HH:MM:SS or minutes. The job ends then.",
    }
    number_fields = []
    for name, label, inputmode in NUMBER_FIELDS:
        default = defaults.get(name)
        placeholder = f"default {default}" if default not in (None, "") else ""
        help_text = f"{help_texts[name]} At most {_limit_text(policy, name, limits[name])} overall."
        number_fields.append(
            {
                "name": name,
                "label": label,
                "inputmode": inputmode,
                "placeholder": placeholder,
                "help": help_text,
            }
        )

    choice_fields = [
        {
            "name": "account",
            "label": "Account",
            "choices": _listed(policy.accounts),
            "empty_label": "your default account",
            "notes": list(usage or ()),
            "default": policy.default_account,
            "labels": account_labels(policy),
            "accounts": {},
        },
        {
            "name": "qos",
            "label": "QOS",
            "choices": _listed(policy.qos),
            "empty_label": "the default QOS",
            "notes": [],
            "labels": qos_labels(policy),
            "accounts": qos_accounts(policy),
        },
    ]
    if policy.reservations is None or policy.reservations:
        choice_fields.append(
            {
                "name": "reservation",
                "label": "Reservation",
                "choices": _listed(policy.reservations),
                "empty_label": "none",
                "notes": [],
                "labels": {},
                "accounts": {},
            }
        )
    shown_values = {name: None for name in OPTION_FIELDS}
    shown_values.update({k: v for k, v in values.items() if k in OPTION_FIELDS})
    if not shown_values.get("account") and policy.default_account:
        shown_values["account"] = policy.default_account
    if not shown_values.get("partition"):
        shown_values["partition"] = defaults.get("partition")
    if not shown_values.get("environment") and policy.environments:
        shown_values["environment"] = defaults.get("environment") or next(iter(policy.environments))
    return {
        # missing keys read as "" (the template asks about every field)
        "errors": defaultdict(str, errors or {}),
        "values": shown_values,
        "allow_custom": policy.allow_custom,
        "profiles": [
            {"name": p.name, "description": p.description} for p in policy.profiles.values()
        ],
        "partitions": partitions,
        "number_fields": number_fields,
        "choice_fields": choice_fields,
        "environments": [
            {"name": e.name, "description": e.description} for e in policy.environments.values()
        ],
        "cluster_error": cluster_error,
        "stale": stale,
        "cluster_age": cluster_age,
        "cluster_taken_at": cluster_taken_at,
        "accounting_notice": accounting_notice,
    }


def qos_labels(policy: Policy) -> dict[str, str]:
    """Each offered QOS as the page lists it: ``short — at most 2:00:00, 2 CPUs, 4G, no GPU``
    (its limits from Slurm's accounting; the name alone without them)."""
    labels = {}
    for name in policy.qos or ():
        limits = policy.qos_limits.get(name)
        described = describe_limits(limits) if limits is not None else ""
        labels[name] = f"{name} — {described}" if described else name
    return labels


def account_labels(policy: Policy) -> dict[str, str]:
    """Each offered account as the page lists it, with its association's limits if it
    has any: ``physics — at most 0:45:00, 3 CPUs; at most 8 CPUs for all its jobs at once``,
    and those of the accounts above it: ``; at most 8G for all jobs of science``."""
    labels = {}
    for name in policy.accounts or ():
        limits = policy.account_limits.get(name)
        parts = []
        if limits is not None:
            parts.append(describe_limits(limits.per_job))
            for setter, group in limits.group_by_account():
                described = describe_limits(group)
                scope = "all its jobs at once" if setter == name else f"all jobs of {setter}"
                parts.append(f"{described} for {scope}" if described else "")
        described = "; ".join(part for part in parts if part)
        labels[name] = f"{name} — {described}" if described else name
    return labels


def qos_accounts(policy: Policy) -> dict[str, str]:
    """Each QOS's accounts, space-separated, for the page's script that offers only the
    chosen account's QOS (empty without accounting: every QOS with every account)."""
    accounts: dict[str, list[str]] = {}
    for account, names in policy.account_qos.items():
        for name in names:
            accounts.setdefault(name, []).append(account)
    return {name: " ".join(found) for name, found in accounts.items()}


def _listed(names) -> list[str] | None:
    return None if names is None else list(names)


def default_template() -> str:
    return resources.files(__package__).joinpath("templates", DEFAULT_TEMPLATE).read_text()


@functools.lru_cache(maxsize=8)
def _compile(template: str) -> jinja2.Template:
    """Compile a template's text once: every page view renders the same template."""
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(template)


def render(template: str, context: Mapping) -> str:
    return _compile(template).render(**context)
