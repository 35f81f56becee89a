"""Facebook Page video against the fake over real HTTP: one `POST /{page}/videos` with the
video's presigned `file_url`, which the fake really downloads, made only after
`stage.publishing()` (that call publishes); then the processing status read through the stage
until the video is ready."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest

from kairos_fakes.facebook import FacebookFake
from kairos_media import FileStore
from kairos_publisher.media import MediaFetcher, StoredMedia
from kairos_publisher.platforms import facebook
from kairos_publisher.platforms.base import PublishRequest, Result
from support.graph_video import OrderStage, StoreHost
from support.platforms import context, publish_request
from support.video import stored_video

PAGE = "546349135390552"


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
async def fake() -> AsyncIterator[FacebookFake]:
    server = FacebookFake()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def client(
    http: httpx.AsyncClient, media: MediaFetcher, fake: FacebookFake
) -> facebook.FacebookClient:
    return facebook.create(context(http, media, fake))


@pytest.fixture
async def video(store: FileStore, tmp_path: Path, host: StoreHost) -> StoredMedia:
    return host.presigned(await stored_video(store, tmp_path, width=640, height=360))


def form(body: bytes) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(body.decode()).items()}


def post_of(video: StoredMedia, stage: OrderStage, **fields: object) -> PublishRequest:
    return publish_request(
        "Our new video", page_id=PAGE, stored_media=[video], stage=stage, **fields
    )


async def test_a_video_is_published_by_url_and_polled_until_ready(
    client: facebook.FacebookClient, fake: FacebookFake, video: StoredMedia
) -> None:
    fake.video_polls = 2
    stage = OrderStage(fake)
    outcome = await client.publish(post_of(video, stage))
    assert outcome.result == Result.PUBLISHED, outcome
    [(video_id, made)] = fake.videos.items()
    assert outcome.platform_post_id == video_id
    assert outcome.url == f"https://www.facebook.com/{PAGE}/videos/{video_id}/"
    # Facebook fetched exactly the uploaded bytes from the presigned URL.
    assert (made["video"].size, made["video"].sha256) == (video.size, video.sha256)
    assert made["description"] == "Our new video"
    upload = fake.calls("POST", f"/{PAGE}/videos")[0]
    assert form(upload.body) == {
        "file_url": video.url,
        "description": "Our new video",
        "access_token": "token-1",
    }
    # The stage was told before anything reached Facebook: that one call publishes.
    assert stage.requests_before == [0]
    assert stage.published_marks == 1
    reads = fake.calls("GET", video_id)
    assert [r.query["fields"] for r in reads] == ["status"] * 3
    assert stage.pauses == [30.0, 30.0]


async def test_a_stage_that_refuses_sends_nothing(
    client: facebook.FacebookClient, fake: FacebookFake, video: StoredMedia
) -> None:
    stage = OrderStage(fake, refuse=True)
    outcome = await client.publish(post_of(video, stage))
    assert outcome.result == Result.RETRYABLE
    assert outcome.code == "stage"
    assert fake.requests == []
    assert fake.videos == {}


async def test_a_video_that_fails_processing_is_permanent_with_facebooks_words(
    client: facebook.FacebookClient,
    fake: FacebookFake,
    store: FileStore,
    host: StoreHost,
    video: StoredMedia,
) -> None:
    async def text() -> AsyncIterator[bytes]:
        yield b"<html>not a movie</html>"

    kept = await store.put("media/not-a-video", text())
    named = replace(video, media_id="not-a-video", storage_key=kept.key, size=kept.size)
    outcome = await client.publish(post_of(host.presigned(named), OrderStage(fake)))
    assert outcome.result == Result.PERMANENT
    assert outcome.code == "video_error"
    assert "352: The video file you selected is in a format that we don't support." in (
        outcome.message
    )


async def test_a_video_facebook_cannot_fetch_is_refused_with_389(
    client: facebook.FacebookClient, fake: FacebookFake, host: StoreHost, video: StoredMedia
) -> None:
    host.status = 403
    outcome = await client.publish(post_of(video, OrderStage(fake)))
    assert outcome.result == Result.PERMANENT
    assert outcome.code == "389"
    assert "Unable to fetch video file from URL" in outcome.message
    assert fake.videos == {}


async def test_a_server_error_on_the_video_call_is_retryable_and_nothing_was_made(
    client: facebook.FacebookClient, fake: FacebookFake, video: StoredMedia
) -> None:
    fake.fail_next("create", "server_error")
    outcome = await client.publish(post_of(video, OrderStage(fake)))
    assert outcome.result == Result.RETRYABLE
    assert fake.videos == {}


async def test_a_lost_answer_to_the_video_call_is_unknown(
    client: facebook.FacebookClient, fake: FacebookFake, video: StoredMedia
) -> None:
    """Taking the video and publishing it are one call on Facebook, so a lost answer may have
    published it: UNKNOWN, never retried blindly."""
    fake.fail_next("create", "hang")
    stage = OrderStage(fake)
    outcome = await client.publish(post_of(video, stage))
    assert outcome.result == Result.UNKNOWN
    assert stage.published_marks == 1
    assert len(fake.videos) == 1


async def test_a_video_still_processing_at_the_bound_is_unknown_with_its_id(
    client: facebook.FacebookClient, fake: FacebookFake, video: StoredMedia
) -> None:
    fake.video_polls = 1000
    client.video_max_wait = 70.0
    stage = OrderStage(fake)
    outcome = await client.publish(post_of(video, stage))
    assert outcome.result == Result.UNKNOWN
    assert outcome.code == "video_processing"
    [video_id] = fake.videos
    assert outcome.platform_post_id == video_id
    assert outcome.url.endswith(f"/videos/{video_id}/")
    assert stage.pauses == [30.0, 30.0]


async def test_failed_status_reads_after_publishing_never_make_it_retryable(
    client: facebook.FacebookClient, fake: FacebookFake, video: StoredMedia
) -> None:
    fake.fail_next("lookup", "server_error", times=2)
    outcome = await client.publish(post_of(video, OrderStage(fake)))
    assert outcome.result == Result.PUBLISHED, outcome
    client.video_max_wait = 30.0
    fake.fail_next("lookup", "expire_token", times=5)
    second = await client.publish(post_of(video, OrderStage(fake)))
    assert second.result == Result.UNKNOWN
    assert "190" in second.message


async def test_a_comment_takes_no_video(
    client: facebook.FacebookClient, fake: FacebookFake, video: StoredMedia
) -> None:
    outcome = await client.publish(post_of(video, OrderStage(fake), reply_to=f"{PAGE}_1"))
    assert outcome.result == Result.PERMANENT
    assert outcome.code == "video_in_comment"
    assert fake.requests == []


async def test_text_and_photo_posts_still_take_their_own_paths(
    client: facebook.FacebookClient, fake: FacebookFake
) -> None:
    outcome = await client.publish(publish_request("Just text", page_id=PAGE))
    assert outcome.result == Result.PUBLISHED, outcome
    assert fake.calls("POST", "/videos") == []
    assert len(fake.calls("POST", f"/{PAGE}/feed")) == 1
