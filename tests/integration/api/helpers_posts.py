"""Shared helpers of the PostsService integration tests (test_posts_*.py).

Imported as `integration.api.helpers_posts` (pytest puts `tests` on the path). Every helper talks
to the api over real gRPC, except the `db_*` ones, which read or change rows directly through the
application's unit of work to observe or simulate what only the scheduler and publisher do.
"""

from __future__ import annotations

import base64
import struct
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import func, select, update

from kairos.events.v1 import events_pb2
from kairos.posts.v1 import posts_pb2, posts_pb2_grpc
from kairos_api.adapters.orm import OutboxEvent, Post, Target
from kairos_api.service_layer.application import Application
from support.api import Client, RunningApi, violations_of

Metadata = tuple[tuple[str, str], ...]

#: Request kwargs of ConnectAccount per platform (what each platform needs besides a token).
ACCOUNT_FIELDS: dict[int, dict[str, str]] = {
    posts_pb2.PLATFORM_X: {},
    posts_pb2.PLATFORM_MASTODON: {"instance_url": "https://mastodon.example"},
    posts_pb2.PLATFORM_BLUESKY: {"instance_url": "https://bsky.example"},
    posts_pb2.PLATFORM_INSTAGRAM: {"page_id": "1789"},
    posts_pb2.PLATFORM_TELEGRAM: {"chat_id": "-100123"},
    posts_pb2.PLATFORM_PINTEREST: {"page_id": "549755885175"},
}


