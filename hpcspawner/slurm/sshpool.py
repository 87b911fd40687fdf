"""SSH connections to login nodes: one per host, shared by every command, replaced when broken.

:class:`ConnectionPool` holds one asyncssh connection to one login node (as one login
name) and runs commands on it as SSH channels, at most ``sessions`` at once (OpenSSH's
``MaxSessions``), with the same output cap and timeout as a local command
(:func:`~hpcspawner.slurm.commands.collect_capped`). Which node, which options, which
host keys: :class:`~hpcspawner.slurm.ssh.SSHSlurmDriver` decides.
"""

from __future__ import annotations

import asyncio
import dataclasses

import asyncssh

from . import errors
from .commands import Overflow, collect_capped


@dataclasses.dataclass(frozen=True)
class LoginHost:
    """A login node: its name (or address) and SSH port."""

    host: str
    port: int = 22

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @classmethod
    def parse(cls, text: str, default_port: int = 22) -> LoginHost:
        """``login1``, ``login1:2222``, ``10.0.0.5:22``, ``[fe80::1]:22`` or ``fe80::1``."""
        text = text.strip()
        host, port = text, default_port
        if text.startswith("["):
            host, sep, rest = text[1:].partition("]")
            if not sep or (rest and not rest.startswith(":")):
                raise ValueError(f"{text!r}: expected [ADDRESS] or [ADDRESS]:PORT")
            if rest:
                port = _port(text, rest[1:])
        elif text.count(":") == 1:
            host, port_text = text.split(":")
            port = _port(text, port_text)
        if not host or any(c.isspace() or c in "/@" for c in host) or host.startswith("-"):
            raise ValueError(f"{text!r} is not a host name or address")
        return cls(host, port)


def _port(text: str, port_text: str) -> int:
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
    return int(port_text)


class NotStarted(Exception):
    """A command's channel could not be opened: nothing ran, another try is safe.

    ``refused``: the node answered no (e.g. sshd's ``MaxSessions``), so the
    connection itself is alive and stays in use for the commands running on it.
    """

    def __init__(self, message: str, refused: bool):
        super().__init__(message)
        self.refused = refused


class LoggingClient(asyncssh.SSHClient):
    """Logs when a pooled connection ends by itself (keepalive, the node went away);
    a connection that never got up is reported by whoever opened it."""

    def __init__(self, log, host: LoginHost):
        self._log = log
        self._host = host
        self._up = False

    def auth_completed(self):
        self._up = True

    def connection_lost(self, exc):
        if exc is not None and self._up:
            self._log.warning("The SSH connection to %s broke: %s", self._host, exc)


class ConnectionPool:
    """One connection to one login host as one login name, opened on demand, shared by
    every command (at most ``sessions`` at once), replaced when it breaks.

    ``opener(host)`` opens a connection (the driver's: options, host keys, errors)."""

    def __init__(self, host: LoginHost, sessions: int, opener):
        self.host = host
        self.sessions = asyncio.Semaphore(sessions)
        self.conn: asyncssh.SSHClientConnection | None = None
        self._opener = opener
        self._opening: asyncio.Task | None = None
        #: connections opened, for tests and benchmarks
        self.opened = 0

    async def connection(self) -> asyncssh.SSHClientConnection:
        """The open connection, or a new one; callers arriving while one is being
        opened share that attempt (and its failure)."""
        if self.conn is not None and not self.conn.is_closed():
            return self.conn
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._open())
        return await asyncio.shield(self._opening)

    async def _open(self) -> asyncssh.SSHClientConnection:
        try:
            self.discard(self.conn)
            self.conn = await self._opener(self.host)
            self.opened += 1
            return self.conn
        finally:
            self._opening = None

    def discard(self, conn) -> None:
        """Drop ``conn`` (broken): the next command opens a new connection."""
        if conn is None:
            return
        if self.conn is conn:
            self.conn = None
        conn.abort()

    async def close(self) -> None:
        if self._opening is not None:
            self._opening.cancel()
            await asyncio.gather(self._opening, return_exceptions=True)
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()
            await conn.wait_closed()

    async def run(self, conn, argv, command: str, data: bytes | None, timeout, max_output):
        """Run the command line ``command`` (``argv`` quoted) on ``conn``, ``data`` on its
        stdin; return (rc, stdout, stderr).

        Raises :class:`NotStarted` when the channel could not be opened (nothing ran),
        :class:`~hpcspawner.slurm.errors.SlurmTimeout` after ``timeout`` seconds and
        :class:`~hpcspawner.slurm.errors.OutputTooLarge` past ``max_output`` bytes (the
        command is then killed, as far as the node's sshd passes signals, and its
        channel closed), and :class:`~hpcspawner.slurm.errors.ConnectionLost` when the
        connection broke while it ran (it may have taken effect).
        """
        async with self.sessions:
            try:
                process = await conn.create_process(command, encoding=None)
            except (asyncssh.Error, OSError) as e:
                # "SSH connection closed" is a ChannelOpenError too: refused only if the
                # connection is still up (the node answered no)
                refused = isinstance(e, asyncssh.ChannelOpenError) and not conn.is_closed()
                raise NotStarted(f"could not start a command: {e}", refused) from None
            try:
                out, err = await asyncio.wait_for(
                    _collect(process, data, max_output), timeout=timeout
                )
            except Overflow as e:
                _stop(process)
                (err_chunks,) = e.args
                stderr = b"".join(err_chunks).decode(errors="replace")
                raise errors.OutputTooLarge(argv, max_output, stderr) from None
            except (asyncio.TimeoutError, TimeoutError):
                _stop(process)
                raise errors.SlurmTimeout(argv, timeout) from None
            except asyncio.CancelledError:
                _stop(process)
                raise
            except (asyncssh.Error, OSError) as e:
                self.discard(conn)
                raise errors.ConnectionLost(
                    argv, None, f"the SSH connection to {self.host} broke during the command: {e}"
                ) from None
            if process.returncode is None:
                self.discard(conn)
                raise errors.ConnectionLost(
                    argv, None, f"{self.host} closed the command's channel without an exit status"
                )
            return (
                process.returncode,
                b"".join(out).decode(errors="replace"),
                b"".join(err).decode(errors="replace"),
            )


async def _feed(process, data: bytes | None) -> None:
    try:
        if data:
            process.stdin.write(data)
            await process.stdin.drain()
        process.stdin.write_eof()
    except (BrokenPipeError, ConnectionResetError, asyncssh.Error):
        pass  # the command exited without reading all of it: its exit status tells


async def _collect(process, data: bytes | None, max_output: int):
    out, err = await collect_capped(
        _feed(process, data), process.stdout, process.stderr, max_output
    )
    await process.wait_closed()
    return out, err


def _stop(process) -> None:
    """Ask the far side to kill the command, then close its channel (best effort:
    OpenSSH before 7.9 ignores the signal; the command then ends at its next
    write to the closed channel)."""
    try:
        process.send_signal("KILL")
    except (asyncssh.Error, OSError, ValueError):
        pass
    process.close()
