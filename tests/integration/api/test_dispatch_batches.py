"""Batched BeginAttempts and CompleteAttempts, on PostgreSQL and SQLite.

Every batch, whether every delivery passes the fence or some are refused, whether every outcome
is a publication or they are mixed, goes through one path per stage; each must leave the right
targets, posts, attempts and lifecycle events behind.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence

import grpc
import pytest
from integration.api.test_dispatch_service import SERVICE, at, claim, events_of, get

from kairos.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from kairos.posts.v1 import posts_pb2
from support.api import Client, RunningApi

PUBLISHED_EVENT = "LIFECYCLE_EVENT_TYPE_PUBLISHED"


@pytest.fixture
async def dispatch(
    own_api: RunningApi,
) -> AsyncIterator[dispatch_pb2_grpc.DispatchServiceAsyncStub]:
    async with grpc.aio.insecure_channel(own_api.target) as channel:
        yield dispatch_pb2_grpc.DispatchServiceStub(channel)


async def connect(tenant: Client, handle: str, token: str) -> str:
    reply = await tenant.accounts.ConnectAccount(
        posts_pb2.ConnectAccountRequest(
            platform=posts_pb2.PLATFORM_MASTODON,
            handle=handle,
            credentials=posts_pb2.Credentials(
                access_token=token, instance_url="https://mastodon.example"
            ),
        ),
        metadata=tenant.metadata,
    )
    return reply.account.id


async def post_due(
    tenant: Client, accounts: Sequence[str], content: str, parent_post_id: str = ""
) -> posts_pb2.Post:
    request = posts_pb2.CreatePostRequest(
        content=content,
        targets=[posts_pb2.TargetSpec(account_id=a) for a in accounts],
        parent_post_id=parent_post_id,
    )
    request.schedule.at.CopyFrom(at(0))
    return (await tenant.posts.CreatePost(request, metadata=tenant.metadata)).post


async def claim_targets(
    dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, posts: Sequence[posts_pb2.Post]
) -> list[dispatch_pb2.Delivery]:
    """The deliveries of these posts' targets, in the order of the posts and their targets."""
    by_target = {d.target_id: d for d in await claim(dispatch)}
    return [by_target[t.id] for p in posts for t in p.targets]


async def begin_all(
    dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, delivery_ids: Sequence[str]
) -> list[dispatch_pb2.BeginAttemptResponse]:
    reply = await dispatch.BeginAttempts(
        dispatch_pb2.BeginAttemptsRequest(delivery_ids=delivery_ids), metadata=SERVICE
    )
    return list(reply.results)


async def complete_all(
    dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub,
    outcomes: Sequence[dispatch_pb2.AttemptOutcome],
) -> list[dispatch_pb2.CompletionResult]:
    reply = await dispatch.CompleteAttempts(
        dispatch_pb2.CompleteAttemptsRequest(outcomes=outcomes), metadata=SERVICE
    )
    return list(reply.results)


def published(
    delivery: dispatch_pb2.Delivery, begun: dispatch_pb2.BeginAttemptResponse, platform_id: str
) -> dispatch_pb2.AttemptOutcome:
    return dispatch_pb2.AttemptOutcome(
        attempt_id=begun.attempt_id,
        delivery_id=delivery.delivery_id,
        published=dispatch_pb2.Published(
            platform_post_id=platform_id, url=f"https://m.example/{platform_id}"
        ),
        http_status=200,
    )


