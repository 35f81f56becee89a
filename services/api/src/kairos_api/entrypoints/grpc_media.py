"""gRPC servicer of kairos.posts.v1.MediaService: translates requests to `service_layer.media`.

UploadMedia reads a stream: the `upload` message first, then the file's bytes as `chunk`
messages, handed on one by one as they arrive so that no file is held whole in memory. The
tenant is authenticated before any of the file's bytes is read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import grpc

from kairos.posts.v1 import media_pb2, media_pb2_grpc
from kairos_api.adapters import convert
from kairos_api.adapters.orm import Media
from kairos_api.entrypoints.auth import Authenticator
from kairos_api.service_layer import media
from kairos_api.service_layer.application import Application
from kairos_common import errors
from kairos_media.probe import MediaKind

Context = grpc.aio.ServicerContext[Any, Any]

_KINDS: dict[MediaKind, media_pb2.MediaKind.ValueType] = {
    kind: media_pb2.MediaKind.Value(f"MEDIA_KIND_{kind.name}") for kind in MediaKind
}
_KINDS_BACK = {value: kind for kind, value in _KINDS.items()}


def media_to_proto(row: Media) -> media_pb2.Media:
    played = row.duration_seconds
    return media_pb2.Media(
        id=str(row.id),
        kind=_KINDS[MediaKind(row.kind)],
        content_type=row.content_type,
        file_name=row.file_name,
        size=row.size,
        sha256=row.sha256,
        width=row.width,
        height=row.height,
        duration=convert.duration(timedelta(seconds=played) if played is not None else None),
        video_codec=row.video_codec,
        audio_codec=row.audio_codec,
        frame_rate=row.frame_rate or 0.0,
        bit_rate=row.bit_rate or 0,
        created_at=convert.timestamp(row.created_at),
    )


async def _chunks(requests: AsyncIterator[media_pb2.UploadMediaRequest]) -> AsyncIterator[bytes]:
    async for request in requests:
        if request.WhichOneof("part") != "chunk":
            raise errors.InvalidArgument.of(
                "upload", "comes once, as the first message; then only chunks"
            )
        yield request.chunk


class MediaServicer(media_pb2_grpc.MediaServiceServicer):
    """The public media API of one tenant per call."""

    def __init__(self, app: Application, auth: Authenticator) -> None:
        self.app = app
        self.auth = auth

    async def UploadMedia(
        self, request_iterator: AsyncIterator[media_pb2.UploadMediaRequest], context: Context
    ) -> media_pb2.UploadMediaResponse:
        # The first message is read (decoded) before the key is checked, as a unary request
        # is: a request that is no protobuf is INVALID_ARGUMENT whoever sends it.
        first = await anext(request_iterator, None)
        tenant = await self.auth.tenant(context)
        if first is None or first.WhichOneof("part") != "upload":
            raise errors.InvalidArgument.of(
                "upload", "is required, as the first message (the file's name and size)"
            )
        upload = media.Upload(file_name=first.upload.file_name, size=first.upload.size)
        row = await media.upload_media(self.app, tenant, upload, _chunks(request_iterator))
        return media_pb2.UploadMediaResponse(media=media_to_proto(row))

    async def GetMedia(
        self, request: media_pb2.GetMediaRequest, context: Context
    ) -> media_pb2.GetMediaResponse:
        tenant = await self.auth.tenant(context)
        row = await media.get_media(self.app, tenant, request.media_id)
        return media_pb2.GetMediaResponse(media=media_to_proto(row))

    async def ListMedia(
        self, request: media_pb2.ListMediaRequest, context: Context
    ) -> media_pb2.ListMediaResponse:
        tenant = await self.auth.tenant(context)
        kind: MediaKind | None = None
        if request.kind != media_pb2.MEDIA_KIND_UNSPECIFIED:
            found = _KINDS_BACK.get(request.kind)
            if found is None:
                raise errors.InvalidArgument.of("kind", "unknown media kind")
            kind = found
        command = media.ListMedia(
            kind=kind, page_size=request.page_size, page_token=request.page_token
        )
        rows, token = await media.list_media(self.app, tenant, command)
        return media_pb2.ListMediaResponse(
            media=[media_to_proto(row) for row in rows], next_page_token=token
        )

    async def DeleteMedia(
        self, request: media_pb2.DeleteMediaRequest, context: Context
    ) -> media_pb2.DeleteMediaResponse:
        tenant = await self.auth.tenant(context)
        await media.delete_media(self.app, tenant, request.media_id)
        return media_pb2.DeleteMediaResponse()
