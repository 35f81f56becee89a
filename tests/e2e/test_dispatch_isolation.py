"""Dispatch under configurations of its own: a slow, failing platform beside a healthy one; a
scheduler that only wakes up; a due event redelivered until it is dead-lettered.

Each system here runs with settings that would slow or skew the shared one in test_dispatch.py,
so each has its own; the last one has its own NATS server too, because the publishers' durable
consumers (with their MaxDeliver and AckWait) outlive a system on a shared broker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kairos.events.v1 import events_pb2
from kairos.posts.v1 import posts_pb2
from kairos_common.streams import DUE_STREAM, connect
from kairos_publisher.sandbox_server import SandboxServer, ScriptedAnswer
from support.nats_server import NatsServer
from support.stack import (
    Stack,
    at,
    dead_letters,
    due_of,
    eventually,
    expect_events,
    marker,
    running_stack,
    wait_status,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


# --- a slow and failing platform beside a healthy one -----------------------------------------


async def connect_webhook(stack: Stack, url: str) -> str:
    reply = await stack.accounts.ConnectAccount(
        posts_pb2.ConnectAccountRequest(
            platform=posts_pb2.PLATFORM_WEBHOOK,
            handle="hook",
            credentials=posts_pb2.Credentials(extra={"url": url, "signing_secret": "hook-secret"}),
        ),
        metadata=stack.metadata,
    )
    return reply.account.id


async def schedule_on(stack: Stack, account_id: str, content: str, seconds: float) -> str:
    request = posts_pb2.CreatePostRequest(
        content=content, targets=[posts_pb2.TargetSpec(account_id=account_id)]
    )
    request.schedule.at.CopyFrom(at(seconds))
    return (await stack.posts.CreatePost(request, metadata=stack.metadata)).post.id


async def test_a_slow_failing_platform_never_starves_another(
    nats_server: NatsServer, log_dir: Path
) -> None:
    """Webhook calls that hang 3 s or answer 500, more than its 2 call slots can take, due just
    before a series of sandbox posts: every sandbox post still arrives on time."""
    hook = SandboxServer()  # the webhook's receiver: records the JSON it is POSTed
    await hook.start()
    env = {"KAIROS_PLATFORM_CONCURRENCY": "2", "KAIROS_HTTP_TIMEOUT_SECONDS": "10"}
    try:
        async with running_stack(nats_server, log_dir, env=env) as stack:
            hook_account = await connect_webhook(stack, f"{hook.url}/posts")
            slow, failing, healthy = marker(), marker(), marker()
            hook.platform.script += [
                ScriptedAnswer(match=slow, status=200, times=100, delay=3.0, record=True),
                ScriptedAnswer(match=failing, status=500, times=100, record=True),
            ]
            for i in range(6):
                await schedule_on(stack, hook_account, f"{slow} {i}", 2.0)
                await schedule_on(stack, hook_account, f"{failing} {i}", 2.0)
            sandbox_posts = [await stack.create(f"{healthy} {i}", 2.5 + i / 2) for i in range(4)]
            await eventually(lambda: len(stack.received(healthy)) == 4, 15, stack, "sandbox")
            # The webhook was backed up meanwhile: most slow calls had not even started.
            started = [p for p in hook.platform.posts if slow in str(p.body.get("content"))]
            assert len(started) < 6, "the webhook kept up; nothing here was tested"
            assert any(failing in str(p.body.get("content")) for p in hook.platform.posts)
            arrivals = {p["content"]: p["arrived_at"] for p in stack.received(healthy)}
            for post in sandbox_posts:
                late = arrivals[post.content] - due_of(post)
                assert 0 <= late < 1.0, f"{post.content} arrived {late:.3f}s after its instant"
    finally:
        await hook.stop()


# --- a scheduler that only wakes up, and a redelivery loop ------------------------------------

#: A 30 s tick: whatever goes out within a second went out on a wake-up. A 10 s lead window:
#: events are held long enough to crash publishers while they hold one. MaxDeliver 3 with a 2 s
#: AckWait: an event whose publishers keep dying is dead-lettered within seconds.
SLOW_TICK_ENV = {
    "KAIROS_SCHEDULER_TICK_SECONDS": "30",
    "KAIROS_SCHEDULER_LEAD_SECONDS": "10",
    "KAIROS_DELIVERY_LEASE_SECONDS": "60",
    "KAIROS_MAX_DELIVER": "3",
    "KAIROS_ACK_WAIT_SECONDS": "2",
}


@pytest.fixture(scope="module")
async def slow_tick(
    own_nats: NatsServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    logs = tmp_path_factory.mktemp("slow-tick-logs")
    async with running_stack(own_nats, logs, env=SLOW_TICK_ENV) as running:
        yield running


async def test_publish_now_wakes_the_scheduler(slow_tick: Stack) -> None:
    stack = slow_tick
    await asyncio.sleep(1.0)  # the scheduler's first claim is behind it; the next tick is 29 s off
    mark = marker()
    draft = await stack.create(f"now {mark}", None)
    started = time.time()
    await stack.posts.PublishNow(
        posts_pb2.PublishNowRequest(post_id=draft.id), metadata=stack.metadata
    )
    await eventually(lambda: bool(stack.received(mark)), 5, stack, "publish-now arrival")
    took = stack.received(mark)[0]["arrived_at"] - started
    assert took < 1.0, f"publish-now took {took:.3f}s"
    await wait_status(stack, draft.id, posts_pb2.POST_STATUS_PUBLISHED)


async def delivered(stack: Stack) -> int:
    """Deliveries the sandbox publishers' durable consumer has made, redeliveries included."""
    client = await connect(stack.nats.url, name="kairos-tests-consumer")
    try:
        info = await client.jetstream().consumer_info(DUE_STREAM, "publisher-sandbox")
        return int(info.delivered.consumer_seq or 0)
    finally:
        await client.close()


