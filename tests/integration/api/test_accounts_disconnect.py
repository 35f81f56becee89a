"""DisconnectAccount changes what its posts will publish: each gets a new revision and an event,
while the deliveries already claimed for the post's other accounts stay good."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from integration.api.helpers_posts import Tenant, at, tenant_of

from kairos.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from kairos.posts.v1 import posts_pb2
from support.api import SERVICE_TOKEN, RunningApi

SERVICE = (("authorization", f"Bearer {SERVICE_TOKEN}"),)


@pytest.fixture
async def kairos(own_api: RunningApi) -> AsyncIterator[Tenant]:
    async with own_api.client() as client:
        yield tenant_of(own_api, client)


@pytest.fixture
async def dispatch(
    own_api: RunningApi,
) -> AsyncIterator[dispatch_pb2_grpc.DispatchServiceAsyncStub]:
    async with grpc.aio.insecure_channel(own_api.target) as channel:
        yield dispatch_pb2_grpc.DispatchServiceStub(channel)


async def disconnect(kairos: Tenant, account_id: str) -> None:
    await kairos.accounts.DisconnectAccount(
        posts_pb2.DisconnectAccountRequest(account_id=account_id), metadata=kairos.metadata
    )


async def test_a_post_losing_one_of_its_targets_gets_a_new_revision_and_an_event(
    kairos: Tenant, dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub
) -> None:
    gone, kept = [await kairos.connect(posts_pb2.PLATFORM_MASTODON) for _ in range(2)]
    post = await kairos.create(gone, kept, schedule=at(0))
    claimed = await dispatch.ClaimDue(
        dispatch_pb2.ClaimDueRequest(
            horizon=Duration(seconds=1), limit=10, lease=Duration(seconds=60)
        ),
        metadata=SERVICE,
    )
    by_account = {d.account_id: d.delivery_id for d in claimed.deliveries}
    assert set(by_account) == {gone, kept}
    events_before = await kairos.db_events(post.id)

    await disconnect(kairos, gone)

    after = await kairos.get(post.id)
    assert after.revision == post.revision + 1
    assert {t.account_id: t.status for t in after.targets} == {
        gone: posts_pb2.TARGET_STATUS_SKIPPED,
        kept: posts_pb2.TARGET_STATUS_QUEUED,
    }
    assert await kairos.db_events(post.id) - events_before == {"updated": 1}
    # The other account's delivery publishes the same thing as before: not fenced out.
    begun = await dispatch.BeginAttempt(
        dispatch_pb2.BeginAttemptRequest(delivery_id=by_account[kept]), metadata=SERVICE
    )
    assert begun.ok, begun
    refused = await dispatch.BeginAttempt(
        dispatch_pb2.BeginAttemptRequest(delivery_id=by_account[gone]), metadata=SERVICE
    )
    assert refused.rejection == dispatch_pb2.FENCE_REJECTION_NOT_QUEUED


@pytest.mark.parametrize("scheduled", [True, False], ids=["scheduled", "draft"])
async def test_a_post_losing_its_only_target_gets_a_new_revision_and_an_event(
    kairos: Tenant, scheduled: bool
) -> None:
    account = await kairos.connect()
    post = await kairos.create(account, schedule=at(3600) if scheduled else None)
    events_before = await kairos.db_events(post.id)

    await disconnect(kairos, account)

    after = await kairos.get(post.id)
    assert after.revision == post.revision + 1
    assert [t.status for t in after.targets] == [posts_pb2.TARGET_STATUS_SKIPPED]
    assert await kairos.db_events(post.id) - events_before == {"updated": 1}


async def test_disconnecting_again_changes_no_revision(kairos: Tenant) -> None:
    account = await kairos.connect()
    post = await kairos.create(account, schedule=at(3600))
    await disconnect(kairos, account)
    once = await kairos.get(post.id)

    await disconnect(kairos, account)

    assert (await kairos.get(post.id)).revision == once.revision == post.revision + 1