async def test_a_batch_begins_and_publishes_together_and_a_repeat_changes_nothing(
    own_api: RunningApi, dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, tenant: Client
) -> None:
    tag = uuid.uuid4().hex[:8]
    first = await connect(tenant, f"@one-{tag}@mastodon.example", "token-one")
    second = await connect(tenant, f"@two-{tag}@mastodon.example", "token-two")
    singles = [await post_due(tenant, [first], f"single {i}") for i in range(3)]
    both = await post_due(tenant, [first, second], "on both accounts")
    posts = [*singles, both]
    deliveries = await claim_targets(dispatch, posts)

    begun = await begin_all(dispatch, [d.delivery_id for d in deliveries])

    assert [b.ok for b in begun] == [True] * 5
    assert [b.snapshot.content for b in begun] == [
        "single 0",
        "single 1",
        "single 2",
        "on both accounts",
        "on both accounts",
    ]
    assert [b.credentials.access_token for b in begun] == ["token-one"] * 4 + ["token-two"]
    assert [b.attempt_number for b in begun] == [1] * 5
    assert begun[4].idempotency_key == f"kairos-{both.targets[1].id}"
    for post in posts:
        current = await get(tenant, post.id)
        assert current.status == posts_pb2.POST_STATUS_PUBLISHING
        assert [len(t.attempts) for t in current.targets] == [1] * len(post.targets)
        assert {t.status for t in current.targets} == {posts_pb2.TARGET_STATUS_PUBLISHING}

    # Every target but the second of the two-account post.
    pairs = enumerate(zip(deliveries, begun, strict=True))
    outcomes = [published(d, b, f"p{i}") for i, (d, b) in pairs]
    results = await complete_all(dispatch, outcomes[:4])

    assert [r.target_status for r in results] == [posts_pb2.TARGET_STATUS_PUBLISHED] * 4
    assert [r.next_step for r in results] == [dispatch_pb2.NEXT_STEP_ACK] * 4
    for index, post in enumerate(singles):
        current = await get(tenant, post.id)
        assert current.status == posts_pb2.POST_STATUS_PUBLISHED
        assert current.targets[0].platform_url == f"https://m.example/p{index}"
        assert [a.published for a in current.targets[0].attempts] == [True]
        assert await events_of(own_api, post.id) == [
            "LIFECYCLE_EVENT_TYPE_CREATED",
            "LIFECYCLE_EVENT_TYPE_SCHEDULED",
            PUBLISHED_EVENT,
        ]
    halfway = await get(tenant, both.id)
    assert halfway.status == posts_pb2.POST_STATUS_PUBLISHING  # a target is still on its way
    assert {t.id: t.status for t in halfway.targets} == {
        both.targets[0].id: posts_pb2.TARGET_STATUS_PUBLISHED,
        both.targets[1].id: posts_pb2.TARGET_STATUS_PUBLISHING,
    }

    repeated = await complete_all(dispatch, outcomes[:4])
    assert [r.target_status for r in repeated] == [posts_pb2.TARGET_STATUS_PUBLISHED] * 4
    assert (await events_of(own_api, singles[0].id)).count(PUBLISHED_EVENT) == 1

    await complete_all(dispatch, outcomes[4:])
    done = await get(tenant, both.id)
    assert done.status == posts_pb2.POST_STATUS_PUBLISHED
    assert (await events_of(own_api, both.id)).count(PUBLISHED_EVENT) == 2
    again = await begin_all(dispatch, [d.delivery_id for d in deliveries])
    assert [b.rejection for b in again] == [dispatch_pb2.FENCE_REJECTION_SUPERSEDED] * 5


async def test_one_refused_delivery_leaves_the_rest_of_the_batch_begun(
    dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, tenant: Client
) -> None:
    account = await connect(tenant, f"@{uuid.uuid4().hex[:8]}@mastodon.example", "token")
    kept, edited = [await post_due(tenant, [account], f"post {i}") for i in range(2)]
    deliveries = await claim_targets(dispatch, [kept, edited])
    await tenant.posts.UnschedulePost(
        posts_pb2.UnschedulePostRequest(post_id=edited.id), metadata=tenant.metadata
    )

    begun = await begin_all(dispatch, [d.delivery_id for d in deliveries])

    assert begun[0].ok
    assert begun[0].snapshot.content == "post 0"
    assert not begun[1].ok
    assert begun[1].rejection == dispatch_pb2.FENCE_REJECTION_SUPERSEDED
    assert (await get(tenant, kept.id)).targets[0].status == posts_pb2.TARGET_STATUS_PUBLISHING
    assert (await get(tenant, edited.id)).targets[0].attempts == []


async def test_malformed_and_repeated_ids_are_refused_alone_and_the_rest_begin(
    dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, tenant: Client
) -> None:
    account = await connect(tenant, f"@{uuid.uuid4().hex[:8]}@mastodon.example", "token")
    posts = [await post_due(tenant, [account], f"good {i}") for i in range(2)]
    first, second = [d.delivery_id for d in await claim_targets(dispatch, posts)]

    begun = await begin_all(dispatch, [first, "not-a-uuid", second, first])

    assert [b.ok for b in begun] == [True, False, True, False]
    assert [b.snapshot.content for b in begun if b.ok] == ["good 0", "good 1"]
    assert begun[1].rejection == dispatch_pb2.FENCE_REJECTION_SUPERSEDED
    assert "'not-a-uuid' is not a valid delivery id" in begun[1].reason
    assert begun[3].rejection == dispatch_pb2.FENCE_REJECTION_SUPERSEDED
    assert "named twice" in begun[3].reason
    for post in posts:
        # Begun once: the repeated id recorded no second attempt.
        [target] = (await get(tenant, post.id)).targets
        assert target.status == posts_pb2.TARGET_STATUS_PUBLISHING
        assert len(target.attempts) == 1


async def test_a_batch_of_mixed_outcomes_settles_each_target(
    own_api: RunningApi, dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, tenant: Client
) -> None:
    account = await connect(tenant, f"@{uuid.uuid4().hex[:8]}@mastodon.example", "token")
    good, bad = [await post_due(tenant, [account], f"post {i}") for i in range(2)]
    deliveries = await claim_targets(dispatch, [good, bad])
    begun = await begin_all(dispatch, [d.delivery_id for d in deliveries])

    results = await complete_all(
        dispatch,
        [
            published(deliveries[0], begun[0], "ok"),
            dispatch_pb2.AttemptOutcome(
                attempt_id=begun[1].attempt_id,
                delivery_id=deliveries[1].delivery_id,
                error_class=posts_pb2.ERROR_CLASS_PERMANENT,
                error_code="422",
                message="content rejected",
                http_status=422,
            ),
        ],
    )

    assert [r.target_status for r in results] == [
        posts_pb2.TARGET_STATUS_PUBLISHED,
        posts_pb2.TARGET_STATUS_FAILED,
    ]
    assert (await get(tenant, good.id)).status == posts_pb2.POST_STATUS_PUBLISHED
    failed = await get(tenant, bad.id)
    assert failed.status == posts_pb2.POST_STATUS_FAILED
    assert failed.targets[0].last_error.message == "content rejected"
    assert PUBLISHED_EVENT in await events_of(own_api, good.id)
    assert "LIFECYCLE_EVENT_TYPE_FAILED" in await events_of(own_api, bad.id)


