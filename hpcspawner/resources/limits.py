"""Slurm accounting's limits applied to a request, in the hub's words (pure).

:func:`accounting_errors` is part of the one validator
(:func:`hpcspawner.resources.options.validate_options`): it checks the account's QOS and
the limits of the QOS and of the user's association that Slurm will apply, so that a
request over them is refused on the spawn page ("QOS short allows at most 2:00:00")
instead of by sbatch ("Job violates accounting/QOS policy") or, without the QOS's
``DenyOnLimit``, by a job that stays pending for ever. An account's ``GrpTRES`` and those
of the accounts above it count as the association's own (a single job can be no bigger);
the message names the account whose limit is the lowest: "account science (above
chemistry) allows at most 4 CPUs for all its jobs at once".

The facts come from the :class:`~hpcspawner.resources.options.Policy` that
:func:`hpcspawner.resources.offer.make_offer` built: without accounting they are empty and
nothing is checked here (Slurm still checks at submit). The limits are
:class:`hpcspawner.slurm.accounting.JobLimits` (read by attribute: this module imports
only the standard library, as :mod:`hpcspawner.resources.options`, which the login's
mapping uses, must).
"""

from __future__ import annotations

from collections.abc import Mapping


def format_walltime(minutes: int) -> str:
    """120 -> ``2:00:00``, 1440 -> ``1-00:00:00`` (as Slurm writes limits)."""
    days, rest = divmod(minutes, 24 * 60)
    text = f"{rest // 60}:{rest % 60:02d}:00"
    return f"{days}-{rest // 60:02d}:{rest % 60:02d}:00" if days else text


def format_size(megabytes: int) -> str:
    """4096 -> ``4G``, 1536 -> ``1536M`` (exact: a limit)."""
    return f"{megabytes // 1024}G" if megabytes % 1024 == 0 else f"{megabytes}M"


def _count(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def describe_limits(limits) -> str:
    """``at most 2:00:00, 2 CPUs, 4G, no GPU``; "" without limits."""
    parts = []
    if limits.runtime_minutes is not None:
        parts.append(format_walltime(limits.runtime_minutes))
    if limits.nodes is not None:
        parts.append(_count(limits.nodes, "node"))
    if limits.cpus is not None:
        parts.append(_count(limits.cpus, "CPU"))
    if limits.memory_mb is not None:
        parts.append(format_size(limits.memory_mb))
    if limits.gpus is not None:
        parts.append("no GPU" if limits.gpus == 0 else _count(limits.gpus, "GPU"))
    return f"at most {', '.join(parts)}" if parts else ""


#: (the request's field, the limit's attribute, what the field's value counts, how to show it)
_CHECKS = (
    ("runtime", "runtime_minutes", "", format_walltime),
    ("nodes", "nodes", "nodes", str),
    ("cpus", "cpus", "CPUs", str),
    ("memory", "memory_mb", "", format_size),
    ("gpus", "gpus", "GPUs", str),
)


def job_totals(values: Mapping) -> dict[str, int]:
    """What a request asks of the whole job, as Slurm counts a job's TRES: ``cpus``,
    ``memory`` and ``gpus`` are per node (``-c``, ``--mem``, ``--gres=gpu:N``)."""
    nodes = values.get("nodes", 1)
    totals = {"runtime": values.get("runtime"), "nodes": nodes}
    for name in ("cpus", "memory", "gpus"):
        if values.get(name) is not None:
            totals[name] = values[name] * nodes
    return totals


def applying_qos(values: Mapping, policy) -> tuple[str | None, str | None]:
    """(account, QOS) Slurm will use for the request: the chosen ones, else the user's
    default account and that association's default QOS (None: not known)."""
    account = values.get("account") or policy.default_account
    qos = values.get("qos") or (policy.account_default_qos.get(account) if account else None)
    return account, qos


def accounting_errors(values: Mapping, policy) -> dict[str, str]:
    """Per field, why Slurm's accounting would refuse the validated ``values``
    (``runtime`` in minutes, ``memory`` in MB per node, counts per node)."""
    errors: dict[str, str] = {}
    account, qos = applying_qos(values, policy)
    allowed = policy.account_qos.get(account) if account else None
    if values.get("qos") and allowed is not None and values["qos"] not in allowed:
        errors["qos"] = (
            f"QOS {values['qos']} is not allowed with account {account} "
            f"(choose from: {', '.join(allowed) or 'none'})"
        )
        return errors
    totals = job_totals(values)
    sources = []
    if qos and qos in policy.qos_limits:
        sources.append((f"QOS {qos}", policy.qos_limits[qos], ""))
    association = policy.account_limits.get(account) if account else None
    if association is not None:
        sources.append((f"account {account}", association.per_job, ""))
        for setter, group in association.group_by_account():
            who = f"account {setter}" + ("" if setter == account else f" (above {account})")
            sources.append((who, group, " for all its jobs at once"))
    for who, limits, scope in sources:
        for name, message in _over(totals, limits, who, scope).items():
            errors.setdefault(name, message)
    return errors


def _amount(count: int, unit: str, show) -> str:
    """``2 CPUs``, ``1 GPU``, ``4G``, ``2:00:00``."""
    if not unit:
        return show(count)
    return f"{show(count)} {unit[:-1] if count == 1 else unit}"


def _over(totals: Mapping, limits, who: str, scope: str) -> dict[str, str]:
    errors = {}
    nodes = totals.get("nodes", 1)
    for name, attribute, unit, show in _CHECKS:
        limit, asked = getattr(limits, attribute), totals.get(name)
        if limit is None or asked is None or asked <= limit:
            continue
        if name == "gpus" and limit == 0:
            errors[name] = f"{who} allows no GPU{scope}"
            continue
        message = f"{who} allows at most {_amount(limit, unit, show)}{scope}"
        if name in ("cpus", "memory", "gpus") and nodes > 1:
            message += f" (you asked for {_amount(asked, unit, show)} on {nodes} nodes)"
        errors[name] = message
    return errors


__all__ = [
    "accounting_errors",
    "applying_qos",
    "describe_limits",
    "format_size",
    "format_walltime",
    "job_totals",
]
