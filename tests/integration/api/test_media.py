"""MediaService: a tenant uploads images and videos (streamed, probed from their bytes), reads,
lists and deletes them; bad media is refused with a field violation and nothing is kept.

Each test runs on PostgreSQL and on SQLite (`own_api`), with the filesystem store of the
module's api; the S3 store has tests of its own (tests/integration/media).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from kairos.posts.v1 import media_pb2, media_pb2_grpc
from kairos_api.service_layer.media import storage_key
from support.api import Client, RunningApi, api_settings, running_api, violations_of
from support.media import MIB, write_image, write_video
from support.media_memory import growth_mib, start_measuring

#: The module's api refuses files over this many bytes.
MAX_BYTES = 3 * MIB
OWN_API_ENV = {"KAIROS_MEDIA_MAX_BYTES": str(MAX_BYTES)}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("files")


def media_stub(client: Client) -> media_pb2_grpc.MediaServiceAsyncStub:
    return media_pb2_grpc.MediaServiceStub(client.channel)


async def messages(
    file_name: str, data: bytes, *, size: int | None = None, chunk: int = 256 * 1024
) -> AsyncIterator[media_pb2.UploadMediaRequest]:
    announced = len(data) if size is None else size
    yield media_pb2.UploadMediaRequest(
        upload=media_pb2.MediaUpload(file_name=file_name, size=announced)
    )
    for start in range(0, len(data), chunk):
        yield media_pb2.UploadMediaRequest(chunk=data[start : start + chunk])


async def upload(
    client: Client, file_name: str, data: bytes, *, size: int | None = None
) -> media_pb2.Media:
    reply = await media_stub(client).UploadMedia(
        messages(file_name, data, size=size), metadata=client.metadata
    )
    return reply.media


def stored_objects(own_api: RunningApi) -> set[str]:
    root = own_api.service.app.settings.media.store
    assert isinstance(root, Path)
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


async def test_a_video_is_stored_probed_listed_and_deleted(
    own_api: RunningApi, tenant: Client, files: Path
) -> None:
    path = write_video(
        files / "clip.mp4",
        container="mp4",
        video_codec="libx264",
        audio_codec="aac",
        width=180,
        height=320,
        seconds=1.5,
    )
    data = path.read_bytes()

    media = await upload(tenant, "holiday.mp4", data)

    assert media.kind == media_pb2.MEDIA_KIND_VIDEO
    assert (media.content_type, media.file_name) == ("video/mp4", "holiday.mp4")
    assert (media.size, media.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert (media.width, media.height) == (180, 320)
    assert media.duration.ToTimedelta().total_seconds() == pytest.approx(1.5, abs=0.05)
    assert (media.video_codec, media.audio_codec) == ("h264", "aac")
    assert media.frame_rate == pytest.approx(24)
    assert media.bit_rate > 0
    key = storage_key(uuid.UUID(media.id))
    assert key in stored_objects(own_api)
    stub = media_stub(tenant)
    got = await stub.GetMedia(
        media_pb2.GetMediaRequest(media_id=media.id), metadata=tenant.metadata
    )
    assert got.media == media
    listed = await stub.ListMedia(media_pb2.ListMediaRequest(), metadata=tenant.metadata)
    assert [m.id for m in listed.media] == [media.id]

    await stub.DeleteMedia(
        media_pb2.DeleteMediaRequest(media_id=media.id), metadata=tenant.metadata
    )

    assert key not in stored_objects(own_api)
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await stub.GetMedia(media_pb2.GetMediaRequest(media_id=media.id), metadata=tenant.metadata)
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    listed = await stub.ListMedia(media_pb2.ListMediaRequest(), metadata=tenant.metadata)
    assert list(listed.media) == []
    # Deleting again is no error.
    await stub.DeleteMedia(
        media_pb2.DeleteMediaRequest(media_id=media.id), metadata=tenant.metadata
    )


@pytest.mark.parametrize(
    ("container", "codec", "pixel_format", "kind", "content_type"),
    [
        ("image2", "png", "rgb24", media_pb2.MEDIA_KIND_IMAGE, "image/png"),
        ("image2", "mjpeg", "yuvj420p", media_pb2.MEDIA_KIND_IMAGE, "image/jpeg"),
        ("gif", "gif", "rgb8", media_pb2.MEDIA_KIND_GIF, "image/gif"),
    ],
)
async def test_images_and_gifs_are_told_from_their_bytes(
    tenant: Client,
    files: Path,
    container: str,
    codec: str,
    pixel_format: str,
    kind: media_pb2.MediaKind.ValueType,
    content_type: str,
) -> None:
    path = write_image(
        files / f"{codec}.bin", container=container, codec=codec, pixel_format=pixel_format
    )

    # The name says video; the bytes say otherwise, and they decide.
    media = await upload(tenant, "not-really.mp4", path.read_bytes())

    assert (media.kind, media.content_type) == (kind, content_type)
    assert (media.width, media.height) == (64, 48)
    assert not media.HasField("duration")


async def test_a_text_file_named_mp4_is_refused_and_nothing_is_kept(
    own_api: RunningApi, tenant: Client
) -> None:
    before = stored_objects(own_api)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await upload(tenant, "video.mp4", b"this is not a video, whatever its name says\n" * 100)

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    [(field, description)] = violations_of(refused.value)
    assert field == "file"
    assert "not a supported image or video" in description
    assert stored_objects(own_api) == before


async def test_a_file_over_the_limit_is_refused_before_or_while_it_streams(
    own_api: RunningApi, tenant: Client
) -> None:
    before = stored_objects(own_api)
    big = bytes(MAX_BYTES + 1)

    with pytest.raises(grpc.aio.AioRpcError) as announced:
        await upload(tenant, "big.mp4", big)
    # Announced too big: refused on upload.size before a byte is stored.
    assert violations_of(announced.value) == [
        ("upload.size", f"is {MAX_BYTES + 1} bytes; at most {MAX_BYTES}")
    ]
    with pytest.raises(grpc.aio.AioRpcError) as streamed:
        await upload(tenant, "big.mp4", big, size=0)  # size unknown: counted as it streams
    assert streamed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    [(field, _)] = violations_of(streamed.value)
    assert field == "file"
    assert stored_objects(own_api) == before


async def test_an_upload_cut_short_is_refused(
    own_api: RunningApi, tenant: Client, files: Path
) -> None:
    data = write_image(files / "cut.png", container="image2", codec="png", pixel_format="rgb24")
    before = stored_objects(own_api)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await upload(tenant, "cut.png", data.read_bytes()[:100], size=len(data.read_bytes()))

    [(field, description)] = violations_of(refused.value)
    assert field == "file"
    assert "arrived where upload.size announced" in description
    assert stored_objects(own_api) == before


async def test_an_upload_must_start_with_its_metadata_and_name_no_path(tenant: Client) -> None:
    async def chunk_first() -> AsyncIterator[media_pb2.UploadMediaRequest]:
        yield media_pb2.UploadMediaRequest(chunk=b"\x89PNG")

    with pytest.raises(grpc.aio.AioRpcError) as no_metadata:
        await media_stub(tenant).UploadMedia(chunk_first(), metadata=tenant.metadata)
    assert [field for field, _ in violations_of(no_metadata.value)] == ["upload"]

    with pytest.raises(grpc.aio.AioRpcError) as with_path:
        await upload(tenant, "../../etc/passwd", b"x")
    assert violations_of(with_path.value) == [
        ("upload.file_name", "is a file's name, without a path")
    ]


async def test_media_belongs_to_its_tenant(
    own_api: RunningApi, tenant: Client, files: Path
) -> None:
    path = write_image(files / "mine.png", container="image2", codec="png", pixel_format="rgb24")
    mine = await upload(tenant, "mine.png", path.read_bytes())

    async with own_api.client() as other:
        stub = media_stub(other)
        with pytest.raises(grpc.aio.AioRpcError) as hidden:
            await stub.GetMedia(
                media_pb2.GetMediaRequest(media_id=mine.id), metadata=other.metadata
            )
        assert hidden.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as kept:
            await stub.DeleteMedia(
                media_pb2.DeleteMediaRequest(media_id=mine.id), metadata=other.metadata
            )
        assert kept.value.code() == grpc.StatusCode.NOT_FOUND
        listed = await stub.ListMedia(media_pb2.ListMediaRequest(), metadata=other.metadata)
        assert list(listed.media) == []

    got = await media_stub(tenant).GetMedia(
        media_pb2.GetMediaRequest(media_id=mine.id), metadata=tenant.metadata
    )
    assert got.media.id == mine.id


async def test_listing_pages_newest_first_and_filters_by_kind(tenant: Client, files: Path) -> None:
    png = write_image(files / "page.png", container="image2", codec="png", pixel_format="rgb24")
    gif = write_image(files / "page.gif", container="gif", codec="gif", pixel_format="rgb8")
    uploaded = [
        await upload(tenant, f"{n}", (png if n % 2 else gif).read_bytes()) for n in range(5)
    ]
    stub = media_stub(tenant)

    seen: list[str] = []
    token = ""
    while True:
        page = await stub.ListMedia(
            media_pb2.ListMediaRequest(page_size=2, page_token=token), metadata=tenant.metadata
        )
        seen.extend(m.id for m in page.media)
        token = page.next_page_token
        if not token:
            break
    assert seen == [m.id for m in reversed(uploaded)]
    gifs = await stub.ListMedia(
        media_pb2.ListMediaRequest(kind=media_pb2.MEDIA_KIND_GIF), metadata=tenant.metadata
    )
    even = [m.id for m in reversed(uploaded) if int(m.file_name) % 2 == 0]
    assert [m.id for m in gifs.media] == even
    with pytest.raises(grpc.aio.AioRpcError) as foreign:
        await stub.ListMedia(
            media_pb2.ListMediaRequest(kind=media_pb2.MEDIA_KIND_GIF, page_token=token or "x"),
            metadata=tenant.metadata,
        )
    assert [field for field, _ in violations_of(foreign.value)] == ["page_token"]


async def test_an_upload_without_a_key_stores_nothing(own_api: RunningApi, tenant: Client) -> None:
    before = stored_objects(own_api)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await media_stub(tenant).UploadMedia(messages("a.png", b"\x89PNG\r\n\x1a\n" * 1000))

    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert stored_objects(own_api) == before


BIG = 200 * MIB


async def test_a_200_mib_upload_streams_through_without_being_held_in_memory(
    tmp_path: Path,
) -> None:
    """The api (here in this process, with the client) stores the stream as it arrives: the
    process's peak memory (VmHWM, restarted before the upload) grows by far less than the file.
    The bytes are no media, so the upload is refused after it was stored and probed, and its
    object deleted."""
    chunk = bytes(range(256)) * 4096  # 1 MiB, sent again and again: the client holds one

    async def big() -> AsyncIterator[media_pb2.UploadMediaRequest]:
        yield media_pb2.UploadMediaRequest(
            upload=media_pb2.MediaUpload(file_name="big.bin", size=BIG)
        )
        for _ in range(BIG // len(chunk)):
            yield media_pb2.UploadMediaRequest(chunk=chunk)

    settings = api_settings(f"sqlite:///{tmp_path / 'kairos.db'}", KAIROS_MEDIA_MAX_BYTES=str(BIG))
    async with running_api(settings) as api, api.client() as client:
        baseline = start_measuring()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await media_stub(client).UploadMedia(big(), metadata=client.metadata)
        growth = growth_mib(baseline)
        left = stored_objects(api)

    assert [field for field, _ in violations_of(refused.value)] == ["file"]
    assert left == set()
    assert growth < 64, f"peak memory grew by {growth} MiB during a {BIG // MIB} MiB upload"