async def test_a_reply_begun_in_a_batch_names_its_published_parent(
    dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, tenant: Client
) -> None:
    account = await connect(tenant, f"@{uuid.uuid4().hex[:8]}@mastodon.example", "token")
    parent = await post_due(tenant, [account], "parent")
    [delivery] = await claim_targets(dispatch, [parent])
    [begun] = await begin_all(dispatch, [delivery.delivery_id])
    await complete_all(dispatch, [published(delivery, begun, "parent-109")])
    reply = await post_due(tenant, [account], "reply", parent_post_id=parent.id)
    alone = await post_due(tenant, [account], "alone")

    batch = await begin_all(
        dispatch, [d.delivery_id for d in await claim_targets(dispatch, [reply, alone])]
    )

    assert [b.reply_to_platform_id for b in batch] == ["parent-109", ""]


async def test_the_targets_of_a_post_completed_at_the_same_moment_settle_it(
    own_api: RunningApi, dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, tenant: Client
) -> None:
    """Two calls at once, each completing one of the two targets of the same posts: the post's
    status derives from both targets, so each call must see the other's once it holds the post.
    Reading them without holding the post left posts PUBLISHING with both targets published.
    (SQLite takes one writer at a time, so the two calls cannot overlap there.)"""
    if own_api.service.app.engine.dialect.name == "sqlite":
        pytest.skip("SQLite serialises writers: the calls cannot interleave")
    tag = uuid.uuid4().hex[:8]
    first = await connect(tenant, f"@left-{tag}@mastodon.example", "token-left")
    second = await connect(tenant, f"@right-{tag}@mastodon.example", "token-right")
    for round_ in range(3):
        posts = [await post_due(tenant, [first, second], f"pair {round_}.{i}") for i in range(40)]
        deliveries = await claim_targets(dispatch, posts)
        begun = await begin_all(dispatch, [d.delivery_id for d in deliveries])
        outcomes = [
            published(d, b, f"{round_}-{i}")
            for i, (d, b) in enumerate(zip(deliveries, begun, strict=True))
        ]
        await asyncio.gather(
            complete_all(dispatch, outcomes[::2]), complete_all(dispatch, outcomes[1::2])
        )
        statuses = {(await get(tenant, p.id)).status for p in posts}
        assert statuses == {posts_pb2.POST_STATUS_PUBLISHED}, f"round {round_}"


async def test_an_unknown_attempt_does_not_hold_back_the_outcomes_batched_with_it(
    dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, tenant: Client
) -> None:
    account = await connect(tenant, f"@lone-{uuid.uuid4().hex[:8]}@mastodon.example", "token")
    post = await post_due(tenant, [account], "next to a stranger")
    [delivery] = await claim_targets(dispatch, [post])
    [begun] = await begin_all(dispatch, [delivery.delivery_id])
    stranger = dispatch_pb2.AttemptOutcome(
        attempt_id=str(uuid.uuid4()),
        delivery_id=str(uuid.uuid4()),
        published=dispatch_pb2.Published(platform_post_id="x", url="https://m.example/x"),
    )

    results = await complete_all(dispatch, [stranger, published(delivery, begun, "kept")])

    assert [r.target_status for r in results] == [
        posts_pb2.TARGET_STATUS_UNSPECIFIED,
        posts_pb2.TARGET_STATUS_PUBLISHED,
    ]
    assert [r.next_step for r in results] == [dispatch_pb2.NEXT_STEP_ACK] * 2
    assert (await get(tenant, post.id)).status == posts_pb2.POST_STATUS_PUBLISHED


async def test_traceparents_not_one_per_delivery_are_refused_naming_the_field(
    dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, tenant: Client
) -> None:
    account = await connect(tenant, f"@{uuid.uuid4().hex[:8]}@mastodon.example", "token")
    posts = [await post_due(tenant, [account], f"traced {i}") for i in range(2)]
    first, second = [d.delivery_id for d in await claim_targets(dispatch, posts)]
    traced = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await dispatch.BeginAttempts(
            dispatch_pb2.BeginAttemptsRequest(delivery_ids=[first, second], traceparents=[traced]),
            metadata=SERVICE,
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "traceparents" in (refused.value.details() or "")

    # One per delivery (an empty one for a delivery not traced, a malformed one ignored) is
    # fine, whether or not the api traces.
    reply = await dispatch.BeginAttempts(
        dispatch_pb2.BeginAttemptsRequest(
            delivery_ids=[first, second], traceparents=[traced, "not a traceparent"]
        ),
        metadata=SERVICE,
    )
    assert [b.ok for b in reply.results] == [True, True]
