"""The publisher's spans of a delivery's trace (see `kairos_common.tracing` for the whole tree):
the handling of a due event, and each request to a platform.

The handling span is a CONSUMER span under the scheduler's publish span, read from the event's
NATS headers; it is current while the event is held, begun, sent and reported, so the calls to
the api carry it (`kairos_publisher.dispatch`) and each platform request is its child.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from nats.aio.msg import Msg
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from kairos_common import tracing

#: A path segment kept as it is in `url.full`: a word or an API version. Anything else (ids,
#: and the tokens some platforms put in paths: Telegram's bot token, Discord's and Slack's
#: webhook secrets) becomes `*`, and the query string (Graph's access_token) is left out.
PLAIN_SEGMENT = re.compile(r"[A-Za-z_.-]{1,20}|v\d+(\.\d+)?|")


def redacted_url(url: httpx.URL) -> str:
    """The URL without its query, fragment, user info or any path segment that may be secret."""
    path = "/".join(s if PLAIN_SEGMENT.fullmatch(s) else "*" for s in url.path.split("/"))
    port = f":{url.port}" if url.port is not None else ""
    return f"{url.scheme}://{url.host}{port}{path}"


@contextmanager
def processing(tracer: Tracer, message: Msg) -> Iterator[Span]:
    """The current span while a due event is handled."""
    message_headers = message.headers
    with tracer.start_as_current_span(
        f"process {message.subject}",
        context=tracing.parent_from_headers(message_headers),
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": "nats",
            "messaging.operation.type": "process",
            "messaging.destination.name": message.subject,
            "messaging.message.id": (message_headers or {}).get("Nats-Msg-Id", ""),
        },
    ) as span:
        yield span


class TracedTransport(httpx.AsyncBaseTransport):
    """A CLIENT span around each request another transport sends.

    No trace header is added to the request: platforms are third parties.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, tracer: Tracer) -> None:
        self._inner = inner
        self._tracer = tracer

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        with self._tracer.start_as_current_span(
            request.method,
            kind=SpanKind.CLIENT,
            attributes={
                "http.request.method": request.method,
                "url.full": redacted_url(url),
                "server.address": url.host,
                "server.port": url.port or (443 if url.scheme == "https" else 80),
            },
        ) as span:
            response = await self._inner.handle_async_request(request)
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 400:
                span.set_attribute("error.type", str(response.status_code))
                span.set_status(Status(StatusCode.ERROR))
            return response

    async def aclose(self) -> None:
        await self._inner.aclose()
