"""The consumer's check that a platform pulling media by URL got a URL for each file: a video
for a platform that takes a video's bytes (Telegram, Slack, Discord) needs none and reaches the
module, while an image without one is still refused."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from kairos.dispatch.v1 import dispatch_pb2
from kairos.posts.v1 import media_pb2
from kairos_common.platforms import Platform
from kairos_publisher.consumer import PlatformConsumer
from kairos_publisher.platforms.base import PublishOutcome, PublishRequest, Result
from kairos_publisher.settings import PublisherSettings


class Recording:
    """A platform client that publishes whatever it is given and keeps the request."""

    def __init__(self) -> None:
        self.requests: list[PublishRequest] = []

    async def publish(self, request: PublishRequest) -> PublishOutcome:
        self.requests.append(request)
        return PublishOutcome(Result.PUBLISHED, platform_post_id="1")


def consumer(platform: Platform, client: Recording) -> PlatformConsumer:
    settings = PublisherSettings.from_env({"KAIROS_PUBLISHER_PLATFORMS": platform.value})
    # `call` reaches neither NATS nor the api for a client that cannot refresh.
    return PlatformConsumer(
        platform, client, settings, cast(Any, None), cast(Any, None), {"": asyncio.Semaphore()}
    )


def begun(kind: media_pb2.MediaKind.ValueType) -> dispatch_pb2.BeginAttemptResponse:
    stored = dispatch_pb2.StoredMedia(
        media_id="m-1",
        kind=kind,
        content_type="video/mp4" if kind == media_pb2.MEDIA_KIND_VIDEO else "image/png",
        size=10,
        sha256="ab" * 32,
        storage_key="media/m-1",
    )
    return dispatch_pb2.BeginAttemptResponse(
        ok=True,
        snapshot=dispatch_pb2.ContentSnapshot(content="hello", stored_media=[stored]),
    )


@pytest.mark.parametrize("platform", [Platform.TELEGRAM, Platform.SLACK, Platform.DISCORD])
async def test_a_video_without_a_url_reaches_a_platform_that_takes_its_bytes(
    platform: Platform,
) -> None:
    client = Recording()

    outcome = await consumer(platform, client).call(begun(media_pb2.MEDIA_KIND_VIDEO))

    assert outcome.result == Result.PUBLISHED
    [request] = client.requests
    assert request.video is not None
    assert request.video.url == ""
    assert request.media_urls == []


@pytest.mark.parametrize(
    ("platform", "kind"),
    [
        (Platform.TELEGRAM, media_pb2.MEDIA_KIND_IMAGE),
        (Platform.INSTAGRAM, media_pb2.MEDIA_KIND_VIDEO),
    ],
)
async def test_a_file_a_platform_pulls_by_url_is_refused_without_one(
    platform: Platform, kind: media_pb2.MediaKind.ValueType
) -> None:
    client = Recording()

    outcome = await consumer(platform, client).call(begun(kind))

    assert outcome.result == Result.PERMANENT
    assert outcome.code == "media"
    assert "pulls media by URL" in outcome.message
    assert client.requests == []
