"""Lost answers: an ``sbatch`` whose answer never came, and the job it may have made anyway.

A hung controller may create a job after ``sbatch`` gave up ("Socket timed out").
:func:`submit_once` tells a refused job from a lost answer; :func:`find_lost_job`
looks for the job by the start's comment instead of submitting again; the hub's
:class:`Reapers` keep looking, in the background, for the job of a start that
failed (or of a hub that stopped while ``sbatch`` ran) and cancel it when it shows
up, so that a late job is cancelled, never leaked. The reapers belong to the hub's
:class:`~hpcspawner.spawner.shared.SharedSlurm`, which closes them when the hub stops.

The other half of recovery, a start that a hub restart interrupted, is the spawner's
(``SlurmSpawner._resume_interrupted_start``): it follows the job again with the
spawner's own start machinery. The token's digest that lets it take the job's port
report is :func:`hpcspawner.spawner.callback.token_digest`; the names in the server's
certificate are :mod:`hpcspawner.spawner.tls`'s.
"""

from __future__ import annotations

import asyncio
import time

from ..slurm import SlurmError, controller_unreachable, submission_uncertain
from .errors import SpawnFailure, scheduler_unavailable

#: how long a reaper looks for a lost submission's job
REAPER_LIFETIME = 900.0


async def submit_once(driver, username: str, script: str, env, *, comment: str, log_name, log):
    """Submit the job once: its id, or None when the answer was lost (the job may exist:
    look for it by ``comment``, never submit again).

    Raises the user's :class:`SpawnFailure`: ``job-rejected`` with Slurm's own words,
    ``scheduler-unavailable`` when the controller could not be reached at all.
    """
    try:
        return await driver.submit(username, script, env)
    except SlurmError as e:
        if not controller_unreachable(e):
            raise SpawnFailure(
                f"Slurm rejected the job: {e.slurm_message}",
                reason="job-rejected",
                log_message=f"sbatch for {log_name} failed: {e}",
            ) from None
        if not submission_uncertain(e):
            raise scheduler_unavailable(f"sbatch for {log_name} failed: {e}") from None
        log.warning(
            "sbatch for %s got no answer (%s); looking for job %s instead of submitting again",
            log_name,
            e,
            comment,
        )
    return None


async def find_lost_job(
    driver,
    username: str,
    comment: str,
    *,
    timeout: float,
    pause: float,
    reapers: Reapers,
    reap_interval: float,
    log,
) -> str:
    """Ask Slurm for the job with ``comment`` until it answers; return its id.

    A controller that resumes after a hang serves its backlog in parallel
    threads: an answer right after it comes back may predate the lost
    submission. Only two answers without the job, the second asked after the
    first came back, count as "it never arrived"; even then one of ``reapers``
    keeps looking for a while, so that a late job is cancelled, never leaked.
    Raises the "scheduler is not answering" :class:`SpawnFailure` when not found, or at
    once when Slurm refuses the lookup itself (asking again would change nothing).
    """
    deadline = time.monotonic() + timeout
    empty_answers = 0
    while True:
        try:
            found = await driver.find_jobs(username, comment)
        except SlurmError as e:
            empty_answers = 0
            if not controller_unreachable(e):
                # refused, not unanswered (e.g. slurmrestd rejects the hub's token): asking
                # again changes nothing; the reaper keeps watching for the job
                reapers.start(driver, username, comment, reap_interval, log)
                raise scheduler_unavailable(f"looking for job {comment} failed: {e}") from None
            log.info("Still no answer looking for job %s: %s", comment, e)
            if time.monotonic() >= deadline:
                reapers.start(driver, username, comment, reap_interval, log)
                raise scheduler_unavailable(
                    f"no answer about job {comment} within {timeout:g} s"
                ) from None
            await asyncio.sleep(pause)
            continue
        if found:
            break
        empty_answers += 1
        if empty_answers >= 2:
            reapers.start(driver, username, comment, reap_interval, log)
            raise scheduler_unavailable(f"the submission of {comment} did not arrive")
        await asyncio.sleep(max(1.0, pause))
    job_id, *extra = sorted(found, key=lambda j: (len(j), j))
    for duplicate in extra:  # cannot happen with one sbatch; never leave one running
        log.warning("Cancelling duplicate job %s of %s", duplicate, comment)
        await driver.cancel(username, duplicate)
    log.info("Found job %s of %s after the lost sbatch answer", job_id, comment)
    return job_id


class Reapers:
    """The hub's background looks for lost submissions' jobs, one per start's comment."""

    def __init__(self):
        self._tasks: dict[str, asyncio.Task] = {}

    def __contains__(self, comment: str) -> bool:
        return comment in self._tasks

    def task(self, comment: str) -> asyncio.Task | None:
        """The reaper looking for ``comment``'s job, if one is."""
        return self._tasks.get(comment)

    def start(self, driver, username: str, comment: str, interval: float, log) -> None:
        """Look for ``comment``'s job in the background and cancel it when it shows up."""
        if comment in self._tasks and not self._tasks[comment].done():
            return
        task = asyncio.ensure_future(_reap(driver, username, comment, interval, log))
        self._tasks[comment] = task
        task.add_done_callback(lambda _t: self._tasks.pop(comment, None))

    async def close(self) -> None:
        """Stop looking (the hub stops: a restarted hub looks again for a start that
        was being submitted, see ``SlurmSpawner.load_state``)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _reap(driver, username: str, comment: str, interval: float, log) -> None:
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


__all__ = ["Reapers", "find_lost_job", "submit_once"]
