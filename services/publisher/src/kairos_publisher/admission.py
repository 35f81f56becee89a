"""How many of an account's due events may begin their attempt before a call slot is free.

BeginAttempt starts the attempt's lease: if the publisher dies, the sweeper settles the attempt
when the lease runs out. An attempt begun and then left queueing behind a busy account would
outlive its lease while the publisher is alive, and be sent after the sweeper called it UNKNOWN.
Beginning only when a call slot is free avoids that, but then BeginAttempts goes out one slot's
worth at a time, and a burst on one account drains at the pace of round trips to the api.

So attempts are begun ahead of the slots while the queue they join would drain within a budget
at the account's recent call latency: thousands when calls take milliseconds, a few when they
take seconds. Until calls have been timed, the latency is taken to be the HTTP timeout, the
worst a call can take, and the estimate follows each call (halfway to it), so a fast account
opens up within a dozen calls and a slowing one closes at once.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class AccountGate:
    """Admits one account's attempts to begin; each admitted attempt reports its call time.

    The counts change only between awaits of the one event loop, so they need no lock; waiting
    attempts queue in order and are let in as places free up or the estimate falls. (With an
    asyncio.Condition, thousands of attempts woken at once queue again on its lock, and each
    acquire of a lock with many waiters scans them all.)
    """

    def __init__(self, slots: int, budget: float, first_latency: float) -> None:
        #: Calls the account may have in flight at once.
        self.slots = slots
        #: Seconds an attempt may expect to wait for its call once begun.
        self.budget = budget
        #: Estimated seconds per call.
        self.latency = first_latency
        #: Attempts admitted and not yet finished (calling, or begun and waiting for a slot).
        self.admitted = 0
        self._waiting: deque[asyncio.Future[None]] = deque()

    def room(self) -> int:
        """How many more attempts may begin now: those whose wait for a slot, in rounds of
        `slots` calls at the estimated latency, stays within the budget (one round always)."""
        rounds = 1 + (int(self.budget / self.latency) if self.latency > 0 else 1 << 20)
        return max(0, rounds * self.slots - self.admitted)

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        """Hold a place until the attempt is finished; waits while the queue is too long."""
        if self._waiting or self.room() <= 0:
            place = asyncio.get_running_loop().create_future()
            self._waiting.append(place)
            try:
                await place
            except asyncio.CancelledError:
                if place.done() and not place.cancelled():
                    self._leave()  # let in, then cancelled before it could go on
                raise
        else:
            self.admitted += 1
        try:
            yield
        finally:
            self._leave()

    def timed(self, seconds: float) -> None:
        """One call took `seconds`: move the estimate halfway there, and admit more if it fell."""
        self.latency = (self.latency + seconds) / 2
        self._let_in()

    def _leave(self) -> None:
        self.admitted -= 1
        self._let_in()

    def _let_in(self) -> None:
        while self._waiting and self.room() > 0:
            place = self._waiting.popleft()
            if not place.done():  # a cancelled waiter is skipped
                self.admitted += 1
                place.set_result(None)
