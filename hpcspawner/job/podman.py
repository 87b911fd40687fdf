"""Job-side container runner: ``hpcspawner-podman [OPTIONS] ROOTFS COMMAND [ARGS...]``.

Runs COMMAND (the launcher, ``hpcspawner-singleuser ...``) in ROOTFS, a root file system
directory, with rootless podman, as the job's user, inside the Slurm job. It is what
``c.SlurmSpawner.container_exec`` names for a ``container`` environment when the site has
podman rather than Apptainer (docs/howto/containers.md). It

1. makes a private directory for podman's state (``mkdtemp`` under ``$TMPDIR`` or /tmp):
   a job has no systemd user session, no ``XDG_RUNTIME_DIR``, and must not share storage
   with the user's other jobs or leave anything in the home;
2. runs ``podman run`` with what a server needs and nothing the host's job environment
   would break: the image read-only, the node's network (the launcher calls the hub back,
   the hub reaches the server) and process table, the user's own uid (``keep-id``, with
   /etc/subuid ranges), the home at the same path, Slurm's config and munge's socket (so
   ``srun``, ``squeue`` work inside), and the job's environment by name only (values, the
   API token among them, never reach argv), without the host's PATH and library paths;
3. stays as the parent of podman's helpers (conmon, the user namespace's pause process,
   which podman detaches): a child subreaper, so that they remain in the job's process tree
   where Slurm finds them, forwards the job's signals to ``podman run`` (which passes them to
   the container), and when the container has ended, ends what is left and deletes the state.

Standard library only: it runs in the job's environment, like the launcher.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from .launcher import END_SIGNAL, FORWARDED_SIGNALS, catches_signal, descendants, exit_code

#: The job's variables that stay outside: paths of the host's software (the image has its
#: own), podman's own state (set for podman below), the shell's bookkeeping, a per-job
#: TMPDIR that does not exist inside (the container's /tmp is its own).
HOST_ONLY_VARIABLES = frozenset(
    {
        "PATH",
        "LD_LIBRARY_PATH",
        "LD_PRELOAD",
        "PYTHONHOME",
        "PYTHONPATH",
        "TMPDIR",
        "XDG_RUNTIME_DIR",
        "XDG_CONFIG_HOME",
        "XDG_DATA_HOME",
        "XDG_CACHE_HOME",
        "HOSTNAME",
        "PWD",
        "OLDPWD",
        "SHLVL",
        "PS1",
        "_",
    }
)
#: Prefixes of variables that stay outside: exported shell functions (``module`` of lmod or
#: environment-modules, which calls host paths), podman's own settings.
HOST_ONLY_PREFIXES = ("BASH_FUNC_", "CONTAINERS_", "CONTAINER_", "PODMAN_")
#: Variables naming files the launcher or the server must read: they must be inside a bind.
FILE_VARIABLES = (
    "HPCSPAWNER_TOKEN_FILE",
    "JUPYTERHUB_SSL_KEYFILE",
    "JUPYTERHUB_SSL_CERTFILE",
    "JUPYTERHUB_SSL_CLIENT_CA",
)
MUNGE_SOCKET_DIR = "/run/munge"
DEFAULT_SLURM_CONF = "/etc/slurm/slurm.conf"
#: What ``--nv`` becomes: the NVIDIA GPUs through CDI (``nvidia-ctk cdi generate``)
GPU_OPTIONS = ("--device=nvidia.com/gpu=all",)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
PR_SET_CHILD_SUBREAPER = 36
#: After the container: how long podman's helpers get to end after SIGTERM
CLEANUP_GRACE_S = 5.0
USAGE = (
    "hpcspawner-podman [--volume SRC[:DST][:ro]] [--env NAME[=VALUE]] [--nv] [--runtime R] "
    "[--podman PATH] [--run-option OPT] ROOTFS COMMAND [ARGS...]"
)
NAMESPACE_NEEDS = (
    "the user needs ranges in /etc/subuid and /etc/subgid, the node newuidmap (package uidmap)"
)


def log(message: str) -> None:
    print(f"[hpcspawner-podman] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- pure helpers


@dataclass(frozen=True)
class Bind:
    """A host directory (or file) seen in the container: ``source`` at ``destination``."""

    source: str
    destination: str
    read_only: bool = False

    def option(self) -> str:
        return f"--volume={self.source}:{self.destination}:{'ro' if self.read_only else 'rw'}"


@dataclass(frozen=True)
class Options:
    """What the admin wrote in ``container_exec`` and the spawner appended."""

    rootfs: str
    command: tuple[str, ...]
    binds: tuple[Bind, ...] = ()
    env: tuple[str, ...] = ()
    gpus: bool = False
    runtime: str | None = None
    podman: str = "podman"
    run_options: tuple[str, ...] = ()


def _clean_path(path: str, what: str) -> str:
    if not path.startswith("/") or os.path.normpath(path) != path.rstrip("/") or path == "/":
        raise ValueError(f"{what} {path!r} must be an absolute, normalized path other than /")
    return path.rstrip("/")


def parse_volume(spec: str) -> Bind:
    """``SRC[:DST][:ro|rw]`` (podman's and Apptainer's ``--bind`` form) -> Bind."""
    parts = spec.split(":")
    read_only = False
    if len(parts) > 1 and parts[-1] in ("ro", "rw"):
        read_only = parts.pop() == "ro"
    if not 1 <= len(parts) <= 2:
        raise ValueError(f"--volume {spec!r}: use SRC[:DST][:ro]")
    source = _clean_path(parts[0], "--volume source")
    destination = _clean_path(parts[-1], "--volume destination")
    return Bind(source, destination, read_only)


def parse_env_option(spec: str) -> str:
    """``NAME`` (the job's value) or ``NAME=VALUE``: checked, returned as given."""
    name = spec.partition("=")[0]
    if not _NAME.fullmatch(name):
        raise ValueError(f"--env {spec!r}: {name!r} is not a variable name")
    return spec


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise ValueError(message)


def _checked(parse):
    """``parse`` for argparse: its ValueError's message, not argparse's "invalid value"."""

    def check(text: str):
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return check


def parse_args(argv: list[str]) -> Options:
    """The command line; raise ValueError saying what is wrong."""
    parser = _Parser(prog="hpcspawner-podman", allow_abbrev=False, add_help=False)
    parser.add_argument("--volume", "-v", action="append", default=[], type=_checked(parse_volume))
    parser.add_argument("--env", "-e", action="append", default=[], type=_checked(parse_env_option))
    parser.add_argument("--nv", action="store_true")
    parser.add_argument("--runtime")
    parser.add_argument("--podman", default="podman")
    parser.add_argument("--run-option", action="append", default=[])
    parser.add_argument("rootfs")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if not args.command:
        raise ValueError("no command to run in the container")
    for option in args.run_option:
        if not option.startswith("--"):
            raise ValueError(f"--run-option {option!r}: give one podman option, as --name=value")
    return Options(
        rootfs=_clean_path(args.rootfs, "the root file system"),
        command=tuple(args.command),
        binds=tuple(args.volume),
        env=tuple(args.env),
        gpus=args.nv,
        runtime=args.runtime,
        podman=args.podman,
        run_options=tuple(args.run_option),
    )


def passed_variables(env: dict[str, str]) -> list[str]:
    """The names of the job's variables the container gets (by name: podman reads the value)."""
    return sorted(
        name
        for name in env
        if _NAME.fullmatch(name)
        and name not in HOST_ONLY_VARIABLES
        and not name.startswith(HOST_ONLY_PREFIXES)
    )


def _under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def visible(path: str, binds) -> bool:
    """True when the host's ``path`` is at the same path in the container."""
    return any(b.source == b.destination and _under(path, b.source) for b in binds)


def host_binds(env: dict[str, str], admin_binds, exists=os.path.exists) -> list[Bind]:
    """The admin's binds, then what every job needs and they do not already give: the home,
    Slurm's configuration (read-only) and munge's socket directory, where the host has them."""
    binds = list(admin_binds)
    conf_dir = os.path.dirname(env.get("SLURM_CONF") or DEFAULT_SLURM_CONF)
    wanted = [(env.get("HOME", ""), False), (conf_dir, True), (MUNGE_SOCKET_DIR, False)]
    for path, read_only in wanted:
        if path.startswith("/") and path != "/" and exists(path) and not visible(path, binds):
            binds.append(Bind(path, path, read_only))
    return binds


def tmpfs_for(home: str, binds, rootfs_has) -> str | None:
    """A tmpfs over the top directory of the home (``/home``), so that the home's mount point
    can be made in a read-only image without showing the other users' homes; None when the
    image has the home's directory already or the home is not bound."""
    if not home.startswith("/") or not any(b.destination == home for b in binds):
        return None
    if rootfs_has(home):
        return None
    top = "/" + home.strip("/").split("/")[0]
    return None if top == home else top


def missing_mount_points(binds, tmpfs: str | None, rootfs_has) -> list[str]:
    """Destinations podman would have to create in the read-only image (and cannot)."""
    missing = []
    for path in [*([tmpfs] if tmpfs else []), *(b.destination for b in binds)]:
        if tmpfs and path != tmpfs and _under(path, tmpfs):
            continue  # made in the tmpfs
        if not rootfs_has(path):
            missing.append(path)
    return missing


def invisible_files(env: dict[str, str], binds) -> list[str]:
    """Variables naming files the container would not see at their path."""
    return [
        name
        for name in FILE_VARIABLES
        if env.get(name, "").startswith("/") and not visible(env[name], binds)
    ]


def workdir(cwd: str, home: str, binds) -> str:
    """The job's directory if the container sees it, else the home, else /."""
    if visible(cwd, binds):
        return cwd
    return home if home and visible(home, binds) else "/"


def cgroup_mode(mountinfo: str) -> str:
    """``"unified"`` (cgroup v2), ``"hybrid"`` (v1 controllers and a v2 hierarchy at
    /sys/fs/cgroup/unified) or ``"legacy"`` (v1 only), from ``/proc/self/mountinfo``."""
    types = {}
    for line in mountinfo.splitlines():
        mount, sep, fs = line.partition(" - ")
        fields = mount.split()
        if sep and len(fields) > 4 and fs:
            types[fields[4]] = fs.split()[0]
    if types.get("/sys/fs/cgroup") == "cgroup2":
        return "unified"
    return "hybrid" if types.get("/sys/fs/cgroup/unified") == "cgroup2" else "legacy"


def default_runtime(mode: str) -> str | None:
    """runc on hosts with hybrid cgroups (crun refuses them: "cgroups in hybrid mode not
    supported"); else podman's own choice."""
    return "runc" if mode == "hybrid" else None


#: ``podman run``'s own exit codes (its man page): it failed, not the command in the container
PODMAN_EXIT_CODES = {
    125: "podman could not run the container (its message is above)",
    126: "the command could not be run in the container",
    127: "the command was not found in the container (is it on the image's PATH?)",
}


def ending_message(code: int, seconds: float) -> str:
    """What the job's output says when ``podman run`` has returned ``code``."""
    if code in PODMAN_EXIT_CODES:
        return f"{PODMAN_EXIT_CODES[code]}: exit {code} after {seconds:.1f} s"
    return f"the container ended with {code} after {seconds:.1f} s"


def podman_environment(env: dict[str, str], state_dir: str) -> dict[str, str]:
    """podman's own environment: the job's, with its runtime and config directories in the
    private state directory (nothing in the home: no ~/.config/cni, no ~/.local/share)."""
    podman_env = dict(env)
    podman_env["XDG_RUNTIME_DIR"] = state_dir
    podman_env["XDG_CONFIG_HOME"] = os.path.join(state_dir, "config")
    podman_env["XDG_DATA_HOME"] = os.path.join(state_dir, "data")
    return podman_env


def podman_global_options(options: Options, state_dir: str, runtime: str | None) -> list[str]:
    """``podman`` and its global options: all state in ``state_dir``, nothing that needs a
    systemd user session or journald (a job has neither)."""
    argv = [
        options.podman,
        f"--root={state_dir}/storage",
        f"--runroot={state_dir}/run",
        f"--network-config-dir={state_dir}/networks",  # not ~/.config/cni
        "--storage-driver=vfs",  # nothing is layered: the image is a directory
        "--cgroup-manager=cgroupfs",
        "--events-backend=file",
        "--log-level=error",  # not '"/" is not a shared mount' in every job's output
    ]
    if runtime:
        argv.append(f"--runtime={runtime}")
    return argv


def podman_argv(
    options: Options,
    *,
    binds,
    tmpfs: str | None,
    env: dict[str, str],
    state_dir: str,
    cwd: str,
    umask: int,
    runtime: str | None,
) -> list[str]:
    """``podman [global options] run [options] --rootfs ROOTFS COMMAND...``: podman stops
    reading its options at the root file system, so every option comes before it."""
    argv = [
        *podman_global_options(options, state_dir, runtime),
        "run",
        "--rm",
        "--read-only",  # the image is shared; /tmp, /run, /var/tmp are the container's tmpfs
        "--network=host",
        "--pid=host",
        "--userns=keep-id",
        f"--umask={umask:04o}",  # the job's (c.SlurmSpawner.job_umask), not podman's 0022
    ]
    if tmpfs:
        argv.append(f"--mount=type=tmpfs,destination={tmpfs}")
    argv += [b.option() for b in binds]
    if options.gpus:
        argv += GPU_OPTIONS
    argv.append(f"--workdir={workdir(cwd, env.get('HOME', ''), binds)}")
    argv += [f"--env={name}" for name in passed_variables(env)]
    argv += [f"--env={spec}" for spec in options.env]
    argv += options.run_options
    argv += ["--rootfs", options.rootfs, *options.command]
    return argv


# ---------------------------------------------------------------- the process side


def _become_subreaper() -> None:
    """Keep podman's detached helpers (conmon, the pause process) as our descendants."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl")
    except (OSError, AttributeError) as e:
        log(f"cannot become a child subreaper ({e}): podman's helpers may outlive the job")


def _host_runtime() -> str | None:
    try:
        with open("/proc/self/mountinfo") as f:
            return default_runtime(cgroup_mode(f.read()))
    except OSError:
        return None


def _current_umask() -> int:
    umask = os.umask(0o077)
    os.umask(umask)
    return umask


def _reap() -> None:
    """Reap every child that has ended (as a subreaper, podman's helpers are ours too)."""
    while True:
        try:
            child, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if child == 0:
            return


def _end_leftovers() -> None:
    """SIGTERM what podman left behind (its pause process, a conmon still cleaning up),
    SIGKILL what is still there after :data:`CLEANUP_GRACE_S`, reap it all; give up on
    what even SIGKILL does not end (a process stuck in the kernel) after as long again."""
    now = time.monotonic()
    kill_at, give_up_at = now + CLEANUP_GRACE_S, now + 2 * CLEANUP_GRACE_S
    signalled: set[int] = set()
    while True:
        _reap()
        left = descendants(os.getpid()) - {os.getpid()}
        if not left:
            return
        now = time.monotonic()
        if now > give_up_at:
            log(f"podman's helpers {sorted(left)} did not end")
            return
        for pid in left if now > kill_at else left - signalled:
            try:
                os.kill(pid, signal.SIGKILL if now > kill_at else signal.SIGTERM)
            except OSError:
                pass
        signalled |= left
        time.sleep(0.05)


def _handles(pid: int, signum: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return catches_signal(f.read(), signum)
    except OSError:
        return False


class _Signals:
    """The job's signals: kept until podman runs the container, then passed to it.

    Slurm's signal ahead of the walltime (:data:`~hpcspawner.job.launcher.END_SIGNAL`,
    sent to the batch shell, which this is) goes to ``podman run`` only once it handles it
    (its signal proxy): podman passes it to the launcher, which relays it to the server."""

    def __init__(self):
        self.pending: list[int] = []
        self.pid: int | None = None
        for signum in FORWARDED_SIGNALS:
            signal.signal(signum, self._on_signal)
        signal.signal(END_SIGNAL, self._on_end_signal)

    def _on_signal(self, signum, _frame):
        if self.pid is None:
            self.pending.append(signum)
        else:
            os.kill(self.pid, signum)

    def _on_end_signal(self, signum, _frame):
        if self.pid is not None and _handles(self.pid, signum):
            os.kill(self.pid, signum)
        else:
            log(f"{signal.Signals(signum).name}: not passed on (the container is not running yet)")

    def started(self, pid: int) -> None:
        """From now on, signals go to ``pid``; so do those that came while it started."""
        self.pid = pid
        for signum in self.pending:
            os.kill(pid, signum)

    def restore(self):
        for signum in (*FORWARDED_SIGNALS, END_SIGNAL):
            signal.signal(signum, signal.SIG_DFL)


def _check_output(argv: list[str], env: dict[str, str]) -> str | None:
    """Run ``argv``; None if it succeeded, else what it said."""
    try:
        result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)  # noqa: S603
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    return None if result.returncode == 0 else f"exit {result.returncode}: {result.stderr.strip()}"


def _wait_for(pid: int) -> int:
    """Wait for ``pid``, reaping the helpers reparented to us meanwhile; its exit code."""
    while True:
        try:
            ended, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 1
        if ended == pid:
            return exit_code(os.waitstatus_to_exitcode(status))


def check_job(options: Options, env: dict[str, str], rootfs_has) -> tuple[list, str | None, list]:
    """The binds, the home's tmpfs, and what stops the container from starting (a message
    each: a mount point the image lacks, a file the server needs outside the binds)."""
    binds = host_binds(env, options.binds)
    tmpfs = tmpfs_for(env.get("HOME", ""), binds, rootfs_has)
    problems = [
        f"the image has no {path}: create it in {options.rootfs} (a mount point)"
        for path in missing_mount_points(binds, tmpfs, rootfs_has)
    ] + [
        f"{name}={env[name]} is outside the directories bound into the container: "
        "add --volume for its directory to container_exec"
        for name in invisible_files(env, binds)
    ]
    return binds, tmpfs, problems


def run(argv: list[str], env: dict[str, str]) -> int:
    try:
        options = parse_args(argv)
    except ValueError as e:
        log(f"{e}\nusage: {USAGE}")
        return 2
    if not os.path.isdir(options.rootfs):
        log(f"the root file system {options.rootfs} is not a directory on this node")
        return 2
    binds, tmpfs, problems = check_job(
        options, env, lambda path: os.path.lexists(options.rootfs + path)
    )
    for problem in problems:
        log(problem)
    if problems:
        return 2
    runtime = options.runtime or _host_runtime()
    signals = _Signals()
    _become_subreaper()
    state_dir = tempfile.mkdtemp(prefix="hpcspawner-podman-")  # in $TMPDIR or /tmp
    podman_env = podman_environment(env, state_dir)
    try:
        started = time.monotonic()
        # PITFALL: the podman that creates the user namespace runs the command in a child
        # and, on SIGTERM, passes it on and exits at once with 0, leaving the container to
        # end unwatched; with the namespace made first (its pause process), `podman run`
        # is one process that passes signals to the container and waits for it.
        unshare = [*podman_global_options(options, state_dir, runtime), "unshare", "true"]
        failure = _check_output(unshare, podman_env)
        if failure:
            log(f"podman cannot make its user namespace ({failure}): {NAMESPACE_NEEDS}")
            return 1
        if signals.pending:
            return 128 + signals.pending[0]
        command = podman_argv(
            options,
            binds=binds,
            tmpfs=tmpfs,
            env=env,
            state_dir=state_dir,
            cwd=os.getcwd(),
            umask=_current_umask(),
            runtime=runtime,
        )
        try:
            pid = os.posix_spawnp(command[0], command, podman_env)
        except OSError as e:
            log(f"cannot run {options.podman}: {e.strerror}")
            return 127
        signals.started(pid)
        code = _wait_for(pid)
        log(ending_message(code, time.monotonic() - started))
        return code
    finally:
        signals.restore()
        _end_leftovers()
        shutil.rmtree(state_dir, ignore_errors=True)
        if os.path.exists(state_dir):
            log(f"could not delete podman's state in {state_dir}")


def main() -> None:
    sys.exit(run(sys.argv[1:], dict(os.environ)))


if __name__ == "__main__":
    main()
