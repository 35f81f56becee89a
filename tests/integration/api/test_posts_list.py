"""PostsService over real gRPC, on PostgreSQL and SQLite: ListPosts (filters, orders, pages) and
GetStats."""

from __future__ import annotations

import base64
import string
import uuid
from datetime import timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from integration.api.helpers_posts import (
    PageToken,
    Tenant,
    at,
    at_instant,
    fields,
    now,
    other_tenant,
    refused,
    stamp,
    tenant_of,
    when,
)

from kairos.posts.v1 import posts_pb2
from support.api import Client, RunningApi

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NEWEST = posts_pb2.POST_ORDER_CREATED_NEWEST
OLDEST = posts_pb2.POST_ORDER_CREATED_OLDEST
SOONEST = posts_pb2.POST_ORDER_SCHEDULED_SOONEST


@pytest.fixture
def kairos(api: RunningApi, client: Client) -> Tenant:
    return tenant_of(api, client)


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def json_token(text: str) -> str:
    """A token of the format before this one (base64url of JSON) holding `text`."""
    return b64(text.encode())


# --- filters ----------------------------------------------------------------------------------


async def test_list_returns_the_tenants_posts_newest_first(api: RunningApi, kairos: Tenant) -> None:
    account = await kairos.connect()
    created = [await kairos.create(account, content=f"post {i}") for i in range(3)]
    async with other_tenant(api) as other:
        await other.create()

    page = await kairos.list_page()

    assert [p.id for p in page.posts] == [p.id for p in reversed(created)]
    assert page.next_page_token == ""
    assert [p.content for p in page.posts] == ["post 2", "post 1", "post 0"]
    assert all(len(t.attempts) == 0 for p in page.posts for t in p.targets)
    assert [t.account_id for p in page.posts for t in p.targets] == [account] * 3
    assert await kairos.list_ids(order=posts_pb2.POST_ORDER_UNSPECIFIED) == [
        p.id for p in reversed(created)
    ]


async def test_list_of_a_new_tenant_is_empty(kairos: Tenant) -> None:
    page = await kairos.list_page()
    assert (list(page.posts), page.next_page_token) == ([], "")


async def test_list_by_status(kairos: Tenant) -> None:
    account = await kairos.connect()
    draft = await kairos.create(account)
    scheduled = await kairos.create(account, schedule=at(3600))
    waiting = await kairos.create(account, schedule=at(3600), approval_required=True)
    cancelled = await kairos.create(account, schedule=at(3600))
    await kairos.unschedule(cancelled.id)
    await kairos.db_set_post(cancelled.id, status="cancelled")

    assert await kairos.list_ids(statuses=[posts_pb2.POST_STATUS_DRAFT]) == [draft.id]
    assert set(
        await kairos.list_ids(
            statuses=[posts_pb2.POST_STATUS_SCHEDULED, posts_pb2.POST_STATUS_PENDING_APPROVAL]
        )
    ) == {scheduled.id, waiting.id}
    assert await kairos.list_ids(statuses=[posts_pb2.POST_STATUS_CANCELLED]) == [cancelled.id]
    assert await kairos.list_ids(statuses=[posts_pb2.POST_STATUS_PUBLISHED]) == []


async def test_list_by_platform_and_account(kairos: Tenant) -> None:
    x = await kairos.connect()
    mastodon = await kairos.connect(posts_pb2.PLATFORM_MASTODON)
    other_x = await kairos.connect()
    only_x = await kairos.create(x)
    only_mastodon = await kairos.create(mastodon)
    both = await kairos.create(x, mastodon)
    on_other_x = await kairos.create(other_x)

    assert set(await kairos.list_ids(platforms=[posts_pb2.PLATFORM_MASTODON])) == {
        only_mastodon.id,
        both.id,
    }
    assert set(await kairos.list_ids(platforms=[posts_pb2.PLATFORM_X])) == {
        only_x.id,
        both.id,
        on_other_x.id,
    }
    assert await kairos.list_ids(platforms=[posts_pb2.PLATFORM_TELEGRAM]) == []
    # A post with two matching targets is listed once.
    assert (
        len(await kairos.list_ids(platforms=[posts_pb2.PLATFORM_X, posts_pb2.PLATFORM_MASTODON]))
        == 4
    )
    assert set(await kairos.list_ids(account_id=x)) == {only_x.id, both.id}
    assert await kairos.list_ids(account_id=other_x) == [on_other_x.id]
    assert await kairos.list_ids(account_id=x, platforms=[posts_pb2.PLATFORM_X]) == [
        both.id,
        only_x.id,
    ]
    assert await kairos.list_ids(account_id="0190a6d2-0000-7000-8000-000000000000") == []


