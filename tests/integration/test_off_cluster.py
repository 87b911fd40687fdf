"""The SSH and REST drivers on the real cluster, with the hub off the cluster.

SSH: the login node is Debian's sshd on 127.0.0.1:2222 (``scripts/cluster/start-sshd.sh``):
the hub logs in as the service account ``hpcspawner-hub`` with its key, checks the host
key against a known_hosts file, and runs ``sbatch``/``scancel`` there through ``sudo -u``
as the user (the sudoers lines of docs/howto/ssh-driver.md).

REST: slurmrestd from Debian as the non-root user ``slurmrest`` with ``auth/jwt``
(``scripts/cluster/start-slurmrestd.sh``) on 127.0.0.1:6820; the hub mints short-lived
tokens for the SlurmUser from the cluster's ``jwt_hs256.key`` and names the user in
``X-SLURM-USER-NAME``; the API token travels in the job's environment
(``token_delivery = "environment"``: slurmrestd cannot write files).

The hub is off the cluster: it runs in its own mount namespace (``unshare --mount``) in
which every Slurm client and munge's tools are replaced by a shim that logs the attempt
and fails, and munge's socket directory is an empty tmpfs. Whatever the hub or anything
it starts tried to run of Slurm's or munge's locally would show in the shim's log (a
positive control shows the namespace does hide them); the jobs still run, submitted on
the login node.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .hub import REPO, run, squeue_fields

SSH_DIR = Path("/etc/hpcspawner-dev/ssh")
SSHD_PID = Path("/run/hpcspawner-sshd.pid")
SSHD_LOG = Path("/var/log/hpcspawner-sshd.log")
SERVICE = "hpcspawner-hub"

#: what a hub off the cluster does not have
SLURM_CLIENTS = (
    "sbatch", "squeue", "scancel", "scontrol", "sacctmgr", "sinfo", "sacct", "srun",
    "salloc", "sattach", "sstat", "sprio", "sshare", "sreport", "munge", "unmunge",
)  # fmt: skip

RESTD_PID = Path("/run/slurmrestd.pid")
JWT_KEY = Path("/var/lib/slurm/slurmctld/jwt_hs256.key")

SSH_CONFIG = f"""
c.SlurmSpawner.driver_class = "ssh"
c.SSHSlurmDriver.hosts = ["127.0.0.1:2222"]
c.SSHSlurmDriver.login_user = {SERVICE!r}
c.SSHSlurmDriver.client_keys = ["{SSH_DIR}/id_ed25519"]
c.SSHSlurmDriver.known_hosts = "{SSH_DIR}/known_hosts"
"""


REST_CONFIG = f"""
c.SlurmSpawner.driver_class = "rest"
c.SlurmSpawner.token_delivery = "environment"
c.RESTSlurmDriver.url = "http://127.0.0.1:6820"
c.RESTSlurmDriver.jwt_key_file = "{JWT_KEY}"
c.RESTSlurmDriver.service_user = "slurm"
"""

#: driver -> (its daemon's start script, pid file, the hub's config)
DRIVERS = {
    "ssh": ("start-sshd.sh", SSHD_PID, SSH_CONFIG),
    "rest": ("start-slurmrestd.sh", RESTD_PID, REST_CONFIG),
}


def pid_in(path: Path) -> int | None:
    try:
        pid = int(path.read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    return pid


@pytest.fixture(scope="module", params=sorted(DRIVERS))
def driver(request, cluster):
    """The driver's daemon (the login node's sshd, slurmrestd): started here unless one
    runs, and then stopped here by pid. Yields (name, the hub's extra config)."""
    script, pidfile, config = DRIVERS[request.param]
    started = None
    if pid_in(pidfile) is None:
        run([str(REPO / "scripts/cluster" / script)], check=True, timeout=60)
        started = pid_in(pidfile)
        assert started, f"{script} left nothing running"
    yield request.param, config
    if started:
        os.kill(started, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and pid_in(pidfile) == started:
            time.sleep(0.05)


@pytest.fixture(scope="module")
def off_cluster(tmp_path_factory):
    """argv prefix: run a command in a mount namespace without Slurm's clients and munge."""
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


def test_the_namespace_hides_slurm_and_munge(off_cluster):
    """Positive control: inside, sbatch is the shim and munge's socket is gone."""
    prefix, log = off_cluster
    before = attempts(log)
    result = subprocess.run(
        [*prefix, "sh", "-c", "sbatch --version; echo rc=$?; ls -A /run/munge | wc -l"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert result.stdout.split() == ["rc=127", "0"], result
    assert attempts(log)[len(before) :] == ["sbatch --version"]


def accepted_logins() -> int:
    text = SSHD_LOG.read_text() if SSHD_LOG.exists() else ""
    return len(re.findall(rf"Accepted publickey for {SERVICE} ", text))


def test_spawn_reach_and_stop_off_the_cluster(driver, off_cluster, hub_factory):
    name, config = driver
    prefix, log = off_cluster
    logins_before = accepted_logins()
    attempts_before = len(attempts(log))
    hub = hub_factory(extra_config=config, command_prefix=prefix)
    hub.create_user("alice")
    token = hub.user_token("alice")
    options = {"partition": "debug", "cpus": 1, "memory": "512M", "runtime": "0:10:00"}
    r = hub.spawn("alice", options=options)
    assert r.status_code in (201, 202), r.text
    model = hub.wait_ready("alice")
    job_id = model["state"]["job_id"]
    assert squeue_fields(job_id, "%u|%P|%C|%T") == ["alice", "debug", "1", "RUNNING"]
    # the job carries the comment recovery finds it by (slurmrestd ignores #SBATCH lines)
    assert squeue_fields(job_id, "%k")[0].startswith(f"hpcspawner:{hub.job_tag}:alice:")
    r = hub.session.get(
        f"{hub.url}/user/alice/api/status",
        headers={"Authorization": f"token {token}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    hub.stop_server("alice")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and squeue_fields(job_id, "%T", all_states=False):
        time.sleep(0.2)
    assert not squeue_fields(job_id, "%T", all_states=False), "the job is still in the queue"
    # nothing of Slurm's or munge's ran on the hub's side
    assert attempts(log)[attempts_before:] == []
    if name == "ssh":  # one pooled connection did it all
        assert accepted_logins() - logins_before == 1, hub.log_tail()

    # the hub's log names the login node's answers, never a secret of the job
    text = hub.log_path.read_text()
    assert "Submitted job" in text
    assert token not in text
