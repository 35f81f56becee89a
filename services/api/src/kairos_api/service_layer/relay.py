"""The outbox relay: lifecycle events written with each change are published to KAIROS_EVENTS.

Each row is published with `Nats-Msg-Id` = its event id and marked relayed only after JetStream
acknowledged it; a crash in between re-publishes the row, and JetStream's de-duplication window
drops the copy, so every event reaches the stream exactly once. On PostgreSQL several api copies
relay side by side without taking the same rows (SKIP LOCKED).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from nats.js import JetStreamContext
from sqlalchemy import select, update

from kairos_api.adapters.orm import OutboxEvent, utcnow
from kairos_api.service_layer.unit_of_work import UnitOfWork
from kairos_common.streams import EVENTS_SUBJECT_PREFIX, event_subject

log = logging.getLogger(__name__)

BATCH = 500
ACK_TIMEOUT = 5.0
#: How long a poke waits for more commits before relaying.
DEBOUNCE = 0.02
ACCOUNT_EVENTS = frozenset({"needs_reauth"})


def subject_of(event_type: str) -> str:
    if event_type in ACCOUNT_EVENTS:
        return f"{EVENTS_SUBJECT_PREFIX}.account.{event_type}"
    return event_subject(event_type)


class OutboxRelay:
    """Publishes unrelayed outbox rows, in order, whenever poked and at least every `interval`."""

    def __init__(
        self, new_uow: Callable[[], UnitOfWork], js: JetStreamContext, interval: float = 0.5
    ) -> None:
        self._new_uow = new_uow
        self.js = js
        self.interval = interval
        self.poked = asyncio.Event()
        self.stopping = asyncio.Event()
        self.relayed = 0

    def poke(self) -> None:
        self.poked.set()

    async def relay_once(self) -> int:
        """Publish one batch; the number of rows relayed."""
        async with self._new_uow() as uow:
            # Plain rows, not objects: marking them relayed is then one statement for the batch
            # instead of an UPDATE per row at flush.
            query = (
                select(
                    OutboxEvent.seq,
                    OutboxEvent.event_id,
                    OutboxEvent.event_type,
                    OutboxEvent.payload,
                )
                .where(OutboxEvent.relayed_at.is_(None))
                .order_by(OutboxEvent.seq)
                .limit(BATCH)
            )
            if uow.on_postgresql:
                query = query.with_for_update(skip_locked=True)
            rows = (await uow.session.execute(query)).all()
            if not rows:
                return 0
            futures = [
                await self.js.publish_async(
                    subject_of(row.event_type),
                    row.payload,
                    headers={"Nats-Msg-Id": str(row.event_id)},
                )
                for row in rows
            ]
            # A broker restart can leave acks unanswered for ever; what is not acknowledged
            # within the timeout stays in the outbox for the next round.
            _, pending = await asyncio.wait(futures, timeout=ACK_TIMEOUT)
            for future in pending:
                future.cancel()
            relayed: list[int] = []
            for row, future in zip(rows, futures, strict=True):
                if future.cancelled() or future.exception() is not None:
                    break  # keep the order: the rest go in the next round
                relayed.append(row.seq)
            if relayed:
                await uow.session.execute(
                    update(OutboxEvent)
                    .where(OutboxEvent.seq.in_(relayed))
                    .values(relayed_at=utcnow())
                    .execution_options(synchronize_session=False)
                )
            await uow.commit()
            self.relayed += len(relayed)
            return len(relayed)

    async def run(self) -> None:
        while not self.stopping.is_set():
            try:
                relayed = await self.relay_once()
            except Exception as error:  # the broker or database is away: try again shortly
                log.warning("outbox relay round failed: %r", error)
                relayed = 0
                await asyncio.sleep(1.0)
            if relayed >= BATCH:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.poked.wait(), timeout=self.interval)
                # Let the commits of a busy moment gather, then relay them in one round.
                await asyncio.sleep(DEBOUNCE)
            self.poked.clear()
