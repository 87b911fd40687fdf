"""The drivers' parts for the integration tests: the login node's sshd, slurmrestd, the
hub's config for each, the mount namespace without Slurm's clients, and the matrix of
drivers a test module's hub runs with.

Used by test_off_cluster.py, test_drills_off_cluster.py, test_lifecycle.py,
test_spawn_page.py and test_metrics.py; a test module takes the fixtures by name (``driver =
offcluster.driver``, ``hub_driver = offcluster.hub_driver``, and its hub per driver with
``hub = offcluster.module_hub(EXTRA_CONFIG)``). Daemons are found by their
pid files only (checked against ``/proc/PID/comm``), never by name.

``HPCSPAWNER_TEST_DRIVERS`` narrows the drivers the tests run with (``local``, ``ssh``,
``rest``, comma-separated; unset: all three), e.g. ``HPCSPAWNER_TEST_DRIVERS=local`` for the
run under the lowest JupyterHub (the drivers sit below JupyterHub). A name it does not know
fails the collection of every module that imports this one.
"""

from __future__ import annotations

import grp
import os
import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from .drills import wait_gone
from .hub import REPO, TEST_USERS, run

SSH_DIR = Path("/etc/hpcspawner-dev/ssh")
SSHD_PID = Path("/run/hpcspawner-sshd.pid")
SSHD_LOG = Path("/var/log/hpcspawner-sshd.log")
KNOWN_HOSTS = SSH_DIR / "known_hosts"
SERVICE = "hpcspawner-hub"
LOGIN_NODE = "127.0.0.1:2222"
#: the login node's sudoers let the service account act as this group's members only
LOGIN_GROUP = "jupyter-users"

#: what a hub off the cluster does not have
SLURM_CLIENTS = (
    "sbatch", "squeue", "scancel", "scontrol", "sacctmgr", "sinfo", "sacct", "sdiag", "srun",
    "salloc", "sattach", "sstat", "sprio", "sshare", "sreport", "munge", "unmunge",
)  # fmt: skip

RESTD_PID = Path("/run/slurmrestd.pid")
RESTD_URL = "http://127.0.0.1:6820"
JWT_KEY = Path("/var/lib/slurm/slurmctld/jwt_hs256.key")

SSH_CONFIG = f"""
c.SlurmSpawner.driver_class = "ssh"
c.SSHSlurmDriver.hosts = [{LOGIN_NODE!r}]
c.SSHSlurmDriver.login_user = {SERVICE!r}
c.SSHSlurmDriver.client_keys = ["{SSH_DIR}/id_ed25519"]
c.SSHSlurmDriver.known_hosts = "{KNOWN_HOSTS}"
"""

#: the REST driver without its token: REST_CONFIG adds the hub's minted ones
REST_BASE_CONFIG = f"""
c.SlurmSpawner.driver_class = "rest"
c.SlurmSpawner.token_delivery = "environment"
c.RESTSlurmDriver.url = {RESTD_URL!r}
c.RESTSlurmDriver.service_user = "slurm"
"""

REST_CONFIG = (
    REST_BASE_CONFIG
    + f"""c.RESTSlurmDriver.jwt_key_file = "{JWT_KEY}"
"""
)


@dataclass(frozen=True)
class Daemon:
    """A daemon of the off-cluster drivers: its start script and pid file."""

    script: str
    pidfile: Path
    comm: str

    def pid(self) -> int | None:
        """The running daemon's pid (from its pid file, checked against its comm)."""
        try:
            pid = int(self.pidfile.read_text().split()[0])
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except (OSError, ValueError, IndexError):
            return None
        return pid if comm == self.comm else None

    def start(self, env: dict | None = None) -> int:
        """Run the start script (it restarts a daemon it started before); the new pid."""
        result = run(
            [str(REPO / "scripts/cluster" / self.script)],
            env={**os.environ, **(env or {})},
            timeout=120,
        )
        assert result.returncode == 0, f"{self.script}:\n{result.stdout}\n{result.stderr}"
        pid = self.pid()
        assert pid, f"{self.script} left nothing running"
        return pid

    def stop(self, pid: int, timeout: float = 20) -> None:
        """SIGTERM ``pid`` (this daemon's, checked) and wait until it exited."""
        assert self.pid() == pid, (self.pidfile, pid)
        os.kill(pid, signal.SIGTERM)
        wait_gone(pid, timeout)


SSHD = Daemon("start-sshd.sh", SSHD_PID, "sshd")
SLURMRESTD = Daemon("start-slurmrestd.sh", RESTD_PID, "slurmrestd")

#: driver -> (its daemon, the hub's config)
DRIVERS = {"ssh": (SSHD, SSH_CONFIG), "rest": (SLURMRESTD, REST_CONFIG)}

#: every driver a test hub runs with: the hub on the cluster, then off it
ALL_DRIVERS = ("local", *DRIVERS)
DRIVERS_VARIABLE = "HPCSPAWNER_TEST_DRIVERS"


def selected_drivers(text: str | None) -> list[str]:
    """The drivers ``text`` (the value of HPCSPAWNER_TEST_DRIVERS) names, in the order of
    ALL_DRIVERS; all of them when it is unset or blank. Raises :class:`pytest.UsageError`
    for a name it does not know, or a value that names none."""
    if text is None or not text.strip():
        return list(ALL_DRIVERS)
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in ALL_DRIVERS]
    if unknown or not names:
        raise pytest.UsageError(
            f"{DRIVERS_VARIABLE}={text!r}: "
            + (f"unknown driver(s) {', '.join(map(repr, unknown))}" if unknown else "no driver")
            + f"; name some of {', '.join(ALL_DRIVERS)} (comma-separated), or unset it for all"
        )
    return [name for name in ALL_DRIVERS if name in names]


