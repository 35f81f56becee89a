"""Dispatch under pressure, end to end: poison events beside good ones, and a busy account.

Each test runs the api, a scheduler and a publisher as real processes on a broker of its own, so
what the publisher's durable consumer has delivered counts only this test's events.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from kairos.events.v1 import events_pb2
from kairos.posts.v1 import posts_pb2
from kairos_common.streams import DEAD_STREAM, DUE_STREAM, connect, due_subject
from support.nats_server import NatsServer
from support.stack import Stack, at, running_stack

pytestmark = pytest.mark.e2e

PUBLISHED = posts_pb2.POST_STATUS_PUBLISHED


async def schedule(stack: Stack, mark: str, count: int, due: Timestamp) -> list[str]:
    """`count` posts "<mark> #<i>" on the stack's account, all due at `due`; their ids."""
    post_ids = []
    for i in range(count):
        request = posts_pb2.CreatePostRequest(
            content=f"{mark} #{i}", targets=[posts_pb2.TargetSpec(account_id=stack.account_id)]
        )
        request.schedule.at.CopyFrom(due)
        reply = await stack.posts.CreatePost(request, metadata=stack.metadata)
        post_ids.append(reply.post.id)
    return post_ids


async def settled(stack: Stack, post_ids: Sequence[str], timeout: float) -> list[posts_pb2.Post]:
    """The posts once none is on its way any more (or as they are at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        posts = [await stack.get(post_id) for post_id in post_ids]
        on_the_way = {posts_pb2.POST_STATUS_SCHEDULED, posts_pb2.POST_STATUS_PUBLISHING}
        if all(p.status not in on_the_way for p in posts) or time.monotonic() > deadline:
            return posts
        await asyncio.sleep(0.2)


async def test_a_poison_event_is_dead_lettered_and_the_good_posts_beside_it_publish_once(
    fresh_nats: NatsServer, log_dir: Path
) -> None:
    async with running_stack(fresh_nats, log_dir, env={"KAIROS_MAX_DELIVER": "4"}) as stack:
        mark = f"poison-{uuid.uuid4().hex[:8]}"
        due = at(2.0)
        post_ids = await schedule(stack, mark, 3, due)
        # Due at the same instant as the good posts, so all are begun in the same batch.
        poison = events_pb2.DueEvent(
            delivery_id="not-a-uuid",
            target_id=str(uuid.uuid4()),
            post_id=str(uuid.uuid4()),
            platform=posts_pb2.PLATFORM_SANDBOX,
            account_id=stack.account_id,
            due_at=due,
        )
        nc = await connect(fresh_nats.url, name="poison-test")
        try:
            js = nc.jetstream()
            await js.publish(due_subject("sandbox"), poison.SerializeToString())

            posts = await settled(stack, post_ids, timeout=20)
            await asyncio.sleep(1.0)  # room for a second publication, were there one

            dead = await js.subscribe("kairos.dead.>", stream=DEAD_STREAM, ordered_consumer=True)
            letter = events_pb2.DeadLetter.FromString((await dead.next_msg(timeout=10)).data)
        finally:
            await nc.close()

        assert [p.status for p in posts] == [PUBLISHED] * 3, f"{posts}\n{stack.logs()}"
        sent = Counter(p["content"] for p in stack.received(mark))
        assert sent == Counter({f"{mark} #{i}": 1 for i in range(3)})
        assert all(len(p.targets[0].attempts) == 1 for p in posts)
        assert events_pb2.DueEvent.FromString(letter.payload).delivery_id == "not-a-uuid"
        assert letter.reason == "invalid due event: delivery_id 'not-a-uuid' is not a UUID"
        assert letter.deliveries == 1


async def test_posts_queued_behind_a_busy_account_publish_once_without_redelivery(
    fresh_nats: NatsServer, log_dir: Path
) -> None:
    """Six posts due together on one account that takes one call at a time, each call a second:
    the last waits about five seconds, longer than the attempt lease and AckWait (3 s each).
    Attempts are begun ahead only while they would wait at most 1.5 s at the account's call
    latency, so none waits begun for much more than a second."""
    env = {
        "KAIROS_ACCOUNT_CONCURRENCY": "1",
        "KAIROS_BEGIN_AHEAD_SECONDS": "1.5",
        "KAIROS_ACK_WAIT_SECONDS": "3",
    }
    api_env = {"KAIROS_ATTEMPT_LEASE_SECONDS": "3"}
    async with running_stack(fresh_nats, log_dir, env=env, api_env=api_env) as stack:
        mark = f"busy-{uuid.uuid4().hex[:8]}"
        stack.script(match=mark, status=201, delay=1.0, times=6, record=True, body={"id": "x"})
        due = at(1.5)
        post_ids = await schedule(stack, mark, 6, due)

        posts = await settled(stack, post_ids, timeout=40)
        await asyncio.sleep(1.0)  # room for a second publication, were there one
        nc = await connect(fresh_nats.url, name="busy-test")
        try:
            consumer = await nc.jetstream().consumer_info(DUE_STREAM, "publisher-sandbox")
        finally:
            await nc.close()

        statuses = [posts_pb2.TargetStatus.Name(p.targets[0].status) for p in posts]
        assert statuses == ["TARGET_STATUS_PUBLISHED"] * 6, f"{posts}\n{stack.logs()}"
        sent = Counter(p["content"] for p in stack.received(mark))
        assert sent == Counter({f"{mark} #{i}": 1 for i in range(6)})
        assert all(len(p.targets[0].attempts) == 1 for p in posts)
        # One delivery per event: none came back while it waited for the account.
        assert consumer.delivered.consumer_seq == 6
        assert consumer.num_redelivered == 0
        # One call at a time: each arrived after the one before had been answered.
        arrivals = sorted(p["arrived_at"] for p in stack.received(mark))
        assert all(b - a >= 0.9 for a, b in itertools.pairwise(arrivals))
