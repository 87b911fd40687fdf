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

import subprocess

from . import offcluster
from .hub import squeue_fields, wait_left_queue
from .offcluster import accepted_logins, attempts

driver = offcluster.driver
off_cluster = offcluster.off_cluster


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
    wait_left_queue(job_id)
    # nothing of Slurm's or munge's ran on the hub's side
    assert attempts(log)[attempts_before:] == []
    if name == "ssh":  # one pooled connection did it all
        assert accepted_logins() - logins_before == 1, hub.log_tail()

    # the hub's log names the login node's answers, never a secret of the job
    text = hub.log_path.read_text()
    assert "Submitted job" in text
    assert token not in text
