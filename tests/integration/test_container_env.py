"""A server in the ``container`` environment, end to end on the real cluster: the job runs
the launcher and JupyterLab in the job image (scripts/build-job-image.sh) with rootless
podman (``hpcspawner-podman``), as the user, and a kernel started through the hub's proxy
sees the image's root file system, the user's home, and Slurm.

Needs what ``sudo scripts/install-deps.sh`` installs (podman, runc, uidmap, the job image
in /opt/hpcspawner-dev/job-rootfs, hpcspawner-podman in the singleuser venv) and the users'
/etc/subuid and /etc/subgid ranges that ``scripts/cluster/setup.sh`` makes sure of.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import time
from pathlib import Path

import pytest

from .drills import is_singleuser, user_processes
from .hub import job_environ, squeue_fields
from .kernel import execute, start_kernel

JOB_IMAGE = Path("/opt/hpcspawner-dev/job-rootfs")
#: written by build-job-image.sh into the image only: the host has no such file
MARKER = "etc/hpcspawner-job-image"
USER = "alice"
SERVER = "boxed"

EXTRA_CONFIG = f"""
c.SlurmSpawner.environments = {{
    "container": {{"description": "the job image", "container": {str(JOB_IMAGE)!r}}},
}}
c.SlurmSpawner.container_exec = [
    "hpcspawner-podman", "--env=PATH=/opt/jupyter/bin:/usr/local/bin:/usr/bin:/bin",
]
"""

#: what the kernel reports, as one JSON line
PROBE = """\
import json, os, subprocess, sys

def run(*argv):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=90)
    return r.stdout.strip() if r.returncode == 0 else f"exit {r.returncode}: {r.stderr.strip()}"

print(json.dumps({
    "marker": open("/etc/hpcspawner-job-image").read(),
    "os_release": open("/etc/os-release").read(),
    "home": os.environ["HOME"],
    "home_entries": sorted(os.listdir(os.environ["HOME"])),
    "cwd": os.getcwd(),
    "uid": os.getuid(),
    "prefix": sys.prefix,
    "squeue": run("squeue", "--noheader", "--jobs", os.environ["SLURM_JOB_ID"], "--format=%T"),
    "srun": run("srun", "--overlap", "--ntasks=1", "--time=1", "hostname"),
}))
"""


@pytest.fixture(scope="module")
def job_image(singleuser_venv):
    problems = []
    if not (JOB_IMAGE / MARKER).is_file():
        problems.append(f"no job image in {JOB_IMAGE}: run `sudo scripts/install-deps.sh`")
    for command in ("podman", "newuidmap", "newgidmap"):
        if shutil.which(command) is None:
            problems.append(f"{command} is missing: run `sudo scripts/install-deps.sh`")
    if not (singleuser_venv / "bin" / "hpcspawner-podman").exists():
        problems.append(f"no {singleuser_venv}/bin/hpcspawner-podman: run install-deps.sh")
    for path in ("/etc/subuid", "/etc/subgid"):
        try:
            lines = Path(path).read_text().splitlines()
        except OSError:
            lines = []
        if not any(line.startswith(f"{USER}:") for line in lines):
            problems.append(f"{USER} has no range in {path}: run scripts/cluster/setup.sh")
    if problems:
        pytest.fail("\n".join(problems))
    return JOB_IMAGE


@pytest.fixture(scope="module")
def hub(hub_factory, job_image):
    hub = hub_factory(extra_config=EXTRA_CONFIG)
    yield hub
    hub_factory.stop(hub)


@pytest.fixture
def probe_file():
    """A file in the user's home, as the user's own: the container must show it."""
    user = pwd.getpwnam(USER)
    path = Path(user.pw_dir, f"container-probe-{os.getpid()}.txt")
    path.write_text("written on the host\n")
    os.chown(path, user.pw_uid, user.pw_gid)
    yield path
    path.unlink(missing_ok=True)


def test_a_server_in_the_container_sees_the_image_the_home_and_slurm(hub, probe_file):
    hub.create_user(USER)
    token = hub.user_token(USER)
    t0 = time.monotonic()
    r = hub.spawn(
        USER,
        SERVER,
        options={"environment": "container", "partition": "debug", "memory": "1G", "runtime": "10"},
    )
    assert r.status_code in (201, 202), r.text
    model = hub.wait_ready(USER, SERVER, timeout=180)
    ready_s = time.monotonic() - t0
    job_id, node = model["state"]["job_id"], model["state"]["job_host"]

    # seen from the host: the server's root is the image's, and it runs as the user
    (server_pid,) = [p for p, argv in user_processes(USER, SERVER) if is_singleuser(argv)]
    assert Path(f"/proc/{server_pid}/root", MARKER).is_file()
    assert not Path("/", MARKER).exists(), "the host must not have the image's marker"
    assert os.stat(f"/proc/{server_pid}").st_uid == pwd.getpwnam(USER).pw_uid
    # the token reaches the server's environment, never a command line (podman's included)
    server_token = job_environ(USER, SERVER, require="JUPYTERHUB_API_TOKEN")["JUPYTERHUB_API_TOKEN"]
    argvs = [argv for _, argv in user_processes(USER, SERVER)]
    assert any(a.endswith("hpcspawner-podman") for argv in argvs for a in argv[:2]), argvs
    assert not [argv for argv in argvs if any(server_token in a for a in argv)]

    # seen from a kernel, through the proxy with the user's token
    kernel_id = start_kernel(hub, USER, token, SERVER)
    report = json.loads(execute(hub, USER, token, kernel_id, PROBE, SERVER))
    assert report["marker"] == (JOB_IMAGE / MARKER).read_text()
    assert report["os_release"] == (JOB_IMAGE / "etc/os-release").read_text()
    assert report["prefix"] == "/opt/jupyter", "the kernel is the image's Python"
    assert report["home"] == pwd.getpwnam(USER).pw_dir
    assert probe_file.name in report["home_entries"]
    assert report["cwd"] == report["home"]
    assert report["uid"] == pwd.getpwnam(USER).pw_uid
    assert report["squeue"] == "RUNNING", report["squeue"]
    assert report["srun"] == node, report["srun"]

    # JupyterLab in the container: its page loads the job's clock, whose server extension
    # reads the job from Slurm (squeue inside the image)
    auth = {"Authorization": f"token {token}"}
    r = hub.session.get(f"{hub.url}/user/{USER}/{SERVER}/lab", headers=auth, timeout=30)
    assert r.status_code == 200, r.status_code
    assert "hpcspawner-jupyterlab" in r.text, "the clock's JupyterLab extension is not loaded"
    r = hub.session.get(
        f"{hub.url}/user/{USER}/{SERVER}/hpcspawner/job/clock", headers=auth, timeout=30
    )
    assert r.status_code == 200, r.text
    clock = r.json()
    assert (clock["job_id"], clock["error"]) == (job_id, None), clock
    assert 0 < clock["seconds_left"] <= 600, clock

    t0 = time.monotonic()
    hub.stop_server(USER, SERVER)
    stop_s = time.monotonic() - t0
    assert squeue_fields(job_id, "%i|%T", all_states=False) is None
    # nothing of the job is left: no server, no kernel, no podman, conmon or pause process
    left = list(user_processes(USER, SERVER))
    assert not left, left
    output = Path(pwd.getpwnam(USER).pw_dir, f".jupyterhub-slurm-{job_id}.log").read_text()
    assert "[hpcspawner-podman] the container ended with" in output, output[-3000:]
    print(
        f"container server: ready {ready_s:.1f} s after the spawn request, stopped in {stop_s:.1f} s"
    )
