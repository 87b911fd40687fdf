"""The chart's jupyterhub_config.py, run as the hub runs it, from the files the chart renders.

Each test renders the chart, writes the hub's ConfigMap and its Secrets (the existing ones
made up here, the chart's own from the render) into a temporary directory exactly where the
Deployment mounts them, and loads the config file with traitlets' loader, as ``jupyterhub
--config`` does. Then it checks the resulting ``c``, builds the objects the hub would build
from it (JupyterHub's app, the CryptKeeper, the authenticator) and runs
``hpcspawner-check-config``'s checks (the spawner's policy, the driver's own settings: the
SSH key and known_hosts read and parsed, a JWT minted from the key).

No hub starts here: tests/integration/test_helm_hub.py starts a real hub and proxy from
these files, as their pods would run, and spawns through the SSH and REST drivers on the
test cluster.
"""

from __future__ import annotations

import json
import os
import sys

import asyncssh
import helm_python as helm
import pytest
import yaml
from helmchart import CHART, by_kind, lay_out, render, values
from idleculler import SERVER_SCOPES, culler_of
from jupyterhub.app import JupyterHub
from jupyterhub.crypto import CryptKeeper
from traitlets.config.loader import PyFileConfigLoader

from hpcspawner.auth import ClusterOAuthenticator
from hpcspawner.checkconfig import check_config

SECRETS = "etc/jupyterhub/secrets"
OIDC_SECRET = b"oidc-client-secret-for-tests\n"
HUB_SECRETS = {"cookie-secret": "4d" * 32, "crypt-key": "5e" * 32, "proxy-token": "6f" * 32}


def values_yaml() -> dict:
    """The chart's defaults."""
    return yaml.safe_load((CHART / "values.yaml").read_text())


@pytest.fixture(scope="module")
def chart():
    with helm.Chart.load(str(CHART)) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def existing_secrets():
    """The Secrets the values files name, as a site would have made them."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    host = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    hosts = "".join(
        f"{name} {host}" for name in ("login1.cluster.example.org", "login2.cluster.example.org")
    )
    ssh = {
        "id_ed25519": key.export_private_key(),
        "id_ed25519-cert.pub": b"ssh-ed25519-cert-v01@openssh.com AAAA (not parsed here)\n",
        "known_hosts": hosts.encode(),
    }
    return {
        "hub-ssh": ssh,
        "hub-ssh-hosts": {"known_hosts": hosts.encode()},
        "hub-oidc": {"client-secret": OIDC_SECRET},
        "hub-secrets": {k: v.encode() for k, v in HUB_SECRETS.items()},
        "hub-db": {"url": b"postgresql://hub:db-password@db.uni.example/jupyterhub\n"},
        "slurm-jwt": {"jwt_hs256.key": os.urandom(32)},
        "slurm-token": {"token": b"eyJhbGciOiJIUzI1NiJ9.e30.signature\n"},
        "slurm-ca": {"ca.pem": b"-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n"},
    }


@pytest.fixture
def load(chart, existing_secrets, tmp_path):
    """load(name or values) -> (config, root): the hub's config from that render."""

    def load(name_or_values):
        v = values(name_or_values) if isinstance(name_or_values, str) else name_or_values
        config_file = lay_out(render(chart, v), existing_secrets, tmp_path)
        loader = PyFileConfigLoader(config_file.name, path=str(config_file.parent))
        return loader.load_config(), tmp_path

    return load


def test_the_config_file_is_the_charts_and_mounted_where_the_command_says(
    chart, existing_secrets, tmp_path
):
    rendered = render(chart, values("minimal"))
    (configmap,) = by_kind(rendered, "ConfigMap").values()
    source = (CHART / "files" / "jupyterhub_config.py").read_text()
    assert configmap["data"]["jupyterhub_config.py"] == source
    config_file = lay_out(rendered, existing_secrets, tmp_path)
    assert config_file == tmp_path / "etc/jupyterhub/config/jupyterhub_config.py"


