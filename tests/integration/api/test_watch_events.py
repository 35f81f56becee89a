"""WatchEvents against a real nats-server: the tenant's events only, filtered, resumable from a
cursor, ending when not following, and refusing bad cursors by name."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from integration.api.helpers_posts import fields, refused
from integration.api.test_dispatch_service import begin, claim_one, complete, connect, post_due
from nats.aio.msg import Msg

from kairos.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from kairos.events.v1 import events_pb2
from kairos.posts.v1 import events_pb2 as watch_pb2
from kairos.posts.v1 import events_pb2_grpc as watch_pb2_grpc
from kairos.posts.v1 import posts_pb2
from kairos_api.service_layer import watch as watch_module
from kairos_api.service_layer.keys import revoke_key
from kairos_api.service_layer.relay import subject_of
from kairos_api.service_layer.watch import FETCH_BATCH, MAX_WATCHES_PER_TENANT
from kairos_common.streams import EVENTS_STREAM
from kairos_common.streams import connect as connect_nats
from support.api import Client, RunningApi, api_settings, running_api
from support.nats_server import NatsServer
from support.postgres import fresh_database

CREATED = events_pb2.LIFECYCLE_EVENT_TYPE_CREATED
DELETED = events_pb2.LIFECYCLE_EVENT_TYPE_DELETED
PUBLISHED = events_pb2.LIFECYCLE_EVENT_TYPE_PUBLISHED
Response = watch_pb2.WatchEventsResponse


def timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


@pytest.fixture(scope="module")
async def watch_api(
    own_nats: NatsServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningApi]:
    """An api on PostgreSQL with a nats-server of this module's own (a test purges its stream)."""
    async with (
        fresh_database("postgresql", tmp_path_factory.mktemp("watch")) as url,
        running_api(api_settings(url, KAIROS_NATS_URL=own_nats.url)) as running,
    ):
        yield running


