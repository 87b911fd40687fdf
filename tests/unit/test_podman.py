"""hpcspawner.job.podman: the job-side runner of a root file system with rootless podman.

The pure part (its command line, what the container sees, podman's argv) in tables; the
process part (signals, exit code, podman's detached helpers, its state) against a fake
``podman`` that behaves as the real one does in a job: ``unshare`` leaves a detached pause
process behind, ``run`` runs the command and passes SIGTERM on. The real podman runs in
tests/integration/test_container_env.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hpcspawner.job import podman
from hpcspawner.job.podman import (
    Bind,
    cgroup_mode,
    default_runtime,
    host_binds,
    invisible_files,
    missing_mount_points,
    parse_args,
    parse_volume,
    passed_variables,
    podman_argv,
    podman_environment,
    tmpfs_for,
    workdir,
)

REPO = Path(__file__).resolve().parents[2]
ROOTFS = "/opt/images/jupyter"

# ---------------------------------------------------------------- the command line


def test_parse_args_reads_options_up_to_the_root_file_system():
    options = parse_args(
        [
            "--volume=/scratch:/scratch",
            "-v",
            "/apps:/opt/apps:ro",
            "--env=PATH=/opt/jupyter/bin:/usr/bin:/bin",
            "--env",
            "SITE",
            "--nv",
            "--run-option=--memory=4g",
            ROOTFS,
            "hpcspawner-singleuser",
            "jupyterhub-singleuser",
            "--debug",
            "-v",
        ]
    )
    assert options.rootfs == ROOTFS
    # what follows the image is the command's, options included
    assert options.command == ("hpcspawner-singleuser", "jupyterhub-singleuser", "--debug", "-v")
    assert options.binds == (
        Bind("/scratch", "/scratch"),
        Bind("/apps", "/opt/apps", read_only=True),
    )
    assert options.env == ("PATH=/opt/jupyter/bin:/usr/bin:/bin", "SITE")
    assert options.gpus
    assert options.run_options == ("--memory=4g",)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param([ROOTFS], "no command", id="no-command"),
        pytest.param([], "required: rootfs", id="nothing"),
        pytest.param(["images/jupyter", "cmd"], "absolute", id="relative-rootfs"),
        pytest.param(["/opt/../etc", "cmd"], "normalized", id="dotdot-rootfs"),
        pytest.param(["/", "cmd"], "other than /", id="host-root"),
        pytest.param(["--volume=scratch", ROOTFS, "cmd"], "absolute", id="relative-volume"),
        pytest.param(["--volume=/a:/b:/c", ROOTFS, "cmd"], "SRC", id="volume-three-paths"),
        pytest.param(["--env=1X=2", ROOTFS, "cmd"], "not a variable name", id="env-name"),
        pytest.param(["--env=A*", ROOTFS, "cmd"], "not a variable name", id="env-glob"),
        pytest.param(["--run-option=memory", ROOTFS, "cmd"], "one podman option", id="run-opt"),
        pytest.param(["--privileged", ROOTFS, "cmd"], "unrecognized", id="unknown-option"),
        pytest.param(["--vol=/a", ROOTFS, "cmd"], "unrecognized", id="no-abbreviations"),
    ],
)
def test_parse_args_rejects(argv, message):
    with pytest.raises(ValueError, match=message):
        parse_args(argv)


@pytest.mark.parametrize(
    ("spec", "bind"),
    [
        pytest.param("/scratch", Bind("/scratch", "/scratch"), id="same-path"),
        pytest.param("/scratch/", Bind("/scratch", "/scratch"), id="trailing-slash"),
        pytest.param("/data:/mnt/data", Bind("/data", "/mnt/data"), id="elsewhere"),
        pytest.param("/apps:ro", Bind("/apps", "/apps", read_only=True), id="read-only"),
        pytest.param("/a:/b:rw", Bind("/a", "/b"), id="read-write"),
    ],
)
def test_parse_volume(spec, bind):
    assert parse_volume(spec) == bind


# ---------------------------------------------------------------- what the container gets


def test_variables_pass_by_name_except_the_hosts_own():
    env = {
        "JUPYTERHUB_API_TOKEN": "secret",
        "JUPYTERHUB_SERVICE_URL": "http://0.0.0.0:0/",
        "HPCSPAWNER_TOKEN_FILE": "/home/alice/.t/x",
        "SLURM_JOB_ID": "42",
        "CUDA_VISIBLE_DEVICES": "0",
        "HOME": "/home/alice",
        "LANG": "C.UTF-8",
        "SITE_SETTING": "1",
        "PATH": "/opt/venv/bin:/usr/bin",
        "LD_LIBRARY_PATH": "/opt/cuda/lib64",
        "PYTHONPATH": "/opt/site",
        "TMPDIR": "/tmp/slurm-42",
        "XDG_RUNTIME_DIR": "/run/user/1001",
        "BASH_FUNC_module%%": "() { eval $(/usr/bin/modulecmd bash $*); }",
        "CONTAINERS_CONF": "/etc/x",
        "PWD": "/home/alice",
        "not valid": "x",
    }
    assert passed_variables(env) == [
        "CUDA_VISIBLE_DEVICES",
        "HOME",
        "HPCSPAWNER_TOKEN_FILE",
        "JUPYTERHUB_API_TOKEN",
        "JUPYTERHUB_SERVICE_URL",
        "LANG",
        "SITE_SETTING",
        "SLURM_JOB_ID",
    ]


def test_host_binds_add_home_slurm_and_munge_where_the_host_has_them():
    env = {"HOME": "/home/alice", "SLURM_CONF": "/etc/slurm-llnl/slurm.conf"}
    binds = host_binds(env, [Bind("/scratch", "/scratch")], exists=lambda path: True)
    assert binds == [
        Bind("/scratch", "/scratch"),
        Bind("/home/alice", "/home/alice"),
        Bind("/etc/slurm-llnl", "/etc/slurm-llnl", read_only=True),
        Bind("/run/munge", "/run/munge"),
    ]


def test_host_binds_leave_out_what_the_admin_binds_or_the_host_lacks():
    env = {"HOME": "/home/alice"}
    admin = [Bind("/home", "/home"), Bind("/etc/slurm", "/etc/slurm", read_only=True)]
    binds = host_binds(env, admin, exists=lambda path: path != "/run/munge")
    assert binds == admin


@pytest.mark.parametrize(
    ("home", "image_has", "tmpfs"),
    [
        pytest.param("/home/alice", {"/home"}, "/home", id="home-over-tmpfs"),
        pytest.param("/home/users/alice", {"/home"}, "/home", id="deeper"),
        pytest.param("/home/alice", {"/home", "/home/alice"}, None, id="image-has-it"),
        pytest.param("/alice", set(), None, id="top-level-home"),
        pytest.param("", set(), None, id="no-home"),
    ],
)
def test_tmpfs_for_the_home(home, image_has, tmpfs):
    binds = [Bind(home, home)] if home else []
    assert tmpfs_for(home, binds, image_has.__contains__) == tmpfs


def test_tmpfs_only_when_the_home_itself_is_bound():
    assert tmpfs_for("/home/alice", [Bind("/home", "/home")], {"/home"}.__contains__) is None


def test_missing_mount_points():
    binds = [Bind("/home/alice", "/home/alice"), Bind("/etc/slurm", "/etc/slurm", True)]
    binds.append(Bind("/scratch", "/scratch"))
    image_has = {"/home", "/etc/slurm"}.__contains__
    # under the tmpfs podman makes the mount point itself
    assert missing_mount_points(binds, "/home", image_has) == ["/scratch"]
    assert missing_mount_points(binds, None, image_has) == ["/home/alice", "/scratch"]


def test_files_the_server_reads_must_be_bound_at_their_path():
    binds = [Bind("/home/alice", "/home/alice"), Bind("/data", "/mnt/data")]
    env = {
        "HPCSPAWNER_TOKEN_FILE": "/home/alice/.jupyterhub-tokens/default/t",
        "JUPYTERHUB_SSL_KEYFILE": "/scratch/alice/key.pem",
        "JUPYTERHUB_SSL_CERTFILE": "/data/cert.pem",  # bound, but elsewhere
        "JUPYTERHUB_SSL_CLIENT_CA": "relative.pem",
    }
    assert invisible_files(env, binds) == ["JUPYTERHUB_SSL_KEYFILE", "JUPYTERHUB_SSL_CERTFILE"]


@pytest.mark.parametrize(
    ("cwd", "home", "expected"),
    [
        pytest.param("/home/alice/work", "/home/alice", "/home/alice/work", id="in-home"),
        pytest.param("/scratch/alice", "/home/alice", "/scratch/alice", id="in-a-bind"),
        pytest.param("/tmp", "/home/alice", "/home/alice", id="elsewhere"),
        pytest.param("/home/alicex", "/home/alice", "/home/alice", id="prefix-is-not-inside"),
        pytest.param("/tmp", "", "/", id="no-home"),
    ],
)
def test_workdir(cwd, home, expected):
    binds = [Bind("/scratch", "/scratch")] + ([Bind(home, home)] if home else [])
    assert workdir(cwd, home, binds) == expected


MOUNTINFO_HYBRID = """\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 25 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
32 31 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
35 31 0:30 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,memory
"""
MOUNTINFO_UNIFIED = """\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw
"""
MOUNTINFO_LEGACY = """\
31 25 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
35 31 0:30 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,memory
"""


@pytest.mark.parametrize(
    ("mountinfo", "mode", "runtime"),
    [
        pytest.param(MOUNTINFO_HYBRID, "hybrid", "runc", id="hybrid"),
        pytest.param(MOUNTINFO_UNIFIED, "unified", None, id="unified"),
        pytest.param(MOUNTINFO_LEGACY, "legacy", None, id="legacy"),
        pytest.param("", "legacy", None, id="nothing"),
    ],
)
def test_the_runtime_follows_the_cgroup_mode(mountinfo, mode, runtime):
    assert cgroup_mode(mountinfo) == mode
    assert default_runtime(mode) == runtime


# ---------------------------------------------------------------- podman's argv


def _argv(env, argv=("--env=PATH=/opt/jupyter/bin:/bin", ROOTFS, "launcher", "--flag")):
    options = parse_args(list(argv))
    binds = host_binds(env, options.binds, exists=lambda path: True)
    return podman_argv(
        options,
        binds=binds,
        tmpfs=tmpfs_for(env.get("HOME", ""), binds, {"/home"}.__contains__),
        env=env,
        state_dir="/tmp/hpcspawner-podman-x",
        cwd="/home/alice",
        umask=0o077,
        runtime="runc",
    )


def test_podman_argv():
    env = {"HOME": "/home/alice", "JUPYTERHUB_API_TOKEN": "s3cret", "PATH": "/usr/bin"}
    argv = _argv(env)
    run = argv.index("run")
    assert argv[:run] == [
        "podman",
        "--root=/tmp/hpcspawner-podman-x/storage",
        "--runroot=/tmp/hpcspawner-podman-x/run",
        "--network-config-dir=/tmp/hpcspawner-podman-x/networks",
        "--storage-driver=vfs",
        "--cgroup-manager=cgroupfs",
        "--events-backend=file",
        "--log-level=error",
        "--runtime=runc",
    ]
    rootfs = argv.index("--rootfs")
    # podman stops reading options at the image: everything else comes before it
    assert argv[rootfs:] == ["--rootfs", ROOTFS, "launcher", "--flag"]
    options = argv[run + 1 : rootfs]
    assert options[:7] == [
        "--rm",
        "--read-only",
        "--network=host",
        "--pid=host",
        "--userns=keep-id",
        "--umask=0077",
        "--mount=type=tmpfs,destination=/home",
    ]
    assert "--volume=/home/alice:/home/alice:rw" in options
    assert "--volume=/run/munge:/run/munge:rw" in options
    assert "--workdir=/home/alice" in options
    assert "--env=JUPYTERHUB_API_TOKEN" in options
    assert options[-1] == "--env=PATH=/opt/jupyter/bin:/bin"  # the admin's, last
    # values travel in podman's environment, never on its command line
    assert not [word for word in argv if "s3cret" in word or "/usr/bin" in word]


def test_podman_argv_gpus_and_run_options():
    argv = _argv({"HOME": "/home/alice"}, ["--nv", "--run-option=--memory=4g", ROOTFS, "cmd"])
    rootfs = argv.index("--rootfs")
    assert "--device=nvidia.com/gpu=all" in argv[:rootfs]
    assert argv[rootfs - 1] == "--memory=4g"


@pytest.mark.parametrize(
    ("code", "message"),
    [
        pytest.param(0, "the container ended with 0 after 1.5 s", id="done"),
        pytest.param(143, "the container ended with 143 after 1.5 s", id="sigterm"),
        pytest.param(125, "podman could not run the container (its message is above)", id="125"),
        pytest.param(127, "not found in the container (is it on the image's PATH?)", id="127"),
    ],
)
def test_ending_message(code, message):
    assert message in podman.ending_message(code, 1.5)


def test_podmans_own_state_is_private():
    env = podman_environment({"HOME": "/home/alice", "XDG_RUNTIME_DIR": "/run/user/1"}, "/t/s")
    assert env == {
        "HOME": "/home/alice",
        "XDG_RUNTIME_DIR": "/t/s",
        "XDG_CONFIG_HOME": "/t/s/config",
        "XDG_DATA_HOME": "/t/s/data",
    }


# ---------------------------------------------------------------- the process side

#: A stand-in for podman: ``unshare`` leaves a detached "pause process" behind, as podman's
#: does; ``run`` logs its argv and runs the command after the image, passing SIGTERM on.
FAKE_PODMAN = """\
import json, os, signal, subprocess, sys, time
args = sys.argv[1:]
log = os.environ["FAKE_PODMAN_LOG"]
if "unshare" in args:
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            with open(log, "a") as f:
                f.write(json.dumps({"pause": os.getpid()}) + "\\n")
            time.sleep(300)
        os._exit(0)
    sys.exit(0)
