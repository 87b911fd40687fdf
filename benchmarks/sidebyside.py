"""The two spawners under test, configured the way their users need on JupyterHub 6.

Both hubs are :class:`tests.integration.hub.Hub` (a real JupyterHub + CHP over
HTTPS, as root, against the local Slurm cluster) with the same timing shims
first on their PATH. Only the spawner settings differ:

- hpcspawner runs from the project's venv (the interpreter running the benchmark);
- batchspawner 1.3.0 runs from its own venv without hpcspawner, because
  hpcspawner registers its own strict ``/api/batchspawner`` handler in every hub
  it is installed in, which would take batchspawner's callback.

The jobs of both run the same singleuser venv.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.integration.hub import Hub  # noqa: E402

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
SLURM_COMMANDS = ("squeue", "sbatch", "scancel", "scontrol", "sinfo", "sacct", "sacctmgr")

SPAWNERS = ("hpcspawner", "batchspawner")


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
    for command in SLURM_COMMANDS:
        real = shutil.which(command, path="/usr/local/bin:/usr/bin:/bin")
        if real is None:
            continue
        shim = directory / command
        shim.write_text(
            "#!/bin/sh\n"
            f'printf "S %s {command} %s %s %s\\n" "$(date +%s.%N)" "$(id -u)" "$$" "$*" >> {log}\n'
            f'{real} "$@"\n'
            "rc=$?\n"
            f'printf "E %s {command} %s %s %s\\n" "$(date +%s.%N)" "$(id -u)" "$$" "$rc" >> {log}\n'
            "exit $rc\n"
        )
        shim.chmod(0o755)
    return directory


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


def settings_summary(settings: HubSettings) -> dict[str, str]:
    """The settings of each spawner, for the report (what makes the comparison fair)."""
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
    }


@dataclass
class BenchHub:
    """A running hub of one spawner kind."""

    kind: str
    hub: Hub
    work: Workload

    @property
    def tag(self) -> str:
        return self.hub.job_tag


def make_hub(
    kind: str, directory: Path, shims: Path, work: Workload, settings: HubSettings
) -> BenchHub:
    directory.mkdir(parents=True, exist_ok=True)
    hub = Hub(directory=directory, poll_interval=settings.poll_interval, path_prepend=[shims])
    if kind == "hpcspawner":
        hub.extra_config = hpcspawner_config(hub.job_tag, work, settings, shims)
    elif kind == "batchspawner":
        hub.python = str(ensure_batchspawner_venv())
        hub.extra_config = batchspawner_config(hub.job_tag, work, settings, shims)
    else:
        raise ValueError(f"unknown spawner {kind!r}")
    return BenchHub(kind, hub, work)