async def soon(check: Callable[[], Awaitable[bool]], timeout: float = 10) -> None:
    """Wait until `check()` holds; TimeoutError after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while True:
            if await check():
                return
            await asyncio.sleep(0.05)


def sequence(cursor: str) -> int:
    return int(cursor.removeprefix("v1."))


async def stream_last(server: NatsServer) -> int:
    """The sequence of the last event stored in KAIROS_EVENTS."""
    client = await connect_nats(server.url, name="watch-test-last")
    try:
        return int((await client.jetstream().stream_info(EVENTS_STREAM)).state.last_seq)
    finally:
        await client.close()


async def publish_raw(server: NatsServer, subject: str, *events: events_pb2.LifecycleEvent) -> int:
    """Publish events straight to the stream, as the relay would (or an old one did); the
    sequence of the last."""
    client = await connect_nats(server.url, name="watch-test-publish")
    try:
        js = client.jetstream()
        acks = [await js.publish(subject, event.SerializeToString()) for event in events]
        return acks[-1].seq
    finally:
        await client.close()


@asynccontextmanager
async def tenant(api: RunningApi, name: str | None = None) -> AsyncIterator[Client]:
    async with api.client(name) as client:
        yield client


def events_stub(client: Client) -> watch_pb2_grpc.EventsServiceAsyncStub:
    return watch_pb2_grpc.EventsServiceStub(client.channel)


async def draft(client: Client, account_id: str, content: str) -> str:
    reply = await client.posts.CreatePost(
        posts_pb2.CreatePostRequest(
            content=content, targets=[posts_pb2.TargetSpec(account_id=account_id)]
        ),
        metadata=client.metadata,
    )
    return reply.post.id


async def delete(client: Client, post_id: str) -> None:
    await client.posts.DeletePost(
        posts_pb2.DeletePostRequest(post_id=post_id), metadata=client.metadata
    )


class Watcher:
    """One WatchEvents call, its responses collected as they arrive."""

    def __init__(self, client: Client, request: watch_pb2.WatchEventsRequest) -> None:
        self.call = events_stub(client).WatchEvents(request, metadata=client.metadata)
        self.responses: list[Response] = []
        self.opened = asyncio.Event()
        self.arrived = asyncio.Event()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for response in self.call:
            self.responses.append(response)
            self.opened.set()
            self.arrived.set()

    @property
    def events(self) -> list[events_pb2.LifecycleEvent]:
        return [r.event for r in self.responses if r.HasField("event")]

    async def until(self, count: int, timeout: float = 15.0) -> list[events_pb2.LifecycleEvent]:
        async with asyncio.timeout(timeout):
            while len(self.events) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.events

    async def close(self) -> None:
        self.call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


@asynccontextmanager
async def watching(client: Client, **fields: object) -> AsyncIterator[Watcher]:
    request = watch_pb2.WatchEventsRequest(follow=True, **fields)  # type: ignore[arg-type]
    watcher = Watcher(client, request)
    try:
        async with asyncio.timeout(10):
            await watcher.opened.wait()
        yield watcher
    finally:
        await watcher.close()


async def read_all(client: Client, **fields: object) -> list[Response]:
    """A watch that does not follow: everything it sends until it ends."""
    request = watch_pb2.WatchEventsRequest(**fields)  # type: ignore[arg-type]
    async with asyncio.timeout(15):
        return [r async for r in events_stub(client).WatchEvents(request, metadata=client.metadata)]


async def test_a_watch_gets_its_tenants_events_once_and_resumes_from_a_cursor(
    watch_api: RunningApi, own_nats: NatsServer
) -> None:
    # `.` and `_` in tenant ids: the second one's naive token would be the first one's escaped.
    mark = uuid.uuid4().hex[:6]
    async with (
        tenant(watch_api, f"w{mark}.eu") as ours,
        tenant(watch_api, f"w{mark}_2Eeu") as theirs,
    ):
        account, their_account = await connect(ours), await connect(theirs)
        async with watching(ours) as watcher:
            start = watcher.responses[0]
            assert start.HasField("heartbeat")
            posts = []
            for n in range(3):
                posts.append(await draft(ours, account, f"ours {n}"))
                await draft(theirs, their_account, f"theirs {n}")
            events = await watcher.until(3)
            await asyncio.sleep(0.5)  # nothing more, in particular nothing of theirs
            assert [e.post_id for e in watcher.events] == posts
            assert {e.tenant_id for e in watcher.events} == {ours.tenant}
            assert [e.type for e in events] == [CREATED] * 3

        # Resume after the first event: the other two, then the stream ends.
        cursors = [r.cursor for r in watcher.responses if r.HasField("event")]
        rest = await read_all(ours, cursor=cursors[0])
        assert [r.event.post_id for r in rest if r.HasField("event")] == posts[1:]
        assert rest[0].HasField("heartbeat")
        assert rest[0].cursor == cursors[0]
        assert rest[-1].cursor == cursors[-1]
        # From the starting cursor: all three; from the last: nothing, at once.
        again = await read_all(ours, cursor=start.cursor)
        assert [r.event.post_id for r in again if r.HasField("event")] == posts
        # Nothing of ours after the last: the cursor moves on to where the stream had reached
        # (past their events) when the watch began.
        before = await stream_last(own_nats)
        (nothing,) = await read_all(ours, cursor=cursors[-1])
        assert nothing.HasField("heartbeat")
        assert max(before, sequence(cursors[-1])) <= sequence(nothing.cursor)
        assert sequence(nothing.cursor) <= await stream_last(own_nats)
        # Not following without a cursor starts now, so there is nothing to send.
        assert [r.HasField("heartbeat") for r in await read_all(ours)] == [True]


async def test_filters_by_type_post_and_account(watch_api: RunningApi) -> None:
    async with tenant(watch_api) as ours, grpc.aio.insecure_channel(watch_api.target) as channel:
        dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub = (
            dispatch_pb2_grpc.DispatchServiceStub(channel)
        )
        first, second = await connect(ours), await connect(ours, token="secret-token-2")
        before = datetime.now(UTC)
        one = await draft(ours, first, "one")
        async with (
            watching(ours, types=[DELETED, PUBLISHED]) as by_type,
            watching(ours, account_id=second) as on_second,
            # From an instant: the post's creation whether or not it was relayed yet.
            watching(ours, post_id=one, since=timestamp(before)) as about_one,
        ):
            two = await post_due(ours, second, "two")
            # Published by hand, as the publisher would: an event naming the account.
            delivery = await claim_one(dispatch, two.targets[0].id)
            begun = await begin(dispatch, delivery.delivery_id)
            outcome = dispatch_pb2.AttemptOutcome(
                attempt_id=begun.attempt_id,
                delivery_id=delivery.delivery_id,
                published=dispatch_pb2.Published(platform_post_id="1", url="https://m.e/1"),
                http_status=200,
            )
            await complete(dispatch, outcome)
            await draft(ours, first, "three")
            await delete(ours, one)
            assert [(e.type, e.post_id) for e in await by_type.until(2)] == [
                (PUBLISHED, two.id),
                (DELETED, one),
            ]
            assert [(e.type, e.post_id) for e in await on_second.until(1)] == [(PUBLISHED, two.id)]
            assert [(e.type, e.post_id) for e in await about_one.until(2)] == [
                (CREATED, one),
                (DELETED, one),
            ]
            await asyncio.sleep(0.5)
            assert len(by_type.events) == 2
            assert len(on_second.events) == 1
            assert len(about_one.events) == 2
        # A filtered watch that does not follow ends on a cursor past what it left out.
        origin = about_one.responses[0].cursor
        responses = await read_all(ours, cursor=origin, post_id=one)
        assert [r.event.type for r in responses if r.HasField("event")] == [CREATED, DELETED]
        everything = await read_all(ours, cursor=origin)
        assert responses[-1].cursor == everything[-1].cursor
        assert len(everything) > len(responses)


async def test_bad_requests_name_their_field(watch_api: RunningApi) -> None:
    async with tenant(watch_api) as ours:

        async def refusal(code: grpc.StatusCode, **fields: object) -> grpc.aio.AioRpcError:
            return await refused(read_all(ours, **fields), code)

        bad = grpc.StatusCode.INVALID_ARGUMENT
        assert fields(await refusal(bad, cursor="42")) == ["cursor"]
        assert fields(await refusal(bad, cursor="v1.999999999")) == ["cursor"]
        since = posts_pb2.Post().created_at
        assert fields(await refusal(bad, cursor="v1.1", since=since)) == ["since"]
        assert fields(await refusal(bad, types=[CREATED, 0, 99])) == ["types[1]", "types[2]"]
        assert fields(await refusal(bad, post_id="nope", account_id="x")) == [
            "post_id",
            "account_id",
        ]
        assert fields(await refusal(bad, heartbeat_seconds=301)) == ["heartbeat_seconds"]
        stub = events_stub(ours).WatchEvents(watch_pb2.WatchEventsRequest())
        with pytest.raises(grpc.aio.AioRpcError) as unauthenticated:
            [r async for r in stub]
        assert unauthenticated.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_cursor_older_than_the_stream_keeps_is_refused_saying_so(
    watch_api: RunningApi, own_nats: NatsServer
) -> None:
    async with tenant(watch_api) as ours:
        account = await connect(ours)
        async with watching(ours) as watcher:
            await draft(ours, account, "soon gone")
            await watcher.until(1)
        old = watcher.responses[0].cursor
        client = await connect_nats(own_nats.url, name="watch-test-purge")
        try:
            await client.jetstream().purge_stream(EVENTS_STREAM)
        finally:
            await client.close()
        error = await refused(read_all(ours, cursor=old), grpc.StatusCode.FAILED_PRECONDITION)
        sequence = int(old.removeprefix("v1."))
        assert f"from {sequence + 1:,}" in (error.details() or "")
        assert "no longer kept" in (error.details() or "")


async def test_a_watch_that_goes_away_leaves_no_consumer(
    watch_api: RunningApi, own_nats: NatsServer
) -> None:
    client = await connect_nats(own_nats.url, name="watch-test-consumers")
    js = client.jetstream()
    try:
        before = (await js.stream_info(EVENTS_STREAM)).state.consumer_count
        async with tenant(watch_api) as ours, watching(ours), watching(ours):
            assert (await js.stream_info(EVENTS_STREAM)).state.consumer_count == before + 2

        async def all_gone() -> bool:
            return (await js.stream_info(EVENTS_STREAM)).state.consumer_count == before

        await soon(all_gone)
    finally:
        await client.close()


async def test_nats_away_ends_the_watch_with_unavailable(tmp_path: Path) -> None:
    own = NatsServer()
    own.start()
    try:
        async with fresh_database("sqlite", tmp_path) as url:
            settings = api_settings(url, KAIROS_NATS_URL=own.url)
            async with running_api(settings) as api, tenant(api) as ours:

                async def relaying() -> bool:
                    return api.service.relay is not None

                await soon(relaying)
                request = watch_pb2.WatchEventsRequest(follow=True, heartbeat_seconds=1)
                watcher = Watcher(ours, request)
                await watcher.opened.wait()
                own.stop()
                with pytest.raises(grpc.aio.AioRpcError) as ended:
                    async with asyncio.timeout(10):
                        await watcher.task
                assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
                assert "NATS" in (ended.value.details() or "")
                error = await refused(read_all(ours), grpc.StatusCode.UNAVAILABLE)
                assert "not connected to NATS" in (error.details() or "")
                # Back, so that the api stops as usual (closing a lost connection raises).
                own.start()

                async def connected() -> bool:
                    return api.service.nc is not None and api.service.nc.is_connected

                await soon(connected)
    finally:
        own.close()


async def test_a_client_that_does_not_read_holds_back_the_api_not_its_memory(
    watch_api: RunningApi, own_nats: NatsServer
) -> None:
    """Events published faster than the client reads: the api pulls from NATS only as gRPC
    takes what it sends, so the consumer stays near the client, and nothing is lost."""
    count = 3000
    async with tenant(watch_api) as ours:
        client = await connect_nats(own_nats.url, name="watch-test-flood")
        js = client.jetstream()
        try:
            subject = subject_of(ours.tenant, "failed")
            start = (await js.stream_info(EVENTS_STREAM)).state.last_seq
            for n in range(count):
                event = events_pb2.LifecycleEvent(
                    event_id=str(uuid.uuid4()), tenant_id=ours.tenant, detail=f"{n} " + "x" * 990
                )
                await js.publish(subject, event.SerializeToString())
            # No growing flow-control window: what gRPC buffers stays small and fixed.
            options = [("grpc.http2.bdp_probe", 0)]
            async with grpc.aio.insecure_channel(watch_api.target, options=options) as channel:
                call = watch_pb2_grpc.EventsServiceStub(channel).WatchEvents(
                    watch_pb2.WatchEventsRequest(cursor=f"v1.{start}", follow=True),
                    metadata=ours.metadata,
                )
                stream = aiter(call)
                assert (await anext(stream)).HasField("heartbeat")
                await asyncio.sleep(1.0)  # the api sends what the window takes, then waits
                (watch,) = [
                    info
                    for info in await js.consumers_info(EVENTS_STREAM)
                    if info.config.description == f"WatchEvents of {ours.tenant}"
                ]
                # One batch pulled and sent, the next one pulled and waiting on gRPC at most.
                assert watch.delivered is not None
                assert watch.delivered.stream_seq - start <= 2 * FETCH_BATCH, watch.delivered
                details: list[str] = []
                async with asyncio.timeout(30):
                    while len(details) < count:
                        response = await anext(stream)
                        if response.HasField("event"):
                            details.append(response.event.detail.split(" ")[0])
                call.cancel()
            assert details == [str(n) for n in range(count)]
        finally:
            await client.close()


async def test_heartbeats_keep_a_quiet_stream_alive_and_move_past_what_is_left_out(
    watch_api: RunningApi,
) -> None:
    async with tenant(watch_api) as ours:
        account = await connect(ours)
        nobody = str(uuid.uuid4())
        async with watching(ours, post_id=nobody, heartbeat_seconds=1) as watcher:
            start = watcher.responses[0].cursor
            post = await draft(ours, account, "not watched")

            async def moved() -> bool:
                return watcher.responses[-1].cursor != start

            await soon(moved)
            assert all(r.HasField("heartbeat") for r in watcher.responses)
        # The heartbeat's cursor is the one after the event it left out.
        (created,) = [r for r in await read_all(ours, cursor=start) if r.HasField("event")]
        assert created.event.post_id == post
        assert watcher.responses[-1].cursor == created.cursor


async def test_a_tenant_may_hold_only_so_many_watches(watch_api: RunningApi) -> None:
    feed = watch_api.service.feed
    feed.max_per_tenant = 2
    try:
        async with tenant(watch_api) as ours, tenant(watch_api) as other:
            async with watching(ours), watching(ours):
                error = await refused(read_all(ours), grpc.StatusCode.RESOURCE_EXHAUSTED)
                assert error.details() == (
                    "2 watches of this tenant are open on this api, the most allowed; end one first"
                )
                # Another tenant is not held back by this one.
                assert len(await read_all(other)) == 1

            async def admitted() -> bool:
                try:
                    return len(await read_all(ours)) == 1
                except grpc.aio.AioRpcError as error:
                    if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                        raise
                    return False

            # Ended (the api sees the cancel a moment later), they count no more.
            await soon(admitted)
    finally:
        feed.max_per_tenant = MAX_WATCHES_PER_TENANT


async def test_a_quiet_watchs_cursor_moves_past_other_tenants_events(
    watch_api: RunningApi, own_nats: NatsServer
) -> None:
    """Heartbeats carry the cursor past the events the tenant filter leaves out, so a quiet
    watcher's cursor is not left behind while the stream drops old events."""
    async with tenant(watch_api) as ours:
        async with watching(ours, heartbeat_seconds=1) as watcher:
            others = [
                events_pb2.LifecycleEvent(event_id=str(uuid.uuid4()), tenant_id="someone-else")
                for _ in range(3)
            ]
            last = await publish_raw(own_nats, subject_of("someone-else", "failed"), *others)

            async def moved() -> bool:
                return sequence(watcher.responses[-1].cursor) >= last

            await soon(moved)
            assert watcher.responses[-1].cursor == f"v1.{last}"
            assert all(r.HasField("heartbeat") for r in watcher.responses)
        # Those events dropped (as KAIROS_EVENTS' max age would): the cursor is still good.
        client = await connect_nats(own_nats.url, name="watch-test-purge")
        try:
            await client.jetstream().purge_stream(EVENTS_STREAM)
        finally:
            await client.close()
        resumed = await read_all(ours, cursor=f"v1.{last}")
        assert [r.cursor for r in resumed] == [f"v1.{last}"]


