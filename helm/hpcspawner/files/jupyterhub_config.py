"""The hub's configuration in hpcspawner's Helm chart (the chart's ConfigMap mounts it).

It reads what the chart gives it, all relative to its own directory, so that the same file
works wherever the Deployment (or a test) lays the files out:

- ``values.json`` beside it: the chart's values that concern the hub (no secret is in it);
- ``usernames.json`` beside it, if ``auth.mapping.map`` is set;
- ``../secrets/``: the Secrets, as files the Deployment projects there (read-only, 0400 + fsGroup):
  ``hub/{cookie-secret,crypt-key,proxy-token}``, ``oidc/client-secret``, ``db/url``,
  ``ssh/{id_key,id_key-cert.pub,known_hosts}``, ``slurmrestd/{jwt.key,token,ca.pem}``.

No secret comes from argv or the environment. The order: the chart's structured settings,
then ``hub.config`` (any traitlet, so it wins), then ``hub.extraConfig`` by name.
"""

import json
import os
import sys
from pathlib import Path

c = get_config()  # noqa: F821 - provided by traitlets' config loader

# abspath, not resolve(): a ConfigMap's files are symlinks into a hidden, dated directory
CONFIG_DIR = Path(os.path.abspath(__file__)).parent
SECRETS = CONFIG_DIR.parent / "secrets"
VALUES = json.loads((CONFIG_DIR / "values.json").read_text())
CHART = VALUES["chart"]


def secret_path(name: str) -> str:
    """The path of a mounted secret file, which must exist."""
    path = SECRETS / name
    if not path.is_file():
        raise ValueError(f"{path} is missing: the hub's Deployment mounts it from a Secret")
    return str(path)


def read_secret(name: str) -> str:
    return Path(secret_path(name)).read_text().strip()


def public_url() -> str:
    return CHART["publicUrl"].rstrip("/") + CHART["baseUrl"]


def set_given(section, values: dict, traits: dict) -> None:
    """``section[trait] = values[key]`` for each ``key: trait`` whose value is set: an empty
    value keeps hpcspawner's (or JupyterHub's) default."""
    for key, trait in traits.items():
        if values.get(key):
            section[trait] = values[key]


# ----------------------------------------------------------------- the hub, the proxy, the database


def configure_hub() -> None:
    port = CHART["hubPort"]
    c.JupyterHub.base_url = CHART["baseUrl"]
    c.JupyterHub.public_url = public_url()
    c.JupyterHub.hub_bind_url = f"http://:{port}"
    # the proxy reaches the hub inside the cluster; the jobs through the hub's API Service
    c.JupyterHub.hub_connect_url = f"http://{CHART['hubService']}:{port}"
    c.Spawner.hub_connect_url = CHART["connectUrl"]
    # a restarted or upgraded hub finds its users' jobs again through Slurm
    c.JupyterHub.cleanup_servers = False
    c.JupyterHub.authenticator_class = "hpc"
    c.JupyterHub.spawner_class = "hpcspawner"

    c.ConfigurableHTTPProxy.should_start = False
    c.ConfigurableHTTPProxy.api_url = CHART["proxyApiUrl"]
    c.ConfigurableHTTPProxy.auth_token = read_secret("hub/proxy-token")
    c.JupyterHub.cookie_secret = read_secret("hub/cookie-secret")
    c.CryptKeeper.keys = [read_secret("hub/crypt-key")]

    db = CHART["db"]
    if db["type"] == "sqlite-pvc":
        c.JupyterHub.db_url = f"sqlite:///{CHART['dataDir']}/jupyterhub.sqlite"
    elif db["type"] == "sqlite-memory":
        c.JupyterHub.db_url = "sqlite://"
    else:
        c.JupyterHub.db_url = read_secret("db/url") if db["urlInSecret"] else db["url"]


# ----------------------------------------------------------------- Slurm


def configure_driver(slurm: dict) -> None:
    c.SlurmSpawner.driver_class = slurm["driver"]
    if slurm["driver"] == "ssh":
        ssh = slurm["ssh"]
        c.SSHSlurmDriver.hosts = ssh["hosts"]
        c.SSHSlurmDriver.port = ssh["port"]
        # the key's certificate, if any, is id_key-cert.pub beside it: the driver sends it along
        c.SSHSlurmDriver.client_keys = [secret_path("ssh/id_key")]
        c.SSHSlurmDriver.known_hosts = secret_path("ssh/known_hosts")
        traits = {
            "loginUser": "login_user",
            "slurmBinDir": "slurm_bin_dir",
            "userCommandPrefix": "user_command_prefix",
        }
        set_given(c.SSHSlurmDriver, ssh, traits)
    else:
        rest = slurm["rest"]
        c.RESTSlurmDriver.url = rest["url"]
        c.RESTSlurmDriver.service_user = rest["serviceUser"]
        if rest["jwtKey"]:
            c.RESTSlurmDriver.jwt_key_file = secret_path("slurmrestd/jwt.key")
        else:
            c.RESTSlurmDriver.token_file = secret_path("slurmrestd/token")
        if rest["ca"]:
            c.RESTSlurmDriver.ca_file = secret_path("slurmrestd/ca.pem")


