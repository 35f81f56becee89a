"""A watcher of WatchEvents across api restarts: the api a real process, killed (SIGKILL) and
stopped (SIGTERM) and started again while posts are being made; the watcher, reconnecting from
its last cursor, receives every event of its tenant exactly once, in order, and nobody else's."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from sqlalchemy import select

from kairos.events.v1 import events_pb2
from kairos.posts.v1 import events_pb2 as watch_pb2
from kairos.posts.v1 import posts_pb2, posts_pb2_grpc
from kairos_api.adapters.orm import OutboxEvent
from kairos_api.bootstrap import bootstrap
from kairos_api.service_layer.keys import create_key
from kairos_api.settings import ApiSettings
from kairos_client import KairosClient
from support.nats_server import NatsServer
from support.stack import Stack, running_stack

pytestmark = pytest.mark.e2e


@pytest.fixture
async def stack(own_nats: NatsServer, log_dir: Path) -> AsyncIterator[Stack]:
    # The api alone: the events come from posts made and deleted, nothing is dispatched.
    async with running_stack(own_nats, log_dir, schedulers=0, publishers=0) as running:
        yield running


class Maker:
    """Makes drafts of one tenant and deletes every other one, a call at a time, each sent once:
    a call the api did not answer (it was down) may or may not have been done, and the outbox
    says which."""

    def __init__(self, stack: Stack, key: str, account_id: str) -> None:
        self.stack = stack
        self.metadata = (("authorization", f"Bearer {key}"),)
        self.account_id = account_id
        self.made = 0
        self.failures: list[grpc.StatusCode] = []

    @property
    def posts(self) -> posts_pb2_grpc.PostsServiceAsyncStub:
        return self.stack.posts

    async def make_until(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                reply = await self.posts.CreatePost(
                    posts_pb2.CreatePostRequest(
                        content=f"watch {self.made}",
                        targets=[posts_pb2.TargetSpec(account_id=self.account_id)],
                    ),
                    metadata=self.metadata,
                    timeout=5,
                )
                self.made += 1
                if self.made % 2:
                    await self.posts.DeletePost(
                        posts_pb2.DeletePostRequest(post_id=reply.post.id),
                        metadata=self.metadata,
                        timeout=5,
                    )
            except grpc.aio.AioRpcError as error:
                self.failures.append(error.code())
                await asyncio.sleep(0.05)


async def outbox_ids(stack: Stack, tenant: str) -> tuple[list[str], bool]:
    """The tenant's event ids in the order written, and whether all of them were relayed."""
    app = bootstrap(ApiSettings.from_env(stack.env))
    try:
        async with app.uow() as uow:
            rows = (
                await uow.session.execute(
                    select(OutboxEvent.event_id, OutboxEvent.relayed_at)
                    .where(OutboxEvent.tenant_id == tenant)
                    .order_by(OutboxEvent.seq)
                )
            ).all()
    finally:
        await app.close()
    return [str(event_id) for event_id, _ in rows], all(at is not None for _, at in rows)


async def test_a_watcher_gets_every_event_once_across_api_restarts(stack: Stack) -> None:
    app = bootstrap(ApiSettings.from_env(stack.env))
    ours = f"watch.{uuid.uuid4().hex[:6]}_a"
    theirs = f"watch_{uuid.uuid4().hex[:6]}.b"
    our_key = (await create_key(app.uow(), ours)).key
    their_key = (await create_key(app.uow(), theirs)).key
    await app.close()
    accounts = []
    for key in (our_key, their_key):
        reply = await stack.accounts.ConnectAccount(
            posts_pb2.ConnectAccountRequest(
                platform=posts_pb2.PLATFORM_SANDBOX,
                handle="@sandbox",
                credentials=posts_pb2.Credentials(access_token="t", instance_url=stack.sandbox.url),
            ),
            metadata=(("authorization", f"Bearer {key}"),),
        )
        accounts.append(reply.account.id)
    we, they = Maker(stack, our_key, accounts[0]), Maker(stack, their_key, accounts[1])

    received: list[events_pb2.LifecycleEvent] = []
    opened = asyncio.Event()

    async def watch() -> None:
        request = watch_pb2.WatchEventsRequest(follow=True, heartbeat_seconds=1)
        async with KairosClient(stack.api.env["KAIROS_API_ADDR"], our_key) as client:
            async for response in client.watch_events(request, reconnect=True):
                opened.set()
                if response.HasField("event"):
                    received.append(response.event)

    watcher = asyncio.create_task(watch())
    try:
        async with asyncio.timeout(10):
            await opened.wait()
        # Both tenants keep making posts before, during and after each restart.
        stop = asyncio.Event()
        making = asyncio.gather(we.make_until(stop), they.make_until(stop))
        await asyncio.sleep(0.5)
        await asyncio.to_thread(stack.api.kill)
        stack.api.start()
        await stack.api.wait_serving()
        await asyncio.sleep(0.5)
        # Stopped as usual (SIGTERM) this time: its streams end first, its calls finish.
        assert await asyncio.to_thread(stack.api.terminate) == 0
        stack.api.start()
        await stack.api.wait_serving()
        await asyncio.sleep(0.5)
        stop.set()
        await making

        async with asyncio.timeout(30):
            while True:
                written, all_relayed = await outbox_ids(stack, ours)
                if all_relayed and len(received) >= len(written):
                    break
                await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # a repeated event would have arrived by now
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher

    assert [e.event_id for e in received] == written, stack.logs()
    # Only the api being away failed calls. A stopping gRPC server answers CANCELLED to the calls
    # it had received but not yet handed to a handler (grpc/grpc#41785): the SIGTERM's share.
    away = {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
    }
    assert set(we.failures + they.failures) <= away
    assert {e.tenant_id for e in received} == {ours}
    # Calls were made while the api was away, and many went through.
    assert we.failures
    assert len(written) >= we.made >= 10
