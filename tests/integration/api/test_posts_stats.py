"""GetStats over real gRPC, on PostgreSQL and SQLite: soft-deleted posts stay out of every count,
whatever state their targets had reached; what counts as the oldest overdue post."""

from __future__ import annotations

from datetime import timedelta

import pytest
from integration.api.helpers_posts import Tenant, at, now, other_tenant, tenant_of, when

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


async def test_a_post_awaiting_approval_past_its_instant_is_the_oldest_overdue(
    kairos: Tenant,
) -> None:
    """Overdue: SCHEDULED or PENDING_APPROVAL past its instant; not drafts, not publishing."""
    account = await kairos.connect()
    waiting = await kairos.create(account, schedule=at(600), approval_required=True)
    scheduled = await kairos.create(account, schedule=at(600))
    publishing = await kairos.create(account, schedule=at(600))
    draft = await kairos.create(account)
    waiting_at = (now() - timedelta(hours=1)).replace(microsecond=0)
    await kairos.db_set_post(waiting.id, scheduled_at=waiting_at)
    await kairos.db_set_post(scheduled.id, scheduled_at=now() - timedelta(minutes=30))
    await kairos.db_set_post(
        publishing.id, status="publishing", scheduled_at=now() - timedelta(hours=3)
    )
    await kairos.db_set_post(draft.id, scheduled_at=now() - timedelta(hours=4))

    stats = await kairos.stats()

    assert stats.oldest_overdue_post_id == waiting.id
    assert when(stats.oldest_overdue_at) == waiting_at
    assert stats.due_next_hour == 0

    await kairos.reject(waiting.id, "not this one")
    assert (await kairos.stats()).oldest_overdue_post_id == scheduled.id