#: spawner.<value> -> c.SlurmSpawner.<trait>, set when the value is not empty
SPAWNER_TRAITS = {
    "jobPath": "job_path",
    "jobTag": "job_tag",
    "nodeAddress": "node_address",
    "batchScriptPrologue": "batch_script_prologue",
    "extraSbatchOptions": "extra_sbatch_options",
    "defaultOptions": "default_options",
    "partitions": "partitions",
    "environments": "environments",
    "profiles": "profiles",
    "jobIdleTimeout": "job_idle_timeout",
}
LIMIT_TRAITS = {
    "maxNodes": "max_nodes",
    "maxCpus": "max_cpus",
    "maxGpus": "max_gpus",
    "maxMemory": "max_memory",
    "maxRuntime": "max_runtime",
}


def configure_spawner(spawner: dict, driver: str) -> None:
    set_given(c.SlurmSpawner, spawner, SPAWNER_TRAITS)
    # slurmrestd cannot write the token's file (the chart refuses "file" with it)
    delivery = spawner["tokenDelivery"] or ("environment" if driver == "rest" else "")
    if delivery:
        c.SlurmSpawner.token_delivery = delivery
    c.SlurmSpawner.port_range = tuple(spawner["portRange"])
    c.SlurmSpawner.allow_custom_options = spawner["allowCustomOptions"]
    set_given(c.SlurmSpawner, spawner["limits"], LIMIT_TRAITS)
    for kind, names in spawner["allowed"].items():
        c.SlurmSpawner[f"allowed_{kind}"] = names
    c.Spawner.start_timeout = spawner["startTimeout"]
    c.Spawner.http_timeout = spawner["httpTimeout"]


# ----------------------------------------------------------------- idle servers

CULLER = "jupyterhub-idle-culler"


def configure_culler(cull: dict) -> None:
    """jupyterhub-idle-culler as a hub service, with a role of only the scopes it needs."""
    if not cull["enabled"]:
        return
    command = [
        sys.executable,
        "-m",
        "jupyterhub_idle_culler",
        # the hub's API on loopback: its Service and the NetworkPolicies stay out of the way
        f"--url=http://127.0.0.1:{CHART['hubPort']}{CHART['baseUrl']}hub/api",
        f"--timeout={cull['timeout']}",
        f"--concurrency={cull['concurrency']}",
    ]
    if cull["every"]:
        command.append(f"--cull-every={cull['every']}")
    if cull["maxAge"]:
        command.append(f"--max-age={cull['maxAge']}")
    # the culler's booleans need a value: a bare --cull-users is refused
    if cull["removeNamedServers"]:
        command.append("--remove-named-servers=true")
    scopes = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
    if cull["users"]:
        command.append("--cull-users=true")
        command.append(f"--cull-admin-users={str(cull['adminUsers']).lower()}")
        scopes.append("admin:users")
    c.JupyterHub.services.append({"name": CULLER, "command": command})
    c.JupyterHub.load_roles.append(
        {
            "name": CULLER,
            "description": "Stop servers idle for longer than the chart's cull.timeout",
            "scopes": scopes,
            "services": [CULLER],
        }
    )


# ----------------------------------------------------------------- logins


def configure_auth(auth: dict, accounts: dict) -> None:
    oidc = auth["oidc"]
    a = c.ClusterOAuthenticator
    a.issuer = oidc["issuer"]
    a.client_id = oidc["clientId"]
    a.client_secret = read_secret("oidc/client-secret")
    a.oauth_callback_url = oidc["callbackUrl"] or f"{public_url()}hub/oauth_callback"
    set_given(a, oidc, {"loginService": "login_service"})
    a.enable_auth_state = True

    mapping = auth["mapping"]
    a.username_claim = mapping["claim"]
    a.username_strip_domains = mapping["stripDomains"]
    rewrite = {
        "rewritePattern": "username_rewrite_pattern",
        "rewriteTemplate": "username_rewrite_template",
    }
    set_given(a, mapping, rewrite)
    if mapping["map"]:
        a.username_map_file = str(CONFIG_DIR / "usernames.json")

    groups = auth["groups"]
    if groups["allowed"] or groups["admin"]:
        a.manage_groups = True  # before the groups: oauthenticator refuses them otherwise
        a.allowed_groups = set(groups["allowed"])
        a.admin_groups = set(groups["admin"])
    a.require_posix_account = auth["requirePosixAccount"]
    a.slurm_accounts = auth["slurmAccounts"]
    set_given(a, auth, {"noAccountMessage": "no_account_message", "noAccountUrl": "no_account_url"})

    # the same account rules for the login and for the spawner (it checks again)
    for section in (a, c.SlurmSpawner):
        section.min_uid = accounts["minUid"]
        section.max_uid = accounts["maxUid"]
        section.refused_usernames = accounts["refusedUsernames"]
        section.refused_shells = accounts["refusedShells"]


# ----------------------------------------------------------------- the site's own


def apply_passthrough(config: dict) -> None:
    """``hub.config``: ``{Class: {trait: value}}``, as ``c.Class.trait = value``."""
    for section, traits in config.items():
        for trait, value in traits.items():
            c[section][trait] = value


def run_extra_config(snippets: dict) -> None:
    """``hub.extraConfig``: the admin's Python, in the order of the snippets' names."""
    for name in sorted(snippets):
        code = compile(snippets[name], f"<hub.extraConfig.{name}>", "exec")
        exec(code, globals())  # noqa: S102 - the admin's own config, as jupyterhub_config.py is


configure_hub()
configure_driver(VALUES["slurm"])
configure_spawner(VALUES["spawner"], VALUES["slurm"]["driver"])
configure_culler(VALUES["cull"])
configure_auth(VALUES["auth"], VALUES["accounts"])
apply_passthrough(VALUES["config"])
run_extra_config(VALUES["extraConfig"])
