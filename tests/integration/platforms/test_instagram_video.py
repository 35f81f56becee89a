"""Instagram video against the fake over real HTTP: a REELS container (or a STORIES one by the
target's setting) made from the video's presigned URL, which the fake really downloads, polled
through the attempt's stage, and published only after `stage.publishing()`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest

from kairos_fakes.instagram import InstagramFake
from kairos_fakes.media import MediaHost
from kairos_media import FileStore
from kairos_publisher.media import MediaFetcher, StoredMedia
from kairos_publisher.platforms import instagram
from kairos_publisher.platforms.base import PublishRequest, Result
from support.graph_video import OrderStage, StoreHost
from support.platforms import context, publish_request
from support.video import stored_video

USER = "17841400008460056"


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "media")


@pytest.fixture
async def host(store: FileStore) -> AsyncIterator[StoreHost]:
    server = StoreHost(store)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def fake() -> AsyncIterator[InstagramFake]:
    server = InstagramFake()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def client(
    http: httpx.AsyncClient, media: MediaFetcher, fake: InstagramFake
) -> instagram.InstagramClient:
    return instagram.create(context(http, media, fake))


@pytest.fixture
async def video(store: FileStore, tmp_path: Path, host: StoreHost) -> StoredMedia:
    return host.presigned(await stored_video(store, tmp_path))


def form(body: bytes) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(body.decode()).items()}


def reel(video: StoredMedia, stage: OrderStage, **fields: object) -> PublishRequest:
    return publish_request(
        "A reel #kairos", page_id=USER, stored_media=[video], stage=stage, **fields
    )


async def test_a_video_is_published_as_a_reel_after_the_stage_is_told(
    client: instagram.InstagramClient, fake: InstagramFake, video: StoredMedia
) -> None:
    fake.video_polls = 2
    stage = OrderStage(fake)
    outcome = await client.publish(reel(video, stage))
    assert outcome.result == Result.PUBLISHED, outcome
    [post] = fake.posts
    assert outcome.platform_post_id == post["id"]
    assert outcome.url == post["permalink"]
    assert post["media_product_type"] == "REELS"
    # Instagram fetched exactly the uploaded bytes from the presigned URL.
    assert (post["video"].size, post["video"].sha256) == (video.size, video.sha256)
    create = fake.calls("POST", f"/{USER}/media")[0]
    assert form(create.body) == {
        "media_type": "REELS",
        "video_url": video.url,
        "caption": "A reel #kairos",
        "share_to_feed": "true",
        "access_token": "token-1",
    }
    # Polled through the stage, a minute apart, until FINISHED; told once, just before the
    # one call that publishes.
    assert stage.pauses == [60.0, 60.0]
    assert stage.published_marks == 1
    [before] = stage.requests_before
    assert fake.requests[before].path.endswith(f"/{USER}/media_publish")
    assert len(fake.calls("POST", "media_publish")) == 1


async def test_the_stories_setting_makes_a_story_without_a_caption(
    client: instagram.InstagramClient, fake: InstagramFake, video: StoredMedia
) -> None:
    stage = OrderStage(fake)
    outcome = await client.publish(reel(video, stage, settings={"media_type": "STORIES"}))
    assert outcome.result == Result.PUBLISHED, outcome
    create = form(fake.calls("POST", f"/{USER}/media")[0].body)
    assert create == {"media_type": "STORIES", "video_url": video.url, "access_token": "token-1"}
    [post] = fake.posts
    assert post["media_product_type"] == "STORY"
    assert post["video"].sha256 == video.sha256


async def test_a_stage_that_refuses_keeps_the_reel_unpublished(
    client: instagram.InstagramClient, fake: InstagramFake, video: StoredMedia
) -> None:
    stage = OrderStage(fake, refuse=True)
    outcome = await client.publish(reel(video, stage))
    assert outcome.result == Result.RETRYABLE
    assert outcome.code == "stage"
    assert stage.published_marks == 1
    assert fake.calls("POST", "media_publish") == []
    assert fake.posts == []


async def test_bytes_that_are_no_video_fail_processing_for_good(
    client: instagram.InstagramClient,
    fake: InstagramFake,
    store: FileStore,
    host: StoreHost,
    video: StoredMedia,
) -> None:
    async def text() -> AsyncIterator[bytes]:
        yield b"<html>this is not a movie</html>"

    kept = await store.put("media/not-a-video", text())
    named = replace(video, media_id="not-a-video", storage_key=kept.key, size=kept.size)
    stage = OrderStage(fake)
    outcome = await client.publish(reel(host.presigned(named), stage))
    assert outcome.result == Result.PERMANENT
    assert outcome.code == "container_error"
    assert "2207026" in outcome.message
    assert stage.published_marks == 0
    assert fake.calls("POST", "media_publish") == []


async def test_a_video_instagram_cannot_download_fails_for_good(
    client: instagram.InstagramClient, fake: InstagramFake, host: StoreHost, video: StoredMedia
) -> None:
    host.status = 403  # e.g. the presigned URL expired
    outcome = await client.publish(reel(video, OrderStage(fake)))
    assert outcome.result == Result.PERMANENT
    assert "2207052" in outcome.message
    assert host.gets == 1
    assert fake.posts == []


@pytest.mark.parametrize("fault", ["server_error", "hang"])
async def test_a_failed_or_unanswered_container_call_is_retryable_and_nothing_is_public(
    client: instagram.InstagramClient, fake: InstagramFake, video: StoredMedia, fault: str
) -> None:
    fake.fail_next("container", fault)
    stage = OrderStage(fake)
    outcome = await client.publish(reel(video, stage))
    assert outcome.result == Result.RETRYABLE, outcome
    assert stage.published_marks == 0
    assert fake.calls("POST", "media_publish") == []
    assert fake.posts == []


async def test_a_reel_still_processing_at_the_bound_is_retryable(
    client: instagram.InstagramClient, fake: InstagramFake, video: StoredMedia
) -> None:
    fake.video_polls = 1000
    client.video_max_wait = 150.0
    stage = OrderStage(fake)
    outcome = await client.publish(reel(video, stage))
    assert outcome.result == Result.RETRYABLE
    assert outcome.code == "container_not_ready"
    assert stage.pauses == [60.0, 60.0]  # a third minute would pass the bound
    assert stage.published_marks == 0
    assert fake.calls("POST", "media_publish") == []


async def test_an_unanswered_publish_call_is_unknown(
    client: instagram.InstagramClient, fake: InstagramFake, video: StoredMedia
) -> None:
    fake.fail_next("create", "hang")
    stage = OrderStage(fake)
    outcome = await client.publish(reel(video, stage))
    assert outcome.result == Result.UNKNOWN
    assert stage.published_marks == 1
    assert len(fake.posts) == 1  # the fake published it, then never answered


async def test_a_video_without_a_presigned_url_is_refused_before_any_call(
    client: instagram.InstagramClient, fake: InstagramFake, video: StoredMedia
) -> None:
    outcome = await client.publish(reel(replace(video, url=""), OrderStage(fake)))
    assert outcome.result == Result.PERMANENT
    assert "presigned" in outcome.message
    assert fake.requests == []


async def test_a_comment_takes_no_video(
    client: instagram.InstagramClient, fake: InstagramFake, video: StoredMedia
) -> None:
    outcome = await client.publish(reel(video, OrderStage(fake), reply_to="17890000000000001"))
    assert outcome.result == Result.PERMANENT
    assert outcome.code == "video_in_comment"
    assert fake.requests == []


async def test_the_stories_setting_makes_a_single_image_a_story_too(
    client: instagram.InstagramClient, fake: InstagramFake, media_host: MediaHost
) -> None:
    jpeg = media_host.image_url("photo.jpg")
    request = publish_request(
        "Not shown", page_id=USER, media_urls=[jpeg], settings={"media_type": "STORIES"}
    )
    outcome = await client.publish(request)
    assert outcome.result == Result.PUBLISHED, outcome
    create = form(fake.calls("POST", f"/{USER}/media")[0].body)
    assert create == {"media_type": "STORIES", "image_url": jpeg, "access_token": "token-1"}
    assert fake.posts[0]["media_product_type"] == "STORY"
    two = await client.publish(replace(request, media_urls=[jpeg, jpeg]))
    assert two.result == Result.PERMANENT
    assert two.code == "too_many_media"
