"""What every media store offers, whatever keeps the bytes: the `MediaStore` protocol, its results
and errors, the rule for keys, and the byte counting and hashing that both backends share.

A store moves bytes as a stream of chunks in both directions so that no file is ever held whole in
memory: `put` consumes an async iterator, `read` is one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Protocol

from kairos_common.errors import FieldViolation, InvalidArgument, NotFound

#: Size of the chunks `read` yields (the last one may be shorter): large enough that per-chunk
#: overhead vanishes next to the bytes, small enough that a few of them in flight cost little.
READ_CHUNK_SIZE = 1024 * 1024
#: Longest key, in bytes: S3's limit on object names, kept by every backend so that a key that
#: works on a developer's filesystem works in production too.
MAX_KEY_BYTES = 1024
#: One segment of a key: letters, digits, '.', '_', '=' and '-', not starting with '.'. Names
#: starting with '.' are the filesystem store's own (its temporary files); no segment can be '.'
#: or '..', so a key never climbs out of its root.
_SEGMENT = re.compile(r"[A-Za-z0-9_=-][A-Za-z0-9._=-]*")


class MediaNotFound(NotFound):
    """No object is stored under the key."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no media is stored under {key!r}")
        self.key = key


class InvalidKey(InvalidArgument):
    """A key that breaks the key rule (see `check_key`)."""

    def __init__(self, key: str, description: str) -> None:
        shown = key if len(key) <= 80 else f"{key[:80]}..."
        super().__init__(f"key {shown!r}: {description}", [FieldViolation("key", description)])


class MediaTooLarge(InvalidArgument):
    """The stream went past the size the caller allowed; nothing was kept."""

    def __init__(self, max_size: int) -> None:
        description = f"is larger than the limit of {max_size} bytes"
        super().__init__(f"file: {description}", [FieldViolation("file", description)])
        self.max_size = max_size


class InvalidRange(InvalidArgument):
    """A byte range that does not lie within the object."""

    def __init__(self, description: str) -> None:
        super().__init__(f"range: {description}", [FieldViolation("range", description)])


@dataclass(frozen=True)
class StoredObject:
    """What `put` stored."""

    key: str
    #: Length in bytes.
    size: int
    #: SHA-256 of the bytes, hex, computed while they streamed through.
    sha256: str


@dataclass(frozen=True)
class ObjectStat:
    """What `stat` knows about a stored object without reading it."""

    key: str
    #: Length in bytes.
    size: int


class MediaStore(Protocol):
    """An object store for media files, streamed in chunks both ways.

    Keys are relative, '/'-separated names (see `check_key`); every method refuses a bad key with
    `InvalidKey` before touching storage.
    """

    #: True when `presigned_url` makes URLs (S3); False where it answers None (the filesystem),
    #: so that a post for a platform that pulls media by URL is refused before it is scheduled.
    makes_urls: bool

    async def put(
        self, key: str, chunks: AsyncIterable[bytes], *, max_size: int | None = None
    ) -> StoredObject:
        """Store the stream under `key`, replacing what was there, all or nothing.

        Readers see either the old object or the whole new one, never a part: when the stream
        raises, is cancelled, or passes `max_size` bytes (`MediaTooLarge`), nothing new is left
        under `key`.
        """
        ...

    def read(self, key: str, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The bytes from `start` up to `end` (exclusive; None: the end of the object), in chunks
        of at most `READ_CHUNK_SIZE`.

        `MediaNotFound` when nothing is stored under `key`, `InvalidRange` when `start` is not
        within the object; an `end` past the object's end reads to its end, as in HTTP. Both
        errors are raised on the first iteration.
        """
        ...

    async def stat(self, key: str) -> ObjectStat:
        """The object's size; `MediaNotFound` when nothing is stored under `key`."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; deleting what is not there is not an error."""
        ...

    async def presigned_url(self, key: str, expires_in: timedelta) -> str | None:
        """A URL that anyone may GET the object from until `expires_in` has passed, for platforms
        that pull media by URL; None when the backend has no such URLs (the filesystem).

        `expires_in` runs from 1 second to 7 days (SigV4's limit). The URL is signed without
        asking the store, so it is made for a missing object too.
        """
        ...

    def local_file(self, key: str) -> AbstractAsyncContextManager[Path]:
        """A path on this machine holding the object's bytes while the context is open, for tools
        that read files (the prober): the stored file itself where the backend keeps files, else
        a temporary copy, streamed in and deleted on exit. Do not write to it.
        """
        ...


def check_key(key: str) -> str:
    """`key` when it is a relative name of '/'-separated segments, each made of letters, digits,
    '.', '_', '=' and '-' and not starting with '.'; else `InvalidKey`.

    This refuses absolute paths, '..', empty segments and backslashes, so no key can name
    anything outside its store's root or prefix, on any filesystem or object store.
    """
    if not key:
        raise InvalidKey(key, "is empty")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise InvalidKey(key, f"is longer than {MAX_KEY_BYTES} bytes")
    if key.startswith("/"):
        raise InvalidKey(key, "is absolute; keys are relative to the store")
    for segment in key.split("/"):
        if segment in (".", ".."):
            raise InvalidKey(key, f"has a {segment!r} segment; keys cannot leave the store")
        if not _SEGMENT.fullmatch(segment):
            raise InvalidKey(
                key,
                "has an empty segment or one that starts with '.' or holds a character other "
                "than letters, digits, '.', '_', '=' and '-'",
            )
    return key


def check_range(start: int, end: int | None) -> None:
    """Refuse a range that no object could satisfy (negative, or ending before it starts)."""
    if start < 0:
        raise InvalidRange(f"start {start} is negative")
    if end is not None and end <= start:
        raise InvalidRange(f"end {end} is not after start {start}")


class Digest:
    """Counts and hashes the chunks of a stream as they pass, and stops it past `max_size`."""

    def __init__(self, max_size: int | None) -> None:
        self.size = 0
        self._max_size = max_size
        self._sha256 = hashlib.sha256()

    def add(self, chunk: bytes) -> None:
        """Account for the next chunk; `MediaTooLarge` when it takes the stream past the limit."""
        self.size += len(chunk)
        if self._max_size is not None and self.size > self._max_size:
            raise MediaTooLarge(self._max_size)
        self._sha256.update(chunk)

    def stored(self, key: str) -> StoredObject:
        """The result of a put that has stored everything that went through."""
        return StoredObject(key=key, size=self.size, sha256=self._sha256.hexdigest())
