"""GetStats over real gRPC, on PostgreSQL and SQLite: soft-deleted posts stay out of every count,
whatever state their targets had reached."""

from __future__ import annotations

import pytest
from integration.api.helpers_posts import Tenant, at, other_tenant, tenant_of

from kairos.posts.v1 import posts_pb2
from support.api import Client, RunningApi


@pytest.fixture
def kairos(api: RunningApi, client: Client) -> Tenant:
    return tenant_of(api, client)


async def test_stats_leave_out_targets_of_deleted_posts_in_any_status(
    api: RunningApi, kairos: Tenant
) -> None:
    x = await kairos.connect()
    mastodon = await kairos.connect(posts_pb2.PLATFORM_MASTODON)
    await kairos.create(x, schedule=at(7200))
    live_published = await kairos.create(x, schedule=at(7200))
    (target,) = await kairos.db_targets(live_published.id)
    await kairos.db_set_target(str(target.id), status="published")
    # Deleting cancels only targets that have not started, so these keep their status.
    deleted = await kairos.create(x, mastodon, schedule=at(7200))
    for target in await kairos.db_targets(deleted.id):
        status = "published" if str(target.account_id) == x else "failed"
        await kairos.db_set_target(str(target.id), status=status)
    await kairos.delete(deleted.id)
    async with other_tenant(api) as other:
        foreign = await other.create(schedule=at(7200))
        await other.delete(foreign.id)

    stats = await kairos.stats()

    assert {s.status: s.count for s in stats.by_status} == {posts_pb2.POST_STATUS_SCHEDULED: 2}
    assert {(p.platform, p.status): p.count for p in stats.by_platform} == {
        (posts_pb2.PLATFORM_X, posts_pb2.TARGET_STATUS_PENDING): 1,
        (posts_pb2.PLATFORM_X, posts_pb2.TARGET_STATUS_PUBLISHED): 1,
    }