async def test_a_revoked_key_ends_its_watch(
    watch_api: RunningApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watch_module, "RECHECK_EVERY", 0.2)
    async with tenant(watch_api) as ours:
        request = watch_pb2.WatchEventsRequest(follow=True, heartbeat_seconds=300)
        watcher = Watcher(ours, request)
        await watcher.opened.wait()
        await revoke_key(watch_api.service.app.uow(), ours.key)
        watch_api.service.app.keys.forget()  # as if its cache entry had run out
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            async with asyncio.timeout(5):
                await watcher.task
        assert ended.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert ended.value.details() == "the API key is unknown or revoked"
        assert len(watcher.responses) == 1


async def test_events_of_the_old_subject_layout_are_not_a_tenant_called_posts(
    watch_api: RunningApi, own_nats: NatsServer
) -> None:
    """Before the subjects named the tenant, events went to `kairos.events.post.<event>`: the
    subjects of a tenant called `post` now. The watch checks the event's tenant too."""
    async with tenant(watch_api, "post") as post:
        account = await connect(post)
        async with watching(post) as watcher:
            old = events_pb2.LifecycleEvent(
                event_id=str(uuid.uuid4()),
                tenant_id="someone-else",
                post_id=str(uuid.uuid4()),
                type=CREATED,
            )
            await publish_raw(own_nats, "kairos.events.post.created", old)
            ours = await draft(post, account, "ours")
            assert [(e.tenant_id, e.post_id) for e in await watcher.until(1)] == [("post", ours)]


