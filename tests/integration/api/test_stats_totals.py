"""GetStats' totals, kept by triggers, stay equal to a count of the tables themselves through
creates, edits, dispatch, soft and hard deletes, concurrent writers and folds, on PostgreSQL and
SQLite; the migration fills them in from the rows already there."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from alembic import command
from integration.api.helpers_posts import Tenant, at, tenant_of
from sqlalchemy import Delete, delete, func, select

from kairos.posts.v1 import posts_pb2
from kairos_api.adapters.database import alembic_config, migrate
from kairos_api.adapters.orm import Post, StatsDelta, Target
from kairos_api.domain.model import ErrorClass, PostStatus, TargetStatus
from kairos_api.service_layer import dispatch, posts
from kairos_api.service_layer.application import Application
from kairos_api.service_layer.dispatch import Outcome
from kairos_api.service_layer.posts import stats as posts_stats
from kairos_common.platforms import Platform
from support.api import Client, RunningApi, api_settings, running_api
from support.nats_server import NatsServer
from support.postgres import fresh_database

Counts = tuple[dict[PostStatus, int], dict[tuple[Platform, TargetStatus], int]]


@pytest.fixture
def kairos(own_api: RunningApi, tenant: Client) -> Tenant:
    return tenant_of(own_api, tenant)


async def counted(app: Application, tenant: str) -> Counts:
    """What GetStats must say, counted from the tables: live posts and their targets."""
    async with app.uow() as uow:
        connection = await uow.session.connection()
        by_status = {
            PostStatus(status): n
            for status, n in await connection.execute(
                select(Post.status, func.count())
                .where(Post.tenant_id == tenant, Post.deleted_at.is_(None))
                .group_by(Post.status)
            )
        }
        by_platform = {
            (Platform(platform), TargetStatus(status)): n
            for platform, status, n in await connection.execute(
                select(Target.platform, Target.status, func.count())
                .join(Post, Post.id == Target.post_id)
                .where(Target.tenant_id == tenant, Post.deleted_at.is_(None))
                .group_by(Target.platform, Target.status)
            )
        }
    return by_status, by_platform


async def totals(app: Application, tenant: str) -> Counts:
    stats = await posts.get_stats(app, tenant)
    return stats.by_status, stats.by_platform


async def assert_exact(kairos: Tenant) -> None:
    expected = await counted(kairos.app, kairos.tenant)
    assert await totals(kairos.app, kairos.tenant) == expected
    assert expected != ({}, {})  # the test counts something


async def remove(app: Application, statement: Delete) -> None:
    """Delete rows outright, with SQL of the caller's own."""
    async with app.uow() as uow:
        await uow.session.execute(statement)
        await uow.commit()


async def test_totals_follow_every_change_a_post_goes_through(kairos: Tenant) -> None:
    app = kairos.app
    x, mastodon = await kairos.connect(), await kairos.connect(posts_pb2.PLATFORM_MASTODON)
    draft = await kairos.create(x)
    scheduled = await kairos.create(x, mastodon, schedule=at(3600))
    due = await kairos.create(x, mastodon, schedule=at(1))
    await assert_exact(kairos)

    await kairos.update(draft.id, ["targets"], targets=[posts_pb2.TargetSpec(account_id=mastodon)])
    await kairos.schedule(draft.id, at(7200))
    await kairos.unschedule(scheduled.id)
    await assert_exact(kairos)

    # Dispatch: claimed, begun, one published and one failed for good.
    await asyncio.sleep(1.1)
    claimed = await dispatch.claim_due(app, timedelta(0), 100, timedelta(minutes=1))
    assert {d.post_id for d in claimed} == {due.id}
    await assert_exact(kairos)
    begun = await dispatch.begin_attempts(app, [d.delivery_id for d in claimed])
    assert all(isinstance(b, dispatch.Begun) for b in begun)
    await assert_exact(kairos)
    outcomes = [
        Outcome(b.attempt_id, d.delivery_id, published=True)
        if b.platform == Platform.X
        else Outcome(b.attempt_id, d.delivery_id, False, error_class=ErrorClass.PERMANENT)
        for d, b in zip(claimed, begun, strict=True)
        if isinstance(b, dispatch.Begun)
    ]
    await dispatch.complete_attempts(app, outcomes)
    await assert_exact(kairos)

    # Deleting keeps the started targets' statuses, and takes all of them out of the counts.
    await kairos.delete(due.id)
    await kairos.delete(scheduled.id)
    await assert_exact(kairos)
    await posts.fold_stats(app)
    await assert_exact(kairos)

    # Rows removed outright (the api never does; an operator might): a live post, and a
    # soft-deleted one whose targets were already taken out.
    await remove(app, delete(Post).where(Post.id == uuid.UUID(draft.id)))
    await remove(app, delete(Post).where(Post.id == uuid.UUID(due.id)))
    live = await kairos.create(x, mastodon)
    await assert_exact(kairos)
    await remove(app, delete(Target).where(Target.post_id == uuid.UUID(live.id)))
    await assert_exact(kairos)


