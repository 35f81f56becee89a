"""Group commit of CreatePost, on PostgreSQL and SQLite: concurrent creates share a transaction.

Batching must not be visible: every caller gets the post it asked for, a repeated request_id
still makes one post (and a different request under it is refused), and a refused create fails
alone.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable, Sequence

import grpc
import pytest
from integration.api.helpers_posts import Tenant, at, tenant_of

from kairos.posts.v1 import posts_pb2
from kairos_api.domain.model import PostStatus
from kairos_api.service_layer import posts
from kairos_api.service_layer.posts import create
from kairos_api.service_layer.unit_of_work import UnitOfWork
from kairos_common import errors
from support.api import Client, RunningApi, violations_of


@pytest.fixture
def kairos(api: RunningApi, client: Client) -> Tenant:
    return tenant_of(api, client)


def create_request(account_id: str, **fields: object) -> posts_pb2.CreatePostRequest:
    return posts_pb2.CreatePostRequest(
        targets=[posts_pb2.TargetSpec(account_id=account_id)],
        **fields,  # type: ignore[arg-type]
    )


async def test_concurrent_creates_each_get_their_own_post(kairos: Tenant) -> None:
    account = await kairos.connect()
    before = await kairos.db_counts()
    sent = [f"post {i}" for i in range(40)]
    answers = await asyncio.gather(
        *(
            kairos.posts.CreatePost(
                create_request(account, content=text, tags=[f"t{i}"], schedule=at(3600)),
                metadata=kairos.metadata,
            )
            for i, text in enumerate(sent)
        )
    )
    assert [a.post.content for a in answers] == sent
    assert len({a.post.id for a in answers}) == 40
    for i, answer in enumerate(answers):
        assert answer.post.tags == [f"t{i}"]
        assert answer.post.status == posts_pb2.POST_STATUS_SCHEDULED
        stored = await kairos.posts.GetPost(
            posts_pb2.GetPostRequest(post_id=answer.post.id), metadata=kairos.metadata
        )
        assert stored.post == answer.post
        assert await kairos.db_events(answer.post.id) == Counter({"created": 1, "scheduled": 1})
    posts_before, targets_before, events_before = before
    assert await kairos.db_counts() == (posts_before + 40, targets_before + 40, events_before + 80)


async def test_concurrent_repeats_of_request_ids_make_one_post_each(kairos: Tenant) -> None:
    account = await kairos.connect()
    request_ids = [f"batch-{uuid.uuid4().hex[:8]}" for _ in range(8)]
    calls = [
        kairos.posts.CreatePost(
            create_request(account, content=f"{rid} post", request_id=rid),
            metadata=kairos.metadata,
        )
        for n in range(3)
        for rid in request_ids
    ]
    answers = await asyncio.gather(*calls)
    by_request: dict[str, set[str]] = {}
    for index, answer in enumerate(answers):
        by_request.setdefault(request_ids[index % 8], set()).add(answer.post.id)
    assert all(len(ids) == 1 for ids in by_request.values())
    assert all(a.post.content == f"{request_ids[i % 8]} post" for i, a in enumerate(answers))
    assert len({next(iter(ids)) for ids in by_request.values()}) == 8
    for ids in by_request.values():
        assert await kairos.db_events(next(iter(ids))) == Counter({"created": 1})


async def test_a_refused_create_in_a_batch_fails_alone(kairos: Tenant) -> None:
    account = await kairos.connect()
    missing = str(uuid.uuid4())
    good = [
        kairos.posts.CreatePost(
            create_request(account, content=f"ok {i}"), metadata=kairos.metadata
        )
        for i in range(10)
    ]
    bad = kairos.posts.CreatePost(create_request(missing, content="no"), metadata=kairos.metadata)
    results = await asyncio.gather(*good[:5], bad, *good[5:], return_exceptions=True)
    error = results.pop(5)
    assert isinstance(error, grpc.aio.AioRpcError)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations_of(error) == [("targets[0].account_id", f"account {missing} not found")]
    assert [r.post.content for r in results] == [f"ok {i}" for i in range(10)]  # type: ignore[union-attr]


async def test_a_reused_request_id_in_one_batch_is_refused_for_the_different_request(
    kairos: Tenant,
) -> None:
    account = await kairos.connect()
    batcher = posts.CreateBatcher(kairos.app, max_wait=0.05)
    target = [posts.TargetInput(account)]
    before = await kairos.db_counts()
    first, copy, different, later = await asyncio.gather(
        batcher.create(kairos.tenant, posts.CreatePost("one", target, request_id="shared")),
        batcher.create(kairos.tenant, posts.CreatePost("one", target, request_id="shared")),
        batcher.create(kairos.tenant, posts.CreatePost("two", target, request_id="shared")),
        batcher.create(kairos.tenant, posts.CreatePost("later", target)),
        return_exceptions=True,
    )
    assert isinstance(first, posts.PostRecord)
    assert copy == first
    assert isinstance(different, errors.InvalidArgument)
    assert [v.field for v in different.violations] == ["request_id"]
    assert isinstance(later, posts.PostRecord)
    assert later.content == "later"
    posts_before, targets_before, events_before = before
    assert await kairos.db_counts() == (posts_before + 2, targets_before + 2, events_before + 2)


def stale_once(monkeypatch: pytest.MonkeyPatch) -> Callable[[], bool]:
    """Make the next request_id lookup miss (as if the first post committed just after it
    looked), so the insert hits the unique request_id; later lookups see the post. Returns
    whether the stale lookup happened."""
    looked_up = create._by_request_ids
    stale = True

    async def lookup_once_stale(
        uow: UnitOfWork, tenant: str, request_ids: Sequence[str]
    ) -> dict[str, create._Earlier]:
        nonlocal stale
        if stale:
            stale = False
            return {}
        return await looked_up(uow, tenant, request_ids)

    monkeypatch.setattr(create, "_by_request_ids", lookup_once_stale)
    return lambda: not stale


@pytest.mark.parametrize("content", ["first", "again"])
async def test_a_batch_that_loses_a_request_id_race_is_written_one_by_one(
    kairos: Tenant, monkeypatch: pytest.MonkeyPatch, content: str
) -> None:
    """The batch's insert fails on the unique request_id; the one-by-one retry then sees the
    first post: the same request gets it, a different one is refused."""
    account = await kairos.connect()
    first = await kairos.posts.CreatePost(
        create_request(account, content="first", request_id="raced"), metadata=kairos.metadata
    )
    went_stale = stale_once(monkeypatch)
    batcher = posts.CreateBatcher(kairos.app, max_wait=0.05)
    before = await kairos.db_counts()
    target = [posts.TargetInput(account)]
    repeated, fresh, refused = await asyncio.gather(
        batcher.create(kairos.tenant, posts.CreatePost(content, target, request_id="raced")),
        batcher.create(kairos.tenant, posts.CreatePost("fresh", target)),
        batcher.create(kairos.tenant, posts.CreatePost("", target, media_urls=["ftp://x"])),
        return_exceptions=True,
    )
    assert went_stale()
    if content == "first":
        assert isinstance(repeated, posts.PostRecord)
        assert str(repeated.id) == first.post.id
        assert repeated.content == "first"
    else:
        assert isinstance(repeated, errors.InvalidArgument)
        assert [v.field for v in repeated.violations] == ["request_id"]
    assert isinstance(fresh, posts.PostRecord)
    assert fresh.content == "fresh"
    assert fresh.status == PostStatus.DRAFT
    assert isinstance(refused, errors.InvalidArgument)
    posts_before, targets_before, events_before = before
    assert await kairos.db_counts() == (posts_before + 1, targets_before + 1, events_before + 1)


@pytest.mark.parametrize("content", ["first", "again"])
async def test_a_single_create_that_loses_a_request_id_race_reads_the_winner(
    kairos: Tenant, monkeypatch: pytest.MonkeyPatch, content: str
) -> None:
    """`create_post` misses the first post, its insert fails, and the re-read finds it: the same
    request gets it, a different one is refused; either way nothing is written."""
    account = await kairos.connect()
    first = await kairos.create(account, content="first", request_id="raced")
    went_stale = stale_once(monkeypatch)
    before = await kairos.db_counts()
    command = posts.CreatePost(content, [posts.TargetInput(account)], request_id="raced")
    if content == "first":
        repeated = await posts.create_post(kairos.app, kairos.tenant, command)
        assert (str(repeated.id), repeated.content) == (first.id, "first")
    else:
        with pytest.raises(errors.InvalidArgument) as refused:
            await posts.create_post(kairos.app, kairos.tenant, command)
        assert [v.field for v in refused.value.violations] == ["request_id"]
    assert went_stale()
    assert await kairos.db_counts() == before
