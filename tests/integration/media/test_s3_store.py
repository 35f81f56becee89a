"""The S3 store against a server that speaks S3's HTTP API (moto): multipart uploads of big
streams, single requests for small ones, ranges, nothing left by a failed upload, deletes,
presigned URLs that plain HTTP clients can fetch, and a local copy to probe."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from xml.etree import ElementTree

import httpx
import pytest

from kairos_common.errors import InvalidArgument
from kairos_media import (
    READ_CHUNK_SIZE,
    InvalidKey,
    InvalidRange,
    MediaNotFound,
    MediaTooLarge,
    S3MediaStore,
    VideoInfo,
)
from kairos_media.probe import probe
from kairos_media.s3 import PART_SIZE
from support.media import MIB, UploadBroke, collect, random_chunks, stream_of, write_video
from support.media_memory import measure_in_child
from support.s3_server import S3Server

_S3 = "{http://s3.amazonaws.com/doc/2006-03-01/}"


async def _bucket(server: S3Server, bucket: str, query: str = "") -> ElementTree.Element:
    """The bucket's listing (objects, or with ?uploads its unfinished multipart uploads), asked
    over plain HTTP rather than through the store under test."""
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"{server.endpoint_url}/{bucket}{query}")
    response.raise_for_status()
    return ElementTree.fromstring(response.text)


async def _etags(server: S3Server, bucket: str) -> dict[str, str]:
    listing = await _bucket(server, bucket)
    return {
        entry.findtext(f"{_S3}Key", ""): entry.findtext(f"{_S3}ETag", "").strip('"')
        for entry in listing.iter(f"{_S3}Contents")
    }


async def test_a_stream_bigger_than_a_part_goes_up_in_parts_and_comes_back_whole(
    s3_server: S3Server, bucket: str, store: S3MediaStore
) -> None:
    expected = hashlib.sha256(b"".join(random_chunks(seed=11, count=20))).hexdigest()

    stored = await store.put("tenant-a/talk.mp4", stream_of(seed=11, count=20))

    assert (stored.size, stored.sha256) == (20 * MIB, expected)
    # S3 tags an object completed from N parts with an ETag ending in -N: 8 + 8 + 4 MiB.
    assert (await _etags(s3_server, bucket))["media/tenant-a/talk.mp4"].endswith("-3")
    assert PART_SIZE == 8 * MIB
    read_back = hashlib.sha256()
    largest = 0
    async for chunk in store.read("tenant-a/talk.mp4"):
        read_back.update(chunk)
        largest = max(largest, len(chunk))
    assert read_back.hexdigest() == expected
    assert largest <= READ_CHUNK_SIZE  # streamed, not fetched whole
    assert (await store.stat("tenant-a/talk.mp4")).size == 20 * MIB


async def test_a_small_file_goes_up_in_one_request(
    s3_server: S3Server, bucket: str, store: S3MediaStore
) -> None:
    stored = await store.put("t/photo.jpg", stream_of(seed=12, count=3, size=50_000))

    assert stored.size == 150_000
    etag = (await _etags(s3_server, bucket))["media/t/photo.jpg"]
    assert etag == hashlib.md5(b"".join(random_chunks(seed=12, count=3, size=50_000))).hexdigest()


def test_memory_stays_bounded_however_big_the_file(s3_server: S3Server, bucket: str) -> None:
    # 128 MiB up and down in a process of its own: its peak memory is the transfer's alone.
    outcome = measure_in_child("s3", s3_server.endpoint_url, bucket, "128")

    assert outcome["stored"] == outcome["read"] == 128 * MIB
    # A put holds one 8 MiB part and, while it uploads, its copy; a read one 1 MiB chunk.
    assert outcome["put_growth_mib"] < 40, outcome
    assert outcome["read_growth_mib"] < 16, outcome


async def test_ranges_read_part_of_the_object(store: S3MediaStore) -> None:
    data = b"".join(random_chunks(seed=13, count=10))
    await store.put("t/clip.mp4", stream_of(seed=13, count=10))

    boundary = 8 * MIB  # where the first part ended
    assert (
        await collect(store.read("t/clip.mp4", start=boundary - 10, end=boundary + 10))
        == (data[boundary - 10 : boundary + 10])
    )
    assert await collect(store.read("t/clip.mp4", start=10 * MIB - 3)) == data[-3:]
    assert await collect(store.read("t/clip.mp4", start=5, end=20 * MIB)) == data[5:]
    with pytest.raises(InvalidRange, match="not within"):
        await collect(store.read("t/clip.mp4", start=10 * MIB))
    with pytest.raises(MediaNotFound):
        await collect(store.read("t/other.mp4"))
    with pytest.raises(MediaNotFound):
        await store.stat("t/other.mp4")


async def test_a_failed_upload_leaves_no_object_and_no_pending_parts(
    s3_server: S3Server, bucket: str, store: S3MediaStore
) -> None:
    old = await store.put("t/clip.mp4", stream_of(seed=14, count=2))

    # Past the first 8 MiB part, so that parts were already uploaded when the client went away.
    with pytest.raises(UploadBroke):
        await store.put("t/new.mp4", stream_of(seed=15, count=20, fail_after=12))
    with pytest.raises(UploadBroke):
        await store.put("t/clip.mp4", stream_of(seed=15, count=20, fail_after=12))
    with pytest.raises(MediaTooLarge):
        await store.put("t/clip.mp4", stream_of(seed=15, count=20), max_size=10 * MIB)

    with pytest.raises(MediaNotFound):
        await store.stat("t/new.mp4")
    again = hashlib.sha256(await collect(store.read("t/clip.mp4"))).hexdigest()
    assert again == old.sha256
    uploads = await _bucket(s3_server, bucket, "?uploads")
    assert uploads.tag == f"{_S3}ListMultipartUploadsResult"
    assert list(uploads.iter(f"{_S3}Upload")) == []


async def test_a_cancelled_upload_leaves_no_object_and_no_pending_parts(
    s3_server: S3Server, bucket: str, store: S3MediaStore
) -> None:
    first_part_sent = asyncio.Event()

    async def stalled_client() -> AsyncIterator[bytes]:
        for _ in range(9):  # one part and a bit: the multipart upload has begun
            yield bytes(MIB)
        first_part_sent.set()
        await asyncio.sleep(60)
        yield b"never"

    upload = asyncio.create_task(store.put("t/stalled.mp4", stalled_client()))
    await first_part_sent.wait()
    assert list((await _bucket(s3_server, bucket, "?uploads")).iter(f"{_S3}Upload")) != []
    upload.cancel()
    with pytest.raises(asyncio.CancelledError):
        await upload

    with pytest.raises(MediaNotFound):
        await store.stat("t/stalled.mp4")
    assert list((await _bucket(s3_server, bucket, "?uploads")).iter(f"{_S3}Upload")) == []


async def test_delete_removes_the_object(store: S3MediaStore) -> None:
    await store.put("t/gone.png", stream_of(seed=16, count=1, size=1000))

    await store.delete("t/gone.png")
    await store.delete("t/gone.png")  # gone already: not an error

    with pytest.raises(MediaNotFound):
        await store.stat("t/gone.png")


async def test_a_presigned_url_serves_the_object_over_plain_http(store: S3MediaStore) -> None:
    stored = await store.put("t/clip.mp4", stream_of(seed=17, count=2))

    url = await store.presigned_url("t/clip.mp4", expires_in=timedelta(minutes=5))

    assert url is not None
    assert "X-Amz-Signature=" in url
    assert "X-Amz-Expires=300" in url
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(url)
    assert response.status_code == 200
    assert hashlib.sha256(response.content).hexdigest() == stored.sha256
    with pytest.raises(InvalidArgument, match="expires_in"):
        await store.presigned_url("t/clip.mp4", expires_in=timedelta(days=8))


@pytest.fixture
def video(tmp_path: Path) -> bytes:
    """A one-second vertical H.264/AAC MP4."""
    path = write_video(
        tmp_path / "upload.bin",
        container="mp4",
        video_codec="libx264",
        audio_codec="aac",
        width=180,
        height=320,
    )
    return path.read_bytes()


async def test_an_uploaded_video_is_probed_from_a_local_copy(
    store: S3MediaStore, video: bytes
) -> None:
    async def upload() -> AsyncIterator[bytes]:
        for start in range(0, len(video), 1000):
            yield video[start : start + 1000]

    await store.put("t/upload", upload())
    async with store.local_file("t/upload") as path:
        assert await asyncio.to_thread(path.read_bytes) == video
        info = await probe(path)
    assert not await asyncio.to_thread(path.exists)  # the copy goes with the context
    assert isinstance(info, VideoInfo)
    assert (info.container, info.width, info.height) == ("mp4", 180, 320)


@pytest.mark.parametrize("key", ["../outside", "/media/x", "a/../../x", ".part", "a//b"])
async def test_keys_cannot_leave_the_prefix(
    s3_server: S3Server, bucket: str, store: S3MediaStore, key: str
) -> None:
    with pytest.raises(InvalidKey):
        await store.put(key, stream_of(seed=18, count=1, size=10))
    with pytest.raises(InvalidKey):
        await collect(store.read(key))
    with pytest.raises(InvalidKey):
        await store.stat(key)
    with pytest.raises(InvalidKey):
        await store.delete(key)
    with pytest.raises(InvalidKey):
        await store.presigned_url(key, timedelta(minutes=1))

    assert await _etags(s3_server, bucket) == {}  # nothing was written anywhere in the bucket
