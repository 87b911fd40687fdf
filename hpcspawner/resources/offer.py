"""What a user may start now: the one place where the sources of the offer meet (pure).

The admin's :class:`~hpcspawner.resources.options.Policy` is narrowed by three
sources, each of which may be absent (``None``: no information, so it narrows
nothing):

- ``login_accounts``: the Slurm accounts the login says the user may charge
  (``auth_state["hpcspawner"]["accounts"]``, see :mod:`hpcspawner.accounts.authstate`);
- ``snapshot``: the cluster's partitions and their limits
  (a :class:`~hpcspawner.slurm.ClusterSnapshot`);
- ``associations``: the user's Slurm associations (accounts and QOS), from ``sacctmgr``.

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
from collections.abc import Iterable
from dataclasses import dataclass

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


def make_offer(
    policy: Policy,
    *,
    login_accounts: Iterable[str] | None = None,
    snapshot: ClusterSnapshot | None = None,
    associations: Iterable[Association] | None = None,
) -> Offer:
    """The admin's ``policy`` within the login's accounts, the cluster and the associations."""
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
    return Offer(policy=policy, snapshot=snapshot)


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
