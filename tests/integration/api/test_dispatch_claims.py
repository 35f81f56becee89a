"""ClaimDue on PostgreSQL (one set-based statement) and SQLite (loaded rows): the same deliveries.

Each backend gets a fresh database shared by two apis, so that claims race the way two scheduler
replicas race, each with its own connections.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from integration.api.test_dispatch_service import SERVICE, connect, post_due, seconds
from sqlalchemy import select

from kairos.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from kairos.posts.v1 import posts_pb2
from kairos_api.adapters.orm import Target
from support.api import Client, RunningApi, api_settings, running_api
from support.nats_server import NatsServer
from support.postgres import fresh_database

LEASE = timedelta(seconds=60)


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
async def two_apis(
    request: pytest.FixtureRequest,
    nats_server: NatsServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[RunningApi, RunningApi]]:
    folder = tmp_path_factory.mktemp("claims")
    async with fresh_database(request.param, folder) as url:
        settings = api_settings(url, KAIROS_NATS_URL=nats_server.url)
        async with running_api(settings) as first, running_api(settings) as second:
            yield first, second


@pytest.fixture
async def tenant(two_apis: tuple[RunningApi, RunningApi]) -> AsyncIterator[Client]:
    async with two_apis[0].client() as client:
        yield client


@pytest.fixture
async def dispatchers(
    two_apis: tuple[RunningApi, RunningApi],
) -> AsyncIterator[list[dispatch_pb2_grpc.DispatchServiceAsyncStub]]:
    async with (
        grpc.aio.insecure_channel(two_apis[0].target) as first,
        grpc.aio.insecure_channel(two_apis[1].target) as second,
    ):
        yield [
            dispatch_pb2_grpc.DispatchServiceStub(first),
            dispatch_pb2_grpc.DispatchServiceStub(second),
        ]


async def claim(
    dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, limit: int, horizon: float = 5.0
) -> list[dispatch_pb2.Delivery]:
    reply = await dispatch.ClaimDue(
        dispatch_pb2.ClaimDueRequest(
            horizon=seconds(horizon), limit=limit, lease=seconds(LEASE.total_seconds())
        ),
        metadata=SERVICE,
    )
    return list(reply.deliveries)


async def stored(api: RunningApi, target_ids: list[str]) -> dict[str, Target]:
    async with api.service.app.uow() as uow:
        rows = (
            await uow.session.execute(
                select(Target).where(Target.id.in_([uuid.UUID(t) for t in target_ids]))
            )
        ).scalars()
        return {str(t.id): t for t in rows}


async def test_racing_claims_from_two_apis_take_each_due_target_exactly_once(
    dispatchers: list[dispatch_pb2_grpc.DispatchServiceAsyncStub], tenant: Client
) -> None:
    account = await connect(tenant)
    posts = [await post_due(tenant, account, f"race {i}") for i in range(120)]
    mine = {p.targets[0].id for p in posts}

    rounds = await asyncio.gather(
        *(claim(dispatchers[i % 2], limit=9) for i in range(12)),
    )
    rest = await claim(dispatchers[0], limit=2000)

    claimed = [d for deliveries in [*rounds, rest] for d in deliveries if d.target_id in mine]
    assert sorted(d.target_id for d in claimed) == sorted(mine)  # each exactly once
    assert len({d.delivery_id for d in claimed}) == len(claimed)
    assert all(len([d for d in r if d.target_id in mine]) <= 9 for r in rounds)


async def test_a_claim_hands_out_the_soonest_first_with_what_it_stored(
    two_apis: tuple[RunningApi, RunningApi],
    dispatchers: list[dispatch_pb2_grpc.DispatchServiceAsyncStub],
    tenant: Client,
) -> None:
    account = await connect(tenant)
    # Created out of order: one overdue, one due now, one due inside the horizon, one after it.
    ahead = await post_due(tenant, account, "ahead", offset=2)
    overdue = await post_due(tenant, account, "overdue", offset=-30)
    now_due = await post_due(tenant, account, "now", offset=0)
    later = await post_due(tenant, account, "later", offset=300)
    before = datetime.now(UTC)

    deliveries = await claim(dispatchers[1], limit=2000)
    after = datetime.now(UTC)

    order = [overdue.targets[0].id, now_due.targets[0].id, ahead.targets[0].id]
    assert [d.target_id for d in deliveries if d.target_id in {*order, later.targets[0].id}] == (
        order
    )
    rows = await stored(two_apis[0], order)
    for delivery, post in zip(deliveries, [overdue, now_due, ahead], strict=True):
        row = rows[delivery.target_id]
        assert row.status == "queued"
        assert str(row.delivery_id) == delivery.delivery_id
        assert row.delivery_revision == delivery.revision == post.revision
        assert delivery.post_id == post.id
        assert delivery.account_id == account
        assert delivery.platform == posts_pb2.PLATFORM_MASTODON
        assert delivery.attempt_number == 1
        assert row.due_at is not None
        assert row.next_attempt_at is not None
        assert delivery.due_at.ToDatetime(UTC) == row.due_at
        assert delivery.lease_until.ToDatetime(UTC) == row.lease_until
        # The lease runs from the due instant, or from the claim when the target is overdue.
        assert row.lease_until is not None
        if row.next_attempt_at > after:
            assert row.lease_until == row.next_attempt_at + LEASE
        else:
            assert before - timedelta(seconds=1) <= row.lease_until - LEASE <= after
        # A time-ordered id (version 7): its first 48 bits are the claim's instant in ms.
        ident = uuid.UUID(delivery.delivery_id)
        assert ident.version == 7
        assert ident.variant == uuid.RFC_4122
        minted = datetime.fromtimestamp((ident.int >> 80) / 1000, UTC)
        assert before - timedelta(seconds=1) <= minted <= after + timedelta(seconds=1)
    assert (await stored(two_apis[0], [later.targets[0].id]))[
        later.targets[0].id
    ].status == "pending"


async def test_an_empty_claim_changes_nothing(
    dispatchers: list[dispatch_pb2_grpc.DispatchServiceAsyncStub], tenant: Client
) -> None:
    await claim(dispatchers[0], limit=2000)
    assert await claim(dispatchers[1], limit=2000, horizon=0) == []
