"""A login node for the SSH driver's tests: a real asyncssh server in this process.

:class:`LoginNode` listens on 127.0.0.1 (a port of its own), with a generated host key
and one authorized client key. Every command it receives runs the way OpenSSH runs it:
``/bin/sh -c COMMAND``, in its own process group, in a temporary home whose ``bin/``
comes first on PATH. There, fake ``sudo``, ``runuser``, ``sbatch``, ``squeue``, ``scancel``,
``scontrol``, ``sacctmgr`` and ``sdiag`` record what a login node would really receive (their
argv, their stdin, the ``--export-file`` they were pointed at and its mode) and answer
what the test set with :meth:`LoginNode.answer`; ``sudo``/``runuser`` run the rest of argv
as the current user, so the real ``mktemp``, ``dd``, ``rm``, ``install``, ``stat`` and
``tail`` do their work. The same ``bin/`` serves the local driver for parity tests.

Synchronisation is by events, never sleeps: :meth:`LoginNode.command_started` waits for
the server to start a command, :meth:`LoginNode.idle` for every command to end.
:meth:`LoginNode.stop` closes the server, its connections and its commands.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

DATA = Path(__file__).parent / "data"

#: the fake commands; sudo and runuser are wrappers that record and run the rest
FAKE_COMMANDS = ("sbatch", "squeue", "scancel", "scontrol", "sacctmgr", "sdiag")
WRAPPERS = ("sudo", "runuser")

#: one program for all fakes, told apart by the name it was called by
FAKE = textwrap.dedent(
    """\
    import json, os, stat, sys, time
    STATE = {state!r}
    name = os.path.basename(sys.argv[0])
    record = {{
        "argv": [name] + sys.argv[1:],
        "argv0": sys.argv[0],
        "login": os.environ.get("FAKE_LOGIN_USER", ""),
    }}
    if name in ("sudo", "runuser"):
        rest = sys.argv[sys.argv.index("--") + 1 :]
        with open(os.path.join(STATE, "calls.jsonl"), "a") as log:
            log.write(json.dumps(record) + "\\n")
        os.execvp(rest[0], rest)
    record["stdin"] = sys.stdin.read()
    for arg in sys.argv[1:]:
        if arg.startswith("--export-file="):
            path = arg.split("=", 1)[1]
            record["export_file"] = path
            record["export_mode"] = oct(stat.S_IMODE(os.stat(path).st_mode))
            with open(path, "rb") as f:
                record["export"] = f.read().decode()
    with open(os.path.join(STATE, "calls.jsonl"), "a") as log:
        log.write(json.dumps(record) + "\\n")
    with open(os.path.join(STATE, "answers.json")) as f:
        answers = json.load(f).get(name, [])
    line = " ".join(sys.argv[1:])
    for answer in answers:
        if answer["match"] in line:
            break
    else:
        answer = {{"stdout": "", "stderr": "", "rc": 0, "hang": False}}
    if answer["hang"]:
        time.sleep(3600)
    sys.stdout.write(answer["stdout"])
    sys.stderr.write(answer["stderr"])
    sys.exit(answer["rc"])
    """
)


def make_fake_bin(home: Path) -> tuple[Path, Path]:
    """``home/bin`` with the fakes and ``home/state`` for their records; returns both."""
    bin_dir, state = home / "bin", home / "state"
    bin_dir.mkdir(parents=True)
    state.mkdir()
    (state / "answers.json").write_text("{}")
    program = f"#!{sys.executable}\n" + FAKE.format(state=str(state))
    for name in (*FAKE_COMMANDS, *WRAPPERS):
        path = bin_dir / name
        path.write_text(program)
        path.chmod(0o755)
    return bin_dir, state


@dataclass
class Keys:
    """The keys of one test: the node's host key, the hub's client key (in a file)."""

    host: asyncssh.SSHKey
    client: asyncssh.SSHKey
    client_file: Path


def make_keys(directory: Path) -> Keys:
    client = asyncssh.generate_private_key("ssh-ed25519")
    client_file = directory / "id_ed25519"
    client.write_private_key(str(client_file))
    client_file.chmod(0o600)
    return Keys(asyncssh.generate_private_key("ssh-ed25519"), client, client_file)


class _ServerSide(asyncssh.SSHServer):
    def __init__(self, node: LoginNode):
        self._node = node

    def connection_made(self, conn):
        self._node.connections.append(conn)

    def connection_lost(self, exc):
        self._node.lost += 1
        self._node.changed.set()


@dataclass
class LoginNode:
    """One fake login node (see the module's docstring)."""

    home: Path
    keys: Keys
    host_certs: list = field(default_factory=list)
    server: asyncssh.SSHAcceptor | None = None
    port: int = 0
    connections: list = field(default_factory=list)
    lost: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    processes: list = field(default_factory=list)
    handlers: set = field(default_factory=set)

    @property
    def bin(self) -> Path:
        return self.home / "bin"

    @property
    def state(self) -> Path:
        return self.home / "state"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> LoginNode:
        make_fake_bin(self.home)
        self.server = await asyncssh.create_server(
            lambda: _ServerSide(self),
            "127.0.0.1",
            0,
            server_host_keys=[self.keys.host],
            server_host_certs=self.host_certs or (),
            authorized_client_keys=asyncssh.import_authorized_keys(
                self.keys.client.export_public_key().decode()
            ),
            process_factory=self._handle,
            encoding=None,
        )
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def known_hosts_line(self, key: asyncssh.SSHKey | None = None) -> str:
        key = key or self.keys.host
        return f"[127.0.0.1]:{self.port} {key.export_public_key().decode().strip()}\n"

    # ------------------------------------------------------------ what the test sets and reads

    def answer(self, command, *, match="", stdout="", stderr="", rc=0, hang=False):
        """``command`` (called with argv containing ``match``) prints and exits so."""
        path = self.state / "answers.json"
        answers = json.loads(path.read_text())
        rule = {"match": match, "stdout": stdout, "stderr": stderr, "rc": rc, "hang": hang}
        answers.setdefault(command, []).insert(0, rule)
        path.write_text(json.dumps(answers))

    def calls(self, name: str | None = None) -> list[dict]:
        """What the fakes recorded, in order (``sudo`` records its argv, then the command
        it runs records its own)."""
        path = self.state / "calls.jsonl"
        if not path.exists():
            return []
        records = [json.loads(line) for line in path.read_text().splitlines()]
        return [r for r in records if name is None or r["argv"][0] == name]

    @property
    def live_connections(self) -> int:
        return len(self.connections) - self.lost

    async def command_started(self, count: int = 1) -> None:
        """Wait until the server has started ``count`` commands in all."""
        while len(self.processes) < count:
            self.changed.clear()
            await self.changed.wait()

    async def idle(self) -> None:
        """Wait until every command started has ended (and been reaped)."""
        await asyncio.gather(*(proc.wait() for proc in self.processes))

    async def drop_connections(self) -> None:
        """Cut every connection from the server's side and wait until they are gone."""
        for conn in self.connections:
            conn.abort()
        while self.lost < len(self.connections):
            self.changed.clear()
            await self.changed.wait()

    # ------------------------------------------------------------ the server's side

    async def _handle(self, process: asyncssh.SSHServerProcess) -> None:
        task = asyncio.current_task()
        self.handlers.add(task)
        try:
            await self._run(process)
        finally:
            self.handlers.discard(task)

    async def _run(self, process: asyncssh.SSHServerProcess) -> None:
        env = {
            "PATH": f"{self.bin}:/usr/bin:/bin",
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "FAKE_LOGIN_USER": process.get_extra_info("username") or "",
        }
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            process.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=self.home,
            env=env,
            start_new_session=True,
        )
        self.processes.append(proc)
        self.changed.set()

        async def pump_in():
            try:
                while data := await process.stdin.read(65536):
                    proc.stdin.write(data)
                    await proc.stdin.drain()
            except (asyncssh.Error, BrokenPipeError, ConnectionResetError):
                pass
            finally:
                proc.stdin.close()

        async def pump_out(source, sink):
            while data := await source.read(65536):
                try:
                    sink.write(data)
                except (asyncssh.Error, BrokenPipeError, OSError):
                    pass  # the channel is gone: read on to the end

        async def finish():
            await asyncio.gather(
                pump_out(proc.stdout, process.stdout), pump_out(proc.stderr, process.stderr)
            )
            return await proc.wait()

        feeding = asyncio.ensure_future(pump_in())
        finished = asyncio.ensure_future(finish())
        closed = asyncio.ensure_future(process.channel.wait_closed())
        try:
            await asyncio.wait({finished, closed}, return_when=asyncio.FIRST_COMPLETED)
            if not finished.done():  # the client closed the channel: kill the command
                _kill_group(proc)
                await asyncio.gather(finished, return_exceptions=True)
            elif not closed.done():
                rc = finished.result()
                process.exit(rc if rc >= 0 else 128 - rc)
        finally:
            for task in (feeding, closed):
                task.cancel()
            _kill_group(proc)
            await asyncio.gather(feeding, closed, finished, return_exceptions=True)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        for conn in self.connections:
            conn.abort()
        for proc in self.processes:
            _kill_group(proc)
        await asyncio.wait_for(self.idle(), 10)
        if self.handlers:
            await asyncio.wait_for(asyncio.gather(*self.handlers, return_exceptions=True), 10)


