"""Run a command as an argv list (never through a shell), with a timeout.

The one subprocess runner of the package: the Slurm driver and the authenticator
both use it.
"""

from __future__ import annotations

import asyncio
import os
import signal

from .errors import SlurmError, SlurmTimeout


async def run_argv(
    argv: list[str],
    *,
    timeout: float,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    cwd: str | None = "/",
) -> tuple[int, str, str]:
    """Run ``argv``; return (returncode, stdout, stderr).

    The command runs in its own session, so a timeout (or a cancelled caller)
    kills it and everything it started, e.g. the children of sudo or runuser.
    Raises :class:`SlurmTimeout` after ``timeout`` seconds and :class:`SlurmError`
    when the command cannot be started. ``env`` None passes the hub's environment.
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
        )
    except OSError as e:
        raise SlurmError(argv, None, str(e)) from e
    try:
        out, err = await asyncio.wait_for(
            proc.communicate(stdin.encode() if stdin is not None else None), timeout=timeout
        )
    except (asyncio.TimeoutError, asyncio.CancelledError) as e:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        await proc.wait()
        if isinstance(e, asyncio.CancelledError):
            raise
        raise SlurmTimeout(argv, timeout) from None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
