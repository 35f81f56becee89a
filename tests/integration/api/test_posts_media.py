"""Posts that name uploaded media by id, over real gRPC on PostgreSQL and SQLite: CreatePost,
UpdatePost, GetPost and ListPosts keep the ids in order; every id that cannot be published is
refused on its field, with nothing written; a file a post may still publish cannot be deleted;
and BeginAttempt hands the publisher what it needs to send each file: its size, SHA-256 and
storage key, and for a platform that pulls media by URL, a presigned URL (S3 store only).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import httpx
import pytest
from google.protobuf.duration_pb2 import Duration
from sqlalchemy import func, select

from kairos.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from kairos.posts.v1 import media_pb2, media_pb2_grpc, posts_pb2
from kairos_api.adapters.orm import OutboxEvent, Post, PostMedia
from support.api import (
    SERVICE_TOKEN,
    Client,
    RunningApi,
    api_settings,
    running_api,
    violations_of,
)
from support.media import write_image, write_video
from support.nats_server import NatsServer
from support.postgres import fresh_database
from support.s3_server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, S3Server

SERVICE = (("authorization", f"Bearer {SERVICE_TOKEN}"),)
INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """A PNG, a GIF and an MP4, made for the module."""
    folder = tmp_path_factory.mktemp("post-media")
    png = write_image(folder / "a.png", container="image2", codec="png", pixel_format="rgb24")
    gif = write_image(folder / "b.gif", container="gif", codec="gif", pixel_format="rgb8")
    video = write_video(
        folder / "c.mp4",
        container="mp4",
        video_codec="libx264",
        audio_codec=None,
        width=64,
        height=64,
    )
    return {name: path.read_bytes() for name, path in (("png", png), ("gif", gif), ("mp4", video))}


async def upload(client: Client, name: str, data: bytes) -> media_pb2.Media:
    async def messages() -> AsyncIterator[media_pb2.UploadMediaRequest]:
        yield media_pb2.UploadMediaRequest(
            upload=media_pb2.MediaUpload(file_name=name, size=len(data))
        )
        yield media_pb2.UploadMediaRequest(chunk=data)

    stub = media_pb2_grpc.MediaServiceStub(client.channel)
    return (await stub.UploadMedia(messages(), metadata=client.metadata)).media


async def delete_media(client: Client, media_id: str) -> None:
    stub = media_pb2_grpc.MediaServiceStub(client.channel)
    await stub.DeleteMedia(
        media_pb2.DeleteMediaRequest(media_id=media_id), metadata=client.metadata
    )


async def connect(client: Client, platform: posts_pb2.Platform.ValueType) -> str:
    extra = {
        posts_pb2.PLATFORM_MASTODON: {"instance_url": "https://mastodon.example"},
        posts_pb2.PLATFORM_INSTAGRAM: {"page_id": "1789"},
        posts_pb2.PLATFORM_LINKEDIN: {"page_id": "urn:li:person:k1"},
    }.get(platform, {})
    credentials = posts_pb2.Credentials(access_token="tok")
    for name, value in extra.items():
        setattr(credentials, name, value)
    reply = await client.accounts.ConnectAccount(
        posts_pb2.ConnectAccountRequest(
            platform=platform, handle=f"@k{uuid.uuid4().hex[:6]}", credentials=credentials
        ),
        metadata=client.metadata,
    )
    return reply.account.id


def create_request(
    account_ids: list[str], media_ids: list[str], *, due: bool = False, urls: int = 0
) -> posts_pb2.CreatePostRequest:
    request = posts_pb2.CreatePostRequest(
        content="With pictures",
        media_ids=media_ids,
        media_urls=[f"https://cdn.example/{n}.png" for n in range(urls)],
        targets=[posts_pb2.TargetSpec(account_id=a) for a in account_ids],
    )
    if due:
        request.schedule.at.FromDatetime(datetime.now(UTC))
    return request


async def create(client: Client, request: posts_pb2.CreatePostRequest) -> posts_pb2.Post:
    return (await client.posts.CreatePost(request, metadata=client.metadata)).post


async def get(client: Client, post_id: str) -> posts_pb2.Post:
    reply = await client.posts.GetPost(
        posts_pb2.GetPostRequest(post_id=post_id), metadata=client.metadata
    )
    return reply.post


async def rows(api: RunningApi) -> tuple[int, int, int]:
    """Posts, post_media rows and outbox events: what a refused request must leave alone."""
    async with api.service.app.uow() as uow:
        counted = [
            await uow.session.scalar(select(func.count()).select_from(table))
            for table in (Post, PostMedia, OutboxEvent)
        ]
    return (counted[0] or 0, counted[1] or 0, counted[2] or 0)


async def refused_create(
    api: RunningApi, client: Client, request: posts_pb2.CreatePostRequest
) -> list[tuple[str, str]]:
    before = await rows(api)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await client.posts.CreatePost(request, metadata=client.metadata)
    assert refused.value.code() == INVALID, refused.value.details()
    assert await rows(api) == before
    return violations_of(refused.value)


async def update_media_ids(
    client: Client, post_id: str, media_ids: list[str]
) -> posts_pb2.UpdatePostResponse:
    request = posts_pb2.UpdatePostRequest(post_id=post_id, post=posts_pb2.Post(media_ids=media_ids))
    request.update_mask.paths.append("media_ids")
    return await client.posts.UpdatePost(request, metadata=client.metadata)


async def begin_due(api: RunningApi, *target_ids: str) -> list[dispatch_pb2.BeginAttemptResponse]:
    """Claim the module's due targets and begin the attempts of `target_ids`, in order."""
    async with grpc.aio.insecure_channel(api.target) as channel:
        stub = dispatch_pb2_grpc.DispatchServiceStub(channel)
        horizon = Duration()
        horizon.FromTimedelta(timedelta(seconds=5))
        claimed = await stub.ClaimDue(
            dispatch_pb2.ClaimDueRequest(horizon=horizon, limit=500, lease=horizon),
            metadata=SERVICE,
        )
        deliveries = {d.target_id: d.delivery_id for d in claimed.deliveries}
        return [
            await stub.BeginAttempt(
                dispatch_pb2.BeginAttemptRequest(delivery_id=deliveries[target]),
                metadata=SERVICE,
            )
            for target in target_ids
        ]


