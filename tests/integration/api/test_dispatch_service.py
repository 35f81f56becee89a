"""DispatchService over real gRPC, on PostgreSQL and SQLite: claims, the fence, outcomes, sweeps.

Each backend gets an api of its own on a fresh database, so claims see only these tests' posts.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import select, update

from kairos.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from kairos.events.v1 import events_pb2
from kairos.posts.v1 import posts_pb2
from kairos_api.adapters.orm import OutboxEvent, Target
from support.api import SERVICE_TOKEN, Client, RunningApi, violations_of

SERVICE = (("authorization", f"Bearer {SERVICE_TOKEN}"),)
#: More of the environment of this module's own api (see conftest.own_api).
OWN_API_ENV = {"KAIROS_RETRY_BASE_SECONDS": "1"}


@pytest.fixture
async def dispatch(
    own_api: RunningApi,
) -> AsyncIterator[dispatch_pb2_grpc.DispatchServiceAsyncStub]:
    async with grpc.aio.insecure_channel(own_api.target) as channel:
        yield dispatch_pb2_grpc.DispatchServiceStub(channel)


def seconds(value: float) -> Duration:
    duration = Duration()
    duration.FromTimedelta(timedelta(seconds=value))
    return duration


def at(offset: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC) + timedelta(seconds=offset))
    return stamp


async def connect(tenant: Client, *, token: str = "secret-token-1", mastodon: bool = True) -> str:
    """A Mastodon account (whose idempotency key makes retries safe), or else an X account."""
    reply = await tenant.accounts.ConnectAccount(
        posts_pb2.ConnectAccountRequest(
            platform=posts_pb2.PLATFORM_MASTODON if mastodon else posts_pb2.PLATFORM_X,
            handle="@kairos@mastodon.example" if mastodon else "@kairos",
            credentials=posts_pb2.Credentials(
                access_token=token, instance_url="https://mastodon.example" if mastodon else ""
            ),
        ),
        metadata=tenant.metadata,
    )
    return reply.account.id


async def post_due(
    tenant: Client,
    account_id: str,
    content: str = "hello",
    offset: float = 0.0,
    *,
    approval_required: bool = False,
    stale_after: Duration | None = None,
) -> posts_pb2.Post:
    request = posts_pb2.CreatePostRequest(
        content=content,
        targets=[posts_pb2.TargetSpec(account_id=account_id)],
        approval_required=approval_required,
        stale_after=stale_after,
    )
    request.schedule.at.CopyFrom(at(offset))
    return (await tenant.posts.CreatePost(request, metadata=tenant.metadata)).post


async def claim(
    dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, horizon: float = 1.0, limit: int = 500
) -> list[dispatch_pb2.Delivery]:
    reply = await dispatch.ClaimDue(
        dispatch_pb2.ClaimDueRequest(horizon=seconds(horizon), limit=limit, lease=seconds(60)),
        metadata=SERVICE,
    )
    return list(reply.deliveries)


async def claim_one(
    dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, target_id: str
) -> dispatch_pb2.Delivery:
    deliveries = [d for d in await claim(dispatch) if d.target_id == target_id]
    assert len(deliveries) == 1
    return deliveries[0]


async def begin(
    dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, delivery_id: str
) -> dispatch_pb2.BeginAttemptResponse:
    return await dispatch.BeginAttempt(
        dispatch_pb2.BeginAttemptRequest(delivery_id=delivery_id), metadata=SERVICE
    )


async def complete(
    dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, outcome: dispatch_pb2.AttemptOutcome
) -> dispatch_pb2.CompletionResult:
    reply = await dispatch.CompleteAttempts(
        dispatch_pb2.CompleteAttemptsRequest(outcomes=[outcome]), metadata=SERVICE
    )
    return reply.results[0]


async def get(tenant: Client, post_id: str) -> posts_pb2.Post:
    return (
        await tenant.posts.GetPost(
            posts_pb2.GetPostRequest(post_id=post_id), metadata=tenant.metadata
        )
    ).post


async def events_of(api: RunningApi, post_id: str) -> list[str]:
    async with api.service.app.uow() as uow:
        rows = (await uow.session.execute(select(OutboxEvent).order_by(OutboxEvent.seq))).scalars()
        found = [events_pb2.LifecycleEvent.FromString(r.payload) for r in rows]
    return [
        r.event_id and events_pb2.LifecycleEventType.Name(r.type)
        for r in found
        if r.post_id == post_id
    ]


async def test_only_the_service_credential_may_call(
    dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, tenant: Client
) -> None:
    request = dispatch_pb2.ClaimDueRequest(horizon=seconds(1), limit=1)
    with pytest.raises(grpc.aio.AioRpcError) as tenant_key:
        await dispatch.ClaimDue(request, metadata=tenant.metadata)
    assert tenant_key.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as no_key:
        await dispatch.ClaimDue(request)
    assert no_key.value.code() == grpc.StatusCode.UNAUTHENTICATED
    await dispatch.ClaimDue(request, metadata=SERVICE)


async def test_claim_takes_due_targets_once_and_leaves_the_rest(
    dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, tenant: Client
) -> None:
    account = await connect(tenant)
    due = await post_due(tenant, account)
    later = await post_due(tenant, account, offset=120)
    approval = await post_due(tenant, account, approval_required=True)
    first = {d.target_id: d for d in await claim(dispatch)}
    assert due.targets[0].id in first
    assert later.targets[0].id not in first
    assert approval.targets[0].id not in first  # never claimed before it is approved
    delivery = first[due.targets[0].id]
    assert delivery.platform == posts_pb2.PLATFORM_MASTODON
    assert delivery.revision == due.revision
    assert delivery.attempt_number == 1
    assert due.targets[0].id not in {d.target_id for d in await claim(dispatch)}
    assert (await get(tenant, due.id)).targets[0].status == posts_pb2.TARGET_STATUS_QUEUED


async def test_paused_accounts_are_not_claimed(
    dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, tenant: Client
) -> None:
    account = await connect(tenant)
    post = await post_due(tenant, account)
    await tenant.accounts.PauseAccount(
        posts_pb2.PauseAccountRequest(account_id=account), metadata=tenant.metadata
    )
    assert post.targets[0].id not in {d.target_id for d in await claim(dispatch)}
    await tenant.accounts.ResumeAccount(
        posts_pb2.ResumeAccountRequest(account_id=account), metadata=tenant.metadata
    )
    assert post.targets[0].id in {d.target_id for d in await claim(dispatch)}


@pytest.mark.parametrize(
    ("horizon", "limit", "field"),
    [(1.0, -5, "limit"), (1.0, 5000, "limit"), (-1.0, 10, "horizon"), (7200.0, 10, "horizon")],
)
async def test_claim_refuses_bad_arguments(
    dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, horizon: float, limit: int, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await dispatch.ClaimDue(
            dispatch_pb2.ClaimDueRequest(horizon=seconds(horizon), limit=limit), metadata=SERVICE
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (refused.value.details() or "")


def outcome(**fields: Any) -> dispatch_pb2.CompleteAttemptsRequest:
    """A retryable outcome of a made-up attempt, with `fields` set."""
    item = dispatch_pb2.AttemptOutcome(
        attempt_id=str(uuid.uuid4()),
        delivery_id=str(uuid.uuid4()),
        error_class=posts_pb2.ERROR_CLASS_RETRYABLE,
        **fields,
    )
    return dispatch_pb2.CompleteAttemptsRequest(outcomes=[item])


MAX_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z

#: Durations and Timestamps that break protobuf's rules (nanos out of range or of the other sign,
#: seconds out of range) or, for latency, the column's: (RPC, request, the field refused).
OUT_OF_RANGE = {
    "horizon nanos 10^9": (
        "ClaimDue",
        dispatch_pb2.ClaimDueRequest(horizon=Duration(nanos=10**9), limit=1),
        "horizon",
    ),
    "horizon of int64 seconds": (
        "ClaimDue",
        dispatch_pb2.ClaimDueRequest(horizon=Duration(seconds=2**63 - 1), limit=1),
        "horizon",
    ),
    "claim lease nanos -1": (
        "ClaimDue",
        dispatch_pb2.ClaimDueRequest(horizon=seconds(1), lease=Duration(seconds=60, nanos=-1)),
        "lease",
    ),
    "sweep lease nanos 10^9": (
        "SweepExpired",
        dispatch_pb2.SweepExpiredRequest(lease=Duration(seconds=30, nanos=10**9)),
        "lease",
    ),
    "retry_not_before nanos -1": (
        "CompleteAttempts",
        outcome(retry_not_before=Timestamp(seconds=2_000_000_000, nanos=-1)),
        "outcomes[0].retry_not_before",
    ),
    "account_blocked_until after year 9999": (
        "CompleteAttempts",
        outcome(account_blocked_until=Timestamp(seconds=MAX_SECONDS + 1)),
        "outcomes[0].account_blocked_until",
    ),
    "latency of other signs": (
        "CompleteAttempts",
        outcome(latency=Duration(seconds=1, nanos=-5)),
        "outcomes[0].latency",
    ),
    "latency beyond the column": (
        "CompleteAttempts",
        outcome(latency=Duration(seconds=10**9)),
        "outcomes[0].latency",
    ),
    "credentials expires_at nanos 10^9": (
        "SaveRefreshedCredentials",
        dispatch_pb2.SaveRefreshedCredentialsRequest(
            account_id=str(uuid.uuid4()),
            credentials=posts_pb2.Credentials(
                access_token="t", expires_at=Timestamp(seconds=2_000_000_000, nanos=10**9)
            ),
        ),
        "credentials.expires_at",
    ),
}


@pytest.mark.parametrize("case", list(OUT_OF_RANGE.values()), ids=list(OUT_OF_RANGE))
async def test_times_out_of_range_are_refused_on_their_field(
    dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, case: tuple[str, Any, str]
) -> None:
    rpc, request, field = case
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await getattr(dispatch, rpc)(request, metadata=SERVICE)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.value.details()
    assert [name for name, _ in violations_of(refused.value)] == [field]


async def test_concurrent_claims_never_share_a_target(
    dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, tenant: Client
) -> None:
    account = await connect(tenant)
    posts = [await post_due(tenant, account, f"many {i}") for i in range(60)]
    mine = {p.targets[0].id for p in posts}
    rounds = await asyncio.gather(*(claim(dispatch, limit=20) for _ in range(6)))
    claimed = [d.target_id for deliveries in rounds for d in deliveries if d.target_id in mine]
    claimed += [d.target_id for d in await claim(dispatch) if d.target_id in mine]
    assert sorted(claimed) == sorted(mine)  # each exactly once


async def test_begin_returns_the_snapshot_and_credentials_once(
    dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, tenant: Client
) -> None:
    account = await connect(tenant, token="mastodon-access-42")
    post = await post_due(tenant, account, "the content")
    delivery = await claim_one(dispatch, post.targets[0].id)
    begun = await begin(dispatch, delivery.delivery_id)
    assert begun.ok
    assert begun.snapshot.content == "the content"
    assert begun.credentials.access_token == "mastodon-access-42"
    assert begun.credentials.instance_url == "https://mastodon.example"
    assert begun.idempotency_key == f"kairos-{post.targets[0].id}"
    assert begun.attempt_number == 1
    again = await begin(dispatch, delivery.delivery_id)
    assert not again.ok
    assert again.rejection == dispatch_pb2.FENCE_REJECTION_NOT_QUEUED
    current = await get(tenant, post.id)
    assert current.status == posts_pb2.POST_STATUS_PUBLISHING
    assert current.targets[0].status == posts_pb2.TARGET_STATUS_PUBLISHING
    assert len(current.targets[0].attempts) == 1  # the intent is recorded before the call


async def test_an_edit_fences_out_the_claimed_delivery(
    dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, tenant: Client
) -> None:
    account = await connect(tenant)
    post = await post_due(tenant, account, "old")
    old = await claim_one(dispatch, post.targets[0].id)
    await tenant.posts.UpdatePost(
        posts_pb2.UpdatePostRequest(
            post_id=post.id,
            post=posts_pb2.Post(content="new"),
            update_mask=FieldMask(paths=["content"]),
        ),
        metadata=tenant.metadata,
    )
    refused = await begin(dispatch, old.delivery_id)
    assert not refused.ok
    assert refused.rejection == dispatch_pb2.FENCE_REJECTION_SUPERSEDED
    fresh = await claim_one(dispatch, post.targets[0].id)
    assert fresh.delivery_id != old.delivery_id
    begun = await begin(dispatch, fresh.delivery_id)
    assert begun.ok
    assert begun.snapshot.content == "new"


async def test_begin_refuses_unknown_and_malformed_deliveries(
    dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub,
) -> None:
    unknown = await begin(dispatch, str(uuid.uuid4()))
    assert not unknown.ok
    assert unknown.rejection == dispatch_pb2.FENCE_REJECTION_SUPERSEDED
    with pytest.raises(grpc.aio.AioRpcError) as malformed:
        await begin(dispatch, "not-an-id")
    assert malformed.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def begin_keyed(
    dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, delivery_id: str, key: str
) -> dispatch_pb2.BeginAttemptResponse:
    """BeginAttempts for one delivery with its begin key, as the publisher's batcher asks."""
    reply = await dispatch.BeginAttempts(
        dispatch_pb2.BeginAttemptsRequest(delivery_ids=[delivery_id], begin_keys=[key]),
        metadata=SERVICE,
    )
    return reply.results[0]


