"""The progress of a start, as JupyterHub's ``Spawner.progress()`` sends it to the spawn page.

One :class:`StartProgress` per spawner: the start appends events (``emit``), any number
of listeners (each browser tab on the spawn-pending page) follow them from the first
one, and all of them learn at once when the start ends (``wake``), so that no page
waits for a timeout to show the result. Events, not sleeps: a listener waits for the
next change, and looks again at least every ``recheck`` seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable


class StartProgress:
    """The events of the current start: ``{"progress": percent, "message": text}``."""

    def __init__(self, recheck: float = 5.0):
        self._events: list[dict] = []
        self._changed = asyncio.Event()
        self.recheck = recheck

    def begin(self) -> None:
        """A new start: forget the last one's events."""
        self._events = []

    def emit(self, progress: int, message: str, **extra) -> None:
        self._events.append({"progress": progress, "message": message, **extra})
        self.wake()

    def wake(self) -> None:
        """Wake every listener (the start ended: they see it now, not at the next recheck)."""
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def follow(self, running: Callable[[], bool]) -> AsyncIterator[dict]:
        """Every event from the first, as they come, while ``running()`` says the start runs."""
        sent = 0
        while True:
            changed = self._changed
            while sent < len(self._events):
                yield self._events[sent]
                sent += 1
            if not running():
                return
            try:
                await asyncio.wait_for(changed.wait(), timeout=self.recheck)
            except asyncio.TimeoutError:
                pass


__all__ = ["StartProgress"]