async def test_list_by_platform_and_account_are_independent_filters(kairos: Tenant) -> None:
    x = await kairos.connect()
    mastodon = await kairos.connect(posts_pb2.PLATFORM_MASTODON)
    await kairos.create(x)
    await kairos.create(mastodon)
    both = await kairos.create(x, mastodon)

    # `both` has a target on account x and a target on Mastodon.
    assert await kairos.list_ids(account_id=x, platforms=[posts_pb2.PLATFORM_MASTODON]) == [both.id]


async def test_list_by_a_malformed_account_id_is_refused(kairos: Tenant) -> None:
    error = await refused(kairos.list_page(account_id="nope"), INVALID)
    assert fields(error) == ["account_id"]


async def test_list_by_campaign_and_tag(kairos: Tenant) -> None:
    account = await kairos.connect()
    spring = await kairos.create(account, campaign="spring", tags=["sale", "news"])
    summer = await kairos.create(account, campaign="summer", tags=["sale"])
    await kairos.create(account, campaign="spring-2")

    assert await kairos.list_ids(campaign="spring") == [spring.id]
    assert set(await kairos.list_ids(tag="sale")) == {spring.id, summer.id}
    assert await kairos.list_ids(tag="news") == [spring.id]
    assert await kairos.list_ids(tag="sal") == []
    assert await kairos.list_ids(campaign="summer", tag="news") == []


async def test_list_by_tag_stays_within_the_tenant(api: RunningApi, kairos: Tenant) -> None:
    mine = await kairos.create(tags=["shared-tag"])
    async with other_tenant(api) as other:
        theirs = await other.create(tags=["shared-tag"])
        assert await other.list_ids(tag="shared-tag") == [theirs.id]
    assert await kairos.list_ids(tag="shared-tag") == [mine.id]


async def test_list_by_scheduled_range_is_half_open(kairos: Tenant) -> None:
    account = await kairos.connect()
    base = (now() + timedelta(days=1)).replace(microsecond=0)
    posts = [
        await kairos.create(account, schedule=at_instant(base + timedelta(hours=h)))
        for h in (1, 2, 3)
    ]
    await kairos.create(account)  # a draft has no instant: never in a range

    in_range = await kairos.list_ids(
        scheduled_from=stamp(base + timedelta(hours=2)),
        scheduled_to=stamp(base + timedelta(hours=3)),
    )
    assert in_range == [posts[1].id]
    assert set(await kairos.list_ids(scheduled_from=stamp(base + timedelta(hours=2)))) == {
        posts[1].id,
        posts[2].id,
    }
    assert await kairos.list_ids(scheduled_to=stamp(base + timedelta(hours=1, seconds=1))) == [
        posts[0].id
    ]


async def test_list_with_scheduled_to_not_after_scheduled_from_is_refused(
    kairos: Tenant,
) -> None:
    start = now() + timedelta(hours=1)
    for gap in (0, -60):
        error = await refused(
            kairos.list_page(
                scheduled_from=stamp(start), scheduled_to=stamp(start + timedelta(seconds=gap))
            ),
            INVALID,
        )
        assert fields(error) == ["scheduled_to"], gap


async def test_list_with_an_unknown_enum_or_a_bad_value_is_refused(kairos: Tenant) -> None:
    cases: list[tuple[dict[str, object], list[str]]] = [
        ({"statuses": [posts_pb2.POST_STATUS_DRAFT, 99]}, ["statuses[1]"]),
        ({"platforms": [77]}, ["platforms[0]"]),
        ({"order": 42}, ["order"]),
        ({"page_size": -1}, ["page_size"]),
        ({"scheduled_from": Timestamp(seconds=253402300800)}, ["scheduled_from"]),  # year 10000
        ({"scheduled_to": Timestamp(seconds=-62135596801)}, ["scheduled_to"]),  # year 0
        (
            {"statuses": [99], "platforms": [77], "order": 42},
            ["statuses[0]", "platforms[0]", "order"],
        ),
    ]
    for request_fields, expected in cases:
        error = await refused(kairos.list_page(**request_fields), INVALID)
        assert fields(error) == expected, request_fields