async def test_a_begin_asked_again_with_its_key_gets_the_same_attempt_back(
    own_api: RunningApi, dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, tenant: Client
) -> None:
    """The answer to a begin can be lost after the api committed it; the publisher asks again
    with the same key and must get the attempt that began, not a refusal."""
    account = await connect(tenant, token="mastodon-access-7")
    post = await post_due(tenant, account, "asked twice")
    delivery = await claim_one(dispatch, post.targets[0].id)
    key = uuid.uuid4().hex
    first = await begin_keyed(dispatch, delivery.delivery_id, key)
    assert first.ok
    again = await begin_keyed(dispatch, delivery.delivery_id, key)
    assert again.ok, again.reason
    assert (again.attempt_id, again.attempt_number) == (first.attempt_id, first.attempt_number)
    assert again.snapshot.content == "asked twice"
    assert again.credentials.access_token == "mastodon-access-7"
    assert again.idempotency_key == first.idempotency_key
    assert again.earlier_outcome_lost is False  # its own open attempt is not an earlier one
    lease = own_api.service.app.settings.attempt_lease
    assert timedelta(0) < again.lease.ToTimedelta() <= first.lease.ToTimedelta() <= lease
    single = await dispatch.BeginAttempt(
        dispatch_pb2.BeginAttemptRequest(delivery_id=delivery.delivery_id, begin_key=key),
        metadata=SERVICE,
    )
    assert (single.ok, single.attempt_id) == (True, first.attempt_id)
    for other in (uuid.uuid4().hex, ""):
        refused = await begin_keyed(dispatch, delivery.delivery_id, other)
        assert (refused.ok, refused.rejection) == (False, dispatch_pb2.FENCE_REJECTION_NOT_QUEUED)
    refused = await begin(dispatch, delivery.delivery_id)
    assert (refused.ok, refused.rejection) == (False, dispatch_pb2.FENCE_REJECTION_NOT_QUEUED)
    current = await get(tenant, post.id)
    assert len(current.targets[0].attempts) == 1  # asking again wrote nothing


