"""GetPost and ListPosts, which PostgreSQL answers with messages it writes as JSON, show exactly
what the api's own conversion of the rows shows, for a post with every field set, on PostgreSQL
and SQLite."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.duration_pb2 import Duration
from integration.api.helpers_posts import Tenant, tenant_of
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from kairos.posts.v1 import posts_pb2
from kairos_api.adapters import convert
from kairos_api.adapters.orm import Attempt, Post, Target
from support.api import Client, RunningApi


@pytest.fixture
def kairos(api: RunningApi, client: Client) -> Tenant:
    return tenant_of(api, client)


async def expected(kairos: Tenant, post_id: str, *, with_attempts: bool) -> posts_pb2.Post:
    """The post as `convert.post_to_proto` makes it of the ORM rows."""
    async with kairos.app.uow() as uow:
        post = (
            await uow.session.execute(
                select(Post)
                .where(Post.id == uuid.UUID(post_id))
                .options(selectinload(Post.targets).selectinload(Target.attempts))
            )
        ).scalar_one()
        return convert.post_to_proto(post, with_attempts=with_attempts)


async def test_every_field_reads_as_the_rows_convert(kairos: Tenant) -> None:
    x = await kairos.connect()
    mastodon = await kairos.connect(posts_pb2.PLATFORM_MASTODON)
    telegram = await kairos.connect(posts_pb2.PLATFORM_TELEGRAM)
    parent = await kairos.create(x)
    response = await kairos.posts.CreatePost(
        posts_pb2.CreatePostRequest(
            content="Every field",
            targets=[
                posts_pb2.TargetSpec(account_id=x, settings={"reply": "none", "lang": "en"}),
                posts_pb2.TargetSpec(account_id=mastodon, content_override=""),
                posts_pb2.TargetSpec(account_id=telegram, content_override="Shorter"),
            ],
            media_urls=["https://example.com/a.png", "https://example.com/b.png"],
            campaign="launch",
            tags=["one", "two"],
            notes="a note",
            schedule=posts_pb2.Schedule(
                local=posts_pb2.LocalDateTime(
                    date_time="2031-03-04T05:06:07", time_zone="Asia/Tokyo"
                )
            ),
            approval_required=True,
            stale_after=Duration(seconds=5400),
            parent_post_id=parent.id,
        ),
        metadata=kairos.metadata,
    )
    post = response.post
    await kairos.approve(post.id)
    by_account = {str(t.account_id): t for t in await kairos.db_targets(post.id)}
    first, second, third = by_account[x], by_account[mastodon], by_account[telegram]
    instant = datetime(2031, 3, 4, 5, 6, 7, 891_234, tzinfo=UTC)
    await kairos.db_set_target(
        str(first.id),
        status="retry_wait",
        attempt_count=2,
        next_attempt_at=instant + timedelta(minutes=5),
        last_error_class="retryable",
        last_error_code="503",
        last_error_message="try later",
    )
    await kairos.db_set_target(
        str(second.id),
        status="published",
        attempt_count=1,
        platform_post_id="1234",
        platform_url="https://mastodon.example/@me/1234",
        published_at=instant,
        next_attempt_at=instant,  # shown only while waiting to retry
    )
    await kairos.db_set_target(
        str(third.id), status="failed", last_error_class="", last_error_message="no class"
    )
    async with kairos.app.uow() as uow:
        uow.session.add_all(
            [
                Attempt(
                    target_id=first.id,
                    number=1,
                    delivery_id=uuid.uuid4(),
                    started_at=instant,
                    finished_at=instant + timedelta(microseconds=1),
                    published=False,
                    http_status=503,
                    error_class="retryable",
                    error_code="503",
                    message="unavailable",
                    latency_ms=1_234,
                ),
                Attempt(
                    target_id=first.id,
                    number=2,
                    delivery_id=uuid.uuid4(),
                    started_at=instant + timedelta(seconds=61),
                    finished_at=None,
                    latency_ms=None,
                ),
                Attempt(
                    target_id=second.id,
                    number=1,
                    delivery_id=uuid.uuid4(),
                    started_at=instant,
                    finished_at=instant,
                    published=True,
                    http_status=200,
                    latency_ms=999,
                ),
            ]
        )
        await uow.commit()

    got = await kairos.get(post.id)
    assert got == await expected(kairos, post.id, with_attempts=True)
    shown = {t.account_id: t for t in got.targets}
    assert [len(shown[a].attempts) for a in (x, mastodon, telegram)] == [2, 1, 0]
    assert shown[x].attempts[0].latency.ToMilliseconds() == 1_234
    assert shown[x].HasField("next_attempt_at")
    assert not shown[mastodon].HasField("next_attempt_at")
    assert shown[mastodon].HasField("content_override")
    assert not shown[x].HasField("content_override")
    assert shown[telegram].last_error.message == "no class"

    listed = (await kairos.list_page(campaign="launch")).posts
    assert list(listed) == [await expected(kairos, post.id, with_attempts=False)]
    assert [p.id for p in (await kairos.list_page()).posts] == [post.id, parent.id]
    assert (await kairos.list_page()).posts[1] == await expected(
        kairos, parent.id, with_attempts=False
    )
