"""ValidatePost over real gRPC, on PostgreSQL and SQLite: each target's text counted as its
platform counts it, and the violations CreatePost would refuse the same request with, answered
OK and never written.

Every expected count here is worked out by hand from the platforms' rules (PLATFORMS.md), not
asked of the api's counter, and every "same as CreatePost" is checked by sending CreatePost the
same request.
"""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from integration.api.helpers_posts import (
    Tenant,
    at,
    local,
    next_transition,
    other_tenant,
    refused,
    tenant_of,
)

from kairos.posts.v1 import posts_pb2
from support.api import Client, RunningApi, violations_of

P = posts_pb2

#: A family (three people joined by zero-width joiners: one grapheme), a party popper, words
#: and a 38-character URL. X weighs an emoji 2 and a URL 23: 2 + 2 + 5 + 23 + 1 = 33. Mastodon
#: counts graphemes with a URL as 23: 1 + 1 + 5 + 23 + 1 = 31. Bluesky counts graphemes, the
#: URL in full: 1 + 1 + 5 + 38 + 1 = 46.
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
MIXED = f"{FAMILY}\U0001f389 see https://example.com/some/long/path?q=1 "
MIXED_LENGTHS = {P.PLATFORM_X: 33, P.PLATFORM_MASTODON: 31, P.PLATFORM_BLUESKY: 46}
LIMITS = {
    P.PLATFORM_X: (280, "weighted characters"),
    P.PLATFORM_MASTODON: (500, "characters"),
    P.PLATFORM_BLUESKY: (300, "graphemes"),
}


@pytest.fixture
def kairos(api: RunningApi, client: Client) -> Tenant:
    return tenant_of(api, client)


def request(
    content: str, *targets: posts_pb2.TargetSpec, **fields: object
) -> posts_pb2.CreatePostRequest:
    return posts_pb2.CreatePostRequest(content=content, targets=targets, **fields)  # type: ignore[arg-type]


def spec(account_id: str, override: str | None = None) -> posts_pb2.TargetSpec:
    target = posts_pb2.TargetSpec(account_id=account_id)
    if override is not None:
        target.content_override = override
    return target


async def validate(
    kairos: Tenant, post: posts_pb2.CreatePostRequest
) -> posts_pb2.ValidatePostResponse:
    """ValidatePost, checking that it wrote nothing."""
    before = await kairos.db_counts()
    answer = await kairos.posts.ValidatePost(
        posts_pb2.ValidatePostRequest(post=post), metadata=kairos.metadata
    )
    assert await kairos.db_counts() == before
    assert len(answer.targets) == len(post.targets)
    return answer


def pairs(answer: posts_pb2.ValidatePostResponse) -> list[tuple[str, str]]:
    return [(v.field, v.description) for v in answer.violations]