async def test_a_begin_key_is_not_honoured_once_its_attempt_completed(
    dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, tenant: Client
) -> None:
    post = await post_due(tenant, await connect(tenant), "done once")
    delivery = await claim_one(dispatch, post.targets[0].id)
    key = uuid.uuid4().hex
    begun = await begin_keyed(dispatch, delivery.delivery_id, key)
    assert begun.ok
    await complete(
        dispatch,
        dispatch_pb2.AttemptOutcome(
            attempt_id=begun.attempt_id,
            delivery_id=delivery.delivery_id,
            published=dispatch_pb2.Published(platform_post_id="7", url="https://m.example/7"),
            http_status=200,
        ),
    )
    late = await begin_keyed(dispatch, delivery.delivery_id, key)
    assert not late.ok  # the target is PUBLISHED and its delivery spent
    assert late.rejection != dispatch_pb2.FENCE_REJECTION_UNSPECIFIED


async def test_bad_begin_keys_are_refused_on_their_field(
    dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub,
) -> None:
    ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    cases = [
        (["a" * 64, "b" * 65], "begin_keys[1]"),
        (["caf\u00e9", "ok"], "begin_keys[0]"),
        (["ok", "tab\there"], "begin_keys[1]"),
        (["only-one"], "begin_keys"),
    ]
    for keys, field in cases:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await dispatch.BeginAttempts(
                dispatch_pb2.BeginAttemptsRequest(delivery_ids=ids, begin_keys=keys),
                metadata=SERVICE,
            )
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, keys
        assert [v[0] for v in violations_of(raised.value)] == [field]
    with pytest.raises(grpc.aio.AioRpcError) as single:
        await dispatch.BeginAttempt(
            dispatch_pb2.BeginAttemptRequest(delivery_id=ids[0], begin_key="k" * 65),
            metadata=SERVICE,
        )
    assert single.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v[0] for v in violations_of(single.value)] == ["begin_key"]
    fine = await dispatch.BeginAttempts(
        dispatch_pb2.BeginAttemptsRequest(delivery_ids=ids, begin_keys=["a" * 64, ""]),
        metadata=SERVICE,
    )
    assert [r.rejection for r in fine.results] == [dispatch_pb2.FENCE_REJECTION_SUPERSEDED] * 2