def test_the_volumes_are_laid_out_as_the_kubelet_writes_them(chart, existing_secrets, tmp_path):
    """Links into a hidden payload directory (the config file finds its directory by
    abspath, not resolve), and the modes: 0400 for the Secrets and 0644 for the ConfigMap,
    each with the read access the pod's fsGroup adds."""
    lay_out(render(chart, values("minimal")), existing_secrets, tmp_path)
    config = tmp_path / "etc/jupyterhub/config"
    assert os.readlink(config / "jupyterhub_config.py") == "..data/jupyterhub_config.py"
    assert os.readlink(config / "..data").startswith("..")
    assert (config / "jupyterhub_config.py").stat().st_mode & 0o777 == 0o644
    secrets = tmp_path / SECRETS
    assert os.readlink(secrets / "ssh") == "..data/ssh"
    assert (secrets / "ssh/id_key").stat().st_mode & 0o777 == 0o440
    assert (tmp_path / "srv/jupyterhub").stat().st_mode & 0o2070 == 0o2070  # the database's


#: The driver's settings each values file makes: {Class: {trait: value}} ("{secrets}" is
#: where the Deployment mounts the Secrets), and traits left to the driver's defaults.
DRIVER_SETTINGS = [
    pytest.param(
        "ssh",
        {
            "SlurmSpawner": {"driver_class": "ssh"},
            "SSHSlurmDriver": {
                "hosts": [
                    "login1.cluster.example.org",
                    "login2.cluster.example.org:2222",
                    "[2001:db8::5]:2200",
                ],
                "port": 22,
                "login_user": "jupyterhub",
                "slurm_bin_dir": "/opt/slurm/bin",
                "client_keys": ["{secrets}/ssh/id_key"],
                "known_hosts": "{secrets}/ssh/known_hosts",
            },
        },
        # sudo (the driver's default) and "file" (the spawner's)
        {"SSHSlurmDriver": ["user_command_prefix"], "SlurmSpawner": ["token_delivery"]},
        id="ssh",
    ),
    pytest.param(
        "rest",
        {
            "SlurmSpawner": {"driver_class": "rest", "token_delivery": "environment"},
            "RESTSlurmDriver": {
                "url": "https://slurmrestd.cluster.example.org:6820",
                "service_user": "slurm",
                "jwt_key_file": "{secrets}/slurmrestd/jwt.key",
                "ca_file": "{secrets}/slurmrestd/ca.pem",
            },
        },
        {"RESTSlurmDriver": ["token_file"]},
        id="rest-jwt-key",
    ),
    pytest.param(
        "ingress",
        {"RESTSlurmDriver": {"token_file": "{secrets}/slurmrestd/token"}},
        {"RESTSlurmDriver": ["jwt_key_file", "ca_file"]},
        id="rest-token",
    ),
]


def settings(c, expected: dict) -> dict:
    """What ``c`` sets for the classes and traits that ``expected`` names."""
    return {section: {t: c[section].get(t) for t in traits} for section, traits in expected.items()}


@pytest.mark.parametrize(("name", "expected", "unset"), DRIVER_SETTINGS)
def test_driver_settings(load, name, expected, unset):
    c, root = load(name)
    wanted = json.loads(json.dumps(expected).replace("{secrets}", str(root / SECRETS)))
    assert settings(c, wanted) == wanted
    for section, traits in unset.items():
        assert not set(traits) & set(c[section])
    # the SSH key's certificate sits beside the key, where the driver looks for it
    if name == "ssh":
        assert (root / SECRETS / "ssh/id_key-cert.pub").is_file()
    # hpcspawner-check-config: the policy, the key and known_hosts parsed, a JWT minted
    check_config(c)