async def test_a_deleted_posts_targets_changing_later_stay_out_of_the_counts(
    kairos: Tenant,
) -> None:
    """A target of a deleted post can still finish (its call was under way)."""
    account = await kairos.connect()
    await kairos.create(account, schedule=at(600))
    gone = await kairos.create(account, schedule=at(600))
    (target,) = await kairos.db_targets(gone.id)
    await kairos.db_set_target(str(target.id), status="publishing")
    await kairos.delete(gone.id)
    await kairos.db_set_target(str(target.id), status="published")
    await assert_exact(kairos)
    stats = await kairos.stats()
    assert {(p.platform, p.status): p.count for p in stats.by_platform} == {
        (posts_pb2.PLATFORM_X, posts_pb2.TARGET_STATUS_PENDING): 1
    }
    assert {(s.status, s.count) for s in stats.by_status} == {(posts_pb2.POST_STATUS_SCHEDULED, 1)}


async def test_concurrent_writers_keep_the_totals_exact(kairos: Tenant) -> None:
    """Many transactions at once, each changing the same totals, a fold running meanwhile."""
    app = kairos.app
    accounts = [await kairos.connect(), await kairos.connect(posts_pb2.PLATFORM_MASTODON)]
    created = await asyncio.gather(
        *(kairos.create(*accounts, schedule=at(600 + i)) for i in range(40))
    )
    changed = [p for i, p in enumerate(created) if i % 7 > 1]
    target_ids = [str(t.id) for p in changed for t in await kairos.db_targets(p.id)]
    statuses = ["queued", "publishing", "published", "failed", "retry_wait"]
    stop = asyncio.Event()

    async def fold_meanwhile() -> None:
        while not stop.is_set():
            await posts.fold_stats(app)
            await asyncio.sleep(0.01)

    folding = asyncio.create_task(fold_meanwhile())
    await asyncio.gather(
        *(
            kairos.db_set_target(target_id, status=statuses[i % len(statuses)])
            for i, target_id in enumerate(target_ids)
        ),
        *(kairos.delete(p.id) for p in created[::7]),
        *(kairos.unschedule(p.id) for p in created[1::7]),
    )
    stop.set()
    await folding
    await assert_exact(kairos)
    await posts.fold_stats(app)
    await assert_exact(kairos)


async def test_a_fold_moves_every_pending_delta_into_the_totals(
    kairos: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The api's own fold loop is stopped meanwhile, so that the deltas wait for this fold."""
    app = kairos.app
    if app.engine.dialect.name != "postgresql":
        pytest.skip("SQLite's triggers change the totals themselves: it writes no deltas")
    fold = posts_stats.fold_stats

    async def not_now(app: Application) -> int:
        return 0

    monkeypatch.setattr(posts_stats, "fold_stats", not_now)  # what `fold_stats_until` calls
    await kairos.create(schedule=at(600))
    await kairos.create()
    before = await totals(app, kairos.tenant)
    assert await pending_deltas(app) > 0
    assert await fold(app) > 0
    assert await pending_deltas(app) == 0
    assert await totals(app, kairos.tenant) == before
    await assert_exact(kairos)


async def pending_deltas(app: Application) -> int:
    async with app.uow() as uow:
        return await uow.session.scalar(select(func.count()).select_from(StatsDelta)) or 0


async def test_the_migration_counts_the_rows_already_there(
    nats_server: NatsServer, tmp_path: Path, kind: str
) -> None:
    """Down to the schema before the totals and up again: the totals are counted afresh."""
    async with fresh_database(kind, tmp_path) as url:
        settings = api_settings(url, KAIROS_NATS_URL=nats_server.url)
        async with running_api(settings) as api, api.client() as client:
            kairos = tenant_of(api, client)
            account = await kairos.connect()
            await kairos.create(account, schedule=at(600))
            await kairos.create(account)
            published = await kairos.create(account, schedule=at(600))
            (target,) = await kairos.db_targets(published.id)
            await kairos.db_set_target(str(target.id), status="published")
            await kairos.delete((await kairos.create(account)).id)
            expected = await counted(kairos.app, kairos.tenant)
            await asyncio.to_thread(migrate_to, url, "0004")
            await asyncio.to_thread(migrate_to, url, "head")
            assert await totals(kairos.app, kairos.tenant) == expected


def migrate_to(url: str, revision: str) -> None:
    if revision == "head":
        migrate(url)
    else:
        command.downgrade(alembic_config(url), revision)


@pytest.fixture(params=["postgresql", "sqlite"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)
