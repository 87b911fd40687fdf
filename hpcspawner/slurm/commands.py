"""Run a command as an argv list (never through a shell), with a timeout and an output cap.

The one subprocess runner of the package: the Slurm driver and the authenticator
both use it.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable

from .errors import OutputTooLarge, SlurmError, SlurmTimeout

#: Default cap on the bytes a command may print (stdout and stderr together). Generous:
#: ``scontrol show nodes`` of a 10 000-node cluster is ~20 MB. Callers reading what a
#: user controls (a job's output file) pass a small cap.
DEFAULT_MAX_OUTPUT = 64 * 1024 * 1024

_READ_CHUNK = 64 * 1024

#: Seconds to wait for a killed command's pipes to close.
_REAP_TIMEOUT = 5


class Overflow(Exception):
    """Raised by :func:`collect_capped` when the cap is exceeded; ``args[0]`` holds the
    stderr chunks read so far (for the error message)."""


async def _read_capped(stream, chunks: list[bytes], budget: list[int]) -> None:
    """Read ``stream`` to its end into ``chunks``; raise Overflow when ``budget`` runs out.

    ``budget`` (one shared count for stdout and stderr) is what may still be read.
    asyncio's transport stops reading from the pipe while its buffer is full, so
    what the hub holds is at most the cap plus one buffer per stream.
    """
    while True:
        chunk = await stream.read(_READ_CHUNK)
        if not chunk:
            return
        budget[0] -= len(chunk)
        if budget[0] < 0:
            raise Overflow
        chunks.append(chunk)


async def _feed(proc, data: bytes | None) -> None:
    if data is None:
        return
    try:
        proc.stdin.write(data)
        await proc.stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the command exited without reading all of it: its return code tells
    finally:
        proc.stdin.close()


async def collect_capped(
    feed: Awaitable[None], stdout, stderr, max_output: int
) -> tuple[list[bytes], list[bytes]]:
    """Run ``feed`` (writes the command's stdin) while reading ``stdout`` and ``stderr``
    to their ends within one shared cap of ``max_output`` bytes.

    The streams need only ``await read(n)`` returning b"" at the end: a local pipe
    (:func:`run_argv`) or an SSH channel (:mod:`hpcspawner.slurm.ssh`). Raises
    :class:`Overflow` past the cap; the caller stops the command.
    """
    out: list[bytes] = []
    err: list[bytes] = []
    budget = [max_output]
    tasks = [
        asyncio.ensure_future(feed),
        asyncio.ensure_future(_read_capped(stdout, out, budget)),
        asyncio.ensure_future(_read_capped(stderr, err, budget)),
    ]
    try:
        await asyncio.gather(*tasks)
    except Overflow:
        raise Overflow(err) from None
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return out, err


async def _collect(proc, data: bytes | None, max_output: int) -> tuple[list[bytes], list[bytes]]:
    """Feed stdin, read stdout and stderr within the cap, wait for the exit."""
    out, err = await collect_capped(_feed(proc, data), proc.stdout, proc.stderr, max_output)
    await proc.wait()
    return out, err


def _kill_group(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


async def _drain(stream) -> None:
    while await stream.read(_READ_CHUNK):
        pass


async def _reap(proc) -> None:
    """Kill the command's process group and wait for its end.

    The pipes are read to their end and what they still hold is dropped: asyncio
    reports the exit only once the pipes are closed, and a pipe whose reader was
    paused on a full buffer would never be seen closing (``wait()`` would hang).
    A process that left the group and keeps a pipe open is not waited for.
    """
    _kill_group(proc)
    try:
        await asyncio.wait_for(
            asyncio.gather(_drain(proc.stdout), _drain(proc.stderr), proc.wait()),
            timeout=_REAP_TIMEOUT,
        )
    except asyncio.TimeoutError:
        pass


async def run_argv(
    argv: list[str],
    *,
    timeout: float,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    cwd: str | None = "/",
    max_output: int = DEFAULT_MAX_OUTPUT,
) -> tuple[int, str, str]:
    """Run ``argv``; return (returncode, stdout, stderr).

    The command runs in its own session, so a timeout, a cancelled caller or too
    much output kills it and everything it started, e.g. the children of sudo or
    runuser. Raises :class:`SlurmTimeout` after ``timeout`` seconds,
    :class:`OutputTooLarge` once stdout and stderr together exceed ``max_output``
    bytes (the hub never holds much more than that), and :class:`SlurmError` when
    the command cannot be started. ``env`` None passes the hub's environment.
    """
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=cwd,
            start_new_session=True,
            limit=_READ_CHUNK,
        )
    except OSError as e:
        raise SlurmError(argv, None, str(e)) from e
    data = stdin.encode() if stdin is not None else None
    try:
        out, err = await asyncio.wait_for(_collect(proc, data, max_output), timeout=timeout)
    except Overflow as e:
        await _reap(proc)
        (err_chunks,) = e.args
        raise OutputTooLarge(
            argv, max_output, b"".join(err_chunks).decode(errors="replace")
        ) from None
    except (asyncio.TimeoutError, asyncio.CancelledError) as e:
        await _reap(proc)
        if isinstance(e, asyncio.CancelledError):
            raise
        raise SlurmTimeout(argv, timeout) from None
    return (
        proc.returncode,
        b"".join(out).decode(errors="replace"),
        b"".join(err).decode(errors="replace"),
    )
