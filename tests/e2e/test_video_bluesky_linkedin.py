"""A video post to Bluesky and LinkedIn end to end: uploaded through the api, checked against
both platforms' video rules when the post is created, and sent by the publisher through each
platform's real upload flow (Bluesky's video service job, LinkedIn's Videos API parts) to its
fake, which ends up holding exactly the uploaded bytes."""

from __future__ import annotations

import asyncio
import hashlib
import struct
import time
from pathlib import Path

import pytest

from kairos.posts.v1 import posts_pb2
from kairos_client import KairosClient
from kairos_fakes import platform_urls
from kairos_fakes.bluesky import BlueskyFake
from kairos_fakes.linkedin import LinkedInFake
from support.media import write_video
from support.nats_server import NatsServer
from support.stack import Stack, at, running_stack

pytestmark = pytest.mark.e2e


def video_of(folder: Path, total: int) -> Path:
    """A real 3.5 s vertical H.264/AAC MP4 padded to `total` bytes with a top-level `free` box
    (ISO/IEC 14496-12 §8.1.2, space a reader skips): over LinkedIn's floor of 75 KB, and in
    several of the 64 KiB parts the LinkedIn fake is set to cut it into."""
    path = write_video(
        folder / "clip.mp4",
        container="mp4",
        video_codec="libx264",
        audio_codec="aac",
        width=360,
        height=640,
        seconds=3.5,
    )
    padding = total - path.stat().st_size
    assert padding > 8
    with path.open("ab") as file:
        file.write(struct.pack(">I", padding) + b"free" + bytes(padding - 8))
    return path


async def settled(stack: Stack, post_id: str, timeout: float) -> posts_pb2.Post:
    deadline = time.monotonic() + timeout
    post = await stack.get(post_id)
    while time.monotonic() < deadline:
        post = await stack.get(post_id)
        if post.status not in (posts_pb2.POST_STATUS_SCHEDULED, posts_pb2.POST_STATUS_PUBLISHING):
            return post
        await asyncio.sleep(0.2)
    raise AssertionError(f"post {post_id} did not settle:\n{post}\n{stack.logs()}")


async def test_a_video_post_reaches_bluesky_and_linkedin_through_their_upload_flows(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    video = video_of(tmp_path, 300 * 1024)
    digest = hashlib.sha256(video.read_bytes()).hexdigest()
    bluesky, linkedin = BlueskyFake(), LinkedInFake()
    linkedin.video_part_bytes = 64 * 1024
    for fake in (bluesky, linkedin):
        await fake.start()
    env = {
        "KAIROS_MEDIA_STORE": str(tmp_path / "media"),
        "KAIROS_PLATFORM_URLS": platform_urls([bluesky, linkedin]),
        "KAIROS_ALLOW_HTTP_MEDIA": "true",
    }
    try:
        async with running_stack(nats_server, tmp_path, env=env) as stack:
            account = bluesky.add_account("kairos.test", "app-password")
            access, refresh = bluesky.session_for(account.did)
            accounts = []
            for platform, handle, credentials in (
                (
                    posts_pb2.PLATFORM_BLUESKY,
                    "kairos.test",
                    posts_pb2.Credentials(
                        access_token=access,
                        refresh_token=refresh,
                        instance_url=bluesky.url,
                        extra={"did": account.did},
                    ),
                ),
                (
                    posts_pb2.PLATFORM_LINKEDIN,
                    "Kairos",
                    posts_pb2.Credentials(access_token="li-token", page_id="urn:li:person:k1"),
                ),
            ):
                reply = await stack.accounts.ConnectAccount(
                    posts_pb2.ConnectAccountRequest(
                        platform=platform, handle=handle, credentials=credentials
                    ),
                    metadata=stack.metadata,
                )
                accounts.append(reply.account.id)
            async with KairosClient(f"127.0.0.1:{stack.api.port}", stack.key) as client:
                media = await client.upload_media(video, timeout=60)
            assert media.sha256 == digest
            request = posts_pb2.CreatePostRequest(
                content="A clip for both",
                media_ids=[media.id],
                targets=[posts_pb2.TargetSpec(account_id=a) for a in accounts],
            )
            request.schedule.at.CopyFrom(at(0))
            created = await stack.posts.CreatePost(request, metadata=stack.metadata)
            post = await settled(stack, created.post.id, timeout=90)
    finally:
        for fake in (bluesky, linkedin):
            await fake.stop()

    assert post.status == posts_pb2.POST_STATUS_PUBLISHED, post
    by_platform = {target.platform: target for target in post.targets}
    sky = by_platform[posts_pb2.PLATFORM_BLUESKY]
    [record] = bluesky.posts
    assert sky.platform_post_id == record["uri"]
    assert sky.platform_url == f"https://bsky.app/profile/kairos.test/post/{record['rkey']}"
    [job] = bluesky.video_jobs.values()
    assert hashlib.sha256(job["content"]).hexdigest() == digest
    assert record["record"]["embed"]["video"] == job["blob"]
    assert record["record"]["embed"]["aspectRatio"] == {"width": 360, "height": 640}
    li = by_platform[posts_pb2.PLATFORM_LINKEDIN]
    [share] = linkedin.posts
    assert li.platform_post_id == share["urn"]
    assert li.platform_url == f"https://www.linkedin.com/feed/update/{share['urn']}/"
    [(urn, kept)] = linkedin.videos.items()
    assert len(kept["parts"]) == 5
    assert hashlib.sha256(kept["content"]).hexdigest() == digest
    assert share["content"] == {"media": {"id": urn}}
