"""Sending an uploaded file's bytes to a platform without holding the file in memory.

A video can be hundreds of megabytes; the publisher streams it from the media store
(`MediaFetcher.stream`) into the request body, in parts a platform's chunk rules ask for, so
a publisher sending several at once stays within a few parts' memory each.

An upload is not a publish: nothing is public until the call that makes the post (a tweet, a
status, a container's publish). So an upload request whose answer never came is RETRYABLE,
not UNKNOWN (`send_upload`), and a platform module calls `request.stage.publishing()` just
before the one call that makes the post public (see `AttemptStage`).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from dataclasses import replace

import httpx

from kairos_publisher.media import STREAM_CHUNK, MediaError, MediaFetcher, StoredMedia
from kairos_publisher.platforms.base import (
    AttemptStage,
    PublishOutcome,
    Result,
    media_failed,
    nothing_posted,
    send,
)


def _quoted(value: str) -> str:
    """A form-data parameter value in quotes (RFC 7578 §4.2: percent-encode the quote and the
    line breaks, as browsers do)."""
    return value.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


class MultipartBody:
    """A multipart/form-data body of text fields and one streamed file, with its length known
    up front (several platforms refuse a chunked body).

    `headers` go on the request; `content` is the body to send, once.
    """

    def __init__(
        self,
        fields: Mapping[str, str],
        file_field: str,
        filename: str,
        content_type: str,
        size: int,
        chunks: AsyncIterable[bytes],
    ) -> None:
        self.boundary = secrets.token_hex(16)
        head = bytearray()
        for name, value in fields.items():
            head += (
                f'--{self.boundary}\r\nContent-Disposition: form-data; name="{_quoted(name)}"'
            ).encode()
            head += b"\r\n\r\n" + value.encode() + b"\r\n"
        head += (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{_quoted(file_field)}"; '
            f'filename="{_quoted(filename)}"\r\nContent-Type: {content_type}\r\n\r\n'
        ).encode()
        self._head = bytes(head)
        self._tail = f"\r\n--{self.boundary}--\r\n".encode()
        self._chunks = chunks
        self.length = len(self._head) + size + len(self._tail)

    @property
    def headers(self) -> dict[str, str]:
        return {
            "content-type": f"multipart/form-data; boundary={self.boundary}",
            "content-length": str(self.length),
        }

    async def content(self) -> AsyncIterator[bytes]:
        yield self._head
        async for chunk in self._chunks:
            yield chunk
        yield self._tail


def multipart(
    fetcher: MediaFetcher,
    media: StoredMedia,
    file_field: str,
    fields: Mapping[str, str] | None = None,
    *,
    filename: str = "",
    chunk_size: int = STREAM_CHUNK,
) -> MultipartBody:
    """A multipart body of `fields` and the uploaded file as `file_field`, streamed from the
    media store."""
    return MultipartBody(
        fields or {},
        file_field,
        filename or media.filename,
        media.content_type,
        media.size,
        fetcher.stream(media, chunk_size),
    )


async def send_upload(
    http: httpx.AsyncClient, request: httpx.Request
) -> httpx.Response | PublishOutcome:
    """Send one request of an upload, turning failures into outcomes: an unreadable or damaged
    file is `media_failed`; an answer that never came is RETRYABLE (the upload is started
    afresh on the next attempt, and nothing was made public)."""
    try:
        found = await send(http, request)
    except MediaError as error:
        return media_failed(error)
    if isinstance(found, PublishOutcome) and found.result == Result.UNKNOWN:
        return replace(nothing_posted(found), code="upload_timeout")
    return found


async def send_publishing(
    http: httpx.AsyncClient, stage: AttemptStage, request: httpx.Request
) -> httpx.Response | PublishOutcome:
    """Send the one request that uploads a video and publishes it at once (Telegram's
    `sendVideo`, a Discord webhook execute): marked publishing first, as every public call is;
    a damaged stored file is a media outcome (the upload never completed, nothing was made)."""
    refused = await stage.publishing()
    if refused is not None:
        return refused
    try:
        return await send(http, request)
    except MediaError as error:
        return media_failed(error)
