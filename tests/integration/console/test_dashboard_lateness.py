"""The dashboard's lateness chart over the real api: posts the publisher would have published
(written as it writes them) appear as bars, with their count and median lateness."""

from __future__ import annotations

import uuid
from datetime import UTC, timedelta

from google.protobuf.duration_pb2 import Duration
from sqlalchemy import update

from kairos.posts.v1 import posts_pb2
from kairos_api.adapters.orm import Post, Target
from support.api import RunningApi
from support.console import Browser

from .conftest import Tenant


async def published(console_api: RunningApi, late: float, scheduled: posts_pb2.Post) -> None:
    """Mark `scheduled` and its one target published `late` seconds after its instant, as the
    publisher's report would."""
    instant = scheduled.scheduled_at.ToDatetime(tzinfo=UTC)
    async with console_api.service.app.uow() as uow:
        await uow.session.execute(
            update(Post).where(Post.id == uuid.UUID(scheduled.id)).values(status="published")
        )
        await uow.session.execute(
            update(Target)
            .where(Target.post_id == uuid.UUID(scheduled.id))
            .values(status="published", published_at=instant + timedelta(seconds=late))
        )
        await uow.commit()


async def test_the_dashboard_charts_published_deliveries(
    console_api: RunningApi, browser: Browser, tenant: Tenant
) -> None:
    empty = await browser.get("/")
    assert empty.one("#lateness")["data-count"] == "0"
    assert not empty.all("svg.lateness-chart")

    ids = []
    for index, late in enumerate([4.0, 1.0, 90.0]):
        post = await tenant.client.create_post(
            posts_pb2.CreatePostRequest(
                content=f"late {late}",
                targets=[posts_pb2.TargetSpec(account_id=tenant.account.id)],
                schedule=posts_pb2.Schedule(after=Duration(seconds=3600 + index)),
            )
        )
        await published(console_api, late, post)
        ids.append(post.id)
    # A post still scheduled is no delivery.
    await tenant.client.create_post(
        posts_pb2.CreatePostRequest(
            content="not yet",
            targets=[posts_pb2.TargetSpec(account_id=tenant.account.id)],
            schedule=posts_pb2.Schedule(after=Duration(seconds=7200)),
        )
    )

    for path in ("/", "/dashboard/live"):
        page = await browser.get(path)
        assert page.one("#lateness")["data-count"] == "3"
        # In the order they went out: 3,601 + 1 s, then 3,600 + 4 s, then 3,602 + 90 s.
        assert [bar["data-post-id"] for bar in page.all("rect.lateness-bar")] == [
            ids[1],
            ids[0],
            ids[2],
        ]
        assert page.texts("[data-lateness=p50]") == ["4.0 s"]
        assert page.texts("[data-lateness=max]") == ["1 min 30 s"]
