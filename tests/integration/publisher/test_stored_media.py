"""Uploaded media sent as bytes: the platform clients read each file the api stored from the
media store (a real FileStore) and upload exactly its bytes, after the URLs' files; a file whose
bytes are not the size or SHA-256 the api recorded, or that is gone, or that is over the
platform's own limit, is refused for good before anything is posted."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from kairos.dispatch.v1 import dispatch_pb2
from kairos.posts.v1 import media_pb2
from kairos_fakes.mastodon import MastodonFake, multipart
from kairos_fakes.media import MediaHost, png
from kairos_fakes.x import XFake, form_parts
from kairos_media import FileStore
from kairos_publisher.consumer import publish_request as request_of
from kairos_publisher.media import MediaFetcher, StoredMedia
from kairos_publisher.platforms import mastodon, x
from kairos_publisher.platforms.base import PublishRequest, Result
from kairos_publisher.transport import http_client
from support.platforms import context, publish_request


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "media")


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(timeout=2.0) as client:
        yield client


@pytest.fixture
async def media(store: FileStore) -> AsyncIterator[MediaFetcher]:
    fetcher = MediaFetcher(
        timeout=2.0, allowed_networks=[ipaddress.ip_network("127.0.0.0/8")], store=store
    )
    yield fetcher
    await fetcher.aclose()


@pytest.fixture
async def fake() -> AsyncIterator[MastodonFake]:
    server = MastodonFake()
    server.processing_polls = 0
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def media_host() -> AsyncIterator[MediaHost]:
    host = MediaHost()
    await host.start()
    yield host
    await host.stop()


async def stored(store: FileStore, media_id: str, data: bytes) -> StoredMedia:
    """`data` put in the store as the api puts an upload, and named as BeginAttempt names it."""

    async def chunks() -> AsyncIterator[bytes]:
        yield data

    kept = await store.put(f"media/{media_id}", chunks())
    return StoredMedia(media_id, "image/png", kept.size, kept.sha256, kept.key)


def to_mastodon(
    fake: MastodonFake, *files: StoredMedia, urls: tuple[str, ...] = ()
) -> PublishRequest:
    return publish_request(instance_url=fake.url, stored_media=list(files), media_urls=list(urls))


def uploaded_files(fake: MastodonFake) -> list[bytes]:
    return [
        multipart(call.headers["content-type"], call.body)["file"][1]
        for call in fake.calls("POST", "/api/v2/media")
    ]


async def test_mastodon_gets_exactly_the_stored_bytes_before_the_urls_files(
    http: httpx.AsyncClient,
    media: MediaFetcher,
    store: FileStore,
    fake: MastodonFake,
    media_host: MediaHost,
) -> None:
    first, second = png(3, 2), png(5, 4)
    files = [await stored(store, "m-1", first), await stored(store, "m-2", second)]
    request = to_mastodon(fake, *files, urls=(media_host.image_url("c.png"),))

    outcome = await mastodon.create(context(http, media, fake)).publish(request)

    assert outcome.result is Result.PUBLISHED, outcome
    assert uploaded_files(fake) == [first, second, png()]
    [status] = fake.statuses
    assert len(status["media_attachments"]) == 3


async def test_x_gets_the_stored_bytes_too(
    http: httpx.AsyncClient, media: MediaFetcher, store: FileStore
) -> None:
    fake = XFake()
    await fake.start()
    try:
        access, _ = fake.grant("kairos")
        data = png(7, 7)
        request = publish_request(
            access_token=access, stored_media=[await stored(store, "m", data)]
        )
        outcome = await x.create(context(http, media, fake)).publish(request)
    finally:
        await fake.stop()

    assert outcome.result is Result.PUBLISHED, outcome
    [upload] = fake.calls("POST", "/2/media/upload")
    assert form_parts(upload.headers["content-type"], upload.body)["media"][1] == data


@pytest.mark.parametrize("damage", ["size", "sha256", "deleted", "over_limit"])
async def test_a_stored_file_that_is_not_what_was_uploaded_is_refused_for_good(
    http: httpx.AsyncClient,
    media: MediaFetcher,
    store: FileStore,
    fake: MastodonFake,
    damage: str,
) -> None:
    file = await stored(store, "m-1", png())
    if damage == "size":
        file = StoredMedia(
            file.media_id, file.content_type, file.size - 1, file.sha256, file.storage_key
        )
    elif damage == "sha256":
        file = StoredMedia(file.media_id, file.content_type, file.size, "0" * 64, file.storage_key)
    elif damage == "deleted":
        await store.delete(file.storage_key)
    else:
        big = png() + bytes(mastodon.MAX_IMAGE_BYTES)
        file = await stored(store, "m-big", big)

    outcome = await mastodon.create(context(http, media, fake)).publish(to_mastodon(fake, file))

    assert (outcome.result, outcome.code) == (Result.PERMANENT, "media"), outcome
    assert file.media_id in outcome.message
    assert fake.calls("POST") == []
    assert fake.statuses == []


def begun_with(
    *files: dispatch_pb2.StoredMedia, urls: tuple[str, ...] = ()
) -> dispatch_pb2.BeginAttemptResponse:
    return dispatch_pb2.BeginAttemptResponse(
        ok=True,
        snapshot=dispatch_pb2.ContentSnapshot(
            content="hello", media_urls=list(urls), stored_media=list(files)
        ),
    )


def test_presigned_files_join_the_urls_ahead_of_the_posts_own_and_the_rest_go_as_bytes() -> None:
    presigned = dispatch_pb2.StoredMedia(
        media_id="m-1", kind=media_pb2.MEDIA_KIND_IMAGE, url="https://s3.example/m-1?sig"
    )
    read = dispatch_pb2.StoredMedia(
        media_id="m-2",
        kind=media_pb2.MEDIA_KIND_GIF,
        content_type="image/gif",
        size=10,
        sha256="ab" * 32,
        storage_key="media/m-2",
    )

    pulled = request_of(begun_with(presigned, urls=("https://cdn.example/a.png",)))
    sent = request_of(begun_with(read, urls=("https://cdn.example/a.png",)))

    assert pulled.media_urls == ["https://s3.example/m-1?sig", "https://cdn.example/a.png"]
    assert pulled.stored_media == []
    assert sent.media_urls == ["https://cdn.example/a.png"]
    assert sent.stored_media == [
        StoredMedia("m-2", "image/gif", 10, "ab" * 32, "media/m-2", kind="gif")
    ]
    assert sent.media == [sent.stored_media[0], "https://cdn.example/a.png"]
