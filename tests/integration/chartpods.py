"""The Helm chart's hub and proxy, run as processes the way their pods would run them.

No Kubernetes can run here (no API server is packaged for this machine, no registry is
reachable). A test of the chart's hub needs little of it, and this module plays that part:

- **the kubelet**: the hub's volumes are laid out as its Deployment mounts them
  (tests/unit/helmchart.py's ``lay_out``: the ConfigMap and the Secrets as the kubelet
  writes them, with the volumes' modes and the pod's ``fsGroup``), then bind-mounted at
  their ``mountPath`` in the hub's own mount namespace, read-only where the Deployment says
  so, and the hub starts in the Deployment's ``workingDir`` with its ``command``; the
  proxy starts with its Deployment's ``command`` and ``env``, each ``secretKeyRef``
  resolved from the Secrets;
- **the cluster's network**: the pods share the host's network here, so every container
  port becomes a free port of the host, and every Service name 127.0.0.1 with the host port
  of the container port the Service targets (what kube-proxy and the cluster's DNS do).
  These are the only changes to the rendered objects; :meth:`ChartHub.render` writes each
  one it made to ``substitutions.txt`` beside the hub's log.

The hub runs in one of two ways:

- :class:`ChartHub`: the test venv's ``jupyterhub`` (its bin directory first on PATH, as
  the image's venv is) in its own mount namespace. It does not play the pods'
  ``securityContext`` (uid 1000, a read-only root file system): the hub runs as root, as
  every test hub here does, because the test venvs are made from a Python under /root
  (mode 0700) that no other user can run; the volumes' modes and group are the kubelet's
  all the same. Nor the ``tmp`` emptyDir: the host's /tmp stands in for it (the off-cluster
  namespace's shim logs its attempts under /tmp, and must stay visible).
- :class:`ImageChartHub`: the hub's image (helm/image, built by its build.sh) run by
  podman with the pod's user, fsGroup and security context and all its volumes, on the
  host's network; the host's /etc/passwd and /etc/group are mounted in, standing in for
  the directory client a site's pod has.

The proxy runs from the repository's configurable-http-proxy (tests/integration/hub.py's
``CHP``) in both, as root: its image is configurable-http-proxy's own.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from base64 import b64decode
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import helm_python as helm
import requests
import yaml

from tests.unit.helmchart import (
    CHART,
    NAMESPACE,
    RELEASE,
    by_kind,
    component,
    lay_out,
    merged,
    objects,
    render,
)

from .hub import CHP, HUB_CONNECT_IP, REPO, Hub, stop_process_group

#: the hub image's environment (helm/image/Containerfile's ENV), its venv's bin directory
#: being the test venv's here
IMAGE_PATH = (
    f"{Path(sys.executable).parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)
HUB_IMAGE_ENV = {"PATH": IMAGE_PATH, "LANG": "C.UTF-8", "HOME": "/srv/jupyterhub"}

#: the hub's volumes this module mounts; /tmp (an emptyDir) is the host's, see above
MOUNTED = {"config", "secrets", "data"}
NOT_MOUNTED = {"tmp"}


class Network:
    """The pods' ports on the host, and the Services' names and ports as they resolve.

    ``host_ports``: (component, container port name) -> a free port of the host."""

    def __init__(self, rendered: dict[str, str], host_ports: dict[tuple[str, str], int]):
        self.ports: dict[tuple[str, int], int] = {}  # (component, containerPort) -> host port
        for name in ("hub", "proxy"):
            (container,) = component(rendered, "Deployment", name)["spec"]["template"]["spec"][
                "containers"
            ]
            for port in container["ports"]:
                self.ports[name, port["containerPort"]] = host_ports[name, port["name"]]
        self.services: dict[tuple[str, int], int] = {}  # (Service, port) -> host port
        for name, service in by_kind(rendered, "Service").items():
            target = service["metadata"]["labels"]["app.kubernetes.io/component"]
            for port in service["spec"]["ports"]:
                self.services[name, port["port"]] = host_ports[target, port["targetPort"]]
        self.made: list[str] = []

    def port(self, name: str, container_port: int) -> int:
        """The host port standing in for ``name``'s (hub, proxy) container port."""
        host_port = self.ports[name, container_port]
        self.made.append(f"{name}'s container port {container_port} -> {host_port}")
        return host_port

    def url(self, url: str) -> str:
        """``url`` with its host, a Service's name, as the Service resolves here."""
        parts = urlsplit(url)
        host_port = self.services[parts.hostname, parts.port]
        new = urlunsplit(parts._replace(netloc=f"127.0.0.1:{host_port}"))
        self.made.append(f"{url} -> {new}")
        return new

    def service(self, name: str, port: int) -> tuple[str, int]:
        """(address, port) of Service ``name``'s ``port``."""
        host_port = self.services[name, port]
        self.made.append(f"Service {name}:{port} -> 127.0.0.1:{host_port}")
        return "127.0.0.1", host_port


