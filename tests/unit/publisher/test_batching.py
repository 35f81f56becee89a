"""The publisher's batcher: concurrent submissions become few, bounded, overlapping RPCs."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from kairos_publisher.batching import Batcher


class SlowSend:
    """A `send` that takes as long as the test says, recording each batch and the overlap."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self.running = 0
        self.most_running = 0

    async def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await self.release.wait()
        finally:
            self.running -= 1
        return [item * 10 for item in items]


async def test_items_gather_while_the_allowed_batches_are_in_flight() -> None:
    send = SlowSend()
    batcher: Batcher[int, int] = Batcher("test", send, max_in_flight=2)
    batcher.start()
    first = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0.01)
    second = asyncio.ensure_future(batcher.submit(2))
    await asyncio.sleep(0.01)
    # Two batches are in flight: the next items wait and then go out together.
    later = [asyncio.ensure_future(batcher.submit(n)) for n in (3, 4, 5)]
    await asyncio.sleep(0.01)
    assert send.batches == [[1], [2]]
    send.release.set()
    assert await asyncio.gather(first, second, *later) == [10, 20, 30, 40, 50]
    assert send.batches == [[1], [2], [3, 4, 5]]
    assert send.most_running == 2
    await batcher.close()


async def test_a_lone_item_does_not_wait_behind_a_slow_batch() -> None:
    send = SlowSend()
    batcher: Batcher[int, int] = Batcher("test", send, max_in_flight=2)
    batcher.start()
    slow = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0.01)
    lone = asyncio.ensure_future(batcher.submit(2))
    await asyncio.sleep(0.01)
    assert send.batches == [[1], [2]]  # sent at once, not after the first returned
    send.release.set()
    assert list(await asyncio.gather(slow, lone)) == [10, 20]
    await batcher.close()


async def test_with_a_linger_items_that_come_close_together_share_a_batch() -> None:
    send = SlowSend()
    send.release.set()
    batcher: Batcher[int, int] = Batcher("test", send, linger=0.05)
    batcher.start()
    first = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0.01)
    assert send.batches == []  # waiting for company
    later = [asyncio.ensure_future(batcher.submit(n)) for n in (2, 3)]
    assert await asyncio.gather(first, *later) == [10, 20, 30]
    assert send.batches == [[1, 2, 3]]
    await batcher.close()


async def test_batches_are_capped_and_close_sends_what_is_pending() -> None:
    send = SlowSend()
    send.release.set()
    batcher: Batcher[int, int] = Batcher("test", send, max_batch=3, max_in_flight=1)
    batcher.start()
    results = [asyncio.ensure_future(batcher.submit(n)) for n in range(7)]
    await asyncio.sleep(0)  # the submissions are made
    await batcher.close()
    assert await asyncio.gather(*results) == [n * 10 for n in range(7)]
    assert all(len(batch) <= 3 for batch in send.batches)
    assert sorted(item for batch in send.batches for item in batch) == list(range(7))


async def test_a_closed_batcher_refuses_new_items() -> None:
    batcher: Batcher[int, int] = Batcher("test", SlowSend())
    batcher.start()
    await batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        await batcher.submit(1)


LINGER = 0.2


async def test_a_linger_is_timed_from_the_oldest_item_not_from_the_last_batch() -> None:
    send = SlowSend()
    send.release.set()
    batcher: Batcher[int, int] = Batcher("test", send, linger=LINGER)
    batcher.start()
    assert await batcher.submit(1) == 10
    await asyncio.sleep(LINGER * 0.6)  # nothing is pending: nothing lingers
    second = asyncio.ensure_future(batcher.submit(2))
    await asyncio.sleep(LINGER * 0.6)
    assert send.batches == [[1]]  # the lone item still waits its whole linger for company
    assert await second == 20
    assert send.batches == [[1], [2]]
    await batcher.close()


async def test_items_that_waited_behind_the_window_do_not_linger_again() -> None:
    send = SlowSend()
    batcher: Batcher[int, int] = Batcher("test", send, max_in_flight=1, linger=LINGER)
    batcher.start()
    first = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(LINGER * 1.5)
    second = asyncio.ensure_future(batcher.submit(2))
    await asyncio.sleep(LINGER * 1.5)
    assert send.batches == [[1]]  # the window is full
    send.release.set()
    await asyncio.sleep(LINGER * 0.25)
    assert send.batches == [[1], [2]]  # at once: it has waited longer than the linger
    assert list(await asyncio.gather(first, second)) == [10, 20]
    await batcher.close()
