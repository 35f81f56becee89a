"""The filesystem media store: one file per key under a root folder, the default for `make dev`
and for single-machine installs.

A put writes a temporary file beside the final one and renames it into place only once every byte
is on disk (written, fsynced), so a crash, a failed stream or a cancelled upload never leaves a
half file under the key: a reader sees the old file or the whole new one. Temporary names start
with '.', which no key segment may, so they never collide with a key; a process killed mid-put can
leave one behind (`.NAME.RANDOM.part`), never a wrong object.

File calls block, so each one runs in a worker thread, one chunk at a time: memory holds the chunk
in hand, never the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import tempfile
from collections.abc import AsyncIterable, AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import IO

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


class FileStore:
    """A `MediaStore` keeping each object as the file `root/KEY`."""

    #: A folder has no URLs to hand out (`presigned_url` answers None).
    makes_urls = False

    def __init__(self, root: Path, *, read_chunk_size: int = READ_CHUNK_SIZE) -> None:
        self.root = root
        self._read_chunk_size = read_chunk_size

    def __repr__(self) -> str:
        return f"FileStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    async def put(
        self, key: str, chunks: AsyncIterable[bytes], *, max_size: int | None = None
    ) -> StoredObject:
        path = self._path(key)
        temporary = await asyncio.to_thread(_create_temporary, path)
        digest = Digest(max_size)
        try:
            with temporary:
                async for chunk in chunks:
                    digest.add(chunk)
                    await asyncio.to_thread(temporary.write, chunk)
                await asyncio.to_thread(_flush_to_disk, temporary)
            await asyncio.to_thread(_move_into_place, Path(temporary.name), path)
        except BaseException:
            # Cancellation included: the upload did not finish, so its bytes must not stay.
            discard(Path(temporary.name))
            raise
        return digest.stored(key)

    async def read(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        check_range(start, end)
        path = self._path(key)
        try:
            file = await asyncio.to_thread(path.open, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise MediaNotFound(key) from None
        try:
            size = os.fstat(file.fileno()).st_size
            if (start or end is not None) and start >= size:
                raise InvalidRange(f"start {start} is not within the object's {size} bytes")
            stop = size if end is None else min(end, size)
            file.seek(start)
            position = start
            while position < stop:
                chunk = await asyncio.to_thread(
                    file.read, min(self._read_chunk_size, stop - position)
                )
                if not chunk:  # the file was replaced by a shorter one: this one ends here
                    return
                position += len(chunk)
                yield chunk
        finally:
            file.close()

    async def stat(self, key: str) -> ObjectStat:
        path = self._path(key)
        try:
            status = await asyncio.to_thread(path.stat)
        except (FileNotFoundError, NotADirectoryError):
            raise MediaNotFound(key) from None
        if not stat.S_ISREG(status.st_mode):
            raise MediaNotFound(key)
        return ObjectStat(key=key, size=status.st_size)

    async def delete(self, key: str) -> None:
        path = self._path(key)
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            await asyncio.to_thread(path.unlink)

    async def presigned_url(self, key: str, expires_in: timedelta) -> str | None:
        check_key(key)
        return None

    @contextlib.asynccontextmanager
    async def local_file(self, key: str) -> AsyncIterator[Path]:
        await self.stat(key)
        yield self._path(key)


def _create_temporary(path: Path) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Beside the final file, so that the rename stays within one filesystem and is atomic.
    return tempfile.NamedTemporaryFile(
        mode="wb", dir=path.parent, prefix=f".{path.name}.", suffix=".part", delete=False
    )


def discard(path: Path) -> None:
    """Delete a temporary file, in the calling thread: clean-up after a cancellation must not
    await, or a second cancellation would skip it."""
    path.unlink(missing_ok=True)


def _flush_to_disk(file: IO[bytes]) -> None:
    file.flush()
    os.fsync(file.fileno())


def _move_into_place(temporary: Path, path: Path) -> None:
    os.replace(temporary, path)
    # The rename itself lives in the directory: sync it too, so that after a power cut the key
    # names the new file rather than nothing or the old one.
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
