"""A user's server as a Slurm job, end to end: real hub, real proxy, real Slurm.

Each test runs once per driver (``hub_driver``: local, ssh, rest; HPCSPAWNER_TEST_DRIVERS
narrows them): the hub on the cluster, then off it through the login node's sshd and
through slurmrestd (tests/integration/offcluster.py). What the tests look at on the
cluster (squeue, the user's processes and files) is asked from this process, on the
cluster, whatever the hub's driver.
"""

from __future__ import annotations

import os
import re
import time

import pytest

from hpcspawner.slurm.rest import OUTPUT_NOT_AVAILABLE

from . import offcluster
from .drills import is_singleuser, user_processes
from .hub import job_output_file, run, squeue_fields
from .kernel import start_kernel

# What JupyterHub does with the spawner here differs between its versions: runs under the
# lowest JupyterHub pyproject.toml allows too (scripts/test.sh).
pytestmark = pytest.mark.jupyterhub_floor

EXTRA_CONFIG = """
c.SlurmSpawner.environments = {
    "broken": {
        "description": "a site prologue that fails",
        "prologue": "echo 'simulated site failure: /apps not mounted' >&2; exit 3",
    },
}
"""


hub_driver = offcluster.hub_driver


@pytest.fixture(scope="module")
def hub(hub_driver, hub_factory):
    hub = hub_factory(
        extra_config=EXTRA_CONFIG + hub_driver.config, command_prefix=hub_driver.prefix
    )
    yield hub
    hub_factory.stop(hub)  # before the driver's daemon stops and the hub's side is checked


def job_of(hub, name, server=""):
    model = hub.server_model(name, server)
    assert model, f"{name}/{server} has no server"
    return model["state"]["job_id"]


