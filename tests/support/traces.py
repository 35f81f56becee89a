"""Spans kept in memory, for unit tests of what the services trace: a tracer of its own, or
tracing switched on in this process (`kairos_common.tracing`) for one test."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from kairos_common import tracing


@contextmanager
def kept_spans() -> Iterator[tuple[trace.Tracer, InMemorySpanExporter]]:
    """A tracer (of service `kairos-test`) whose finished spans the exporter keeps."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "kairos-test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        yield provider.get_tracer("test"), exporter
    finally:
        provider.shutdown()


@contextmanager
def tracing_on(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process, as `tracing.start` leaves it, with the spans kept."""
    with kept_spans() as (tracer, exporter):
        monkeypatch.setattr(tracing, "_tracer", tracer)
        yield exporter
