"""The spawners under test, configured the way their users need on JupyterHub 6.

Every hub is a :class:`tests.integration.hub.Hub` (a real JupyterHub + CHP over
HTTPS, as root, against the local Slurm cluster) with the same timing shims
first on its PATH. Only the spawner settings differ:

- hpcspawner runs from the project's venv (the interpreter running the benchmark);
- batchspawner 1.3.0 runs from its own venv without hpcspawner, because
  hpcspawner registers its own strict ``/api/batchspawner`` handler in every hub
  it is installed in, which would take batchspawner's callback.

Off the cluster (benchmarks/kinds.py): hpcspawner's ``ssh`` and ``rest`` drivers as
the off-cluster integration tests configure them (tests/integration/offcluster.py),
and batchspawner with an ``ssh`` exec_prefix through the same login node. The login
node is this host's second sshd; its Slurm commands are the shims too.

The jobs of all run the same singleuser venv.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from kinds import spawner_of  # noqa: E402

from tests.integration.hub import Hub  # noqa: E402
from tests.integration.offcluster import (  # noqa: E402
    KNOWN_HOSTS,
    LOGIN_NODE,
    REST_CONFIG,
    SERVICE,
    SSH_CONFIG,
    SSH_DIR,
)

#: venvs and the tiny server stay here between runs (created when missing)
BENCH_ROOT = Path(os.environ.get("HPCSPAWNER_BENCH_ROOT", "/opt/hpcspawner-bench"))
BATCHSPAWNER_HUB_VENV = BENCH_ROOT / "batchspawner-hub"
BATCHSPAWNER_PINS = ["jupyterhub==6.1.1", "batchspawner==1.3.0"]
#: the jobs' environment (jupyterhub, batchspawner, jupyterlab, hpcspawner)
SINGLEUSER_VENV = Path(
    os.environ.get("HPCSPAWNER_SINGLEUSER_VENV", "/opt/hpcspawner-dev/singleuser")
)
#: a world-readable directory on the jobs' PATH holding ``hpcbench-tinyserver``
TOOLS_BIN = BENCH_ROOT / "bin"
TINY_SERVER = "hpcbench-tinyserver"
SLURM_COMMANDS = ("squeue", "sbatch", "scancel", "scontrol", "sinfo", "sacct", "sacctmgr", "sdiag")

#: the test users the servers run as (scripts/cluster/setup.sh makes them)
USERS = ("alice", "bob", "carol")
#: the users the login node's sudoers let its service account act for: start-sshd.sh puts
#: alice and bob in group jupyter-users, carol stays out (the refusal tests use her)
LOGIN_NODE_USERS = ("alice", "bob")
#: servers a batchspawner-ssh hub is asked to start at once: each of its commands opens an
#: SSH connection, and sshd refuses some new connections beyond MaxStartups (10 by
#: default) that are not logged in yet
SSH_SPAWN_WAVE = 5


def ensure_batchspawner_venv() -> Path:
    """``python3 -m venv`` + ``pip install jupyterhub==6.1.1 batchspawner==1.3.0`` if missing."""
    python = BATCHSPAWNER_HUB_VENV / "bin" / "python"
    if not python.exists():
        BENCH_ROOT.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(BATCHSPAWNER_HUB_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *BATCHSPAWNER_PINS], check=True
        )
    probe = subprocess.run(
        [str(python), "-c", "import hpcspawner"],
        capture_output=True,
        text=True,
        check=False,
        cwd="/",  # not the checkout, which would make it importable
    )
    if probe.returncode == 0:
        raise RuntimeError(
            f"{BATCHSPAWNER_HUB_VENV} has hpcspawner installed; its /api/batchspawner handler "
            "would take batchspawner's callback. Remove the venv and run again."
        )
    return python


def install_tiny_server() -> Path:
    """Copy the tiny server where the jobs (other users) can run it."""
    TOOLS_BIN.mkdir(parents=True, exist_ok=True)
    for directory in (BENCH_ROOT, TOOLS_BIN):
        directory.chmod(0o755)
    target = TOOLS_BIN / TINY_SERVER
    shutil.copyfile(Path(__file__).with_name("tinyserver.py"), target)
    target.chmod(0o755)
    return target


def make_timing_shims(directory: Path, log: Path) -> Path:
    """Wrappers in front of every Slurm command: they log each call, then run the real one.

    Two lines per call, ``S start command uid shim-pid args`` before and
    ``E end command uid shim-pid rc`` after, so that a call killed on the way
    (a timeout, a hub shutting down) still counts. The same directory goes first
    on both hubs' PATH (and on batchspawner's job PATH, because it runs sbatch
    with the job's environment). World-readable: sbatch and scancel run as the user.
    """
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    log.touch()
    log.chmod(0o666)
    for command, real in real_commands().items():
        shim = directory / command
        shim.write_text("#!/bin/sh\n" + _timed(command, real, log, '"$(id -u)"') + "exit $rc\n")
        shim.chmod(0o755)
    return directory


def real_commands() -> dict[str, str]:
    """The Slurm commands this host has: name -> path."""
    found = {c: shutil.which(c, path="/usr/local/bin:/usr/bin:/bin") for c in SLURM_COMMANDS}
    return {command: path for command, path in found.items() if path}


def _timed(command: str, real: str, log: Path, uid: str) -> str:
    """Shell lines that log the call's start, run ``real`` with "$@", log its end; they
    leave its exit code in $rc."""
    return (
        f'printf "S %s {command} %s %s %s\\n" "$(date +%s.%N)" {uid} "$$" "$*" >> {log}\n'
        f'{real} "$@"\n'
        "rc=$?\n"
        f'printf "E %s {command} %s %s %s\\n" "$(date +%s.%N)" {uid} "$$" "$rc" >> {log}\n'
    )


#: The login node's privilege wrapper, in the shims' directory (see make_login_sudo).
LOGIN_SUDO = "hpcbench-sudo"
#: The Slurm commands the hubs run as the user on the login node (its sudoers allow these)
USER_COMMANDS = ("sbatch", "scancel")


def make_login_sudo(shims: Path, log: Path, commands: dict[str, str] | None = None) -> Path:
    """``hpcbench-sudo USER COMMAND [ARG...]``: ``sudo -n -u USER -- COMMAND ARG...`` on the
    login node, with the Slurm commands timed as the shims time them.

    The hubs off the cluster name Slurm's commands by the shims' paths on the login node
    (this same host), so that every call is logged. The login node's sudoers
    (scripts/cluster/start-sshd.sh) let the service account run only /usr/bin/sbatch,
    /usr/bin/scancel and a few file commands as the users, not the shims: a shim named
    as COMMAND is therefore logged here, with the user's uid, around sudo running the
    real command. Any other command (``mktemp``, ``dd``, ``rm``: the SSH driver's job
    environment file) goes to sudo as it is. ``commands``: name -> real path (default:
    :func:`real_commands`).
    """
    cases = "".join(
        f"{shlex.quote(str(shims / command))})\n  shift\n"
        + textwrap.indent(
            _timed(command, f'sudo -n -u "$user" -- {real}', log, '"$(id -u "$user")"'), "  "
        )
        + "  exit $rc ;;\n"
        for command, real in (real_commands() if commands is None else commands).items()
        if command in USER_COMMANDS
    )
    wrapper = shims / LOGIN_SUDO
    wrapper.write_text(
        "#!/bin/sh\n"
        "user=$1\nshift\ncase $1 in\n" + cases + '*) exec sudo -n -u "$user" -- "$@" ;;\nesac\n'
    )
    wrapper.chmod(0o755)
    return wrapper


@dataclass(frozen=True)
class Workload:
    """What each server of a scenario is: resources, program, whether it queues."""

    #: "lab": real JupyterLab (jupyterhub-singleuser); "tiny": hpcbench-tinyserver
    server: str = "lab"
    partition: str = "debug"
    memory: str = "512M"
    #: queue every job with ``--begin=now+1hour`` (PENDING without taking CPUs)
    queued: bool = False


@dataclass(frozen=True)
class HubSettings:
    poll_interval: int = 30
    start_timeout: int = 300
    http_timeout: int = 120


HOUR_LATER = "--begin=now+3600"


def common_config(settings: HubSettings) -> str:
    return textwrap.dedent(
        f"""
        c.JupyterHub.log_level = "INFO"
        c.JupyterHub.concurrent_spawn_limit = 0
        c.Spawner.start_timeout = {settings.start_timeout}
        c.Spawner.http_timeout = {settings.http_timeout}
        """
    )


def hpcspawner_config(tag: str, work: Workload, settings: HubSettings, shims: Path) -> str:
    cmd = [TINY_SERVER] if work.server == "tiny" else ["jupyterhub-singleuser"]
    extra = [HOUR_LATER] if work.queued else []
    return common_config(settings) + textwrap.dedent(
        f"""
        c.JupyterHub.spawner_class = "hpcspawner.SlurmSpawner"
        c.SlurmSpawner.job_tag = {tag!r}
        c.SlurmSpawner.poll_interval = {settings.poll_interval}
        c.SlurmSpawner.job_path = "{TOOLS_BIN}:{SINGLEUSER_VENV}/bin:/usr/local/bin:/usr/bin:/bin"
        c.SlurmSpawner.default_options = {{
            "partition": {work.partition!r}, "cpus": 1, "memory": {work.memory!r},
            "runtime": "0:30:00",
        }}
        c.SlurmSpawner.extra_sbatch_options = {extra!r}
        c.Spawner.cmd = {cmd!r}
        c.Spawner.environment = {{"HPCBENCH_HUB_VERSION": "6.1.1"}}
        c.LocalSlurmDriver.user_command_prefix = ["runuser", "-u", "{{username}}", "--"]
        """
    )


def batchspawner_config(tag: str, work: Workload, settings: HubSettings, shims: Path) -> str:
    """The settings batchspawner 1.3.0 needs on JupyterHub 6 (docs/topic/performance.md)."""
    cmd = [TINY_SERVER] if work.server == "tiny" else ["jupyterhub-singleuser"]
    options = f"--comment=hpcspawner:{tag}:batchspawner --no-requeue"
    if work.queued:
        options += f" {HOUR_LATER}"
    path = f"{shims}:{TOOLS_BIN}:{SINGLEUSER_VENV}/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
    return common_config(settings) + textwrap.dedent(
        f"""
        c.JupyterHub.spawner_class = "batchspawner.SlurmSpawner"
        c.SlurmSpawner.poll_interval = {settings.poll_interval}
        c.SlurmSpawner.exec_prefix = "runuser -m -u {{username}} --"
        c.SlurmSpawner.req_srun = ""
        c.SlurmSpawner.req_nprocs = "1"
        c.SlurmSpawner.req_memory = {work.memory!r}
        c.SlurmSpawner.req_runtime = "00:30:00"
        c.SlurmSpawner.req_partition = {work.partition!r}
        c.SlurmSpawner.req_prologue = 'cd "$HOME"'
        c.SlurmSpawner.req_options = {options!r}
        c.SlurmSpawner.env_keep = ["LANG", "LC_ALL", "JUPYTERHUB_SINGLEUSER_APP"]
        c.Spawner.environment = {{"PATH": {path!r}, "HPCBENCH_HUB_VERSION": "6.1.1"}}
        c.Spawner.cmd = {cmd!r}
        c.Spawner.args = ["--ServerApp.ip=0.0.0.0"]
        """
    )


# ---------------------------------------------------------------- off the cluster


def hpcspawner_ssh_config(tag: str, work: Workload, settings: HubSettings, shims: Path) -> str:
    """The SSH driver as the off-cluster tests set it (offcluster.SSH_CONFIG: the login node
    127.0.0.1:2222, its service account, key and known_hosts), with the login node
    running the shims: Slurm's commands from their directory, sbatch and scancel as the
    user through hpcbench-sudo (``sudo -n -u USER --``, timed)."""
    return (
        hpcspawner_config(tag, work, settings, shims)
        + SSH_CONFIG
        + textwrap.dedent(
            f"""
            c.SSHSlurmDriver.slurm_bin_dir = "{shims}"
            c.SSHSlurmDriver.user_command_prefix = ["{shims / LOGIN_SUDO}", "{{username}}"]
            """
        )
    )


def hpcspawner_rest_config(tag: str, work: Workload, settings: HubSettings, shims: Path) -> str:
    """The REST driver as the off-cluster tests set it (offcluster.REST_CONFIG: slurmrestd
    on 127.0.0.1:6820, tokens minted for SlurmUser, the API token in the job's
    environment). It runs no Slurm command: slurmctld's statistics and slurmrestd's log
    count what it asks."""
    return hpcspawner_config(tag, work, settings, shims) + REST_CONFIG


def login_ssh_command() -> str:
    """``ssh ... hpcspawner-hub@127.0.0.1``: one new connection per command, with the
    hub's key and known_hosts (start-sshd.sh), no ssh_config (``-F /dev/null``: no
    connection sharing through a ControlMaster)."""
    ssh = shutil.which("ssh")
    if ssh is None:
        raise RuntimeError("ssh is missing: scripts/install-deps.sh installs openssh-client")
    host, _, port = LOGIN_NODE.rpartition(":")
    argv = [
        ssh, "-F", "/dev/null", "-p", port, "-i", f"{SSH_DIR}/id_ed25519",
        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
        "-o", f"UserKnownHostsFile={KNOWN_HOSTS}",
        "-o", "StrictHostKeyChecking=yes", f"{SERVICE}@{host}",
    ]  # fmt: skip
    return shlex.join(argv)


#: NERSC's way with batchspawner over ssh (their NERSCSlurmSpawner's ``req_env_text``):
#: ssh carries none of the hub's environment, so the job's environment goes into the
#: batch script as export lines, before the server's command.
ENV_IN_SCRIPT = """
import shlex