# --- create, read, update --------------------------------------------------------------------


async def test_a_post_keeps_its_media_ids_in_order_through_create_get_list_and_update(
    own_api: RunningApi, tenant: Client, files: dict[str, bytes]
) -> None:
    png = await upload(tenant, "a.png", files["png"])
    gif = await upload(tenant, "b.gif", files["gif"])
    account = await connect(tenant, posts_pb2.PLATFORM_X)

    created = await create(tenant, create_request([account], [gif.id, png.id], urls=1))

    assert list(created.media_ids) == [gif.id, png.id]
    assert list((await get(tenant, created.id)).media_ids) == [gif.id, png.id]
    listed = await tenant.posts.ListPosts(posts_pb2.ListPostsRequest(), metadata=tenant.metadata)
    [shown] = [p for p in listed.posts if p.id == created.id]
    assert list(shown.media_ids) == [gif.id, png.id]

    updated = (await update_media_ids(tenant, created.id, [png.id])).post
    assert list(updated.media_ids) == [png.id]
    assert updated.revision == created.revision + 1
    assert list((await get(tenant, created.id)).media_ids) == [png.id]
    assert list(updated.media_urls) == list(created.media_urls)


async def test_create_refuses_each_media_id_that_cannot_be_published(
    own_api: RunningApi, tenant: Client, files: dict[str, bytes]
) -> None:
    # LinkedIn takes 20 images: enough for every id below.
    account = await connect(tenant, posts_pb2.PLATFORM_LINKEDIN)
    png = await upload(tenant, "a.png", files["png"])
    video = await upload(tenant, "c.mp4", files["mp4"])
    gone = await upload(tenant, "gone.png", files["png"])
    await delete_media(tenant, gone.id)
    async with own_api.client() as other:
        theirs = await upload(other, "theirs.png", files["png"])
    unknown = str(uuid.uuid4())

    violations = await refused_create(
        own_api,
        tenant,
        create_request([account], [png.id, theirs.id, gone.id, video.id, unknown, "nope", png.id]),
    )

    assert violations == [
        ("media_ids[5]", "'nope' is not a valid id"),
        ("media_ids[6]", "names the same media as media_ids[0]"),
        ("media_ids[1]", f"media {theirs.id} not found"),
        ("media_ids[2]", f"media {gone.id} was deleted"),
        (
            "media_ids[3]",
            f"media {video.id} is a video, and a video must be the post's only media item; "
            "this post has 7",
        ),
        # The module's video (1 s, a few kB) is too short and too small for LinkedIn.
        (
            "media_ids[3]",
            f"media {video.id} is {video.size:,} bytes; LinkedIn takes a video of at least "
            "75,000 bytes (for targets[0])",
        ),
        (
            "media_ids[3]",
            f"media {video.id} is 1.0 s long; LinkedIn takes a video of at least 3 s "
            "(for targets[0])",
        ),
        ("media_ids[4]", f"media {unknown} not found"),
    ]