async def create_refusal(
    kairos: Tenant, post: posts_pb2.CreatePostRequest
) -> list[tuple[str, str]]:
    """CreatePost's violations for a request it must refuse, checking that it wrote nothing."""
    before = await kairos.db_counts()
    error = await refused(
        kairos.posts.CreatePost(post, metadata=kairos.metadata), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert await kairos.db_counts() == before
    return violations_of(error)


async def test_each_target_is_counted_as_its_platform_counts(kairos: Tenant) -> None:
    accounts = [await kairos.connect(platform) for platform in MIXED_LENGTHS]
    answer = await validate(kairos, request(MIXED, *(spec(a) for a in accounts)))

    assert pairs(answer) == []
    assert [(t.account_id, t.platform, t.length, t.max_length, t.unit) for t in answer.targets] == [
        (account, platform, MIXED_LENGTHS[platform], *LIMITS[platform])
        for account, platform in zip(accounts, MIXED_LENGTHS, strict=True)
    ]
    assert [(t.media_count, t.max_media) for t in answer.targets] == [(0, 4)] * 3


@pytest.mark.parametrize("platform", list(LIMITS), ids=["x", "mastodon", "bluesky"])
async def test_at_the_limit_passes_and_one_more_fails_as_create_fails(
    kairos: Tenant, platform: posts_pb2.Platform.ValueType
) -> None:
    account = await kairos.connect(platform)
    limit, unit = LIMITS[platform]
    longest = MIXED + "a" * (limit - MIXED_LENGTHS[platform])

    answer = await validate(kairos, request(longest, spec(account)))
    assert (answer.targets[0].length, answer.targets[0].max_length) == (limit, limit)
    assert pairs(answer) == []
    before = await kairos.db_counts()
    await kairos.posts.CreatePost(request(longest, spec(account)), metadata=kairos.metadata)
    assert (await kairos.db_counts())[0] == before[0] + 1

    too_long = request(longest + "a", spec(account))
    answer = await validate(kairos, too_long)
    assert answer.targets[0].length == limit + 1
    refusal = await create_refusal(kairos, too_long)
    assert pairs(answer) == refusal
    assert [field for field, _ in refusal] == ["content"]
    assert f"counts {limit + 1:,} of {limit:,} {unit}" in refusal[0][1]


async def test_an_override_is_counted_on_its_target_only(kairos: Tenant) -> None:
    x, mastodon = await kairos.connect(), await kairos.connect(P.PLATFORM_MASTODON)
    post = request("short", spec(x), spec(mastodon, "b" * 501))

    answer = await validate(kairos, post)

    assert [(t.platform, t.length) for t in answer.targets] == [
        (P.PLATFORM_X, 5),
        (P.PLATFORM_MASTODON, 501),
    ]
    refusal = await create_refusal(kairos, post)
    assert pairs(answer) == refusal
    assert [field for field, _ in refusal] == ["targets[1].content_override"]


async def test_media_counts_and_the_caption_limit(kairos: Tenant) -> None:
    x, telegram = await kairos.connect(), await kairos.connect(P.PLATFORM_TELEGRAM)
    images = [f"https://cdn.example/{i}.png" for i in range(5)]
    with_media = await validate(kairos, request("hi", spec(x), spec(telegram), media_urls=images))
    without = await validate(kairos, request("hi", spec(x), spec(telegram)))

    assert [(t.media_count, t.max_media, t.max_length) for t in with_media.targets] == [
        (5, 4, 280),
        (5, 10, 1024),  # Telegram's caption, the text sent with media
    ]
    assert [t.max_length for t in without.targets] == [280, 4096]
    assert [(field, "at most 4 media" in text) for field, text in pairs(with_media)] == [
        ("media_urls", True)
    ]


async def test_a_dst_gap_is_reported_as_create_reports_it(kairos: Tenant) -> None:
    account = await kairos.connect()
    gap = next_transition("Europe/Berlin", forward=True).midway
    post = request("hi", spec(account), schedule=local(gap, "Europe/Berlin"))

    answer = await validate(kairos, post)

    assert answer.targets[0].length == 2
    refusal = await create_refusal(kairos, post)
    assert pairs(answer) == refusal
    assert [field for field, _ in refusal] == ["schedule.local.date_time"]
    assert "does not exist" in refusal[0][1]


async def test_another_tenants_account_is_not_found(api: RunningApi, kairos: Tenant) -> None:
    mine = await kairos.connect()
    async with other_tenant(api) as other:
        theirs = await other.connect()
        before = await other.db_counts()
        post = request("hi", spec(mine), spec(theirs))

        answer = await validate(kairos, post)

        assert pairs(answer) == [("targets[1].account_id", f"account {theirs} not found")]
        assert pairs(answer) == await create_refusal(kairos, post)
        assert [(t.account_id, t.platform, t.length, t.unit) for t in answer.targets] == [
            (mine, P.PLATFORM_X, 2, "weighted characters"),
            (theirs, P.PLATFORM_UNSPECIFIED, 0, ""),
        ]
        assert await other.db_counts() == before


async def test_a_valid_post_writes_nothing_and_keeps_its_request_id_free(kairos: Tenant) -> None:
    account = await kairos.connect()
    post = request("hi", spec(account), schedule=at(3600), tags=["t"], request_id="composer-1")

    answer = await validate(kairos, post)
    assert pairs(answer) == []

    created = await kairos.posts.CreatePost(post, metadata=kairos.metadata)
    assert created.post.content == "hi"
    # Validating it again finds the request_id's post: CreatePost would answer it, unchanged.
    assert pairs(await validate(kairos, post)) == []
    changed = request("changed", spec(account), schedule=at(3600), request_id="composer-1")
    assert [v.field for v in (await validate(kairos, changed)).violations] == ["request_id"]


async def test_an_unreadable_field_is_a_violation_and_the_rest_is_still_checked(
    kairos: Tenant,
) -> None:
    account = await kairos.connect()
    year_10000 = posts_pb2.Schedule(at=Timestamp(seconds=253402300800))
    mixed_signs = Duration(seconds=60, nanos=-1)
    post = request("x" * 281, spec(account), schedule=year_10000, stale_after=mixed_signs)

    answer = await validate(kairos, post)

    assert [v.field for v in answer.violations] == ["schedule.at", "stale_after", "content"]
    assert answer.targets[0].length == 281
    # CreatePost stops at the field it cannot read.
    assert [field for field, _ in await create_refusal(kairos, post)] == ["schedule.at"]


async def test_an_empty_request_is_answered_with_its_violations(kairos: Tenant) -> None:
    answer = await validate(kairos, posts_pb2.CreatePostRequest())
    assert pairs(answer) == [("targets", "at least one target is required")]


async def test_a_call_without_a_valid_key_is_unauthenticated(kairos: Tenant) -> None:
    for metadata in [(), (("authorization", "Bearer kairos_not-a-real-key"),)]:
        await refused(
            kairos.posts.ValidatePost(posts_pb2.ValidatePostRequest(), metadata=metadata),
            grpc.StatusCode.UNAUTHENTICATED,
        )