async def started(
    dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, tenant: Client, *, mastodon: bool = True
) -> tuple[posts_pb2.Post, dispatch_pb2.Delivery, dispatch_pb2.BeginAttemptResponse]:
    account = await connect(tenant, mastodon=mastodon)
    post = await post_due(tenant, account)
    delivery = await claim_one(dispatch, post.targets[0].id)
    begun = await begin(dispatch, delivery.delivery_id)
    assert begun.ok
    return post, delivery, begun


async def test_a_published_outcome_settles_target_post_and_events(
    own_api: RunningApi, dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, tenant: Client
) -> None:
    post, delivery, begun = await started(dispatch, tenant)
    # The publisher learns how long it has to report from the begin itself.
    assert begun.lease.ToTimedelta() == own_api.service.app.settings.attempt_lease
    result = await complete(
        dispatch,
        dispatch_pb2.AttemptOutcome(
            attempt_id=begun.attempt_id,
            delivery_id=delivery.delivery_id,
            published=dispatch_pb2.Published(platform_post_id="109", url="https://m.example/109"),
            http_status=200,
        ),
    )
    assert result.target_status == posts_pb2.TARGET_STATUS_PUBLISHED
    assert result.next_step == dispatch_pb2.NEXT_STEP_ACK
    current = await get(tenant, post.id)
    assert current.status == posts_pb2.POST_STATUS_PUBLISHED
    assert current.targets[0].platform_url == "https://m.example/109"
    assert [a.published for a in current.targets[0].attempts] == [True]
    assert "LIFECYCLE_EVENT_TYPE_PUBLISHED" in await events_of(own_api, post.id)
    again = await complete(
        dispatch,
        dispatch_pb2.AttemptOutcome(
            attempt_id=begun.attempt_id,
            delivery_id=delivery.delivery_id,
            error_class=posts_pb2.ERROR_CLASS_PERMANENT,
        ),
    )
    assert again.target_status == posts_pb2.TARGET_STATUS_PUBLISHED  # a repeat changes nothing