@dataclass
class Tenant:
    """One tenant's async stubs, its metadata and the application to read rows through."""

    tenant: str
    posts: posts_pb2_grpc.PostsServiceAsyncStub
    accounts: posts_pb2_grpc.AccountsServiceAsyncStub
    metadata: Metadata
    app: Application

    # --- accounts -------------------------------------------------------------------------

    async def connect(
        self, platform: posts_pb2.Platform.ValueType = posts_pb2.PLATFORM_X, handle: str = ""
    ) -> str:
        """Connect an account on `platform` and return its id."""
        credentials = posts_pb2.Credentials(access_token="tok")
        for name, value in ACCOUNT_FIELDS.get(platform, {}).items():
            setattr(credentials, name, value)
        response = await self.accounts.ConnectAccount(
            posts_pb2.ConnectAccountRequest(
                platform=platform,
                handle=handle or f"@kairos-{uuid.uuid4().hex[:6]}",
                credentials=credentials,
            ),
            metadata=self.metadata,
        )
        return response.account.id

    # --- posts ----------------------------------------------------------------------------

    async def create(
        self,
        *account_ids: str,
        content: str = "Hello from Kairos",
        schedule: posts_pb2.Schedule | None = None,
        **fields: Any,
    ) -> posts_pb2.Post:
        """Create a post on the given accounts (one new X account when none is given)."""
        if not account_ids:
            account_ids = (await self.connect(),)
        request = posts_pb2.CreatePostRequest(
            content=content,
            targets=[posts_pb2.TargetSpec(account_id=a) for a in account_ids],
            schedule=schedule,
            **fields,
        )
        response = await self.posts.CreatePost(request, metadata=self.metadata)
        return response.post

    async def get(self, post_id: str) -> posts_pb2.Post:
        response = await self.posts.GetPost(
            posts_pb2.GetPostRequest(post_id=post_id), metadata=self.metadata
        )
        return response.post

    async def list_page(self, **fields: Any) -> posts_pb2.ListPostsResponse:
        return await self.posts.ListPosts(
            posts_pb2.ListPostsRequest(**fields), metadata=self.metadata
        )

    async def list_ids(self, **fields: Any) -> list[str]:
        """Ids of every post the filters select, following every page."""
        ids: list[str] = []
        token = ""
        while True:
            page = await self.list_page(page_token=token, **fields)
            ids.extend(p.id for p in page.posts)
            token = page.next_page_token
            if not token:
                return ids

    async def update(
        self,
        post_id: str,
        paths: Sequence[str],
        *,
        post: posts_pb2.Post | None = None,
        targets: Sequence[posts_pb2.TargetSpec] = (),
        expected_revision: int | None = None,
    ) -> posts_pb2.Post:
        request = posts_pb2.UpdatePostRequest(
            post_id=post_id, post=post or posts_pb2.Post(), targets=list(targets)
        )
        request.update_mask.paths.extend(paths)
        if expected_revision is not None:
            request.expected_revision = expected_revision
        response = await self.posts.UpdatePost(request, metadata=self.metadata)
        return response.post

    async def schedule(
        self,
        post_id: str,
        schedule: posts_pb2.Schedule | None,
        expected_revision: int | None = None,
    ) -> posts_pb2.Post:
        request = posts_pb2.SchedulePostRequest(post_id=post_id, schedule=schedule)
        if expected_revision is not None:
            request.expected_revision = expected_revision
        response = await self.posts.SchedulePost(request, metadata=self.metadata)
        return response.post

    async def unschedule(self, post_id: str) -> posts_pb2.Post:
        response = await self.posts.UnschedulePost(
            posts_pb2.UnschedulePostRequest(post_id=post_id), metadata=self.metadata
        )
        return response.post

    async def publish_now(self, post_id: str) -> posts_pb2.Post:
        response = await self.posts.PublishNow(
            posts_pb2.PublishNowRequest(post_id=post_id), metadata=self.metadata
        )
        return response.post

    async def delete(self, post_id: str) -> posts_pb2.Post:
        response = await self.posts.DeletePost(
            posts_pb2.DeletePostRequest(post_id=post_id), metadata=self.metadata
        )
        return response.post

    async def retry(self, post_id: str, *target_ids: str) -> posts_pb2.Post:
        response = await self.posts.RetryPost(
            posts_pb2.RetryPostRequest(post_id=post_id, target_ids=list(target_ids)),
            metadata=self.metadata,
        )
        return response.post

    async def approve(self, post_id: str) -> posts_pb2.Post:
        response = await self.posts.ApprovePost(
            posts_pb2.ApprovePostRequest(post_id=post_id), metadata=self.metadata
        )
        return response.post

    async def reject(self, post_id: str, reason: str) -> posts_pb2.Post:
        response = await self.posts.RejectPost(
            posts_pb2.RejectPostRequest(post_id=post_id, reason=reason), metadata=self.metadata
        )
        return response.post

    async def stats(self) -> posts_pb2.GetStatsResponse:
        return await self.posts.GetStats(posts_pb2.GetStatsRequest(), metadata=self.metadata)

    # --- rows -----------------------------------------------------------------------------

    async def db_counts(self) -> tuple[int, int, int]:
        """How many post, target and outbox rows this tenant has."""
        async with self.app.uow() as uow:
            session = uow.session
            posts = (
                await session.execute(
                    select(func.count()).select_from(Post).where(Post.tenant_id == self.tenant)
                )
            ).scalar_one()
            targets = (
                await session.execute(
                    select(func.count()).select_from(Target).where(Target.tenant_id == self.tenant)
                )
            ).scalar_one()
            events = (
                await session.execute(
                    select(func.count())
                    .select_from(OutboxEvent)
                    .where(OutboxEvent.tenant_id == self.tenant)
                )
            ).scalar_one()
        return int(posts), int(targets), int(events)

    async def db_events(self, post_id: str | None = None) -> Counter[str]:
        """Outbox event types of this tenant (of one post when given), counted."""
        async with self.app.uow() as uow:
            rows = (
                await uow.session.execute(
                    select(OutboxEvent).where(OutboxEvent.tenant_id == self.tenant)
                )
            ).scalars()
            found: Counter[str] = Counter()
            for row in rows:
                event = events_pb2.LifecycleEvent.FromString(row.payload)
                assert event.type == events_pb2.LifecycleEventType.Value(
                    f"LIFECYCLE_EVENT_TYPE_{row.event_type.upper()}"
                )
                if post_id is None or event.post_id == post_id:
                    found[row.event_type] += 1
        return found

    async def db_post(self, post_id: str) -> Post:
        async with self.app.uow() as uow:
            return (
                await uow.session.execute(select(Post).where(Post.id == uuid.UUID(post_id)))
            ).scalar_one()

    async def db_targets(self, post_id: str) -> list[Target]:
        async with self.app.uow() as uow:
            rows = await uow.session.execute(
                select(Target).where(Target.post_id == uuid.UUID(post_id)).order_by(Target.id)
            )
            return list(rows.scalars())

    async def db_set_post(self, post_id: str, **values: Any) -> None:
        async with self.app.uow() as uow:
            await uow.session.execute(
                update(Post).where(Post.id == uuid.UUID(post_id)).values(**values)
            )
            await uow.commit()

    async def db_set_target(self, target_id: str, **values: Any) -> None:
        async with self.app.uow() as uow:
            await uow.session.execute(
                update(Target).where(Target.id == uuid.UUID(target_id)).values(**values)
            )
            await uow.commit()


def tenant_of(api: RunningApi, client: Client) -> Tenant:
    """Async-typed stubs on the client's channel, for one tenant."""
    return Tenant(
        tenant=client.tenant,
        posts=posts_pb2_grpc.PostsServiceStub(client.channel),
        accounts=posts_pb2_grpc.AccountsServiceStub(client.channel),
        metadata=client.metadata,
        app=api.service.app,
    )