async def wait_delivered(stack: Stack, count: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while await delivered(stack) < count:
        assert time.monotonic() < deadline, f"not {count} deliveries\n{stack.logs()}"
        await asyncio.sleep(0.05)


async def crash_publisher(stack: Stack) -> None:
    """kill -9 the publisher, then start another."""
    crashed = stack.publishers.pop(0)
    crashed.kill()
    await stack.add("publisher").wait_serving()


async def test_max_deliveries_end_in_the_dead_letter_stream(slow_tick: Stack) -> None:
    """Publishers die while they hold an event: after MaxDeliver deliveries without an outcome
    it goes to KAIROS_DEAD with the reason and the target is FAILED, never published."""
    stack = slow_tick
    before = await delivered(stack)
    mark = marker()
    post = await stack.create(f"doomed {mark}", 8.0)  # inside the lead window: claimed at once
    for deliveries in (1, 2):
        await wait_delivered(stack, before + deliveries)
        await crash_publisher(stack)
    done = await wait_status(stack, post.id, posts_pb2.POST_STATUS_FAILED, timeout=20)
    target = done.targets[0]
    assert target.status == posts_pb2.TARGET_STATUS_FAILED
    assert "dead-lettered" in target.last_error.message
    assert list(target.attempts) == []  # no attempt ever began
    ours = []
    for letter in await dead_letters(stack):
        if events_pb2.DueEvent.FromString(letter.payload).post_id == post.id:
            ours.append(letter)
    assert len(ours) == 1, ours
    assert ours[0].subject == "kairos.due.sandbox"
    assert ours[0].deliveries == 3
    assert "3" in ours[0].reason
    assert ours[0].reason in target.last_error.message
    wanted = {"created": 1, "scheduled": 1, "failed": 1}
    await expect_events(stack, wanted, lambda e: e.post_id == post.id)
    await asyncio.sleep(max(0.0, due_of(post) + 1.0 - time.time()))
    assert stack.received(mark) == [], "published although dead-lettered"
