"""user_options go through JupyterHub's ``apply_user_options`` hook (JupyterHub >= 5.3).

JupyterHub runs ``Spawner._run_apply_user_options`` before ``pre_spawn_hook`` and ``start()``;
a spawner that does not set the hook gets "Received unhandled user_options" logged on every
spawn. ``_run_apply_user_options`` is private: these tests pin the contract hpcspawner relies
on (it calls our hook, passes our HTTP errors through unchanged), with the recorded cluster of
the request tests.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from fakeslurm import FakeSlurm
from traitlets.config import Config

from hpcspawner.spawner import SlurmSpawner
from hpcspawner.spawner.errors import SpawnFailure


def make_spawner(**settings) -> SlurmSpawner:
    config = Config()
    config.SlurmSpawner.driver_class = FakeSlurm  # the recorded cluster, no accounting
    config.SlurmSpawner.partitions = {"debug": {"max_runtime": "1:00:00"}, "gpu": {}}
    config.SlurmSpawner.default_options = {"partition": "debug", "memory": "1G", "runtime": "30"}
    for name, value in settings.items():
        setattr(config.SlurmSpawner, name, value)
    return SlurmSpawner(config=config, user=SimpleNamespace(name="alice"))


async def apply(spawner, options):
    """What JupyterHub's User.spawn does before pre_spawn_hook and start()."""
    spawner.user_options = options
    await spawner._run_apply_user_options(spawner.user_options)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param(
            {"partition": "debug", "cpus": 1, "memory": "1G", "runtime": "0:30:00"}, id="api"
        ),
        pytest.param({"partition": "gpu", "cpus": "2", "memory": "", "runtime": ""}, id="form"),
        pytest.param({}, id="defaults"),
    ],
)
async def test_valid_options_are_applied_without_a_warning(options, caplog):
    spawner = make_spawner()
    with caplog.at_level(logging.DEBUG):
        await apply(spawner, options)
    noisy = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert noisy == []
    request = await spawner._applied_request()
    assert request.partition == options.get("partition", "debug")


@pytest.mark.parametrize(
    ("options", "field"),
    [
        pytest.param({"partition": "nosuch"}, "partition", id="unknown-partition"),
        pytest.param({"partition": "debug", "runtime": "9:00:00"}, "runtime", id="over-limit"),
        pytest.param({"partition": "debug", "evil": "$(id)"}, "options", id="unknown-key"),
    ],
)
async def test_invalid_options_are_a_400_with_the_fields_message(options, field):
    spawner = make_spawner()
    spawner.user_options = options
    with pytest.raises(SpawnFailure) as direct:
        await spawner.validated_request()
    with pytest.raises(SpawnFailure) as hooked:
        await apply(make_spawner(), options)
    # the same validator, the same words: JupyterHub passes HTTP errors through unchanged
    assert hooked.value.status_code == 400
    assert hooked.value.reason == "invalid-options"
    assert hooked.value.jupyterhub_message == direct.value.jupyterhub_message
    assert f"{field}: " in hooked.value.jupyterhub_message


async def test_start_uses_the_request_the_hook_validated_once():
    spawner = make_spawner()
    await apply(spawner, {"partition": "gpu"})
    first = await spawner._applied_request()
    assert first.partition == "gpu"
    # taken once: a later start without the hook (an admin's own hook) validates afresh
    again = await spawner._applied_request()
    assert again == first and again is not first


async def test_options_changed_after_the_hook_are_validated_again():
    # a pre_spawn_hook may change user_options after apply_user_options ran
    spawner = make_spawner()
    await apply(spawner, {"partition": "gpu"})
    spawner.user_options["partition"] = "nosuch"
    with pytest.raises(SpawnFailure, match="partition"):
        await spawner._applied_request()


async def test_an_admins_own_hook_replaces_ours_and_start_still_validates():
    seen = []
    spawner = make_spawner(apply_user_options=lambda spawner, options: seen.append(dict(options)))
    await apply(spawner, {"partition": "nosuch"})
    assert seen == [{"partition": "nosuch"}]
    with pytest.raises(SpawnFailure, match="partition"):
        await spawner._applied_request()


def test_a_refusal_carries_the_headers_the_spawn_form_copies():
    # JupyterHub 5.4's spawn form handler reads ``e.headers`` of an HTTPError that the
    # spawn raised (tornado's HTTPError has none): without it a refused form is a 500
    failure = SpawnFailure("Invalid server options: partition", reason="invalid-options")
    assert failure.headers == {}
    assert failure.status_code == 400


@pytest.mark.parametrize("body", [42, "partition=debug", ["debug"], True, 1.5])
async def test_options_that_are_not_an_object_are_a_400_not_a_500(body):
    # JupyterHub 5 sets a REST body that is no JSON object as user_options unchecked
    spawner = make_spawner()
    spawner.user_options = body  # Spawner's own Dict trait raised TraitError here (a 500)
    with pytest.raises(SpawnFailure) as caught:
        await spawner._run_apply_user_options(spawner.user_options)
    assert caught.value.status_code == 400
    assert "must be an object" in str(caught.value)
    # the form shown next renders (the body fills in nothing) and names the problem
    page = await spawner.render_options_form()
    assert 'name="partition"' in page
    assert "must be an object" in page