@asynccontextmanager
async def other_tenant(api: RunningApi) -> AsyncIterator[Tenant]:
    """A second, unrelated tenant."""
    async with api.client() as client:
        yield tenant_of(api, client)


# --- time -------------------------------------------------------------------------------------


def now() -> datetime:
    return datetime.now(UTC)


def stamp(moment: datetime) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(moment)
    return result


def ahead(seconds: float) -> Timestamp:
    """A Timestamp `seconds` from now (negative: in the past)."""
    return stamp(now() + timedelta(seconds=seconds))


def at(seconds: float) -> posts_pb2.Schedule:
    """A schedule at an instant `seconds` from now."""
    return posts_pb2.Schedule(at=ahead(seconds))


def at_instant(moment: datetime) -> posts_pb2.Schedule:
    return posts_pb2.Schedule(at=stamp(moment))


def local(date_time: str, time_zone: str) -> posts_pb2.Schedule:
    return posts_pb2.Schedule(
        local=posts_pb2.LocalDateTime(date_time=date_time, time_zone=time_zone)
    )


def when(value: Timestamp) -> datetime:
    return value.ToDatetime(tzinfo=UTC)


#: A year whose every date is still ahead, so a wall time in it is never refused as past.
NEXT_YEAR = datetime.now(UTC).year + 1


@dataclass(frozen=True)
class Transition:
    """A daylight-saving change of a zone: the UTC instant and the offsets either side."""

    instant: datetime
    before: timedelta
    after: timedelta

    @property
    def midway(self) -> str:
        """The wall time halfway through the hour the clocks skip or repeat, ISO 8601."""
        offset = min(self.before, self.after) + abs(self.after - self.before) / 2
        return (self.instant + offset).replace(tzinfo=None).isoformat()

    @property
    def midway_first_instant(self) -> datetime:
        """For an overlap: the earlier of the two instants `midway` names, in the first pass."""
        return self.instant - abs(self.after - self.before) / 2


def next_transition(zone_name: str, *, forward: bool) -> Transition:
    """The zone's next future change that moves the clocks forward (a gap) or back (an overlap).

    Found by stepping through the coming two years a day at a time and bisecting to the second,
    so tests never hard-code a date that will one day be in the past.
    """
    zone = ZoneInfo(zone_name)

    def offset(moment: datetime) -> timedelta:
        value = moment.astimezone(zone).utcoffset()
        assert value is not None
        return value

    start = now().replace(microsecond=0) + timedelta(days=1)
    for day in range(2 * 366):
        low, high = start + timedelta(days=day), start + timedelta(days=day + 1)
        before, after = offset(low), offset(high)
        if before == after or (after > before) != forward:
            continue
        while high - low > timedelta(seconds=1):
            middle = low + (high - low) / 2
            if offset(middle) == before:
                low = middle
            else:
                high = middle
        # `high` is within a second after the change, and changes fall on whole minutes.
        return Transition(high.replace(second=0, microsecond=0), before, after)
    raise AssertionError(f"{zone_name} has no daylight-saving change in the next two years")


# --- errors -----------------------------------------------------------------------------------


async def refused(call: Awaitable[Any], code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    """The error a call fails with, after checking its status code."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    error = info.value
    assert error.code() == code, (error.code(), error.details())
    return error


def fields(error: grpc.aio.AioRpcError) -> list[str]:
    """The fields named by the error's BadRequest violations."""
    return [name for name, _ in violations_of(error)]


# --- page tokens --------------------------------------------------------------------------------
#
# What a ListPosts page token holds (see service_layer/posts/page_tokens.py), so that tests can
# forge one field at a time: version (1 byte) | filters fingerprint (8) | has instant (1) | instant
# in microseconds since the epoch (8, signed) | post id (16), as unpadded base64url.

PAGE_TOKEN = struct.Struct(">B8sBq16s")


@dataclass(frozen=True)
class PageToken:
    """The fields of a page token, decoded as the api encodes them."""

    version: int
    fingerprint: bytes
    timed: int
    micros: int
    post_id: bytes

    @classmethod
    def of(cls, token: str) -> PageToken:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        return cls(*PAGE_TOKEN.unpack(raw))

    def encode(self) -> str:
        raw = PAGE_TOKEN.pack(self.version, self.fingerprint, self.timed, self.micros, self.post_id)
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def forged(self, **changes: Any) -> str:
        """This token with some fields replaced, encoded."""
        return replace(self, **changes).encode()