async def test_a_retryable_outcome_asks_for_redelivery_after_the_platform_wait(
    dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, tenant: Client
) -> None:
    _, delivery, begun = await started(dispatch, tenant)
    not_before = at(5)
    result = await complete(
        dispatch,
        dispatch_pb2.AttemptOutcome(
            attempt_id=begun.attempt_id,
            delivery_id=delivery.delivery_id,
            error_class=posts_pb2.ERROR_CLASS_RETRYABLE,
            http_status=429,
            retry_not_before=not_before,
        ),
    )
    assert result.next_step == dispatch_pb2.NEXT_STEP_REDELIVER
    assert result.retry_delay.ToTimedelta() >= timedelta(seconds=4)
    assert result.target_status == posts_pb2.TARGET_STATUS_QUEUED
    again = await begin(dispatch, delivery.delivery_id)  # the same delivery comes back
    assert again.ok
    assert again.attempt_number == 2


async def test_a_long_wait_goes_back_to_the_database(
    dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, tenant: Client
) -> None:
    post, delivery, begun = await started(dispatch, tenant)
    result = await complete(
        dispatch,
        dispatch_pb2.AttemptOutcome(
            attempt_id=begun.attempt_id,
            delivery_id=delivery.delivery_id,
            error_class=posts_pb2.ERROR_CLASS_RETRYABLE,
            retry_not_before=at(600),
        ),
    )
    assert result.next_step == dispatch_pb2.NEXT_STEP_ACK
    assert result.target_status == posts_pb2.TARGET_STATUS_RETRY_WAIT
    target = (await get(tenant, post.id)).targets[0]
    assert target.next_attempt_at.ToDatetime(tzinfo=UTC) >= datetime.now(UTC) + timedelta(
        seconds=590
    )


@pytest.mark.parametrize(
    ("error_class", "target_status", "post_status"),
    [
        (
            posts_pb2.ERROR_CLASS_PERMANENT,
            posts_pb2.TARGET_STATUS_FAILED,
            posts_pb2.POST_STATUS_FAILED,
        ),
        (
            posts_pb2.ERROR_CLASS_UNKNOWN,
            posts_pb2.TARGET_STATUS_UNKNOWN,
            posts_pb2.POST_STATUS_UNKNOWN,
        ),
    ],
)
async def test_final_errors_keep_the_platform_message(
    dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub,
    tenant: Client,
    error_class: posts_pb2.ErrorClass.ValueType,
    target_status: posts_pb2.TargetStatus.ValueType,
    post_status: posts_pb2.PostStatus.ValueType,
) -> None:
    # On X: no idempotency key, so an UNKNOWN is final there.
    post, delivery, begun = await started(dispatch, tenant, mastodon=False)
    await complete(
        dispatch,
        dispatch_pb2.AttemptOutcome(
            attempt_id=begun.attempt_id,
            delivery_id=delivery.delivery_id,
            error_class=error_class,
            http_status=422,
            error_code="422",
            message="Validation failed: Text character limit of 500 exceeded",
        ),
    )
    current = await get(tenant, post.id)
    assert current.status == post_status
    assert current.targets[0].status == target_status
    assert "character limit" in current.targets[0].last_error.message
    assert current.targets[0].attempts[0].http_status == 422


async def test_an_unknown_outcome_on_mastodon_is_retried_under_the_same_idempotency_key(
    dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, tenant: Client
) -> None:
    _post, delivery, begun = await started(dispatch, tenant)
    result = await complete(
        dispatch,
        dispatch_pb2.AttemptOutcome(
            attempt_id=begun.attempt_id,
            delivery_id=delivery.delivery_id,
            error_class=posts_pb2.ERROR_CLASS_UNKNOWN,
            error_code="timeout",
            message="no answer after sending",
        ),
    )
    assert result.target_status == posts_pb2.TARGET_STATUS_QUEUED  # redelivered, not UNKNOWN
    assert result.next_step == dispatch_pb2.NEXT_STEP_REDELIVER
    again = await begin(dispatch, delivery.delivery_id)
    assert again.ok
    assert again.idempotency_key == begun.idempotency_key
    assert again.attempt_number == 2


async def expire_leases(api: RunningApi, target_id: str) -> None:
    async with api.service.app.uow() as uow:
        await uow.session.execute(
            update(Target)
            .where(Target.id == uuid.UUID(target_id))
            .values(lease_until=datetime.now(UTC) - timedelta(seconds=1))
        )
        await uow.commit()


async def sweep(
    dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub,
) -> dispatch_pb2.SweepExpiredResponse:
    return await dispatch.SweepExpired(
        dispatch_pb2.SweepExpiredRequest(limit=500, lease=seconds(60)), metadata=SERVICE
    )


