"""Finding jobs again after lost answers, and the pieces of internal TLS that need Slurm.

- A hung controller may create a job after ``sbatch`` gave up ("Socket timed
  out"): :func:`find_lost_job` looks for it by the start's comment instead of
  submitting again, and :func:`start_reaper` cancels one that shows up after the
  start failed.
- :func:`sha256` of the server's token lets a restarted hub recognise the
  port report of a job it started before (the token itself is never stored).
- :func:`node_alt_names` names every node in a server's TLS certificate, since
  the node of the job is not known when the certificate is made.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import time

from ..slurm import SlurmError
from .errors import SpawnFailure

#: how long a reaper looks for a lost submission's job
REAPER_LIFETIME = 900.0

#: comments of lost submissions the hub still looks for (one reaper each)
_reapers: dict[str, asyncio.Task] = {}


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest() if text else ""


def scheduler_unavailable(log_message: str) -> SpawnFailure:
    return SpawnFailure(
        "The scheduler is not answering; please try again in a few minutes.",
        reason="scheduler-unavailable",
        log_message=log_message,
        status_code=503,
    )


async def find_lost_job(
    driver, username: str, comment: str, *, timeout: float, pause: float, reap_interval, log
) -> str:
    """Ask Slurm for the job with ``comment`` until it answers; return its id.

    A controller that resumes after a hang serves its backlog in parallel
    threads: an answer right after it comes back may predate the lost
    submission. Only two answers without the job, the second asked after the
    first came back, count as "it never arrived"; even then a reaper keeps
    looking for a while, so that a late job is cancelled, never leaked. Raises
    the "scheduler is not answering" :class:`SpawnFailure` when not found.
    """
    deadline = time.monotonic() + timeout
    empty_answers = 0
    while True:
        try:
            found = await driver.find_jobs(username, comment)
        except SlurmError as e:
            empty_answers = 0
            log.info("Still no answer looking for job %s: %s", comment, e)
            if time.monotonic() >= deadline:
                start_reaper(driver, username, comment, reap_interval, log)
                raise scheduler_unavailable(
                    f"no answer about job {comment} within {timeout:g} s"
                ) from None
            await asyncio.sleep(pause)
            continue
        if found:
            break
        empty_answers += 1
        if empty_answers >= 2:
            start_reaper(driver, username, comment, reap_interval, log)
            raise scheduler_unavailable(f"the submission of {comment} did not arrive")
        await asyncio.sleep(max(1.0, pause))
    job_id, *extra = sorted(found, key=lambda j: (len(j), j))
    for duplicate in extra:  # cannot happen with one sbatch; never leave one running
        log.warning("Cancelling duplicate job %s of %s", duplicate, comment)
        await driver.cancel(username, duplicate)
    log.info("Found job %s of %s after the lost sbatch answer", job_id, comment)
    return job_id


def start_reaper(driver, username: str, comment: str, interval: float, log) -> None:
    """Look for ``comment``'s job in the background and cancel it when it shows up."""
    if comment in _reapers and not _reapers[comment].done():
        return

    async def reap():
        deadline = time.monotonic() + REAPER_LIFETIME
        while time.monotonic() < deadline:
            await asyncio.sleep(interval)
            try:
                found = await driver.find_jobs(username, comment)
            except SlurmError:
                continue
            cancelled = True
            for job_id in found:
                log.warning("Cancelling job %s of a failed start (%s)", job_id, comment)
                try:
                    await driver.cancel(username, job_id)
                except SlurmError as e:
                    log.warning("Could not cancel job %s: %s", job_id, e)
                    cancelled = False
            if found and cancelled:
                return
            # not there (yet): the controller may still bring it from its backlog
        log.info("Gave up looking for the job of %s", comment)

    task = asyncio.ensure_future(reap())
    _reapers[comment] = task
    task.add_done_callback(lambda _t: _reapers.pop(comment, None))


async def node_alt_names(spawner) -> list[str]:
    """``c.SlurmSpawner.ssl_alt_names`` default: every node's address (the job's node is
    not known when the certificate is made)."""
    view = await spawner.cluster_info.snapshot()
    if view.snapshot is None:
        spawner.log.warning("No node list for the server certificate: %s", view.error)
        return []
    names = []
    for node in sorted(view.snapshot.nodes):
        address = spawner.node_address.format(node=node)
        try:
            ipaddress.ip_address(address)
            names.append(f"IP:{address}")
        except ValueError:
            names.append(f"DNS:{address}")
    return names
