"""The publisher's part of a delivery's trace: its calls to the api carry the span in hand, each
platform request gets a CLIENT span with no secret in its URL, and with tracing off none of it
is set up."""

from __future__ import annotations

import asyncio
import time
from typing import cast

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from kairos.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from kairos_common import tracing
from kairos_publisher.dispatch import DispatchClient
from kairos_publisher.traces import TracedTransport, redacted_url
from kairos_publisher.transport import AiohttpTransport, http_client


def the_tracer() -> trace.Tracer:
    found = tracing.tracer()
    assert found is not None
    return found


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://mastodon.social/api/v1/statuses", "https://mastodon.social/api/v1/statuses"),
        (
            "https://api.telegram.org/bot123456:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/sendMessage",
            "https://api.telegram.org/*/sendMessage",
        ),
        (
            "https://graph.facebook.com/v21.0/1784140/feed?access_token=secret&x=1",
            "https://graph.facebook.com/v21.0/*/feed",
        ),
        (
            "https://discord.com/api/webhooks/1234567890/abcDEF_ghiJKLmnoPQRstuVWXyz0123?wait=true",
            "https://discord.com/api/webhooks/*/*",
        ),
        (
            "https://hooks.slack.com/services/T0000/B0000/XXXXXXXXXXXXXXXXXXXXXXXX",
            "https://hooks.slack.com/services/*/*/*",
        ),
        ("http://user:pw@127.0.0.1:8090/posts#top", "http://127.0.0.1:8090/posts"),
    ],
)
def test_a_platform_url_is_recorded_without_its_secrets(url: str, shown: str) -> None:
    assert redacted_url(httpx.URL(url)) == shown


def answer(status: int) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(status, json={"id": "1"}))


async def test_each_platform_request_is_a_client_span_under_the_span_in_hand(
    exporter: InMemorySpanExporter,
) -> None:
    tracer = the_tracer()
    transport = TracedTransport(answer(201), tracer)
    async with httpx.AsyncClient(transport=transport) as client:
        with tracer.start_as_current_span("process kairos.due.sandbox") as process:
            response = await client.post("http://127.0.0.1:8090/posts", json={"content": "hi"})
    assert response.status_code == 201
    assert "traceparent" not in response.request.headers  # a platform is a third party
    call = next(s for s in exporter.get_finished_spans() if s.name == "POST")
    assert call.kind == SpanKind.CLIENT
    assert call.parent is not None
    assert call.parent.span_id == process.get_span_context().span_id
    assert dict(call.attributes or {}) == {
        "http.request.method": "POST",
        "url.full": "http://127.0.0.1:8090/posts",
        "server.address": "127.0.0.1",
        "server.port": 8090,
        "http.response.status_code": 201,
    }
    assert call.status.status_code == StatusCode.UNSET


async def test_a_refused_or_failed_request_is_an_error_span(
    exporter: InMemorySpanExporter,
) -> None:
    tracer = the_tracer()

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with httpx.AsyncClient(transport=TracedTransport(answer(503), tracer)) as client:
        await client.get("https://api.example/v1/me")
    async with httpx.AsyncClient(
        transport=TracedTransport(httpx.MockTransport(unreachable), tracer)
    ) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("https://api.example/v1/me")
    refused, failed = exporter.get_finished_spans()
    assert refused.status.status_code == StatusCode.ERROR
    assert (refused.attributes or {})["http.response.status_code"] == 503
    assert (refused.attributes or {})["error.type"] == "503"
    assert (refused.attributes or {})["server.port"] == 443
    assert failed.status.status_code == StatusCode.ERROR
    assert [e.name for e in failed.events] == ["exception"]


class RecordingApi:
    """BeginAttempts and CompleteAttempts that answer and keep the requests."""

    def __init__(self) -> None:
        self.begins: list[dispatch_pb2.BeginAttemptsRequest] = []
        self.completions: list[dispatch_pb2.CompleteAttemptsRequest] = []

    async def BeginAttempts(  # noqa: N802 - the gRPC method's name
        self, request: dispatch_pb2.BeginAttemptsRequest, **_: object
    ) -> dispatch_pb2.BeginAttemptsResponse:
        self.begins.append(request)
        return dispatch_pb2.BeginAttemptsResponse(
            results=[dispatch_pb2.BeginAttemptResponse(ok=True) for _ in request.delivery_ids]
        )

    async def CompleteAttempts(  # noqa: N802 - the gRPC method's name
        self, request: dispatch_pb2.CompleteAttemptsRequest, **_: object
    ) -> dispatch_pb2.CompleteAttemptsResponse:
        self.completions.append(request)
        return dispatch_pb2.CompleteAttemptsResponse(
            results=[dispatch_pb2.CompletionResult() for _ in request.outcomes]
        )


def dispatch_client(api: RecordingApi) -> DispatchClient:
    client = DispatchClient(cast("dispatch_pb2_grpc.DispatchServiceAsyncStub", api), "token")
    client.start()
    return client


async def begin_and_complete(client: DispatchClient, delivery_id: str) -> None:
    await client.begin(delivery_id, "key-1")
    outcome = dispatch_pb2.AttemptOutcome(attempt_id="a", delivery_id=delivery_id)
    await client.complete(outcome, until=time.monotonic() + 5)


async def test_begins_and_completions_carry_the_traceparent_of_their_caller(
    exporter: InMemorySpanExporter,
) -> None:
    tracer = the_tracer()
    api = RecordingApi()
    client = dispatch_client(api)

    async def traced(delivery_id: str) -> str:
        with tracer.start_as_current_span(f"process {delivery_id}") as span:
            await begin_and_complete(client, delivery_id)
            return tracing.traceparent(span)

    # Three callers at once share batches: each item carries its own caller's span.
    parents = await asyncio.gather(traced("d-1"), begin_and_complete(client, "d-2"), traced("d-3"))
    await client.close()
    sent: dict[str, str] = {}
    for request in api.begins:
        # A batch of untraced begins alone carries no traceparents at all.
        carried = list(request.traceparents) or [""] * len(request.delivery_ids)
        sent.update(zip(request.delivery_ids, carried, strict=True))
    assert sent == {"d-1": parents[0], "d-2": "", "d-3": parents[2]}
    completed = {o.delivery_id: o.traceparent for r in api.completions for o in r.outcomes}
    assert completed == sent
    assert client._begin_parents == {}


async def test_with_tracing_off_nothing_is_carried_or_wrapped() -> None:
    assert tracing.tracer() is None
    api = RecordingApi()
    client = dispatch_client(api)
    await begin_and_complete(client, "d-1")
    await client.close()
    assert [list(r.traceparents) for r in api.begins] == [[]]
    assert [o.traceparent for r in api.completions for o in r.outcomes] == [""]
    http = http_client(5.0)
    assert type(http._transport) is AiohttpTransport
    await http.aclose()
