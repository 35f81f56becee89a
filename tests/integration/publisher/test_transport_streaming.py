"""The publisher's transport sends an upload streamed with its length as it is read: the server
has the first part before the last is made, and a body that fails itself fails as itself."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web

from kairos_publisher.transport import http_client

PART = 64 * 1024


class Damaged(Exception):
    pass


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, dict[str, object]]]:
    """A server that notes when the first part of a body arrived, and what came in all."""
    seen: dict[str, object] = {"first": asyncio.Event()}

    async def take(request: web.Request) -> web.Response:
        first = await request.content.readexactly(PART)
        event = seen["first"]
        assert isinstance(event, asyncio.Event)
        event.set()
        rest = await request.read()
        seen["size"] = len(first) + len(rest)
        seen["chunked"] = request.headers.get("transfer-encoding")
        return web.Response(text="ok")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/upload", take)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/upload", seen
    await runner.cleanup()


async def test_a_body_of_known_length_goes_out_as_it_is_read(
    server: tuple[str, dict[str, object]],
) -> None:
    url, seen = server
    first = seen["first"]
    assert isinstance(first, asyncio.Event)

    async def parts() -> AsyncIterator[bytes]:
        yield b"a" * PART
        # Held back until the server has the first part: a transport that read the whole body
        # before sending would never get here.
        await asyncio.wait_for(first.wait(), timeout=5)
        yield b"b" * PART

    async with http_client(timeout=10) as http:
        request = http.build_request(
            "POST", url, content=parts(), headers={"content-length": str(2 * PART)}
        )
        response = await http.send(request)

    assert response.status_code == 200
    assert seen["size"] == 2 * PART
    assert seen["chunked"] is None


async def test_a_body_that_fails_fails_as_itself(server: tuple[str, dict[str, object]]) -> None:
    url, _ = server

    async def parts() -> AsyncIterator[bytes]:
        yield b"a" * PART
        raise Damaged("the stored bytes do not match")

    async with http_client(timeout=10) as http:
        request = http.build_request(
            "POST", url, content=parts(), headers={"content-length": str(2 * PART)}
        )
        with pytest.raises(Damaged):
            await http.send(request)


async def test_a_body_of_bytes_is_sent_whole(server: tuple[str, dict[str, object]]) -> None:
    url, seen = server
    async with http_client(timeout=10) as http:
        response = await http.post(url, content=b"c" * (PART + 1))
    assert response.status_code == 200
    assert seen["size"] == PART + 1
    assert isinstance(response, httpx.Response)


@pytest.mark.parametrize("streamed", [False, True])
async def test_an_answer_cut_short_is_a_read_error_whatever_the_body(streamed: bool) -> None:
    """aiohttp's own parser errors (a body shorter than its Content-Length) chain an exception
    that is not a ClientError: the answer is still a ReadError (UNKNOWN to the publisher), never
    that exception let out as if the request body had failed."""

    async def short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"id": ')
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(short, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    async def parts() -> AsyncIterator[bytes]:
        yield b"x" * 10

    async with server, http_client(timeout=5.0) as http:
        body: bytes | AsyncIterator[bytes] = parts() if streamed else b"x" * 10
        request = http.build_request(
            "POST", f"http://127.0.0.1:{port}/", content=body, headers={"content-length": "10"}
        )
        with pytest.raises(httpx.ReadError):
            await http.send(request)
