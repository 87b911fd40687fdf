"""``hpcspawner-check-config``: the admin's settings are checked before users meet them."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hpcspawner.checkconfig import load, main

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path, body: str) -> str:
    path = tmp_path / "jupyterhub_config.py"
    path.write_text("c = get_config()\n" + textwrap.dedent(body))
    return str(path)


def test_the_sample_config_is_valid(capsys):
    assert main([str(REPO / "jupyterhub_config.py")]) == 0
    out = capsys.readouterr().out
    assert "settings are valid" in out
    assert "partition debug: max_cpus 2, max_runtime 1:00:00" in out


@pytest.mark.parametrize("driver", ["ssh", "rest"])
def test_the_sample_config_runs_the_demo_with_the_tested_driver_settings(
    tmp_path, monkeypatch, driver
):
    """``DRIVER=ssh|rest scripts/demo.sh``: the sample config reaches the demo cluster's login
    node or slurmrestd with the settings the integration tests' hubs off the cluster use."""
    from tests.integration.offcluster import DRIVERS  # the settings run on the real cluster

    monkeypatch.setenv("HPCSPAWNER_DEMO_DRIVER", driver)
    sample = load(str(REPO / "jupyterhub_config.py"))
    tested = load(write(tmp_path, DRIVERS[driver][1]))
    assert tested["SlurmSpawner"]["driver_class"] == driver
    for section, values in tested.items():
        for key, value in values.items():
            assert sample[section][key] == value, (section, key)


def test_the_sample_config_refuses_an_unknown_demo_driver(monkeypatch):
    monkeypatch.setenv("HPCSPAWNER_DEMO_DRIVER", "nfs")
    with pytest.raises(ValueError, match="HPCSPAWNER_DEMO_DRIVER='nfs': use local, ssh or rest"):
        load(str(REPO / "jupyterhub_config.py"))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(
            'c.SlurmSpawner.partitions = {"debug": {"max_runtim": "1:00:00"}}',
            "partitions['debug'] has unknown key(s) 'max_runtim'; allowed: description,",
            id="typo-in-partition-key",
        ),
        pytest.param(
            'c.SlurmSpawner.partitions = {"debug": {"max_memory": "lots"}}',
            "partitions['debug']['max_memory']: 'lots' is not a size",
            id="bad-size",
        ),
        pytest.param(
            'c.SlurmSpawner.environments = {"py": {"path": "/opt/py"}}',
            "environments['py'] has unknown key(s) 'path'; allowed: container, description, modules,",
            id="typo-in-environment-key",
        ),
        pytest.param(
            'c.SlurmSpawner.profiles = {"big": {"options": {"cpu": 64}}}',
            "profiles['big']['options'] has unknown option(s) 'cpu'",
            id="typo-in-profile-option",
        ),
        pytest.param(
            'c.SlurmSpawner.default_options = {"partition": "debug", "memory": "1G", "runtime": "9:00:00"}\n'
            'c.SlurmSpawner.partitions = {"debug": {"max_runtime": "1:00:00"}}',
            "default_options do not satisfy the limits: runtime: Walltime 9:00:00 exceeds",
            id="defaults-over-the-limit",
        ),
        pytest.param(
            'c.SlurmSpawner.default_options = {"cpus": 1, "memory": "1G", "runtime": "1:00:00", "gpu": 1}',
            "default_options has unknown key(s) ['gpu']",
            id="typo-in-defaults",
        ),
        pytest.param(
            'c.SlurmSpawner.driver_class = "slurmrest"',
            "c.SlurmSpawner.driver_class = 'slurmrest' cannot be imported",
            id="unknown-driver",
        ),
        pytest.param(
            'c.SlurmSpawner.driver_class = "ssh"',
            "Invalid SSHSlurmDriver configuration: c.SSHSlurmDriver.hosts is empty: name at "
            "least one login node; c.SSHSlurmDriver.known_hosts is not set",
            id="ssh-without-hosts-and-known-hosts",
        ),
        pytest.param(
            'c.SlurmSpawner.driver_class = "ssh"\n'
            'c.SSHSlurmDriver.hosts = ["login1"]\n'
            'c.SSHSlurmDriver.known_hosts = "/nonexistent/known_hosts"\n'
            'c.SSHSlurmDriver.client_keys = ["/nonexistent/id_ed25519"]',
            "cannot read the known_hosts file /nonexistent/known_hosts",
            id="ssh-files-missing",
        ),
    ],
)
def test_mistakes_are_named(tmp_path, capsys, body, message):
    assert main([write(tmp_path, body)]) == 1
    assert message in capsys.readouterr().err


def test_missing_file(tmp_path, capsys):
    assert main([str(tmp_path / "nope.py")]) == 2
    assert "no such config file" in capsys.readouterr().err


def test_an_ssh_driver_with_hosts_and_keys_is_valid(tmp_path, capsys):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("@cert-authority *.cluster.example ssh-ed25519 " + "A" * 68 + "\n")
    key = tmp_path / "id_ed25519"
    key.write_text("not read by the check, only opened\n")
    body = f"""
        c.SlurmSpawner.driver_class = "ssh"
        c.SSHSlurmDriver.hosts = ["login1.cluster.example"]
        c.SSHSlurmDriver.known_hosts = {str(known_hosts)!r}
        c.SSHSlurmDriver.client_keys = [{str(key)!r}]
    """
    assert main([write(tmp_path, body)]) == 0, capsys.readouterr().err
    assert "settings are valid" in capsys.readouterr().out


def test_a_rest_driver_without_address_or_token_is_named(tmp_path, capsys):
    body = 'c.SlurmSpawner.driver_class = "rest"\nc.SlurmSpawner.token_delivery = "environment"\n'
    assert main([write(tmp_path, body)]) == 1
    err = capsys.readouterr().err
    assert "c.RESTSlurmDriver.url is not set" in err
    assert "set exactly one of c.RESTSlurmDriver.jwt_key_file" in err


@pytest.mark.parametrize(
    ("delivery", "rc", "message"),
    [
        (
            "file",
            1,
            'RESTSlurmDriver cannot write the user\'s files: set c.SlurmSpawner.token_delivery = "environment"',
        ),
        ("environment", 0, "settings are valid"),
    ],
)
def test_a_rest_driver_needs_the_token_in_the_environment(tmp_path, capsys, delivery, rc, message):
    key = tmp_path / "jwt_hs256.key"
    key.write_bytes(b"k" * 32)
    body = f"""
        c.SlurmSpawner.driver_class = "rest"
        c.SlurmSpawner.token_delivery = {delivery!r}
        c.RESTSlurmDriver.url = "http://127.0.0.1:6820"
        c.RESTSlurmDriver.jwt_key_file = {str(key)!r}
    """
    assert main([write(tmp_path, body)]) == rc
    captured = capsys.readouterr()
    assert message in (captured.err if rc else captured.out)
