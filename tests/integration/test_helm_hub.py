"""The Helm chart's hub runs for real: rendered, laid out as its pods, spawning on Slurm.

The chart (helm/hpcspawner) is rendered with values for the test cluster: the SSH driver
to the login node's sshd, or slurmrestd with the cluster's JWT key (``driver``, as in
test_off_cluster.py), and the chart's own logins through a real OpenID Connect provider on
loopback (tests/integration/provider.py). The rendered ConfigMap and Secrets are laid out
and mounted as the hub's Deployment mounts them, and the proxy and the hub start as
processes with their Deployments' command and environment (tests/integration/chartpods.py
says exactly what stands in for Kubernetes). The hub runs off the cluster, as a hub in
Kubernetes is, in two ways: from the test venv in a mount namespace without Slurm's
clients and munge (``off_cluster``), and from the hub's image (helm/image) with podman, as
the pod's user with a read-only root file system.

Then alice logs in through the provider as a browser would (without one: the code flow is
three redirects), takes a token on her own session, starts her server, which runs as a
Slurm job with the chart's default options, reaches it through the proxy, and stops it.

Run it (root, the test cluster up, as for every test here)::

    .venv/jh6/bin/pytest tests/integration/test_helm_hub.py -v
"""

from __future__ import annotations

import os
import secrets
import shutil

import pytest

from . import offcluster
from .browser import ARTIFACTS
from .chartpods import ChartHub, ImageChartHub
from .hub import squeue_fields, tagged_jobs, wait_left_queue
from .offcluster import (
    JWT_KEY,
    KNOWN_HOSTS,
    LOGIN_NODE,
    RESTD_URL,
    SERVICE,
    SSH_DIR,
    accepted_logins,
    attempts,
)
from .provider import start_provider

driver = offcluster.driver
off_cluster = offcluster.off_cluster

ALICE = {
    "sub": "u-alice",
    "preferred_username": "alice",  # the chart's default claim (auth.mapping.claim)
    "email": "alice@uni.example",
    "groups": ["hpc-users"],
}
DEFAULT_OPTIONS = {"partition": "debug", "cpus": 1, "memory": "512M", "runtime": "0:10:00"}

#: slurm: per driver, with the Secrets the values name (read from the test cluster's files)
DRIVER_VALUES = {
    "ssh": (
        {
            "driver": "ssh",
            "ssh": {
                "hosts": [LOGIN_NODE],
                "loginUser": SERVICE,
                "privateKey": {"name": "hub-ssh", "key": "id_ed25519"},
                "knownHosts": {"name": "hub-ssh", "key": "known_hosts"},
            },
        },
        lambda: {
            "hub-ssh": {
                "id_ed25519": (SSH_DIR / "id_ed25519").read_bytes(),
                "known_hosts": KNOWN_HOSTS.read_bytes(),
            }
        },
    ),
    "rest": (
        {
            "driver": "rest",
            "rest": {
                "url": RESTD_URL,
                "serviceUser": "slurm",
                "jwtKey": {"name": "slurm-jwt", "key": "jwt_hs256.key"},
            },
        },
        lambda: {"slurm-jwt": {"jwt_hs256.key": JWT_KEY.read_bytes()}},
    ),
}


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    provider = start_provider(tmp_path_factory.mktemp("oidc"), [ALICE])
    yield provider
    provider.stop()
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(provider.log_path, ARTIFACTS / "oidc-provider-helm.log")


#: where the hub runs: the test venv in a mount namespace, or the hub's image with podman
HUB_CLASSES = {"venv": ChartHub, "image": ImageChartHub}


@pytest.fixture(params=list(HUB_CLASSES))
def start_chart_hub(request, driver, off_cluster, provider, hub_factory, singleuser_venv):
    """start_chart_hub() -> the chart's hub and proxy for ``driver``, off the cluster, the
    hub run from the test venv or from the hub's image; all it started is stopped at the
    end (hub, proxy and jobs by pid and tag, mount points, the container)."""
    started = []

    def start() -> ChartHub:
        name, _ = driver  # the chart makes the hub's config: the fixture's is not used
        slurm, driver_secrets = DRIVER_VALUES[name]
        values = {
            # the hub's own secrets in the values: the chart renders its Secret from them
            "hub": {"cookieSecret": secrets.token_hex(32), "cryptKey": secrets.token_hex(32)},
            "proxy": {"secretToken": secrets.token_hex(32)},
            "slurm": slurm,
            "spawner": {
                "jobPath": f"{singleuser_venv}/bin:/usr/local/bin:/usr/bin:/bin",
                "defaultOptions": DEFAULT_OPTIONS,
                "startTimeout": 180,
            },
            "auth": {
                "oidc": {
                    "issuer": provider.url,
                    "clientId": "hpcspawner-helm-test",  # the provider takes any client
                    "clientSecret": {"name": "hub-oidc", "key": "client-secret"},
                },
                "groups": {"allowed": ["hpc-users"]},
            },
            # the test cluster's nodes (scripts/cluster/lib.sh); no NetworkPolicy applies here
            "networkPolicy": {"computeNodes": {"cidrs": ["10.250.0.0/24"]}},
        }
        oidc = {"hub-oidc": {"client-secret": secrets.token_hex(16).encode()}}
        hub = hub_factory(
            hub_class=HUB_CLASSES[request.param],
            values=values,
            existing_secrets={**oidc, **driver_secrets()},
            command_prefix=off_cluster[0],
        )
        started.append(hub)
        return hub

    yield start
    for hub in started:
        hub_factory.stop(hub)
        for kept in ("proxy.log", "rendered.yaml", "substitutions.txt"):
            if (hub.directory / kept).exists():
                shutil.copy(hub.directory / kept, ARTIFACTS / f"helm-{hub.job_tag}-{kept}")