def test_ssh_spawner_and_auth_settings(load):
    c, _ = load("ssh")
    v = values("ssh")
    assert c.JupyterHub.spawner_class == "hpcspawner"
    assert c.JupyterHub.authenticator_class == "hpc"
    assert c.SlurmSpawner.partitions == v["spawner"]["partitions"]
    assert c.SlurmSpawner.profiles == v["spawner"]["profiles"]
    assert c.SlurmSpawner.environments == v["spawner"]["environments"]
    assert c.SlurmSpawner.default_options == v["spawner"]["defaultOptions"]
    assert c.SlurmSpawner.job_path == "/opt/jupyter/bin:/usr/local/bin:/usr/bin:/bin"
    assert c.SlurmSpawner.job_tag == "k8s-hub"
    assert c.SlurmSpawner.port_range == (40000, 49999)
    assert c.Spawner.start_timeout == 600
    a = c.ClusterOAuthenticator
    assert a.issuer == "https://keycloak.uni.example/realms/hpc"
    assert a.client_id == "jupyterhub"
    assert a.client_secret == OIDC_SECRET.decode().strip()
    assert a.oauth_callback_url == "https://jupyter.uni.example/hub/oauth_callback"
    assert a.login_service == "Uni Example SSO"
    assert a.username_claim == "eppn"
    assert a.username_strip_domains == ["uni.example"]
    assert list(a).index("manage_groups") < list(a).index("allowed_groups")
    assert a.allowed_groups == {"hpc-users"} and a.admin_groups == {"hpc-admins"}
    assert a.require_posix_account is True
    authenticator = ClusterOAuthenticator(config=c)
    assert authenticator.client_secret == OIDC_SECRET.decode().strip()
    assert authenticator.allowed_groups == {"hpc-users"}
    for section in (a, c.SlurmSpawner):
        assert (section.min_uid, section.max_uid) == (1000, 60000)


#: What the hub's config sets for a values file, {Class: {trait: value}}.
HUB_SETTINGS = [
    pytest.param(
        "ssh",
        {
            "JupyterHub": {
                "hub_bind_url": "http://:8081",
                # the proxy reaches the hub in the cluster, the jobs through the API Service
                "hub_connect_url": "http://jh-hpcspawner-hub:8081",
                "cleanup_servers": False,
                "db_url": "sqlite:////srv/jupyterhub/jupyterhub.sqlite",
            },
            "Spawner": {"hub_connect_url": "http://k8s-node1.uni.example:30081"},
            "ConfigurableHTTPProxy": {
                "should_start": False,
                "api_url": "http://jh-hpcspawner-proxy-api:8001",
                "auth_token": "3c" * 32,
            },
        },
        id="ssh",
    ),
    pytest.param(
        "everything",
        {
            "JupyterHub": {
                "base_url": "/jupyter/",
                "public_url": "https://jupyter.uni.example/jupyter/",
                "hub_connect_url": "http://hpc-jupyter-hub:8081",
                "db_url": "postgresql://hub@db.uni.example/jupyterhub",
            },
            "ClusterOAuthenticator": {
                "oauth_callback_url": "https://jupyter.uni.example/jupyter/hub/oauth_callback",
                "username_rewrite_template": "{user}",
                "slurm_accounts": "sacctmgr",
            },
            "SSHSlurmDriver": {"user_command_prefix": ["sudo", "-n", "-u", "{username}", "--"]},
            "SlurmSpawner": {
                "max_memory": "256G",
                "max_nodes": 4,
                "allowed_accounts": ["proj-a", "proj-b"],
                "allowed_reservations": [],
                "extra_sbatch_options": ["--constraint=ib"],
                "token_delivery": "file",
            },
            "Spawner": {"http_timeout": 180},
        },
        id="everything",
    ),
]


@pytest.mark.parametrize(("name", "expected"), HUB_SETTINGS)
def test_hub_settings(load, name, expected):
    c, _ = load(name)
    assert settings(c, expected) == expected
    check_config(c)


def test_the_hubs_secrets_reach_jupyterhub(load):
    c, _ = load("ssh")
    v = values("ssh")
    app = JupyterHub(config=c)
    assert app.cookie_secret == bytes.fromhex(v["hub"]["cookieSecret"])
    assert app.public_url == "https://jupyter.uni.example/"
    assert CryptKeeper(config=c).keys == [bytes.fromhex(v["hub"]["cryptKey"])]


def test_rest_values(load):
    c, _ = load("rest")
    # the hub's secrets from hub.existingSecret
    assert c.ConfigurableHTTPProxy.auth_token == HUB_SECRETS["proxy-token"]
    assert CryptKeeper(config=c).keys == [bytes.fromhex(HUB_SECRETS["crypt-key"])]
    # the login map, kept in the ConfigMap
    a = c.ClusterOAuthenticator
    assert a.require_posix_account is False
    with open(a.username_map_file) as f:
        assert json.load(f) == values("rest")["auth"]["mapping"]["map"]


