"""Threads video against the fake over real HTTP: a VIDEO container made from the video's
presigned URL, which the fake really downloads, polled through the attempt's stage, and
published with `threads_publish` only after `stage.publishing()`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest

from kairos_fakes.threads import ThreadsFake
from kairos_media import FileStore
from kairos_publisher.media import MediaFetcher, StoredMedia
from kairos_publisher.platforms import threads
from kairos_publisher.platforms.base import PublishRequest, Result
from support.graph_video import OrderStage, StoreHost
from support.platforms import context, publish_request
from support.video import stored_video

USER = "25000000000000001"


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
async def fake() -> AsyncIterator[ThreadsFake]:
    server = ThreadsFake()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def client(
    http: httpx.AsyncClient, media: MediaFetcher, fake: ThreadsFake
) -> threads.ThreadsClient:
    return threads.create(context(http, media, fake))


@pytest.fixture
async def video(store: FileStore, tmp_path: Path, host: StoreHost) -> StoredMedia:
    return host.presigned(await stored_video(store, tmp_path))


def form(body: bytes) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(body.decode()).items()}


def post_of(video: StoredMedia, stage: OrderStage, **fields: object) -> PublishRequest:
    return publish_request(
        "A video thread", page_id=USER, stored_media=[video], stage=stage, **fields
    )


async def test_a_video_post_is_published_after_the_stage_is_told(
    client: threads.ThreadsClient, fake: ThreadsFake, video: StoredMedia
) -> None:
    fake.video_polls = 2
    stage = OrderStage(fake)
    outcome = await client.publish(post_of(video, stage))
    assert outcome.result == Result.PUBLISHED, outcome
    [post] = fake.posts
    assert outcome.platform_post_id == post["id"]
    assert outcome.url == post["permalink"]
    assert post["media_type"] == "VIDEO"
    assert (post["video"].size, post["video"].sha256) == (video.size, video.sha256)
    create = fake.calls("POST", f"/{USER}/threads")[0]
    assert form(create.body) == {
        "media_type": "VIDEO",
        "video_url": video.url,
        "text": "A video thread",
        "access_token": "token-1",
    }
    [container] = fake.containers
    assert fake.calls("GET", container)[0].query["fields"] == "status,error_message"
    assert stage.pauses == [30.0, 30.0]
    assert stage.published_marks == 1
    [before] = stage.requests_before
    assert fake.requests[before].path.endswith(f"/{USER}/threads_publish")
    assert len(fake.calls("POST", "threads_publish")) == 1


async def test_a_video_reply_names_the_post_it_answers(
    client: threads.ThreadsClient, fake: ThreadsFake, video: StoredMedia
) -> None:
    first = await client.publish(publish_request("First", page_id=USER))
    assert first.result == Result.PUBLISHED, first
    outcome = await client.publish(
        post_of(video, OrderStage(fake), reply_to=first.platform_post_id)
    )
    assert outcome.result == Result.PUBLISHED, outcome
    assert fake.posts[1]["reply_to"] == first.platform_post_id


async def test_a_stage_that_refuses_keeps_the_video_unpublished(
    client: threads.ThreadsClient, fake: ThreadsFake, video: StoredMedia
) -> None:
    stage = OrderStage(fake, refuse=True)
    outcome = await client.publish(post_of(video, stage))
    assert outcome.result == Result.RETRYABLE
    assert stage.published_marks == 1
    assert fake.calls("POST", "threads_publish") == []
    assert fake.posts == []


async def test_bytes_that_are_no_video_fail_processing_for_good(
    client: threads.ThreadsClient,
    fake: ThreadsFake,
    store: FileStore,
    host: StoreHost,
    video: StoredMedia,
) -> None:
    async def text() -> AsyncIterator[bytes]:
        yield b"plain text named .mp4"

    kept = await store.put("media/not-a-video", text())
    named = replace(video, media_id="not-a-video", storage_key=kept.key, size=kept.size)
    stage = OrderStage(fake)
    outcome = await client.publish(post_of(host.presigned(named), stage))
    assert outcome.result == Result.PERMANENT
    assert "FAILED_PROCESSING_VIDEO" in outcome.message
    assert stage.published_marks == 0
    assert fake.calls("POST", "threads_publish") == []


async def test_a_video_threads_cannot_download_fails_for_good(
    client: threads.ThreadsClient, fake: ThreadsFake, host: StoreHost, video: StoredMedia
) -> None:
    host.status = 404
    outcome = await client.publish(post_of(video, OrderStage(fake)))
    assert outcome.result == Result.PERMANENT
    assert "FAILED_DOWNLOADING_VIDEO" in outcome.message
    assert fake.posts == []


@pytest.mark.parametrize("fault", ["server_error", "hang"])
async def test_a_failed_or_unanswered_container_call_is_retryable_and_nothing_is_public(
    client: threads.ThreadsClient, fake: ThreadsFake, video: StoredMedia, fault: str
) -> None:
    fake.fail_next("container", fault)
    stage = OrderStage(fake)
    outcome = await client.publish(post_of(video, stage))
    assert outcome.result == Result.RETRYABLE, outcome
    assert stage.published_marks == 0
    assert fake.posts == []


async def test_a_video_still_processing_at_the_bound_is_retryable(
    client: threads.ThreadsClient, fake: ThreadsFake, video: StoredMedia
) -> None:
    fake.video_polls = 1000
    client.video_max_wait = 100.0
    stage = OrderStage(fake)
    outcome = await client.publish(post_of(video, stage))
    assert outcome.result == Result.RETRYABLE
    assert outcome.code == "container_not_ready"
    assert stage.pauses == [30.0, 30.0, 30.0]
    assert fake.calls("POST", "threads_publish") == []