def resolve_env(container: dict, secrets_: dict[str, dict[str, bytes]]) -> dict[str, str]:
    """A container's ``env``, ``valueFrom.secretKeyRef`` read from ``secrets_``."""
    env = {}
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = variable["value"]
            continue
        ref = variable["valueFrom"]["secretKeyRef"]  # the only other kind the chart uses
        env[variable["name"]] = secrets_[ref["name"]][ref["key"]].decode()
    return env


def podman_run_options(pod: dict, root: Path) -> list[str]:
    """``podman run`` options for the pod's one container as the kubelet would run it: its
    user, group and fsGroup, its container securityContext, its working directory, and its
    volumes from ``lay_out(..., root)`` (the emptyDir at /tmp too). Fails on a setting it
    does not translate, rather than leave it out."""
    (container,) = pod["containers"]
    security = dict(pod["securityContext"])
    options = [
        f"--user={security.pop('runAsUser')}:{security.pop('runAsGroup')}",
        # the kubelet adds the fsGroup to the process's groups
        f"--group-add={security.pop('fsGroup')}",
        f"--workdir={container['workingDir']}",
    ]
    assert security.pop("runAsNonRoot") and not options[0].startswith("--user=0:")
    # podman's default seccomp profile is its RuntimeDefault
    assert security.pop("seccompProfile") == {"type": "RuntimeDefault"}
    assert not security, f"not translated: {security}"
    context = dict(container["securityContext"])
    if context.pop("readOnlyRootFilesystem"):
        options += ["--read-only", "--read-only-tmpfs=false"]  # /tmp is the pod's volume
    if not context.pop("allowPrivilegeEscalation"):
        options.append("--security-opt=no-new-privileges")
    assert context.pop("capabilities") == {"drop": ["ALL"]}, container["securityContext"]
    options.append("--cap-drop=ALL")
    assert not context, f"not translated: {context}"
    for mount in container["volumeMounts"]:
        source = root / mount["mountPath"].lstrip("/")
        mode = "ro" if mount.get("readOnly") else "rw"
        options.append(f"--volume={source}:{mount['mountPath']}:{mode}")
    return options


def make_mountpoints(paths: list[str]) -> list[Path]:
    """Create the missing directories the hub's volumes are mounted on (empty, on the host:
    a bind mount needs one); return the directories made, outermost first."""
    made = []
    for path in paths:
        missing = [p for p in [Path(path), *Path(path).parents] if not p.exists()]
        for directory in reversed(missing):
            directory.mkdir()
            made.append(directory)
    return made


def remove_mountpoints(made: list[Path]) -> None:
    for directory in reversed(made):
        directory.rmdir()


