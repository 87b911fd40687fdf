"""Stopping the shared objects' background tasks at hub shutdown."""

from __future__ import annotations

import asyncio
import logging

from hpcspawner.spawner.tasks import cancel_and_wait


async def test_unfinished_tasks_are_cancelled_and_waited_for():
    ended = asyncio.Event()

    async def forever():
        try:
            await asyncio.Event().wait()
        finally:
            ended.set()

    task = asyncio.ensure_future(forever())
    await asyncio.sleep(0)  # let it start
    await cancel_and_wait([task, None], logging.getLogger("test"))
    assert task.cancelled() and ended.is_set()


async def test_a_task_that_fails_while_closing_is_logged_not_raised(caplog):
    async def fails_on_cancel():
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise RuntimeError("broken cleanup") from None

    task = asyncio.ensure_future(fails_on_cancel())
    done = asyncio.ensure_future(asyncio.sleep(0))
    await asyncio.sleep(0)
    await done
    with caplog.at_level(logging.ERROR, logger="test"):
        await cancel_and_wait([task, done], logging.getLogger("test"))
    assert task.done() and isinstance(task.exception(), RuntimeError)
    assert [r.getMessage().endswith("failed while closing") for r in caplog.records] == [True]
    assert caplog.records[0].exc_info[1].args == ("broken cleanup",)
