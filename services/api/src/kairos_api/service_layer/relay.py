"""The outbox relay: lifecycle events written with each change are published to KAIROS_EVENTS.

Each row is published with `Nats-Msg-Id` = its event id and marked relayed only after JetStream
acknowledged it; a crash in between re-publishes the row, and JetStream's de-duplication window
drops the copy, so every event reaches the stream exactly once. On PostgreSQL several api copies
relay side by side without taking the same rows (SKIP LOCKED). Relayed rows are deleted once
older than the retention (KAIROS_OUTBOX_RETENTION_SECONDS), so the table holds about an hour of
events, not every event ever written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from nats.aio.client import Client as NatsClient
from sqlalchemy import delete, select, update

from kairos_api.adapters.orm import OutboxEvent, utcnow
from kairos_api.service_layer.unit_of_work import UnitOfWork
from kairos_common.publishing import AckedPublisher, Message
from kairos_common.streams import EVENTS_SUBJECT_PREFIX, event_subject

log = logging.getLogger(__name__)

BATCH = 500
#: Rows deleted per pruning statement, and seconds between prunings.
PRUNE_BATCH = 5000
PRUNE_EVERY = 60.0
ACK_TIMEOUT = 5.0
#: How long a poke waits for more commits before relaying.
DEBOUNCE = 0.02
ACCOUNT_EVENTS = frozenset({"needs_reauth"})
WEBHOOK_EVENTS = frozenset({"webhook_disabled"})


def subject_of(event_type: str) -> str:
    if event_type in ACCOUNT_EVENTS:
        return f"{EVENTS_SUBJECT_PREFIX}.account.{event_type}"
    if event_type in WEBHOOK_EVENTS:
        return f"{EVENTS_SUBJECT_PREFIX}.webhook.{event_type}"
    return event_subject(event_type)


class OutboxRelay:
    """Publishes unrelayed outbox rows, in order, whenever poked and at least every `interval`."""

    def __init__(
        self,
        new_uow: Callable[[], UnitOfWork],
        nc: NatsClient,
        interval: float = 0.5,
        retention: timedelta = timedelta(hours=1),
    ) -> None:
        self._new_uow = new_uow
        self.publisher = AckedPublisher(nc)
        self.interval = interval
        self.poked = asyncio.Event()
        self.stopping = asyncio.Event()
        self.relayed = 0
        self.retention = retention
        self._pruned_at = 0.0

    def poke(self) -> None:
        self.poked.set()

    async def relay_once(self) -> int:
        """Publish one batch, oldest first, and mark what JetStream acknowledged; the number of
        rows relayed."""
        async with self._new_uow() as uow:
            rows = await _take(uow)
            if not rows:
                return 0
            # A broker restart can leave acks unanswered for ever; what is not acknowledged
            # within the timeout stays in the outbox for the next round.
            stored = await self.publisher.publish(
                [
                    Message(subject_of(event_type), bytes(payload), event_id)
                    for _, event_id, event_type, payload in rows
                ],
                ACK_TIMEOUT,
            )
            relayed: list[int] = []
            for row, ok in zip(rows, stored, strict=True):
                if not ok:
                    break  # keep the order: the rest go in the next round
                relayed.append(row[0])
            if relayed:
                await _mark(uow, relayed)
            await uow.commit()
            self.relayed += len(relayed)
            return len(relayed)

    async def prune_once(self, cutoff: datetime) -> int:
        """Delete rows relayed before `cutoff`, oldest first, a batch at a time; how many."""
        pruned = 0
        while True:
            async with self._new_uow() as uow:
                deleted = await _prune(uow, cutoff)
                await uow.commit()
            pruned += deleted
            if deleted < PRUNE_BATCH:
                return pruned

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
            await self._prune_now_and_then()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.poked.wait(), timeout=self.interval)
                # Let the commits of a busy moment gather, then relay them in one round.
                await asyncio.sleep(DEBOUNCE)
            self.poked.clear()

    async def _prune_now_and_then(self) -> None:
        """Prune at most once every PRUNE_EVERY seconds, at a quiet moment of the relay."""
        now = time.monotonic()
        if now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        try:
            pruned = await self.prune_once(utcnow() - self.retention)
        except Exception as error:  # the database is away: the next round tries again
            log.warning("outbox pruning failed: %r", error)
            return
        if pruned:
            log.info("outbox pruned", extra={"deleted": pruned})


#: The oldest unrelayed rows, locked; copies relaying side by side skip each other's.
TAKE_SQL = """
SELECT seq, event_id::text, event_type, payload FROM outbox
WHERE relayed_at IS NULL
ORDER BY seq
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
"""
MARK_SQL = """
UPDATE outbox SET relayed_at = %(now)s
WHERE seq = ANY(string_to_array(%(seqs)s, ',')::bigint[])
"""
#: Rows relayed before the cutoff, oldest first: they sit at the start of the table's key.
PRUNE_SQL = """
DELETE FROM outbox
WHERE seq IN (
    SELECT seq FROM outbox WHERE relayed_at < %(cutoff)s ORDER BY seq LIMIT %(limit)s
)
"""


async def _take(uow: UnitOfWork) -> Sequence[Sequence[Any]]:
    if uow.on_postgresql:
        connection = await uow.psycopg()
        cursor = await connection.execute(TAKE_SQL, {"limit": BATCH})
        return await cursor.fetchall()
    result = await uow.session.execute(
        select(OutboxEvent.seq, OutboxEvent.event_id, OutboxEvent.event_type, OutboxEvent.payload)
        .where(OutboxEvent.relayed_at.is_(None))
        .order_by(OutboxEvent.seq)
        .limit(BATCH)
    )
    return [(seq, str(event_id), kind, payload) for seq, event_id, kind, payload in result.all()]


async def _mark(uow: UnitOfWork, sequence_numbers: list[int]) -> None:
    if uow.on_postgresql:
        connection = await uow.psycopg()
        seqs = ",".join(map(str, sequence_numbers))
        await connection.execute(MARK_SQL, {"now": utcnow(), "seqs": seqs})
        return
    await uow.session.execute(
        update(OutboxEvent)
        .where(OutboxEvent.seq.in_(sequence_numbers))
        .values(relayed_at=utcnow())
        .execution_options(synchronize_session=False)
    )


async def _prune(uow: UnitOfWork, cutoff: datetime) -> int:
    if uow.on_postgresql:
        connection = await uow.psycopg()
        cursor = await connection.execute(PRUNE_SQL, {"cutoff": cutoff, "limit": PRUNE_BATCH})
        return cursor.rowcount
    oldest = (
        select(OutboxEvent.seq)
        .where(OutboxEvent.relayed_at < cutoff)
        .order_by(OutboxEvent.seq)
        .limit(PRUNE_BATCH)
        .scalar_subquery()
    )
    result = await uow.session.execute(
        delete(OutboxEvent)
        .where(OutboxEvent.seq.in_(oldest))
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
