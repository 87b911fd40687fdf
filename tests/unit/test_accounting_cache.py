"""The hub-wide cache of accounting's limits (ClusterInfo.accounting) and the outage:
slurmdbd stopped is not "no accounting"; the last answers stay, with a notice."""

from __future__ import annotations

import asyncio
import time

import pytest
from fakeslurm import FakeCluster, FakeSlurm
from test_accounting import QOS, recorded

from hpcspawner.slurm import Association, SlurmError
from hpcspawner.slurm.accounting import QOSInfo, UserAccounting
from hpcspawner.spawner.clusterinfo import OUTAGE_NOTICE_CONFIG, ClusterInfo


def within(awaitable, timeout: float = 10):
    return asyncio.wait_for(awaitable, timeout)


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


#: 2026-12-03 10:42 local time, when accounting last answered
WALL = time.mktime((2026, 12, 3, 10, 42, 0, 0, 0, -1))

#: what the local driver raises with slurmdbd stopped (recorded stderr, rc 1)
DBD_DOWN = SlurmError(["sacctmgr"], 1, recorded("sacctmgr_dbd_down.stderr"))

ALICE = [
    Association("chemistry", ("normal", "short"), "normal", None),
    Association("physics", ("long", "normal", "short"), "normal", None),
]
ALICE_ACCOUNTING = UserAccounting(default_account="physics")


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
async def cluster():
    made = FakeCluster()
    made.qos = QOS
    made.associations = {"alice": ALICE, "bob": ALICE[:1]}
    made.user_accounting = {"alice": ALICE_ACCOUNTING, "bob": UserAccounting("chemistry")}
    return made


@pytest.fixture
async def info(cluster, clock):
    made = ClusterInfo(
        FakeSlurm(cluster=cluster),
        first_wait=1.0,
        retry_after=10.0,
        association_ttl=300.0,
        clock=clock,
        wall_clock=lambda: WALL,
    )
    yield made
    await within(made.close())


async def view(info: ClusterInfo, user: str):
    """What the spawn page asks: the associations first (they find out whether accounting
    exists), then the limits."""
    associations = await within(info.associations(user))
    return associations, await within(info.accounting(user))


async def test_qos_is_asked_once_for_the_whole_hub(info, cluster, clock):
    for user in ("alice", "bob", "alice"):
        _, accounting = await view(info, user)
        assert accounting.qos == QOS and accounting.notice is None
    assert cluster.count("qos_limits") == 1
    assert [call.args for call in cluster.calls("user_accounting")] == [("alice",), ("bob",)]
    assert (await view(info, "bob"))[1].user == UserAccounting("chemistry")
    clock.now += 301  # after the TTL, one more for everybody
    await view(info, "alice")
    await within(cluster.answered("qos_limits", 2))
    assert cluster.count("qos_limits") == 2


async def test_without_accounting_no_limits_are_asked(info, cluster):
    cluster.associations = {"alice": None}
    associations, accounting = await view(info, "alice")
    assert associations is None
    assert (accounting.qos, accounting.user, accounting.notice) == (None, None, None)
    assert cluster.count("qos_limits") == 0 and cluster.count("user_accounting") == 0


async def test_slurmdbd_down_keeps_the_last_answers_with_a_notice(info, cluster, clock):
    assert (await view(info, "alice"))[0] == ALICE
    clock.now += 301
    cluster.associations["alice"] = cluster.qos = DBD_DOWN
    cluster.user_accounting["alice"] = DBD_DOWN
    await view(info, "alice")  # starts the refreshes, which fail
    await within(cluster.answered("user_associations", 2))
    await within(cluster.answered("qos_limits", 2))
    associations, accounting = await view(info, "alice")
    assert associations == ALICE
    assert accounting.qos == QOS and accounting.user == ALICE_ACCOUNTING
    expected = time.strftime("%H:%M", time.localtime(WALL))
    assert accounting.notice == (
        f"Slurm's accounting database is not answering; the accounts shown are from {expected}."
    )
    # slurmdbd is back: the next refresh catches up and the notice goes
    cluster.associations["alice"] = ALICE[1:]
    cluster.qos, cluster.user_accounting["alice"] = QOS, ALICE_ACCOUNTING
    clock.now += 11
    await view(info, "alice")
    await within(cluster.answered("user_associations", 3))
    associations, accounting = await view(info, "alice")
    assert associations == ALICE[1:] and accounting.notice is None


async def test_slurmdbd_down_with_nothing_cached_falls_back_to_the_config(info, cluster):
    cluster.associations["alice"] = cluster.qos = DBD_DOWN
    cluster.user_accounting["alice"] = DBD_DOWN
    associations, accounting = await view(info, "alice")
    assert associations is None  # the offer keeps the admin's accounts
    assert (accounting.qos, accounting.user) == (None, None)
    assert accounting.notice == OUTAGE_NOTICE_CONFIG


async def test_a_hung_qos_query_does_not_hold_the_page(info, cluster):
    release = cluster.hold("qos_limits")
    _, accounting = await view(info, "alice")  # waits first_wait (1 s) at most
    assert accounting.qos is None and accounting.user == ALICE_ACCOUNTING
    release.set()
    await within(cluster.answered("qos_limits", 1))
    assert (await view(info, "alice"))[1].qos == QOS


def test_qos_info_defaults():
    assert QOSInfo("x").limits.empty and not QOSInfo("x").deny_on_limit