# --- orders and pages -------------------------------------------------------------------------


async def seven_posts(kairos: Tenant) -> list[posts_pb2.Post]:
    """Seven posts in creation order: five scheduled and two drafts.

    Two posts share an instant, and with pages of two in soonest order they fall on either side
    of a page boundary, as does the first draft.
    """
    account = await kairos.connect()
    base = (now() + timedelta(days=2)).replace(microsecond=0)
    hours = [5, None, 2, 1, None, 2, 4]
    return [
        await kairos.create(
            account,
            content=f"post {i}",
            schedule=at_instant(base + timedelta(hours=h)) if h is not None else None,
        )
        for i, h in enumerate(hours)
    ]


async def test_orders(kairos: Tenant) -> None:
    posts = await seven_posts(kairos)
    ids = [p.id for p in posts]

    assert await kairos.list_ids(order=NEWEST) == ids[::-1]
    assert await kairos.list_ids(order=OLDEST) == ids
    soonest = await kairos.list_ids(order=SOONEST)
    scheduled = [p for p in posts if p.HasField("scheduled_at")]
    assert soonest[:5] == [
        p.id for p in sorted(scheduled, key=lambda p: (when(p.scheduled_at), p.id))
    ]
    assert set(soonest[5:]) == {ids[1], ids[4]}  # drafts last


@pytest.mark.parametrize("order", [NEWEST, OLDEST, SOONEST], ids=["newest", "oldest", "soonest"])
async def test_pages_of_two_walk_every_post_exactly_once(
    kairos: Tenant, order: posts_pb2.PostOrder.ValueType
) -> None:
    posts = await seven_posts(kairos)
    whole = await kairos.list_page(order=order, page_size=100)
    assert whole.next_page_token == ""
    assert len(whole.posts) == 7

    walked: list[str] = []
    sizes: list[int] = []
    token = ""
    for _ in range(10):
        page = await kairos.list_page(order=order, page_size=2, page_token=token)
        walked.extend(p.id for p in page.posts)
        sizes.append(len(page.posts))
        token = page.next_page_token
        if not token:
            break

    assert sizes == [2, 2, 2, 1]
    assert walked == [p.id for p in whole.posts]
    assert sorted(walked) == sorted(p.id for p in posts)


async def test_pages_with_filters_keep_the_filters(kairos: Tenant) -> None:
    account = await kairos.connect()
    tagged = [await kairos.create(account, tags=["t"]) for _ in range(5)]
    await kairos.create(account)

    walked: list[str] = []
    token = ""
    while True:
        page = await kairos.list_page(tag="t", page_size=2, page_token=token, order=OLDEST)
        walked.extend(p.id for p in page.posts)
        token = page.next_page_token
        if not token:
            break
    assert walked == [p.id for p in tagged]


async def test_a_page_exactly_full_at_the_end_has_no_next_token(kairos: Tenant) -> None:
    account = await kairos.connect()
    for _ in range(4):
        await kairos.create(account)
    first = await kairos.list_page(page_size=2)
    second = await kairos.list_page(page_size=2, page_token=first.next_page_token)

    assert first.next_page_token != ""
    assert len(second.posts) == 2
    assert second.next_page_token == ""


async def test_a_deleted_post_between_pages_is_skipped_without_repeats(kairos: Tenant) -> None:
    account = await kairos.connect()
    posts = [await kairos.create(account) for _ in range(5)]
    first = await kairos.list_page(page_size=2, order=OLDEST)
    await kairos.delete(posts[2].id)
    rest: list[str] = []
    token = first.next_page_token
    while token:
        page = await kairos.list_page(page_size=2, order=OLDEST, page_token=token)
        rest.extend(p.id for p in page.posts)
        token = page.next_page_token

    assert [p.id for p in first.posts] == [posts[0].id, posts[1].id]
    assert rest == [posts[3].id, posts[4].id]