async def test_ids_and_urls_together_must_fit_each_platforms_media_limit(
    own_api: RunningApi, tenant: Client, files: dict[str, bytes]
) -> None:
    x = await connect(tenant, posts_pb2.PLATFORM_X)
    uploaded = [(await upload(tenant, f"{n}.png", files["png"])).id for n in range(3)]

    violations = await refused_create(own_api, tenant, create_request([x], uploaded, urls=2))

    assert violations == [
        ("media_ids", "X accepts at most 4 media items in a post; 5 given (3 uploaded, 2 by URL)")
    ]
    # Four fit.
    assert len((await create(tenant, create_request([x], uploaded, urls=1))).media_ids) == 3


async def test_a_platform_that_pulls_media_by_url_is_refused_with_the_filesystem_store(
    own_api: RunningApi, tenant: Client, files: dict[str, bytes]
) -> None:
    instagram = await connect(tenant, posts_pb2.PLATFORM_INSTAGRAM)
    png = await upload(tenant, "a.png", files["png"])

    violations = await refused_create(own_api, tenant, create_request([instagram], [png.id]))

    assert violations == [
        (
            "media_ids",
            "Instagram pulls media by URL, and the filesystem media store makes no URLs; "
            "uploaded media can go to it from an S3 store (KAIROS_MEDIA_STORE=s3://bucket/prefix)",
        )
    ]
    # By URL alone it still goes.
    by_url = posts_pb2.CreatePostRequest(
        content="By URL",
        media_urls=["https://cdn.example/a.png"],
        targets=[posts_pb2.TargetSpec(account_id=instagram)],
    )
    assert (await create(tenant, by_url)).media_urls


async def test_update_refuses_media_ids_as_create_does_and_changes_nothing(
    own_api: RunningApi, tenant: Client, files: dict[str, bytes]
) -> None:
    account = await connect(tenant, posts_pb2.PLATFORM_X)
    png = await upload(tenant, "a.png", files["png"])
    video = await upload(tenant, "c.mp4", files["mp4"])
    post = await create(tenant, create_request([account], [png.id]))

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await update_media_ids(tenant, post.id, [png.id, video.id, "x"])

    assert refused.value.code() == INVALID
    assert violations_of(refused.value) == [("post.media_ids[2]", "'x' is not a valid id")]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await update_media_ids(tenant, post.id, [png.id, video.id])
    assert violations_of(refused.value) == [
        (
            "post.media_ids[1]",
            f"media {video.id} is a video, and a video must be the post's only media item; "
            "this post has 2",
        ),
    ]  # (X takes the module's 1 s video itself)
    # Adding a target on a platform that pulls by URL is refused for the files already named.
    instagram = await connect(tenant, posts_pb2.PLATFORM_INSTAGRAM)
    request = posts_pb2.UpdatePostRequest(
        post_id=post.id,
        targets=[posts_pb2.TargetSpec(account_id=a) for a in (account, instagram)],
    )
    request.update_mask.paths.append("targets")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await tenant.posts.UpdatePost(request, metadata=tenant.metadata)
    [(field, description)] = violations_of(refused.value)
    assert field == "post.media_ids"
    assert description.startswith("Instagram pulls media by URL")
    after = await get(tenant, post.id)
    assert (list(after.media_ids), after.revision) == ([png.id], post.revision)