async def test_since_is_when_events_happened(watch_api: RunningApi, own_nats: NatsServer) -> None:
    """`since` keeps to when an event happened, though NATS stored it later (a relay that
    caught up after a pause)."""
    async with tenant(watch_api) as ours:
        account = await connect(ours)
        since = datetime.now(UTC)
        late = events_pb2.LifecycleEvent(
            event_id=str(uuid.uuid4()), tenant_id=ours.tenant, post_id=str(uuid.uuid4())
        )
        late.occurred_at.FromDatetime(since - timedelta(seconds=1))
        await publish_raw(own_nats, subject_of(ours.tenant, "created"), late)
        async with watching(ours, since=timestamp(since)) as watcher:
            post = await draft(ours, account, "after")
            assert [e.post_id for e in await watcher.until(1)] == [post]
            assert len(watcher.events) == 1


async def test_a_message_the_subscription_lost_is_read_again(
    watch_api: RunningApi, own_nats: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message dropped between NATS and the watch (a slow subscription's) shows as a gap in
    the consumer's delivery numbers: the watch opens its consumer again from its cursor, so the
    client still gets every event once, in order."""
    real_open = watch_module._Reader.open
    lost: list[int] = []

    async def open_losing_one(reader: watch_module._Reader, after: int | None) -> tuple[int, int]:
        opened = await real_open(reader, after)
        subscription = reader.subscription
        assert subscription is not None
        real_fetch = subscription.fetch

        async def fetch(
            batch: int = 1, timeout: float | None = 5, heartbeat: float | None = None
        ) -> list[Msg]:
            messages = await real_fetch(batch, timeout=timeout)
            if not lost and len(messages) >= 2:
                lost.append(messages[1].metadata.sequence.stream)
                return [messages[0], *messages[2:]]
            return messages

        subscription.fetch = fetch  # type: ignore[method-assign]
        return opened

    monkeypatch.setattr(watch_module._Reader, "open", open_losing_one)
    async with tenant(watch_api) as ours:
        start = await stream_last(own_nats)
        events = [
            events_pb2.LifecycleEvent(event_id=str(n), tenant_id=ours.tenant) for n in range(5)
        ]
        await publish_raw(own_nats, subject_of(ours.tenant, "failed"), *events)
        responses = await read_all(ours, cursor=f"v1.{start}")
    sent = [r for r in responses if r.HasField("event")]
    assert [r.event.event_id for r in sent] == ["0", "1", "2", "3", "4"]
    # The lost one is the second event, sent once, in its place.
    (lost_sequence,) = lost
    assert [sequence(r.cursor) for r in sent][1] == lost_sequence
    assert sequence(sent[0].cursor) > start
