"""The outbox relay on PostgreSQL and SQLite: each event is published once, then marked relayed."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

from integration.api.test_dispatch_service import connect, post_due
from sqlalchemy import select, update

from kairos.events.v1 import events_pb2
from kairos_api.adapters.orm import OutboxEvent
from kairos_common.streams import EVENTS_STREAM
from kairos_common.streams import connect as connect_nats
from support.api import Client, RunningApi
from support.nats_server import NatsServer


async def outbox_of(api: RunningApi, post_ids: set[str]) -> dict[str, bool]:
    """Event id → whether it is marked relayed, for these posts' events."""
    async with api.service.app.uow() as uow:
        rows = (await uow.session.execute(select(OutboxEvent))).scalars().all()
    found = {}
    for row in rows:
        if events_pb2.LifecycleEvent.FromString(row.payload).post_id in post_ids:
            found[str(row.event_id)] = row.relayed_at is not None
    return found


async def test_every_outbox_event_is_published_once_and_marked_relayed(
    own_api: RunningApi, nats_server: NatsServer, tenant: Client
) -> None:
    account = await connect(tenant)
    posts = [await post_due(tenant, account, f"relay {i}", offset=600) for i in range(30)]
    ours = {p.id for p in posts}

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        marked = await outbox_of(own_api, ours)
        if len(marked) == 2 * len(posts) and all(marked.values()):
            break
        await asyncio.sleep(0.1)
    assert len(marked) == 2 * len(posts)  # created and scheduled, per post
    assert all(marked.values())

    client = await connect_nats(nats_server.url, name=f"relay-test-{uuid.uuid4().hex[:6]}")
    try:
        subscription = await client.jetstream().subscribe(
            "kairos.events.*.post.>", stream=EVENTS_STREAM, ordered_consumer=True
        )
        published: list[str] = []
        while True:
            try:
                message = await subscription.next_msg(timeout=1.0)
            except TimeoutError:
                break
            event = events_pb2.LifecycleEvent.FromString(message.data)
            if event.post_id in ours:
                published.append(event.event_id)
        await subscription.unsubscribe()
    finally:
        await client.close()
    assert sorted(published) == sorted(marked)  # each event exactly once


async def test_events_relayed_longer_ago_than_the_retention_are_pruned(
    own_api: RunningApi, tenant: Client
) -> None:
    account = await connect(tenant)
    posts = [await post_due(tenant, account, f"prune {i}", offset=600) for i in range(4)]
    ours = {p.id for p in posts}
    relay = own_api.service.relay
    assert relay is not None
    deadline = time.monotonic() + 15
    marked = await outbox_of(own_api, ours)
    while not (len(marked) == 8 and all(marked.values())) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        marked = await outbox_of(own_api, ours)
    assert len(marked) == 8  # created and scheduled, per post
    assert all(marked.values())
    old = sorted(marked)[:5]
    now = datetime.now(UTC)
    async with own_api.service.app.uow() as uow:
        await uow.session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.event_id.in_([uuid.UUID(e) for e in old]))
            .values(relayed_at=now - timedelta(hours=2))
        )
        await uow.commit()

    pruned = await relay.prune_once(now - timedelta(hours=1))

    assert pruned >= 5  # ours, and any other module test's as old
    left = await outbox_of(own_api, ours)
    assert sorted(left) == sorted(set(marked) - set(old))
