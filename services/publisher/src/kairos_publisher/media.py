"""Getting a post's media for the platforms that want bytes (X, Mastodon, Bluesky, LinkedIn):
downloaded from its URL, or read from the media store the api uploaded it to.

A file uploaded to Kairos (`StoredMedia`) is read from the store that the api and the publisher
share (`KAIROS_MEDIA_STORE`), within the platform's size limit, and must be exactly the size and
SHA-256 the api recorded, or it is refused for good. Either way the platform module gets the
same `Media`, so its upload code has one path.

Every download is limited in size and type, and goes through the publisher's guard against
server-side request forgery (`kairos_publisher.egress`): the first URL and each redirect's is
checked, and the connection goes to the address that was checked. `allowed_networks` exempts
networks on purpose, for development and tests (`KAIROS_MEDIA_ALLOWED_NETWORKS`, e.g.
`127.0.0.0/8`). A refused host is named to the tenant only in fixed words; the addresses it
resolved to go to the publisher's log. The body is asked for and accepted only without a
content coding (a compressed body would defeat the size limit before it is counted).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import httpx

from kairos_common.addresses import Address, Network
from kairos_common.errors import InvalidArgument
from kairos_media.store import MediaNotFound, MediaStore
from kairos_publisher.egress import (
    EgressGuard,
    Refused,
    Resolver,
    guarded_client,
    system_resolver,
)

log = logging.getLogger(__name__)

#: Image types the platforms take, by the media type each file's first bytes prove.
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/gif": "gif",
    "image/webp": "webp",
    "video/mp4": "mp4",
    "video/quicktime": "mov",
    "video/webm": "webm",
}
#: The part size `MediaFetcher.stream` yields unless asked for another: what an upload body
#: streamed in one request is sent in.
STREAM_CHUNK = 1024 * 1024
MAX_REDIRECTS = 5
#: The whole download (resolving, redirects, the body) may take this many `timeout`s at most;
#: `timeout` alone bounds each step, which a server sending a byte now and then never trips.
TOTAL_TIMEOUTS = 4


@dataclass(frozen=True)
class Media:
    """One downloaded (or uploaded) file."""

    #: The URL it came from, or the id of the uploaded file.
    url: str
    content: bytes = field(repr=False)
    content_type: str
    #: A file name for multipart uploads, from the URL's path.
    filename: str


@dataclass(frozen=True)
class StoredMedia:
    """A file uploaded to Kairos, as a begun attempt names it: where it is kept, what its bytes
    must be, and what the api probed them to be."""

    media_id: str
    content_type: str
    size: int
    sha256: str
    storage_key: str
    #: "image", "gif" or "video" (`kairos_media.MediaKind`).
    kind: str = "image"
    #: A presigned GET URL, for a platform that pulls media by URL; "" for the others.
    url: str = ""
    #: The picture's size as shown (rotation applied), in pixels.
    width: int = 0
    height: int = 0
    #: Videos only: the length, in seconds.
    duration_seconds: float = 0.0

    @property
    def is_video(self) -> bool:
        return self.kind == "video"

    @property
    def filename(self) -> str:
        """A file name for uploads that ask for one: the id and the type's usual extension."""
        return f"{self.media_id}.{_EXTENSIONS.get(self.content_type, 'bin')}"


#: What a platform module asks `MediaFetcher.fetch` for: a URL, or an uploaded file.
MediaSource = str | StoredMedia


class MediaError(Exception):
    """Why a file could not be had; `retryable` when trying later may help (5xx, network).
    `reason` reaches the tenant (in the attempt and its events); `detail` does not.

    Not a frozen dataclass: Python sets attributes on exceptions in flight (`__traceback__` in
    `contextlib`'s context managers, `__notes__`), which a frozen one turns into
    FrozenInstanceError.
    """

    def __init__(self, url: str, reason: str, retryable: bool = False, detail: str = "") -> None:
        super().__init__(url, reason, retryable, detail)
        self.url = url
        self.reason = reason
        self.retryable = retryable
        #: More than the reason, for the publisher's log only (what a refused host resolved to).
        self.detail = detail or reason

    def __repr__(self) -> str:
        return f"MediaError(url={self.url!r}, reason={self.reason!r}, retryable={self.retryable})"

    def __str__(self) -> str:
        return f"media {self.url}: {self.reason}"


def sniff(content: bytes) -> str:
    """The image type the bytes really are, or ""."""
    if content.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if content.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp"
    return ""


