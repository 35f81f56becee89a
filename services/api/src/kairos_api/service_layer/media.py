"""Media files a tenant uploads for its posts: upload, read, list and delete.

An upload streams into the media store (`Application.media`) as it arrives, bounded by
KAIROS_MEDIA_MAX_BYTES, and is probed from the stored bytes (`kairos_media.probe`): what a
file is comes from its bytes, never from its name. Only then is its row written. Whatever
refuses the file on the way (too large, cut short, not an image or video) leaves nothing behind:
the store keeps nothing of a stream that failed, and an object stored but refused is deleted
before the refusal is returned.

A row is written after its object, so a crash between the two leaves an object no row names
(never a row without its bytes); such objects are orphans to collect, not media.
"""

from __future__ import annotations

import hashlib
import json
import logging
import unicodedata
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy import and_, bindparam, exists, or_, select

from kairos_api.adapters.orm import Media, Post, PostMedia, Target
from kairos_api.domain.model import LIVE_TARGET_STATUSES
from kairos_api.service_layer.application import Application
from kairos_api.service_layer.posts.page_tokens import Cursor, decode_token, encode_token
from kairos_api.service_layer.posts.rules import check_length, parse_id
from kairos_common import errors
from kairos_common.errors import FieldViolation
from kairos_media.probe import ImageInfo, MediaInfo, MediaKind, probe

log = logging.getLogger(__name__)

#: Where the api keeps uploads in the media store: `media/<media id>`.
KEY_PREFIX = "media"
MAX_FILE_NAME = 255
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


@dataclass(frozen=True)
class Upload:
    """What the client says of the file before its bytes."""

    file_name: str = ""
    #: The bytes the client is about to send; 0 when it does not know.
    size: int = 0


@dataclass(frozen=True)
class ListMedia:
    kind: MediaKind | None = None
    page_size: int = 0
    page_token: str = ""


def storage_key(media_id: uuid.UUID) -> str:
    return f"{KEY_PREFIX}/{media_id}"


def _check_upload(upload: Upload, max_bytes: int) -> None:
    violations: list[FieldViolation] = []
    name = upload.file_name
    check_length(name, MAX_FILE_NAME, "upload.file_name", violations)
    if "/" in name or "\\" in name:
        violations.append(FieldViolation("upload.file_name", "is a file's name, without a path"))
    if any(unicodedata.category(char) == "Cc" for char in name):
        violations.append(FieldViolation("upload.file_name", "contains control characters"))
    if upload.size < 0:
        violations.append(FieldViolation("upload.size", "must not be negative"))
    elif upload.size > max_bytes:
        violations.append(
            FieldViolation("upload.size", f"is {upload.size} bytes; at most {max_bytes}")
        )
    if violations:
        raise errors.InvalidArgument.collect(violations)


async def upload_media(
    app: Application, tenant: str, upload: Upload, chunks: AsyncIterator[bytes]
) -> Media:
    """Store, probe and record one file streamed in `chunks`."""
    max_bytes = app.settings.media_max_bytes
    _check_upload(upload, max_bytes)
    media_id = uuid.uuid4()
    key = storage_key(media_id)
    stored = await app.media.put(key, chunks, max_size=max_bytes)
    try:
        if upload.size and stored.size != upload.size:
            raise errors.InvalidArgument.of(
                "file", f"{stored.size} bytes arrived where upload.size announced {upload.size}"
            )
        if stored.size == 0:
            raise errors.InvalidArgument.of("file", "is empty: no bytes arrived")
        async with app.media.local_file(key) as path:
            info = await probe(path)
        media = _row(media_id, tenant, upload.file_name, stored.size, stored.sha256, key, info)
        media.created_at = app.clock()
        async with app.uow() as uow:
            uow.session.add(media)
            await uow.commit()
    except BaseException:
        await _forget(app, key)
        raise
    log.info(
        "media uploaded",
        extra={"tenant": tenant, "media_id": str(media_id), "kind": media.kind, "size": media.size},
    )
    return media


async def _forget(app: Application, key: str) -> None:
    """Delete a refused upload's object; a failure leaves an orphan, which is logged."""
    try:
        await app.media.delete(key)
    except Exception:
        log.exception("could not delete a refused upload", extra={"key": key})