def log_in(hub: ChartHub, provider, sub: str) -> None:
    """The OpenID Connect code flow as a browser follows it: the hub sends the browser to
    the provider (with PKCE), the provider's form sends it back with a code, and the hub's
    callback sets the login cookie."""
    session = hub.session
    r = session.get(f"{hub.url}/hub/oauth_login?next=/hub/home", allow_redirects=False, timeout=30)
    assert r.status_code == 302, (r.status_code, r.text, hub.log_tail())
    authorize = r.headers["Location"]
    assert authorize.startswith(f"{provider.url}/oauth2/authorize?"), authorize
    r = session.post(authorize, data={"sub": sub}, allow_redirects=False, timeout=30)
    assert r.status_code == 302, (r.status_code, r.text)
    callback = r.headers["Location"]
    # the callback URL the chart made from publicUrl
    assert callback.startswith(f"{hub.url}/hub/oauth_callback?"), callback
    r = session.get(callback, allow_redirects=False, timeout=30)
    assert r.status_code == 302, (r.status_code, r.text, hub.log_tail())
    assert r.headers["Location"].endswith("/hub/home"), r.headers["Location"]


def own_token(hub: ChartHub, user: str) -> str:
    """A token the logged-in ``user`` makes on her own session (as on the hub's token page)."""
    hub.session.get(f"{hub.url}/hub/home", timeout=30).raise_for_status()  # the _xsrf cookie
    r = hub.session.post(
        f"{hub.url}/hub/api/users/{user}/tokens",
        json={"note": "test_helm_hub", "expires_in": 3600},
        headers={"X-XSRFToken": hub.session.cookies.get("_xsrf", "")},
        timeout=30,
    )
    assert r.status_code == 201, (r.status_code, r.text)
    return r.json()["token"]


def mounts(pid: int) -> dict[str, str]:
    """Mount point -> "ro" or "rw", as process ``pid`` sees its file system."""
    found = {}
    with open(f"/proc/{pid}/mountinfo") as f:
        for line in f:
            fields = line.split()
            found[fields[4]] = fields[5].split(",")[0]
    return found


def assert_runs_as_its_pod(hub: ChartHub) -> None:
    """The hub runs the Deployment's command, in its working directory, with its volumes
    where the Deployment mounts them (the ConfigMap and the Secrets read-only), no secret in
    its arguments or environment; from the image, also as the pod's user with a read-only
    root file system; and its database is on the claim's stand-in."""
    (container,) = hub.hub_pod["containers"]
    pid = hub.hub_pid()
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        cmdline = f.read()
    argv = cmdline.decode().split("\0")[:-1]
    assert argv[-len(container["command"]) + 1 :] == container["command"][1:], argv
    assert argv[1].endswith("/jupyterhub"), argv
    # no secret in its arguments or its environment: they are files
    with open(f"/proc/{pid}/environ", "rb") as f:
        environ = f.read()
    for secret_name, secret in hub.secrets.items():
        for key, value in secret.items():
            assert value.strip() not in cmdline + environ, (secret_name, key)
    assert os.readlink(f"/proc/{pid}/cwd") == container["workingDir"]
    seen = mounts(pid)
    for mount in container["volumeMounts"]:
        if mount["name"] != "tmp":  # the venv's hub has the host's /tmp (chartpods.py)
            expected = "ro" if mount.get("readOnly") else "rw"
            assert seen.get(mount["mountPath"]) == expected, (mount, seen)
    if isinstance(hub, ImageChartHub):  # as the pod's securityContext says
        with open(f"/proc/{pid}/status") as f:
            (uids,) = [line.split()[1:] for line in f if line.startswith("Uid:")]
        assert set(uids) == {str(hub.hub_pod["securityContext"]["runAsUser"])}, uids
        assert seen["/"] == "ro"
    # the database is on the volume standing in for the PersistentVolumeClaim
    assert (hub.root / "srv/jupyterhub/jupyterhub.sqlite").is_file()


def test_the_charts_hub_spawns_through_its_proxy(start_chart_hub, driver, off_cluster, provider):
    name, _ = driver
    _, shim_log = off_cluster
    attempts_before = len(attempts(shim_log))
    logins_before = accepted_logins()
    hub = start_chart_hub()

    assert_runs_as_its_pod(hub)

    log_in(hub, provider, ALICE["sub"])
    token = own_token(hub, "alice")
    # the Hub helpers call the API with admin_token: here alice's own (the chart's hub has
    # no admin service, and needs none)
    hub.admin_token = token
    r = hub.spawn("alice")  # no options: the chart's spawner.defaultOptions apply
    assert r.status_code in (201, 202), r.text
    hub.wait_ready("alice", timeout=180)
    (job_id,) = tagged_jobs(hub.job_tag, "alice")
    assert squeue_fields(job_id, "%u|%P|%C|%T") == ["alice", "debug", "1", "RUNNING"]

    # through the proxy, as the Ingress would send a user
    r = hub.session.get(
        f"{hub.url}/user/alice/api/status", headers={"Authorization": f"token {token}"}, timeout=30
    )
    assert r.status_code == 200, r.text

    hub.stop_server("alice")
    wait_left_queue(job_id)

    # nothing of Slurm's or munge's ran on the hub's side, and one SSH login did it all
    assert attempts(shim_log)[attempts_before:] == []
    if name == "ssh":
        assert accepted_logins() - logins_before == 1, hub.log_tail()
    text = hub.log_path.read_text()
    assert "Submitted job" in text
    assert token not in text