class MediaFetcher:
    """Fetches media URLs within limits, refusing non-public addresses."""

    def __init__(
        self,
        *,
        timeout: float = 15.0,
        allowed_networks: Collection[Network] = (),
        resolver: Resolver = system_resolver,
        store: MediaStore | None = None,
    ) -> None:
        self.timeout = timeout
        #: Checks the host of every URL and redirect before anything connects to it.
        self.guard = EgressGuard(allowed_networks, resolver)
        #: Where uploaded files are read from; None in a publisher given no store (tests).
        self.store = store
        self._http: httpx.AsyncClient | None = None

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = guarded_client(self.timeout)
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def refusal(self, address: Address) -> str:
        """Why `address` may not be fetched from, or "" when it may."""
        return self.guard.refusal(address)

    async def fetch(self, source: MediaSource, *, max_bytes: int, types: Collection[str]) -> Media:
        """The file at a URL, or an uploaded one; raises MediaError naming what is wrong."""
        name = source if isinstance(source, str) else source.media_id
        limit = self.timeout * TOTAL_TIMEOUTS
        try:
            async with asyncio.timeout(limit):
                if isinstance(source, str):
                    return await self._fetch(source, max_bytes, types)
                return await self._read_stored(source, max_bytes, types)
        except TimeoutError:
            done = "downloaded" if isinstance(source, str) else "read from the media store"
            raise MediaError(name, f"not {done} within {limit:g} s", retryable=True) from None

    async def stream(
        self, media: StoredMedia, chunk_size: int = STREAM_CHUNK
    ) -> AsyncIterator[bytes]:
        """The uploaded file's bytes from the media store, in parts of exactly `chunk_size`
        bytes (the last may be shorter), never the whole file in memory.

        The bytes are checked as they go: more than the recorded size stops the stream, and the
        size and SHA-256 are checked before the last part is yielded, so a damaged file raises
        MediaError before a platform has been sent all of it (an upload is then never finished,
        and nothing is published). Raises MediaError as `fetch` does.
        """
        name = media.media_id
        if self.store is None:
            raise MediaError(name, "this publisher has no media store to read uploads from")
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        digest = hashlib.sha256()
        size = 0
        pending = bytearray()
        try:
            async for chunk in self.store.read(media.storage_key):
                size += len(chunk)
                if size > media.size:
                    raise MediaError(name, f"the store holds more than the {media.size} uploaded")
                digest.update(chunk)
                pending += chunk
                # A whole part stays held back until the store is read to the end, so a short
                # or damaged file fails before its last part is sent.
                while len(pending) > chunk_size:
                    part = bytes(pending[:chunk_size])
                    del pending[:chunk_size]
                    yield part
        except MediaError:
            raise
        except MediaNotFound:
            raise MediaError(name, "is no longer in the media store (deleted?)") from None
        except InvalidArgument as error:
            raise MediaError(name, f"cannot be read from the media store: {error}") from None
        except Exception as error:
            # The store's disk or network (S3 unreachable, 5xx): trying later may help.
            raise MediaError(name, f"reading the media store failed: {error!r}", True) from None
        if size != media.size:
            raise MediaError(name, f"the store holds {size} bytes, not the {media.size} uploaded")
        if digest.hexdigest() != media.sha256:
            raise MediaError(name, "the stored bytes do not match the SHA-256 of the upload")
        if pending:
            yield bytes(pending)

    async def _read_stored(
        self, media: StoredMedia, max_bytes: int, types: Collection[str]
    ) -> Media:
        """The uploaded file's bytes, read whole (images are small) through `stream`, which
        checks them against what the api recorded of them."""
        name = media.media_id
        if media.size > max_bytes:
            raise MediaError(name, f"{media.size} bytes is over the limit of {max_bytes}")
        if media.content_type not in types:
            raise MediaError(name, f"type {media.content_type} is not one of {', '.join(types)}")
        content = b"".join([part async for part in self.stream(media, max(media.size, 1))])
        kind = sniff(content)
        if kind not in types:
            raise MediaError(
                name, f"type {kind or 'unrecognised'} is not one of {', '.join(types)}"
            )
        return Media(
            url=name, content=content, content_type=kind, filename=f"{name}.{_EXTENSIONS[kind]}"
        )

    async def _fetch(self, url: str, max_bytes: int, types: Collection[str]) -> Media:
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            response = await self._get(url, current)
            try:
                if response.is_redirect:
                    location = response.headers.get("location", "")
                    if not location:
                        raise MediaError(url, f"redirect from {current} without a location")
                    current = urljoin(current, location)
                    continue
                return await self._read(url, current, response, max_bytes, types)
            finally:
                await response.aclose()
        raise MediaError(url, f"more than {MAX_REDIRECTS} redirects")

    async def _get(self, original: str, url: str) -> httpx.Response:
        try:
            pinned = await self.guard.pin(url)
        except Refused as refused:
            # The tenant sees the reason (in the attempt and its events); what the host resolved
            # to is for the operator only.
            log.warning("media URL refused: %s", refused.detail)
            raise MediaError(original, refused.reason, refused.retryable, refused.detail) from None
        headers = {"accept": "image/*", "accept-encoding": "identity"}
        try:
            request = pinned.request(self.http, "GET", headers=headers)
        except ValueError as error:
            raise MediaError(original, f"{url} is not a valid URL: {error}") from None
        try:
            return await self.http.send(request, stream=True)
        except httpx.HTTPError as error:
            raise MediaError(original, f"GET {url} failed: {error!r}", retryable=True) from None

    async def _read(
        self,
        original: str,
        url: str,
        response: httpx.Response,
        max_bytes: int,
        types: Collection[str],
    ) -> Media:
        if response.status_code >= 500 or response.status_code == 429:
            raise MediaError(original, f"GET {url} answered {response.status_code}", True)
        if response.status_code != 200:
            raise MediaError(original, f"GET {url} answered {response.status_code}")
        coding = response.headers.get("content-encoding", "identity").strip().lower()
        if coding not in ("", "identity"):
            raise MediaError(original, f"GET {url} answered with content coding {coding!r}")
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            raise MediaError(original, f"{declared} bytes is over the limit of {max_bytes}")
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise MediaError(original, f"more than the limit of {max_bytes} bytes")
                chunks.append(chunk)
        except httpx.HTTPError as error:
            raise MediaError(original, f"reading {url} failed: {error!r}", True) from None
        content = b"".join(chunks)
        kind = sniff(content)
        if not kind or kind not in types:
            declared_type = response.headers.get("content-type", "none")
            raise MediaError(
                original,
                f"type {kind or 'unrecognised'} (declared {declared_type}) is not one of "
                f"{', '.join(sorted(types))}",
            )
        name = urlsplit(url).path.rsplit("/", 1)[-1] or "media"
        return Media(url=original, content=content, content_type=kind, filename=name)
