"""The spawn page through SlurmSpawner's public hooks: what a refusal leaves for the next
form, whose form shows it, and the offer the page lists (the same one the validator uses).

Every spawner here shares one user object with JupyterHub's shape (``name``, ``spawners``),
as JupyterHub's ``User`` holds a user's spawners.
"""

from __future__ import annotations

import asyncio
import inspect
from types import SimpleNamespace

import pytest
from fakeslurm import FakeCluster, FakeSlurm
from jupyterhub.handlers.pages import SpawnHandler
from jupyterhub.user import User
from traitlets.config import Config

from hpcspawner.slurm import Association
from hpcspawner.spawner import SlurmSpawner
from hpcspawner.spawner.errors import SpawnFailure

TIMEOUT = 5.0

#: Every config made here, kept alive: the hub's shared driver is found by ``id(config)``.
_configs: list[Config] = []


def hub_config(cluster: FakeCluster | None = None) -> Config:
    config = Config()
    config.SlurmSpawner.driver_class = FakeSlurm  # the recorded cluster
    config.FakeSlurm.cluster = cluster or FakeCluster()
    config.SlurmSpawner.partitions = {"debug": {"max_runtime": "1:00:00"}, "gpu": {}}
    config.SlurmSpawner.default_options = {"partition": "debug", "memory": "1G", "runtime": "30"}
    _configs.append(config)
    return config


def servers(*names: str, config: Config | None = None) -> dict[str, SlurmSpawner]:
    """Spawners of one user's servers ``names`` ("" is the default server), as JupyterHub
    keeps them in ``user.spawners``."""
    config = config or hub_config()
    user = SimpleNamespace(name="alice", spawners={})
    for name in names:
        orm_spawner = SimpleNamespace(name=name, user_options=None, server=None)  # names it
        user.spawners[name] = SlurmSpawner(config=config, user=user, orm_spawner=orm_spawner)
    return user.spawners


async def form_of(spawner: SlurmSpawner) -> str:
    return await asyncio.wait_for(spawner.render_options_form(), TIMEOUT)


async def refuse(spawner: SlurmSpawner, options: dict) -> None:
    """What a refused form POST does before JupyterHub renders the form again."""
    spawner.user_options = options
    with pytest.raises(SpawnFailure):
        await asyncio.wait_for(spawner._run_apply_user_options(spawner.user_options), TIMEOUT)


async def test_a_refused_form_shows_its_values_and_errors_once():
    spawner = servers("")[""]
    await refuse(spawner, {"partition": "debug", "runtime": "9:00:00"})
    page = await form_of(spawner)
    assert 'id="error-runtime"' in page
    assert 'value="9:00:00"' in page
    again = await form_of(spawner)
    assert 'id="error-runtime"' not in again
    assert 'value="9:00:00"' not in again


async def test_a_named_servers_refusal_is_shown_by_the_default_servers_form():
    # JupyterHub renders user.spawner's form (the default server's) after any refused POST
    spawners = servers("", "gpu")
    await refuse(spawners["gpu"], {"partition": "gpu", "runtime": "0:13:00", "cpus": "999"})
    page = await form_of(spawners[""])
    assert 'id="error-cpus"' in page
    assert 'value="0:13:00"' in page
    assert 'value="0:13:00"' not in await form_of(spawners["gpu"])


async def test_the_newest_refusal_is_shown_and_none_comes_back():
    spawners = servers("", "gpu", "big")
    await refuse(spawners["gpu"], {"runtime": "0:11:00", "cpus": "999"})  # e.g. a REST call
    await refuse(spawners[""], {"runtime": "0:12:00", "cpus": "999"})
    await refuse(spawners["big"], {"runtime": "0:13:00", "cpus": "999"})
    page = await form_of(spawners[""])
    assert 'value="0:13:00"' in page
    assert 'value="0:12:00"' not in page
    for spawner in spawners.values():
        page = await form_of(spawner)
        assert "error-cpus" not in page
        assert not any(f'value="0:1{n}:00"' in page for n in (1, 2, 3))


async def test_a_named_servers_form_shows_only_its_own_refusal():
    spawners = servers("", "gpu")
    await refuse(spawners[""], {"runtime": "0:12:00", "cpus": "999"})
    assert "error-cpus" not in await form_of(spawners["gpu"])
    assert "error-cpus" in await form_of(spawners[""])


async def test_refusals_are_kept_per_user():
    config = hub_config()
    alice = servers("", config=config)[""]
    bob = SlurmSpawner(config=config, user=SimpleNamespace(name="bob", spawners={}))
    await refuse(alice, {"cpus": "999"})
    assert "error-cpus" not in await form_of(bob)
    assert "error-cpus" in await form_of(alice)


async def test_the_page_lists_the_offer_the_validator_checks():
    # the login says a and b; Slurm's associations say b and c: b is offered and accepted
    cluster = FakeCluster()
    cluster.associations["alice"] = [
        Association(account=name, qos=("normal",), default_qos=None, partition=None)
        for name in ("b", "c")
    ]
    spawner = servers("", config=hub_config(cluster))[""]
    await spawner.run_auth_state_hook({"hpcspawner": {"accounts": ["a", "b"]}})
    page = await form_of(spawner)
    assert '<option value="b"' in page
    assert '<option value="a"' not in page and '<option value="c"' not in page
    spawner.user_options = {"account": "b"}
    assert (await asyncio.wait_for(spawner.validated_request(), TIMEOUT)).account == "b"
    spawner.user_options = {"account": "c"}
    with pytest.raises(SpawnFailure, match="account: you may not charge Slurm account 'c'"):
        await asyncio.wait_for(spawner.validated_request(), TIMEOUT)


# ---------------------------------------------------------------- what JupyterHub does
# No public hook hands a refusal to the form JupyterHub shows next (see
# hpcspawner.spawner.page): these pin the two behaviours the page relies on.


def test_jupyterhub_shows_the_default_servers_form_after_a_refused_post():
    assert "await user.spawner.get_options_form()" in inspect.getsource(SpawnHandler._post)


def test_jupyterhub_keeps_a_spawner_whose_spawn_failed():
    source = inspect.getsource(User.stop)
    assert "pop Spawner *unless* it's stopping due to an error" in source
