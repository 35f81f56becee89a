"""The scheduler's span of a delivery's trace: the publish of its due event (see
`kairos_common.tracing` for the whole tree).

Each traced due event gets a PRODUCER span under the api's claim span, and that span's context
goes out in the event's NATS headers for the publisher to carry on.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from kairos.dispatch.v1 import dispatch_pb2
from kairos_common import tracing
from kairos_common.publishing import Message


def start_publishing(
    tracer: Tracer, deliveries: Sequence[dispatch_pb2.Delivery], messages: list[Message]
) -> list[Span]:
    """Start a `publish` span per due event, each a child of its delivery's traceparent (a root
    when the api did not trace it), and put its context in the message's headers; the spans,
    in order."""
    spans = []
    for index, (delivery, message) in enumerate(zip(deliveries, messages, strict=True)):
        span = tracer.start_span(
            f"publish {message.subject}",
            context=tracing.parent(delivery.traceparent),
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "nats",
                "messaging.operation.type": "send",
                "messaging.destination.name": message.subject,
                "messaging.message.id": delivery.delivery_id,
            },
        )
        messages[index] = message._replace(headers=tracing.headers(span))
        spans.append(span)
    return spans


def end_publishing(spans: Sequence[Span], stored: Sequence[bool]) -> None:
    """End the spans, marking those whose event JetStream did not acknowledge."""
    for span, ok in zip(spans, stored, strict=True):
        if not ok:
            span.set_status(Status(StatusCode.ERROR, "not acknowledged by JetStream"))
        span.end()
