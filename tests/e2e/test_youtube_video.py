"""A YouTube video post end to end: api, scheduler and publisher as real processes sharing one
media store, YouTube played by its fake over real HTTP.

The video uploaded through the api reaches the fake through the resumable upload, exactly as
uploaded, and the post ends PUBLISHED with YouTube's id and URL; a Short that is not square or
vertical is refused when the post is created, and the same video goes out as an ordinary one; a
publisher killed while it sends the first chunk made nothing public, so the attempt is retried
and the video made once.
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from kairos.posts.v1 import media_pb2, posts_pb2
from kairos_client import KairosClient
from kairos_fakes import platform_urls
from kairos_fakes.youtube import YouTubeFake
from support.media import write_video
from support.nats_server import NatsServer
from support.stack import Stack, at, running_stack

pytestmark = pytest.mark.e2e


@pytest.fixture
async def youtube() -> AsyncIterator[YouTubeFake]:
    fake = YouTubeFake()
    await fake.start()
    yield fake
    await fake.stop()


def clip(folder: Path, width: int, height: int) -> Path:
    return write_video(
        folder / f"clip-{width}x{height}.mp4",
        container="mp4",
        video_codec="libx264",
        audio_codec="aac",
        width=width,
        height=height,
        seconds=2.0,
    )


def padded(path: Path, total: int) -> Path:
    """`path` made `total` bytes long by a top-level `free` box after its own boxes (ISO/IEC
    14496-12 §8.1.2: free space a reader skips)."""
    padding = total - path.stat().st_size
    with path.open("ab") as file:
        file.write(struct.pack(">I", padding) + b"free" + bytes(padding - 8))
    return path


async def upload(stack: Stack, path: Path) -> media_pb2.Media:
    async with KairosClient(f"127.0.0.1:{stack.api.port}", stack.key) as client:
        return await client.upload_media(path, timeout=60)


async def connect(stack: Stack, fake: YouTubeFake) -> str:
    access, refresh = fake.issue()
    reply = await stack.accounts.ConnectAccount(
        posts_pb2.ConnectAccountRequest(
            platform=posts_pb2.PLATFORM_YOUTUBE,
            handle="@kairos",
            credentials=posts_pb2.Credentials(access_token=access, refresh_token=refresh),
        ),
        metadata=stack.metadata,
    )
    return reply.account.id


def video_post(
    account: str, media_id: str, settings: dict[str, str]
) -> posts_pb2.CreatePostRequest:
    request = posts_pb2.CreatePostRequest(
        content="Sourdough in two seconds\nThe whole bake, sped up.",
        media_ids=[media_id],
        targets=[posts_pb2.TargetSpec(account_id=account, settings=settings)],
    )
    request.schedule.at.CopyFrom(at(0))
    return request


async def settled(stack: Stack, post_id: str, timeout: float = 40) -> posts_pb2.Post:
    deadline = time.monotonic() + timeout
    post = await stack.get(post_id)
    while time.monotonic() < deadline:
        post = await stack.get(post_id)
        if post.status not in (posts_pb2.POST_STATUS_SCHEDULED, posts_pb2.POST_STATUS_PUBLISHING):
            return post
        await asyncio.sleep(0.2)
    raise AssertionError(f"post {post_id} did not settle:\n{post}\n{stack.logs()}")


async def test_a_short_reaches_youtube_through_the_resumable_upload_and_is_published(
    nats_server: NatsServer, tmp_path: Path, youtube: YouTubeFake
) -> None:
    video = clip(tmp_path, 360, 640)
    digest = hashlib.sha256(video.read_bytes()).hexdigest()
    env = {
        "KAIROS_MEDIA_STORE": str(tmp_path / "media"),
        "KAIROS_PLATFORM_URLS": platform_urls([youtube]),
    }
    async with running_stack(nats_server, tmp_path, env=env) as stack:
        account = await connect(stack, youtube)
        media = await upload(stack, video)
        settings = {"privacy": "public", "short": "true"}
        created = await stack.posts.CreatePost(
            video_post(account, media.id, settings), metadata=stack.metadata
        )
        post = await settled(stack, created.post.id)

    assert post.status == posts_pb2.POST_STATUS_PUBLISHED, f"{post}\n{stack.logs()}"
    [target] = post.targets
    [made] = youtube.videos
    assert target.platform_post_id == made.id
    assert target.platform_url == f"https://www.youtube.com/shorts/{made.id}"
    assert made.sha256 == digest
    assert made.resource["snippet"]["title"] == "Sourdough in two seconds"
    assert made.resource["status"]["privacyStatus"] == "public"
    assert [a.published for a in target.attempts] == [True]


async def test_a_short_that_is_wider_than_tall_is_refused_when_the_post_is_created(
    nats_server: NatsServer, tmp_path: Path, youtube: YouTubeFake
) -> None:
    env = {
        "KAIROS_MEDIA_STORE": str(tmp_path / "media"),
        "KAIROS_PLATFORM_URLS": platform_urls([youtube]),
    }
    async with running_stack(nats_server, tmp_path, env=env) as stack:
        account = await connect(stack, youtube)
        media = await upload(stack, clip(tmp_path, 640, 360))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stack.posts.CreatePost(
                video_post(account, media.id, {"privacy": "public", "short": "true"}),
                metadata=stack.metadata,
            )
        # The same video is taken as an ordinary YouTube video.
        created = await stack.posts.CreatePost(
            video_post(account, media.id, {"privacy": "unlisted"}), metadata=stack.metadata
        )
        post = await settled(stack, created.post.id)

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = str(refused.value.details())
    assert details.startswith("media_ids[0]: ")
    assert "is 640x360" in details
    assert "YouTube takes a Short no wider than 1 (for targets[0])" in details
    assert post.status == posts_pb2.POST_STATUS_PUBLISHED, f"{post}\n{stack.logs()}"
    assert post.targets[0].platform_url.startswith("https://www.youtube.com/watch?v=")


async def test_a_publisher_killed_while_it_sends_a_chunk_is_retried_and_the_video_made_once(
    nats_server: NatsServer, tmp_path: Path, youtube: YouTubeFake
) -> None:
    # Over one 8 MiB chunk, so the first PUT is not the one that makes the video.
    video = padded(clip(tmp_path, 360, 640), 9 * 1024 * 1024)
    digest = hashlib.sha256(video.read_bytes()).hexdigest()
    env = {
        "KAIROS_MEDIA_STORE": str(tmp_path / "media"),
        "KAIROS_PLATFORM_URLS": platform_urls([youtube]),
    }
    # A short lease, so the sweeper sees the lost attempt within seconds.
    api_env = {"KAIROS_ATTEMPT_LEASE_SECONDS": "3"}
    async with running_stack(nats_server, tmp_path, env=env, api_env=api_env) as stack:
        account = await connect(stack, youtube)
        media = await upload(stack, video)
        youtube.stall_next("PUT", "/upload/youtube/v3/videos", 30.0)
        created = await stack.posts.CreatePost(
            video_post(account, media.id, {"privacy": "public"}), metadata=stack.metadata
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if not youtube.stalls:
                break  # the first chunk arrived, and is held
            await asyncio.sleep(0.05)
        assert youtube.stalls == [], "the first chunk never started"
        stack.publishers[0].kill()
        replacement = stack.add("publisher")
        await replacement.wait_serving()
        post = await settled(stack, created.post.id)

    assert post.status == posts_pb2.POST_STATUS_PUBLISHED, f"{post}\n{stack.logs()}"
    [target] = post.targets
    assert [a.error_class for a in target.attempts] == [
        posts_pb2.ERROR_CLASS_RETRYABLE,
        posts_pb2.ERROR_CLASS_UNSPECIFIED,
    ]
    assert [a.published for a in target.attempts] == [False, True]
    [made] = youtube.videos
    assert target.platform_post_id == made.id
    assert made.sha256 == digest
    # Two sessions were started: the killed one was never finished.
    assert len(youtube.calls("POST", "/upload/youtube/v3/videos")) == 2
