"""The api's database-wide gauges, on PostgreSQL and SQLite: targets by platform and state equal
a count of the tables across tenants (a pair that empties drops to 0), and the outbox's
unrelayed events and the age of the oldest."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from integration.api.helpers_posts import Tenant, at, other_tenant, tenant_of
from prometheus_client import REGISTRY
from sqlalchemy import func, select, update

from kairos.posts.v1 import posts_pb2
from kairos_api.adapters.database import migrate
from kairos_api.adapters.orm import OutboxEvent, Post, Target
from kairos_api.bootstrap import bootstrap
from kairos_api.metrics import refresh_gauges
from kairos_api.service_layer.application import Application
from support.api import Client, RunningApi, api_settings
from support.postgres import fresh_database


@pytest.fixture
def kairos(own_api: RunningApi, tenant: Client) -> Tenant:
    return tenant_of(own_api, tenant)


def gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def counted(app: Application) -> dict[tuple[str, str], int]:
    """Targets of live posts by platform and state, every tenant, counted from the tables."""
    async with app.uow() as uow:
        connection = await uow.session.connection()
        rows = await connection.execute(
            select(Target.platform, Target.status, func.count())
            .join(Post, Post.id == Target.post_id)
            .where(Post.deleted_at.is_(None))
            .group_by(Target.platform, Target.status)
        )
        return {(str(platform), str(status)): n for platform, status, n in rows}


async def test_targets_by_state_count_every_tenant_and_drop_to_zero(
    kairos: Tenant, own_api: RunningApi
) -> None:
    app = own_api.service.app
    x = await kairos.connect(posts_pb2.PLATFORM_X)
    mastodon = await kairos.connect(posts_pb2.PLATFORM_MASTODON)
    draft = await kairos.create(x, mastodon)
    await kairos.create(x, schedule=at(3600))
    gone = await kairos.create(mastodon, schedule=at(3600))
    await kairos.delete(gone.id)
    async with other_tenant(own_api) as other:
        await other.create(await other.connect(posts_pb2.PLATFORM_X), schedule=at(3600))

    await refresh_gauges(app)

    expected = await counted(app)
    # Two tenants' X targets and the draft's Mastodon one; the deleted post's target is gone.
    assert expected == {("x", "pending"): 3, ("mastodon", "pending"): 1}
    for (platform, state), total in expected.items():
        assert gauge("kairos_targets", platform=platform, state=state) == total, (platform, state)

    await kairos.delete(draft.id)
    await refresh_gauges(app)
    assert gauge("kairos_targets", platform="mastodon", state="pending") == 0
    assert gauge("kairos_targets", platform="x", state="pending") == 2


@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
async def test_outbox_gauges_show_the_unrelayed_events_and_the_oldest_ones_age(
    kind: str, tmp_path: Path
) -> None:
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    async with fresh_database(kind, tmp_path) as url:
        migrate(url)
        # No relay runs here: the rows stay as written.
        app = bootstrap(api_settings(url), clock=lambda: now)
        try:
            async with app.uow() as uow:
                for age, relayed in ((100, True), (30, False), (10, False)):
                    uow.session.add(
                        OutboxEvent(
                            event_id=uuid.uuid4(),
                            tenant_id="t",
                            event_type="published",
                            payload=b"",
                            created_at=now - timedelta(seconds=age),
                            relayed_at=now if relayed else None,
                        )
                    )
                await uow.commit()
            await refresh_gauges(app)
            assert gauge("kairos_outbox_unrelayed_events") == 2
            assert gauge("kairos_outbox_lag_seconds") == 30.0

            async with app.uow() as uow:
                await uow.session.execute(update(OutboxEvent).values(relayed_at=now))
                await uow.commit()
            await refresh_gauges(app)
            assert gauge("kairos_outbox_unrelayed_events") == 0
            assert gauge("kairos_outbox_lag_seconds") == 0
        finally:
            await app.close()
