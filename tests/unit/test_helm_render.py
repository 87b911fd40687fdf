"""The Helm chart renders, lints, and makes valid, safe, stable Kubernetes objects.

No Kubernetes cluster can run in this project's CI (no API server package, no image
registry), so everything short of one is tested: Helm's own template engine and linter
(helm-python-sdk embeds Helm's Go library), each object against Kubernetes' OpenAPI
schemas of two versions (kubernetes-validate, strict: unknown fields are errors), yamllint,
and what the objects say. That the hub's config file works is
``tests/unit/test_helm_hubconfig.py``.
"""

from __future__ import annotations

import base64
import json
import re

import helm_python as helm
import kubernetes_validate
import pytest
from helmchart import (
    CHART,
    NAMESPACE,
    VALUES_DIR,
    VALUES_FILES,
    by_kind,
    component,
    merged,
    objects,
    render,
    values,
)
from yamllint import linter
from yamllint.config import YamlLintConfig

#: The chart's floor (Chart.yaml's kubeVersion) and the version Helm 4.2 renders for.
KUBERNETES_VERSIONS = ["1.25.0", "1.36.0"]

#: yamllint for the chart's own YAML and the rendered manifests: long lines are the
#: descriptions' and the base64 data's; documents need no `---`; Helm's toYaml writes a
#: list at its key's indentation.
YAMLLINT = YamlLintConfig(
    "extends: default\n"
    "rules: {line-length: disable, document-start: disable, truthy: {check-keys: false},"
    " indentation: {spaces: consistent, indent-sequences: whatever}}"
)


@pytest.fixture(scope="module")
def chart():
    with helm.Chart.load(str(CHART)) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def renders(chart):
    return {name: render(chart, values(name)) for name in VALUES_FILES}


def test_every_values_file_is_rendered():
    assert set(VALUES_FILES) >= {"minimal", "ssh", "rest", "existing-secrets", "ingress"}
    assert "everything" in VALUES_FILES


@pytest.mark.parametrize("name", VALUES_FILES)
def test_lint_is_clean(name):
    result = helm.lint(str(CHART), values=values(name), strict=True, namespace=NAMESPACE)
    problems = [m for m in result["messages"] if m["severity"] > 1]  # 1 is INFO (icon)
    assert problems == [] and result["errors"] == []


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", VALUES_FILES)
def test_objects_are_valid_kubernetes(renders, name, version):
    found = objects(renders[name])
    assert {o["kind"] for o in found} >= {"Deployment", "Service", "ConfigMap"}
    for obj in found:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{obj['kind']} {obj['metadata']['name']}: {e.message} at {list(e.path)}")


@pytest.mark.parametrize("name", VALUES_FILES)
def test_rendered_manifests_pass_yamllint(renders, name):
    for path, text in renders[name].items():
        if path.endswith(".yaml"):
            problems = [str(p) for p in linter.run(text, YAMLLINT)]
            assert problems == [], f"{path}: {problems}"


@pytest.mark.parametrize(
    "path",
    ["Chart.yaml", "values.yaml", "values.schema.yaml"] + [f"values:{n}" for n in VALUES_FILES],
)
def test_chart_yaml_and_values_files_pass_yamllint(path):
    file = VALUES_DIR / f"{path[7:]}.yaml" if path.startswith("values:") else CHART / path
    problems = [str(p) for p in linter.run(file.read_text(), YAMLLINT)]
    assert problems == []


# ----------------------------------------------------------------- what the objects say


def _containers(rendered):
    for deployment in by_kind(rendered, "Deployment").values():
        yield from deployment["spec"]["template"]["spec"]["containers"]


