"""Streaming an uploaded file to a platform: `MediaFetcher.stream` yields the stored bytes in
the parts asked for and refuses a damaged file before its last part goes out; `multipart`
frames them as form-data a server parses; `send_upload` calls a lost answer retryable."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from kairos_fakes.x import form_parts
from kairos_media import FileStore
from kairos_publisher.media import MediaError, MediaFetcher, StoredMedia
from kairos_publisher.platforms.base import Result
from kairos_publisher.upload import multipart, send_upload


async def put(store: FileStore, data: bytes) -> StoredMedia:
    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(data), 300_000):
            yield data[start : start + 300_000]

    kept = await store.put("media/v-1", chunks())
    return StoredMedia("v-1", "video/mp4", kept.size, kept.sha256, kept.key, kind="video")


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "media")


@pytest.mark.parametrize("chunk_size", [1, 4096, 1_000_000, 5 * 1024 * 1024])
async def test_parts_are_exactly_the_size_asked_and_join_to_the_file(
    store: FileStore, chunk_size: int
) -> None:
    data = os.urandom(2_500_001) if chunk_size > 1 else os.urandom(10_001)
    media = await put(store, data)
    parts = [part async for part in MediaFetcher(store=store).stream(media, chunk_size)]
    assert b"".join(parts) == data
    assert all(len(part) == chunk_size for part in parts[:-1])
    assert 0 < len(parts[-1]) <= chunk_size
    assert len(parts) == -(-len(data) // chunk_size)


@pytest.mark.parametrize("damage", ["sha256", "shorter", "longer"])
async def test_a_damaged_file_fails_before_its_last_part(store: FileStore, damage: str) -> None:
    data = os.urandom(3 * 1024 * 1024)
    media = await put(store, data)
    if damage == "sha256":
        media = StoredMedia(
            media.media_id, media.content_type, media.size, "0" * 64, media.storage_key
        )
    elif damage == "shorter":
        media = StoredMedia(
            media.media_id, media.content_type, media.size + 1, media.sha256, media.storage_key
        )
    else:
        media = StoredMedia(
            media.media_id, media.content_type, media.size - 1, media.sha256, media.storage_key
        )
    sent = 0

    async def send_all() -> None:
        nonlocal sent
        async for part in MediaFetcher(store=store).stream(media, 1024 * 1024):
            sent += len(part)

    with pytest.raises(MediaError) as raised:
        await send_all()
    assert sent < len(data) - 1, "the whole file went out before the damage was seen"
    assert "v-1" in str(raised.value)


async def test_a_file_gone_from_the_store_is_named(store: FileStore) -> None:
    media = await put(store, b"x" * 10)
    await store.delete(media.storage_key)
    with pytest.raises(MediaError, match="no longer in the media store"):
        async for _ in MediaFetcher(store=store).stream(media):
            pass


async def test_multipart_body_parses_with_its_declared_length(store: FileStore) -> None:
    data = os.urandom(1_500_000)
    media = await put(store, data)
    body = multipart(
        MediaFetcher(store=store), media, "video", {"chat_id": "42", "caption": 'a "b"'}
    )
    received = bytearray()

    def handler(request: httpx.Request) -> httpx.Response:
        received.extend(request.read())
        assert request.headers["content-length"] == str(body.length)
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        request = http.build_request(
            "POST", "http://x/upload", headers=body.headers, content=body.content()
        )
        answer = await send_upload(http, request)
    assert isinstance(answer, httpx.Response)
    assert len(received) == body.length
    parts = form_parts(body.headers["content-type"], bytes(received))
    assert parts["chat_id"] == ("text/plain", b"42")
    assert parts["caption"][1] == b'a "b"'
    assert parts["video"][0] == "video/mp4"
    assert hashlib.sha256(parts["video"][1]).hexdigest() == media.sha256


async def test_an_upload_whose_answer_never_came_is_retryable_not_unknown(store: FileStore) -> None:
    media = await put(store, b"v" * 100)

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        body = multipart(MediaFetcher(store=store), media, "file")
        request = http.build_request(
            "POST", "http://x/upload", headers=body.headers, content=body.content()
        )
        outcome = await send_upload(http, request)
    assert not isinstance(outcome, httpx.Response)
    assert outcome.result == Result.RETRYABLE
    assert outcome.code == "upload_timeout"


async def test_a_damaged_file_in_an_upload_is_a_media_outcome(store: FileStore) -> None:
    media = await put(store, b"v" * 100)
    media = StoredMedia(media.media_id, media.content_type, media.size, "0" * 64, media.storage_key)

    async def handler(request: httpx.Request) -> httpx.Response:
        await request.aread()
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        body = multipart(MediaFetcher(store=store), media, "file")
        request = http.build_request(
            "POST", "http://x/upload", headers=body.headers, content=body.content()
        )
        outcome = await send_upload(http, request)
    assert not isinstance(outcome, httpx.Response)
    assert outcome.result == Result.PERMANENT
    assert outcome.code == "media"
