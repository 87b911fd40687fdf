"""The chart's values schema: one source, generated files up to date, shared with the spawner,
and values it must refuse refused with a message that names the value and the fix.
"""

from __future__ import annotations

import importlib.util

import helm_python as helm
import pytest
import yaml
from helmchart import CHART, REPO, merged, render, values

from hpcspawner.accounts import rules
from hpcspawner.resources import options

SCHEMA = yaml.safe_load((CHART / "values.schema.yaml").read_text())
DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text())


def _tool():
    spec = importlib.util.spec_from_file_location("helm_schema_tool", REPO / "helm/tools/schema.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _node(node: dict) -> dict:
    ref = node.get("$ref")
    return {**SCHEMA["definitions"][ref.rsplit("/", 1)[-1]], **node} if ref else node


def schema_keys(properties: dict = SCHEMA["properties"], path: str = "") -> set[str]:
    """Every value's dotted path, down through objects with a closed set of keys."""
    keys = set()
    for key, raw in properties.items():
        node = _node(raw)
        keys.add(path + key)
        if node.get("additionalProperties") is False and "properties" in node:
            keys |= schema_keys(node["properties"], f"{path}{key}.")
    return keys


def value_keys(value, path: str = "", stop: frozenset = frozenset()) -> set[str]:
    keys = set()
    for key, sub in value.items():
        keys.add(path + key)
        if isinstance(sub, dict) and path + key not in stop:
            keys |= value_keys(sub, f"{path}{key}.", stop)
    return keys


def _lookup(properties: dict, path: str) -> dict:
    node = {"properties": properties}
    for key in path.split("."):
        node = _node(node)["properties"][key]
    return node


#: values whose contents are free (maps, Kubernetes objects, secret refs): not schema keys
FREE = frozenset(
    path
    for path in schema_keys()
    if _node(_lookup(SCHEMA["properties"], path)).get("additionalProperties") is not False
    or "properties" not in _node(_lookup(SCHEMA["properties"], path))
)


def test_generated_files_are_up_to_date():
    stale = [str(p.relative_to(REPO)) for p in _tool().stale()]
    assert stale == [], f"out of date, run `python helm/tools/schema.py`: {stale}"


#: objects whose keys are all optional: a key left out keeps hpcspawner's default
OPTIONAL_KEYS = ("spawner.limits.", "spawner.allowed.")


def test_values_yaml_gives_every_value_a_default():
    documented = {key for key in schema_keys() if not key.startswith(OPTIONAL_KEYS)}
    assert value_keys(DEFAULTS, stop=FREE) == documented


def test_the_everything_values_file_sets_every_value():
    assert value_keys(values("everything"), stop=FREE) == schema_keys()


# ----------------------------------------------------------------- one model with the spawner


def _keys(path: str) -> set[str]:
    return set(_node(_lookup(SCHEMA["properties"], path))["additionalProperties"]["properties"])


@pytest.mark.parametrize(
    ("path", "model"),
    [
        pytest.param("spawner.partitions", options._PARTITION_KEYS, id="partitions"),
        pytest.param("spawner.environments", options._ENVIRONMENT_KEYS, id="environments"),
        pytest.param("spawner.profiles", options._PROFILE_KEYS, id="profiles"),
    ],
)
def test_structured_settings_have_the_spawners_keys(path, model):
    assert _keys(path) == set(model)


def test_user_options_are_the_spawners():
    profile_options = set(SCHEMA["definitions"]["userOptions"]["properties"])
    assert profile_options == set(options.OPTION_FIELDS) - {"profile"}
    name = SCHEMA["definitions"]["slurmName"]["pattern"]
    assert name == f"^{options.NAME_RE.pattern}$"


def test_account_defaults_are_hpcspawners():
    assert DEFAULTS["accounts"] == {
        "minUid": rules.DEFAULT_MIN_UID,
        "maxUid": rules.DEFAULT_MAX_UID,
        "refusedUsernames": list(rules.DEFAULT_REFUSED_NAMES),
        "refusedShells": list(rules.DEFAULT_REFUSED_SHELLS),
    }


# ----------------------------------------------------------------- what the schema refuses

NOT_A_SECRET_REF = "a secret is never a plain value here"
NOT_IN_HUB_CONFIG = "never in hub.config"


@pytest.mark.parametrize(
    ("change", "messages"),
    [
        pytest.param(
            {"slurm": {"driver": "local"}},
            ["at '/slurm/driver': value must be one of 'ssh', 'rest'"],
            id="driver-name",
        ),
        pytest.param(
            {"auth": {"oidc": {"clientSecret": "s3cr3t"}}},
            ["at '/auth/oidc/clientSecret'", NOT_A_SECRET_REF],
            id="client-secret-as-value",
        ),
        pytest.param(
            {"slurm": {"ssh": {"privateKey": "-----BEGIN OPENSSH PRIVATE KEY-----\n..."}}},
            ["at '/slurm/ssh/privateKey'", NOT_A_SECRET_REF],
            id="ssh-key-as-value",
        ),
        pytest.param(
            {"slurm": {"rest": {"jwtKey": "c2VjcmV0"}}},
            ["at '/slurm/rest/jwtKey'", NOT_A_SECRET_REF],
            id="jwt-key-as-value",
        ),
        pytest.param(
            {"hub": {"config": {"GenericOAuthenticator": {"client_secret": "x"}}}},
            ["at '/hub/config/GenericOAuthenticator/client_secret'", NOT_IN_HUB_CONFIG],
            id="client-secret-in-hub-config",
        ),
        pytest.param(
            {"hub": {"config": {"CryptKeeper": {"keys": ["ab" * 32]}}}},
            ["at '/hub/config/CryptKeeper/keys'", NOT_IN_HUB_CONFIG],
            id="crypt-key-in-hub-config",
        ),
        pytest.param(
            {"hub": {"config": {"JupyterHub": {"cookie_secret": "ab" * 32}}}},
            ["at '/hub/config/JupyterHub/cookie_secret'", NOT_IN_HUB_CONFIG],
            id="cookie-secret-in-hub-config",
        ),
        pytest.param(
            {"hub": {"db": {"type": "external", "url": "postgresql://hub:pw@db/jupyterhub"}}},
            ["at '/hub/db/url'", "a password in hub.db.url", "hub.db.urlSecret"],
            id="password-in-db-url",
        ),
        pytest.param(
            {"hub": {"cookieSecret": "not-hex"}},
            ["at '/hub/cookieSecret'", "does not match pattern"],
            id="cookie-secret-not-hex",
        ),
        pytest.param(
            {"spawner": {"portRange": "40000-49999"}},
            ["at '/spawner/portRange': got string, want array"],
            id="port-range-type",
        ),
        pytest.param(
            {"hub": {"apiService": {"nodePort": "30081"}}},
            ["at '/hub/apiService/nodePort': got string, want integer"],
            id="node-port-type",
        ),
        pytest.param(
            {"hub": {"apiService": {"nodePort": 8081}}},
            ["at '/hub/apiService/nodePort': minimum: got 8,081, want 30,000"],
            id="node-port-range",
        ),
        pytest.param(
            {"singleuser": {"image": "x"}},
            ["additional properties 'singleuser' not allowed"],
            id="unknown-top-level-key",
        ),
        pytest.param(
            {"hub": {"replicas": 2}},
            ["at '/hub': additional properties 'replicas' not allowed"],
            id="unknown-hub-key",
        ),
        pytest.param(
            {"spawner": {"partitions": {"debug": {"max_cpu": 2}}}},
            ["at '/spawner/partitions/debug': additional properties 'max_cpu' not allowed"],
            id="unknown-partition-limit",
        ),
        pytest.param(
            {"slurm": {"ssh": {"knownHosts": {}}}},
            ["at '/slurm/ssh/knownHosts': missing properties 'name', 'key'"],
            id="ssh-without-known-hosts",
        ),
        pytest.param(
            {"cull": {"timeout": 0}},
            ["at '/cull/timeout': minimum: got 0, want 1"],
            id="cull-timeout-zero",
        ),
        pytest.param(
            {"cull": {"every": "10m"}},
            ["at '/cull/every': got string, want integer"],
            id="cull-every-with-a-unit",
        ),
        pytest.param(
            {"spawner": {"jobIdleTimeout": -1}},
            ["at '/spawner/jobIdleTimeout': minimum: got -1, want 0"],
            id="negative-job-idle-timeout",
        ),
        pytest.param(
            {"networkPolicy": {"computeNodes": {"cidrs": ["10.20.0.0"]}}},
            ["at '/networkPolicy/computeNodes/cidrs/0'"],
            id="cidr-without-prefix",
        ),
    ],
)
def test_the_schema_refuses_with_a_clear_message(change, messages):
    v = merged(values("minimal"), change)
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmValuesError) as failure:
        render(chart, v)
    text = str(failure.value)
    assert [m for m in messages if m not in text] == [], text