async def test_a_page_size_over_the_maximum_is_clamped_not_refused(kairos: Tenant) -> None:
    account = await kairos.connect()
    created = [await kairos.create(account) for _ in range(3)]
    page = await kairos.list_page(page_size=1000)

    assert sorted(p.id for p in page.posts) == sorted(p.id for p in created)
    assert page.next_page_token == ""


async def test_a_zero_page_size_means_the_default(kairos: Tenant) -> None:
    account = await kairos.connect()
    for _ in range(3):
        await kairos.create(account)
    page = await kairos.list_page(page_size=0)
    assert len(page.posts) == 3


#: Tokens ListPosts never wrote. The JSON ones are of the earlier format, which is refused as a
#: whole; the deep ones used to exhaust the JSON decoder's recursion (INTERNAL).
NOT_TOKENS = {
    "junk": "garbage",
    "not base64": "!!!not-base64!!!",
    "JSON list": json_token("[1,2]"),
    "JSON without a fingerprint": json_token('{"k":[1,2]}'),
    "JSON cursor not a list": json_token('{"f":"x","k":"not-a-list"}'),
    "JSON cursor of three": json_token('{"f":"x","k":[1,2,3]}'),
    "JSON nested 1,000 deep": json_token('{"f":"x","k":' + "[" * 1_000 + "]" * 1_000 + "}"),
    "JSON nested 100,000 deep": json_token("[" * 100_000 + "]" * 100_000),
    "JSON with a 5,000-digit number": json_token('{"f":"x","k":[1' + "0" * 5_000 + ',"x"]}'),
    "base64 of 34 zero bytes": b64(bytes(34)),
    "46 characters outside base64": "!" * 46,
    "46 non-ASCII characters": "é" * 46,
    "a megabyte": "A" * 1_000_000,
}


@pytest.mark.parametrize("token", list(NOT_TOKENS.values()), ids=list(NOT_TOKENS))
async def test_a_page_token_not_from_list_posts_is_refused(kairos: Tenant, token: str) -> None:
    await kairos.create()
    error = await refused(kairos.list_page(page_token=token), INVALID)
    assert fields(error) == ["page_token"]
    assert "is not a token returned by ListPosts" in (error.details() or "")


async def test_a_page_token_with_other_filters_or_order_is_refused(kairos: Tenant) -> None:
    account = await kairos.connect()
    for _ in range(3):
        await kairos.create(account, campaign="c", tags=["t"])
    token = (await kairos.list_page(page_size=1, campaign="c")).next_page_token
    assert token

    for changed in (
        {"campaign": "d"},
        {"campaign": "c", "tag": "t"},
        {"campaign": "c", "order": SOONEST},
        {"campaign": "c", "statuses": [posts_pb2.POST_STATUS_DRAFT]},
        {},
    ):
        error = await refused(kairos.list_page(page_token=token, **changed), INVALID)
        assert fields(error) == ["page_token"]
        assert "other filters" in (error.details() or "")

    # The same filters with another page size are fine.
    page = await kairos.list_page(page_token=token, page_size=5, campaign="c")
    assert len(page.posts) == 2


def other_last_bits(token: str) -> str:
    """The token with the unused low bits of its last character set: the same bytes, spelled
    another way."""
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    return token[:-1] + alphabet[alphabet.index(token[-1]) | 1]


async def test_a_tampered_page_token_is_refused(kairos: Tenant) -> None:
    """A token of the right shape whose fields ListPosts never wrote."""
    account = await kairos.connect()
    for _ in range(3):
        await kairos.create(account)
    token = (await kairos.list_page(page_size=1)).next_page_token
    real = PageToken.of(token)
    assert (real.version, real.timed) == (1, 1)

    tampered = {
        "version 0": real.forged(version=0),
        "version 2": real.forged(version=2),
        "instant flag 2": real.forged(timed=2),
        "no instant, which only unscheduled posts lack": real.forged(timed=0, micros=0),
        "no instant but microseconds": real.forged(timed=0),
        "instant before 1971": real.forged(micros=-1),
        "instant after year 9999": real.forged(micros=2**63 - 1),
        "the least instant": real.forged(micros=-(2**63)),
        "a character more": token + "A",
        "a character less": token[:-1],
        "a space instead of a character": token[:10] + " " + token[11:],
        "the same bytes spelled another way": other_last_bits(token),
    }
    for name, forged in tampered.items():
        error = await refused(kairos.list_page(page_size=1, page_token=forged), INVALID)
        assert fields(error) == ["page_token"], name

    error = await refused(
        kairos.list_page(page_size=1, page_token=real.forged(fingerprint=bytes(8))), INVALID
    )
    assert fields(error) == ["page_token"]
    assert "other filters" in (error.details() or "")

    # The untouched token still works.
    assert len((await kairos.list_page(page_size=1, page_token=token)).posts) == 1


