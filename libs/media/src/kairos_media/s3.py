"""The S3 media store: objects in a bucket of any S3-compatible store (AWS S3, MinIO, Ceph, R2,
Garage ...), under an optional key prefix. The production backend.

The client is boto3, AWS's own SDK, with each blocking call in a worker thread. Considered and set
aside:

- obstore (Rust `object_store` bindings): async and streaming, but with version 0.12 on Python
  3.11 a process that has made even one call with it aborts at exit (SIGABRT) in 1 to 11 runs out
  of 12 here, depending on the calls: its Tokio worker threads still touch Python while the
  interpreter finalizes, the known pyo3-async-runtimes shutdown race. Services must exit cleanly.
- aioboto3: async, but aiobotocore pins botocore to narrow ranges, and its client must be entered
  and closed around its use, where a boto3 client is built once, thread-safe, and needs no closing.

The threads cost little here: the calls are few and long (8 MiB parts, 1 MiB chunks), each holds a
pool thread only while it waits on the network.

The put is a multipart upload written out by hand, so that its memory is plain to see: it buffers
one part of `part_size` bytes (8 MiB: above S3's 5 MiB minimum part, and with S3's 10,000 parts,
objects of up to 78 GiB), uploads it (a copy of it, for the moment of the request: two parts'
worth at most), and only then reads on; a file smaller than one part goes up in one PUT. When the
stream raises, is cancelled or passes `max_size`, the upload is aborted: S3 shows a multipart
object only once it is completed, so nothing appears under the key. A read streams the body in
`read_chunk_size` chunks.

Checksums: botocore 1.36 and later add CRC32 checksums to uploads by default, which some
S3-compatible stores refuse; they are sent only where S3 requires them (`when_required`). S3 checks
each part's Content-MD5 anyway, and the store returns a SHA-256 of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import tempfile
from collections.abc import AsyncIterable, AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from kairos_common.errors import InvalidArgument
from kairos_media.filesystem import discard
from kairos_media.location import S3Location
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
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

#: Size of each part of a multipart upload, and what a put buffers at most.
PART_SIZE = 8 * 1024 * 1024
#: Longest a presigned URL may live: what SigV4 allows.
MAX_URL_LIFETIME = timedelta(days=7)
#: Error codes S3 answers for a missing object (HEAD answers the bare status, having no body).
_MISSING = frozenset({"NoSuchKey", "NotFound", "404"})


class S3MediaStore:
    """A `MediaStore` keeping each object in an S3 bucket, under `location.prefix` + '/' + key."""

    #: Every object can be handed out as a presigned GET URL.
    makes_urls = True

    def __init__(
        self,
        location: S3Location,
        *,
        part_size: int = PART_SIZE,
        read_chunk_size: int = READ_CHUNK_SIZE,
    ) -> None:
        self.location = location
        self._prefix = f"{location.prefix.strip('/')}/" if location.prefix.strip("/") else ""
        self._part_size = part_size
        self._read_chunk_size = read_chunk_size
        config = Config(
            # Path-style requests (endpoint/bucket/key) work with every S3-compatible store;
            # AWS itself, with no endpoint, gets its virtual-hosted style.
            s3={"addressing_style": "path" if location.endpoint_url else "auto"},
            signature_version="s3v4",
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=10,
            read_timeout=60,
        )
        # Its own session, since sessions are not thread-safe; the client is. With static
        # credentials, building it makes no request; without them boto3 looks them up here, as
        # AWS SDKs do (environment, config files, then container or instance metadata).
        self._client: S3Client = boto3.session.Session().client(
            "s3",
            endpoint_url=location.endpoint_url,
            region_name=location.region,
            aws_access_key_id=location.access_key_id,
            aws_secret_access_key=location.secret_access_key,
            aws_session_token=location.session_token,
            config=config,
        )

    def __repr__(self) -> str:
        return f"S3MediaStore({self.location!r})"

    def _name(self, key: str) -> str:
        return self._prefix + check_key(key)

    async def put(
        self, key: str, chunks: AsyncIterable[bytes], *, max_size: int | None = None
    ) -> StoredObject:
        name = self._name(key)
        digest = Digest(max_size)
        part = bytearray()
        upload_id: str | None = None
        parts: list[CompletedPartTypeDef] = []
        try:
            async for chunk in chunks:
                digest.add(chunk)
                part += chunk
                if len(part) >= self._part_size:
                    if upload_id is None:
                        upload_id = await self._start_upload(name)
                    parts.append(await self._upload_part(name, upload_id, len(parts) + 1, part))
                    part = bytearray()
            if upload_id is None:
                await asyncio.to_thread(
                    self._client.put_object,
                    Bucket=self.location.bucket,
                    Key=name,
                    Body=bytes(part),
                )
                return digest.stored(key)
            if part:
                parts.append(await self._upload_part(name, upload_id, len(parts) + 1, part))
            await asyncio.to_thread(
                self._client.complete_multipart_upload,
                Bucket=self.location.bucket,
                Key=name,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            if upload_id is not None:
                # Not left to the bucket's lifecycle rules: the parts would be billed until then.
                # The thread runs to its end even if this task is cancelled again meanwhile.
                await asyncio.to_thread(
                    self._client.abort_multipart_upload,
                    Bucket=self.location.bucket,
                    Key=name,
                    UploadId=upload_id,
                )
            raise
        return digest.stored(key)

    async def _start_upload(self, name: str) -> str:
        started = await asyncio.to_thread(
            self._client.create_multipart_upload, Bucket=self.location.bucket, Key=name
        )
        return started["UploadId"]

    async def _upload_part(
        self, name: str, upload_id: str, number: int, data: bytearray
    ) -> CompletedPartTypeDef:
        uploaded = await asyncio.to_thread(
            self._client.upload_part,
            Bucket=self.location.bucket,
            Key=name,
            UploadId=upload_id,
            PartNumber=number,
            Body=bytes(data),
        )
        return {"ETag": uploaded["ETag"], "PartNumber": number}

    async def read(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        name = self._name(key)
        check_range(start, end)
        get = functools.partial(self._client.get_object, Bucket=self.location.bucket, Key=name)
        if start or end is not None:
            get = functools.partial(get, Range=f"bytes={start}-{'' if end is None else end - 1}")
        try:
            response = await asyncio.to_thread(get)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code in _MISSING:
                raise MediaNotFound(key) from None
            if code == "InvalidRange":
                size = (await self.stat(key)).size
                raise InvalidRange(
                    f"start {start} is not within the object's {size} bytes"
                ) from None
            raise
        body = response["Body"]
        try:
            while chunk := await asyncio.to_thread(body.read, self._read_chunk_size):
                yield chunk
        finally:
            body.close()

    async def stat(self, key: str) -> ObjectStat:
        name = self._name(key)
        try:
            head = await asyncio.to_thread(
                self._client.head_object, Bucket=self.location.bucket, Key=name
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code", "") in _MISSING:
                raise MediaNotFound(key) from None
            raise
        return ObjectStat(key=key, size=head["ContentLength"])

    async def delete(self, key: str) -> None:
        name = self._name(key)
        await asyncio.to_thread(self._client.delete_object, Bucket=self.location.bucket, Key=name)

    async def presigned_url(self, key: str, expires_in: timedelta) -> str | None:
        name = self._name(key)
        if not timedelta(seconds=1) <= expires_in <= MAX_URL_LIFETIME:
            raise InvalidArgument.of("expires_in", "must be from 1 second to 7 days")
        # Signed here, with the client's credentials: no request is made.
        return self._client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.location.bucket, "Key": name},
            ExpiresIn=int(expires_in.total_seconds()),
        )

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