@pytest.mark.parametrize("name", VALUES_FILES)
def test_no_secret_in_arguments_or_plain_environment(renders, name):
    rendered = renders[name]
    secrets = {"hub-secret-values"}
    for file in ("ssh", "everything"):  # the values that carry the hub's secrets themselves
        v = values(file)
        secrets |= {v["hub"].get("cookieSecret"), v["hub"].get("cryptKey")}
        secrets.add(v.get("proxy", {}).get("secretToken"))
    secrets.discard(None)
    for container in _containers(rendered):
        words = container.get("command", []) + container.get("args", [])
        assert not [w for w in words if any(s in w for s in secrets)], container["name"]
        assert not [w for w in words if re.search(r"token|secret|key=|password", w, re.I)] or (
            container["name"] == "chp"
            and all(w.startswith(("--ssl-key=/etc/", "--ssl-cert=")) for w in words if "key" in w)
        )
        for env in container.get("env", []):
            # only configurable-http-proxy gets one, from the Secret: it reads no file
            assert "value" not in env, env
            assert env["valueFrom"]["secretKeyRef"]["key"] == "proxy-token"
            assert container["name"] == "chp"
    hub = component(rendered, "Deployment", "hub")["spec"]["template"]["spec"]
    assert "env" not in hub["containers"][0]


@pytest.mark.parametrize("name", VALUES_FILES)
def test_no_secret_value_in_the_config_map(renders, name):
    v = values(name)
    given = [v["hub"].get("cookieSecret"), v["hub"].get("cryptKey")]
    given.append(v.get("proxy", {}).get("secretToken"))
    (config,) = by_kind(renders[name], "ConfigMap").values()
    text = json.dumps(config["data"])
    assert not [s for s in given if s and s in text]


@pytest.mark.parametrize("name", VALUES_FILES)
def test_deployments_have_probes_resources_and_run_without_root(renders, name):
    for deployment in by_kind(renders[name], "Deployment").values():
        pod = deployment["spec"]["template"]["spec"]
        assert deployment["spec"]["replicas"] == 1
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            assert container["livenessProbe"]["httpGet"]["path"].endswith(
                ("/health", "_chp_healthz")
            )
            if name != "everything":  # which turns the hub's readiness probe off
                assert container["readinessProbe"]["httpGet"]
            assert container["resources"]["requests"]
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]


def test_the_hubs_probes_follow_its_base_url(renders):
    hub = component(renders["everything"], "Deployment", "hub")
    (container,) = hub["spec"]["template"]["spec"]["containers"]
    assert container["startupProbe"]["httpGet"]["path"] == "/jupyter/hub/health"
    assert "readinessProbe" not in container


def _labels(name):
    return {
        "app.kubernetes.io/name": "hpcspawner",
        "app.kubernetes.io/instance": "jh",
        "app.kubernetes.io/component": name,
    }


@pytest.mark.parametrize("name", [n for n in VALUES_FILES if n != "everything"])
def test_network_policies_select_the_pods_and_open_only_their_ports(renders, name):
    rendered = renders[name]
    v = values(name)
    cidrs = v["networkPolicy"]["computeNodes"]["cidrs"]
    hub = component(rendered, "NetworkPolicy", "hub")["spec"]
    proxy = component(rendered, "NetworkPolicy", "proxy")["spec"]
    # each selects the pods of its Deployment, and nothing else
    for spec, which in ((hub, "hub"), (proxy, "proxy")):
        deployment = component(rendered, "Deployment", which)
        assert spec["podSelector"]["matchLabels"] == _labels(which)
        assert deployment["spec"]["template"]["metadata"]["labels"] == _labels(which)
        assert spec["policyTypes"] == ["Ingress", "Egress"]
    # the hub: from the proxy and the compute nodes, on its one port
    (rule,) = hub["ingress"]
    assert rule["ports"] == [{"port": 8081, "protocol": "TCP"}]
    assert rule["from"][0] == {"podSelector": {"matchLabels": _labels("proxy")}}
    assert [peer["ipBlock"]["cidr"] for peer in rule["from"][1:]] == cidrs
    # the proxy: public HTTP(S); its API from the hub only
    public, api = proxy["ingress"]
    assert "from" not in public
    assert api == {
        "from": [{"podSelector": {"matchLabels": _labels("hub")}}],
        "ports": [{"port": 8001, "protocol": "TCP"}],
    }
    # both reach the compute nodes on the server ports only
    low, high = v.get("spawner", {}).get("portRange", [40000, 49999])
    servers = {"protocol": "TCP", "port": low, "endPort": high}
    for spec in (hub, proxy):
        (to_nodes,) = [r for r in spec["egress"] if "endPort" in r["ports"][0]]
        assert [p["ipBlock"]["cidr"] for p in to_nodes["to"]] == cidrs
        assert to_nodes["ports"] == [servers]
    # the proxy reaches the hub, the hub the proxy's API
    assert {
        "to": [{"podSelector": {"matchLabels": _labels("hub")}}],
        "ports": [{"port": 8081, "protocol": "TCP"}],
    } in proxy["egress"]
    assert {
        "to": [{"podSelector": {"matchLabels": _labels("proxy")}}],
        "ports": [{"port": 8001, "protocol": "TCP"}],
    } in hub["egress"]


