"""Every public RPC refuses a missing or bad key, and no post RPC reaches another tenant's post.

The RPC lists come from the service descriptors, so a new RPC without a case here fails the
completeness tests instead of going unchecked.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message
from integration.api.helpers_posts import Tenant, at, now, other_tenant, refused, tenant_of

from kairos.posts.v1 import posts_pb2
from support.api import Client, RunningApi

Metadata = tuple[tuple[str, str], ...]

POSTS = posts_pb2.DESCRIPTOR.services_by_name["PostsService"]
ACCOUNTS = posts_pb2.DESCRIPTOR.services_by_name["AccountsService"]
UNKNOWN_ID = "0190a6d2-0000-7000-8000-000000000000"

BAD_METADATA: dict[str, Metadata] = {
    "missing": (),
    "unknown key": (("authorization", "Bearer kairos_not-a-real-key"),),
    "wrong scheme": (("authorization", "Basic dXNlcjpwYXNz"),),
    "empty key": (("authorization", "Bearer "),),
}


@pytest.fixture
def kairos(api: RunningApi, client: Client) -> Tenant:
    return tenant_of(api, client)


def request_for(method_name: str, service: Any, **ids: str) -> Message:
    """An instance of the method's request type, with whichever of `ids` it has as fields."""
    method = service.methods_by_name[method_name]
    request_class = getattr(posts_pb2, method.input_type.name)
    request: Message = request_class()
    for name, value in ids.items():
        if name in method.input_type.fields_by_name:
            setattr(request, name, value)
    return request


# --- authentication ---------------------------------------------------------------------------


@pytest.mark.parametrize("metadata", BAD_METADATA.values(), ids=BAD_METADATA.keys())
@pytest.mark.parametrize(
    ("service", "method_name"),
    [(POSTS, m.name) for m in POSTS.methods] + [(ACCOUNTS, m.name) for m in ACCOUNTS.methods],
)
async def test_every_public_rpc_without_a_valid_key_is_unauthenticated(
    kairos: Tenant, service: Any, method_name: str, metadata: Metadata
) -> None:
    account_id = await kairos.connect()
    post = await kairos.create(account_id, schedule=at(3600))
    before = (await kairos.db_counts(), await kairos.get(post.id))
    stub = kairos.posts if service is POSTS else kairos.accounts
    request = request_for(method_name, service, post_id=post.id, account_id=account_id)

    await refused(
        getattr(stub, method_name)(request, metadata=metadata), grpc.StatusCode.UNAUTHENTICATED
    )

    assert (await kairos.db_counts(), await kairos.get(post.id)) == before


# --- tenant isolation -------------------------------------------------------------------------

#: Per post RPC: how to put the owner's post in a state where the call would succeed, and the
#: request to make. Only CreatePost, ListPosts and GetStats take no post id (tested below).
Prepare = Callable[[Tenant], Awaitable[posts_pb2.Post]]


async def draft(owner: Tenant) -> posts_pb2.Post:
    return await owner.create(content="the owner's")


async def scheduled(owner: Tenant) -> posts_pb2.Post:
    return await owner.create(content="the owner's", schedule=at(3600))


async def awaiting_approval(owner: Tenant) -> posts_pb2.Post:
    post = await owner.create(content="the owner's", schedule=at(3600), approval_required=True)
    assert post.status == posts_pb2.POST_STATUS_PENDING_APPROVAL
    return post


async def failed(owner: Tenant) -> posts_pb2.Post:
    post = await scheduled(owner)
    for target in post.targets:
        await owner.db_set_target(
            target.id,
            status="failed",
            next_attempt_at=None,
            last_error_class="permanent",
            last_error_message="boom",
        )
    await owner.db_set_post(post.id, status="failed")
    return await owner.get(post.id)


POST_CASES: dict[str, tuple[Prepare, Callable[[posts_pb2.Post], Message]]] = {
    "GetPost": (draft, lambda p: posts_pb2.GetPostRequest(post_id=p.id)),
    "UpdatePost": (
        draft,
        lambda p: posts_pb2.UpdatePostRequest(
            post_id=p.id,
            post=posts_pb2.Post(content="overwritten"),
            update_mask=FieldMask(paths=["content"]),
        ),
    ),
    "SchedulePost": (
        draft,
        lambda p: posts_pb2.SchedulePostRequest(post_id=p.id, schedule=at(7200)),
    ),
    "UnschedulePost": (scheduled, lambda p: posts_pb2.UnschedulePostRequest(post_id=p.id)),
    "PublishNow": (scheduled, lambda p: posts_pb2.PublishNowRequest(post_id=p.id)),
    "DeletePost": (draft, lambda p: posts_pb2.DeletePostRequest(post_id=p.id)),
    "RetryPost": (failed, lambda p: posts_pb2.RetryPostRequest(post_id=p.id)),
    "ApprovePost": (awaiting_approval, lambda p: posts_pb2.ApprovePostRequest(post_id=p.id)),
    "RejectPost": (
        awaiting_approval,
        lambda p: posts_pb2.RejectPostRequest(post_id=p.id, reason="no"),
    ),
}
#: The PostsService RPCs that take no post id: ListPosts and GetStats are tested below, CreatePost
#: on another tenant's account in test_posts_create.py, BatchCreatePosts in
#: test_posts_batch_create.py, ValidatePost in test_posts_validate.py.
TENANT_WIDE = {"CreatePost", "BatchCreatePosts", "ValidatePost", "ListPosts", "GetStats"}


def test_every_posts_rpc_has_an_isolation_case() -> None:
    assert {m.name for m in POSTS.methods} == set(POST_CASES) | TENANT_WIDE


@pytest.mark.parametrize("method_name", POST_CASES)
async def test_another_tenants_post_is_not_found_and_unchanged(
    api: RunningApi, kairos: Tenant, method_name: str
) -> None:
    prepare, make_request = POST_CASES[method_name]
    async with other_tenant(api) as owner:
        post = await prepare(owner)
        request = make_request(post)
        rows = (await owner.db_counts(), await owner.db_events(post.id))

        error = await refused(
            getattr(kairos.posts, method_name)(request, metadata=kairos.metadata),
            grpc.StatusCode.NOT_FOUND,
        )

        assert "not found" in (error.details() or "")
        assert await owner.get(post.id) == post
        assert (await owner.db_counts(), await owner.db_events(post.id)) == rows
        # The same request from the owner succeeds: the refusal was the tenant, not the state.
        await getattr(owner.posts, method_name)(request, metadata=owner.metadata)


async def test_list_and_stats_never_show_another_tenants_posts(
    api: RunningApi, kairos: Tenant
) -> None:
    async with other_tenant(api) as owner:
        await owner.create(schedule=at(1800))
        overdue = await scheduled(owner)
        await owner.db_set_post(overdue.id, scheduled_at=now())
        assert await owner.list_ids()

        assert await kairos.list_ids() == []
        stats = await kairos.stats()
        assert sum(c.count for c in stats.by_status) == 0
        assert stats.due_next_hour == 0
        assert stats.oldest_overdue_post_id == ""