from batchspawner import SlurmSpawner as _BatchspawnerSlurm


class SSHSlurmSpawner(_BatchspawnerSlurm):
    async def _get_batch_script(self, **subvars):
        env = self.get_env()
        subvars["env_text"] = "".join(f"export {k}={shlex.quote(v)}\\n" for k, v in env.items())
        return await super()._get_batch_script(**subvars)


c.JupyterHub.spawner_class = SSHSlurmSpawner
c.SlurmSpawner.batch_script = _BatchspawnerSlurm.batch_script.default_value.replace(
    "{{prologue}}", "{{env_text}}{{prologue}}"
)
"""


def batchspawner_ssh_config(tag: str, work: Workload, settings: HubSettings, shims: Path) -> str:
    """batchspawner's commands through ``exec_prefix = "ssh ..."`` to the login node, as
    NERSC runs it: squeue as the service account, sbatch and scancel through sudo as the
    user (hpcbench-sudo, which times them as the shims do). squeue's format is quoted
    twice: once for the hub's shell, once for the login node's."""
    sudo = f"{shims / LOGIN_SUDO} {{username}}"
    return (
        batchspawner_config(tag, work, settings, shims)
        + ENV_IN_SCRIPT
        + textwrap.dedent(
            f"""
            c.SlurmSpawner.exec_prefix = {login_ssh_command()!r}
            c.SlurmSpawner.batch_submit_cmd = "{sudo} {shims}/sbatch --parsable"
            c.SlurmSpawner.batch_query_cmd = "{shims}/squeue -h -j {{job_id}} -o \\"'%T %B'\\""
            c.SlurmSpawner.batch_cancel_cmd = "{sudo} {shims}/scancel {{job_id}}"
            """
        )
    )


#: kind -> its hub's config (benchmarks/kinds.py)
CONFIGS = {
    "hpcspawner": hpcspawner_config,
    "hpcspawner-ssh": hpcspawner_ssh_config,
    "hpcspawner-rest": hpcspawner_rest_config,
    "batchspawner": batchspawner_config,
    "batchspawner-ssh": batchspawner_ssh_config,
}


def settings_summary(settings: HubSettings) -> dict[str, str]:
    """The settings of each kind of hub, for the report (what makes the comparison fair)."""
    common = (
        f"JupyterHub 6.1.1, poll_interval={settings.poll_interval} s, "
        f"start_timeout={settings.start_timeout} s, concurrent_spawn_limit=0, log_level=INFO; "
        "hub as root, jobs run as the user; same timing shims first on the hub's PATH"
    )
    return {
        "hpcspawner": common
        + "; LocalSlurmDriver.user_command_prefix=['runuser','-u','{username}','--'] "
        "(sbatch/scancel as the user, squeue as the hub); startup_poll_interval=1.0 s (default); "
        "job_path=<singleuser venv>/bin:...; launcher hpcspawner-singleuser; "
        "partition/memory/runtime via default_options",
        "batchspawner": common
        + "; exec_prefix='runuser -m -u {username} --' (every command as the user); "
        "startup_poll_interval=0.5 s (default); req_srun=''; req_nprocs=1; "
        "req_prologue='cd \"$HOME\"'; env_keep=[LANG, LC_ALL, JUPYTERHUB_SINGLEUSER_APP]; "
        "Spawner.environment PATH=<shims>:<singleuser venv>/bin:...; "
        "Spawner.args=['--ServerApp.ip=0.0.0.0'] (its start() resets ip to 127.0.0.1); "
        "req_options='--comment=<tag> --no-requeue' (cleanup by comment, no requeue, as hpcspawner)",
        "hpcspawner-ssh": "as hpcspawner, with driver_class='ssh': one pooled asyncssh connection "
        "to the login node 127.0.0.1:2222 (this host's second sshd) as the service account "
        "hpcspawner-hub (max_sessions_per_host=8, keepalive 15 s); squeue/scontrol as that "
        "account, sbatch/scancel and the job's environment file (mktemp, dd, rm) through "
        "sudo -n -u <user> (the login node's hpcbench-sudo, which times sbatch/scancel as the "
        "shims do); slurm_bin_dir=<shims>; servers of alice and bob (the users sudoers allows)",
        "hpcspawner-rest": "as hpcspawner, with driver_class='rest': slurmrestd 22.05 "
        "(openapi/v0.0.38, auth/jwt) on 127.0.0.1:6820 over one httpx client; tokens minted "
        "by the hub for SlurmUser 'slurm', naming the user for submissions and cancels; "
        "token_delivery='environment'",
        "batchspawner-ssh": "as batchspawner, with exec_prefix='ssh -F /dev/null -p 2222 -i "
        "<hub key> -o BatchMode=yes -o IdentitiesOnly=yes -o UserKnownHostsFile=<known_hosts> "
        "hpcspawner-hub@127.0.0.1' (a new SSH connection per command, as NERSC runs it); "
        "batch_query_cmd='<shims>/squeue -h -j {job_id} -o ...' as the service account; "
        "batch_submit_cmd/batch_cancel_cmd through sudo -n -u {username} (hpcbench-sudo); the "
        "job's environment as export lines in the batch script (NERSC's req_env_text); "
        f"servers of alice and bob, started {SSH_SPAWN_WAVE} at a time (sshd's MaxStartups)",
    }


@dataclass
class BenchHub:
    """A running hub of one kind (benchmarks/kinds.py)."""

    kind: str
    hub: Hub
    work: Workload
    #: the users its servers run as
    users: tuple[str, ...] = USERS
    #: servers to ask for at once when starting many (None: all at once)
    spawn_wave: int | None = None

    @property
    def tag(self) -> str:
        return self.hub.job_tag


def make_hub(
    kind: str, directory: Path, shims: Path, work: Workload, settings: HubSettings
) -> BenchHub:
    if kind not in CONFIGS:
        raise ValueError(f"unknown hub kind {kind!r}")
    directory.mkdir(parents=True, exist_ok=True)
    hub = Hub(directory=directory, poll_interval=settings.poll_interval, path_prepend=[shims])
    if spawner_of(kind) == "batchspawner":
        hub.python = str(ensure_batchspawner_venv())
    hub.extra_config = CONFIGS[kind](hub.job_tag, work, settings, shims)
    bench = BenchHub(kind, hub, work)
    if kind.endswith("-ssh"):
        bench.users = LOGIN_NODE_USERS
    if kind == "batchspawner-ssh":
        bench.spawn_wave = SSH_SPAWN_WAVE
    return bench
