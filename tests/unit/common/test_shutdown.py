"""Shutdown helpers: one deadline shared by the steps of a stop, and a start a signal cancels."""

from __future__ import annotations

import asyncio
import time

import pytest

from kairos_common.deadline import Deadline
from kairos_common.grpc.server import start_unless_signalled


async def test_steps_share_one_deadline_instead_of_each_getting_the_whole_grace() -> None:
    deadline = Deadline(0.3)
    started = time.monotonic()
    first = await deadline.run(asyncio.sleep(10))
    second = await deadline.run(asyncio.sleep(10))
    took = time.monotonic() - started
    assert (first, second) == (False, False)
    assert 0.25 < took < 2.0  # one grace, not two
    assert deadline.remaining() == 0.0


async def test_a_step_that_finishes_in_time_counts_as_done() -> None:
    deadline = Deadline(5.0)
    assert await deadline.run(asyncio.sleep(0.01))
    assert 4.0 < deadline.remaining() < 5.0


async def test_finish_lets_quick_tasks_end_and_cancels_the_rest_at_the_deadline() -> None:
    quick = asyncio.create_task(asyncio.sleep(0.01))
    slow = asyncio.create_task(asyncio.sleep(10))
    await Deadline(0.3).finish([quick, slow])
    assert quick.done()
    assert not quick.cancelled()
    assert slow.cancelled()


class Starting:
    """A service whose start takes `seconds`, recording what happened to it."""

    def __init__(self, seconds: float, error: Exception | None = None) -> None:
        self.seconds = seconds
        self.error = error
        self.started = False
        self.cancelled = False

    async def start(self) -> None:
        try:
            await asyncio.sleep(self.seconds)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        if self.error is not None:
            raise self.error
        self.started = True

    async def stop(self) -> None:
        raise AssertionError("start_unless_signalled never stops the service itself")


async def test_a_signal_during_start_cancels_the_start() -> None:
    service = Starting(seconds=10)
    stopping = asyncio.Event()
    asyncio.get_running_loop().call_later(0.1, stopping.set)
    assert not await asyncio.wait_for(start_unless_signalled(service, stopping), timeout=5)
    assert service.cancelled
    assert not service.started


class Deaf(Starting):
    """A start that lets the first cancellation go, as the NATS client's connect does.

    nats-py's connect loop waits for each attempt in `asyncio.wait_for`; on Python 3.11, a
    cancellation that lands just after the attempt was refused comes back as that refusal,
    which the loop catches as one more failed attempt and carries on trying (seen in CI: a
    scheduler signalled while NATS was away never ended).
    """

    def __init__(self) -> None:
        super().__init__(seconds=10)
        self.ignored = 0

    async def start(self) -> None:
        try:
            await asyncio.sleep(self.seconds)
        except asyncio.CancelledError:
            self.ignored += 1
        await super().start()


async def test_a_start_that_lets_a_cancellation_go_is_cancelled_again() -> None:
    service = Deaf()
    stopping = asyncio.Event()
    asyncio.get_running_loop().call_later(0.1, stopping.set)
    assert not await asyncio.wait_for(start_unless_signalled(service, stopping), timeout=5)
    assert service.ignored == 1
    assert service.cancelled
    assert not service.started


async def test_a_start_that_finishes_first_runs_on() -> None:
    service = Starting(seconds=0.01)
    assert await start_unless_signalled(service, asyncio.Event())
    assert service.started


async def test_a_start_that_fails_fails_the_run() -> None:
    service = Starting(seconds=0.01, error=ConnectionRefusedError("no NATS"))
    with pytest.raises(ConnectionRefusedError, match="no NATS"):
        await start_unless_signalled(service, asyncio.Event())