async def test_a_forged_cursor_only_chooses_where_the_callers_own_list_starts(
    api: RunningApi, kairos: Tenant
) -> None:
    """A well-formed cursor pointing anywhere (another tenant's post, a post that never existed)
    pages through the caller's own posts and nobody else's."""
    account = await kairos.connect()
    mine = [await kairos.create(account) for _ in range(3)]
    async with other_tenant(api) as other:
        await other.create()
        theirs = await other.create()
        token = (await other.list_page(page_size=1)).next_page_token
    assert PageToken.of(token).post_id == uuid.UUID(theirs.id).bytes

    page = await kairos.list_page(page_token=token)
    assert [p.id for p in page.posts] == [p.id for p in reversed(mine)]
    nowhere = PageToken.of(token).forged(post_id=uuid.uuid4().bytes)
    assert {p.id for p in (await kairos.list_page(page_token=nowhere)).posts} <= {
        p.id for p in mine
    }


# --- GetStats ---------------------------------------------------------------------------------


async def test_stats_of_a_new_tenant_are_empty(kairos: Tenant) -> None:
    stats = await kairos.stats()

    assert list(stats.by_status) == []
    assert list(stats.by_platform) == []
    assert stats.due_next_hour == 0
    assert stats.oldest_overdue_post_id == ""
    assert not stats.HasField("oldest_overdue_at")


async def test_stats_count_posts_by_status_and_targets_by_platform(kairos: Tenant) -> None:
    x = await kairos.connect()
    mastodon = await kairos.connect(posts_pb2.PLATFORM_MASTODON)
    await kairos.create(x)
    await kairos.create(x, mastodon)
    await kairos.create(mastodon, schedule=at(7200))
    await kairos.create(x, schedule=at(7200), approval_required=True)
    deleted = await kairos.create(x, mastodon, schedule=at(7200))
    await kairos.delete(deleted.id)

    stats = await kairos.stats()

    assert {s.status: s.count for s in stats.by_status} == {
        posts_pb2.POST_STATUS_DRAFT: 2,
        posts_pb2.POST_STATUS_SCHEDULED: 1,
        posts_pb2.POST_STATUS_PENDING_APPROVAL: 1,
    }
    assert {(p.platform, p.status): p.count for p in stats.by_platform} == {
        (posts_pb2.PLATFORM_X, posts_pb2.TARGET_STATUS_PENDING): 3,
        (posts_pb2.PLATFORM_MASTODON, posts_pb2.TARGET_STATUS_PENDING): 2,
    }


async def test_stats_due_next_hour_and_oldest_overdue(api: RunningApi, kairos: Tenant) -> None:
    account = await kairos.connect()
    soon = await kairos.create(account, schedule=at(600))
    await kairos.create(account, schedule=at(3000))
    await kairos.create(account, schedule=at(7200))  # beyond the hour
    await kairos.create(account, schedule=at(600), approval_required=True)  # not scheduled
    await kairos.create(account)
    late = await kairos.create(account, schedule=at(1200))
    later = await kairos.create(account, schedule=at(1800))
    oldest_at = (now() - timedelta(hours=2)).replace(microsecond=0)
    await kairos.db_set_post(late.id, scheduled_at=oldest_at)
    await kairos.db_set_post(later.id, scheduled_at=now() - timedelta(minutes=5))
    async with other_tenant(api) as other:
        foreign = await other.create(schedule=at(1200))
        await other.db_set_post(foreign.id, scheduled_at=now() - timedelta(days=1))

    stats = await kairos.stats()

    assert stats.due_next_hour == 2
    assert stats.oldest_overdue_post_id == late.id
    assert when(stats.oldest_overdue_at) == oldest_at

    await kairos.delete(late.id)
    await kairos.publish_now(soon.id)
    stats = await kairos.stats()
    assert stats.oldest_overdue_post_id == later.id
    assert stats.due_next_hour == 1
