"""Following one job through the hub's poller (no spawner here, no Slurm command of its own).

- :func:`wait_for_port`: until the job's server reports its port (a start), or the job
  ends (:class:`JobGone`) or queues too long (:class:`QueuedTooLong`);
- :func:`final_status`: the final state of a job ``squeue`` still shows as COMPLETING;
- :func:`wait_until_gone`: until a cancelled job has left Slurm (a stop), looking at it
  often at first (:func:`stop_check_pauses`).

Every look is a :meth:`~hpcspawner.spawner.poller.JobPoller.status`: the poller batches
the looks of all servers into one status query.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from ..slurm import Liveness
from . import messages
from .poller import JobPoller, JobStatus


class NoServer(Exception):
    """The job's server will not report a port (``status``: the job as last seen)."""

    def __init__(self, status: JobStatus):
        super().__init__(status.job_id)
        self.status = status


class JobGone(NoServer):
    """The job ended before its server reported a port."""


class QueuedTooLong(NoServer):
    """The job stayed queued longer than the queue timeout (it is still queued)."""


async def wait_for_port(
    poller: JobPoller,
    job_id: str,
    port: asyncio.Future,
    *,
    interval: float,
    queue_timeout: float,
    progress: Callable[[int, str], None],
) -> tuple[int, JobStatus]:
    """Follow the job until ``port`` (set by the port callback) has the server's port;
    return it with the job's status, which names its node. Tell ``progress`` each new
    line (:func:`~hpcspawner.spawner.messages.start_progress`). Fail fast: raise
    :class:`JobGone` as soon as the job ends, :class:`QueuedTooLong` when it waited
    more than ``queue_timeout`` seconds (0: no limit) in the queue."""
    last_message = None
    queued_since = time.monotonic()
    while True:
        status = await poller.status(job_id, max_age=interval)
        if status.liveness is Liveness.GONE:
            raise JobGone(status)
        queued = status.info is None or status.info.pending
        if not queued:
            queued_since = None
        elif (
            queue_timeout
            and queued_since is not None
            and time.monotonic() - queued_since > queue_timeout
        ):
            raise QueuedTooLong(status)
        message, percent = messages.start_progress(job_id, status)
        if message != last_message:
            progress(percent, message)
            last_message = message
        if status.info is not None and status.info.running:
            try:
                reported = await asyncio.wait_for(asyncio.shield(port), timeout=interval)
            except asyncio.TimeoutError:
                continue
            if not status.info.batch_host:
                status = await poller.status(job_id, max_age=0)
            return reported, status
        await asyncio.sleep(interval)


async def final_status(poller: JobPoller, status: JobStatus, wait: float = 3.0) -> JobStatus:
    """squeue shows an ending job as COMPLETING, hiding why it ended: ask again
    for a few seconds for the final state (FAILED, TIMEOUT, NODE_FAIL, ...)."""
    deadline = time.monotonic() + wait
    while (
        status.info is not None
        and status.info.state.split()[0] == "COMPLETING"
        and time.monotonic() < deadline
    ):
        await asyncio.sleep(0.5)
        newer = await poller.status(status.job_id, max_age=0)
        if newer.liveness is not Liveness.GONE:
            break
        status = newer
    return status


async def wait_until_gone(poller: JobPoller, job_id: str, timeout: float) -> bool:
    """After ``scancel``: True once the job has left Slurm, False after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    for pause in stop_check_pauses():
        await asyncio.sleep(pause)
        status = await poller.status(job_id, max_age=0)
        # COMPLETING: Slurm is still killing the job's processes; the allocation is not free
        if status.liveness is Liveness.GONE and not (
            status.info and status.info.state == "COMPLETING"
        ):
            return True
        if time.monotonic() >= deadline:
            return False
    return False  # pragma: no cover - the pauses never end


def stop_check_pauses():
    """Pauses between the looks at a cancelled job: often at first, then less often.

    slurmd looks for the job's processes ~20, 70 and 170 ms after signalling
    them, then at 0.67 s and every second after; Slurm drops the job soon after
    the look that finds them gone. A server that exits promptly (see
    ``fast_exit``) is gone within the first few tenths of a second. Stopping
    servers share each query (the poller batches them), so this is one
    ``squeue`` per look for the whole hub.
    """
    yield from (0.1,) * 10  # the first second
    yield from (0.25,) * 8  # up to 3 s
    while True:
        yield 1.0


__all__ = [
    "JobGone",
    "NoServer",
    "QueuedTooLong",
    "final_status",
    "stop_check_pauses",
    "wait_for_port",
    "wait_until_gone",
]
