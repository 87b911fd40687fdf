"""A real JupyterHub (+ configurable-http-proxy) in a subprocess, for integration tests.

The hub runs as root (like a site's hub that submits jobs through runuser),
serves HTTPS through CHP with a self-signed certificate, and spawns with
SlurmSpawner against the real local Slurm cluster. Everything it starts is
stopped by pid/process group: the hub's own group, then CHP by its pid file,
then the Slurm jobs tagged with this hub's ``job_tag``.
"""

from __future__ import annotations

import json
import os
import pwd
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
CHP = Path(
    os.environ.get("HPCSPAWNER_CHP", REPO / "node_modules" / ".bin" / "configurable-http-proxy")
)
#: reachable from the netns nodes (bridge address) and from the hub's host
HUB_CONNECT_IP = os.environ.get("HPCSPAWNER_HUB_CONNECT_IP", "10.250.0.1")


#: hubs running now, for failure reports
ACTIVE_HUBS: list[Hub] = []


def stop_process_group(proc: subprocess.Popen, sig=signal.SIGTERM, timeout: float = 20) -> None:
    """Send ``sig`` to the process group ``proc`` leads (started with ``start_new_session``)
    and wait for it; SIGKILL after ``timeout`` seconds. Nothing if it has exited."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port free now, never handed out before in this test run.

    Ports come from below the kernel's ephemeral range (32768 up), so a
    port the kernel gives someone else for bind(0) or an outgoing
    connection cannot land on one we chose, and the set keeps the hub,
    its proxy API and the proxy from ever getting the same port (CI once
    bound the hub to the port just given to the proxy's API).
    """
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 32000)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("0.0.0.0", port))  # noqa: S104 - free on every address, as the hub binds
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError("no free port between 20000 and 32000")


def make_certificate(directory: Path) -> tuple[Path, Path]:
    key, cert = directory / "hub.key", directory / "hub.crt"
    if not cert.exists():
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                "-keyout", str(key), "-out", str(cert), "-days", "2",
                "-subj", "/CN=localhost",
                "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
    return key, cert