@pytest.mark.parametrize(
    ("name", "driver_ports", "driver_to"),
    [
        pytest.param("ssh", [22, 2222, 2200], None, id="ssh-hosts-ports"),
        pytest.param("rest", [6820], ["10.30.0.10/32"], id="rest-url-port"),
        pytest.param("ingress", [443], None, id="rest-https-default"),
    ],
)
def test_the_hub_reaches_its_driver_and_the_provider_on_their_ports_only(
    renders, name, driver_ports, driver_to
):
    egress = component(renders[name], "NetworkPolicy", "hub")["spec"]["egress"]
    driver, oidc = egress[3], egress[4]
    assert [p["port"] for p in driver["ports"]] == driver_ports
    assert ([t["ipBlock"]["cidr"] for t in driver.get("to", [])] or None) == driver_to
    assert oidc == {"ports": [{"port": 443, "protocol": "TCP"}]}


def test_extra_network_peers_are_added(renders):
    rendered = renders["everything"]
    hub = component(rendered, "NetworkPolicy", "hub")["spec"]
    proxy = component(rendered, "NetworkPolicy", "proxy")["spec"]
    monitoring = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    }
    assert hub["ingress"][0]["from"][-1] == monitoring
    assert hub["egress"][-1]["ports"] == [{"port": 5432, "protocol": "TCP"}]
    assert hub["egress"][4]["to"] == [{"ipBlock": {"cidr": "192.0.2.10/32"}}]
    assert proxy["ingress"][0]["from"][0]["namespaceSelector"]


def test_network_policies_can_be_turned_off(chart):
    v = values("minimal")
    v["networkPolicy"] = {"enabled": False}
    assert by_kind(render(chart, v), "NetworkPolicy") == {}


@pytest.mark.parametrize(
    ("name", "driver", "expected"),
    [
        pytest.param(
            "ssh",
            "ssh",
            {
                "hosts": [
                    "login1.cluster.example.org",
                    "login2.cluster.example.org:2222",
                    "[2001:db8::5]:2200",
                ],
                "loginUser": "jupyterhub",
            },
            id="ssh",
        ),
        pytest.param(
            "rest",
            "rest",
            {"url": "https://slurmrestd.cluster.example.org:6820", "serviceUser": "slurm"},
            id="rest",
        ),
    ],
)
def test_the_hub_config_carries_the_driver_settings(renders, name, driver, expected):
    (config,) = by_kind(renders[name], "ConfigMap").values()
    settings = json.loads(config["data"]["values.json"])
    assert settings["slurm"]["driver"] == driver
    assert expected.items() <= settings["slurm"][driver].items()
    assert "c.SlurmSpawner.driver_class" in config["data"]["jupyterhub_config.py"]


