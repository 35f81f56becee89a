"""One instant that the steps of a shutdown share, so that together they keep to the grace.

A service's `stop()` has several steps (let in-flight work finish, flush, close); giving each
the whole grace period would let them add up to a multiple of it. Each step gets what is left.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterable


class Deadline:
    """The end of a grace period that starts when the object is made."""

    def __init__(self, seconds: float) -> None:
        self._at = time.monotonic() + seconds

    def remaining(self) -> float:
        """Seconds left, never below zero."""
        return max(0.0, self._at - time.monotonic())

    async def run(self, step: Awaitable[object]) -> bool:
        """Await `step` until the deadline; cancel it and answer False if time runs out."""
        try:
            await asyncio.wait_for(step, self.remaining())
        except TimeoutError:
            return False
        return True

    async def finish(self, tasks: Iterable[asyncio.Task[None]]) -> None:
        """Let `tasks` finish until the deadline, then cancel and collect those still running."""
        pending = set(tasks)
        if pending:
            _, pending = await asyncio.wait(pending, timeout=self.remaining())
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
