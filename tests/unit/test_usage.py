"""A user's use of their accounts: the ``sshare`` parser (hpcspawner/slurm/usage.py) on the
recorded and synthetic answers of tests/unit/data/accounting/, the drivers' ``user_usage``,
the hub-wide cache (ClusterInfo.usage) and the line under the spawn page's Account field."""

from __future__ import annotations

import logging

import pytest
import test_rest_driver as rest_tests
from fakeslurm import FakeCluster, FakeSlurm, controller_down
from test_history import Canned, bounded, recorded

from hpcspawner.resources.offer import make_offer
from hpcspawner.slurm import ParseError, SlurmError
from hpcspawner.slurm.usage import AccountUsage, parse_sshare, sshare_args, tres_minutes
from hpcspawner.spawner import form, page
from hpcspawner.spawner.clusterinfo import ClusterInfo, ClusterView

servers = rest_tests.servers
drivers = rest_tests.drivers
key_file = rest_tests.key_file


# ---------------------------------------------------------------- sshare's answer


@pytest.mark.parametrize(
    ("name", "user", "expected"),
    [
        pytest.param(
            "sshare_alice.txt",
            "alice",
            [AccountUsage("chemistry", 0.0), AccountUsage("physics", 0.0)],
            id="alice-recorded-no-shares-computed",
        ),
        pytest.param("sshare_bob.txt", "bob", [AccountUsage("chemistry", 0.0)], id="bob-recorded"),
        pytest.param("sshare_bob.txt", "alice", [], id="rows-of-someone-else"),
        pytest.param(
            "sshare_alice_usage_synthetic.txt",
            "alice",
            [
                AccountUsage("chemistry", 0.0, 0.0, 1.0, granted_cpu_hours=1000.0),
                AccountUsage("physics", 12.3, 0.332578, 0.871428, granted_cpu_hours=100.0),
            ],
            id="alice-used-synthetic",
        ),
    ],
)
def test_the_users_rows(name, user, expected):
    assert parse_sshare(recorded(name), user) == expected


@pytest.mark.parametrize(
    "output",
    [
        # with slurmdbd down, recorded with 4 fields: not the format the hub asks for
        pytest.param(recorded("sshare_dbd_down.stdout"), id="other-fields"),
        pytest.param(
            "  physics|alice|1||lots||0.0|0.5|||\n",
            id="not-a-number",
        ),
    ],
)
def test_what_is_not_sshares_answer_is_an_error(output):
    with pytest.raises(ParseError):
        parse_sshare(output, "alice")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("cpu=6000", 6000), ("mem=10,cpu=60", 60), ("", None), ("cpu=N", None), ("gres/gpu=4", None)],
)
def test_tres_minutes(text, expected):
    assert tres_minutes(text) == expected


def test_sshare_args_take_one_plain_name():
    assert sshare_args("alice")[2] == "--users=alice"
    for bad in ("alice,bob", "-a", ""):
        with pytest.raises(ValueError):
            sshare_args(bad)


# ---------------------------------------------------------------- the drivers


async def test_the_command_driver_runs_sshare_as_the_hub():
    driver = Canned({"sshare": (0, recorded("sshare_alice_usage_synthetic.txt"), "")})
    usage = await bounded(driver.user_usage("alice"))
    assert [u.account for u in usage] == ["chemistry", "physics"]
    assert driver.argvs == [["sshare", *sshare_args("alice")]]
    failing = Canned({"sshare": (1, "", "sshare: error: slurm_load_...: Unable to contact\n")})
    with pytest.raises(SlurmError):
        await bounded(failing.user_usage("alice"))


async def test_the_rest_driver_has_no_usage_and_says_so_once(servers, drivers, caplog):
    server = await servers()
    driver = drivers(server.url)
    with caplog.at_level(logging.INFO, logger="test.rest"):
        assert await bounded(driver.user_usage("alice")) is None
        assert await bounded(driver.user_usage("bob")) is None
    said = [r for r in caplog.records if "not available through slurmrestd" in r.getMessage()]
    assert len(said) == 1
    assert server.requests == []  # nothing asked: 22.05 has no shares endpoint
    with pytest.raises(ValueError):
        await driver.user_usage("alice,bob")


# ---------------------------------------------------------------- the hub-wide cache


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


async def test_usage_is_cached_per_user_and_a_failure_hides_it_logged_once(caplog):
    cluster = FakeCluster()
    cluster.usage["alice"] = parse_sshare(recorded("sshare_alice_usage_synthetic.txt"), "alice")
    cluster.usage["bob"] = controller_down("user_usage")
    clock = Clock()
    info = ClusterInfo(FakeSlurm(cluster=cluster), usage_ttl=300, clock=clock)
    assert [u.account for u in await bounded(info.usage("alice"))] == ["chemistry", "physics"]
    assert await bounded(info.usage("alice")) is not None
    assert cluster.count("user_usage") == 1
    with caplog.at_level(logging.WARNING):
        assert await bounded(info.usage("bob")) is None
        clock.now += 301
        assert await bounded(info.usage("bob")) is None
    assert cluster.count("user_usage") == 3
    assert len([r for r in caplog.records if "sshare for bob failed" in r.getMessage()]) == 1
    assert await bounded(info.usage("carol")) is None  # the driver cannot tell
    await info.close()


# ---------------------------------------------------------------- the line under the field


def test_usage_lines():
    usage = parse_sshare(recorded("sshare_alice_usage_synthetic.txt"), "alice")
    assert form.usage_lines(usage) == [
        "chemistry: 0.0 CPU-hours used of 1000 granted, fair-share 1.00, 0% of the account's use",
        "physics: 12.3 CPU-hours used of 100 granted, fair-share 0.87, 33% of the account's use",
    ]
    recorded_alice = parse_sshare(recorded("sshare_alice.txt"), "alice")
    assert form.usage_lines(recorded_alice) == [
        "chemistry: 0.0 CPU-hours used",
        "physics: 0.0 CPU-hours used",
    ]
    assert form.usage_lines(None) == []


def test_the_page_shows_usage_under_the_account_field_and_nothing_without_it():
    from hpcspawner.spawner.settings import SlurmSpawnerSettings

    offer = make_offer(SlurmSpawnerSettings().policy)
    view = ClusterView(None, error="no cluster information yet")
    usage = parse_sshare(recorded("sshare_alice_usage_synthetic.txt"), "alice")
    html = page.render(offer, view, feedback=None, usage=usage)
    assert html.count('class="form-text hpcspawner-usage"') == 2
    assert "physics: 12.3 CPU-hours used of 100 granted" in html
    account_field = html[html.index('id="field-account"') : html.index('id="field-qos"')]
    assert "physics: 12.3 CPU-hours" in account_field
    assert "hpcspawner-usage" not in page.render(offer, view, feedback=None)