async def test_sweep_reemits_a_lost_delivery_under_a_new_id(
    own_api: RunningApi, dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, tenant: Client
) -> None:
    account = await connect(tenant)
    post = await post_due(tenant, account)
    lost = await claim_one(dispatch, post.targets[0].id)
    await expire_leases(own_api, post.targets[0].id)
    swept = await sweep(dispatch)
    again = [d for d in swept.redeliveries if d.target_id == post.targets[0].id]
    assert len(again) == 1
    assert again[0].delivery_id != lost.delivery_id
    assert not (await begin(dispatch, lost.delivery_id)).ok
    assert (await begin(dispatch, again[0].delivery_id)).ok


async def test_sweep_reemits_deliveries_claimed_before_an_instant_at_once(
    own_api: RunningApi, dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, tenant: Client
) -> None:
    # What the scheduler asks when its NATS connection comes back: the events of deliveries
    # claimed before then may be lost, and their leases have 60 s to go.
    account = await connect(tenant)
    waiting, begun = await post_due(tenant, account), await post_due(tenant, account)
    claimed = {d.target_id: d for d in await claim(dispatch)}
    lost = claimed[waiting.targets[0].id]
    assert (await begin(dispatch, claimed[begun.targets[0].id].delivery_id)).ok
    await asyncio.sleep(0.01)
    back = Timestamp()
    back.FromDatetime(datetime.now(UTC))
    await asyncio.sleep(0.01)
    later = await post_due(tenant, account)
    fresh = await claim_one(dispatch, later.targets[0].id)

    def reemit() -> Awaitable[dispatch_pb2.SweepExpiredResponse]:
        request = dispatch_pb2.SweepExpiredRequest(
            limit=500, lease=seconds(60), reemit_claimed_before=back
        )
        return dispatch.SweepExpired(request, metadata=SERVICE)

    assert [d.target_id for d in (await sweep(dispatch)).redeliveries] == []  # leases hold
    first = await reemit()
    ours = {waiting.targets[0].id, begun.targets[0].id, later.targets[0].id}
    again = [d for d in first.redeliveries if d.target_id in ours]
    assert [d.target_id for d in again] == [waiting.targets[0].id]
    assert again[0].delivery_id != lost.delivery_id
    # Asked again with the same instant (the next page), it is not re-emitted twice.
    assert [d for d in (await reemit()).redeliveries if d.target_id in ours] == []
    assert not (await begin(dispatch, lost.delivery_id)).ok  # the old event, if it comes
    assert (await begin(dispatch, again[0].delivery_id)).ok
    assert (await begin(dispatch, fresh.delivery_id)).ok  # claimed after: left alone


async def test_sweep_settles_an_abandoned_attempt(
    own_api: RunningApi, dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, tenant: Client
) -> None:
    account_id = await connect(tenant)
    request = posts_pb2.ConnectAccountRequest(
        platform=posts_pb2.PLATFORM_X,
        handle="@kairos",
        credentials=posts_pb2.Credentials(access_token="x-token"),
    )
    x_account = (await tenant.accounts.ConnectAccount(request, metadata=tenant.metadata)).account.id
    mastodon_post = await post_due(tenant, account_id, "mastodon")
    x_post = await post_due(tenant, x_account, "x")
    claimed = {d.target_id: d for d in await claim(dispatch)}
    for post in (mastodon_post, x_post):
        assert (await begin(dispatch, claimed[post.targets[0].id].delivery_id)).ok
        await expire_leases(own_api, post.targets[0].id)
    swept = await sweep(dispatch)
    # Mastodon dedups on the idempotency key: safe to try again. X has no such key: UNKNOWN.
    assert mastodon_post.targets[0].id in {d.target_id for d in swept.redeliveries}
    assert (await get(tenant, x_post.id)).targets[0].status == posts_pb2.TARGET_STATUS_UNKNOWN
    assert (await get(tenant, mastodon_post.id)).targets[0].status == posts_pb2.TARGET_STATUS_QUEUED


