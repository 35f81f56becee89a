"""Video posts end to end: api, scheduler and publisher as real processes sharing one media store,
the platforms played by their local fakes over real HTTP.

- A publisher killed with SIGKILL while it uploads a video: nothing public was made, so the
  attempt is retried (not left UNKNOWN) and the post is published once.
- A 200 MB video uploaded through the api and sent to two platforms through their chunked upload
  flows, with the api's and the publisher's peak memory each rising less than 100 MB.
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kairos.posts.v1 import media_pb2, posts_pb2
from kairos_client import KairosClient
from kairos_fakes import platform_urls
from kairos_fakes.linkedin import LinkedInFake
from kairos_fakes.mastodon import MastodonFake
from kairos_fakes.x import XFake
from support.media import write_video
from support.media_memory import growth_mib, start_measuring
from support.nats_server import NatsServer
from support.stack import Stack, at, running_stack

pytestmark = pytest.mark.e2e

MB = 1000 * 1000


def padded_video(folder: Path, total: int) -> Path:
    """A real 5 s vertical H.264/AAC MP4, made `total` bytes long by a top-level `free` box after
    its own boxes (ISO/IEC 14496-12 §8.1.2: free space a reader skips), written in pieces."""
    path = write_video(
        folder / "big.mp4",
        container="mp4",
        video_codec="libx264",
        audio_codec="aac",
        width=540,
        height=960,
        seconds=5.0,
    )
    padding = total - path.stat().st_size
    assert padding > 8
    with path.open("ab") as file:
        file.write(struct.pack(">I", padding) + b"free")
        left = padding - 8
        block = bytes(MB)
        while left:
            left -= file.write(block[: min(left, MB)])
    return path


async def upload(stack: Stack, path: Path) -> media_pb2.Media:
    async with KairosClient(f"127.0.0.1:{stack.api.port}", stack.key) as client:
        return await client.upload_media(path, timeout=300)


async def connect(
    stack: Stack, platform: posts_pb2.Platform.ValueType, credentials: posts_pb2.Credentials
) -> str:
    reply = await stack.accounts.ConnectAccount(
        posts_pb2.ConnectAccountRequest(platform=platform, handle="@k", credentials=credentials),
        metadata=stack.metadata,
    )
    return reply.account.id


async def settled(stack: Stack, post_id: str, timeout: float) -> posts_pb2.Post:
    deadline = time.monotonic() + timeout
    post = await stack.get(post_id)
    while time.monotonic() < deadline:
        post = await stack.get(post_id)
        if post.status not in (posts_pb2.POST_STATUS_SCHEDULED, posts_pb2.POST_STATUS_PUBLISHING):
            return post
        await asyncio.sleep(0.2)
    raise AssertionError(f"post {post_id} did not settle:\n{post}\n{stack.logs()}")


async def post_video(stack: Stack, accounts: list[str], media_id: str, text: str) -> str:
    request = posts_pb2.CreatePostRequest(
        content=text,
        media_ids=[media_id],
        targets=[posts_pb2.TargetSpec(account_id=a) for a in accounts],
    )
    request.schedule.at.CopyFrom(at(0))
    return (await stack.posts.CreatePost(request, metadata=stack.metadata)).post.id


@pytest.fixture
async def mastodon() -> AsyncIterator[MastodonFake]:
    fake = MastodonFake()
    await fake.start()
    yield fake
    await fake.stop()


async def test_a_publisher_killed_mid_upload_is_retried_and_publishes_once(
    nats_server: NatsServer, tmp_path: Path, mastodon: MastodonFake
) -> None:
    video = write_video(
        tmp_path / "clip.mp4",
        container="mp4",
        video_codec="libx264",
        audio_codec="aac",
        width=360,
        height=640,
        seconds=2.0,
    )
    env = {
        "KAIROS_MEDIA_STORE": str(tmp_path / "media"),
        "KAIROS_PLATFORM_URLS": platform_urls([mastodon]),
        "KAIROS_ALLOW_HTTP_MEDIA": "true",
    }
    # A short lease, so the sweeper sees the lost attempt within seconds.
    api_env = {"KAIROS_ATTEMPT_LEASE_SECONDS": "3"}
    async with running_stack(nats_server, tmp_path, env=env, api_env=api_env) as stack:
        account = await connect(
            stack,
            posts_pb2.PLATFORM_MASTODON,
            posts_pb2.Credentials(access_token="m-token", instance_url=mastodon.url),
        )
        media = await upload(stack, video)
        # The first upload is held until the publisher is gone.
        mastodon.stall_next("POST", "/api/v2/media", 30.0)
        mark = f"kill-{uuid.uuid4().hex[:8]}"
        post_id = await post_video(stack, [account], media.id, f"{mark} once")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if not mastodon.stalls:
                break  # the upload arrived, and is held
            await asyncio.sleep(0.05)
        assert mastodon.stalls == [], "the upload never started"
        stack.publishers[0].kill()
        replacement = stack.add("publisher")
        await replacement.wait_serving()
        post = await settled(stack, post_id, timeout=40)

    assert post.status == posts_pb2.POST_STATUS_PUBLISHED, f"{post}\n{stack.logs()}"
    [target] = post.targets
    assert target.platform_post_id
    assert [a.error_class for a in target.attempts] == [
        posts_pb2.ERROR_CLASS_RETRYABLE,
        posts_pb2.ERROR_CLASS_UNSPECIFIED,
    ]
    assert [a.published for a in target.attempts] == [False, True]
    assert "while it sent media" in target.attempts[0].message
    kept = [s for s in mastodon.statuses if mark in str(s.get("content", ""))]
    assert len(kept) == 1, kept


async def test_a_200_mb_video_goes_to_two_platforms_within_100_mb_of_memory_each(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    video = padded_video(tmp_path, 200 * MB)
    digest = hashlib.sha256(video.read_bytes()).hexdigest()
    x, linkedin = XFake(), LinkedInFake()
    for fake in (x, linkedin):
        await fake.start()
    env = {
        "KAIROS_MEDIA_STORE": str(tmp_path / "media"),
        "KAIROS_PLATFORM_URLS": platform_urls([x, linkedin]),
        "KAIROS_ALLOW_HTTP_MEDIA": "true",
        "KAIROS_X_CLIENT_ID": "kairos-app",
    }
    try:
        async with running_stack(nats_server, tmp_path, env=env) as stack:
            access, refresh = x.grant("kairos")
            accounts = [
                await connect(
                    stack,
                    posts_pb2.PLATFORM_X,
                    posts_pb2.Credentials(access_token=access, refresh_token=refresh),
                ),
                await connect(
                    stack,
                    posts_pb2.PLATFORM_LINKEDIN,
                    posts_pb2.Credentials(access_token="li-token", page_id="urn:li:person:k1"),
                ),
            ]
            assert stack.api.process is not None
            assert stack.publishers[0].process is not None
            api_pid, publisher_pid = stack.api.process.pid, stack.publishers[0].process.pid
            api_idle = start_measuring(api_pid)
            media = await upload(stack, video)
            api_growth = growth_mib(api_idle, api_pid)
            assert media.size == 200 * MB
            assert media.sha256 == digest
            publisher_idle = start_measuring(publisher_pid)
            post_id = await post_video(stack, accounts, media.id, "A big one")
            post = await settled(stack, post_id, timeout=240)
            publisher_growth = growth_mib(publisher_idle, publisher_pid)
            assert post.status == posts_pb2.POST_STATUS_PUBLISHED, f"{post}\n{stack.logs()}"
    finally:
        for fake in (x, linkedin):
            await fake.stop()
    assert len(post.targets) == 2
    assert all(t.platform_post_id and t.platform_url for t in post.targets), post
    # Each platform holds the whole file, byte for byte, through its chunked flow.
    [held] = [u for u in x.uploads.values() if u.category == "tweet_video"]
    assert (held.size, held.sha256) == (200 * MB, digest)
    [(_, kept)] = linkedin.videos.items()
    assert hashlib.sha256(kept["content"]).hexdigest() == digest
    assert len(kept["parts"]) > 1
    print(f"peak memory above idle: api {api_growth} MiB, publisher {publisher_growth} MiB")
    assert api_growth < 100, api_growth
    assert publisher_growth < 100, publisher_growth
