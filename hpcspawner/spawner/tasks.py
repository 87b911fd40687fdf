"""Background tasks of the hub's shared objects: stopping them at hub shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable


async def cancel_and_wait(tasks: Iterable[asyncio.Future | None], log: logging.Logger) -> None:
    """Cancel each unfinished task and wait until it has ended; a task that failed with
    anything but its cancellation is logged, never raised (the shutdown goes on)."""
    pending = [task for task in tasks if task is not None and not task.done()]
    for task in pending:
        task.cancel()
    for task, outcome in zip(
        pending, await asyncio.gather(*pending, return_exceptions=True), strict=True
    ):
        if isinstance(outcome, Exception):
            log.error("%s failed while closing", task, exc_info=outcome)
