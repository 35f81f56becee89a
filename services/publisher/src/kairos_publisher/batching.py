"""Groups concurrent calls into batched RPCs (BeginAttempts, CompleteAttempts).

A publisher with hundreds of events due in the same instant makes a handful of round trips to
the api instead of one per event: callers `await batcher.submit(item)` and get their own result,
while one task sends whatever has gathered since the last call went out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")

MAX_BATCH = 500


class Batcher(Generic[Item, Result]):
    """Sends items in batches of at most `max_batch` through `send`, `max_in_flight` at a time.

    While as many batches as allowed are in flight, new items gather for the next one, so a
    burst still goes out in large batches; a lone item at a quiet moment goes out at once
    instead of waiting behind the batch before it. With `linger` (seconds), a batch that is not
    full waits for company until its oldest item has waited that long: for calls whose answer
    nobody waits for on the hot path, fewer and larger batches cost less CPU on both sides.
    Items that already waited that long behind the batches in flight go out as soon as there
    is room.
    """

    def __init__(
        self,
        name: str,
        send: Callable[[Sequence[Item]], Awaitable[Sequence[Result]]],
        *,
        max_batch: int = MAX_BATCH,
        max_in_flight: int = 2,
        linger: float = 0.0,
    ) -> None:
        self.name = name
        self._send = send
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self.linger = linger
        self._in_flight: set[asyncio.Task[None]] = set()
        #: Each item with its caller's future and the loop's time when it came.
        self._pending: list[tuple[Item, asyncio.Future[Result], float]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.calls = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"batch-{self.name}")

    async def submit(self, item: Item) -> Result:
        if self._closing:
            raise RuntimeError(f"{self.name} batcher is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._pending.append((item, future, loop.time()))
        self._wakeup.set()
        return await future

    async def close(self) -> None:
        """Send what is pending, then stop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            if self._pending and not self._closing and len(self._pending) < self.max_batch:
                company = self._pending[0][2] + self.linger - loop.time()
                if company > 0:
                    await asyncio.sleep(company)
            self._wakeup.clear()
            while self._pending and len(self._in_flight) < self.max_in_flight:
                batch = self._pending[: self.max_batch]
                self._pending = self._pending[self.max_batch :]
                task = asyncio.create_task(self._deliver(batch))
                self._in_flight.add(task)
                task.add_done_callback(self._delivered)
            if self._closing and not self._pending and not self._in_flight:
                return

    def _delivered(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._wakeup.set()

    async def _deliver(self, batch: list[tuple[Item, asyncio.Future[Result], float]]) -> None:
        """Send once; a failure reaches every caller of the batch, who decides whether to retry."""
        self.calls += 1
        try:
            results = await self._send([item for item, _, _ in batch])
        except Exception as error:
            log.warning("%s of %d failed: %r", self.name, len(batch), error)
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future, _), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
