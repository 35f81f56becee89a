"""PostsService over real gRPC, on PostgreSQL and SQLite: CreatePost, GetPost and authentication.

Every refused create is checked to have written nothing: no post, target or outbox row.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from integration.api.helpers_posts import (
    NEXT_YEAR,
    Tenant,
    at,
    at_instant,
    fields,
    local,
    next_transition,
    now,
    other_tenant,
    refused,
    tenant_of,
    when,
)

from kairos.posts.v1 import posts_pb2, posts_pb2_grpc
from kairos_api.service_layer import keys
from support.api import Client, RunningApi, violations_of

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
def kairos(api: RunningApi, client: Client) -> Tenant:
    return tenant_of(api, client)


async def refused_create(
    kairos: Tenant, request: posts_pb2.CreatePostRequest
) -> list[tuple[str, str]]:
    """Send a create that must be refused; check nothing was written; return the violations."""
    before = await kairos.db_counts()
    error = await refused(kairos.posts.CreatePost(request, metadata=kairos.metadata), INVALID)
    assert await kairos.db_counts() == before
    violations = violations_of(error)
    assert violations, error.details()
    return violations


def targets(*account_ids: str) -> list[posts_pb2.TargetSpec]:
    return [posts_pb2.TargetSpec(account_id=a) for a in account_ids]


# --- CreatePost: success ----------------------------------------------------------------------


async def test_create_without_schedule_makes_a_draft(kairos: Tenant) -> None:
    account = await kairos.connect()
    post = await kairos.create(
        account, content="Draft text", campaign="launch", tags=["a", "b"], notes="internal"
    )

    assert post.status == posts_pb2.POST_STATUS_DRAFT
    assert post.revision == 1
    assert (post.content, post.campaign, list(post.tags), post.notes) == (
        "Draft text",
        "launch",
        ["a", "b"],
        "internal",
    )
    assert not post.HasField("scheduled_at")
    assert post.time_zone == ""
    assert not post.approval_required
    assert abs(when(post.created_at) - now()) < timedelta(seconds=30)
    assert len(post.targets) == 1
    target = post.targets[0]
    assert target.account_id == account
    assert target.platform == posts_pb2.PLATFORM_X
    assert target.status == posts_pb2.TARGET_STATUS_PENDING
    assert target.attempt_count == 0
    # A draft is never claimable.
    rows = await kairos.db_targets(post.id)
    assert [r.next_attempt_at for r in rows] == [None]
    assert await kairos.db_events(post.id) == {"created": 1}


async def test_create_with_an_instant_schedules_and_arms_the_targets(kairos: Tenant) -> None:
    x, mastodon = await kairos.connect(), await kairos.connect(posts_pb2.PLATFORM_MASTODON)
    instant = (now() + timedelta(hours=2)).replace(microsecond=123456)
    post = await kairos.create(x, mastodon, schedule=at_instant(instant))

    assert post.status == posts_pb2.POST_STATUS_SCHEDULED
    assert when(post.scheduled_at) == instant
    assert post.time_zone == ""
    assert post.revision == 1
    assert {t.platform for t in post.targets} == {
        posts_pb2.PLATFORM_X,
        posts_pb2.PLATFORM_MASTODON,
    }
    assert all(t.status == posts_pb2.TARGET_STATUS_PENDING for t in post.targets)
    rows = await kairos.db_targets(post.id)
    assert [r.next_attempt_at for r in rows] == [instant, instant]
    assert [r.due_at for r in rows] == [instant, instant]
    assert await kairos.db_events(post.id) == {"created": 1, "scheduled": 1}


LOCAL_TIMES = [
    (f"{NEXT_YEAR}-07-01T09:30:00", "Europe/Berlin", datetime(NEXT_YEAR, 7, 1, 7, 30, tzinfo=UTC)),
    (f"{NEXT_YEAR}-01-15T09:30", "Europe/Berlin", datetime(NEXT_YEAR, 1, 15, 8, 30, tzinfo=UTC)),
    (
        f"{NEXT_YEAR}-07-01 18:00:00",
        "America/New_York",
        datetime(NEXT_YEAR, 7, 1, 22, 0, tzinfo=UTC),
    ),
    (
        f"{NEXT_YEAR}-07-01T09:30:00.25",
        "Asia/Kolkata",
        datetime(NEXT_YEAR, 7, 1, 4, 0, 0, 250000, UTC),
    ),
]


async def test_create_with_a_local_time_stores_the_utc_instant_and_the_zone(
    kairos: Tenant,
) -> None:
    account = await kairos.connect()
    for date_time, zone, expected in LOCAL_TIMES:
        post = await kairos.create(account, schedule=local(date_time, zone))

        assert post.status == posts_pb2.POST_STATUS_SCHEDULED
        assert (when(post.scheduled_at), post.time_zone) == (expected, zone), date_time
        fetched = await kairos.get(post.id)
        assert (when(fetched.scheduled_at), fetched.time_zone) == (expected, zone), date_time


async def test_create_in_a_dst_gap_is_refused_on_the_local_date_time(kairos: Tenant) -> None:
    account = await kairos.connect()
    violations = await refused_create(
        kairos,
        posts_pb2.CreatePostRequest(
            content="hi",
            targets=targets(account),
            schedule=local(next_transition("Europe/Berlin", forward=True).midway, "Europe/Berlin"),
        ),
    )
    assert [name for name, _ in violations] == ["schedule.local.date_time"]
    assert "does not exist" in violations[0][1]


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York"])
async def test_create_at_an_ambiguous_wall_time_takes_the_earlier_instant(
    kairos: Tenant, zone: str
) -> None:
    overlap = next_transition(zone, forward=False)
    post = await kairos.create(schedule=local(overlap.midway, zone))

    assert when(post.scheduled_at) == overlap.midway_first_instant
    assert post.time_zone == zone


MALFORMED_SCHEDULES = [
    (local(f"{NEXT_YEAR}-07-01T09:30", "Mars/Olympus"), "schedule.local.time_zone"),
    (local(f"{NEXT_YEAR}-07-01T09:30", ""), "schedule.local.time_zone"),
    (local("tomorrow", "Europe/Berlin"), "schedule.local.date_time"),
    (local(f"{NEXT_YEAR}-07-01T09:30+02:00", "Europe/Berlin"), "schedule.local.date_time"),
    (local(f"{NEXT_YEAR}-02-30T09:30", "Europe/Berlin"), "schedule.local.date_time"),
    (posts_pb2.Schedule(), "schedule"),
    (posts_pb2.Schedule(at=Timestamp(seconds=253402300800)), "schedule.at"),  # year 10000
]


async def test_create_with_a_malformed_schedule_is_refused(kairos: Tenant) -> None:
    account = await kairos.connect()
    for schedule, field in MALFORMED_SCHEDULES:
        violations = await refused_create(
            kairos,
            posts_pb2.CreatePostRequest(content="hi", targets=targets(account), schedule=schedule),
        )
        assert [name for name, _ in violations] == [field], schedule


async def test_create_in_the_past_beyond_the_tolerance_is_refused(kairos: Tenant) -> None:
    account = await kairos.connect()
    violations = await refused_create(
        kairos,
        posts_pb2.CreatePostRequest(content="hi", targets=targets(account), schedule=at(-600)),
    )
    assert [name for name, _ in violations] == ["schedule"]
    assert "in the past" in violations[0][1]


async def test_create_slightly_in_the_past_is_accepted_within_the_tolerance(
    kairos: Tenant,
) -> None:
    post = await kairos.create(schedule=at(-5))

    assert post.status == posts_pb2.POST_STATUS_SCHEDULED
    assert when(post.scheduled_at) < now()


async def test_create_requiring_approval_with_a_schedule_waits_for_it(kairos: Tenant) -> None:
    post = await kairos.create(schedule=at(3600), approval_required=True)

    assert post.status == posts_pb2.POST_STATUS_PENDING_APPROVAL
    assert post.approval_required
    assert not post.HasField("approved_at")
    # Not claimable before it is approved.
    rows = await kairos.db_targets(post.id)
    assert [r.next_attempt_at for r in rows] == [None]
    assert [r.status for r in rows] == ["pending"]


async def test_create_requiring_approval_without_a_schedule_is_a_draft(kairos: Tenant) -> None:
    post = await kairos.create(approval_required=True)

    assert post.status == posts_pb2.POST_STATUS_DRAFT
    assert post.approval_required


async def test_create_keeps_overrides_settings_media_and_stale_after(kairos: Tenant) -> None:
    x, mastodon = await kairos.connect(), await kairos.connect(posts_pb2.PLATFORM_MASTODON)
    response = await kairos.posts.CreatePost(
        posts_pb2.CreatePostRequest(
            content="Main text",
            media_urls=["https://cdn.example/a.png"],
            targets=[
                posts_pb2.TargetSpec(
                    account_id=x, content_override="Short", settings={"reply_settings": "all"}
                ),
                posts_pb2.TargetSpec(account_id=mastodon),
            ],
            stale_after=Duration(seconds=900),
        ),
        metadata=kairos.metadata,
    )
    post = response.post
    by_account = {t.account_id: t for t in post.targets}

    assert list(post.media_urls) == ["https://cdn.example/a.png"]
    assert post.stale_after.ToTimedelta() == timedelta(minutes=15)
    assert by_account[x].HasField("content_override")
    assert by_account[x].content_override == "Short"
    assert dict(by_account[x].settings) == {"reply_settings": "all"}
    assert not by_account[mastodon].HasField("content_override")
    assert dict(by_account[mastodon].settings) == {}


def first_request(account_id: str, request_id: str) -> posts_pb2.CreatePostRequest:
    """A create that sets most fields, so that a repeat has much to repeat exactly."""
    return posts_pb2.CreatePostRequest(
        content="first",
        targets=[posts_pb2.TargetSpec(account_id=account_id, settings={"reply_settings": "all"})],
        schedule=at(3600),
        tags=["launch", "q3"],
        notes="draft by ops",
        stale_after=Duration(seconds=600),
        request_id=request_id,
    )


async def test_create_with_a_repeated_request_id_returns_the_first_post(kairos: Tenant) -> None:
    account = await kairos.connect()
    request = first_request(account, "req-1")
    first = (await kairos.posts.CreatePost(request, metadata=kairos.metadata)).post
    again = (await kairos.posts.CreatePost(request, metadata=kairos.metadata)).post
    other = await kairos.create(account, content="other", request_id="req-2")

    assert again == first
    assert other.id != first.id
    assert sorted(await kairos.list_ids()) == sorted([first.id, other.id])
    assert await kairos.db_events(first.id) == {"created": 1, "scheduled": 1}


def _other_content(request: posts_pb2.CreatePostRequest, spare: str) -> None:
    request.content = "second"


def _other_instant(request: posts_pb2.CreatePostRequest, spare: str) -> None:
    request.schedule.at.seconds += 60


def _local_time(request: posts_pb2.CreatePostRequest, spare: str) -> None:
    request.schedule.CopyFrom(local(f"{NEXT_YEAR}-03-01T09:00:00", "Europe/Paris"))


def _no_schedule(request: posts_pb2.CreatePostRequest, spare: str) -> None:
    request.ClearField("schedule")


def _other_account(request: posts_pb2.CreatePostRequest, spare: str) -> None:
    request.targets[0].account_id = spare


def _one_more_target(request: posts_pb2.CreatePostRequest, spare: str) -> None:
    request.targets.append(posts_pb2.TargetSpec(account_id=spare))


def _other_settings(request: posts_pb2.CreatePostRequest, spare: str) -> None:
    request.targets[0].settings["reply_settings"] = "following"


def _empty_override(request: posts_pb2.CreatePostRequest, spare: str) -> None:
    request.targets[0].content_override = ""  # set but empty is not the same as unset


def _other_tags(request: posts_pb2.CreatePostRequest, spare: str) -> None:
    request.tags.append("extra")


def _other_stale_after(request: posts_pb2.CreatePostRequest, spare: str) -> None:
    request.stale_after.nanos = 1_000


def _approval(request: posts_pb2.CreatePostRequest, spare: str) -> None:
    request.approval_required = True


def _a_delay(request: posts_pb2.CreatePostRequest, spare: str) -> None:
    request.schedule.CopyFrom(posts_pb2.Schedule(after=Duration(seconds=3600)))


@pytest.mark.parametrize(
    "change",
    [
        _other_content,
        _other_instant,
        _local_time,
        _no_schedule,
        _other_account,
        _one_more_target,
        _other_settings,
        _empty_override,
        _other_tags,
        _other_stale_after,
        _approval,
        _a_delay,
    ],
)
async def test_a_request_id_reused_for_a_different_request_is_refused(
    kairos: Tenant, change: Callable[[posts_pb2.CreatePostRequest, str], None]
) -> None:
    account, spare = await kairos.connect(), await kairos.connect()
    request = first_request(account, "reused")
    first = (await kairos.posts.CreatePost(request, metadata=kairos.metadata)).post
    different = posts_pb2.CreatePostRequest()
    different.CopyFrom(request)
    change(different, spare)
    assert different != request

    violations = await refused_create(kairos, different)

    assert [name for name, _ in violations] == ["request_id"]
    assert "already used for a different request" in violations[0][1]
    assert await kairos.get(first.id) == first
    assert await kairos.list_ids() == [first.id]
    # The first request, repeated, is still answered with its post.
    again = await kairos.posts.CreatePost(request, metadata=kairos.metadata)
    assert again.post == first


def in_(seconds: int) -> posts_pb2.Schedule:
    return posts_pb2.Schedule(after=Duration(seconds=seconds))


async def test_a_delay_is_resolved_by_the_api_clock(kairos: Tenant) -> None:
    account = await kairos.connect()
    before = now()
    post = await kairos.create(account, schedule=in_(7200))
    after = now()

    assert post.status == posts_pb2.POST_STATUS_SCHEDULED
    assert before + timedelta(hours=2) <= when(post.scheduled_at) <= after + timedelta(hours=2)
    assert post.time_zone == ""
    moved = await kairos.schedule(post.id, in_(600))
    assert now() + timedelta(minutes=9) < when(moved.scheduled_at) <= now() + timedelta(minutes=10)


async def test_a_repeated_create_with_a_delay_returns_the_first_post(kairos: Tenant) -> None:
    account = await kairos.connect()
    request = posts_pb2.CreatePostRequest(
        content="in two hours", targets=targets(account), schedule=in_(7200), request_id="rel"
    )
    first = (await kairos.posts.CreatePost(request, metadata=kairos.metadata)).post
    again = (await kairos.posts.CreatePost(request, metadata=kairos.metadata)).post
    other_delay = posts_pb2.CreatePostRequest()
    other_delay.CopyFrom(request)
    other_delay.schedule.after.seconds = 10800

    violations = await refused_create(kairos, other_delay)

    assert again == first  # the same post, at the instant the first create resolved
    assert [name for name, _ in violations] == ["request_id"]
    assert await kairos.list_ids() == [first.id]


@pytest.mark.parametrize(
    ("delay", "field"),
    [
        (Duration(seconds=-60), "schedule.after"),
        (Duration(seconds=3651 * 86400), "schedule.after"),
        (Duration(seconds=9000 * 365 * 86400), "schedule.after"),  # past year 9999 if added
        (Duration(seconds=1, nanos=-5), "schedule.after"),
    ],
)
async def test_a_bad_delay_is_refused(kairos: Tenant, delay: Duration, field: str) -> None:
    account = await kairos.connect()
    request = posts_pb2.CreatePostRequest(
        content="never", targets=targets(account), schedule=posts_pb2.Schedule(after=delay)
    )

    violations = await refused_create(kairos, request)

    assert [name for name, _ in violations] == [field]


async def test_a_post_from_before_request_hashes_honours_any_repeat(kairos: Tenant) -> None:
    account = await kairos.connect()
    first = await kairos.create(account, content="first", request_id="old")
    await kairos.db_set_post(first.id, request_hash=None)

    again = await kairos.create(account, content="not the same", request_id="old")

    assert (again.id, again.content, again.revision) == (first.id, "first", 1)
    assert await kairos.list_ids() == [first.id]


async def test_concurrent_creates_with_one_request_id_make_one_post(kairos: Tenant) -> None:
    """Three different requests under one request_id, each sent three times at once: one of
    them makes the post and all its copies get it; every copy of the other two is refused."""
    account = await kairos.connect()
    bodies = ["try 0", "try 1", "try 2"]
    results = await asyncio.gather(
        *(
            kairos.posts.CreatePost(
                posts_pb2.CreatePostRequest(
                    content=body, targets=targets(account), request_id="burst"
                ),
                metadata=kairos.metadata,
            )
            for _ in range(3)
            for body in bodies
        ),
        return_exceptions=True,
    )

    answered: dict[str, set[str]] = {}
    for index, result in enumerate(results):
        body = bodies[index % 3]
        if isinstance(result, grpc.aio.AioRpcError):
            assert result.code() == INVALID, result.details()
            assert [name for name, _ in violations_of(result)] == ["request_id"]
            answered.setdefault(body, set()).add("refused")
        else:
            assert isinstance(result, posts_pb2.CreatePostResponse), result
            assert result.post.content == body
            answered.setdefault(body, set()).add(result.post.id)
    winners = [body for body, outcomes in answered.items() if outcomes != {"refused"}]
    assert len(winners) == 1, answered
    assert all(answered[body] == {"refused"} for body in bodies if body not in winners)
    (post_id,) = answered[winners[0]]  # every copy of the winner got the same post
    assert await kairos.list_ids() == [post_id]
    assert (await kairos.db_counts())[:2] == (1, 1)
    assert await kairos.db_events() == {"created": 1}


async def test_the_same_request_id_in_two_tenants_makes_two_posts(
    api: RunningApi, kairos: Tenant
) -> None:
    mine = await kairos.create(request_id="shared")
    async with other_tenant(api) as other:
        theirs = await other.create(request_id="shared")

    assert mine.id != theirs.id


# --- CreatePost: refusals ---------------------------------------------------------------------


async def test_create_without_targets_is_refused(kairos: Tenant) -> None:
    violations = await refused_create(kairos, posts_pb2.CreatePostRequest(content="hi"))
    assert [name for name, _ in violations] == ["targets"]


async def test_create_with_a_malformed_account_id_is_refused(kairos: Tenant) -> None:
    for account_id in ("", "not-a-uuid"):
        violations = await refused_create(
            kairos, posts_pb2.CreatePostRequest(content="hi", targets=targets(account_id))
        )
        assert [name for name, _ in violations] == ["targets[0].account_id"], account_id


async def test_create_on_an_unknown_account_is_refused(kairos: Tenant) -> None:
    real = await kairos.connect()
    violations = await refused_create(
        kairos,
        posts_pb2.CreatePostRequest(
            content="hi", targets=targets(real, "0190a6d2-0000-7000-8000-000000000000")
        ),
    )
    assert [name for name, _ in violations] == ["targets[1].account_id"]
    assert "not found" in violations[0][1]


async def test_create_on_another_tenants_account_is_refused_and_writes_nothing(
    api: RunningApi, kairos: Tenant
) -> None:
    async with other_tenant(api) as other:
        theirs = await other.connect()
        their_before = await other.db_counts()
        violations = await refused_create(
            kairos, posts_pb2.CreatePostRequest(content="hi", targets=targets(theirs))
        )
        assert await other.db_counts() == their_before

    assert [name for name, _ in violations] == ["targets[0].account_id"]
    assert "not found" in violations[0][1]


async def test_create_on_a_disconnected_account_is_refused(kairos: Tenant) -> None:
    account = await kairos.connect()
    await kairos.accounts.DisconnectAccount(
        posts_pb2.DisconnectAccountRequest(account_id=account), metadata=kairos.metadata
    )
    violations = await refused_create(
        kairos, posts_pb2.CreatePostRequest(content="hi", targets=targets(account))
    )
    assert [name for name, _ in violations] == ["targets[0].account_id"]
    assert "disconnected" in violations[0][1]


async def test_create_targeting_the_same_account_twice_is_refused(kairos: Tenant) -> None:
    account = await kairos.connect()
    violations = await refused_create(
        kairos, posts_pb2.CreatePostRequest(content="hi", targets=targets(account, account))
    )
    assert [name for name, _ in violations] == ["targets[1].account_id"]


async def test_content_too_long_for_x_is_refused_but_fine_for_mastodon(kairos: Tenant) -> None:
    x, mastodon = await kairos.connect(), await kairos.connect(posts_pb2.PLATFORM_MASTODON)
    text = "a" * 281

    violations = await refused_create(
        kairos, posts_pb2.CreatePostRequest(content=text, targets=targets(x, mastodon))
    )
    assert [name for name, _ in violations] == ["content"]
    assert "X counts 281 of 280" in violations[0][1]

    assert (await kairos.create(mastodon, content=text)).content == text
    assert (await kairos.create(x, content="a" * 280)).content == "a" * 280


async def test_one_broken_rule_on_two_x_accounts_is_reported_once(kairos: Tenant) -> None:
    first, second = await kairos.connect(), await kairos.connect()
    violations = await refused_create(
        kairos, posts_pb2.CreatePostRequest(content="a" * 300, targets=targets(first, second))
    )
    assert [name for name, _ in violations] == ["content"]


async def test_too_many_media_for_x_are_refused(kairos: Tenant) -> None:
    x, mastodon = await kairos.connect(), await kairos.connect(posts_pb2.PLATFORM_MASTODON)
    media = [f"https://cdn.example/{i}.png" for i in range(5)]
    violations = await refused_create(
        kairos,
        posts_pb2.CreatePostRequest(content="hi", targets=targets(x, mastodon), media_urls=media),
    )
    assert {name for name, _ in violations} == {"media_urls"}
    assert any("X accepts at most 4" in text for _, text in violations)


async def test_bad_target_settings_are_refused(kairos: Tenant) -> None:
    account = await kairos.connect()
    cases: list[dict[str, str]] = [
        {"": "v"},
        {"k" * 65: "v"},
        {"k": "v" * 1001},
        {f"k{i}": "v" for i in range(21)},
    ]
    for settings in cases:
        violations = await refused_create(
            kairos,
            posts_pb2.CreatePostRequest(
                content="hi", targets=[posts_pb2.TargetSpec(account_id=account, settings=settings)]
            ),
        )
        assert {name for name, _ in violations} == {"targets[0].settings"}, settings


async def test_pinterest_settings_are_checked_by_their_catalogue_rules(kairos: Tenant) -> None:
    pinterest = await kairos.connect(posts_pb2.PLATFORM_PINTEREST)
    image = ["https://cdn.example/pin.jpg"]
    violations = await refused_create(
        kairos,
        posts_pb2.CreatePostRequest(
            content="A pin",
            media_urls=image,
            targets=[
                posts_pb2.TargetSpec(
                    account_id=pinterest,
                    settings={
                        "title": "t" * 101,
                        "link": "/recipes/bread",
                        "board_id": "recipes",
                        "alt_text": "a loaf",
                    },
                )
            ],
        ),
    )
    assert sorted(violations) == [
        (
            "targets[0].settings.board_id",
            "must be digits only: the board to save this pin to instead of the account's",
        ),
        (
            "targets[0].settings.link",
            "must be an absolute http or https URL: the page the pin links to",
        ),
        (
            "targets[0].settings.title",
            "Pinterest takes at most 100 characters for the pin's title; 101 given",
        ),
    ]

    settings = {"title": "t" * 100, "link": "https://example.com/bread", "board_id": "42"}
    response = await kairos.posts.CreatePost(
        posts_pb2.CreatePostRequest(
            content="A pin",
            media_urls=image,
            targets=[posts_pb2.TargetSpec(account_id=pinterest, settings=settings)],
        ),
        metadata=kairos.metadata,
    )
    assert dict(response.post.targets[0].settings) == settings


async def test_tiktok_settings_are_checked_by_their_catalogue_rules(kairos: Tenant) -> None:
    tiktok = await kairos.connect(posts_pb2.PLATFORM_TIKTOK)
    photos = ["https://cdn.example/one.jpg", "https://cdn.example/two.jpg"]

    def photo_post(settings: dict[str, str]) -> posts_pb2.CreatePostRequest:
        return posts_pb2.CreatePostRequest(
            content="A photo post",
            media_urls=photos,
            targets=[posts_pb2.TargetSpec(account_id=tiktok, settings=settings)],
        )

    violations = await refused_create(
        kairos, photo_post({"title": "t" * 91, "disable_comment": "yes", "photo_cover_index": "2"})
    )
    assert sorted(violations) == [
        (
            "targets[0].settings.disable_comment",
            "must be one of true, false: whether others may not comment",
        ),
        (
            "targets[0].settings.photo_cover_index",
            "2 is past the last of the post's 2 media items (counted from 0): "
            "the photo shown as the cover, counted from 0",
        ),
        (
            "targets[0].settings.privacy_level",
            "TikTok needs who may see the post: one of PUBLIC_TO_EVERYONE, "
            "MUTUAL_FOLLOW_FRIENDS, FOLLOWER_OF_CREATOR, SELF_ONLY",
        ),
        (
            "targets[0].settings.title",
            "TikTok takes at most 90 UTF-16 code units for the photo post's title; 91 given",
        ),
    ]

    settings = {
        "privacy_level": "SELF_ONLY",
        "title": "t" * 90,
        "disable_comment": "true",
        "auto_add_music": "false",
        "photo_cover_index": "1",
    }
    response = await kairos.posts.CreatePost(photo_post(settings), metadata=kairos.metadata)
    assert dict(response.post.targets[0].settings) == settings


async def test_content_override_too_long_is_named_by_its_target(kairos: Tenant) -> None:
    x, mastodon = await kairos.connect(), await kairos.connect(posts_pb2.PLATFORM_MASTODON)
    violations = await refused_create(
        kairos,
        posts_pb2.CreatePostRequest(
            content="fits everywhere",
            targets=[
                posts_pb2.TargetSpec(account_id=x, content_override="b" * 300),
                posts_pb2.TargetSpec(account_id=mastodon),
            ],
        ),
    )
    assert [name for name, _ in violations] == ["targets[0].content_override"]


async def test_a_short_override_rescues_a_long_text_on_x(kairos: Tenant) -> None:
    x, mastodon = await kairos.connect(), await kairos.connect(posts_pb2.PLATFORM_MASTODON)
    response = await kairos.posts.CreatePost(
        posts_pb2.CreatePostRequest(
            content="c" * 400,
            targets=[
                posts_pb2.TargetSpec(account_id=x, content_override="short for X"),
                posts_pb2.TargetSpec(account_id=mastodon),
            ],
        ),
        metadata=kairos.metadata,
    )
    assert response.post.status == posts_pb2.POST_STATUS_DRAFT


async def test_instagram_without_media_is_refused(kairos: Tenant) -> None:
    instagram = await kairos.connect(posts_pb2.PLATFORM_INSTAGRAM)
    violations = await refused_create(
        kairos, posts_pb2.CreatePostRequest(content="caption", targets=targets(instagram))
    )
    assert [name for name, _ in violations] == ["media_urls"]
    assert "Instagram" in violations[0][1]

    post = await kairos.create(
        instagram, content="caption", media_urls=["https://cdn.example/photo.jpg"]
    )
    assert post.targets[0].platform == posts_pb2.PLATFORM_INSTAGRAM


async def test_a_media_url_that_is_not_absolute_https_is_refused(kairos: Tenant) -> None:
    account = await kairos.connect()
    for url in ("http://cdn.example/a.png", "/uploads/a.png", "cdn.example/a.png", ""):
        violations = await refused_create(
            kairos,
            posts_pb2.CreatePostRequest(
                content="hi",
                targets=targets(account),
                media_urls=["https://cdn.example/ok.png", url],
            ),
        )
        assert {name for name, _ in violations} == {"media_urls[1]"}, url


async def test_too_many_tags_are_refused(kairos: Tenant) -> None:
    account = await kairos.connect()
    violations = await refused_create(
        kairos,
        posts_pb2.CreatePostRequest(
            content="hi", targets=targets(account), tags=[f"t{i}" for i in range(31)]
        ),
    )
    assert [name for name, _ in violations] == ["tags"]

    post = await kairos.create(account, tags=[f"t{i}" for i in range(30)])
    assert len(post.tags) == 30


async def test_blank_and_too_long_tags_are_named_by_index(kairos: Tenant) -> None:
    account = await kairos.connect()
    violations = await refused_create(
        kairos,
        posts_pb2.CreatePostRequest(
            content="hi", targets=targets(account), tags=["ok", "  ", "x" * 101]
        ),
    )
    assert [name for name, _ in violations] == ["tags[1]", "tags[2]"]


async def test_duplicate_tags_are_kept_once(kairos: Tenant) -> None:
    post = await kairos.create(tags=["launch", " launch ", "news"])
    assert list(post.tags) == ["launch", "news"]


async def test_a_bad_stale_after_is_refused(kairos: Tenant) -> None:
    account = await kairos.connect()
    for seconds in (0, -60, 8 * 86400, 315_576_000_000):  # zero, negative, > a week, > 10,000 y
        violations = await refused_create(
            kairos,
            posts_pb2.CreatePostRequest(
                content="hi", targets=targets(account), stale_after=Duration(seconds=seconds)
            ),
        )
        assert [name for name, _ in violations] == ["stale_after"], seconds
    week = await kairos.create(account, stale_after=Duration(seconds=7 * 86400))
    assert week.stale_after.ToTimedelta() == timedelta(days=7)


#: stale_after Durations that break protobuf's rules, which converting them to a timedelta hid
#: (60 s with nanos -1 read as 60 s, with nanos 10^9 as 61 s), and their violation's wording.
BROKEN_DURATIONS = {
    "nanos -1 on positive seconds": (Duration(seconds=60, nanos=-1), "same sign"),
    "nanos 10^9": (Duration(seconds=60, nanos=10**9), "nanos -999,999,999 to 999,999,999"),
    "nanos -10^9": (Duration(seconds=60, nanos=-(10**9)), "nanos -999,999,999 to 999,999,999"),
    "nanos 1 on negative seconds": (Duration(seconds=-60, nanos=1), "same sign"),
    "seconds beyond 10,000 years": (Duration(seconds=315_576_000_001), "10,000 years"),
}


@pytest.mark.parametrize("case", list(BROKEN_DURATIONS.values()), ids=list(BROKEN_DURATIONS))
async def test_a_stale_after_breaking_the_protobuf_rules_is_refused(
    kairos: Tenant, case: tuple[Duration, str]
) -> None:
    duration, wording = case
    account = await kairos.connect()
    violations = await refused_create(
        kairos,
        posts_pb2.CreatePostRequest(content="hi", targets=targets(account), stale_after=duration),
    )
    assert len(violations) == 1
    assert violations[0][0] == "stale_after"
    assert wording in violations[0][1]


async def test_a_sub_second_stale_after_is_not_stored_as_zero(kairos: Tenant) -> None:
    account = await kairos.connect()
    request = posts_pb2.CreatePostRequest(
        content="hi", targets=targets(account), stale_after=Duration(nanos=500_000_000)
    )
    outcome: posts_pb2.CreatePostResponse | grpc.aio.AioRpcError
    try:
        outcome = await kairos.posts.CreatePost(request, metadata=kairos.metadata)
    except grpc.aio.AioRpcError as error:
        outcome = error
    if isinstance(outcome, grpc.aio.AioRpcError):  # refusing it would be as good as keeping it
        assert (outcome.code(), fields(outcome)) == (INVALID, ["stale_after"])
    else:
        assert outcome.post.stale_after.ToTimedelta() > timedelta(0)
        assert (await kairos.db_post(outcome.post.id)).stale_after_seconds


async def test_an_unknown_parent_post_is_refused(kairos: Tenant) -> None:
    account = await kairos.connect()
    for parent in ("0190a6d2-0000-7000-8000-000000000000", "nope"):
        violations = await refused_create(
            kairos,
            posts_pb2.CreatePostRequest(
                content="hi", targets=targets(account), parent_post_id=parent
            ),
        )
        assert [name for name, _ in violations] == ["parent_post_id"], parent


async def test_a_parent_post_of_another_tenant_or_deleted_is_refused(
    api: RunningApi, kairos: Tenant
) -> None:
    account = await kairos.connect()
    async with other_tenant(api) as other:
        theirs = await other.create()
    deleted = await kairos.create(account)
    await kairos.delete(deleted.id)

    for parent in (theirs.id, deleted.id):
        violations = await refused_create(
            kairos,
            posts_pb2.CreatePostRequest(
                content="hi", targets=targets(account), parent_post_id=parent
            ),
        )
        assert [name for name, _ in violations] == ["parent_post_id"]


async def test_a_reply_keeps_its_parent(kairos: Tenant) -> None:
    account = await kairos.connect()
    parent = await kairos.create(account)
    reply = await kairos.create(account, content="reply", parent_post_id=parent.id)

    assert reply.parent_post_id == parent.id
    assert (await kairos.get(reply.id)).parent_post_id == parent.id


async def test_every_violation_is_reported_at_once(kairos: Tenant) -> None:
    account = await kairos.connect()
    violations = await refused_create(
        kairos,
        posts_pb2.CreatePostRequest(
            content="",
            targets=targets(account, "bad"),
            tags=[""],
            stale_after=Duration(seconds=0),
            schedule=at(-3600),
            campaign="c" * 201,
        ),
    )
    assert {name for name, _ in violations} == {
        "content",
        "targets[1].account_id",
        "tags[0]",
        "stale_after",
        "schedule",
        "campaign",
    }


# --- GetPost ----------------------------------------------------------------------------------


async def test_get_returns_the_post_with_targets_and_no_attempts_yet(kairos: Tenant) -> None:
    x, telegram = await kairos.connect(), await kairos.connect(posts_pb2.PLATFORM_TELEGRAM)
    created = await kairos.create(x, telegram, schedule=at(600), campaign="c", tags=["t"])
    fetched = await kairos.get(created.id)

    assert fetched.id == created.id
    assert fetched.status == posts_pb2.POST_STATUS_SCHEDULED
    assert fetched.scheduled_at == created.scheduled_at
    assert (fetched.campaign, list(fetched.tags), fetched.revision) == ("c", ["t"], 1)
    assert sorted(t.id for t in fetched.targets) == sorted(t.id for t in created.targets)
    assert {t.platform for t in fetched.targets} == {
        posts_pb2.PLATFORM_X,
        posts_pb2.PLATFORM_TELEGRAM,
    }
    assert all(len(t.attempts) == 0 for t in fetched.targets)
    assert all(t.attempt_count == 0 for t in fetched.targets)


async def test_get_with_a_malformed_id_names_post_id(kairos: Tenant) -> None:
    for post_id in ("", "not-an-id", "1234"):
        error = await refused(kairos.get(post_id), INVALID)
        assert fields(error) == ["post_id"], post_id


async def test_get_an_unknown_post_is_not_found(kairos: Tenant) -> None:
    await refused(kairos.get("0190a6d2-0000-7000-8000-000000000000"), grpc.StatusCode.NOT_FOUND)


async def test_get_another_tenants_post_is_not_found(api: RunningApi, kairos: Tenant) -> None:
    async with other_tenant(api) as other:
        theirs = await other.create()
        assert (await other.get(theirs.id)).id == theirs.id
    await refused(kairos.get(theirs.id), grpc.StatusCode.NOT_FOUND)


async def test_get_a_deleted_post_is_not_found(kairos: Tenant) -> None:
    post = await kairos.create()
    await kairos.delete(post.id)
    await refused(kairos.get(post.id), grpc.StatusCode.NOT_FOUND)


# --- authentication ---------------------------------------------------------------------------


def _calls(stub: posts_pb2_grpc.PostsServiceAsyncStub) -> list[Any]:
    some_id = "0190a6d2-0000-7000-8000-000000000000"
    return [
        lambda md: stub.CreatePost(posts_pb2.CreatePostRequest(content="x"), metadata=md),
        lambda md: stub.GetPost(posts_pb2.GetPostRequest(post_id=some_id), metadata=md),
        lambda md: stub.ListPosts(posts_pb2.ListPostsRequest(), metadata=md),
        lambda md: stub.DeletePost(posts_pb2.DeletePostRequest(post_id=some_id), metadata=md),
        lambda md: stub.GetStats(posts_pb2.GetStatsRequest(), metadata=md),
    ]


BAD_METADATA: list[tuple[tuple[str, str], ...]] = [
    (),
    (("authorization", "Bearer kairos_not-a-real-key"),),
    (("authorization", "Basic dXNlcjpwYXNz"),),
    (("authorization", "Bearer "),),
]


async def test_calls_without_a_valid_key_are_unauthenticated(kairos: Tenant) -> None:
    before = await kairos.db_counts()
    for metadata in BAD_METADATA:
        for call in _calls(kairos.posts):
            await refused(call(metadata), grpc.StatusCode.UNAUTHENTICATED)
    assert await kairos.db_counts() == before


async def test_a_revoked_key_is_unauthenticated(api: RunningApi, kairos: Tenant) -> None:
    tenant, key = await api.new_key(kairos.tenant)
    metadata = (("authorization", f"Bearer {key}"),)
    await kairos.posts.ListPosts(posts_pb2.ListPostsRequest(), metadata=metadata)
    await keys.revoke_key(api.service.app.uow(), key)
    api.service.app.keys.forget()

    await refused(
        kairos.posts.ListPosts(posts_pb2.ListPostsRequest(), metadata=metadata),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    assert tenant == kairos.tenant
