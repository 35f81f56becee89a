"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from support.traces import kept_spans, tracing_on


@pytest.fixture
def exported() -> Iterator[tuple[trace.Tracer, InMemorySpanExporter]]:
    """A tracer whose finished spans are kept in memory."""
    with kept_spans() as pair:
        yield pair


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process, its finished spans kept in memory."""
    with tracing_on(monkeypatch) as spans:
        yield spans