def test_everything_passes_through_and_runs_extra_config(load):
    c, _ = load("everything")
    for section in (c.ClusterOAuthenticator, c.SlurmSpawner):
        assert section.min_uid == 10000
        assert "backup-svc" in section.refused_usernames
    # hub.config passes straight through, after the chart's settings
    assert c.JupyterHub.allow_named_servers is True
    assert c.SlurmSpawner.job_output == "/scratch/{username}/jupyter-%j.log"
    # extraConfig runs in the order of the names: 00-first, then 10-second
    assert c.JupyterHub.concurrent_spawn_limit == 50
    assert c.JupyterHub.active_server_limit == 200


def test_hub_config_wins_over_the_charts_settings(load):
    v = values("minimal")
    v["hub"]["config"] = {"SlurmSpawner": {"port_range": [41000, 41010]}}
    c, _ = load(v)
    assert c.SlurmSpawner.port_range == [41000, 41010]


def test_the_database_url_from_a_secret(load):
    c, _ = load("existing-secrets")
    assert c.JupyterHub.db_url == "postgresql://hub:db-password@db.uni.example/jupyterhub"


def test_a_missing_secret_file_names_it(chart, existing_secrets, tmp_path):
    config_file = lay_out(render(chart, values("rest")), existing_secrets, tmp_path)
    missing = tmp_path / SECRETS / "oidc/client-secret"
    missing.unlink()
    loader = PyFileConfigLoader(config_file.name, path=str(config_file.parent))
    with pytest.raises(ValueError, match=f"{missing} is missing"):
        loader.load_config()


# ----------------------------------------------------------------- the idle culler (cull)


def test_the_culler_runs_by_default_with_only_the_scopes_to_stop_servers(load):
    c, _ = load("minimal")
    culler = culler_of(c)
    # the hub's interpreter, on its API on loopback (past its Service and NetworkPolicies)
    assert culler.service["command"][0] == sys.executable
    assert culler.options.url == "http://127.0.0.1:8081/hub/api"
    assert set(culler.role["scopes"]) == SERVER_SCOPES
    defaults = values_yaml()["cull"]
    options = culler.options
    assert (options.timeout, options.cull_every) == (defaults["timeout"], defaults["every"])
    assert options.concurrency == defaults["concurrency"]
    assert (options.max_age, options.cull_users, options.remove_named_servers) == (0, False, False)
    # the job's safety net is the spawner's default: off
    assert "job_idle_timeout" not in c.SlurmSpawner


def test_every_culling_value_reaches_the_culler_and_the_spawner(load):
    c, _ = load("everything")
    culler = culler_of(c)
    options = culler.options
    assert options.url == "http://127.0.0.1:8081/jupyter/hub/api"  # under hub.baseUrl
    assert (options.timeout, options.cull_every, options.concurrency) == (7200, 300, 4)
    assert (options.max_age, options.remove_named_servers) == (172800, True)
    # deleting users needs admin:users; admins are spared
    assert (options.cull_users, options.cull_admin_users) == (True, False)
    assert set(culler.role["scopes"]) == SERVER_SCOPES | {"admin:users"}
    assert c.SlurmSpawner.job_idle_timeout == 14400


def test_every_0_leaves_the_interval_to_the_culler(load):
    v = values("minimal")
    v["cull"] = {"timeout": 1800, "every": 0}
    c, _ = load(v)
    options = culler_of(c).options
    assert "--cull-every" not in " ".join(culler_of(c).service["command"])
    assert options.cull_every == 900  # the culler's own default: half the timeout


def test_no_culler_when_disabled(load):
    v = values("minimal")
    v["cull"] = {"enabled": False}
    c, _ = load(v)
    hub = JupyterHub(config=c)
    assert hub.services == [] and hub.load_roles == []


def test_extra_config_adds_services_beside_the_culler(load):
    v = values("minimal")
    v["hub"]["extraConfig"] = {
        "services": 'c.JupyterHub.services.append({"name": "monitoring", "api_token": "x" * 32})'
    }
    c, _ = load(v)
    hub = JupyterHub(config=c)
    assert [s["name"] for s in hub.services] == ["jupyterhub-idle-culler", "monitoring"]
    culler_of(c)