# --- deleting media ----------------------------------------------------------------------------


async def test_media_a_post_may_still_publish_cannot_be_deleted_until_it_settles(
    own_api: RunningApi, tenant: Client, files: dict[str, bytes]
) -> None:
    account = await connect(tenant, posts_pb2.PLATFORM_X)
    png = await upload(tenant, "a.png", files["png"])
    post = await create(tenant, create_request([account], [png.id]))

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await delete_media(tenant, png.id)

    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"media {png.id} is attached to post {post.id}" in (refused.value.details() or "")
    stub = media_pb2_grpc.MediaServiceStub(tenant.channel)
    kept = await stub.GetMedia(media_pb2.GetMediaRequest(media_id=png.id), metadata=tenant.metadata)
    assert kept.media.sha256 == png.sha256

    await tenant.posts.DeletePost(
        posts_pb2.DeletePostRequest(post_id=post.id), metadata=tenant.metadata
    )
    await delete_media(tenant, png.id)
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await stub.GetMedia(media_pb2.GetMediaRequest(media_id=png.id), metadata=tenant.metadata)
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND


# --- what the publisher is given ---------------------------------------------------------------


async def test_begin_attempt_gives_each_file_to_send_in_order_without_a_url_for_byte_takers(
    own_api: RunningApi, tenant: Client, files: dict[str, bytes]
) -> None:
    png = await upload(tenant, "a.png", files["png"])
    gif = await upload(tenant, "b.gif", files["gif"])
    mastodon = await connect(tenant, posts_pb2.PLATFORM_MASTODON)
    post = await create(tenant, create_request([mastodon], [gif.id, png.id], due=True, urls=1))

    [begun] = await begin_due(own_api, post.targets[0].id)

    assert begun.ok, begun.reason
    assert list(begun.snapshot.media_urls) == list(post.media_urls)
    assert [
        (m.media_id, m.kind, m.content_type, m.size, m.sha256, m.url)
        for m in begun.snapshot.stored_media
    ] == [
        (gif.id, media_pb2.MEDIA_KIND_GIF, "image/gif", len(files["gif"]), gif.sha256, ""),
        (png.id, media_pb2.MEDIA_KIND_IMAGE, "image/png", len(files["png"]), png.sha256, ""),
    ]
    # The storage key names the bytes in the store the publisher shares.
    store = own_api.service.app.media
    for stored, data in zip(begun.snapshot.stored_media, (files["gif"], files["png"]), strict=True):
        read = b"".join([chunk async for chunk in store.read(stored.storage_key)])
        assert hashlib.sha256(read).hexdigest() == hashlib.sha256(data).hexdigest()