def test_two_users_spawn_reach_and_stop(hub):
    requests_by_user = {
        "alice": {"partition": "debug", "cpus": 1, "memory": "600M", "runtime": "0:15:00"},
        "bob": {"partition": "debug", "cpus": "1", "memory": "0.5G", "runtime": "12"},
    }
    tokens = {}
    for name, options in requests_by_user.items():
        hub.create_user(name)
        tokens[name] = hub.user_token(name)
        r = hub.spawn(name, options=options)
        assert r.status_code in (201, 202), r.text

    jobs = {}
    for name in requests_by_user:
        hub.wait_ready(name)
        jobs[name] = job_of(hub, name)
    assert jobs["alice"] != jobs["bob"]

    expected = {
        "alice": ("alice", "debug", "1", "600M", "15:00", "RUNNING"),
        "bob": ("bob", "debug", "1", "512M", "12:00", "RUNNING"),
    }
    for name, job_id in jobs.items():
        fields = squeue_fields(job_id, "%u|%P|%C|%m|%l|%T")
        assert tuple(fields) == expected[name], (name, fields)
        # through the proxy, over HTTPS, with the user's own token
        r = hub.session.get(
            f"{hub.url}/user/{name}/api/status",
            headers={"Authorization": f"token {tokens[name]}"},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        assert "started" in r.json()
    # each user's token opens only their own server
    r = hub.session.get(
        f"{hub.url}/user/bob/api/status",
        headers={"Authorization": f"token {tokens['alice']}"},
        timeout=30,
        allow_redirects=False,
    )
    assert r.status_code in (302, 403), r.status_code

    for name in requests_by_user:
        hub.stop_server(name)
    for name, job_id in jobs.items():
        # gone from the default squeue view (pending/running/completing)
        assert squeue_fields(job_id, "%i|%T", all_states=False) is None, name
        state = squeue_fields(job_id, "%T")
        assert state in (None, ["CANCELLED"], ["COMPLETED"]), state


def test_server_on_extra_node_is_reached_through_the_proxy(hub):
    hub.create_user("carol")
    token = hub.user_token("carol")
    r = hub.spawn("carol", options={"partition": "remote", "memory": "512M", "runtime": "0:10:00"})
    assert r.status_code in (201, 202), r.text
    model = hub.wait_ready("carol")
    node = model["state"]["job_host"]
    assert node in ("n1", "n2"), model["state"]
    assert squeue_fields(model["state"]["job_id"], "%B") == [node]
    r = hub.session.get(
        f"{hub.url}/user/carol/api/status", headers={"Authorization": f"token {token}"}, timeout=30
    )
    assert r.status_code == 200, r.text
    hub.stop_server("carol")


def test_stop_shuts_the_server_down_cleanly_and_ends_the_job(hub):
    """fast_exit (default): the server runs through the launcher's fast-exit bootstrap,
    and a stop still runs Jupyter Server's own shutdown (its kernels are shut down)
    before Slurm ends the job."""
    hub.create_user("alice")
    token = hub.user_token("alice")
    r = hub.spawn("alice", options={"partition": "debug", "memory": "512M", "runtime": "10"})
    assert r.status_code in (201, 202), r.text
    model = hub.wait_ready("alice")
    job_id = model["state"]["job_id"]
    servers = [argv for _, argv in user_processes("alice", "") if is_singleuser(argv)]
    assert len(servers) == 1, servers
    assert servers[0][1] == "-c", servers[0][:2]
    kernel_id = start_kernel(hub, "alice", token)
    deadline = time.monotonic() + 60
    while not (
        kernels := [p for p, argv in user_processes("alice", "") if "ipykernel_launcher" in argv]
    ):
        assert time.monotonic() < deadline, "the kernel process did not start"
        time.sleep(0.2)

    hub.stop_server("alice")
    # stop() returns once Slurm has dropped the job: nothing of it is left
    assert squeue_fields(job_id, "%i|%T", all_states=False) is None
    assert not [p for p in kernels if os.path.exists(f"/proc/{p}")], "the kernel outlived the job"
    log = job_output_file("alice", job_id).read_text()
    assert "on port" in log and "(fast exit)" in log, log[:500]
    assert f"Kernel shutdown: {kernel_id}" in log, log[-2000:]


def test_job_that_dies_before_its_server_fails_the_spawn_fast(hub, hub_driver):
    hub.create_user("alice")
    t0 = time.monotonic()
    r = hub.spawn("alice", "broken", options={"environment": "broken"})
    assert r.status_code in (201, 202, 500), r.text
    events = hub.progress_events("alice", "broken", timeout=120)
    elapsed = time.monotonic() - t0
    last = events[-1]
    assert last.get("failed"), events
    message = last["message"]
    assert "ended before the server started" in message, message
    assert "the job failed" in message, message
    if hub_driver.name == "rest":
        # slurmrestd gives no access to files: the REST driver's read_output says so
        # (docs/howto/rest-driver.md, "What does not work through REST"). The user sees why
        # the job ended and where its output is; the prologue's words are there, not here.
        found = re.search(r"Job (\d+) ended before the server started", message)
        output = job_output_file("alice", found.group(1))
        assert f"Its output file {output} {OUTPUT_NOT_AVAILABLE}." in message, message
        assert "simulated site failure: /apps not mounted" in output.read_text()
        assert "simulated site failure" not in message, message
        said = OUTPUT_NOT_AVAILABLE
    else:  # the end of the job's output, read as the user on the hub's host or the login node
        assert "simulated site failure: /apps not mounted" in message, message
        said = "simulated site failure"
    # the start timeout is 180 s; the failure must come from Slurm's answer, not from it
    assert elapsed < 60, f"spawn failure took {elapsed:.1f} s"
    assert hub.server_model("alice", "broken") is None
    if r.status_code == 500:  # failed within slow_spawn_timeout: the API says why, too
        assert said in r.json()["message"], r.text


def test_invalid_options_are_rejected_before_submitting(hub):
    hub.create_user("bob")
    before = run(["squeue", "--noheader", "--states=all", "--user=bob", "--format=%i"]).stdout
    cases = [
        ({"partition": "debug", "runtime": "2-00:00:00"}, "runtime"),
        ({"cpus": 0}, "cpus"),
        ({"memory": "lots"}, "memory"),
        ({"partition": "debug; rm -rf ~"}, "partition"),
        ({"gpus": 1, "nonsense": True}, "nonsense"),
    ]
    for options, field in cases:
        r = hub.spawn("bob", "bad", options=options)
        assert r.status_code == 400, (options, r.status_code, r.text)
        assert field in r.json()["message"], (options, r.json())
        assert hub.server_model("bob", "bad") is None
    after = run(["squeue", "--noheader", "--states=all", "--user=bob", "--format=%i"]).stdout
    assert before == after, "a rejected request reached sbatch"


def test_slurm_rejection_is_shown_in_slurms_words(hub):
    hub.create_user("carol")
    # the hub allows any reservation name (none configured); Slurm knows no such reservation
    r = hub.spawn("carol", "nosuch", options={"reservation": "nosuch"})
    assert r.status_code == 400, r.text
    assert "Slurm rejected the job: " in r.json()["message"], r.json()
    assert "Requested reservation is invalid" in r.json()["message"], r.json()