@pytest.mark.parametrize(
    ("name", "files"),
    [
        pytest.param("ssh", {"ssh/id_key", "ssh/id_key-cert.pub", "ssh/known_hosts"}, id="ssh"),
        pytest.param("rest", {"slurmrestd/jwt.key", "slurmrestd/ca.pem"}, id="rest"),
        pytest.param("ingress", {"slurmrestd/token"}, id="rest-token"),
        pytest.param(
            "existing-secrets",
            {"db/url", "ssh/id_key", "ssh/id_key-cert.pub", "ssh/known_hosts"},
            id="existing",
        ),
    ],
)
def test_the_drivers_secrets_are_mounted_as_files(renders, name, files):
    pod = component(renders[name], "Deployment", "hub")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "secrets"]
    assert volume["projected"]["defaultMode"] == 0o400
    paths = {i["path"] for s in volume["projected"]["sources"] for i in s["secret"]["items"]}
    hub = {"hub/cookie-secret", "hub/crypt-key", "hub/proxy-token", "oidc/client-secret"}
    assert paths == hub | files


def test_the_hub_api_service_has_a_fixed_port(renders):
    api = by_kind(renders["minimal"], "Service")["jh-hpcspawner-hub-api"]["spec"]
    assert api["type"] == "NodePort"
    assert api["ports"][0]["nodePort"] == 30081
    assert api["externalTrafficPolicy"] == "Local"
    assert api["selector"] == _labels("hub")
    lb = by_kind(renders["rest"], "Service")["jh-hpcspawner-hub-api"]["spec"]
    assert lb["type"] == "LoadBalancer" and lb["ports"][0]["port"] == 8081
    assert lb["loadBalancerSourceRanges"] == ["10.20.0.0/16"]


def test_the_proxy_terminates_tls_on_a_load_balancer(renders):
    rendered = renders["rest"]
    public = by_kind(rendered, "Service")["jh-hpcspawner-proxy-public"]["spec"]
    assert public["type"] == "LoadBalancer"
    assert [(p["port"], p["targetPort"]) for p in public["ports"]] == [(80, "http"), (443, "https")]
    (chp,) = component(rendered, "Deployment", "proxy")["spec"]["template"]["spec"]["containers"]
    assert "--ssl-cert=/etc/chp/tls/tls.crt" in chp["command"]
    assert "--redirect-to=443" in chp["command"]
    assert chp["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"


@pytest.mark.parametrize(
    ("name", "hosts", "tls"),
    [
        pytest.param("ingress", ["jupyter.uni.example"], True, id="host-from-publicUrl"),
        pytest.param(
            "everything", ["jupyter.uni.example", "hpc-jupyter.uni.example"], True, id="hosts"
        ),
    ],
)
def test_the_ingress_routes_to_the_proxy(renders, name, hosts, tls):
    (ingress,) = by_kind(renders[name], "Ingress").values()
    assert [r["host"] for r in ingress["spec"]["rules"]] == hosts
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"].endswith("-proxy-public") and backend["port"] == {"name": "http"}
    assert bool(ingress["spec"].get("tls")) == tls


def test_the_proxy_routes_to_the_hub_service(renders):
    rendered = renders["minimal"]
    (chp,) = component(rendered, "Deployment", "proxy")["spec"]["template"]["spec"]["containers"]
    assert "--default-target=http://jh-hpcspawner-hub:8081" in chp["command"]
    assert "jh-hpcspawner-hub" in by_kind(rendered, "Service")


# ----------------------------------------------------------------- secrets: kept, and stable


@pytest.mark.parametrize("name", ["existing-secrets", "ssh", "rest", "ingress", "everything"])
def test_renders_with_the_same_values_are_byte_identical(chart, name):
    first, second = render(chart, values(name)), render(chart, values(name))
    assert first == second


def test_with_an_existing_secret_the_chart_renders_none(renders):
    assert by_kind(renders["existing-secrets"], "Secret") == {}
    pod = component(renders["existing-secrets"], "Deployment", "hub")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "secrets"]
    assert volume["projected"]["sources"][0]["secret"]["name"] == "hub-secrets"


