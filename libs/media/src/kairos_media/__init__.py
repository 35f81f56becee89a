"""Kairos media: where uploaded files are kept, and what they are.

The api streams an upload into a store and probes it; the publisher streams it out of the store
to a platform, in ranges for chunked uploads, or hands the platform a presigned URL to pull. No
file is ever held whole in memory on either side. This package is imported, never run.

Storing (`MediaStore`, built at start-up by `open_store(media_settings())`):

- `await store.put(key, chunks, max_size=None) -> StoredObject(key, size, sha256)`: stores an
  async iterator of byte chunks under `key`, all or nothing; past `max_size` bytes it stops with
  `MediaTooLarge` and keeps nothing.
- `store.read(key, start=0, end=None) -> AsyncIterator[bytes]`: the bytes, or the range
  `[start, end)`, in chunks of at most 1 MiB.
- `await store.stat(key) -> ObjectStat(key, size)`; `await store.delete(key)` (idempotent).
- `await store.presigned_url(key, expires_in) -> str | None`: a GET URL for platforms that pull by
  URL (S3); None where the backend has none (the filesystem).
- `async with store.local_file(key) as path`: a file on this machine with the bytes, for the
  prober (the stored file itself on the filesystem, a streamed temporary copy from S3).

Keys are relative '/'-separated names checked by `check_key` (no '..', no absolute paths).
Backends: `FileStore` (a folder; `KAIROS_MEDIA_STORE=file:///var/lib/kairos/media`, the default
under `~/.local/share/kairos/media`) and `S3MediaStore` (`KAIROS_MEDIA_STORE=s3://bucket/prefix`
with `KAIROS_S3_ENDPOINT_URL`, `KAIROS_S3_REGION` and `AWS_ACCESS_KEY_ID` /
`AWS_SECRET_ACCESS_KEY` or their `_FILE` variants); see `kairos_media.settings`.

Knowing (`await probe(path) -> ImageInfo | VideoInfo`): the type is told from the bytes, never
from a name or a claimed type: IMAGE (JPEG, PNG, WebP) or GIF with width and height; VIDEO (MP4,
MOV, WebM) with duration, displayed width and height, aspect ratio, rotation, video and audio
codecs, frame rate and bit rate. Anything else is `UnsupportedMedia`.

Errors are Kairos's domain errors, so the gRPC edge maps them without help: `MediaNotFound`
(NOT_FOUND); `InvalidKey`, `InvalidRange`, `MediaTooLarge` and `UnsupportedMedia`
(INVALID_ARGUMENT, with a field violation on `key`, `range` or `file`, which a caller may re-raise
under its own field name).
"""

from kairos_media.filesystem import FileStore
from kairos_media.probe import (
    MAX_PIXELS,
    ImageInfo,
    MediaInfo,
    MediaKind,
    UnsupportedMedia,
    VideoInfo,
    probe,
    probe_file,
)
from kairos_media.s3 import S3Location, S3MediaStore
from kairos_media.settings import MediaSettings, media_settings, open_store
from kairos_media.store import (
    READ_CHUNK_SIZE,
    InvalidKey,
    InvalidRange,
    MediaNotFound,
    MediaStore,
    MediaTooLarge,
    ObjectStat,
    StoredObject,
    check_key,
)

__all__ = [
    "MAX_PIXELS",
    "READ_CHUNK_SIZE",
    "FileStore",
    "ImageInfo",
    "InvalidKey",
    "InvalidRange",
    "MediaInfo",
    "MediaKind",
    "MediaNotFound",
    "MediaSettings",
    "MediaStore",
    "MediaTooLarge",
    "ObjectStat",
    "S3Location",
    "S3MediaStore",
    "StoredObject",
    "UnsupportedMedia",
    "VideoInfo",
    "check_key",
    "media_settings",
    "open_store",
    "probe",
    "probe_file",
]
