"""The offer: the admin's allow-lists, the login's accounts and the cluster met in one place.

Each source may be absent (None: no information, it narrows nothing); an empty answer
(the login or Slurm knows of no account) narrows to nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcspawner.resources.offer import Offer, make_offer
from hpcspawner.resources.options import (
    OptionsError,
    Policy,
    partition_policies,
    validate_options,
)
from hpcspawner.slurm.records import Association, parse_nodes, parse_partitions
from hpcspawner.slurm.snapshot import summarize

DATA = Path(__file__).parent / "data"


def snapshot():
    return summarize(
        parse_partitions((DATA / "scontrol_partitions.txt").read_text()),
        parse_nodes((DATA / "scontrol_nodes_idle.txt").read_text()),
        taken_at=0.0,
    )


def assoc(account: str, *qos: str, partition: str | None = None) -> Association:
    return Association(account=account, qos=qos, default_qos=None, partition=partition)


#: what a request needs when the admin sets no defaults
REQUIRED = {"memory": "1G", "runtime": "30"}


def tup(names: str | None) -> tuple[str, ...] | None:
    """``"a b"`` -> ``("a", "b")``; ``""`` -> ``()``; None stays None."""
    return None if names is None else tuple(names.split())


@pytest.mark.parametrize(
    ("admin", "login", "slurm", "expected"),
    [
        pytest.param(None, None, None, None, id="nothing-known-any-name"),
        pytest.param("a b", None, None, "a b", id="admin-only"),
        pytest.param(None, "c b", None, "c b", id="login-only-in-its-order"),
        pytest.param(None, None, "x y", "x y", id="slurm-only"),
        pytest.param("a b", "c b a", None, "b a", id="admin-and-login"),
        pytest.param("a b", None, "b c a", "b a", id="admin-and-slurm-in-slurms-order"),
        pytest.param(None, "c b", "a b c", "b c", id="login-and-slurm"),
        pytest.param("a b c", "c b", "b c d", "b c", id="all-three"),
        pytest.param("a b", "c", None, "", id="admin-and-login-disjoint"),
        pytest.param("a", "a", "b", "", id="slurm-knows-none-of-them"),
        pytest.param("a b", "", None, "", id="login-grants-none"),
        pytest.param(None, None, "", "", id="no-associations"),
    ],
)
def test_accounts_are_the_three_sources_intersected(admin, login, slurm, expected):
    associations = None if slurm is None else [assoc(name, "normal") for name in slurm.split()]
    offer = make_offer(
        Policy(accounts=tup(admin)), login_accounts=tup(login), associations=associations
    )
    assert offer.policy.accounts == tup(expected)


@pytest.mark.parametrize(
    ("admin", "slurm", "expected"),
    [
        pytest.param(None, None, None, id="nothing-known"),
        pytest.param("normal high", None, "normal high", id="admin-only"),
        pytest.param(None, "high debug", "high debug", id="slurm-only"),
        pytest.param("normal high", "high debug", "high", id="both"),
        pytest.param("normal", "debug", "", id="disjoint"),
    ],
)
def test_qos_is_the_admins_list_within_the_associations(admin, slurm, expected):
    associations = None if slurm is None else [assoc("a", *slurm.split())]
    offer = make_offer(Policy(qos=tup(admin)), associations=associations)
    assert offer.policy.qos == tup(expected)


def test_the_login_narrows_accounts_only():
    admin = Policy(qos=("normal",), reservations=("maint",))
    offer = make_offer(admin, login_accounts=("a",))
    assert offer.policy.accounts == ("a",)
    assert (offer.policy.qos, offer.policy.reservations) == (("normal",), ("maint",))


def test_associations_of_every_partition_count():
    associations = [assoc("a", "normal"), assoc("b", "high", partition="gpu"), assoc("a", "low")]
    offer = make_offer(Policy(), associations=associations)
    assert offer.policy.accounts == ("a", "b")
    assert offer.policy.qos == ("normal", "high", "low")


def test_without_any_source_the_offer_is_the_admins_policy():
    admin = Policy(partitions=partition_policies({"debug": {}}), accounts=("a",))
    assert make_offer(admin) == Offer(policy=admin, snapshot=None)


def test_the_cluster_narrows_the_partitions_and_is_kept_for_the_page():
    admin = Policy(partitions=partition_policies({"debug": {"max_runtime": "9:00:00"}, "x": {}}))
    cluster = snapshot()
    offer = make_offer(admin, snapshot=cluster)
    assert offer.snapshot is cluster
    assert list(offer.policy.partitions) == ["debug"]  # "x" is not on this cluster
    assert offer.policy.partitions["debug"].max_runtime_minutes == 60  # Slurm's limit is lower


def test_no_account_is_preselected():
    # the form's empty choice is "your default account": Slurm's own default applies
    admin = Policy(defaults=REQUIRED)
    offer = make_offer(admin, login_accounts=("a", "b"), associations=[assoc("b", "normal")])
    assert offer.policy.defaults == REQUIRED
    assert validate_options({}, offer.policy).account is None


def test_the_validator_accepts_exactly_what_is_offered():
    offer = make_offer(
        Policy(accounts=("a", "b"), defaults=REQUIRED),
        login_accounts=("b", "c"),
        associations=[assoc("b", "q")],
    )
    assert validate_options({"account": "b", "qos": "q"}, offer.policy).account == "b"
    with pytest.raises(OptionsError) as caught:
        validate_options({"account": "a", "qos": "normal"}, offer.policy)
    assert set(caught.value.errors) == {"account", "qos"}
    assert "(your accounts: b)" in caught.value.errors["account"]
