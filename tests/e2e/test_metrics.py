"""Each service's Prometheus metrics, scraped over HTTP from the real processes while posts go
out: the counters move by exactly what happened."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kairos.posts.v1 import posts_pb2
from support.nats_server import NatsServer
from support.scrape import Key, scrape, value
from support.services import ServiceProcess
from support.stack import Stack, marker, running_stack, wait_status

pytestmark = pytest.mark.e2e

POSTS = 5


@pytest.fixture
async def stack(fresh_nats: NatsServer, tmp_path: Path) -> AsyncIterator[Stack]:
    """A stack on a NATS server of its own: on the session's, a due event another test left in
    KAIROS_DUE reaches this publisher, is begun (and refused by this api's fence), and the begin
    count grows by one more than the posts (seen once in CI)."""
    env = {"KAIROS_METRICS_REFRESH_SECONDS": "0.2"}
    async with running_stack(fresh_nats, tmp_path, env=env) as running:
        yield running


async def gauge_reaches(
    process: ServiceProcess, name: str, labels: dict[str, str], wanted: float, timeout: float
) -> dict[Key, float]:
    """Scrape until the gauge shows `wanted` (they are refreshed every 0.2 s here)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = await scrape(process)
        if value(samples, name, **labels) == wanted or time.monotonic() > deadline:
            assert value(samples, name, **labels) == wanted, (name, labels, samples)
            return samples
        await asyncio.sleep(0.1)


async def test_counters_move_by_exactly_the_posts_published(stack: Stack) -> None:
    scheduler, publisher = stack.schedulers[0], stack.publishers[0]
    before = {p.name: await scrape(p) for p in (stack.api, scheduler, publisher)}

    mark = marker()
    posts = [await stack.create(f"measured {i} {mark}", 1.0) for i in range(POSTS)]
    for post in posts:
        await wait_status(stack, post.id, posts_pb2.POST_STATUS_PUBLISHED, timeout=20)
    assert len(stack.received(mark)) == POSTS

    pub_before, pub = before["publisher"], await scrape(publisher)

    def grew(name: str, **labels: str) -> float:
        return value(pub, name, **labels) - value(pub_before, name, **labels)

    sandbox = {"platform": "sandbox"}
    assert grew("kairos_delivery_lateness_seconds_count", **sandbox) == POSTS
    # Each first call started within a second of its due instant, and none before it.
    assert grew("kairos_delivery_lateness_seconds_bucket", **sandbox, le="1.0") == POSTS
    assert 0 <= grew("kairos_delivery_lateness_seconds_sum", **sandbox) < POSTS
    assert grew("kairos_delivery_attempts_total", **sandbox, outcome="published") == POSTS
    assert grew("kairos_delivery_attempts_total", **sandbox, outcome="retryable") == 0
    assert grew("kairos_platform_call_duration_seconds_count", **sandbox) == POSTS

    api_before, api = before["api"], await scrape(stack.api)
    for operation in ("claim", "begin", "complete"):
        size = "kairos_dispatch_batch_size_sum"
        items = value(api, size, operation=operation) - value(api_before, size, operation=operation)
        assert items == POSTS, operation
        count = "kairos_dispatch_batch_duration_seconds_count"
        calls = value(api, count, operation=operation) - value(
            api_before, count, operation=operation
        )
        assert calls >= 1, operation
    # The stack's system is fresh: these are its only targets.
    await gauge_reaches(
        stack.api, "kairos_targets", {"platform": "sandbox", "state": "published"}, POSTS, 5.0
    )
    api = await gauge_reaches(stack.api, "kairos_outbox_unrelayed_events", {}, 0, 5.0)
    assert value(api, "kairos_targets", platform="sandbox", state="pending") == 0
    assert value(api, "kairos_outbox_lag_seconds") == 0

    sched_before, sched = before["scheduler"], await scrape(scheduler)
    due = "kairos_scheduler_due_events_total"
    assert value(sched, due, result="published") - value(sched_before, due, result="published") == (
        POSTS
    )
    claimed = value(sched, "kairos_scheduler_batch_size_sum", operation="claim") - value(
        sched_before, "kairos_scheduler_batch_size_sum", operation="claim"
    )
    assert claimed == POSTS
    rounds = "kairos_scheduler_batch_duration_seconds_count"
    assert value(sched, rounds, operation="claim") > value(sched_before, rounds, operation="claim")
    assert value(sched, rounds, operation="sweep") > value(sched_before, rounds, operation="sweep")

    # Every due-event consumer's backlog, read from JetStream: nothing left for sandbox.
    pending = "kairos_jetstream_consumer_pending_messages"
    labels = {"stream": "KAIROS_DUE", "consumer": "publisher-sandbox"}
    pub = await gauge_reaches(publisher, pending, labels, 0, 5.0)
    assert (pending, tuple(sorted(labels.items()))) in pub
    ack_pending = "kairos_jetstream_consumer_ack_pending_messages"
    await gauge_reaches(publisher, ack_pending, labels, 0, 5.0)
