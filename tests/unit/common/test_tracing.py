"""kairos_common.tracing: off without an endpoint, set up from the standard variables when on,
and the W3C traceparent helpers the services carry a delivery's trace with."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from kairos_common import tracing

TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-(?P<flags>[0-9a-f]{2})")
OTEL_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_SDK_DISABLED",
    "OTEL_SERVICE_NAME",
    "OTEL_TRACES_SAMPLER",
)


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    yield monkeypatch
    tracing.shutdown()


def test_without_an_endpoint_nothing_is_set_up(clean_environment: pytest.MonkeyPatch) -> None:
    assert tracing.start("kairos-api") is None
    assert tracing.tracer() is None
    assert tracing._provider is None
    # The global provider is left alone too: still the API's placeholder.
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "TRUE"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "false"}, True),
        ({"OTEL_EXPORTER_METRICS_ENDPOINT": "http://c:4318"}, False),
    ],
)
def test_an_otlp_endpoint_turns_tracing_on(environ: dict[str, str], on: bool) -> None:
    assert tracing.enabled_by(environ) is on


def test_on_it_names_the_service_and_the_standard_variables_apply(
    clean_environment: pytest.MonkeyPatch,
) -> None:
    clean_environment.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    started = tracing.start("kairos-scheduler")
    assert isinstance(started, SdkTracer)
    assert tracing.tracer() is started
    assert started.resource.attributes["service.name"] == "kairos-scheduler"
    # The SDK's default: a delivery's later spans follow the claim's sampling decision.
    assert started.sampler.get_description().startswith("ParentBased{root:AlwaysOnSampler,")
    tracing.shutdown()
    assert tracing.tracer() is None

    clean_environment.setenv("OTEL_SERVICE_NAME", "kairos-scheduler-eu")
    clean_environment.setenv("OTEL_TRACES_SAMPLER", "always_off")
    again = tracing.start("kairos-scheduler")
    assert isinstance(again, SdkTracer)
    assert again.resource.attributes["service.name"] == "kairos-scheduler-eu"
    with again.start_as_current_span("sampled out") as span:
        assert not span.is_recording()
        # Carried on as not sampled, so the other services drop the delivery's spans too.
        matched = TRACEPARENT.fullmatch(tracing.current_traceparent())
        assert matched is not None
        assert int(matched["flags"], 16) & 1 == 0


def test_a_traceparent_round_trips(exported: tuple[trace.Tracer, InMemorySpanExporter]) -> None:
    tracer, _ = exported
    span = tracer.start_span("claim delivery")
    value = tracing.traceparent(span)
    span.end()
    matched = TRACEPARENT.fullmatch(value)
    assert matched is not None
    assert int(matched["flags"], 16) & 1 == 1  # sampled
    context = tracing.parent(value)
    assert context is not None
    carried = trace.get_current_span(context).get_span_context()
    assert (carried.trace_id, carried.span_id) == (
        span.get_span_context().trace_id,
        span.get_span_context().span_id,
    )
    assert carried.is_remote


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # all-zero trace id
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # all-zero span id
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b71692033-01",  # span id too short
    ],
)
def test_an_empty_or_malformed_traceparent_is_ignored(value: str) -> None:
    assert tracing.parent(value) is None


def test_headers_carry_a_span_to_the_consumer(
    exported: tuple[trace.Tracer, InMemorySpanExporter],
) -> None:
    tracer, _ = exported
    span = tracer.start_span("publish", kind=SpanKind.PRODUCER)
    headers = tracing.headers(span)
    span.end()
    assert list(headers) == ["traceparent"]
    assert headers["traceparent"] == tracing.traceparent(span)
    context = tracing.parent_from_headers({**headers, "Nats-Msg-Id": "d-1"})
    assert context is not None
    assert trace.get_current_span(context).get_span_context().span_id == (
        span.get_span_context().span_id
    )
    assert tracing.parent_from_headers(None) is None
    assert tracing.parent_from_headers({"Nats-Msg-Id": "d-1"}) is None


def test_current_traceparent_is_the_span_in_hand(
    exported: tuple[trace.Tracer, InMemorySpanExporter],
) -> None:
    tracer, _ = exported
    assert tracing.current_traceparent() == ""
    with tracer.start_as_current_span("process") as span:
        assert tracing.current_traceparent() == tracing.traceparent(span)
    assert tracing.current_traceparent() == ""


def test_record_makes_one_child_per_traced_item_of_a_batch(
    exported: tuple[trace.Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = exported
    first = tracer.start_span("process one")
    second = tracer.start_span("process two")
    started = time.time_ns()
    tracing.record(
        tracer,
        "complete attempt",
        [
            (tracing.traceparent(first), {"kairos.delivery_id": "d-1"}),
            ("", {"kairos.delivery_id": "d-2"}),  # not traced
            ("garbage", {"kairos.delivery_id": "d-3"}),
            (tracing.traceparent(second), {"kairos.delivery_id": "d-4"}),
        ],
        started,
    )
    children = exporter.get_finished_spans()
    assert [c.attributes["kairos.delivery_id"] for c in children if c.attributes] == [
        "d-1",
        "d-4",
    ]
    assert [c.parent.span_id if c.parent else None for c in children] == [
        first.get_span_context().span_id,
        second.get_span_context().span_id,
    ]
    assert [c.context.trace_id for c in children] == [
        first.get_span_context().trace_id,
        second.get_span_context().trace_id,
    ]
    assert {c.start_time for c in children} == {started}
    assert len({c.end_time for c in children}) == 1
    assert {c.kind for c in children} == {SpanKind.SERVER}
    assert {c.name for c in children} == {"complete attempt"}


def test_roots_start_a_trace_per_item(exported: tuple[trace.Tracer, InMemorySpanExporter]) -> None:
    tracer, exporter = exported
    with tracer.start_as_current_span("an unrelated span in hand"):
        values = tracing.roots(
            tracer, "claim delivery", [{"kairos.delivery_id": f"d-{n}"} for n in range(3)], 7
        )
    roots = [s for s in exporter.get_finished_spans() if s.name == "claim delivery"]
    assert [tracing.traceparent(trace.NonRecordingSpan(r.context)) for r in roots] == values
    assert [r.parent for r in roots] == [None, None, None]
    assert len({r.context.trace_id for r in roots}) == 3
    assert {r.start_time for r in roots} == {7}


class Collector(BaseHTTPRequestHandler):
    """Keeps the names of the spans exported to it (the exporter's thread calls it)."""

    names: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        export = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
        for resource_spans in export.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                self.names.extend(f"{self.path} {span.name}" for span in scope_spans.spans)
        answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        return None


def test_shutdown_sends_the_spans_still_queued(clean_environment: pytest.MonkeyPatch) -> None:
    Collector.names.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        clean_environment.setenv(
            "OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}"
        )
        # Batches would go out a minute from now: only the flush at shutdown sends this one.
        clean_environment.setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")
        started = tracing.start("kairos-publisher")
        assert started is not None
        started.start_span("process kairos.due.x").end()
        assert Collector.names == []
        tracing.shutdown()
        assert Collector.names == ["/v1/traces process kairos.due.x"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
