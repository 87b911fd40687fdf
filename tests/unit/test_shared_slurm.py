"""One door to Slurm: the authenticator's account lookup and the spawners share the hub's
driver and its one cache of associations (hpcspawner.spawner.shared)."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import pytest
from fakeslurm import FakeCluster, FakeSlurm
from traitlets.config import Config

from hpcspawner.auth import ClusterOAuthenticator
from hpcspawner.slurm import Association, LocalSlurmDriver
from hpcspawner.spawner import SlurmSpawner
from hpcspawner.spawner.settings import SlurmSpawnerSettings
from hpcspawner.spawner.shared import shared_slurm, spawner_settings

ISSUER = "https://idp.uni.example/realms/hpc"
#: a login name this host does not know (require_posix_account is off below)
USER = "zoe"


def bounded(awaitable, timeout: float = 10):
    return asyncio.wait_for(awaitable, timeout)


def hub_config(cluster: FakeCluster) -> Config:
    config = Config()
    config.SlurmSpawner.driver_class = FakeSlurm
    config.FakeSlurm.cluster = cluster
    config.ClusterOAuthenticator.issuer = ISSUER
    config.ClusterOAuthenticator.slurm_accounts = "sacctmgr"
    config.ClusterOAuthenticator.require_posix_account = False
    return config


async def test_a_login_then_a_spawn_page_view_ask_slurm_once():
    cluster = FakeCluster()
    cluster.associations[USER] = [
        Association("physics", ("normal", "high"), "normal", None),
        Association("chemistry", ("normal",), None, None),
    ]
    config = hub_config(cluster)
    authenticator = ClusterOAuthenticator(config=config)
    claims = {"preferred_username": f"{USER}", "sub": "u-1", "iss": ISSUER}
    model = await bounded(
        authenticator.update_auth_model(
            {"name": USER, "auth_state": {authenticator.user_auth_state_key: claims}}
        )
    )
    assert model["auth_state"]["hpcspawner"]["accounts"] == ["physics", "chemistry"]
    assert [call.args for call in cluster.calls("user_associations")] == [(USER,)]

    spawner = SlurmSpawner(config=config, user=SimpleNamespace(name=USER))
    try:
        assert spawner.driver is authenticator.shared_slurm.driver
        assert spawner.cluster_info is authenticator.shared_slurm.cluster_info
        page = await bounded(spawner.render_options_form())
        assert "physics" in page and "chemistry" in page
        # the spawn page's associations came from the login's answer: one sacctmgr for
        # them; the page adds the QOS definitions (hub-wide) and the user's limits
        assert cluster.count("user_associations") == 1
        assert cluster.count("qos_limits") == 1 and cluster.count("user_accounting") == 1
        assert spawner.driver.calls.get("sacctmgr") == 3
    finally:
        await bounded(spawner.shared.close())


async def test_the_spawner_made_first_serves_the_login_too():
    cluster = FakeCluster()
    cluster.associations[USER] = [Association("physics", ("normal",), None, None)]
    config = hub_config(cluster)
    spawner = SlurmSpawner(config=config, user=SimpleNamespace(name=USER))
    try:
        await bounded(spawner.render_options_form())
        authenticator = ClusterOAuthenticator(config=config)
        assert authenticator.shared_slurm.driver is spawner.driver
        assert await bounded(authenticator.slurm_accounts_of(USER, {})) == ["physics"]
        assert cluster.count("user_associations") == 1
    finally:
        await bounded(spawner.shared.close())


class SiteSpawner(SlurmSpawner):
    """An admin's subclass, configured under its own name."""


def test_settings_are_read_as_the_hubs_spawner_class_reads_them():
    config = Config()
    config.SlurmSpawner.cluster_info_ttl = 30
    config.SiteSpawner.driver_class = FakeSlurm
    config.SiteSpawner.associations_ttl = 20
    config.SiteSpawner.extra_sbatch_options = "not a list"  # not read at login
    settings = spawner_settings(config, SiteSpawner)
    assert (settings.driver_class, settings.cluster_info_ttl, settings.associations_ttl) == (
        FakeSlurm,
        30,
        20,
    )
    # without the hub's spawner class: c.SlurmSpawner only
    assert spawner_settings(config).driver_class is LocalSlurmDriver


def test_one_shared_set_per_config_and_driver_class():
    config = hub_config(FakeCluster())
    log = logging.getLogger("test")
    first = shared_slurm(config, log)
    assert shared_slurm(config, log) is first
    assert shared_slurm(Config(config), log) is not first
    other = SlurmSpawnerSettings(
        config=Config({"SlurmSpawnerSettings": {"driver_class": FakeSlurm}})
    )
    assert shared_slurm(config, log, settings=other) is first


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ("local", "LocalSlurmDriver"),
        ("ssh", "SSHSlurmDriver"),
        ("rest", "RESTSlurmDriver"),
        ("hpcspawner.slurm.ssh.SSHSlurmDriver", "SSHSlurmDriver"),
    ],
)
def test_the_driver_is_chosen_by_its_short_name_or_import_path(value, name):
    """As the spawner reads it and as the authenticator's shared driver does."""
    config = Config({"SlurmSpawner": {"driver_class": value}})
    assert SlurmSpawner(config=config).driver_class.__name__ == name
    assert spawner_settings(config).driver_class.__name__ == name


async def test_closing_the_shared_objects_closes_the_driver():
    config = hub_config(FakeCluster())
    shared = shared_slurm(config, logging.getLogger("test"))
    closed = []
    shared.driver.close = lambda: asyncio.sleep(0, result=closed.append(True))
    await shared.close()
    assert closed == [True]
