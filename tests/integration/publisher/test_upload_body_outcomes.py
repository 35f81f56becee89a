"""The publisher's transport sends a streamed upload body part by part: the platform is reading
it before the stored file has been read to the end (a 1 GB Slack upload or a 50 MB Telegram one
is never held whole), with its declared length and no chunked coding; a stored file found
damaged mid-way fails as a media outcome, with the body left short."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from kairos_media import FileStore
from kairos_publisher.media import MediaError, MediaFetcher, StoredMedia
from kairos_publisher.platforms.base import PublishOutcome, Result, send
from kairos_publisher.transport import http_client
from kairos_publisher.upload import multipart, send_upload

PART = 1024 * 1024
PARTS = 32


class Receiver:
    """A server that notes how much of the body the client had produced when its first MiB
    arrived, then reads the rest."""

    def __init__(self) -> None:
        self.produced = 0
        self.produced_at_first_part: int | None = None
        self.received = b""
        self.headers: dict[str, str] = {}

    async def handle(self, request: web.Request) -> web.Response:
        self.headers = {k.lower(): v for k, v in request.headers.items()}
        first = await request.content.readexactly(PART)
        self.produced_at_first_part = self.produced
        rest = await request.content.read()
        self.received = first + rest
        return web.Response(text="OK")


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    found = Receiver()
    app = web.Application(client_max_size=2 * PART * PARTS)
    app.router.add_post("/upload", found.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield found, f"http://127.0.0.1:{port}/upload"
    await runner.cleanup()


async def test_a_streamed_body_is_sent_as_it_is_produced_with_its_length(
    receiver: tuple[Receiver, str],
) -> None:
    server, url = receiver

    async def parts() -> AsyncIterator[bytes]:
        for index in range(PARTS):
            server.produced += 1
            yield bytes([index]) * PART

    async with http_client(timeout=5.0) as http:
        request = http.build_request(
            "POST", url, headers={"content-length": str(PART * PARTS)}, content=parts()
        )
        answer = await send_upload(http, request)

    assert not isinstance(answer, PublishOutcome), answer
    assert answer.status_code == 200
    assert server.headers["content-length"] == str(PART * PARTS)
    assert "transfer-encoding" not in server.headers
    assert server.received == b"".join(bytes([i]) * PART for i in range(PARTS))
    assert server.produced_at_first_part is not None
    assert server.produced_at_first_part < PARTS, "the whole body was read before sending"


async def test_a_stored_file_damaged_mid_way_is_a_media_outcome(
    receiver: tuple[Receiver, str], tmp_path: Path
) -> None:
    server, url = receiver
    store = FileStore(tmp_path / "media")
    data = b"v" * (4 * PART)

    async def chunks() -> AsyncIterator[bytes]:
        yield data

    kept = await store.put("media/v-1", chunks())
    damaged = StoredMedia("v-1", "video/mp4", kept.size, "0" * 64, kept.key, kind="video")
    body = multipart(MediaFetcher(store=store), damaged, "file")

    async with http_client(timeout=5.0) as http:
        request = http.build_request("POST", url, headers=body.headers, content=body.content())
        outcome = await send_upload(http, request)

    assert isinstance(outcome, PublishOutcome)
    assert (outcome.result, outcome.code) == (Result.PERMANENT, "media")
    assert "SHA-256" in outcome.message
    assert hashlib.sha256(server.received).hexdigest() != hashlib.sha256(data).hexdigest()


async def test_the_stream_error_itself_is_raised_not_a_connection_error(
    receiver: tuple[Receiver, str],
) -> None:
    _, url = receiver

    async def failing() -> AsyncIterator[bytes]:
        yield b"x" * PART
        raise MediaError("v-2", "reading the media store failed", retryable=True)

    async with http_client(timeout=5.0) as http:
        request = http.build_request(
            "POST", url, headers={"content-length": str(2 * PART)}, content=failing()
        )
        with pytest.raises(MediaError) as raised:
            await http.send(request)

    assert raised.value.retryable


async def test_a_connection_lost_mid_body_is_not_sent_so_retryable(tmp_path: Path) -> None:
    """Unlike an answer lost after the whole request went (UNKNOWN: the platform may have acted
    on it), a body broken off cannot have been acted on."""

    async def hang_up(request: web.Request) -> web.Response:
        await request.content.readexactly(PART)
        assert request.transport is not None
        request.transport.abort()
        return web.Response(text="never sent")

    app = web.Application(client_max_size=2 * PART * PARTS)
    app.router.add_post("/upload", hang_up)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def parts() -> AsyncIterator[bytes]:
        for _ in range(PARTS):
            yield b"z" * PART

    try:
        async with http_client(timeout=5.0) as http:
            request = http.build_request(
                "POST",
                f"http://127.0.0.1:{port}/upload",
                headers={"content-length": str(PART * PARTS)},
                content=parts(),
            )
            outcome = await send(http, request)
    finally:
        await runner.cleanup()

    assert isinstance(outcome, PublishOutcome)
    assert outcome.result == Result.RETRYABLE
    assert "broken off" in outcome.message