with open(log, "a") as f:
    f.write(json.dumps({"argv": args, "env": sorted(os.environ)}) + "\\n")
children = []
for signum in (signal.SIGTERM, signal.SIGUSR1):  # podman's signal proxy
    signal.signal(signum, lambda s, _f: children and children[0].send_signal(s))
child = subprocess.Popen(args[args.index("--rootfs") + 2 :])
children.append(child)
code = child.wait()
sys.exit(128 - code if code < 0 else code)
"""
#: the "server": says it is up, says so on SIGUSR1 (Slurm's warning), ends with 7 on SIGTERM
SERVER = (
    "import os, signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(7)); "
    "signal.signal(signal.SIGUSR1, lambda *a: os.write(1, b'usr1\\n')); "
    "os.write(1, b'up\\n'); time.sleep(60)"
)


@pytest.fixture
def fake_job(tmp_path):
    """A root file system, a home, a fake podman; the environment of a job that uses them."""
    rootfs = tmp_path / "rootfs"
    home = tmp_path / "home" / "alice"
    for directory in (rootfs / "etc/slurm", rootfs / "run/munge", home):
        directory.mkdir(parents=True)
    # the home's top directory (tmp_path's first component) is in the image
    (rootfs / str(tmp_path).strip("/").split("/")[0]).mkdir(exist_ok=True)
    fake = tmp_path / "podman"
    fake.write_text(f"#!{sys.executable}\n{FAKE_PODMAN}")
    fake.chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    env = {
        "HOME": str(home),
        "PATH": os.environ["PATH"],
        "TMPDIR": str(state),
        "FAKE_PODMAN_LOG": str(tmp_path / "podman.log"),
        "PYTHONPATH": str(REPO),
        "JUPYTERHUB_API_TOKEN": "s3cret",
    }
    return rootfs, fake, env


def _start(fake_job, command):
    rootfs, fake, env = fake_job
    argv = [sys.executable, "-m", "hpcspawner.job.podman", f"--podman={fake}", str(rootfs)]
    return subprocess.Popen(
        [*argv, *command],
        env=env,
        cwd=env["HOME"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _log(env):
    return [json.loads(line) for line in Path(env["FAKE_PODMAN_LOG"]).read_text().splitlines()]


def _gone(pid, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_the_containers_exit_code_and_no_leftovers(fake_job):
    _, _, env = fake_job
    proc = _start(fake_job, [sys.executable, "-c", "import sys; sys.exit(3)"])
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 3, stderr
    assert "the container ended with 3" in stderr
    (pause,) = [entry["pause"] for entry in _log(env) if "pause" in entry]
    assert _gone(pause), "podman's pause process outlived the job's command"
    assert os.listdir(env["TMPDIR"]) == [], "podman's state was left behind"
    (run,) = [entry for entry in _log(env) if "argv" in entry]
    assert "XDG_RUNTIME_DIR" in run["env"]
    assert not [word for word in run["argv"] if "s3cret" in word]


def test_sigterm_reaches_the_server_and_its_code_comes_back(fake_job):
    proc = _start(fake_job, [sys.executable, "-c", SERVER])
    assert proc.stdout.readline() == "up\n"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 7, stderr


def test_slurms_warning_ahead_of_the_walltime_reaches_the_server(fake_job):
    proc = _start(fake_job, [sys.executable, "-c", SERVER])
    assert proc.stdout.readline() == "up\n"
    proc.send_signal(signal.SIGUSR1)  # #SBATCH --signal=B:USR1@N: to the batch shell, this
    assert proc.stdout.readline() == "usr1\n"
    assert proc.poll() is None, "SIGUSR1 must not end the job"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 7, stderr


def test_a_problem_is_named_before_podman_runs(fake_job):
    rootfs, _, env = fake_job
    env["HPCSPAWNER_TOKEN_FILE"] = "/nonexistent-dir/token"
    (rootfs / "run/munge").rmdir()
    proc = _start(fake_job, ["true"])
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2
    expected = textwrap.dedent(
        f"""\
        [hpcspawner-podman] the image has no /run/munge: create it in {rootfs} (a mount point)
        [hpcspawner-podman] HPCSPAWNER_TOKEN_FILE=/nonexistent-dir/token is outside the directories bound into the container: add --volume for its directory to container_exec
        """
    )
    if os.path.exists(podman.MUNGE_SOCKET_DIR):
        assert stderr == expected
    else:  # a host without munge: nothing to bind there
        assert stderr == expected.split("\n", 1)[1]
    assert not Path(env["FAKE_PODMAN_LOG"]).exists()