@dataclass
class Hub:
    """Handle on a running test hub."""

    directory: Path
    python: str = sys.executable
    extra_config: str = ""
    job_tag: str = field(default_factory=lambda: "t" + secrets.token_hex(4))
    poll_interval: int = 30
    env: dict = field(default_factory=dict)
    #: directories put first on the hub's PATH (e.g. counting shims for Slurm commands)
    path_prepend: list = field(default_factory=list)
    #: argv the hub's command runs under (e.g. a mount namespace without Slurm's clients)
    command_prefix: list = field(default_factory=list)

    def __post_init__(self):
        self.port = free_port()
        self.hub_port = free_port()
        self.proxy_api_port = free_port()
        self.admin_token = secrets.token_hex(16)
        self.proxy_token = secrets.token_hex(16)
        self.url = f"https://127.0.0.1:{self.port}"
        self.log_path = self.directory / "jupyterhub.log"
        self.proc: subprocess.Popen | None = None
        self.session = requests.Session()
        # REQUESTS_CA_BUNDLE in the environment would override session.verify
        self.session.trust_env = False

    # ------------------------------------------------------------ lifecycle

    def write_config(self) -> Path:
        key, cert = make_certificate(self.directory)
        # talk HTTPS to the proxy, verified against the hub's own certificate
        self.session.verify = str(cert)
        venv = os.environ.get("HPCSPAWNER_SINGLEUSER_VENV", "/opt/hpcspawner-dev/singleuser")
        config = textwrap.dedent(
            f"""
            c = get_config()  # noqa
            c.JupyterHub.ip = "127.0.0.1"
            c.JupyterHub.port = {self.port}
            c.JupyterHub.ssl_key = {str(key)!r}
            c.JupyterHub.ssl_cert = {str(cert)!r}
            c.JupyterHub.hub_ip = "0.0.0.0"
            c.JupyterHub.hub_port = {self.hub_port}
            c.JupyterHub.hub_connect_ip = {HUB_CONNECT_IP!r}
            c.JupyterHub.db_url = "sqlite:///{self.directory}/jupyterhub.sqlite"
            c.JupyterHub.cookie_secret_file = "{self.directory}/cookie_secret"
            c.JupyterHub.pid_file = "{self.directory}/jupyterhub.pid"
            c.JupyterHub.cleanup_servers = False
            c.JupyterHub.allow_named_servers = True
            c.JupyterHub.log_level = "DEBUG"
            c.JupyterHub.tornado_settings = {{"slow_spawn_timeout": 3}}
            c.ConfigurableHTTPProxy.command = [{str(CHP)!r}]
            c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{self.proxy_api_port}"
            c.ConfigurableHTTPProxy.auth_token = {self.proxy_token!r}
            c.ConfigurableHTTPProxy.pid_file = "{self.directory}/proxy.pid"
            c.JupyterHub.authenticator_class = "dummy"
            c.Authenticator.allow_all = True
            c.JupyterHub.services = [{{"name": "test-admin", "api_token": {self.admin_token!r}}}]
            c.JupyterHub.load_roles = [{{"name": "admin", "services": ["test-admin"]}}]
            c.JupyterHub.spawner_class = "hpc"
            c.Spawner.start_timeout = 180
            c.Spawner.http_timeout = 120
            c.SlurmSpawner.poll_interval = {self.poll_interval}
            c.SlurmSpawner.job_tag = {self.job_tag!r}
            c.SlurmSpawner.job_path = "{venv}/bin:/usr/local/bin:/usr/bin:/bin"
            c.SlurmSpawner.default_options = {{
                "partition": "debug", "cpus": 1, "memory": "512M", "runtime": "0:20:00",
            }}
            """
        )
        path = self.directory / "jupyterhub_config.py"
        path.write_text(config + textwrap.dedent(self.extra_config))
        return path

    def command(self, config: Path) -> list[str]:
        """The hub's argv, given its config file."""
        return [*self.command_prefix, self.python, "-m", "jupyterhub", "-f", str(config)]

    def environment(self) -> dict[str, str]:
        """The hub's environment: this process's, with ``env`` and ``path_prepend``."""
        env = dict(os.environ)
        env.update(self.env)
        env["PATH"] = os.pathsep.join([*map(str, self.path_prepend), env.get("PATH", "")])
        return env

    def start(self, timeout: float = 60) -> Hub:
        config = self.write_config()
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log_file = log
        self.proc = subprocess.Popen(
            self.command(config),
            cwd=self.directory,
            env=self.environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if self.session.get(f"{self.url}/hub/api/", timeout=2).status_code == 200:
                    if self not in ACTIVE_HUBS:
                        ACTIVE_HUBS.append(self)
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"hub not up within {timeout} s:\n{self.log_tail()}")

    def kill(self, sig=signal.SIGTERM, timeout: float = 20) -> None:
        """Stop the hub's process group (not the proxy, which runs in its own session)."""
        if self.proc is not None:
            stop_process_group(self.proc, sig, timeout)

    def stop(self) -> None:
        """Stop everything this hub started: servers' jobs, the hub, the proxy."""
        if self in ACTIVE_HUBS:
            ACTIVE_HUBS.remove(self)
        try:
            self.kill()
        finally:
            self._kill_pidfile(self.directory / "proxy.pid")
            cancel_tagged_jobs(self.job_tag)
            if getattr(self, "_log_file", None):
                self._log_file.close()

    @staticmethod
    def _kill_pidfile(path: Path) -> None:
        try:
            pid = int(path.read_text().strip())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no hub log)"
        return "\n".join(text.splitlines()[-lines:])

    # ------------------------------------------------------------ REST API

    def api(self, method: str, path: str, *, token: str | None = None, **kwargs):
        headers = kwargs.pop("headers", {})
        headers.setdefault("Authorization", f"token {token or self.admin_token}")
        kwargs.setdefault("timeout", 30)
        return self.session.request(method, f"{self.url}/hub/api{path}", headers=headers, **kwargs)

    def create_user(self, name: str) -> None:
        r = self.api("POST", f"/users/{name}")
        assert r.status_code in (201, 409), r.text

    def user_token(self, name: str) -> str:
        r = self.api("POST", f"/users/{name}/tokens", json={"note": "test", "expires_in": 3600})
        assert r.status_code == 201, r.text
        return r.json()["token"]

    def spawn(self, name: str, server: str = "", options: dict | None = None):
        path = f"/users/{name}/servers/{server}" if server else f"/users/{name}/server"
        return self.api("POST", path, json=options or {})

    def server_model(self, name: str, server: str = "") -> dict | None:
        r = self.api("GET", f"/users/{name}")
        r.raise_for_status()
        return r.json().get("servers", {}).get(server)

    def wait_ready(self, name: str, server: str = "", timeout: float = 150) -> dict:
        deadline = time.monotonic() + timeout
        model = None
        while time.monotonic() < deadline:
            model = self.server_model(name, server)
            if model and model.get("ready"):
                return model
            if model is None:
                # the entry exists from the spawn request on; gone means the spawn failed
                raise AssertionError(
                    f"{name}/{server} failed to start:\n{self.progress_text(name, server)}\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.3)
        raise AssertionError(
            f"{name}/{server} not ready within {timeout} s: {model}\n{self.log_tail()}"
        )

    def stop_server(self, name: str, server: str = "", timeout: float = 60) -> None:
        path = f"/users/{name}/servers/{server}" if server else f"/users/{name}/server"
        r = self.api("DELETE", path, timeout=timeout)
        assert r.status_code in (202, 204), r.text
        deadline = time.monotonic() + timeout
        while self.server_model(name, server) is not None:
            assert time.monotonic() < deadline, f"{name}/{server} did not stop"
            time.sleep(0.2)

    def progress_events(
        self, name: str, server: str = "", timeout: float = 150, until=None
    ) -> list[dict]:
        """Read the spawn's progress event stream until it ends (or ``until(event)`` is true)."""
        path = (
            f"/users/{name}/servers/{server}/progress"
            if server
            else f"/users/{name}/server/progress"
        )
        events = []
        with self.api("GET", path, stream=True, timeout=timeout) as r:
            if r.status_code != 200:
                return [{"message": f"HTTP {r.status_code}: {r.text}"}]
            for line in r.iter_lines(decode_unicode=True):
                if line and line.startswith("data:"):
                    event = json.loads(line[len("data:") :])
                    events.append(event)
                    if event.get("ready") or event.get("failed") or (until and until(event)):
                        break
        return events

    def progress_text(self, name: str, server: str = "") -> str:
        try:
            return "\n".join(e.get("message", "") for e in self.progress_events(name, server, 10))
        except requests.RequestException as e:
            return f"(no progress: {e})"


# ---------------------------------------------------------------- Slurm helpers for tests


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("timeout", 60)
    return subprocess.run(argv, capture_output=True, text=True, **kwargs)


def squeue_fields(job_id: str, fmt: str, *, all_states: bool = True) -> list[str] | None:
    argv = ["squeue", "--noheader", f"--jobs={job_id}", f"--format={fmt}"]
    if all_states:
        argv.insert(2, "--states=all")
    result = run(argv)
    line = result.stdout.strip()
    return line.split("|") if line else None


def job_output_file(username: str, job_id: str) -> Path:
    """A job's output file where c.SlurmSpawner.job_output's default puts it (read as root)."""
    return Path(pwd.getpwnam(username).pw_dir, f".jupyterhub-slurm-{job_id}.log")


def tagged_jobs(tag: str, user: str = "") -> list[str]:
    """The queued or running jobs whose comment marks them as started by the hub with
    ``tag`` (for ``user``, if given)."""
    prefix = f"hpcspawner:{tag}:" + (f"{user}:" if user else "")
    result = run(["squeue", "--noheader", "--format=%i|%k"])
    return [
        line.split("|", 1)[0]
        for line in result.stdout.splitlines()
        if "|" in line and line.split("|", 1)[1].startswith(prefix)
    ]


def wait_left_queue(job_id: str, timeout: float = 30) -> None:
    """Wait until job ``job_id`` has left the queue (neither pending nor running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and squeue_fields(job_id, "%T", all_states=False):
        time.sleep(0.2)
    assert not squeue_fields(job_id, "%T", all_states=False), f"job {job_id} is still queued"


def cancel_tagged_jobs(tag: str) -> list[str]:
    """Cancel every job whose comment marks it as started by the hub with ``tag``."""
    ids = tagged_jobs(tag)
    if ids:
        run(["scancel", *ids])
    return ids


#: the accounts scripts/cluster/setup.sh makes; tests run servers as them
TEST_USERS = ("alice", "bob", "carol")


def home_entries(users=TEST_USERS) -> dict[str, set[str]]:
    """What is in each user's home now (names only), to remove later what a run adds."""
    return {home: set(os.listdir(home)) for home in {pwd.getpwnam(u).pw_dir for u in users}}


def remove_new_entries(before: dict[str, set[str]]) -> list[str]:
    """Remove what appeared in the users' homes since ``before``; return the paths.

    Only names that were not there before go: what the user (or the demo) had stays."""
    removed = []
    for home, entries in before.items():
        for name in sorted(set(os.listdir(home)) - entries):
            path = Path(home) / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(str(path))
    return removed


def dump_cluster_state() -> str:
    parts = []
    for argv in (["sinfo"], ["squeue", "--states=all"]):
        parts.append(f"$ {' '.join(argv)}\n{run(argv).stdout}")
    return "\n".join(parts)


def job_environ(
    username: str, server_name: str, timeout: float = 60, *, require: str | None = None
) -> dict[str, str]:
    """The environment of a process of ``username``'s job for ``server_name`` (read as root).

    ``require``: a variable the process must have, e.g. ``JUPYTERHUB_API_TOKEN``, which
    (with the default token file delivery) only the server's own processes have."""
    uid = pwd.getpwnam(username).pw_uid
    marker = f"JUPYTERHUB_SERVER_NAME={server_name}".encode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.stat(f"/proc/{entry}").st_uid != uid:
                    continue
                with open(f"/proc/{entry}/environ", "rb") as f:
                    raw = f.read()
            except OSError:
                continue
            variables = raw.split(b"\0")
            if marker in variables and (
                require is None or any(v.startswith(f"{require}=".encode()) for v in variables)
            ):
                return dict(
                    v.decode(errors="replace").split("=", 1) for v in variables if b"=" in v
                )
        time.sleep(0.2)
    raise AssertionError(f"no process of {username} runs server {server_name!r}")


def make_counting_shims(
    directory: Path, log: Path, commands=("squeue", "sbatch", "scancel")
) -> Path:
    """Wrappers that log each call of a Slurm command, then run the real one.

    World-readable so that commands run as the user (sbatch, scancel) can use them.
    """
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    log.touch()
    log.chmod(0o666)
    for command in commands:
        real = shutil.which(command, path="/usr/local/bin:/usr/bin:/bin")
        shim = directory / command
        shim.write_text(
            "#!/bin/sh\n"
            f'printf "%s %s %s\\n" "$(date +%s.%N)" {command} "$*" >> {log}\n'
            f'exec {real} "$@"\n'
        )
        shim.chmod(0o755)
    return directory
