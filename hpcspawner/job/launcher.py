"""Job-side launcher: ``hpcspawner-singleuser CMD [ARGS...]``.

Runs inside the Slurm job. It

0. takes the server's API token: from the file ``HPCSPAWNER_TOKEN_FILE`` names
   (written by the hub, 0600, only the user can read it), which it deletes at
   once, or else from ``JUPYTERHUB_API_TOKEN``; the token then reaches only the
   server's environment, never Slurm's record of the job,
1. picks a free port (in ``HPCSPAWNER_PORT_RANGE`` if set),
2. starts ``CMD`` (usually ``jupyterhub-singleuser``) with that port in
   ``JUPYTERHUB_SERVICE_URL`` and port retries off,
3. waits until the server itself listens on the port — checked in
   ``/proc/net/tcp`` against the sockets of the server's processes, so the
   reported port is the one the server holds (no bind-close-rebind race: if
   another process took the port first, the server fails to bind and the
   launcher tries another port),
4. reports only the port to the hub (``POST {JUPYTERHUB_API_URL}/batchspawner``,
   ``{"port": N}``, the server's own token in the Authorization header, the
   same wire format as ``batchspawner-singleuser``), and
5. stays as the server's parent, forwarding signals, and exits with its code.
   SIGUSR1 is Slurm's signal ahead of the walltime (``#SBATCH --signal=B:USR1@N``,
   sent to the batch shell, which this launcher is: the batch script ``exec``s it). It
   is relayed only to a server that handles it (its ``SigCgt`` mask in
   ``/proc/PID/status``): jupyter_server does, and hpcspawner's server extension
   (:mod:`hpcspawner.job.clock`) takes it as the cue to save open documents; any other
   server would be killed by it, so it is not sent there.

A server that is a Python script (``jupyterhub-singleuser``, ``jupyter-lab``)
runs through :data:`PYTHON_FAST_EXIT` unless ``HPCSPAWNER_FAST_EXIT=0``: the
same program with the same arguments, except that the interpreter skips its
final garbage collection (and so the finalizers of objects still alive) once the
program and its ``atexit`` handlers are done.
For JupyterLab that collection takes ~0.5 s of CPU after the server has
finished shutting down, and Slurm keeps the job (and its CPUs) until it ends.

Standard library only: it runs in the user's environment.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import urlparse, urlunparse

LISTEN_STATE = "0A"
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR2)
#: Slurm's signal ahead of the walltime: relayed only to a server that catches it.
END_SIGNAL = signal.SIGUSR1


#: ``python -c PYTHON_FAST_EXIT SCRIPT ARGS...`` runs SCRIPT in ``__main__`` as
#: ``python SCRIPT ARGS...`` would (argv, ``__file__``, ``sys.path[0]``, exit code).
#: Registered first, its atexit handlers run last, after the program's own, and
#: turn the cyclic garbage collector off: the interpreter then ends without its
#: final collection. Objects still alive at that point are not finalized, as after
#: ``os._exit()``; unlike ``os._exit()``, the program's shutdown, its atexit
#: handlers, the wait for its threads and the flush of stdout/stderr all happen.
PYTHON_FAST_EXIT = """\
import atexit, gc, os, sys
atexit.register(gc.freeze)
atexit.register(gc.disable)
sys.argv = sys.argv[1:]
sys.path[0] = os.path.dirname(os.path.realpath(sys.argv[0]))
__file__ = sys.argv[0]
del atexit, gc, os, sys
with open(__file__, "rb") as __script:
    __code = compile(__script.read(), __file__, "exec")
