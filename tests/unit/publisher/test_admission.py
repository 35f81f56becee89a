"""The account gate: how many attempts may begin ahead of an account's call slots."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from kairos_publisher.admission import AccountGate


async def admitted_now(gate: AccountGate, stack: AsyncExitStack, tries: int) -> int:
    """Enter the gate up to `tries` times, keeping each place; how many got in without waiting."""
    entered = 0
    for _ in range(tries):
        try:
            await asyncio.wait_for(stack.enter_async_context(gate.admit()), timeout=0.05)
        except TimeoutError:
            break
        entered += 1
    return entered


async def test_before_any_call_is_timed_the_worst_latency_bounds_what_begins() -> None:
    # 30 s of budget at 15 s a call: the rounds that wait 0, 15 and 30 s, two calls each.
    gate = AccountGate(slots=2, budget=30.0, first_latency=15.0)
    async with AsyncExitStack() as stack:
        assert await admitted_now(gate, stack, 10) == 6
        assert gate.room() == 0


async def test_fast_calls_open_the_gate_and_wake_the_waiting() -> None:
    gate = AccountGate(slots=2, budget=30.0, first_latency=15.0)
    async with AsyncExitStack() as stack:
        await admitted_now(gate, stack, 6)
        waiting = asyncio.create_task(stack.enter_async_context(gate.admit()))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        for _ in range(14):  # halfway towards 1 ms each time: 15 s -> about 2 ms
            gate.timed(0.001)
        await asyncio.wait_for(waiting, timeout=1.0)
        assert gate.latency < 0.003
        # At ~2 ms a call, 30 s of budget is thousands of attempts begun ahead.
        assert gate.room() > 10_000


async def test_a_slow_call_closes_the_gate_until_places_free_up() -> None:
    gate = AccountGate(slots=1, budget=2.0, first_latency=0.001)
    async with AsyncExitStack() as outer:
        first = AsyncExitStack()
        assert await admitted_now(gate, first, 5) == 5
        gate.timed(10.0)  # the account slowed down: ~5 s a call now
        assert gate.room() == 0
        waiting = asyncio.create_task(outer.enter_async_context(gate.admit()))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        await first.aclose()  # the five finish
        await asyncio.wait_for(waiting, timeout=1.0)
        assert gate.admitted == 1


async def test_no_budget_admits_only_as_many_as_there_are_slots() -> None:
    gate = AccountGate(slots=3, budget=0.0, first_latency=15.0)
    for _ in range(20):
        gate.timed(0.0001)
    async with AsyncExitStack() as stack:
        assert await admitted_now(gate, stack, 10) == 3


async def test_a_waiter_cancelled_before_or_after_being_let_in_keeps_no_place() -> None:
    gate = AccountGate(slots=1, budget=0.0, first_latency=1.0)
    async with AsyncExitStack() as stack:
        await admitted_now(gate, stack, 1)
        gave_up = asyncio.create_task(stack.enter_async_context(gate.admit()))
        let_in_late = asyncio.create_task(stack.enter_async_context(gate.admit()))
        await asyncio.sleep(0.01)
        gave_up.cancel()  # still waiting
        await asyncio.gather(gave_up, return_exceptions=True)
        assert gate.admitted == 1
    # The first place is free: the second waiter is let in, then cancelled before it runs on.
    assert gate.admitted == 1
    let_in_late.cancel()
    await asyncio.gather(let_in_late, return_exceptions=True)
    assert gate.admitted == 0
    assert gate.room() == 1