@dataclass
class ChartHub(Hub):
    """The chart's hub and proxy, rendered from ``values`` and run as processes
    (tests/integration/test_helm_hub.py).

    ``values``: the test's values; :meth:`render` adds what only this run knows (the
    addresses users and compute nodes reach, the job tag). ``existing_secrets``: the
    Secrets the values name, ``{name: {key: bytes}}``, as a site would have created them.
    ``command_prefix``: the argv the hub runs under (the off-cluster mount namespace).
    Stop it with :meth:`stop` (``hub_factory`` does): the hub by its process group, the
    proxy by its pid, the jobs by the hub's tag, then the mount points made here."""

    values: dict = field(default_factory=dict)
    existing_secrets: dict = field(default_factory=dict)

    def __post_init__(self):
        super().__post_init__()
        # Hub's ports: self.port is the proxy's public port, self.hub_port the hub's,
        # self.proxy_api_port the proxy's API; no TLS (the chart's default: at the Ingress)
        self.url = f"http://127.0.0.1:{self.port}"
        self.root = self.directory / "pod"
        self.proxy: subprocess.Popen | None = None
        self.mountpoints: list[Path] = []

    # ------------------------------------------------------------ render and lay out

    def render(self) -> None:
        """Render the chart; find the pods, the Secrets and the Services' addresses."""
        values = merged(
            self.values,
            {
                # the Ingress's address: the proxy's port, reached directly over HTTP
                "publicUrl": self.url,
                # the hub's API Service (a NodePort): the hub's port, at the address the
                # compute nodes reach this host by
                "hub": {"connectUrl": f"http://{HUB_CONNECT_IP}:{self.hub_port}"},
                # cancel_tagged_jobs finds this hub's jobs by it
                "spawner": {"jobTag": self.job_tag},
            },
        )
        with helm.Chart.load(str(CHART)) as chart:
            rendered = render(chart, values)
        (self.directory / "rendered.yaml").write_text(
            f"# helm template {RELEASE} {CHART} --namespace {NAMESPACE}\n"
            + yaml.safe_dump_all(objects(rendered), sort_keys=False)
        )
        self.network = Network(
            rendered,
            {
                ("hub", "http"): self.hub_port,
                ("proxy", "http"): self.port,
                ("proxy", "api"): self.proxy_api_port,
            },
        )
        self.secrets = dict(self.existing_secrets)
        for name, secret in by_kind(rendered, "Secret").items():
            self.secrets[name] = {k: b64decode(v) for k, v in secret["data"].items()}
        self.hub_pod = component(rendered, "Deployment", "hub")["spec"]["template"]["spec"]
        self.proxy_pod = component(rendered, "Deployment", "proxy")["spec"]["template"]["spec"]
        self.rendered = self._resolve_config(rendered)

    def _resolve_config(self, rendered: dict[str, str]) -> dict[str, str]:
        """The render, with the hub's ConfigMap's Service names and ports resolved."""
        path = "hub/configmap.yaml"
        configmap = yaml.safe_load(rendered[path])
        values = json.loads(configmap["data"]["values.json"])
        chart = values["chart"]
        address, port = self.network.service(chart["hubService"], chart["hubPort"])
        # hubPort is the hub's container port (it binds it) and its Service's (the same)
        assert port == self.network.port("hub", chart["hubPort"])
        chart["hubService"], chart["hubPort"] = address, port
        chart["proxyApiUrl"] = self.network.url(chart["proxyApiUrl"])
        configmap["data"]["values.json"] = json.dumps(values, indent=2) + "\n"
        return {**rendered, path: yaml.safe_dump(configmap)}

    def write_config(self) -> Path:
        """Lay the hub's volumes out; return the config file (as the hub's command names it)."""
        (container,) = self.hub_pod["containers"]
        names = {mount["name"] for mount in container["volumeMounts"]}
        assert names == MOUNTED | NOT_MOUNTED, f"the hub's volumes changed: {names}"
        lay_out(self.rendered, self.existing_secrets, self.root, owner=True)
        command = container["command"]
        return Path(command[command.index("--config") + 1])

    # ------------------------------------------------------------ the processes

    def command(self, config: Path) -> list[str]:
        """The hub's container command, in a mount namespace with its volumes mounted (the
        mount points missing on the host are made, and removed by :meth:`stop`)."""
        (container,) = self.hub_pod["containers"]
        mounts = [m for m in container["volumeMounts"] if m["name"] in MOUNTED]
        self.mountpoints = make_mountpoints([m["mountPath"] for m in mounts])
        script = ["set -e"]
        for mount in mounts:
            source = self.root / mount["mountPath"].lstrip("/")
            script.append(
                f"mount --bind {shlex.quote(str(source))} {shlex.quote(mount['mountPath'])}"
            )
            if mount.get("readOnly"):
                script.append(f"mount -o remount,bind,ro {shlex.quote(mount['mountPath'])}")
        script += [f"cd {shlex.quote(container['workingDir'])}", 'exec "$@"']
        assert str(config) in container["command"]
        return [*self.command_prefix, "sh", "-c", "\n".join(script), "sh", *container["command"]]

    def environment(self) -> dict[str, str]:
        (container,) = self.hub_pod["containers"]
        return {**HUB_IMAGE_ENV, **resolve_env(container, self.secrets)}

    def proxy_command(self) -> list[str]:
        """The proxy's container command with its ports and the hub's Service resolved."""
        (container,) = self.proxy_pod["containers"]
        command = container["command"]
        assert command[0] == "configurable-http-proxy", command
        argv = [str(CHP)]  # the image's configurable-http-proxy: the repository's
        for arg in command[1:]:
            flag, _, value = arg.partition("=")
            assert flag not in ("--ssl-key", "--ssl-cert"), "TLS at the proxy is not played here"
            if flag in ("--port", "--api-port", "--redirect-port"):
                value = str(self.network.port("proxy", int(value)))
            elif value.startswith("http://"):
                value = self.network.url(value)
            argv.append(f"{flag}={value}")
        return argv

    def start_proxy(self) -> None:
        (container,) = self.proxy_pod["containers"]
        # the proxy image's PATH: this one's (node is on it)
        env = {"PATH": os.environ["PATH"], **resolve_env(container, self.secrets)}
        with open(self.directory / "proxy.log", "ab") as log:
            self.proxy = subprocess.Popen(
                self.proxy_command(),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        probe = container["readinessProbe"]["httpGet"]
        url = self.probe_url("proxy", container, probe)
        wait_for_probe(self.proxy, url, timeout=30, log=self.directory / "proxy.log")

    def probe_url(self, name: str, container: dict, http_get: dict) -> str:
        """The URL the kubelet's probe ``http_get`` of ``name``'s container asks."""
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        port = self.network.port(name, ports.get(http_get["port"], http_get["port"]))
        scheme = http_get.get("scheme", "HTTP").lower()
        return f"{scheme}://127.0.0.1:{port}{http_get['path']}"

    def hub_pid(self) -> int:
        """The pid of the hub's process (JupyterHub's)."""
        return self.proc.pid

    def start(self, timeout: float = 120) -> ChartHub:
        self.render()
        self.start_proxy()
        super().start(timeout)  # write_config, command, environment; up through the proxy
        (container,) = self.hub_pod["containers"]
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            url = self.probe_url("hub", container, container[probe]["httpGet"])
            wait_for_probe(self.proc, url, timeout=10, log=self.log_path)
        made = dict.fromkeys(self.network.made)  # each once, in order
        (self.directory / "substitutions.txt").write_text("\n".join(made) + "\n")
        return self

    def stop(self) -> None:
        """Stop the hub, its jobs and the proxy (by pid), then remove the mount points."""
        try:
            super().stop()
        finally:
            if self.proxy is not None:
                stop_process_group(self.proxy)
            remove_mountpoints(self.mountpoints)
            self.mountpoints = []


def wait_for_probe(proc: subprocess.Popen, url: str, timeout: float, log: Path) -> None:
    """Wait until ``url`` answers 200, as a kubelet's probe would; fail if ``proc`` exits
    (with the tail of its ``log``)."""
    session = requests.Session()
    session.trust_env = False  # a proxy from the environment must not answer for loopback
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
            raise AssertionError(f"exited with {proc.returncode} before {url} answered:\n{tail}")
        try:
            if session.get(url, timeout=3).status_code == 200:
                return
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, f"{url} did not answer 200 within {timeout} s"
        time.sleep(0.2)


BUILD = REPO / "helm" / "image" / "build.sh"


def build_image(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """``helm/image/build.sh ARGS``: the hub's image built unless cached (then ARGS run in
    it, ``run [podman run options] -- CMD``)."""
    return subprocess.run(
        [str(BUILD), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@dataclass
class ImageChartHub(ChartHub):
    """The chart's hub in the hub's image (helm/image), run by podman as the kubelet would
    run its pod (:func:`podman_run_options`: its user and fsGroup, a read-only root file
    system, no capabilities, its volumes), with the container's ``env``, on the host's
    network. It is off the cluster by construction: the image has no Slurm client and no
    munge (``command_prefix`` is not used). One addition: the host's /etc/passwd and
    /etc/group, read-only, stand in for the directory client a site's pod has (hub.extraVolumes,
    see the how-to's "Before you start"): the hub looks its users up.

    Stopped by its process group (podman forwards the signal to the container, which it
    then removes), and by its container's name if that is left."""

    def __post_init__(self):
        super().__post_init__()
        self.container_name = f"hpcspawner-helm-hub-{self.job_tag}"

    def start(self, timeout: float = 120) -> ImageChartHub:
        built = build_image()
        assert built.returncode == 0, f"helm/image/build.sh failed:\n{built.stderr}"
        return super().start(timeout)

    def command(self, config: Path) -> list[str]:
        (container,) = self.hub_pod["containers"]
        assert str(config) in container["command"]
        env = [f"--env={k}={v}" for k, v in resolve_env(container, self.secrets).items()]
        return [
            str(BUILD),
            "run",
            f"--name={self.container_name}",
            "--network=host",
            *podman_run_options(self.hub_pod, self.root),
            "--volume=/etc/passwd:/etc/passwd:ro",
            "--volume=/etc/group:/etc/group:ro",
            *env,
            "--",
            *container["command"],
        ]

    def environment(self) -> dict[str, str]:
        # build.sh's and podman's; the container's is the image's and its --env
        return dict(os.environ)

    def hub_pid(self) -> int:
        result = subprocess.run(
            ["podman", "inspect", "--format", "{{.State.Pid}}", self.container_name],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return int(result.stdout)

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            # only if podman did not remove it (the client killed before the container ended)
            subprocess.run(
                ["podman", "rm", "--force", "--ignore", self.container_name],
                capture_output=True,
                timeout=60,
                check=False,
            )
