"""BatchCreatePosts over real gRPC, on PostgreSQL and SQLite.

Each item is answered on its own (the post, or its violations named `items[i].field`); the valid
items are created and the invalid ones write nothing; request_ids make a retried batch create
nothing twice; validate_only runs every check and writes nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime

import grpc
import pytest
from integration.api.helpers_posts import (
    Tenant,
    at,
    fields,
    other_tenant,
    refused,
    stamp,
    tenant_of,
    when,
)

from kairos.posts.v1 import posts_pb2, queues_pb2, queues_pb2_grpc
from kairos_api.service_layer import posts
from kairos_api.service_layer.posts.create import Created, draft_of
from support.api import Client, RunningApi


@pytest.fixture
def kairos(api: RunningApi, client: Client) -> Tenant:
    return tenant_of(api, client)


def item(account_id: str, content: str = "Hello", **fields: object) -> posts_pb2.CreatePostRequest:
    return posts_pb2.CreatePostRequest(
        content=content,
        targets=[posts_pb2.TargetSpec(account_id=account_id)],
        **fields,  # type: ignore[arg-type]
    )


async def batch(
    kairos: Tenant, items: list[posts_pb2.CreatePostRequest], *, validate_only: bool = False
) -> list[posts_pb2.BatchCreatePostsResult]:
    response = await kairos.posts.BatchCreatePosts(
        posts_pb2.BatchCreatePostsRequest(items=items, validate_only=validate_only),
        metadata=kairos.metadata,
    )
    assert len(response.results) == len(items)
    return list(response.results)


def violated(result: posts_pb2.BatchCreatePostsResult) -> list[str]:
    return [v.field for v in result.violations]


async def test_each_item_gets_its_post_or_its_violations_by_index(kairos: Tenant) -> None:
    account = await kairos.connect()
    before = await kairos.db_counts()
    results = await batch(
        kairos,
        [
            item(account, "first", schedule=at(3600), tags=["a"]),
            item(str(uuid.uuid4()), "unknown account"),
            item(account, "no time", schedule=posts_pb2.Schedule()),
            item(account, "x" * 300),
            item(account, "last", campaign="spring"),
        ],
    )
    assert [r.post.content for r in results] == ["first", "", "", "", "last"]
    assert violated(results[0]) == violated(results[4]) == []
    assert violated(results[1]) == ["items[1].targets[0].account_id"]
    assert violated(results[2]) == ["items[2].schedule"]
    assert violated(results[3]) == ["items[3].content"]
    assert not any(r.repeated for r in results)
    first, last = results[0].post, results[4].post
    assert first.status == posts_pb2.POST_STATUS_SCHEDULED
    assert first.tags == ["a"]
    assert last.status == posts_pb2.POST_STATUS_DRAFT
    assert last.campaign == "spring"
    for created in (first, last):
        stored = await kairos.get(created.id)
        assert stored == created
    assert await kairos.db_events(first.id) == Counter({"created": 1, "scheduled": 1})
    posts, targets, events = before
    assert await kairos.db_counts() == (posts + 2, targets + 2, events + 3)


async def test_a_retried_batch_creates_nothing_twice(kairos: Tenant) -> None:
    account = await kairos.connect()
    prefix = uuid.uuid4().hex[:8]
    items = [item(account, f"post {i}", request_id=f"{prefix}-{i}") for i in range(5)]
    items.append(item(account, "no request id"))
    first = await batch(kairos, items)
    after_first = await kairos.db_counts()
    again = await batch(kairos, items[:5])
    assert [r.post.id for r in again] == [r.post.id for r in first[:5]]
    assert all(r.repeated for r in again)
    assert not any(r.repeated for r in first)
    assert await kairos.db_counts() == after_first
    # A retry that changes one request under its request_id: that item alone is refused.
    changed = list(items[:5])
    changed[2] = item(account, "post 2, edited", request_id=f"{prefix}-2")
    mixed = await batch(kairos, changed)
    assert violated(mixed[2]) == ["items[2].request_id"]
    assert "different request" in mixed[2].violations[0].description
    assert [r.post.id for i, r in enumerate(mixed) if i != 2] == [
        r.post.id for i, r in enumerate(first[:5]) if i != 2
    ]
    assert await kairos.db_counts() == after_first


async def test_one_request_id_twice_in_a_batch_makes_one_post(kairos: Tenant) -> None:
    account = await kairos.connect()
    rid = f"twice-{uuid.uuid4().hex[:8]}"
    results = await batch(
        kairos,
        [
            item(account, "same", request_id=rid),
            item(account, "same", request_id=rid),
            item(account, "other", request_id=rid),
        ],
    )
    assert results[0].post.id == results[1].post.id != ""
    assert [results[0].repeated, results[1].repeated] == [False, True]
    assert violated(results[2]) == ["items[2].request_id"]


async def test_validate_only_checks_everything_and_writes_nothing(kairos: Tenant) -> None:
    account = await kairos.connect()
    rid = f"validate-{uuid.uuid4().hex[:8]}"
    items = [
        item(account, "fine", request_id=rid, schedule=at(3600)),
        item(str(uuid.uuid4()), "unknown account"),
    ]
    before = await kairos.db_counts()
    preview = await batch(kairos, items, validate_only=True)
    assert await kairos.db_counts() == before
    assert violated(preview[1]) == ["items[1].targets[0].account_id"]
    would = preview[0].post
    assert would.content == "fine"
    assert would.status == posts_pb2.POST_STATUS_SCHEDULED
    assert would.id == ""
    assert [t.id for t in would.targets] == [""]
    assert [t.account_id for t in would.targets] == [account]
    created = await batch(kairos, items[:1])
    assert created[0].post.id != ""
    # Once created, validating the same item again says it would be a repeat of that post.
    again = await batch(kairos, items[:1], validate_only=True)
    assert again[0].repeated
    assert again[0].post.id == created[0].post.id


async def test_a_batch_holds_one_to_a_thousand_items(kairos: Tenant) -> None:
    account = await kairos.connect()
    before = await kairos.db_counts()
    for count in (0, 1001):
        error = await refused(
            kairos.posts.BatchCreatePosts(
                posts_pb2.BatchCreatePostsRequest(items=[item(account)] * count),
                metadata=kairos.metadata,
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert fields(error) == ["items"]
    # A NUL character refuses the whole call, as in any request, naming the item's field.
    nul = await refused(
        kairos.posts.BatchCreatePosts(
            posts_pb2.BatchCreatePostsRequest(items=[item(account), item(account, "a\x00b")]),
            metadata=kairos.metadata,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert fields(nul) == ["items[1].content"]
    assert await kairos.db_counts() == before
    # A full batch spans several of the group commit's transactions, every item in its place.
    results = await batch(kairos, [item(account, f"bulk {i}") for i in range(1000)])
    assert [r.post.content for r in results] == [f"bulk {i}" for i in range(1000)]
    assert len({r.post.id for r in results}) == 1000
    posts, targets, events = before
    assert await kairos.db_counts() == (posts + 1000, targets + 1000, events + 1000)


async def test_single_creates_go_ahead_of_the_items_of_a_batch(kairos: Tenant) -> None:
    account = await kairos.connect()
    batcher = posts.CreateBatcher(kairos.app, max_batch=10, max_writers=1)
    target = [posts.TargetInput(account)]
    drafts = [
        draft_of(kairos.app, kairos.tenant, posts.CreatePost(f"bulk {n}", target))
        for n in range(100)
    ]
    bulk = asyncio.create_task(batcher.create_all(drafts))
    await asyncio.sleep(0)  # the 100 items wait, the first 10 being written
    single = await batcher.create(kairos.tenant, posts.CreatePost("single", target))
    assert single.content == "single"
    assert not bulk.done()  # it went into the next transaction, not after the 100 items
    results = await bulk
    assert [r.record.content for r in results if isinstance(r, Created)] == [
        f"bulk {n}" for n in range(100)
    ]


async def test_another_tenants_accounts_posts_and_request_ids_stay_theirs(
    api: RunningApi, kairos: Tenant
) -> None:
    rid = f"shared-{uuid.uuid4().hex[:8]}"
    async with other_tenant(api) as owner:
        theirs = await owner.connect()
        their_post = await owner.create(theirs, content="theirs", request_id=rid)
        mine = await kairos.connect()
        results = await batch(
            kairos,
            [
                item(theirs, "on their account"),
                item(mine, "a reply to theirs", parent_post_id=their_post.id),
                item(mine, "theirs", request_id=rid),
            ],
        )
        assert violated(results[0]) == ["items[0].targets[0].account_id"]
        assert violated(results[1]) == ["items[1].parent_post_id"]
        assert not results[2].repeated
        assert results[2].post.id not in ("", their_post.id)
        assert await owner.get(their_post.id) == their_post


async def test_queued_items_take_the_next_free_slots_in_order(
    client: Client, kairos: Tenant
) -> None:
    account = await kairos.connect()
    queues = queues_pb2_grpc.QueueServiceStub(client.channel)
    await queues.SetQueueSlots(
        queues_pb2.SetQueueSlotsRequest(
            account_id=account,
            time_zone="UTC",
            slots=[queues_pb2.QueueSlot(weekday=queues_pb2.WEEKDAY_MONDAY, time="09:00")],
        ),
        metadata=kairos.metadata,
    )
    queued = posts_pb2.Schedule(
        queue=posts_pb2.QueueSchedule(not_before=stamp(datetime(2030, 1, 7, tzinfo=UTC)))
    )
    items = [item(account, f"queued {n}", schedule=queued) for n in range(3)]
    mondays = [datetime(2030, 1, day, 9, tzinfo=UTC) for day in (7, 14, 21)]
    preview = await batch(kairos, items, validate_only=True)
    assert [when(r.post.scheduled_at) for r in preview] == mondays
    created = await batch(kairos, items)
    assert [when(r.post.scheduled_at) for r in created] == mondays  # the preview held nothing
    more = await batch(kairos, items[:1])
    assert when(more[0].post.scheduled_at) == datetime(2030, 1, 28, 9, tzinfo=UTC)