del __script
exec(__code)
"""


def log(message: str) -> None:
    print(f"[hpcspawner-singleuser] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- pure helpers


def parse_port_range(text: str | None) -> tuple[int, int] | None:
    """``"40000-49999"`` -> (40000, 49999); empty -> None."""
    if not text:
        return None
    low, sep, high = text.partition("-")
    if not sep or not low.strip().isdigit() or not high.strip().isdigit():
        raise ValueError(f"HPCSPAWNER_PORT_RANGE={text!r} is not LOW-HIGH")
    low_port, high_port = int(low), int(high)
    if not 1 <= low_port <= high_port <= 65535:
        raise ValueError(f"HPCSPAWNER_PORT_RANGE={text!r} is not a valid port range")
    return low_port, high_port


def candidate_ports(port_range: tuple[int, int] | None, count: int, rng=random) -> list[int]:
    """Up to ``count`` ports to try, in random order; [0] (OS's choice) without a range."""
    if port_range is None:
        return [0] * count
    low, high = port_range
    size = high - low + 1
    return [low + offset for offset in rng.sample(range(size), min(count, size))]


def listening_inodes(proc_net_tcp: str, port: int) -> set[str]:
    """Socket inodes listening on ``port`` in a ``/proc/net/tcp`` (or tcp6) table."""
    inodes = set()
    for line in proc_net_tcp.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        local, state, inode = fields[1], fields[3], fields[9]
        _, _, port_hex = local.rpartition(":")
        try:
            local_port = int(port_hex, 16)
        except ValueError:
            continue
        if state == LISTEN_STATE and local_port == port:
            inodes.add(inode)
    return inodes


#: The token is 32-64 characters; a file much larger than this is not a token file.
MAX_TOKEN_FILE_BYTES = 4096
#: One word of printable ASCII, perhaps with a line end.
TOKEN_FILE_CONTENT = re.compile(rb"\s*[!-~]+\s*")
#: Where the server (jupyterhub-singleuser) and batchspawner-era code look for the token.
TOKEN_VARIABLES = ("JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN")


def take_token(env: dict[str, str]) -> str:
    """The server's API token: read from ``HPCSPAWNER_TOKEN_FILE`` and the file deleted,
    or else ``JUPYTERHUB_API_TOKEN``; raise ValueError saying what is wrong.

    The file is removed before the token is used, whatever its content: a second
    launcher (a requeued job) finds it gone and stops.
    """
    path = env.get("HPCSPAWNER_TOKEN_FILE")
    if not path:
        token = env.get("JUPYTERHUB_API_TOKEN", "")
        if not token:
            raise ValueError(
                "neither HPCSPAWNER_TOKEN_FILE nor JUPYTERHUB_API_TOKEN is set "
                "(is this job started by the hub?)"
            )
        return token
    try:
        with open(path, "rb") as f:
            content = f.read(MAX_TOKEN_FILE_BYTES + 1)
    except OSError as e:
        raise ValueError(
            f"cannot read the token file {path}: {e.strerror} (the hub writes it before "
            "sbatch and it is read once: was this job started again?)"
        ) from None
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
    if len(content) > MAX_TOKEN_FILE_BYTES or not TOKEN_FILE_CONTENT.fullmatch(content):
        raise ValueError(f"the token file {path} does not hold a token")
    return content.strip().decode("ascii")


def server_environment(env: dict[str, str], token: str) -> dict[str, str]:
    """The server's environment: the job's, with the token and without the file's path."""
    server_env = {k: v for k, v in env.items() if k != "HPCSPAWNER_TOKEN_FILE"}
    for name in TOKEN_VARIABLES:
        server_env[name] = token
    return server_env


def catches_signal(proc_status: str, signum: int) -> bool:
    """Whether a process has a handler for ``signum``: the ``SigCgt`` mask of its
    ``/proc/PID/status`` (hexadecimal, bit N-1 for signal N)."""
    for line in proc_status.splitlines():
        name, _, value = line.partition(":")
        if name == "SigCgt":
            try:
                return bool(int(value.strip(), 16) >> (signum - 1) & 1)
            except ValueError:
                return False
    return False


def service_url_with_port(url: str, port: int) -> str:
    """Replace the port in ``JUPYTERHUB_SERVICE_URL``."""
    parts = urlparse(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return urlunparse(parts._replace(netloc=f"{host}:{port}"))


# ---------------------------------------------------------------- the process side


def python_interpreter(shebang: bytes) -> list[str] | None:
    """The interpreter argv of a script's first line if it is plain Python, else None.

    Accepts ``#!/path/to/pythonX.Y`` and ``#!/usr/bin/env pythonX.Y``; anything
    with options or another interpreter is left alone.
    """
    if not shebang.startswith(b"#!"):
        return None
    try:
        words = shebang[2:].split(b"\n", 1)[0].decode().split()
    except UnicodeDecodeError:
        return None
    if len(words) == 2 and os.path.basename(words[0]) == "env":
        interpreter = words[1]
    elif len(words) == 1:
        interpreter = words[0]
    else:
        return None
    if not os.path.basename(interpreter).startswith("python"):
        return None
    return words


def fast_exit_argv(argv: list[str], path: str | None) -> list[str]:
    """``argv`` run through :data:`PYTHON_FAST_EXIT` if ``argv[0]`` is a Python script."""
    script = shutil.which(argv[0], path=path)
    if script is None:
        return argv
    try:
        with open(script, "rb") as f:
            interpreter = python_interpreter(f.read(256))
    except OSError:
        return argv
    if interpreter is None:
        return argv
    return [*interpreter, "-c", PYTHON_FAST_EXIT, script, *argv[1:]]


def free_port(candidate: int, host: str = "") -> int | None:
    """Check that ``candidate`` can be bound now (0: let the OS pick); return it or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, candidate))
        except OSError:
            return None
        return sock.getsockname()[1]


def descendants(root_pid: int) -> set[int]:
    """``root_pid`` and every process below it (from /proc; also used by job/podman.py)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # the command name may hold spaces and parentheses: ppid follows the last ')'
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [root_pid]
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        found.add(pid)
        todo.extend(children.get(pid, ()))
    return found


def _socket_inodes(pids: set[int]) -> set[str]:
    inodes = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    return inodes


def server_listens(pid: int, port: int) -> bool:
    """True when a process of the tree rooted at ``pid`` listens on ``port``."""
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                listening |= listening_inodes(f.read(), port)
        except OSError:
            continue
    if not listening:
        return False
    return bool(listening & _socket_inodes(descendants(pid)))


def relay_end_signal(child: subprocess.Popen, signum: int) -> None:
    """Relay Slurm's signal to the server if the server handles it, else log and keep it."""
    name = signal.Signals(signum).name
    try:
        with open(f"/proc/{child.pid}/status") as f:
            catches = catches_signal(f.read(), signum)
    except OSError:
        catches = False
    if catches:
        log(f"{name}: the job's time limit is near; relayed to the server")
        child.send_signal(signum)
    else:
        log(f"{name}: the job's time limit is near; not relayed (the server does not handle it)")


def report_port(api_url: str, token: str, port: int, *, deadline: float, ssl_context=None) -> None:
    """POST the port to the hub; retry while the hub is unreachable; raise on refusal."""
    url = api_url.rstrip("/") + "/batchspawner"
    body = json.dumps({"port": port}).encode()
    delay = 0.5
    while True:
        request = urllib.request.Request(  # noqa: S310 - http(s) URL from the hub
            url,
            data=body,
            method="POST",
            headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10, context=ssl_context):  # noqa: S310
                return
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")[:500]
            raise RuntimeError(f"the hub refused the port report: HTTP {e.code} {detail}") from None
        except (urllib.error.URLError, OSError) as e:
            if time.monotonic() > deadline:
                raise RuntimeError(f"could not reach the hub at {url}: {e}") from None
            log(f"hub not reachable ({e}); retrying in {delay:.1f} s")
            time.sleep(delay)
            delay = min(delay * 2, 5)


def _ssl_context(env) -> ssl.SSLContext | None:
    """Client TLS for internal_ssl: the hub's CA plus the server's own certificate."""
    cafile = env.get("JUPYTERHUB_SSL_CLIENT_CA")
    if not cafile:
        return None
    context = ssl.create_default_context(cafile=cafile)
    certfile, keyfile = env.get("JUPYTERHUB_SSL_CERTFILE"), env.get("JUPYTERHUB_SSL_KEYFILE")
    if certfile and keyfile:
        context.load_cert_chain(certfile, keyfile)
    return context


def run(argv: list[str], env: dict[str, str]) -> int:
    if not argv:
        log("usage: hpcspawner-singleuser COMMAND [ARGS...]")
        return 2
    try:
        token = take_token(env)
    except ValueError as e:
        log(str(e))
        return 2
    env = server_environment(env, token)
    api_url = env.get("JUPYTERHUB_API_URL")
    service_url = env.get("JUPYTERHUB_SERVICE_URL", "http://0.0.0.0:0/")
    if not api_url:
        log("JUPYTERHUB_API_URL must be set (is this job started by the hub?)")
        return 2
    try:
        port_range = parse_port_range(env.get("HPCSPAWNER_PORT_RANGE"))
    except ValueError as e:
        log(str(e))
        return 2
    bind_host = urlparse(service_url).hostname or ""
    ssl_context = _ssl_context(env)
    server_argv = argv
    if env.get("HPCSPAWNER_FAST_EXIT", "1") != "0":
        server_argv = fast_exit_argv(argv, env.get("PATH"))

    for candidate in candidate_ports(port_range, count=10):
        port = free_port(candidate, "" if bind_host in ("0.0.0.0", "::") else bind_host)  # noqa: S104
        if port is None:
            continue
        child_env = dict(env)
        child_env["JUPYTERHUB_SERVICE_URL"] = service_url_with_port(service_url, port)
        child_env["JUPYTER_PORT_RETRIES"] = "0"
        how = " (fast exit)" if server_argv is not argv else ""
        log(f"starting {argv[0]} on port {port}{how}")
        child = subprocess.Popen(server_argv, env=child_env)  # noqa: S603 - the hub's configured command
        for signum in FORWARDED_SIGNALS:
            signal.signal(signum, lambda s, _frame, c=child: c.send_signal(s))
        signal.signal(END_SIGNAL, lambda s, _frame, c=child: relay_end_signal(c, s))
        while child.poll() is None and not server_listens(child.pid, port):
            time.sleep(0.1)
        if child.returncode is not None:
            if free_port(port) is None:
                log(f"port {port} was taken by another process; trying another one")
                continue
            log(f"{argv[0]} exited with {child.returncode} before listening")
            return exit_code(child.returncode) or 1
        try:
            report_port(
                api_url, token, port, deadline=time.monotonic() + 120, ssl_context=ssl_context
            )
        except RuntimeError as e:
            log(str(e))
            child.terminate()
            child.wait()
            return 1
        log(f"reported port {port} to the hub")
        return exit_code(child.wait())
    log("no free port found")
    return 1


def exit_code(returncode: int) -> int:
    """A child killed by signal N exits the launcher with 128 + N, as a shell would."""
    return 128 - returncode if returncode < 0 else returncode


def main() -> None:
    sys.exit(run(sys.argv[1:], dict(os.environ)))


if __name__ == "__main__":
    main()