def test_values_secrets_are_kept_as_given(renders):
    (secret,) = by_kind(renders["ssh"], "Secret").values()
    assert base64.b64decode(secret["data"]["crypt-key"]).decode() == "2b" * 32
    assert base64.b64decode(secret["data"]["cookie-secret"]).decode() == "1a" * 32


def test_a_render_without_the_cluster_refuses_to_generate_secrets(chart):
    v = values("minimal")
    v["hub"]["generateSecretsWithoutCluster"] = False
    with pytest.raises(helm.HelmRenderError) as failure:
        render(chart, v)
    message = str(failure.value)
    assert "this render cannot see the cluster" in message
    assert "hub.existingSecret" in message and "hub.generateSecretsWithoutCluster" in message


def test_generated_secrets_are_random_hex_and_differ_per_offline_render(chart):
    first = by_kind(render(chart, values("minimal")), "Secret")
    second = by_kind(render(chart, values("minimal")), "Secret")
    for key in ("cookie-secret", "crypt-key", "proxy-token"):
        one = base64.b64decode(first["jh-hpcspawner-hub-secret"]["data"][key]).decode()
        assert re.fullmatch("[0-9a-f]{64}", one)
        assert one != base64.b64decode(second["jh-hpcspawner-hub-secret"]["data"][key]).decode()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"publicUrl": ""}, "publicUrl: the address users open", id="no-publicUrl"),
        pytest.param(
            {"hub": {"connectUrl": ""}},
            "hub.connectUrl: the address the compute nodes",
            id="no-connectUrl",
        ),
        pytest.param(
            {"hub": {"existingSecret": "s", "cryptKey": "ab" * 32}},
            "leave hub.cookieSecret, hub.cryptKey and proxy.secretToken empty",
            id="existing-and-values",
        ),
        pytest.param(
            {"hub": {"db": {"type": "external"}}},
            "give exactly one of hub.db.url",
            id="external-db-no-url",
        ),
        pytest.param(
            {"hub": {"db": {"url": "sqlite:///x"}}},
            "are for hub.db.type external",
            id="url-without-external",
        ),
        pytest.param(
            {"slurm": {"driver": "rest", "rest": {"url": "https://r:6820"}}},
            "give exactly one of jwtKey",
            id="rest-no-token",
        ),
        pytest.param(
            {
                "slurm": {
                    "driver": "rest",
                    "rest": {"url": "https://r", "token": {"name": "t", "key": "t"}},
                },
                "spawner": {"tokenDelivery": "file"},
            },
            "slurmrestd cannot write the user's files",
            id="rest-token-file",
        ),
        pytest.param(
            {"ingress": {"enabled": True}, "proxy": {"tls": {"secretName": "t"}}},
            "not both",
            id="tls-twice",
        ),
        pytest.param(
            {"networkPolicy": {"computeNodes": {"cidrs": []}}},
            "networkPolicy.computeNodes.cidrs",
            id="no-cidrs",
        ),
        pytest.param(
            {"spawner": {"portRange": [0, 0]}},
            "spawner.portRange [0, 0]",
            id="any-port-with-policies",
        ),
        pytest.param(
            {"spawner": {"portRange": [50000, 40000]}}, "1024 <= low <= high", id="bad-range"
        ),
    ],
)
def test_inconsistent_values_fail_with_what_to_do(chart, change, message):
    v = merged(values("minimal"), change)
    with pytest.raises(helm.HelmError) as failure:
        render(chart, v)
    assert message in str(failure.value)


def test_notes_tell_the_url_the_api_port_and_what_is_left(renders):
    notes = renders["minimal"]["NOTES.txt"]
    assert "Users open:  https://jupyter.uni.example/" in notes
    assert "http://k8s-node1.uni.example:30081" in notes and "TCP port 30081" in notes
    assert "https://jupyter.uni.example/hub/oauth_callback" in notes
    assert "TCP ports 40000-49999" in notes
    assert "getpwnam" in notes
