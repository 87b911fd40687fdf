"""hpcspawner.accounts.rules: which POSIX accounts a login may map to and a server may run as.

Pure: the accounts are built here, not looked up. The authenticator and the spawner
that apply these rules are tested in test_auth.py and below (the spawner's check).
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from fakeslurm import FakeSlurm
from traitlets.config import Config

from hpcspawner.accounts.posix import slurm_service_users
from hpcspawner.accounts.rules import (
    AccountRules,
    MappingError,
    PosixAccount,
    check_account,
    is_posix_name,
    parse_slurm_conf_users,
    rules_from_config,
)
from hpcspawner.slurm import LocalSlurmDriver, SlurmError
from hpcspawner.spawner import SlurmSpawner
from hpcspawner.spawner.errors import SpawnFailure

DEFAULT = AccountRules()
NOLOGIN = "/usr/sbin/nologin"


def account(name, uid=None, shell=None) -> PosixAccount:
    return PosixAccount(name, uid, uid, (), shell)


# ---------------------------------------------------------------- the rule check


@pytest.mark.parametrize(
    ("posix", "rules", "reason"),
    [
        # the accounts of a Debian host with Slurm (getent passwd)
        pytest.param(account("slurm", 64030, NOLOGIN), DEFAULT, "service-account", id="slurm"),
        pytest.param(account("munge", 102, NOLOGIN), DEFAULT, "service-account", id="munge"),
        pytest.param(account("root", 0, "/bin/bash"), DEFAULT, "service-account", id="root"),
        pytest.param(account("nobody", 65534, NOLOGIN), DEFAULT, "service-account", id="nobody"),
        pytest.param(
            account("slurmrest", 999, NOLOGIN), DEFAULT, "service-account", id="slurmrest"
        ),
        pytest.param(account("daemon", 1, NOLOGIN), DEFAULT, "system-account", id="daemon"),
        pytest.param(account("bin", 2, NOLOGIN), DEFAULT, "system-account", id="bin"),
        pytest.param(account("svc", 999, "/bin/bash"), DEFAULT, "system-account", id="uid-999"),
        pytest.param(account("svc", 60000, "/bin/bash"), DEFAULT, "high-uid", id="uid-60000"),
        pytest.param(account("nfsnone", 65534, "/bin/bash"), DEFAULT, "high-uid", id="uid-65534"),
        pytest.param(account("svc", 1500, NOLOGIN), DEFAULT, "no-login-shell", id="nologin"),
        pytest.param(account("svc", 1500, "/bin/false"), DEFAULT, "no-login-shell", id="false"),
        pytest.param(
            account("svc", 1500, "/sbin/nologin"), DEFAULT, "no-login-shell", id="sbin-nologin"
        ),
        pytest.param(account("Slurm"), DEFAULT, "service-account", id="name-any-case"),
        pytest.param(
            account("toor", 0, "/bin/bash"),
            AccountRules(min_uid=0),
            "system-account",
            id="uid-0-even-with-min-uid-0",
        ),
        pytest.param(
            account("root"),
            AccountRules(refused_names=frozenset()),
            "service-account",
            id="root-even-when-left-out",
        ),
        pytest.param(
            account("svc", 1500, "/usr/local/bin/locked"),
            AccountRules(refused_shells=("/usr/local/bin/locked",)),
            "no-login-shell",
            id="shell-by-path",
        ),
        pytest.param(
            account("hpcsvc", 2000, "/bin/bash"),
            rules_from_config(
                min_uid=1000,
                max_uid=60000,
                refused_usernames=["root"],
                refused_shells=[],
                service_users=("hpcsvc",),
            ),
            "service-account",
            id="slurm-conf-user",
        ),
        # require_posix_account = False: nothing but the name is known
        pytest.param(account("slurm"), DEFAULT, "service-account", id="unknown-uid-slurm"),
        pytest.param(account("munge"), DEFAULT, "service-account", id="unknown-uid-munge"),
    ],
)
def test_refused_accounts(posix, rules, reason):
    with pytest.raises(MappingError) as info:
        check_account(posix, rules)
    assert info.value.reason == reason, info.value.detail
    assert posix.username in info.value.detail


@pytest.mark.parametrize(
    ("posix", "rules"),
    [
        pytest.param(account("alice", 1001, "/bin/bash"), DEFAULT, id="good-user"),
        pytest.param(account("alice"), DEFAULT, id="unknown-uid-and-shell"),
        pytest.param(account("alice", 1001, ""), DEFAULT, id="empty-shell-is-sh"),
        pytest.param(account("alice", 59999, "/bin/zsh"), DEFAULT, id="below-max-uid"),
        pytest.param(
            account("ldapuser", 123456, "/bin/bash"),
            AccountRules(max_uid=2_000_000_000),
            id="high-uids-allowed",
        ),
        pytest.param(
            account("daemon", 1, NOLOGIN),
            AccountRules(min_uid=1, refused_shells=()),
            id="admin-lowered-everything",
        ),
        pytest.param(
            account("alice", 1001, "/opt/nologin-wrapper/bin/bash"),
            DEFAULT,
            id="nologin-in-a-directory-name",
        ),
    ],
)
def test_accepted_accounts(posix, rules):
    assert check_account(posix, rules) is posix


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        pytest.param({"min_uid": 1000, "max_uid": 1000}, "must be above min_uid", id="empty-range"),
        pytest.param({"min_uid": -1}, "0 or more", id="negative"),
    ],
)
def test_rules_config_errors_name_the_fix(settings, message):
    with pytest.raises(ValueError, match=message):
        AccountRules(**settings)


# ---------------------------------------------------------------- slurm.conf


@pytest.mark.parametrize(
    ("text", "users"),
    [
        pytest.param("ClusterName=c\nSlurmUser=slurm\n", ("slurm",), id="debian"),
        pytest.param("slurmuser=hpcsvc # the daemons' user\n", ("hpcsvc",), id="any-case"),
        pytest.param("SlurmUser=slurm SlurmdUser=slurmd\n", ("slurm", "slurmd"), id="one-line"),
        pytest.param("#SlurmUser=old\nSlurmUser=slurm\n", ("slurm",), id="commented-out"),
        pytest.param("SlurmUser=64030\n", (), id="uid-is-not-a-name"),
        pytest.param("NodeName=n1 CPUs=2\n", (), id="not-set"),
        pytest.param("SlurmUserX=a\nXSlurmUser=b\n", (), id="other-keys"),
    ],
)
def test_slurm_conf_users(text, users):
    assert parse_slurm_conf_users(text) == users


def test_slurm_service_users_reads_slurm_conf_and_tolerates_its_absence(tmp_path, monkeypatch):
    conf = tmp_path / "slurm.conf"
    conf.write_text("SlurmctldHost=h\nSlurmUser=hpcsvc\n")
    assert slurm_service_users(str(conf)) == ("hpcsvc",)
    monkeypatch.setenv("SLURM_CONF", str(conf))
    assert slurm_service_users() == ("hpcsvc",)
    assert slurm_service_users(str(tmp_path / "missing.conf")) == ()


# ---------------------------------------------------------------- the spawner checks again


#: the driver methods that run a command as the user
AS_USER = ("submit", "cancel", "install_files", "remove_file")


def as_user(spawner, *kinds: str) -> list[tuple[str, str]]:
    """Every (method, username) that ran, or would have run, as a user (of ``kinds``)."""
    kinds = kinds or AS_USER
    return [(c.kind, c.args[0]) for c in spawner.driver.cluster.history if c.kind in kinds]


def make_spawner(name: str, **settings) -> SlurmSpawner:
    config = Config()
    config.SlurmSpawner.driver_class = FakeSlurm
    for key, value in settings.items():
        setattr(config.SlurmSpawner, key, value)
    return SlurmSpawner(config=config, user=SimpleNamespace(name=name))


@pytest.mark.parametrize(
    ("name", "settings", "reason"),
    [
        pytest.param("slurm", {}, "service-account", id="slurm"),
        pytest.param("munge", {}, "service-account", id="munge"),
        pytest.param("root", {}, "service-account", id="root"),
        pytest.param("daemon", {}, "system-account", id="daemon"),
        pytest.param("bin", {}, "system-account", id="bin"),
        pytest.param("nobody", {}, "service-account", id="nobody"),
        pytest.param(
            "daemon", {"min_uid": 0, "refused_shells": ["nologin"]}, "no-login-shell", id="shell"
        ),
        pytest.param(
            "no-such-user-hpcspawner",
            {"refused_usernames": ["no-such-user-hpcspawner"]},
            "service-account",
            id="unknown-locally-checked-by-name",
        ),
    ],
)
async def test_spawner_refuses_before_submitting(name, settings, reason):
    spawner = make_spawner(name, **settings)
    with pytest.raises(SpawnFailure) as info:
        await asyncio.wait_for(spawner.start(), 10)
    error = info.value
    assert error.reason == reason
    assert error.status_code == 403
    assert error.jupyterhub_message == (
        f"This hub cannot start servers for the account '{name}': "
        "it is a system or service account."
    )
    assert as_user(spawner, "submit") == []
    assert spawner.job_id == ""


@pytest.mark.parametrize("token_delivery", ["file", "environment"])
async def test_a_refused_start_runs_nothing_as_the_account(token_delivery):
    # the whole start, with its clean-up after the failure: not even removing a token
    # file may run as slurm (runuser -u slurm -- rm ...)
    spawner = make_spawner("slurm", token_delivery=token_delivery)
    before = len(as_user(spawner))
    with pytest.raises(SpawnFailure) as info:
        await asyncio.wait_for(spawner.start(), 10)
    assert info.value.reason == "service-account"
    assert as_user(spawner)[before:] == []


async def test_spawner_refuses_to_cancel_as_a_service_account():
    spawner = make_spawner("slurm")
    spawner.job_id = "42"
    with pytest.raises(SpawnFailure) as info:
        await asyncio.wait_for(spawner.stop(), 10)
    assert info.value.reason == "service-account"
    assert "stop servers" in info.value.jupyterhub_message
    assert as_user(spawner, "cancel") == []


async def test_spawner_lets_a_good_account_through():
    # the host's root is refused by name, so an unknown name stands in for a good account
    # (the hub host need not know a user: the cluster may, e.g. behind an SSH driver)
    name = "no-such-user-hpcspawner"
    spawner = make_spawner(name)
    spawner.driver.cluster.accounts.add(name)
    spawner.job_id = "42"
    await asyncio.wait_for(spawner.stop(), 10)
    assert as_user(spawner, "cancel") == [("cancel", name)]
    await asyncio.wait_for(spawner.poller.close(), 10)


def test_spawner_account_settings_default_to_the_authenticators():
    from hpcspawner.auth import ClusterOAuthenticator

    spawner = make_spawner("alice")
    config = Config({"ClusterOAuthenticator": {"issuer": "https://idp.uni.example"}})
    authenticator = ClusterOAuthenticator(config=config)
    for name in ("min_uid", "max_uid", "refused_usernames", "refused_shells"):
        assert getattr(spawner, name) == getattr(authenticator, name), name


# ---------------------------------------------------------------- the driver's last guard


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("root", id="root"),
        pytest.param("ROOT", id="root-upper-case"),
        pytest.param("-u", id="option"),
        pytest.param("../etc", id="path"),
        pytest.param("alice bob", id="space"),
        pytest.param("", id="empty"),
        pytest.param("\u212aarl", id="kelvin-sign"),
        pytest.param("alice\n", id="newline"),
    ],
)
def test_driver_never_runs_as_root_or_a_non_name(name):
    driver = LocalSlurmDriver(user_command_prefix=["runuser", "-u", "{username}", "--"])
    with pytest.raises(SlurmError, match="refusing to run sbatch"):
        driver._as_user(name, ["sbatch", "--parsable"])


def test_driver_runs_as_a_plain_name():
    driver = LocalSlurmDriver(user_command_prefix=["/usr/sbin/runuser", "-u", "{username}", "--"])
    argv = driver._as_user("alice", ["/usr/bin/env", "true"])
    assert argv == ["/usr/sbin/runuser", "-u", "alice", "--", "/usr/bin/env", "true"]


def test_is_posix_name():
    assert is_posix_name("alice") and is_posix_name("Alice_B") and is_posix_name("_svc.data-1")
    assert not is_posix_name("1alice") and not is_posix_name(None) and not is_posix_name("x" * 33)
