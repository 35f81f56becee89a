"""`kairos_client.KairosClient` against the in-process api (PostgreSQL and SQLite), and against a
scripted gRPC server for what the api cannot be made to do on demand (answer UNAVAILABLE, stall,
start late)."""

from __future__ import annotations

import asyncio
import textwrap
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message

from kairos.events.v1 import events_pb2 as lifecycle_pb2
from kairos.posts.v1 import events_pb2, posts_pb2, posts_pb2_grpc, webhooks_pb2
from kairos_client import KairosClient, KairosError, schedule_after, schedule_at, schedule_local
from support.api import RunningApi
from support.ports import free_port

UNKNOWN_ID = "0190a6d2-0000-7000-8000-000000000000"
README = Path(__file__).resolve().parents[3] / "README.md"


def sandbox_account() -> posts_pb2.ConnectAccountRequest:
    return posts_pb2.ConnectAccountRequest(
        platform=posts_pb2.PLATFORM_SANDBOX,
        handle=f"@client-{uuid.uuid4().hex[:6]}",
        credentials=posts_pb2.Credentials(instance_url="http://127.0.0.1:9"),
    )


def draft(account_id: str, content: str = "hello from the client") -> posts_pb2.CreatePostRequest:
    return posts_pb2.CreatePostRequest(
        content=content, targets=[posts_pb2.TargetSpec(account_id=account_id)]
    )


# --- against the api --------------------------------------------------------------------------


async def test_every_posts_call_works_with_a_key(api: RunningApi) -> None:
    _, key = await api.new_key()
    async with KairosClient(api.target, key) as client:
        account = await client.connect_account(sandbox_account())
        created = await client.create_post(draft(account.id))
        assert created.status == posts_pb2.POST_STATUS_DRAFT

        scheduled = await client.schedule_post(
            created.id, schedule_local("2030-06-01T09:30", "Europe/Berlin"), created.revision
        )
        assert scheduled.status == posts_pb2.POST_STATUS_SCHEDULED
        assert scheduled.time_zone == "Europe/Berlin"
        assert scheduled.scheduled_at.ToJsonString() == "2030-06-01T07:30:00Z"

        edited = await client.update_post(
            created.id, posts_pb2.Post(content="edited", tags=["t1"]), ["content", "tags"]
        )
        assert (edited.content, list(edited.tags)) == ("edited", ["t1"])
        fetched = await client.get_post(created.id)
        assert fetched.content == "edited"
        assert len(fetched.targets) == 1

        unscheduled = await client.unschedule_post(created.id)
        assert unscheduled.status == posts_pb2.POST_STATUS_DRAFT

        approval = posts_pb2.CreatePostRequest(
            content="needs a yes",
            targets=[posts_pb2.TargetSpec(account_id=account.id)],
            approval_required=True,
            schedule=schedule_at(time_from_now(3600)),
        )
        pending = await client.create_post(approval)
        assert pending.status == posts_pb2.POST_STATUS_PENDING_APPROVAL
        assert (await client.approve_post(pending.id)).status == posts_pb2.POST_STATUS_SCHEDULED
        other = await client.create_post(approval)
        assert (await client.reject_post(other.id, "off brand")).rejection_reason == "off brand"

        published = await client.publish_now(created.id)
        assert published.status == posts_pb2.POST_STATUS_SCHEDULED
        deleted = await client.delete_post(pending.id)
        assert deleted.status == posts_pb2.POST_STATUS_CANCELLED

        stats = await client.get_stats()
        assert {row.status: row.count for row in stats.by_status} == {
            posts_pb2.POST_STATUS_SCHEDULED: 1,  # published now; deleted posts are not counted
            posts_pb2.POST_STATUS_REJECTED: 1,
        }


