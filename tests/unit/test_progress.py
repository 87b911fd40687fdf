"""The progress of a start (hpcspawner.spawner.progress): every listener gets every event,
from the first, and learns at once when the start ends (no recheck timeout to wait out)."""

from __future__ import annotations

import asyncio

from hpcspawner.spawner.progress import StartProgress

TIMEOUT = 5.0


async def collect(progress: StartProgress, running) -> list[str]:
    return await messages(progress.follow(running))


async def messages(events) -> list[str]:
    return [event["message"] async for event in events]


async def test_listeners_get_every_event_and_end_with_the_start():
    progress = StartProgress(recheck=3600)  # only an event or wake() may end a wait here
    state = {"running": True}
    progress.emit(10, "submitted")
    early = progress.follow(lambda: state["running"])
    assert (await asyncio.wait_for(anext(early), TIMEOUT))["message"] == "submitted"
    waiting = asyncio.ensure_future(anext(early))  # waits for the next change
    progress.emit(50, "running")
    assert (await asyncio.wait_for(waiting, TIMEOUT))["message"] == "running"
    late = asyncio.ensure_future(collect(progress, lambda: state["running"]))
    progress.emit(90, "listening")
    state["running"] = False
    progress.wake()
    assert await asyncio.wait_for(messages(early), TIMEOUT) == ["listening"]
    assert await asyncio.wait_for(late, TIMEOUT) == ["submitted", "running", "listening"]


async def test_a_new_start_forgets_the_last_ones_events():
    progress = StartProgress()
    progress.emit(10, "old")
    progress.begin()
    progress.emit(20, "new")
    assert await asyncio.wait_for(collect(progress, lambda: False), TIMEOUT) == ["new"]
