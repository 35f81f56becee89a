"""Posts with an uploaded video for Telegram, Slack and Discord, over real gRPC on PostgreSQL and
SQLite, with the filesystem media store (which makes no URLs): these platforms pull images by URL
but are sent a video's bytes, so the video is taken, and BeginAttempt gives it without a URL;
an uploaded image for them still needs a store that makes URLs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from kairos.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from kairos.posts.v1 import media_pb2, media_pb2_grpc, posts_pb2
from support.api import SERVICE_TOKEN, Client, RunningApi, violations_of
from support.media import write_image, write_video

SERVICE = (("authorization", f"Bearer {SERVICE_TOKEN}"),)

CREDENTIALS = {
    posts_pb2.PLATFORM_TELEGRAM: posts_pb2.Credentials(access_token="1:tok", chat_id="@kairos"),
    posts_pb2.PLATFORM_SLACK: posts_pb2.Credentials(access_token="xoxb-1", chat_id="C0KAIROS1"),
    posts_pb2.PLATFORM_DISCORD: posts_pb2.Credentials(
        access_token="https://discord.com/api/webhooks/123/abc"
    ),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("video-bytes")
    png = write_image(folder / "a.png", container="image2", codec="png", pixel_format="rgb24")
    video = write_video(
        folder / "c.mp4",
        container="mp4",
        video_codec="libx264",
        audio_codec=None,
        width=64,
        height=64,
    )
    return {"png": png.read_bytes(), "mp4": video.read_bytes()}


async def upload(client: Client, name: str, data: bytes) -> media_pb2.Media:
    async def messages() -> AsyncIterator[media_pb2.UploadMediaRequest]:
        yield media_pb2.UploadMediaRequest(
            upload=media_pb2.MediaUpload(file_name=name, size=len(data))
        )
        yield media_pb2.UploadMediaRequest(chunk=data)

    stub = media_pb2_grpc.MediaServiceStub(client.channel)
    return (await stub.UploadMedia(messages(), metadata=client.metadata)).media


async def connect(client: Client, platform: posts_pb2.Platform.ValueType) -> str:
    reply = await client.accounts.ConnectAccount(
        posts_pb2.ConnectAccountRequest(
            platform=platform,
            handle=f"@k{uuid.uuid4().hex[:6]}",
            credentials=CREDENTIALS[platform],
        ),
        metadata=client.metadata,
    )
    return reply.account.id


def due_post(account_ids: list[str], media_id: str) -> posts_pb2.CreatePostRequest:
    request = posts_pb2.CreatePostRequest(
        content="A video",
        media_ids=[media_id],
        targets=[posts_pb2.TargetSpec(account_id=a) for a in account_ids],
    )
    request.schedule.at.FromDatetime(datetime.now(UTC))
    return request


async def begin_due(api: RunningApi, *target_ids: str) -> list[dispatch_pb2.BeginAttemptResponse]:
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


async def test_a_video_goes_to_telegram_slack_and_discord_as_bytes_without_a_url(
    own_api: RunningApi, tenant: Client, files: dict[str, bytes]
) -> None:
    assert not own_api.service.app.media.makes_urls
    video = await upload(tenant, "c.mp4", files["mp4"])
    accounts = [await connect(tenant, platform) for platform in CREDENTIALS]

    post = (
        await tenant.posts.CreatePost(due_post(accounts, video.id), metadata=tenant.metadata)
    ).post

    begun = await begin_due(own_api, *(t.id for t in post.targets))
    for attempt in begun:
        assert attempt.ok, attempt.reason
        [stored] = attempt.snapshot.stored_media
        assert (stored.media_id, stored.kind, stored.url) == (
            video.id,
            media_pb2.MEDIA_KIND_VIDEO,
            "",
        )
        assert stored.sha256 == video.sha256


async def test_an_image_for_them_still_needs_a_store_that_makes_urls(
    own_api: RunningApi, tenant: Client, files: dict[str, bytes]
) -> None:
    png = await upload(tenant, "a.png", files["png"])
    telegram = await connect(tenant, posts_pb2.PLATFORM_TELEGRAM)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await tenant.posts.CreatePost(due_post([telegram], png.id), metadata=tenant.metadata)

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    [(field, message)] = violations_of(refused.value)
    assert field == "media_ids"
    assert message.startswith("Telegram pulls media by URL, and the filesystem media store")
