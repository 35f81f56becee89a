"""The filesystem store streams files in both directions, never keeps half a file under a key, and
keeps every key inside its root."""

from __future__ import annotations

import asyncio
import hashlib
import tracemalloc
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from kairos_media import (
    READ_CHUNK_SIZE,
    FileStore,
    InvalidKey,
    InvalidRange,
    MediaNotFound,
    MediaTooLarge,
)
from support.media import MIB, UploadBroke, collect, random_chunks, stream_of


def _names(folder: Path) -> list[str]:
    """What the folder holds, temporary files included."""
    return sorted(path.name for path in folder.iterdir())


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "media")


async def test_a_multi_megabyte_stream_round_trips_in_chunks_with_bounded_memory(
    store: FileStore,
) -> None:
    expected = hashlib.sha256()
    for chunk in random_chunks(seed=1, count=32):
        expected.update(chunk)

    tracemalloc.start()
    try:
        stored = await store.put("tenant-a/video.mp4", stream_of(seed=1, count=32))
        _, put_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        read_back = hashlib.sha256()
        sizes = []
        async for chunk in store.read("tenant-a/video.mp4"):
            read_back.update(chunk)
            sizes.append(len(chunk))
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert stored.size == 32 * MIB
    assert stored.sha256 == expected.hexdigest()
    assert read_back.hexdigest() == expected.hexdigest()
    assert max(sizes) <= READ_CHUNK_SIZE
    assert len(sizes) == 32
    # 32 MiB went through each way; a few 1 MiB chunks at a time were ever held.
    assert put_peak < 4 * MIB, put_peak
    assert read_peak < 4 * MIB, read_peak
    assert (await store.stat("tenant-a/video.mp4")).size == 32 * MIB


async def test_ranges_read_part_of_the_object(store: FileStore) -> None:
    data = b"".join(random_chunks(seed=2, count=3))
    await store.put("a/b", stream_of(seed=2, count=3))

    assert (
        await collect(store.read("a/b", start=MIB - 5, end=2 * MIB + 7))
        == data[MIB - 5 : 2 * MIB + 7]
    )
    assert await collect(store.read("a/b", start=3 * MIB - 4)) == data[-4:]
    # As in HTTP, an end past the object reads to its end.
    assert await collect(store.read("a/b", start=10, end=10 * MIB)) == data[10:]
    with pytest.raises(InvalidRange, match="not within"):
        await collect(store.read("a/b", start=3 * MIB))
    with pytest.raises(InvalidRange, match="not after"):
        await collect(store.read("a/b", start=5, end=5))


async def test_a_stream_that_breaks_leaves_nothing_under_its_key(store: FileStore) -> None:
    with pytest.raises(UploadBroke):
        await store.put("t/new.mp4", stream_of(seed=3, count=8, fail_after=5))

    with pytest.raises(MediaNotFound):
        await store.stat("t/new.mp4")
    assert _names(store.root / "t") == []  # no temporary file left either


async def test_a_failed_replacement_keeps_the_old_object_whole(store: FileStore) -> None:
    old = await store.put("t/clip.mp4", stream_of(seed=4, count=2))

    with pytest.raises(UploadBroke):
        await store.put("t/clip.mp4", stream_of(seed=5, count=4, fail_after=3))
    with pytest.raises(MediaTooLarge):
        await store.put("t/clip.mp4", stream_of(seed=5, count=4), max_size=3 * MIB)

    again = hashlib.sha256(await collect(store.read("t/clip.mp4"))).hexdigest()
    assert again == old.sha256
    assert _names(store.root / "t") == ["clip.mp4"]


async def test_a_cancelled_upload_leaves_nothing(store: FileStore) -> None:
    started = asyncio.Event()

    async def slow_client() -> AsyncIterator[bytes]:
        yield b"x" * MIB
        started.set()
        await asyncio.sleep(60)
        yield b"never"

    upload = asyncio.create_task(store.put("t/slow.mp4", slow_client()))
    await started.wait()
    upload.cancel()
    with pytest.raises(asyncio.CancelledError):
        await upload

    with pytest.raises(MediaNotFound):
        await store.stat("t/slow.mp4")
    assert _names(store.root / "t") == []


@pytest.mark.parametrize(
    "key",
    [
        "../outside",
        "a/../../outside",
        "/etc/passwd",
        "a//b",
        "a/./b",
        ".hidden",
        "a/.b.part",
        "a\\..\\b",
        "",
        "a/",
        "x" * 1025,
    ],
)
async def test_keys_cannot_leave_the_root(tmp_path: Path, key: str) -> None:
    store = FileStore(tmp_path / "media")
    secret = tmp_path / "outside"
    secret.write_bytes(b"not yours")

    with pytest.raises(InvalidKey) as raised:
        await store.put(key, stream_of(seed=6, count=1))
    assert raised.value.violations[0].field == "key"
    with pytest.raises(InvalidKey):
        await collect(store.read(key))
    with pytest.raises(InvalidKey):
        await store.stat(key)
    with pytest.raises(InvalidKey):
        await store.delete(key)

    assert secret.read_bytes() == b"not yours"
    assert _names(tmp_path) == ["outside"]


async def test_delete_stat_and_the_local_file(store: FileStore) -> None:
    stored = await store.put("t/photo.png", stream_of(seed=7, count=1, size=1000))

    async with store.local_file("t/photo.png") as path:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == stored.sha256
    assert await store.presigned_url("t/photo.png", expires_in=timedelta(minutes=5)) is None

    await store.delete("t/photo.png")
    await store.delete("t/photo.png")  # gone already: not an error
    with pytest.raises(MediaNotFound):
        await store.stat("t/photo.png")
    with pytest.raises(MediaNotFound):
        await collect(store.read("t/photo.png"))
    with pytest.raises(MediaNotFound):
        async with store.local_file("t/photo.png"):
            pass
    with pytest.raises(MediaNotFound):
        await store.stat("t")  # a folder is not an object
