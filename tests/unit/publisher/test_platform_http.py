"""The platform calls' HTTP client sends what httpx's own path would, without its layers."""

from __future__ import annotations

import gzip
from typing import Any

import httpx
import pytest

from kairos_publisher.transport import PlatformHttp

TIMEOUT = httpx.Timeout(7.0, connect=2.0)


class Recording(httpx.AsyncBaseTransport):
    """Answers every request with a gzipped body and a cookie, keeping what it was sent."""

    def __init__(self) -> None:
        self.sent: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return httpx.Response(
            200,
            headers={"content-encoding": "gzip", "set-cookie": "session=1"},
            content=gzip.compress(b'{"id": "42"}'),
        )


REQUESTS: list[dict[str, Any]] = [
    {"content": b'{"a": 1}', "headers": {"content-type": "application/json", "x-sig": "s"}},
    {"json": {"a": [1, 2]}, "params": {"q": "1", "r": "two words"}},
    {"data": {"form": "field"}},
    {"headers": {"Accept": "application/json"}},  # replaces a default: httpx's own path
    {},
]


@pytest.mark.parametrize("options", REQUESTS)
async def test_requests_and_answers_match_httpx_own_path(options: dict[str, Any]) -> None:
    url = "http://platform.test:8080/v1/posts/urn%3Ali%3Ashare%3A1"
    plain_transport, lean_transport = Recording(), Recording()
    async with (
        httpx.AsyncClient(transport=plain_transport, timeout=TIMEOUT) as plain,
        PlatformHttp(transport=lean_transport, timeout=TIMEOUT) as lean,
    ):
        expected = await plain.send(plain.build_request("POST", url, **options))
        got = await lean.send(lean.build_request("POST", url, **options))

    sent, wanted = lean_transport.sent[0], plain_transport.sent[0]
    assert (sent.method, str(sent.url)) == (wanted.method, str(wanted.url))
    assert sent.headers.raw == wanted.headers.raw
    assert sent.content == wanted.content
    assert sent.extensions == wanted.extensions
    assert (got.status_code, got.headers.raw) == (expected.status_code, expected.headers.raw)
    assert got.json() == expected.json() == {"id": "42"}
    assert got.request is sent
    assert not lean.cookies  # nothing kept between calls


async def test_a_closed_client_refuses_and_streams_take_httpx_path() -> None:
    transport = Recording()
    lean = PlatformHttp(transport=transport)
    async with lean.stream("GET", "http://platform.test/") as response:
        assert await response.aread() == b'{"id": "42"}'
    assert not lean.cookies  # not even through httpx's own path
    await lean.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await lean.send(httpx.Request("GET", "http://platform.test/"))