def _row(
    media_id: uuid.UUID,
    tenant: str,
    file_name: str,
    size: int,
    sha256: str,
    key: str,
    info: MediaInfo,
) -> Media:
    common = {
        "id": media_id,
        "tenant_id": tenant,
        "file_name": file_name,
        "size": size,
        "sha256": sha256,
        "storage_key": key,
        "width": info.width,
        "height": info.height,
        "content_type": info.mime_type,
        "kind": info.kind.value,
    }
    if isinstance(info, ImageInfo):
        return Media(**common, video_codec="", audio_codec="")
    return Media(
        **common,
        duration_seconds=info.duration_seconds,
        video_codec=info.video_codec,
        audio_codec=info.audio_codec or "",
        frame_rate=float(info.frame_rate) if info.frame_rate is not None else None,
        bit_rate=info.bit_rate,
    )


async def get_media(app: Application, tenant: str, media_id: str) -> Media:
    ident = parse_id(media_id, "media_id")
    async with app.uow() as uow:
        found = await uow.session.get(Media, ident)
    if found is None or found.tenant_id != tenant or found.deleted_at is not None:
        raise errors.NotFound(f"media {media_id} not found")
    return found


async def list_media(app: Application, tenant: str, command: ListMedia) -> tuple[list[Media], str]:
    """A page of the tenant's live media, newest first, and the next page's token."""
    if command.page_size < 0:
        raise errors.InvalidArgument.of("page_size", "must not be negative")
    size = min(command.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    fingerprint = hashlib.sha256(
        json.dumps(["media", command.kind.value if command.kind else ""]).encode()
    ).digest()[:8]
    query = select(Media).where(Media.tenant_id == tenant, Media.deleted_at.is_(None))
    if command.kind is not None:
        query = query.where(Media.kind == command.kind.value)
    if command.page_token:
        cursor = decode_token(
            command.page_token, fingerprint, "created_newest", listing="ListMedia"
        )
        query = query.where(
            or_(
                Media.created_at < cursor.at,
                and_(Media.created_at == cursor.at, Media.id < cursor.post_id),
            )
        )
    query = query.order_by(Media.created_at.desc(), Media.id.desc()).limit(size + 1)
    async with app.uow() as uow:
        page = list((await uow.session.scalars(query)).all())
    token = ""
    if len(page) > size:
        del page[size:]
        token = encode_token(fingerprint, Cursor(page[-1].created_at, page[-1].id))
    return page, token


#: A post that names the file and may still publish it: not deleted, with a target on its way.
_UNSETTLED_POST_NAMING = (
    select(Post.id)
    .join(PostMedia, PostMedia.post_id == Post.id)
    .where(
        PostMedia.media_id == bindparam("media_id"),
        Post.deleted_at.is_(None),
        exists().where(
            Target.post_id == Post.id,
            Target.status.in_([s.value for s in LIVE_TARGET_STATUSES]),
        ),
    )
    .limit(1)
)


async def delete_media(app: Application, tenant: str, media_id: str) -> None:
    """Mark the row deleted, then remove the bytes. Deleting again is no error, and removes
    bytes that a failure left the first time.

    A file that a post may still publish (a target not settled yet) is kept: FAILED_PRECONDITION
    naming the post. Once every post naming it has settled (or was deleted) it may go.
    """
    ident = parse_id(media_id, "media_id")
    async with app.uow() as uow:
        found = await uow.session.get(Media, ident, with_for_update=True)
        if found is None or found.tenant_id != tenant:
            raise errors.NotFound(f"media {media_id} not found")
        key = found.storage_key
        if found.deleted_at is None:
            post_id = await uow.session.scalar(_UNSETTLED_POST_NAMING, {"media_id": ident})
            if post_id is not None:
                raise errors.FailedPrecondition(
                    f"media {media_id} is attached to post {post_id}, which has not finished "
                    "publishing; delete the media once the post has settled, or take it off "
                    "the post first"
                )
            found.deleted_at = app.clock()
            await uow.commit()
    await app.media.delete(key)
