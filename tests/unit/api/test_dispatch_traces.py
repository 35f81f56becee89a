"""The api's spans of a delivery's trace: a root per claimed or re-emitted delivery, its
traceparent handed on in the Delivery, and child spans under what the publisher sends."""

from __future__ import annotations

import time

from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from kairos.dispatch.v1 import dispatch_pb2
from kairos.posts.v1 import posts_pb2
from kairos_api.entrypoints import dispatch_traces
from kairos_common import tracing


def deliveries() -> list[dispatch_pb2.Delivery]:
    return [
        dispatch_pb2.Delivery(
            delivery_id=f"d-{n}",
            target_id=f"t-{n}",
            post_id="p-1",
            platform=posts_pb2.PLATFORM_BLUESKY,
            attempt_number=n,
        )
        for n in (1, 2)
    ]


def test_each_claimed_delivery_roots_a_trace_and_carries_it(
    exporter: InMemorySpanExporter,
) -> None:
    response = dispatch_pb2.SweepExpiredResponse(redeliveries=deliveries())
    dispatch_traces.start_deliveries("redeliver delivery", response.redeliveries, time.time_ns())

    roots = exporter.get_finished_spans()
    assert [r.name for r in roots] == ["redeliver delivery", "redeliver delivery"]
    assert [r.parent for r in roots] == [None, None]
    assert [dict(r.attributes or {}) for r in roots] == [
        {
            "kairos.delivery_id": f"d-{n}",
            "kairos.target_id": f"t-{n}",
            "kairos.post_id": "p-1",
            "kairos.platform": "PLATFORM_BLUESKY",
            "kairos.attempt_number": n,
        }
        for n in (1, 2)
    ]
    assert [d.traceparent for d in response.redeliveries] == [
        tracing.traceparent(trace.NonRecordingSpan(r.context)) for r in roots
    ]


def test_off_a_claim_carries_no_traceparent() -> None:
    assert tracing.tracer() is None
    response = dispatch_pb2.ClaimDueResponse(deliveries=deliveries())
    dispatch_traces.start_deliveries("claim delivery", response.deliveries, time.time_ns())
    assert [d.traceparent for d in response.deliveries] == ["", ""]


def test_a_failed_delivery_and_a_marked_attempt_are_spans_under_the_publishers(
    exporter: InMemorySpanExporter,
) -> None:
    tracer = tracing.tracer()
    assert tracer is not None
    with tracer.start_as_current_span("process kairos.due.bluesky") as process:
        parent = tracing.current_traceparent()
    started = time.time_ns()
    dispatch_traces.failed(
        dispatch_pb2.FailDeliveryRequest(delivery_id="d-1", traceparent=parent),
        dispatch_pb2.FailDeliveryResponse(target_status=posts_pb2.TARGET_STATUS_FAILED),
        started,
    )
    dispatch_traces.marked(
        dispatch_pb2.MarkAttemptRequest(
            attempt_id="a-1", stage=dispatch_pb2.ATTEMPT_STAGE_UPLOADING, traceparent=parent
        ),
        dispatch_pb2.MarkAttemptResponse(ok=True),
        started,
    )
    dispatch_traces.marked(  # not traced: no span
        dispatch_pb2.MarkAttemptRequest(attempt_id="a-2"), dispatch_pb2.MarkAttemptResponse(), 0
    )
    spans = [s for s in exporter.get_finished_spans() if s.name != "process kairos.due.bluesky"]
    assert [(s.name, dict(s.attributes or {})) for s in spans] == [
        (
            "fail delivery",
            {"kairos.delivery_id": "d-1", "kairos.target_status": "TARGET_STATUS_FAILED"},
        ),
        (
            "mark attempt",
            {
                "kairos.attempt_id": "a-1",
                "kairos.stage": "ATTEMPT_STAGE_UPLOADING",
                "kairos.marked": True,
            },
        ),
    ]
    assert {s.parent.span_id if s.parent else None for s in spans} == {
        process.get_span_context().span_id
    }