async def test_begin_says_whether_an_earlier_attempt_of_the_target_lost_its_outcome(
    own_api: RunningApi, dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, tenant: Client
) -> None:
    """A platform's "duplicate" answer can be the target's own post only after an attempt of
    its own whose outcome was lost: one that ended UNKNOWN, or began and never reported back."""
    post, delivery, first = await started(dispatch, tenant, mastodon=False)  # X: no key
    assert first.earlier_outcome_lost is False
    failed = await complete(
        dispatch,
        dispatch_pb2.AttemptOutcome(
            attempt_id=first.attempt_id,
            delivery_id=delivery.delivery_id,
            error_class=posts_pb2.ERROR_CLASS_RETRYABLE,
            http_status=503,
        ),
    )
    assert failed.next_step == dispatch_pb2.NEXT_STEP_REDELIVER
    second = await begin(dispatch, delivery.delivery_id)
    assert second.ok
    assert second.earlier_outcome_lost is False  # a 503 answered: nothing was lost
    lost = await complete(
        dispatch,
        dispatch_pb2.AttemptOutcome(
            attempt_id=second.attempt_id,
            delivery_id=delivery.delivery_id,
            error_class=posts_pb2.ERROR_CLASS_UNKNOWN,
            error_code="timeout",
        ),
    )
    assert lost.target_status == posts_pb2.TARGET_STATUS_UNKNOWN
    await tenant.posts.RetryPost(
        posts_pb2.RetryPostRequest(post_id=post.id), metadata=tenant.metadata
    )
    third = await begin(dispatch, (await claim_one(dispatch, post.targets[0].id)).delivery_id)
    assert (third.ok, third.attempt_number, third.earlier_outcome_lost) == (True, 3, True)

    # An attempt that never reported back, requeued by the sweeper (Mastodon has a key); begun
    # in a batch with a refused delivery, which takes the other way through BeginAttempts.
    quiet, _, _ = await started(dispatch, tenant)
    await expire_leases(own_api, quiet.targets[0].id)
    [again] = [
        d for d in (await sweep(dispatch)).redeliveries if d.target_id == quiet.targets[0].id
    ]
    batch = await dispatch.BeginAttempts(
        dispatch_pb2.BeginAttemptsRequest(delivery_ids=[again.delivery_id, str(uuid.uuid4())]),
        metadata=SERVICE,
    )
    assert [(r.ok, r.earlier_outcome_lost) for r in batch.results] == [(True, True), (False, False)]


