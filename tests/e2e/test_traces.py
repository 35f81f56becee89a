"""One post's trace, read back from an in-process OTLP collector: the api, the scheduler and the
publisher run as real processes exporting to it, and the delivery's spans form one tree."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from kairos.posts.v1 import posts_pb2
from support.nats_server import NatsServer
from support.otlp import Collector, ReceivedSpan, running_collector
from support.stack import Stack, eventually, marker, running_stack, wait_status

pytestmark = pytest.mark.e2e

#: Every span of a delivery that publishes at the first try, by service and name.
WANTED = Counter(
    {
        ("kairos-api", "claim delivery"): 1,
        ("kairos-scheduler", "publish kairos.due.sandbox"): 1,
        ("kairos-publisher", "process kairos.due.sandbox"): 1,
        ("kairos-api", "begin attempt"): 1,
        ("kairos-publisher", "POST"): 1,
        ("kairos-api", "complete attempt"): 1,
    }
)


def claim_of(collector: Collector, post_id: str) -> ReceivedSpan | None:
    found = [
        s
        for s in collector.spans
        if s.name == "claim delivery" and s.attributes.get("kairos.post_id") == post_id
    ]
    return found[0] if found else None


def whole(collector: Collector, post_id: str) -> bool:
    claim = claim_of(collector, post_id)
    if claim is None:
        return False
    names = Counter((s.service, s.name) for s in collector.trace(claim.trace_id))
    return names == WANTED


async def test_a_posts_trace_spans_the_three_services_as_one_tree(
    nats_server: NatsServer, log_dir: Path
) -> None:
    async with running_collector() as collector:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
        async with running_stack(nats_server, log_dir, env=env) as stack:
            await publish_one_and_check_its_trace(stack, collector)


async def publish_one_and_check_its_trace(stack: Stack, collector: Collector) -> None:
    mark = marker()
    post = await stack.create(f"traced {mark}", 1.0)
    await wait_status(stack, post.id, posts_pb2.POST_STATUS_PUBLISHED)
    await eventually(lambda: whole(collector, post.id), 10, stack, "the post's whole trace")

    claim = claim_of(collector, post.id)
    assert claim is not None
    spans = collector.trace(claim.trace_id)
    by_name = {s.name: s for s in spans}
    publish = by_name["publish kairos.due.sandbox"]
    process = by_name["process kairos.due.sandbox"]
    begin = by_name["begin attempt"]
    call = by_name["POST"]
    complete = by_name["complete attempt"]
    target = post.targets[0]

    # One tree: the claim is the only root, and each span hangs where the design says.
    assert claim.parent_id == ""
    assert publish.parent_id == claim.span_id
    assert process.parent_id == publish.span_id
    assert begin.parent_id == process.span_id
    assert call.parent_id == process.span_id
    assert complete.parent_id == process.span_id
    assert len({s.span_id for s in spans}) == 6
    assert {s.service for s in spans} == {"kairos-api", "kairos-scheduler", "kairos-publisher"}
    assert not [s.name for s in spans if s.error]

    delivery_id = claim.attributes["kairos.delivery_id"]
    assert claim.attributes["kairos.target_id"] == target.id
    assert claim.attributes["kairos.platform"] == "PLATFORM_SANDBOX"
    assert claim.attributes["kairos.attempt_number"] == 1
    assert (publish.kind, process.kind, call.kind) == ("producer", "consumer", "client")
    assert publish.attributes["messaging.destination.name"] == "kairos.due.sandbox"
    assert publish.attributes["messaging.message.id"] == delivery_id
    assert process.attributes["messaging.message.id"] == delivery_id
    assert begin.attributes["kairos.delivery_id"] == delivery_id
    assert begin.attributes["kairos.begun"] is True
    assert call.attributes["http.request.method"] == "POST"
    assert call.attributes["url.full"] == f"{stack.sandbox.url}/posts"
    assert call.attributes["http.response.status_code"] == 201
    assert complete.attributes["kairos.delivery_id"] == delivery_id
    assert complete.attributes["kairos.published"] is True
    assert complete.attributes["kairos.target_status"] == "TARGET_STATUS_PUBLISHED"

    # The platform, a third party, is told nothing of the trace.
    received = [p for p in stack.sandbox.platform.posts if mark in p.body["content"]]
    assert len(received) == 1
    assert "traceparent" not in received[0].headers