# --- an S3 store: platforms that pull media by URL -------------------------------------------


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    server = S3Server()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
async def s3_api(
    request: pytest.FixtureRequest,
    nats_server: NatsServer,
    s3_server: S3Server,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[RunningApi]:
    """An api of its own whose media store is a bucket on moto's S3 server."""
    folder: Path = tmp_path_factory.mktemp("s3-api")
    bucket = s3_server.create_bucket()
    async with fresh_database(request.param, folder) as url:
        settings = api_settings(
            url,
            KAIROS_NATS_URL=nats_server.url,
            KAIROS_MEDIA_STORE=f"s3://{bucket}/media",
            KAIROS_S3_ENDPOINT_URL=s3_server.endpoint_url,
            AWS_ACCESS_KEY_ID=ACCESS_KEY_ID,
            AWS_SECRET_ACCESS_KEY=SECRET_ACCESS_KEY,
        )
        async with running_api(settings) as running:
            yield running


async def test_with_an_s3_store_a_url_pulling_platform_gets_a_presigned_url_of_the_file(
    s3_api: RunningApi, files: dict[str, bytes]
) -> None:
    async with s3_api.client() as client:
        png = await upload(client, "a.png", files["png"])
        instagram = await connect(client, posts_pb2.PLATFORM_INSTAGRAM)
        x = await connect(client, posts_pb2.PLATFORM_X)
        post = await create(client, create_request([instagram, x], [png.id], due=True))
    by_platform = {t.platform: t.id for t in post.targets}

    pulled, sent = await begin_due(
        s3_api, by_platform[posts_pb2.PLATFORM_INSTAGRAM], by_platform[posts_pb2.PLATFORM_X]
    )

    [for_instagram] = pulled.snapshot.stored_media
    assert for_instagram.url.startswith("http")
    async with httpx.AsyncClient() as http:
        fetched = await http.get(for_instagram.url)
    assert fetched.status_code == 200
    assert fetched.content == files["png"]
    [for_x] = sent.snapshot.stored_media
    assert for_x.url == ""
    assert (for_x.size, for_x.sha256) == (len(files["png"]), png.sha256)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Vertical H.264 videos: 20 minutes long (at one frame a second), and 4 seconds."""
    folder = tmp_path_factory.mktemp("post-videos")
    made = {}
    for name, seconds, fps in (("long", 1200.0, 1), ("short", 4.0, 24)):
        path = write_video(
            folder / f"{name}.mp4",
            container="mp4",
            video_codec="libx264",
            audio_codec=None,
            width=360,
            height=640,
            fps=fps,
            seconds=seconds,
        )
        made[name] = path.read_bytes()
    return made


async def test_a_20_minute_video_is_refused_as_a_short_and_taken_as_a_youtube_video(
    own_api: RunningApi, tenant: Client, videos: dict[str, bytes]
) -> None:
    youtube = await connect(tenant, posts_pb2.PLATFORM_YOUTUBE)
    long = await upload(tenant, "long.mp4", videos["long"])
    request = create_request([youtube], [long.id])
    request.targets[0].settings.update({"privacy": "public", "short": "true"})

    violations = await refused_create(own_api, tenant, request)

    assert violations == [
        (
            "media_ids[0]",
            f"media {long.id} is 1,200.0 s long; YouTube takes a Short of at most 3 minutes "
            "(for targets[0])",
        )
    ]
    request.targets[0].settings["short"] = "false"
    assert list((await create(tenant, request)).media_ids) == [long.id]


async def test_a_video_is_checked_against_each_targets_platform(
    own_api: RunningApi, tenant: Client, videos: dict[str, bytes]
) -> None:
    tiktok = await connect(tenant, posts_pb2.PLATFORM_TIKTOK)
    linkedin = await connect(tenant, posts_pb2.PLATFORM_LINKEDIN)
    youtube = await connect(tenant, posts_pb2.PLATFORM_YOUTUBE)
    clip = await upload(tenant, "clip.mp4", videos["short"])
    request = create_request([tiktok, linkedin, youtube], [clip.id])
    request.content = "a" * 2201  # a TikTok photo post takes 4,000; its video title 2,200
    request.targets[0].settings["privacy_level"] = "SELF_ONLY"
    request.targets[2].settings["privacy"] = "private"

    violations = await refused_create(own_api, tenant, request)

    assert violations == [
        (
            "content",
            "is 2,201 UTF-16 code units; TikTok takes at most 2,200 with a TikTok video "
            "(for targets[0])",
        ),
        (
            "media_ids[0]",
            f"media {clip.id} is {clip.size:,} bytes; LinkedIn takes a video of at least 75,000 "
            "bytes (for targets[1])",
        ),
    ]
    # Without LinkedIn and with a title that fits, it is taken.
    del request.targets[1]
    request.content = "a" * 2200
    assert list((await create(tenant, request)).media_ids) == [clip.id]


async def test_youtube_takes_one_uploaded_video_and_nothing_else(
    own_api: RunningApi, tenant: Client, files: dict[str, bytes]
) -> None:
    youtube = await connect(tenant, posts_pb2.PLATFORM_YOUTUBE)
    png = await upload(tenant, "a.png", files["png"])
    request = create_request([youtube], [png.id])
    request.targets[0].settings["privacy"] = "public"

    violations = await refused_create(own_api, tenant, request)

    assert violations == [
        (
            "media_ids[0]",
            f"media {png.id} is an image; YouTube takes one uploaded video and nothing else "
            "(for targets[0])",
        )
    ]
