"""OpenTelemetry traces: one trace per delivery, across the api, the scheduler and the publisher.

Tracing is off unless `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is
set (and `OTEL_SDK_DISABLED` is not true). Off, nothing of the SDK is loaded, `tracer()` is
None, and the hot paths ask that once per batch and do nothing more. On, spans go over OTLP
(HTTP/protobuf) through a BatchSpanProcessor, and the SDK reads its other standard variables
itself: `OTEL_TRACES_SAMPLER` and its argument, `OTEL_EXPORTER_OTLP_HEADERS`, the timeouts,
`OTEL_BSP_*`, `OTEL_RESOURCE_ATTRIBUTES`. `OTEL_SERVICE_NAME` overrides the service's own name
(kairos-api, kairos-scheduler, kairos-publisher). `shutdown` flushes what is still queued.

The trace of a delivery, and who starts what:

    kairos-api        claim delivery                 (root; one per claimed delivery)
    kairos-scheduler  └ publish kairos.due.<p>       PRODUCER; its context goes in the headers
    kairos-publisher    └ process kairos.due.<p>     CONSUMER; hold, begin, call, report
    kairos-api            ├ begin attempt            the fence
    kairos-publisher      ├ POST                     CLIENT; one per platform request
    kairos-api            └ complete attempt         the outcome recorded

The api starts the root because a delivery is born in its claim: the delivery id and the lease
exist from there, and a delivery the sweeper re-emits starts a trace of its own the same way
(`redeliver delivery`). The scheduler could not do it as well: it sees a batch, not the
claim's work per row. Every call between the services is batched (ClaimDue returns many
deliveries, BeginAttempts and CompleteAttempts carry many), so one gRPC call's metadata cannot
carry one delivery's context: each item carries its own W3C `traceparent` in a proto field, and
the due event carries it in its NATS headers. The api records its spans of a batch when the
batch is done (they share the batch's start and end), so tracing adds no await to its calls.

A service that does not trace still passes nothing on, so the trace of a delivery is whole only
when all three trace; one that traces alone makes traces of its own part (its spans are roots).
The publisher never sends trace headers to a platform: they would tell a third party about our
traffic and gain us nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

__all__ = [
    "TRACEPARENT",
    "Attributes",
    "current_traceparent",
    "enabled_by",
    "headers",
    "parent",
    "parent_from_headers",
    "record",
    "roots",
    "shutdown",
    "start",
    "traceparent",
    "tracer",
]

#: The W3C header (and NATS header) that carries a span's context.
TRACEPARENT = "traceparent"
#: Either of these set turns tracing on.
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")

Attributes = Mapping[str, AttributeValue]

_propagator = TraceContextTextMapPropagator()
_provider: TracerProvider | None = None
_tracer: Tracer | None = None


def enabled_by(environ: Mapping[str, str]) -> bool:
    """Whether `environ` turns tracing on: an OTLP endpoint is set and the SDK is not disabled."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(environ.get(name, "").strip() for name in ENDPOINT_VARIABLES)


def start(service_name: str) -> Tracer | None:
    """Set up tracing for this process from the environment; the tracer, or None when off.

    Nothing of the SDK is imported when off. The provider is this module's own, not the global
    one, so a process (or a test) can start and shut tracing down more than once.
    """
    global _provider, _tracer
    if not enabled_by(os.environ):
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    shutdown()
    name = os.environ.get("OTEL_SERVICE_NAME", "").strip() or service_name
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    _provider = provider
    _tracer = provider.get_tracer("kairos")
    return _tracer


def shutdown() -> None:
    """Export what is queued and stop tracing (nothing when it is off)."""
    global _provider, _tracer
    provider, _provider, _tracer = _provider, None, None
    if provider is not None:
        provider.shutdown()


def tracer() -> Tracer | None:
    """This process's tracer, or None when tracing is off: the one check a hot path makes."""
    return _tracer


def traceparent(span: Span) -> str:
    """The span's context as a W3C traceparent; empty for a span with no valid context."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get(TRACEPARENT, "")


def current_traceparent() -> str:
    """The traceparent of the span current in this task; empty when there is none."""
    span = trace.get_current_span()
    if not span.get_span_context().is_valid:
        return ""
    return traceparent(span)


def parent(value: str) -> Context | None:
    """A context to start child spans in, from a traceparent; None when it is empty or not a
    valid W3C traceparent (such a value is ignored, as the W3C says, rather than refused)."""
    if not value:
        return None
    return _valid(_propagator.extract({TRACEPARENT: value}))


def parent_from_headers(message_headers: Mapping[str, str] | None) -> Context | None:
    """The context in a message's headers (traceparent and tracestate), or None."""
    if not message_headers or TRACEPARENT not in message_headers:
        return None
    return _valid(_propagator.extract(message_headers))


def headers(span: Span) -> dict[str, str]:
    """The headers that carry `span`'s context (traceparent, and tracestate when it has one)."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=trace.set_span_in_context(span))
    return carrier


def _valid(context: Context) -> Context | None:
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def record(
    tracer: Tracer,
    name: str,
    items: Iterable[tuple[str, Attributes]],
    started_ns: int,
    *,
    kind: SpanKind = SpanKind.SERVER,
) -> None:
    """One finished span per traced item of a batch: a child of the item's traceparent, from
    `started_ns` (`time.time_ns()` when the batch began) to now. Items with no valid
    traceparent get none."""
    ended = time.time_ns()
    for value, attributes in items:
        context = parent(value)
        if context is None:
            continue
        span = tracer.start_span(
            name, context=context, kind=kind, attributes=attributes, start_time=started_ns
        )
        span.end(end_time=ended)


def roots(tracer: Tracer, name: str, items: Iterable[Attributes], started_ns: int) -> list[str]:
    """One finished root span per item, from `started_ns` to now; their traceparents, in order."""
    ended = time.time_ns()
    found = []
    for attributes in items:
        span = tracer.start_span(
            name, context=Context(), attributes=attributes, start_time=started_ns
        )
        found.append(traceparent(span))
        span.end(end_time=ended)
    return found
