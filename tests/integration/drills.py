"""Helpers for the failure drills: Slurm daemons by pid file, process lookup, measurements.

Daemons are signalled through their pid files only (never by name). The
controller is only ever stopped with SIGTERM: a SIGKILL shortly after a submit
loses the job record (docs/topic/reliability.md). Every drill restores the
cluster with ``MULTINODE=2 scripts/cluster/setup.sh``, which starts only what
is missing.
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import subprocess
import time
from pathlib import Path

from .hub import REPO, run

SLURMCTLD_PID = Path("/run/slurmctld.pid")
JOBCOMP_LOG = Path("/var/log/slurm/jobcomp.log")
MEASUREMENTS = REPO / ".test-artifacts" / "drills.jsonl"


def pid_from(pidfile: Path, comm: str) -> int:
    pid = int(pidfile.read_text().strip())
    assert Path(f"/proc/{pid}/comm").read_text().strip() == comm, (pidfile, pid)
    return pid


def slurmctld_pid() -> int:
    return pid_from(SLURMCTLD_PID, "slurmctld")


def slurmd_pid(node: str) -> int:
    return pid_from(Path(f"/run/slurmd-{node}.pid"), "slurmd")


def wait_gone(pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"pid {pid} still alive after {timeout} s")


def stop_controller() -> float:
    """SIGTERM slurmctld and wait until it exited; return the time it was signalled."""
    pid = slurmctld_pid()
    t = time.time()
    os.kill(pid, signal.SIGTERM)
    wait_gone(pid)
    return t


def start_controller(timeout: float = 60) -> None:
    """Start slurmctld as scripts/cluster/setup.sh does (from /, keeping its state)."""
    subprocess.run(["/usr/sbin/slurmctld"], cwd="/", check=True, timeout=60)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if run(["sinfo", "--noheader"], timeout=30).returncode == 0:
            # slurmctld resets the file to 0644 at start; sacct -c needs it writable
            JOBCOMP_LOG.chmod(0o666)
            return
        time.sleep(0.2)
    raise AssertionError("slurmctld did not answer after its restart")


def restore_cluster() -> None:
    """Bring back whatever daemon is missing (SIGCONT first, in case one is stopped)."""
    try:
        os.kill(slurmctld_pid(), signal.SIGCONT)
    except (OSError, ValueError, AssertionError):
        pass
    result = subprocess.run(
        [str(REPO / "scripts/cluster/setup.sh")],
        env={**os.environ, "MULTINODE": "2"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, f"cluster not restored:\n{result.stdout}\n{result.stderr}"


def user_processes(username: str, server_name: str):
    """(pid, argv) of every process of ``username`` that belongs to server ``server_name``."""
    uid = pwd.getpwnam(username).pw_uid
    marker = f"JUPYTERHUB_SERVER_NAME={server_name}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != uid:
                continue
            with open(f"/proc/{entry}/environ", "rb") as f:
                if marker not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        yield int(entry), argv


def is_singleuser(argv: list[str]) -> bool:
    """The jupyterhub-singleuser process itself, run directly or through the launcher's
    fast-exit bootstrap (``python -c ... /path/jupyterhub-singleuser``); not the launcher."""
    return any(a.endswith("/jupyterhub-singleuser") for a in argv) and not any(
        a.endswith("hpcspawner-singleuser") for a in argv
    )


def singleuser_pid(username: str, server_name: str, timeout: float = 30) -> int:
    """The jupyterhub-singleuser process itself (not the hpcspawner-singleuser launcher)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid, argv in user_processes(username, server_name):
            if is_singleuser(argv):
                return pid
        time.sleep(0.2)
    raise AssertionError(f"no jupyterhub-singleuser process for {username}/{server_name}")


def record(drill: str, **figures) -> None:
    """Append a measured figure to .test-artifacts/drills.jsonl (source of the docs' tables)."""
    MEASUREMENTS.parent.mkdir(exist_ok=True)
    entry = {"drill": drill, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **figures}
    with MEASUREMENTS.open("a") as f:
        f.write(json.dumps(entry) + "\n")
    print(json.dumps(entry))


def job_state(job_id: str) -> str | None:
    out = run(["squeue", "--noheader", "--states=all", f"--jobs={job_id}", "--format=%T"])
    return out.stdout.strip() or None if out.returncode == 0 else None


def tagged_jobs(tag: str, username: str, server: str) -> list[tuple[str, str]]:
    """(job id, state) of every job the hub ``tag`` started for ``username``/``server``."""
    out = run(["squeue", "--noheader", "--states=all", f"--users={username}", "--format=%i|%T|%k"])
    jobs = []
    for line in out.stdout.splitlines():
        job_id, state, comment = line.split("|", 2)
        if comment.startswith(f"hpcspawner:{tag}:{username}:{server or '-'}:"):
            jobs.append((job_id, state))
    return jobs


def login_session(hub, name: str):
    """A requests session logged in to ``hub`` as ``name`` (DummyAuthenticator form login)."""
    import requests

    session = requests.Session()
    session.trust_env = False
    session.verify = hub.session.verify
    session.get(f"{hub.url}/hub/login", timeout=30).raise_for_status()
    r = session.post(
        f"{hub.url}/hub/login",
        data={"username": name, "password": "x", "_xsrf": session.cookies.get("_xsrf", "")},
        timeout=30,
    )
    r.raise_for_status()
    return session