def _kill_group(proc) -> None:
    if proc.returncode is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class SilentServer:
    """Accepts TCP connections and never says a word (an SSH server hung before its banner)."""

    def __init__(self):
        self.server: asyncio.AbstractServer | None = None
        self.writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def start(self) -> SilentServer:
        async def hold(reader, writer):
            self.writers.append(writer)
            await reader.read()  # until the client goes

        self.server = await asyncio.start_server(hold, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        for writer in self.writers:
            writer.close()
        self.server.close()
        await self.server.wait_closed()


def refused_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then closed)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FreezableProxy:
    """A TCP relay to a login node that can freeze: it keeps every connection open but
    passes nothing more, in either direction (a node hung in the kernel, a silent firewall).

    :attr:`client_gone` is set when a client closes its side of a relayed connection.
    """

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.frozen = False
        self.client_gone = asyncio.Event()
        self.server: asyncio.AbstractServer | None = None
        self.port = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> FreezableProxy:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def freeze(self) -> None:
        self.frozen = True

    async def _pump(self, reader, writer, from_client: bool) -> None:
        try:
            while data := await reader.read(65536):
                if not self.frozen:
                    writer.write(data)
                    await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if from_client:
                self.client_gone.set()
            writer.close()

    async def _relay(self, client_reader, client_writer) -> None:
        self._writers.append(client_writer)
        if self.frozen:
            await client_reader.read()  # accept, then say nothing until the client goes
            return
        node_reader, node_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers.append(node_writer)
        pumps = [
            asyncio.ensure_future(self._pump(client_reader, node_writer, True)),
            asyncio.ensure_future(self._pump(node_reader, client_writer, False)),
        ]
        self._tasks.update(pumps)
        await asyncio.gather(*pumps, return_exceptions=True)

    async def stop(self) -> None:
        for writer in self._writers:
            writer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.server.close()
        await self.server.wait_closed()
