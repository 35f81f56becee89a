"""The scheduler's span of a delivery's trace: each due event is published in a PRODUCER span
under the api's claim, whose context the event carries in its headers; off, events carry none."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from kairos.dispatch.v1 import dispatch_pb2
from kairos.posts.v1 import posts_pb2
from kairos_common import tracing
from kairos_common.publishing import AckedPublisher, Message
from kairos_scheduler.loop import emit


class FakePublisher:
    """Keeps the messages; JetStream 'stores' all but the ones named."""

    def __init__(self, refused: frozenset[str] = frozenset()) -> None:
        self.sent: list[Message] = []
        self.refused = refused

    async def publish(self, messages: Sequence[Message], timeout: float) -> list[bool]:
        self.sent.extend(messages)
        return [m.msg_id not in self.refused for m in messages]


def delivery(delivery_id: str, traceparent: str = "") -> dispatch_pb2.Delivery:
    return dispatch_pb2.Delivery(
        delivery_id=delivery_id,
        platform=posts_pb2.PLATFORM_MASTODON,
        traceparent=traceparent,
    )


async def test_each_due_event_carries_its_publish_span_under_the_claim(
    exporter: InMemorySpanExporter,
) -> None:
    tracer = tracing.tracer()
    assert tracer is not None
    claim = tracer.start_span("claim delivery")
    claim.end()
    publisher = FakePublisher(refused=frozenset({"d-2"}))
    deliveries = [delivery("d-1", tracing.traceparent(claim)), delivery("d-2")]

    failed = await emit(cast(AckedPublisher, publisher), deliveries)

    assert [m.msg_id for m in failed] == ["d-2"]
    spans = {
        s.attributes["messaging.message.id"]: s
        for s in exporter.get_finished_spans()
        if s.attributes and "messaging.message.id" in s.attributes
    }
    assert set(spans) == {"d-1", "d-2"}
    under_claim, own_root = spans["d-1"], spans["d-2"]
    assert under_claim.name == "publish kairos.due.mastodon"
    assert under_claim.kind == SpanKind.PRODUCER
    assert under_claim.parent is not None
    assert under_claim.parent.span_id == claim.get_span_context().span_id
    assert under_claim.context.trace_id == claim.get_span_context().trace_id
    assert under_claim.status.status_code == StatusCode.UNSET
    # The api did not trace d-2: the scheduler's span starts a trace of its own.
    assert own_root.parent is None
    assert own_root.status.status_code == StatusCode.ERROR
    sent = {m.msg_id: m.headers for m in publisher.sent}
    assert sent == {
        "d-1": {"traceparent": tracing.traceparent(trace.NonRecordingSpan(under_claim.context))},
        "d-2": {"traceparent": tracing.traceparent(trace.NonRecordingSpan(own_root.context))},
    }


async def test_with_tracing_off_due_events_carry_no_trace_headers() -> None:
    assert tracing.tracer() is None
    publisher = FakePublisher()
    claimed = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    assert await emit(cast(AckedPublisher, publisher), [delivery("d-1", claimed)]) == []

    assert [(m.msg_id, m.headers) for m in publisher.sent] == [("d-1", None)]
