"""What a user may start now: the one place where the sources of the offer meet (pure).

The admin's :class:`~hpcspawner.resources.options.Policy` is narrowed by three
sources, each of which may be absent (``None``: no information, so it narrows
nothing):

- ``login_accounts``: the Slurm accounts the login says the user may charge
  (``auth_state["hpcspawner"]["accounts"]``, see :mod:`hpcspawner.accounts.authstate`);
- ``snapshot``: the cluster's partitions and their limits
  (a :class:`~hpcspawner.slurm.ClusterSnapshot`);
- ``associations``: the user's Slurm associations (accounts and QOS), from ``sacctmgr``;
- ``qos_limits`` and ``accounting``: every QOS's per-job limits, and the user's default
  account and association limits (:mod:`hpcspawner.slurm.accounting`), which the validator
  applies (:mod:`hpcspawner.resources.limits`) and the page shows next to each QOS.

:func:`make_offer` returns an :class:`Offer`. Its ``policy`` is what the one validator
(:func:`~hpcspawner.resources.options.validate_options`) checks a request against, and
what the spawn page lists: the partitions of ``policy.partitions`` (with what
``snapshot`` says is free), the accounts of ``policy.accounts`` and the QOS of
``policy.qos`` (``None``: nothing is known to list, any name may be typed and Slurm
decides at submit). The form and the REST API therefore offer and accept the same.

An account or QOS list that becomes empty stays empty: no name may be chosen, only
Slurm's default (an empty list is "nothing", never "anything"; partitions differ, see
:func:`narrow_policy`). Names keep the order of the source that narrowed them
last (Slurm's order once associations are known), as the page lists them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..slurm.accounting import QOSInfo, UserAccounting
from ..slurm.records import Association, association_choices
from ..slurm.snapshot import ClusterSnapshot, PartitionSummary
from .options import PartitionPolicy, Policy


@dataclass(frozen=True)
class Offer:
    """The admin's policy within what the login and the cluster say, and the view it used."""

    #: the narrowed policy: requests are validated against it, the page lists its choices
    policy: Policy
    #: the cluster when the offer was made (the page shows what is free); None: not known
    snapshot: ClusterSnapshot | None = None
    #: for the page: why the accounts shown may be out of date or the admin's (an outage)
    accounting_notice: str | None = None


def make_offer(
    policy: Policy,
    *,
    login_accounts: Iterable[str] | None = None,
    snapshot: ClusterSnapshot | None = None,
    associations: Iterable[Association] | None = None,
    qos_limits: Mapping[str, QOSInfo] | None = None,
    accounting: UserAccounting | None = None,
) -> Offer:
    """The admin's ``policy`` within the login's accounts, the cluster and the associations,
    with accounting's limits for the validator."""
    if login_accounts is not None:
        policy = dataclasses.replace(policy, accounts=_within(policy.accounts, login_accounts))
    policy = narrow_policy(policy, snapshot)
    if associations is not None:
        accounts, qos = association_choices(associations)
        policy = dataclasses.replace(
            policy,
            accounts=_within(policy.accounts, accounts),
            qos=_within(policy.qos, qos),
        )
        policy = _with_account_qos(policy, associations)
    if qos_limits is not None:
        policy = dataclasses.replace(
            policy, qos_limits={name: info.limits for name, info in qos_limits.items()}
        )
    if accounting is not None:
        default = accounting.default_account
        if policy.accounts is not None and default not in policy.accounts:
            default = None
        policy = dataclasses.replace(
            policy, default_account=default, account_limits=dict(accounting.limits)
        )
    return Offer(policy=policy, snapshot=snapshot)


def _with_account_qos(policy: Policy, associations: Iterable[Association]) -> Policy:
    """Each offered account's QOS (within the offered QOS) and default QOS, from the
    associations (an account's associations for several partitions together)."""
    account_qos: dict[str, tuple[str, ...]] = {}
    default_qos: dict[str, str] = {}
    for association in associations:
        if policy.accounts is not None and association.account not in policy.accounts:
            continue
        known = account_qos.get(association.account, ())
        account_qos[association.account] = known + tuple(
            name
            for name in association.qos
            if name not in known and (policy.qos is None or name in policy.qos)
        )
        if association.default_qos:
            default_qos.setdefault(association.account, association.default_qos)
    return dataclasses.replace(policy, account_qos=account_qos, account_default_qos=default_qos)


def _within(allowed: tuple[str, ...] | None, known: Iterable[str]) -> tuple[str, ...]:
    """The names ``known`` (in its order) that ``allowed`` lists; None allows any."""
    if allowed is None:
        return tuple(known)
    return tuple(name for name in known if name in allowed)


# ---------------------------------------------------------------- partitions


def _min(*values: int | None) -> int | None:
    present = [value for value in values if value is not None]
    return min(present) if present else None


def narrow_policy(policy: Policy, snapshot: ClusterSnapshot | None) -> Policy:
    """The admin's policy within the cluster's facts.

    - The admin lists partitions: keep those Slurm reports, each limit the lower
      of the admin's and Slurm's. If Slurm reports none of them, the policy stays
      as it is (an empty list would mean "any partition"; Slurm rejects at submit).
    - The admin lists none: every UP partition that is neither hidden nor root-only,
      with Slurm's limits.
    - No snapshot (Slurm never answered): the policy unchanged; Slurm still
      enforces its limits at submit.
    """
    if snapshot is None:
        return policy
    if policy.partitions:
        narrowed = {
            name: _narrow_partition(own, snapshot.partitions[name])
            for name, own in policy.partitions.items()
            if name in snapshot.partitions
        }
    else:
        narrowed = {
            summary.name: _narrow_partition(PartitionPolicy(name=summary.name), summary)
            for summary in snapshot.partitions.values()
            if summary.state == "UP" and not summary.hidden and not summary.root_only
        }
    if not narrowed:
        return policy
    return dataclasses.replace(policy, partitions=narrowed)


def _narrow_partition(own: PartitionPolicy, slurm: PartitionSummary) -> PartitionPolicy:
    return dataclasses.replace(
        own,
        max_nodes=_min(own.max_nodes, slurm.max_nodes),
        max_cpus=_min(own.max_cpus, slurm.cpus_per_node),
        max_memory_mb=_min(own.max_memory_mb, slurm.memory_per_node_mb),
        max_gpus=_min(own.max_gpus, slurm.max_gpus_per_node),
        max_runtime_minutes=_min(own.max_runtime_minutes, slurm.max_runtime_minutes),
    )