#: the drivers this run's tests use (a bad value fails here, when a test module imports this)
SELECTED = selected_drivers(os.environ.get(DRIVERS_VARIABLE))


def running(daemon: Daemon):
    """Generator for a fixture: ``daemon`` runs while it is in use. Started here unless
    one ran; then, at the end, whatever runs from its pid file now is stopped (a drill
    may have replaced the one started here). A daemon that ran before is left running."""
    started = daemon.pid() is None
    if started:
        daemon.start()
    yield daemon
    if started:
        pid = daemon.pid()
        if pid is not None:
            daemon.stop(pid)


def serving(name: str):
    """Generator for a fixture: off-cluster driver ``name``'s daemon runs (see
    :func:`running`) while the hub's extra config for it is in use."""
    daemon, config = DRIVERS[name]
    for _ in running(daemon):
        yield config


@pytest.fixture(scope="module", params=[name for name in SELECTED if name in DRIVERS])
def driver(request, cluster):
    """The driver's daemon (the login node's sshd, slurmrestd): started here unless one
    runs, and then stopped here by pid. Yields (name, the hub's extra config)."""
    for config in serving(request.param):
        yield request.param, config


@dataclass(frozen=True)
class HubDriver:
    """What a test module's hub needs for one driver: its extra config and the argv
    prefix it runs under (a hub off the cluster: a mount namespace without Slurm's
    clients and munge, :func:`namespace`)."""

    name: str
    config: str = ""
    prefix: tuple[str, ...] = ()


@pytest.fixture(scope="module", params=SELECTED)
def hub_driver(request, cluster, tmp_path_factory):
    """The driver a module's hub runs with: ``local`` (the hub on the cluster), ``ssh``
    or ``rest`` (the hub off the cluster, its daemon started here unless one runs and
    then stopped by pid, as for :func:`driver`). Stop the hub before this ends: for ssh
    and rest it then fails if anything on the hub's side tried to run Slurm's clients
    or munge, naming the attempts."""
    name = request.param
    if name not in DRIVERS:
        yield HubDriver(name)
        return
    if name == "ssh" and SSHD.pid() is not None:
        missing = sorted(set(TEST_USERS) - login_group_members())
        if missing:  # start-sshd.sh makes every test user a member; this sshd predates that
            pytest.fail(
                f"{', '.join(missing)} not in {LOGIN_GROUP}: the login node's sshd would refuse "
                "to act for them; run scripts/cluster/start-sshd.sh again"
            )
    prefix, log = namespace(tmp_path_factory)
    for config in serving(name):
        yield HubDriver(name, config, tuple(prefix))
    tried = attempts(log)
    if tried:
        pytest.fail(
            f"the hub off the cluster ({name} driver) tried to run Slurm's clients or munge "
            f"on its own host ({log}):\n" + "\n".join(tried)
        )


def module_hub(extra_config: str = ""):
    """A test module's ``hub`` fixture: one hub per driver (take :func:`hub_driver` into the
    module too) with ``extra_config``, stopped before the driver's daemon is and the hub's
    side is checked. ``hub_driver = offcluster.hub_driver``,
    ``hub = offcluster.module_hub(EXTRA_CONFIG)``."""

    @pytest.fixture(scope="module")
    def hub(hub_driver, hub_factory):
        hub = hub_factory(
            extra_config=extra_config + hub_driver.config, command_prefix=hub_driver.prefix
        )
        yield hub
        hub_factory.stop(hub)

    return hub


@pytest.fixture(scope="module")
def off_cluster(tmp_path_factory):
    """argv prefix: run a command in a mount namespace without Slurm's clients and munge."""
    return namespace(tmp_path_factory)


def namespace(tmp_path_factory) -> tuple[list[str], Path]:
    """(argv prefix, the shim's log): the prefix runs a command in a mount namespace in
    which Slurm's clients and munge's tools are a shim that logs each attempt and fails,
    and munge's socket directory is empty."""
    directory = tmp_path_factory.mktemp("offcluster")
    log = directory / "attempts.log"
    log.touch()
    log.chmod(0o666)
    shim = directory / "refuse"
    shim.write_text(
        "#!/bin/sh\n"
        f'echo "$(basename "$0") $*" >> {log}\n'
        'echo "$(basename "$0"): not on this host (the hub is off the cluster)" >&2\n'
        "exit 127\n"
    )
    shim.chmod(0o755)
    mounts = "".join(f'mount --bind {shim} "$(command -v {name})" && ' for name in SLURM_CLIENTS)
    script = f'{mounts}mount -t tmpfs -o size=1m,mode=0755 none /run/munge && exec "$@"'
    prefix = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh"]
    return prefix, log


def attempts(log: Path) -> list[str]:
    return log.read_text().splitlines()


def login_group_members() -> set[str]:
    """The users the login node's service account may act as (start-sshd.sh's sudoers)."""
    try:
        return set(grp.getgrnam(LOGIN_GROUP).gr_mem)
    except KeyError:
        return set()


def accepted_logins() -> int:
    """Logins of the hub's service account the login node's sshd accepted so far."""
    text = SSHD_LOG.read_text(errors="replace") if SSHD_LOG.exists() else ""
    return len(re.findall(rf"Accepted publickey for {SERVICE} ", text))


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (for sshd: one per open connection)."""
    result = subprocess.run(
        ["ps", "--ppid", str(pid), "-o", "pid="], capture_output=True, text=True, timeout=10
    )
    return [int(line) for line in result.stdout.split()]
