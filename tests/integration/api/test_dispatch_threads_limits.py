# ruff: noqa: F811  (the fixtures imported below are redefined as test parameters)
"""Dispatch for threads, rate-limited accounts and racing token refreshes, on both backends."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import nats
from google.protobuf.timestamp_pb2 import Timestamp
from integration.api.test_dispatch_service import (  # noqa: F401 (fixtures)
    SERVICE,
    at,
    begin,
    claim,
    complete,
    connect,
    dispatch,
    get,
    post_due,
)
from nats.aio.msg import Msg

from kairos.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from kairos.posts.v1 import posts_pb2
from kairos_api.adapters.orm import Account
from kairos_common.streams import WAKE_SUBJECT
from support.api import Client, RunningApi

#: The environment of test_dispatch_service's api, whose helpers these tests use.
OWN_API_ENV = {"KAIROS_RETRY_BASE_SECONDS": "1"}


async def reply_to(
    tenant: Client, parent: posts_pb2.Post, account_id: str, content: str
) -> posts_pb2.Post:
    """A part of a thread, due now, replying to `parent`."""
    request = posts_pb2.CreatePostRequest(
        content=content,
        targets=[posts_pb2.TargetSpec(account_id=account_id)],
        parent_post_id=parent.id,
    )
    request.schedule.at.CopyFrom(at(0))
    return (await tenant.posts.CreatePost(request, metadata=tenant.metadata)).post


async def publish(
    dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub,
    delivery: dispatch_pb2.Delivery,
    platform_id: str,
) -> dispatch_pb2.BeginAttemptResponse:
    begun = await begin(dispatch, delivery.delivery_id)
    assert begun.ok, begun.reason
    result = await complete(
        dispatch,
        dispatch_pb2.AttemptOutcome(
            attempt_id=begun.attempt_id,
            delivery_id=delivery.delivery_id,
            published=dispatch_pb2.Published(platform_post_id=platform_id),
        ),
    )
    assert result.target_status == posts_pb2.TARGET_STATUS_PUBLISHED
    return begun


def only(deliveries: list[dispatch_pb2.Delivery], *target_ids: str) -> list[str]:
    """Which of `target_ids` were claimed."""
    return [d.target_id for d in deliveries if d.target_id in target_ids]


async def test_a_thread_goes_out_part_after_part_each_replying_to_the_one_before(
    dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, tenant: Client
) -> None:
    account = await connect(tenant)
    first = await post_due(tenant, account, "1/3")
    second = await reply_to(tenant, first, account, "2/3")
    third = await reply_to(tenant, second, account, "3/3")
    parts = [p.targets[0].id for p in (first, second, third)]
    replied_to = [""]
    for number, part in enumerate(parts, start=1):
        deliveries = await claim(dispatch)
        assert only(deliveries, *parts) == [part]  # the later parts wait for this one
        begun = await publish(
            dispatch, next(d for d in deliveries if d.target_id == part), f"p{number}"
        )
        replied_to.append(begun.reply_to_platform_id)
    assert replied_to == ["", "", "p1", "p2"]


async def test_a_broken_thread_resumes_from_the_failed_part_after_a_retry(
    dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, tenant: Client
) -> None:
    account = await connect(tenant)
    first = await post_due(tenant, account, "part one")
    second = (await reply_to(tenant, first, account, "part two")).targets[0].id
    delivery = next(d for d in await claim(dispatch) if d.target_id == first.targets[0].id)
    begun = await begin(dispatch, delivery.delivery_id)
    await complete(
        dispatch,
        dispatch_pb2.AttemptOutcome(
            attempt_id=begun.attempt_id,
            delivery_id=delivery.delivery_id,
            error_class=posts_pb2.ERROR_CLASS_PERMANENT,
            message="refused",
        ),
    )
    assert only(await claim(dispatch), second) == []  # never posted as a stand-alone post

    await tenant.posts.RetryPost(
        posts_pb2.RetryPostRequest(post_id=first.id), metadata=tenant.metadata
    )
    retried = next(d for d in await claim(dispatch) if d.target_id == first.targets[0].id)
    await publish(dispatch, retried, "first-id")
    resumed = next(d for d in await claim(dispatch) if d.target_id == second)
    begun = await publish(dispatch, resumed, "second-id")
    assert begun.reply_to_platform_id == "first-id"


async def test_a_reply_whose_parent_skips_this_account_goes_out_on_its_own(
    dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, tenant: Client
) -> None:
    elsewhere = await connect(tenant, token="other-account")
    here = await connect(tenant, token="this-account")
    parent = await post_due(tenant, elsewhere, "only on the other account", offset=3600)
    child = (await reply_to(tenant, parent, here, "a reply here")).targets[0].id
    delivery = next(d for d in await claim(dispatch) if d.target_id == child)
    begun = await begin(dispatch, delivery.delivery_id)
    assert begun.ok
    assert begun.reply_to_platform_id == ""


def stamp(when: datetime) -> Timestamp:
    value = Timestamp()
    value.FromDatetime(when)
    return value


async def test_a_rate_limited_account_is_not_claimed_nor_begun_until_its_block_passes(
    own_api: RunningApi, dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, tenant: Client
) -> None:
    account = await connect(tenant)
    first = await post_due(tenant, account, "uses the last request")
    waiting = await post_due(tenant, account, "claimed before the limit was hit")
    later = await post_due(tenant, account, "due after the limit was hit")
    deliveries = await claim(dispatch)
    first_delivery = next(d for d in deliveries if d.target_id == first.targets[0].id)
    waiting_delivery = next(d for d in deliveries if d.target_id == waiting.targets[0].id)
    later_delivery = next(d for d in deliveries if d.target_id == later.targets[0].id)
    begun = await begin(dispatch, first_delivery.delivery_id)
    # An unrelated outcome shows the block applies to the account, not just one target.
    await begin(dispatch, later_delivery.delivery_id)
    blocked_until = datetime.now(UTC) + timedelta(seconds=1.5)
    await complete(
        dispatch,
        dispatch_pb2.AttemptOutcome(
            attempt_id=begun.attempt_id,
            delivery_id=first_delivery.delivery_id,
            published=dispatch_pb2.Published(platform_post_id="last-one"),
            account_blocked_until=stamp(blocked_until),
        ),
    )
    async with own_api.service.app.uow() as uow:
        stored = await uow.session.get(Account, uuid.UUID(account))
        assert stored is not None
        assert stored.blocked_until is not None
        assert abs((stored.blocked_until - blocked_until).total_seconds()) < 0.01

    refused = await begin(dispatch, waiting_delivery.delivery_id)
    assert not refused.ok
    assert "rate-limited" in refused.reason
    assert (await get(tenant, waiting.id)).targets[0].status == posts_pb2.TARGET_STATUS_PENDING
    assert only(await claim(dispatch), waiting.targets[0].id) == []

    await asyncio.sleep((blocked_until - datetime.now(UTC)).total_seconds() + 0.05)
    again = next(d for d in await claim(dispatch) if d.target_id == waiting.targets[0].id)
    assert (await begin(dispatch, again.delivery_id)).ok


async def test_a_refresh_token_used_by_another_copy_hands_back_the_newer_credentials(
    dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, tenant: Client
) -> None:
    connected = await tenant.accounts.ConnectAccount(
        posts_pb2.ConnectAccountRequest(
            platform=posts_pb2.PLATFORM_X,
            handle="@kairos",
            credentials=posts_pb2.Credentials(access_token="a-1", refresh_token="r-1"),
        ),
        metadata=tenant.metadata,
    )
    account = connected.account.id
    # One copy refreshed r-1 and saved the new pair...
    await dispatch.SaveRefreshedCredentials(
        dispatch_pb2.SaveRefreshedCredentialsRequest(
            account_id=account,
            credentials=posts_pb2.Credentials(access_token="a-2", refresh_token="r-2"),
        ),
        metadata=SERVICE,
    )
    # ...so the other copy's refresh with r-1 was refused: not a reason to ask for re-auth.
    raced = await dispatch.SaveRefreshedCredentials(
        dispatch_pb2.SaveRefreshedCredentialsRequest(
            account_id=account,
            needs_reauth=True,
            reason="invalid_grant",
            failed_refresh_token="r-1",
        ),
        metadata=SERVICE,
    )
    assert raced.status == posts_pb2.ACCOUNT_STATUS_ACTIVE
    assert (raced.current.access_token, raced.current.refresh_token) == ("a-2", "r-2")

    dead = await dispatch.SaveRefreshedCredentials(
        dispatch_pb2.SaveRefreshedCredentialsRequest(
            account_id=account,
            needs_reauth=True,
            reason="invalid_grant",
            failed_refresh_token="r-2",
        ),
        metadata=SERVICE,
    )
    assert dead.status == posts_pb2.ACCOUNT_STATUS_NEEDS_REAUTH
    assert not dead.HasField("current")


async def test_publishing_a_part_wakes_the_schedulers_for_the_next_one(
    own_api: RunningApi, dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub, tenant: Client
) -> None:
    account = await connect(tenant)
    first = await post_due(tenant, account, "wake 1/2")
    second = await reply_to(tenant, first, account, "wake 2/2")
    delivery = next(d for d in await claim(dispatch) if d.target_id == first.targets[0].id)
    nc = await nats.connect(own_api.service.settings.common.nats_url)
    try:
        wakes: list[float] = []
        woke = asyncio.Event()

        async def woken(_: Msg) -> None:
            wakes.append(time.monotonic())
            woke.set()

        await nc.subscribe(WAKE_SUBJECT, cb=woken)
        await nc.flush()
        await asyncio.sleep(0.3)  # the wakes of the creates above have gone by
        wakes.clear()
        woke.clear()
        await publish(dispatch, delivery, "first-part")
        await asyncio.wait_for(woke.wait(), timeout=5)  # woken for the second part
        # Publishing the last part wakes nobody: nothing replies to it.
        claimed = next(d for d in await claim(dispatch) if d.target_id == second.targets[0].id)
        wakes.clear()
        await publish(dispatch, claimed, "second-part")
        await asyncio.sleep(0.3)
        assert wakes == []
    finally:
        await nc.close()
