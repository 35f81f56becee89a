"""The S3 media store: objects in a bucket of any S3-compatible store (AWS S3, MinIO, Ceph, R2,
Garage ...), under an optional key prefix. The production backend.

The client is obstore (Python bindings of the Rust `object_store` crate, the one Apache Arrow and
DataFusion use), chosen over aioboto3 and over boto3 in threads because:

- it is async itself, on its own Rust runtime: no thread per request and no blocking SDK calls
  wrapped in threads;
- it streams both ways: `put_async` takes an async iterator and uploads it as a multipart upload,
  keeping at most `max_concurrency` parts of `part_size` bytes in memory, and aborts the upload
  when the iterator raises or is cancelled, so a failed put leaves no object (S3 makes a
  multipart object visible only once it is completed); `get_async` streams the body in chunks,
  with byte ranges;
- it signs GET URLs locally (`sign_async`), with the store's own credentials;
- it is one typed wheel with no dependencies, where aioboto3 pins aiobotocore to exact botocore
  versions and needs separate stubs for mypy.

Bounded memory: a put holds at most `max_concurrency` parts of `part_size` bytes (8 MiB by
default, above S3's 5 MiB minimum part; 2 parts in flight: 16 MiB) plus the chunk in hand; a read
holds about one `read_chunk_size` chunk. A file smaller than one part goes up in a single PUT
rather than a three-request multipart upload: images, mostly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import obstore
from obstore.exceptions import BaseError, NotFoundError
from obstore.store import S3Store as ObstoreS3

from kairos_media.filesystem import discard
from kairos_media.store import (
    READ_CHUNK_SIZE,
    Digest,
    InvalidRange,
    MediaNotFound,
    ObjectStat,
    StoredObject,
    check_key,
    check_range,
)

if TYPE_CHECKING:
    from obstore import GetOptions
    from obstore.store import S3Config

#: Size of each part of a multipart upload, and the most a put buffers per part: S3 wants at least
#: 5 MiB (but for the last part) and at most 10,000 parts, so 8 MiB parts carry objects of up to
#: 78 GiB while a put's buffers stay small.
PART_SIZE = 8 * 1024 * 1024
#: Parts uploaded at once by one put; with PART_SIZE, what bounds a put's memory.
PART_CONCURRENCY = 2

# At runtime obstore raises the builtin FileNotFoundError for a missing object; its stubs name
# NotFoundError. Both are caught.
_MISSING = (FileNotFoundError, NotFoundError)


@dataclass(frozen=True)
class S3Location:
    """Where the objects live and how to reach them."""

    #: The bucket's name.
    bucket: str
    #: Prepended to every key ('media/' makes key 'a/b' the object 'media/a/b'); '' for none.
    prefix: str = ""
    #: The store's URL (https://minio.internal:9000); None for AWS S3 itself.
    endpoint_url: str | None = None
    #: The region the bucket is in (any value for most S3-compatible stores).
    region: str = "us-east-1"
    #: Static credentials; None to let the client find them (instance profile, web identity ...).
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)


class S3MediaStore:
    """A `MediaStore` keeping each object in an S3 bucket under `location.prefix` + key."""

    def __init__(
        self,
        location: S3Location,
        *,
        part_size: int = PART_SIZE,
        part_concurrency: int = PART_CONCURRENCY,
        read_chunk_size: int = READ_CHUNK_SIZE,
    ) -> None:
        self.location = location
        self._part_size = part_size
        self._part_concurrency = part_concurrency
        self._read_chunk_size = read_chunk_size
        config: S3Config = {"region": location.region}
        endpoint = location.endpoint_url
        if endpoint:
            # Path-style requests (endpoint/bucket/key) work with every S3-compatible store; AWS
            # itself, with no endpoint, gets its virtual-hosted one.
            config["endpoint"] = endpoint
            config["virtual_hosted_style_request"] = False
        if location.access_key_id is not None and location.secret_access_key is not None:
            config["access_key_id"] = location.access_key_id
            config["secret_access_key"] = location.secret_access_key
            if location.session_token is not None:
                config["session_token"] = location.session_token
        # Building the client connects to nothing: requests start with the first call.
        self._store = ObstoreS3(
            location.bucket,
            prefix=location.prefix.strip("/") or None,
            config=config,
            client_options={"allow_http": bool(endpoint and endpoint.startswith("http://"))},
        )

    def __repr__(self) -> str:
        return f"S3MediaStore({self.location!r})"

    async def put(
        self, key: str, chunks: AsyncIterable[bytes], *, max_size: int | None = None
    ) -> StoredObject:
        check_key(key)
        digest = Digest(max_size)
        stream = digest.through(chunks)
        head: list[bytes] = []
        buffered = 0
        async for chunk in stream:
            head.append(chunk)
            buffered += len(chunk)
            if buffered > self._part_size:
                await obstore.put_async(
                    self._store,
                    key,
                    _chained(head, stream),
                    use_multipart=True,
                    chunk_size=self._part_size,
                    max_concurrency=self._part_concurrency,
                )
                return digest.stored(key)
        await obstore.put_async(self._store, key, b"".join(head), use_multipart=False)
        return digest.stored(key)

    async def read(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        check_key(key)
        check_range(start, end)
        options: GetOptions = {}
        if end is not None:
            options["range"] = (start, end)
        elif start:
            options["range"] = {"offset": start}
        try:
            result = await obstore.get_async(self._store, key, options=options)
        except _MISSING:
            raise MediaNotFound(key) from None
        except BaseError:
            # S3 answers 416 to a range outside the object, which obstore reports as a generic
            # error: ask for the size to tell that apart from any other failure.
            size = (await self.stat(key)).size
            if start >= size:
                raise InvalidRange(
                    f"start {start} is not within the object's {size} bytes"
                ) from None
            raise
        async for chunk in result.stream(min_chunk_size=self._read_chunk_size):
            yield bytes(chunk)

    async def stat(self, key: str) -> ObjectStat:
        check_key(key)
        try:
            meta = await obstore.head_async(self._store, key)
        except _MISSING:
            raise MediaNotFound(key) from None
        return ObjectStat(key=key, size=meta["size"])

    async def delete(self, key: str) -> None:
        check_key(key)
        await obstore.delete_async(self._store, key)

    async def presigned_url(self, key: str, expires_in: timedelta) -> str | None:
        check_key(key)
        return await obstore.sign_async(self._store, "GET", key, expires_in)

    @contextlib.asynccontextmanager
    async def local_file(self, key: str) -> AsyncIterator[Path]:
        descriptor, name = tempfile.mkstemp(prefix="kairos-media-", suffix=".part")
        path = Path(name)
        try:
            with os.fdopen(descriptor, "wb") as file:
                async for chunk in self.read(key):
                    await asyncio.to_thread(file.write, chunk)
            yield path
        finally:
            discard(path)


async def _chained(head: list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    for chunk in head:
        yield chunk
    head.clear()  # obstore has copied them into its part buffer: drop ours
    async for chunk in rest:
        yield chunk
