"""A video post to Telegram, Slack and Discord end to end: api, scheduler and publisher as real
processes sharing a filesystem media store, the platforms played by their fakes over real HTTP.

One MP4 uploaded through MediaService and named by a post for the three platforms reaches each
through its own flow (Telegram's sendVideo upload, Slack's external upload, a Discord webhook
attachment) as exactly the uploaded bytes, and every target ends PUBLISHED with the platform's
id and URL. None of the three is given a URL for the video, so the filesystem store (which makes
none) serves them.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kairos.posts.v1 import media_pb2, media_pb2_grpc, posts_pb2
from kairos_fakes import platform_urls
from kairos_fakes.discord import DiscordFake
from kairos_fakes.slack import SlackFake
from kairos_fakes.telegram import TelegramFake
from support.media import write_video
from support.nats_server import NatsServer
from support.stack import Stack, at, running_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    folder = tmp_path_factory.mktemp("video")
    path = write_video(
        folder / "clip.mp4",
        container="mp4",
        video_codec="libx264",
        audio_codec="aac",
        width=360,
        height=640,
        seconds=2.0,
    )
    return path.read_bytes()


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[TelegramFake, SlackFake, DiscordFake]]:
    servers = (TelegramFake(), SlackFake(), DiscordFake())
    servers[0].add_chat("@kairosnews", "channel", "kairosnews")
    servers[1].share_after_polls = 0
    for server in servers:
        await server.start()
    yield servers
    for server in servers:
        await server.stop()


async def connect(
    stack: Stack, platform: posts_pb2.Platform.ValueType, credentials: posts_pb2.Credentials
) -> str:
    reply = await stack.accounts.ConnectAccount(
        posts_pb2.ConnectAccountRequest(
            platform=platform, handle=f"@k{uuid.uuid4().hex[:6]}", credentials=credentials
        ),
        metadata=stack.metadata,
    )
    return reply.account.id


async def upload(stack: Stack, data: bytes) -> media_pb2.Media:
    async def messages() -> AsyncIterator[media_pb2.UploadMediaRequest]:
        yield media_pb2.UploadMediaRequest(
            upload=media_pb2.MediaUpload(file_name="clip.mp4", size=len(data))
        )
        for start in range(0, len(data), 64 * 1024):
            yield media_pb2.UploadMediaRequest(chunk=data[start : start + 64 * 1024])

    assert stack.channel is not None
    stub = media_pb2_grpc.MediaServiceStub(stack.channel)
    return (await stub.UploadMedia(messages(), metadata=stack.metadata)).media


async def test_a_video_reaches_telegram_slack_and_discord_as_its_bytes_and_is_published(
    nats_server: NatsServer,
    tmp_path: Path,
    video: bytes,
    fakes: tuple[TelegramFake, SlackFake, DiscordFake],
) -> None:
    telegram, slack, discord = fakes
    hook = discord.create_webhook(guild_id="9001", channel_id="9002")
    digest = hashlib.sha256(video).hexdigest()
    env = {
        "KAIROS_MEDIA_STORE": str(tmp_path / "media"),
        "KAIROS_PLATFORM_URLS": platform_urls([telegram, slack, discord]),
        "KAIROS_ALLOW_HTTP_MEDIA": "true",
    }
    async with running_stack(nats_server, tmp_path, env=env) as stack:
        accounts = [
            await connect(
                stack,
                posts_pb2.PLATFORM_TELEGRAM,
                posts_pb2.Credentials(access_token=telegram.new_token(), chat_id="@kairosnews"),
            ),
            await connect(
                stack,
                posts_pb2.PLATFORM_SLACK,
                posts_pb2.Credentials(access_token="xoxb-kairos", chat_id="C0KAIROS1"),
            ),
            await connect(
                stack,
                posts_pb2.PLATFORM_DISCORD,
                posts_pb2.Credentials(access_token=discord.webhook_url(hook)),
            ),
        ]
        media = await upload(stack, video)
        assert media.kind == media_pb2.MEDIA_KIND_VIDEO
        request = posts_pb2.CreatePostRequest(
            content=f"Launch video {uuid.uuid4().hex[:8]}",
            media_ids=[media.id],
            targets=[posts_pb2.TargetSpec(account_id=a) for a in accounts],
        )
        request.schedule.at.CopyFrom(at(0))
        post = (await stack.posts.CreatePost(request, metadata=stack.metadata)).post
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            post = await stack.get(post.id)
            if post.status not in (
                posts_pb2.POST_STATUS_SCHEDULED,
                posts_pb2.POST_STATUS_PUBLISHING,
            ):
                break
            await asyncio.sleep(0.2)
        assert post.status == posts_pb2.POST_STATUS_PUBLISHED, f"{post}\n{stack.logs()}"

    by_platform = {t.platform: t for t in post.targets}
    on_telegram = by_platform[posts_pb2.PLATFORM_TELEGRAM]
    assert on_telegram.platform_post_id == "1"
    assert on_telegram.platform_url == "https://t.me/kairosnews/1"
    [sent] = telegram.videos
    assert sent["sha256"] == digest

    on_slack = by_platform[posts_pb2.PLATFORM_SLACK]
    [message] = slack.posts
    assert on_slack.platform_post_id == message["ts"]
    assert on_slack.platform_url.startswith("https://kairos-fake.slack.com/archives/C0KAIROS1/p")
    [uploaded] = slack.uploads
    assert uploaded.content is not None
    assert hashlib.sha256(uploaded.content).hexdigest() == digest

    on_discord = by_platform[posts_pb2.PLATFORM_DISCORD]
    [kept] = discord.posts
    assert on_discord.platform_post_id == kept["message"]["id"]
    assert (
        on_discord.platform_url == f"https://discord.com/channels/9001/9002/{kept['message']['id']}"
    )
    [attached] = kept["files"]
    assert hashlib.sha256(attached["content"]).hexdigest() == digest
