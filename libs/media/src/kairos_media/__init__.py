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

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kairos_media.filesystem import FileStore
    from kairos_media.location import S3Location
    from kairos_media.probe import (
        MAX_PIXELS,
        ImageInfo,
        MediaInfo,
        MediaKind,
        UnsupportedMedia,
        VideoInfo,
        probe_file,
    )
    from kairos_media.s3 import S3MediaStore
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

#: Where each public name is defined. The names are imported when first used (PEP 562), so that a
#: process takes only what it uses: the publisher reads files and never imports PyAV (the prober)
#: or, with the filesystem store, boto3 (together about 30 MiB of memory). The async `probe` is
#: imported from `kairos_media.probe` itself: here that name is the module.
_DEFINED_IN: dict[str, str] = {
    "FileStore": "kairos_media.filesystem",
    "ImageInfo": "kairos_media.probe",
    "InvalidKey": "kairos_media.store",
    "InvalidRange": "kairos_media.store",
    "MAX_PIXELS": "kairos_media.probe",
    "MediaInfo": "kairos_media.probe",
    "MediaKind": "kairos_media.probe",
    "MediaNotFound": "kairos_media.store",
    "MediaSettings": "kairos_media.settings",
    "MediaStore": "kairos_media.store",
    "MediaTooLarge": "kairos_media.store",
    "ObjectStat": "kairos_media.store",
    "READ_CHUNK_SIZE": "kairos_media.store",
    "S3Location": "kairos_media.location",
    "S3MediaStore": "kairos_media.s3",
    "StoredObject": "kairos_media.store",
    "UnsupportedMedia": "kairos_media.probe",
    "VideoInfo": "kairos_media.probe",
    "check_key": "kairos_media.store",
    "media_settings": "kairos_media.settings",
    "open_store": "kairos_media.settings",
    "probe_file": "kairos_media.probe",
}


def __getattr__(name: str) -> Any:
    module = _DEFINED_IN.get(name)
    if module is None:
        raise AttributeError(f"module 'kairos_media' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


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
    "probe_file",
]