async def test_sweep_marks_stale_targets_missed(
    own_api: RunningApi,
    dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub,
    tenant: Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    account = await connect(tenant)
    post = await post_due(tenant, account, stale_after=Duration(seconds=1))
    await asyncio.sleep(1.2)
    assert post.targets[0].id not in {d.target_id for d in await claim(dispatch)}
    swept_at = datetime.now(UTC)
    monkeypatch.setattr(own_api.service.app, "clock", lambda: swept_at)
    swept = await sweep(dispatch)
    assert swept.marked_missed >= 1
    current = await get(tenant, post.id)
    assert current.status == posts_pb2.POST_STATUS_MISSED
    assert "LIFECYCLE_EVENT_TYPE_MISSED" in await events_of(own_api, post.id)
    async with own_api.service.app.uow() as uow:
        target = await uow.session.get(Target, uuid.UUID(post.targets[0].id))
        assert target is not None
        assert target.updated_at == swept_at  # the sweep's instant, like every stage's


async def test_fail_delivery_ends_a_dead_lettered_target(
    dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, tenant: Client
) -> None:
    account = await connect(tenant)
    post = await post_due(tenant, account)
    delivery = await claim_one(dispatch, post.targets[0].id)
    reply = await dispatch.FailDelivery(
        dispatch_pb2.FailDeliveryRequest(delivery_id=delivery.delivery_id, reason="poison"),
        metadata=SERVICE,
    )
    assert reply.target_status == posts_pb2.TARGET_STATUS_FAILED
    current = await get(tenant, post.id)
    assert current.status == posts_pb2.POST_STATUS_FAILED
    assert "dead-lettered: poison" in current.targets[0].last_error.message


async def mark(
    dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub,
    attempt_id: str,
    stage: dispatch_pb2.AttemptStage.ValueType,
) -> dispatch_pb2.MarkAttemptResponse:
    return await dispatch.MarkAttempt(
        dispatch_pb2.MarkAttemptRequest(attempt_id=attempt_id, stage=stage), metadata=SERVICE
    )


async def x_account(tenant: Client) -> str:
    return await connect(tenant, mastodon=False)


async def lease_of(api: RunningApi, target_id: str) -> datetime:
    async with api.service.app.uow() as uow:
        found = (
            await uow.session.execute(
                select(Target.lease_until).where(Target.id == uuid.UUID(target_id))
            )
        ).scalar_one()
    assert found is not None
    return found if found.tzinfo else found.replace(tzinfo=UTC)


async def test_an_attempt_lost_while_uploading_is_retried_not_unknown(
    own_api: RunningApi, dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, tenant: Client
) -> None:
    # X has no idempotency key: an attempt lost after its publish call began is UNKNOWN.
    post = await post_due(tenant, await x_account(tenant), "a video post")
    target = post.targets[0].id
    first = await begin(dispatch, (await claim_one(dispatch, target)).delivery_id)
    marked = await mark(dispatch, first.attempt_id, dispatch_pb2.ATTEMPT_STAGE_UPLOADING)
    assert marked.ok
    assert marked.lease.ToTimedelta() == own_api.service.app.settings.attempt_lease
    await expire_leases(own_api, target)
    swept = await sweep(dispatch)
    again = [d for d in swept.redeliveries if d.target_id == target]
    assert len(again) == 1
    assert swept.marked_unknown == 0
    assert (await get(tenant, post.id)).targets[0].status == posts_pb2.TARGET_STATUS_QUEUED
    second = await begin(dispatch, again[0].delivery_id)
    assert second.ok
    assert second.attempt_number == 2
    assert not second.earlier_outcome_lost  # nothing could have been published
    # The lost attempt's mark no longer holds: it must not make the post public.
    late = await mark(dispatch, first.attempt_id, dispatch_pb2.ATTEMPT_STAGE_PUBLISHING)
    assert not late.ok
    assert late.reason == "the attempt was already settled"
    attempts = (await get(tenant, post.id)).targets[0].attempts
    lost = next(a for a in attempts if a.number == 1)
    assert lost.error_class == posts_pb2.ERROR_CLASS_RETRYABLE
    assert "while it sent media" in lost.message


async def test_an_attempt_lost_once_publishing_is_unknown_and_uploading_never_undoes_it(
    own_api: RunningApi, dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, tenant: Client
) -> None:
    post = await post_due(tenant, await x_account(tenant), "published, maybe")
    target = post.targets[0].id
    begun = await begin(dispatch, (await claim_one(dispatch, target)).delivery_id)
    for stage in (
        dispatch_pb2.ATTEMPT_STAGE_UPLOADING,
        dispatch_pb2.ATTEMPT_STAGE_PUBLISHING,
        dispatch_pb2.ATTEMPT_STAGE_UPLOADING,  # a late keep-alive
    ):
        assert (await mark(dispatch, begun.attempt_id, stage)).ok
    await expire_leases(own_api, target)
    swept = await sweep(dispatch)
    assert target not in {d.target_id for d in swept.redeliveries}
    assert (await get(tenant, post.id)).targets[0].status == posts_pb2.TARGET_STATUS_UNKNOWN


async def test_a_mark_extends_the_lease(
    own_api: RunningApi, dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, tenant: Client
) -> None:
    post = await post_due(tenant, await x_account(tenant), "a long upload")
    target = post.targets[0].id
    begun = await begin(dispatch, (await claim_one(dispatch, target)).delivery_id)
    await expire_leases(own_api, target)
    before = datetime.now(UTC)
    marked = await mark(dispatch, begun.attempt_id, dispatch_pb2.ATTEMPT_STAGE_UPLOADING)
    assert marked.ok
    assert await lease_of(own_api, target) >= before + marked.lease.ToTimedelta() - timedelta(
        seconds=1
    )
    swept = await sweep(dispatch)
    assert target not in {d.target_id for d in swept.redeliveries}
    assert (await get(tenant, post.id)).targets[0].status == posts_pb2.TARGET_STATUS_PUBLISHING


async def test_an_upload_lost_every_time_ends_failed_within_the_attempts_allowed(
    own_api: RunningApi, dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, tenant: Client
) -> None:
    post = await post_due(tenant, await x_account(tenant), "a file that kills its publisher")
    target = post.targets[0].id
    delivery = (await claim_one(dispatch, target)).delivery_id
    allowed = own_api.service.app.settings.max_attempts
    for number in range(1, allowed + 1):
        begun = await begin(dispatch, delivery)
        assert begun.ok, number
        assert (await mark(dispatch, begun.attempt_id, dispatch_pb2.ATTEMPT_STAGE_UPLOADING)).ok
        await expire_leases(own_api, target)
        swept = await sweep(dispatch)
        again = [d.delivery_id for d in swept.redeliveries if d.target_id == target]
        if number < allowed:
            assert len(again) == 1, number
            delivery = again[0]
        else:
            assert again == []
    current = (await get(tenant, post.id)).targets[0]
    assert current.status == posts_pb2.TARGET_STATUS_FAILED
    assert current.last_error.code == "upload_lost"
    assert "nothing was published" in current.last_error.message


async def test_mark_refuses_bad_arguments_on_their_field(
    dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, tenant: Client
) -> None:
    post = await post_due(tenant, await x_account(tenant), "bad marks")
    begun = await begin(dispatch, (await claim_one(dispatch, post.targets[0].id)).delivery_id)
    cases = [
        ("not-an-id", dispatch_pb2.ATTEMPT_STAGE_UPLOADING, "attempt_id"),
        (begun.attempt_id, dispatch_pb2.ATTEMPT_STAGE_UNSPECIFIED, "stage"),
    ]
    for attempt_id, stage, field in cases:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await mark(dispatch, attempt_id, stage)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [v[0] for v in violations_of(raised.value)] == [field]
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await mark(dispatch, str(uuid.uuid4()), dispatch_pb2.ATTEMPT_STAGE_UPLOADING)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as anonymous:
        await dispatch.MarkAttempt(
            dispatch_pb2.MarkAttemptRequest(
                attempt_id=begun.attempt_id, stage=dispatch_pb2.ATTEMPT_STAGE_UPLOADING
            )
        )
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