def time_from_now(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def test_the_readme_example_runs(api: RunningApi) -> None:
    """The README's Python client example, run as written against this api."""
    readme = README.read_text()
    section = readme.partition("### The Python client")[2]
    example = section.partition("```python\n")[2].partition("```")[0]
    assert "posts_pb2.TargetSpec(" in example  # a reader sees what a target is made of
    _, api_key = await api.new_key()
    async with KairosClient(api.target, api_key) as client:
        account_id = (await client.connect_account(sandbox_account())).id
    body = example.replace("127.0.0.1:50051", api.target)
    namespace: dict[str, Any] = {"api_key": api_key, "account_id": account_id}
    exec(  # the example's top-level awaits run inside a coroutine
        "async def example():\n" + textwrap.indent(body, "    ") + "\n    return post\n",
        namespace,
    )

    post = await namespace["example"]()

    assert isinstance(post, posts_pb2.Post)
    assert [t.account_id for t in post.targets] == [account_id]


async def test_a_create_in_two_hours_is_retried_as_the_same_request(api: RunningApi) -> None:
    _, key = await api.new_key()
    async with KairosClient(api.target, key) as client:
        account = await client.connect_account(sandbox_account())
        request = draft(account.id)
        request.schedule.CopyFrom(schedule_after(timedelta(hours=2)))
        request.request_id = "two-hours"
        first = await client.create_post(request)
        again = await client.create_post(request)

    assert again == first
    assert time_from_now(7190) < first.scheduled_at.ToDatetime(tzinfo=UTC) <= time_from_now(7200)
    with pytest.raises(ValueError, match="not negative"):
        schedule_after(timedelta(seconds=-1))


async def test_every_accounts_call_works_with_a_key(api: RunningApi) -> None:
    _, key = await api.new_key()
    async with KairosClient(api.target, key) as client:
        account = await client.connect_account(sandbox_account())
        assert [a.id for a in await client.list_accounts()] == [account.id]
        assert await client.list_accounts(posts_pb2.PLATFORM_X) == []
        assert (await client.get_account(account.id)).handle == account.handle

        paused = await client.pause_account(account.id)
        assert paused.status == posts_pb2.ACCOUNT_STATUS_PAUSED
        listed = await client.list_accounts(status=posts_pb2.ACCOUNT_STATUS_PAUSED)
        assert [a.id for a in listed] == [account.id]
        resumed = await client.resume_account(account.id)
        assert resumed.status == posts_pb2.ACCOUNT_STATUS_ACTIVE
        updated = await client.update_account_credentials(
            account.id, posts_pb2.Credentials(instance_url="http://127.0.0.1:10")
        )
        assert updated.id == account.id
        gone = await client.disconnect_account(account.id)
        assert gone.status == posts_pb2.ACCOUNT_STATUS_DISCONNECTED


async def test_iter_posts_walks_every_page(api: RunningApi) -> None:
    _, key = await api.new_key()
    async with KairosClient(api.target, key) as client:
        account = await client.connect_account(sandbox_account())
        ids = [(await client.create_post(draft(account.id, f"post {n}"))).id for n in range(5)]
        oldest_first = posts_pb2.ListPostsRequest(
            page_size=2, order=posts_pb2.POST_ORDER_CREATED_OLDEST
        )

        page = await client.list_posts(oldest_first)
        walked = [post.id async for post in client.iter_posts(oldest_first)]
        limited = [post.id async for post in client.iter_posts(oldest_first, limit=3)]

    assert [p.id for p in page.posts] == ids[:2]
    assert page.next_page_token
    assert walked == ids
    assert limited == ids[:3]


async def test_a_missing_or_wrong_key_is_unauthenticated(api: RunningApi) -> None:
    for key in ("", "kairos_not-a-real-key"):
        async with KairosClient(api.target, key) as client:
            with pytest.raises(KairosError) as caught:
                await client.get_stats()
        assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED
        assert caught.value.message
        assert caught.value.violations == []


async def test_an_upload_whose_refusal_grpc_lost_is_named_by_its_key(
    api: RunningApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """grpcio's asyncio client can report INTERNAL "Internal error from Core" when the api refused
    an upload before its last chunk (grpc/grpc#36066): the client asks the api whether the key is
    good, so a wrong key is still UNAUTHENTICATED, and a good one gets a message that says what
    happened."""
    picture = tmp_path / "a.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    lost = grpc.aio.AioRpcError(
        grpc.StatusCode.INTERNAL,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(),
        details="Internal error from Core",
        debug_error_string="",
    )

    async def cut_short(*args: Any, **kwargs: Any) -> None:
        raise lost

    _, key = await api.new_key()
    errors: dict[str, KairosError] = {}
    for name, used in (("wrong", "kairos_not-a-real-key"), ("good", key)):
        async with KairosClient(api.target, used) as client:
            monkeypatch.setattr(client.media_stub, "UploadMedia", cut_short)
            with pytest.raises(KairosError) as caught:
                await client.upload_media(picture)
            errors[name] = caught.value
    assert errors["wrong"].code == grpc.StatusCode.UNAUTHENTICATED
    assert errors["good"].code == grpc.StatusCode.INTERNAL
    assert errors["good"].message.startswith("the api ended the upload before the whole file")


async def test_another_tenants_post_is_not_found(api: RunningApi) -> None:
    _, key = await api.new_key()
    _, other_key = await api.new_key()
    async with KairosClient(api.target, key) as mine, KairosClient(api.target, other_key) as other:
        account = await mine.connect_account(sandbox_account())
        post = await mine.create_post(draft(account.id))
        with pytest.raises(KairosError) as caught:
            await other.get_post(post.id)
    assert caught.value.code == grpc.StatusCode.NOT_FOUND


async def test_field_violations_are_decoded(api: RunningApi) -> None:
    _, key = await api.new_key()
    async with KairosClient(api.target, key) as client:
        with pytest.raises(KairosError) as caught:
            await client.create_post(
                posts_pb2.CreatePostRequest(
                    content="x", targets=[posts_pb2.TargetSpec(account_id=UNKNOWN_ID)]
                )
            )
    error = caught.value
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.violations == [("targets[0].account_id", f"account {UNKNOWN_ID} not found")]
    assert str(error).startswith("INVALID_ARGUMENT: ")


async def test_a_client_that_is_not_open_says_so(api: RunningApi) -> None:
    client = KairosClient(api.target, "key")
    with pytest.raises(RuntimeError, match="async with"):
        await client.get_stats()


# --- against a scripted server ----------------------------------------------------------------


@dataclass
class Script:
    """What the scripted GetStats answers: codes to fail with first, then OK."""

    failures: list[grpc.StatusCode] = field(default_factory=list)
    delay: float = 0.0
    calls: list[float] = field(default_factory=list)
    metadata: list[tuple[str, Any]] = field(default_factory=list)


def scripted_get_stats(script: Script) -> Any:
    """A PostsService whose only method, GetStats, follows the script."""

    async def get_stats(
        request: posts_pb2.GetStatsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> posts_pb2.GetStatsResponse:
        script.calls.append(time.monotonic())
        script.metadata = list(context.invocation_metadata() or ())
        if script.delay:
            await asyncio.sleep(script.delay)
        if script.failures:
            await context.abort(script.failures.pop(0), "scripted failure")
        return posts_pb2.GetStatsResponse(due_next_hour=7)

    handler = grpc.unary_unary_rpc_method_handler(
        get_stats,
        request_deserializer=posts_pb2.GetStatsRequest.FromString,
        response_serializer=posts_pb2.GetStatsResponse.SerializeToString,
    )
    return grpc.method_handlers_generic_handler(
        "kairos.posts.v1.PostsService", {"GetStats": handler}
    )


@asynccontextmanager
async def scripted_server(script: Script, port: int = 0) -> AsyncIterator[str]:
    async with serving([scripted_get_stats(script)], port) as target:
        yield target


@asynccontextmanager
async def serving(handlers: list[Any], port: int = 0) -> AsyncIterator[str]:
    """A gRPC server of `handlers` on 127.0.0.1; its target."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(handlers)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    try:
        yield f"127.0.0.1:{bound}"
    finally:
        await server.stop(None)


async def test_metadata_carries_the_key_and_the_client_name() -> None:
    script = Script()
    async with scripted_server(script) as target, KairosClient(target, "k-123") as client:
        assert (await client.get_stats()).due_next_hour == 7
    sent = dict(script.metadata)
    assert sent["authorization"] == "Bearer k-123"
    assert "kairos-client/" in sent["user-agent"]


async def test_unavailable_is_retried_with_growing_jittered_waits() -> None:
    script = Script(failures=[grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE])
    async with (
        scripted_server(script) as target,
        KairosClient(target, "k", retries=3, backoff_base=0.2) as client,
    ):
        stats = await client.get_stats()

    assert stats.due_next_hour == 7
    assert len(script.calls) == 3
    first_wait, second_wait = (b - a for a, b in zip(script.calls, script.calls[1:], strict=False))
    assert 0.09 <= first_wait < 0.5  # between half and all of 0.2 s, plus scheduling
    assert 0.19 <= second_wait < 0.8  # between half and all of 0.4 s


async def test_a_server_sent_cancelled_is_retried() -> None:
    script = Script(failures=[grpc.StatusCode.CANCELLED])
    async with (
        scripted_server(script) as target,
        KairosClient(target, "k", backoff_base=0.01) as client,
    ):
        assert (await client.get_stats()).due_next_hour == 7
    assert len(script.calls) == 2


async def test_calls_in_flight_when_the_server_stops_go_through_the_next_one() -> None:
    """A stopping gRPC server answers CANCELLED to the calls it had received but not yet handed
    to a handler (grpc/grpc#41785), whatever its grace: with calls flowing, nearly every caller
    has one. The client retries them like UNAVAILABLE, so a restart fails none."""
    port = free_port()
    done = 0
    stop = asyncio.Event()

    async def calling(client: KairosClient) -> None:
        nonlocal done
        while not stop.is_set():
            assert (await client.get_stats()).due_next_hour == 7
            done += 1

    async with KairosClient(f"127.0.0.1:{port}", "k", timeout=10, retries=20) as client:
        first = grpc.aio.server()
        first.add_generic_rpc_handlers([scripted_get_stats(Script())])
        first.add_insecure_port(f"127.0.0.1:{port}")
        await first.start()
        callers = asyncio.gather(*(calling(client) for _ in range(50)))
        await asyncio.sleep(0.5)
        before = done
        await first.stop(5)
        async with serving([scripted_get_stats(Script())], port):
            await asyncio.sleep(0.5)
            stop.set()
            await callers  # raises the first KairosError, if any

    assert before > 0
    assert done > before


async def test_unavailable_is_raised_once_the_retries_are_spent() -> None:
    script = Script(failures=[grpc.StatusCode.UNAVAILABLE] * 5)
    async with (
        scripted_server(script) as target,
        KairosClient(target, "k", retries=2, backoff_base=0.01) as client,
    ):
        with pytest.raises(KairosError) as caught:
            await client.get_stats()

    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    assert len(script.calls) == 3


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.ABORTED,
    ],
)
async def test_other_codes_are_never_retried(code: grpc.StatusCode) -> None:
    script = Script(failures=[code])
    async with (
        scripted_server(script) as target,
        KairosClient(target, "k", backoff_base=0.01) as client,
    ):
        with pytest.raises(KairosError) as caught:
            await client.get_stats()

    assert caught.value.code == code
    assert caught.value.message == "scripted failure"
    assert len(script.calls) == 1


async def test_the_deadline_is_honoured_and_not_retried() -> None:
    script = Script(delay=3.0)
    async with scripted_server(script) as target, KairosClient(target, "k", timeout=0.3) as client:
        started = time.monotonic()
        with pytest.raises(KairosError) as caught:
            await client.get_stats()
        elapsed = time.monotonic() - started

    assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert 0.25 <= elapsed < 1.5
    assert len(script.calls) == 1


async def test_a_per_call_timeout_overrides_the_default() -> None:
    script = Script(delay=0.5)
    async with scripted_server(script) as target, KairosClient(target, "k", timeout=0.1) as client:
        assert (await client.get_stats(timeout=5)).due_next_hour == 7


async def test_a_server_that_starts_a_moment_later_is_reached() -> None:
    port = free_port()
    script = Script()
    async with KairosClient(
        f"127.0.0.1:{port}", "k", timeout=10, retries=8, backoff_base=0.1
    ) as client:
        call = asyncio.create_task(client.get_stats())
        await asyncio.sleep(0.6)
        assert not call.done()  # refused connections, retried
        async with scripted_server(script, port):
            stats = await asyncio.wait_for(call, timeout=10)

    assert stats.due_next_hour == 7
    assert len(script.calls) == 1


async def test_retries_stop_at_the_deadline() -> None:
    port = free_port()  # nothing listens
    async with KairosClient(
        f"127.0.0.1:{port}", "k", timeout=0.5, retries=100, backoff_base=0.05, backoff_cap=0.1
    ) as client:
        started = time.monotonic()
        with pytest.raises(KairosError) as caught:
            await client.get_stats()
        elapsed = time.monotonic() - started

    assert caught.value.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert elapsed < 1.5


# --- a request that was committed, then answered UNAVAILABLE ------------------------------------


def committing_proxy(
    upstream: grpc.aio.Channel, received: list[Message], *, drop_first: bool = True
) -> list[Any]:
    """CreatePost, BatchCreatePosts and ConnectAccount passed on to the real api, which commits
    them (and ValidatePost, which commits nothing); with
    `drop_first`, the first answer of each is replaced by UNAVAILABLE, as when a connection drops
    after the commit."""
    posts = posts_pb2_grpc.PostsServiceStub(upstream)
    accounts = posts_pb2_grpc.AccountsServiceStub(upstream)

    def passing_on(rpc: Any) -> Any:
        async def handle(request: Message, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            first = not any(type(seen) is type(request) for seen in received)
            received.append(request)
            key = dict(context.invocation_metadata() or ())["authorization"]
            reply = await rpc(request, metadata=(("authorization", key),), timeout=10)
            if first and drop_first:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "connection lost after commit")
            return reply

        return handle

    create = grpc.unary_unary_rpc_method_handler(
        passing_on(posts.CreatePost),
        request_deserializer=posts_pb2.CreatePostRequest.FromString,
        response_serializer=posts_pb2.CreatePostResponse.SerializeToString,
    )
    batch = grpc.unary_unary_rpc_method_handler(
        passing_on(posts.BatchCreatePosts),
        request_deserializer=posts_pb2.BatchCreatePostsRequest.FromString,
        response_serializer=posts_pb2.BatchCreatePostsResponse.SerializeToString,
    )
    validate = grpc.unary_unary_rpc_method_handler(
        passing_on(posts.ValidatePost),
        request_deserializer=posts_pb2.ValidatePostRequest.FromString,
        response_serializer=posts_pb2.ValidatePostResponse.SerializeToString,
    )
    connect = grpc.unary_unary_rpc_method_handler(
        passing_on(accounts.ConnectAccount),
        request_deserializer=posts_pb2.ConnectAccountRequest.FromString,
        response_serializer=posts_pb2.ConnectAccountResponse.SerializeToString,
    )
    return [
        grpc.method_handlers_generic_handler(
            "kairos.posts.v1.PostsService",
            {"CreatePost": create, "BatchCreatePosts": batch, "ValidatePost": validate},
        ),
        grpc.method_handlers_generic_handler(
            "kairos.posts.v1.AccountsService", {"ConnectAccount": connect}
        ),
    ]


@asynccontextmanager
async def through_a_proxy(
    api: RunningApi,
) -> AsyncIterator[tuple[KairosClient, KairosClient, list[Message]]]:
    """A client of a new key through `committing_proxy` (which drops the first answer), a client
    of the same key straight to the api, and the requests the proxy passed on."""
    _, key = await api.new_key()
    received: list[Message] = []
    async with (
        grpc.aio.insecure_channel(api.target) as upstream,
        serving(committing_proxy(upstream, received)) as proxy,
        KairosClient(proxy, key, backoff_base=0.01) as through,
        KairosClient(api.target, key) as direct,
    ):
        yield through, direct, received


async def test_a_create_retried_after_its_commit_makes_one_post(api: RunningApi) -> None:
    async with through_a_proxy(api) as (through_proxy, direct, received):
        account = await direct.connect_account(sandbox_account())
        request = draft(account.id)
        created = await through_proxy.create_post(request)
        listed = await direct.list_posts()

    assert [post.id for post in listed.posts] == [created.id]
    first, second = received
    assert isinstance(first, posts_pb2.CreatePostRequest)
    assert first.request_id
    assert first == second  # the retry sent the same request_id
    assert request.request_id == ""  # the caller's request is left as it was


async def test_a_batch_retried_after_its_commit_makes_each_post_once(api: RunningApi) -> None:
    async with through_a_proxy(api) as (through_proxy, direct, received):
        account = await direct.connect_account(sandbox_account())
        items = [draft(account.id, f"batch {n}") for n in range(3)]
        items.append(draft("not-an-id"))
        results = await through_proxy.batch_create_posts(items)
        checked = await direct.batch_create_posts(items[:1], validate_only=True)
        listed = await direct.list_posts()

    assert sorted(post.id for post in listed.posts) == sorted(r.post.id for r in results[:3])
    assert [v.field for v in results[3].violations] == ["items[3].targets[0].account_id"]
    first, second = received
    assert isinstance(first, posts_pb2.BatchCreatePostsRequest)
    assert first == second  # the retry sent the same request_ids
    assert all(item.request_id for item in first.items)
    assert all(not item.request_id for item in items)  # the caller's items are left as they were
    assert checked[0].post.content == "batch 0"
    assert checked[0].post.id == ""  # validated, not created: no request_id was added


async def test_a_validate_answered_unavailable_is_asked_again(api: RunningApi) -> None:
    async with through_a_proxy(api) as (through_proxy, direct, received):
        account = await direct.connect_account(sandbox_account())
        request = draft(account.id, "a" * 100_001)
        checked = await through_proxy.validate_post(request)
        listed = await direct.list_posts()

    assert [(t.account_id, t.length, t.max_length) for t in checked.targets] == [
        (account.id, 100_001, 100_000)  # the sandbox counts code points
    ]
    assert [v.field for v in checked.violations] == ["content"]
    first, second = received
    assert first == second == posts_pb2.ValidatePostRequest(post=request)
    assert request.request_id == ""  # a validate needs no request_id: nothing is created
    assert list(listed.posts) == []


async def test_a_callers_request_id_is_sent_as_given(api: RunningApi) -> None:
    async with through_a_proxy(api) as (client, direct, received):
        account = await direct.connect_account(sandbox_account())
        request = draft(account.id)
        request.request_id = "import-42"
        created = await client.create_post(request)
        again = await client.create_post(request)

    assert again.id == created.id
    assert received == [request] * 3  # committed, retried, repeated: always "import-42"


async def test_a_connect_answered_unavailable_after_its_commit_is_not_sent_again(
    api: RunningApi,
) -> None:
    async with through_a_proxy(api) as (client, direct, received):
        with pytest.raises(KairosError) as caught:
            await client.connect_account(sandbox_account())
        accounts = await direct.list_accounts()

    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    assert len(received) == 1
    assert len(accounts) == 1  # connected once: the caller can find it instead of a duplicate


async def test_a_redelivery_answered_unavailable_is_not_sent_again() -> None:
    """RedeliverWebhook is not safe to repeat: a redelivery that went through before the
    connection dropped would be sent a second time."""
    received: list[str] = []

    async def redeliver(
        request: webhooks_pb2.RedeliverWebhookRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> webhooks_pb2.RedeliverWebhookResponse:
        received.append(request.delivery_id)
        await context.abort(grpc.StatusCode.UNAVAILABLE, "connection lost after commit")

    handler = grpc.unary_unary_rpc_method_handler(
        redeliver,
        request_deserializer=webhooks_pb2.RedeliverWebhookRequest.FromString,
        response_serializer=webhooks_pb2.RedeliverWebhookResponse.SerializeToString,
    )
    webhooks = grpc.method_handlers_generic_handler(
        "kairos.posts.v1.WebhooksService", {"RedeliverWebhook": handler}
    )
    async with (
        serving([webhooks]) as target,
        KairosClient(target, "k", retries=3, backoff_base=0.01) as client,
    ):
        with pytest.raises(KairosError) as caught:
            await client.redeliver_webhook(UNKNOWN_ID)

    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    assert received == [UNKNOWN_ID]


async def test_a_connect_reaches_an_api_that_starts_a_moment_later(api: RunningApi) -> None:
    _, key = await api.new_key()
    port = free_port()
    received: list[Message] = []
    async with (
        grpc.aio.insecure_channel(api.target) as upstream,
        KairosClient(f"127.0.0.1:{port}", key, timeout=10) as client,
    ):
        call = asyncio.create_task(client.connect_account(sandbox_account()))
        await asyncio.sleep(0.6)
        assert not call.done()  # waiting for the channel, nothing sent yet
        async with serving(committing_proxy(upstream, received, drop_first=False), port):
            account = await asyncio.wait_for(call, timeout=10)

    assert len(received) == 1
    assert account.handle.startswith("@client-")


class RecordingClient(KairosClient):
    """Records the reconnect attempt of each backoff, and waits none."""

    def __init__(self, target: str) -> None:
        super().__init__(target, "k")
        self.attempts: list[int] = []

    def _backoff(self, attempt: int) -> float:
        self.attempts.append(attempt)
        return 0.0


def scripted_watch(
    rounds: list[list[str]], failure: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE
) -> Any:
    """An EventsService whose WatchEvents, on each call, sends the next round's responses (a
    heartbeat or an event), then fails with `failure`; the last round ends the stream."""
    cursors = iter(range(1, 1000))

    async def watch_events(
        request: events_pb2.WatchEventsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[events_pb2.WatchEventsResponse]:
        responses = rounds.pop(0)
        for kind in responses:
            cursor = f"v1.{next(cursors)}"
            if kind == "event":
                event = lifecycle_pb2.LifecycleEvent(event_id=cursor)
                yield events_pb2.WatchEventsResponse(event=event, cursor=cursor)
            else:
                beat = events_pb2.WatchHeartbeat()
                yield events_pb2.WatchEventsResponse(heartbeat=beat, cursor=cursor)
        if rounds:
            await context.abort(failure, "scripted failure")

    handler = grpc.unary_stream_rpc_method_handler(
        watch_events,
        request_deserializer=events_pb2.WatchEventsRequest.FromString,
        response_serializer=events_pb2.WatchEventsResponse.SerializeToString,
    )
    return grpc.method_handlers_generic_handler(
        "kairos.posts.v1.EventsService", {"WatchEvents": handler}
    )


async def test_a_watch_cancelled_by_the_server_reconnects_from_its_cursor() -> None:
    rounds = [["heartbeat", "event"], ["heartbeat", "event"]]
    async with (
        serving([scripted_watch(rounds, grpc.StatusCode.CANCELLED)]) as target,
        RecordingClient(target) as client,
    ):
        request = events_pb2.WatchEventsRequest(follow=True)
        received = [r async for r in client.watch_events(request, reconnect=True)]

    assert [r.cursor for r in received if r.HasField("event")] == ["v1.2", "v1.4"]
    assert client.attempts == [0]


async def test_a_watch_that_fails_after_its_opening_heartbeat_backs_off_further() -> None:
    """Only an event (or a stream that stayed up a while) resets the reconnect backoff: a
    stream that opens and fails at once does not reconnect ever faster."""
    beat, event = ["heartbeat"], ["heartbeat", "event"]
    rounds = [beat, beat, beat, event, beat, beat]
    async with serving([scripted_watch(rounds)]) as target, RecordingClient(target) as client:
        request = events_pb2.WatchEventsRequest(follow=True)
        received = [r async for r in client.watch_events(request, reconnect=True)]

    assert len(received) == 7
    assert client.attempts == [0, 1, 2, 0, 1]
