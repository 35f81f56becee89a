"""A video post on Telegram: the Telegram client uploads the stored video to the fake Bot API's
`sendVideo` as multipart/form-data, over real HTTP, and that one call publishes it."""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from kairos_common.platforms import CATALOGUE, Platform
from kairos_fakes._multipart import parts
from kairos_fakes.telegram import UPLOAD_LIMIT, TelegramFake
from kairos_media import FileStore
from kairos_publisher.media import MediaFetcher, StoredMedia
from kairos_publisher.platforms import telegram
from kairos_publisher.platforms.base import PublishOutcome, PublishRequest, Result
from support.platforms import context, publish_request
from support.video import RecordingStage, stored_video

CHANNEL = "-1001234567890"


class OrderStage(RecordingStage):
    """A stage that also notes which requests the fake had received when the module said it
    was about to make the post public."""

    def __init__(self, fake: TelegramFake, *, refuse: bool = False) -> None:
        super().__init__(refuse=refuse)
        self.fake = fake
        self.seen: list[str] | None = None

    async def publishing(self) -> PublishOutcome | None:
        self.seen = [r.path.rsplit("/", 1)[-1] for r in self.fake.requests]
        return await super().publishing()


@pytest.fixture
async def fake() -> AsyncIterator[TelegramFake]:
    server = TelegramFake()
    server.add_chat(CHANNEL, "channel", "kairosnews")
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "media")


@pytest.fixture
async def fetcher(store: FileStore) -> AsyncIterator[MediaFetcher]:
    media = MediaFetcher(
        timeout=2.0, allowed_networks=[ipaddress.ip_network("127.0.0.0/8")], store=store
    )
    yield media
    await media.aclose()


@pytest.fixture
def client(
    http: httpx.AsyncClient, fetcher: MediaFetcher, fake: TelegramFake
) -> telegram.TelegramClient:
    return telegram.create(context(http, fetcher, fake))


@pytest.fixture
async def video(store: FileStore, tmp_path: Path) -> StoredMedia:
    return await stored_video(store, tmp_path, width=360, height=640, seconds=2.0)


def video_request(video: StoredMedia, stage: RecordingStage, **fields: object) -> PublishRequest:
    base = publish_request(
        "A video for the channel",
        chat_id=CHANNEL,
        stored_media=[video],
        stage=stage,
    )
    return dataclasses.replace(base, **fields)  # type: ignore[arg-type]


async def test_a_video_is_uploaded_and_published_by_one_send_video(
    client: telegram.TelegramClient, fake: TelegramFake, video: StoredMedia
) -> None:
    stage = OrderStage(fake)

    outcome = await client.publish(video_request(video, stage))

    assert outcome.result == Result.PUBLISHED, outcome
    assert outcome.platform_post_id == "1"
    assert outcome.url == "https://t.me/kairosnews/1"
    assert stage.calls == ["publishing"]
    assert stage.seen == [], "the stage was told after the video was sent"
    [call] = fake.calls("POST")
    assert call.path.endswith("/sendVideo")
    assert call.headers["content-length"] == str(len(call.body))
    form = parts(call.headers["content-type"], call.body)
    assert form is not None
    assert form["video"].filename == "video-1.mp4"
    assert form["video"].content_type == "video/mp4"
    [stored] = fake.videos
    assert stored["sha256"] == video.sha256
    assert hashlib.sha256(stored["content"]).hexdigest() == video.sha256
    assert len(stored["content"]) == video.size
    assert (stored["width"], stored["height"], stored["duration"]) == (360, 640, 2)
    assert stored["supports_streaming"] is True
    [post] = fake.posts
    assert post["method"] == "sendVideo"
    assert post["caption"] == "A video for the channel"
    assert post["video"]["file_size"] == video.size


async def test_a_video_replies_to_the_previous_part(
    client: telegram.TelegramClient, fake: TelegramFake, video: StoredMedia
) -> None:
    first = await client.publish(publish_request("Part 1", chat_id=CHANNEL))

    outcome = await client.publish(
        video_request(video, RecordingStage(), reply_to=first.platform_post_id)
    )

    assert outcome.result == Result.PUBLISHED
    form = parts(fake.requests[-1].headers["content-type"], fake.requests[-1].body)
    assert form is not None
    assert json.loads(form["reply_parameters"].text) == {"message_id": 1}
    assert fake.posts[-1]["reply_to"] == 1


async def test_refused_by_the_stage_nothing_is_sent(
    client: telegram.TelegramClient, fake: TelegramFake, video: StoredMedia
) -> None:
    stage = RecordingStage(refuse=True)

    outcome = await client.publish(video_request(video, stage))

    assert outcome.result == Result.RETRYABLE
    assert outcome.code == "stage"
    assert stage.calls == ["publishing"]
    assert fake.requests == []
    assert fake.posts == []


async def test_a_server_error_is_retryable_and_nothing_is_posted(
    client: telegram.TelegramClient, fake: TelegramFake, video: StoredMedia
) -> None:
    fake.fail_next("create", "server_error")

    outcome = await client.publish(video_request(video, RecordingStage()))

    assert outcome.result == Result.RETRYABLE
    assert outcome.http_status == 500
    assert fake.posts == []
    assert fake.videos == []


async def test_an_answer_lost_after_send_video_is_unknown_since_it_is_the_public_call(
    client: telegram.TelegramClient, fake: TelegramFake, video: StoredMedia
) -> None:
    """Telegram's upload and publish are one request: once it went out, the video may be in
    the chat, so a lost answer cannot be retried blindly (unlike an upload before the public
    call on other platforms)."""
    fake.fail_next("create", "hang")
    stage = RecordingStage()

    outcome = await client.publish(video_request(video, stage))

    assert outcome.result == Result.UNKNOWN
    assert stage.published_marks == 1
    assert len(fake.posts) == 1  # the fake posted it and never answered


async def test_a_damaged_video_is_permanent_and_nothing_is_posted(
    client: telegram.TelegramClient, fake: TelegramFake, video: StoredMedia
) -> None:
    damaged = dataclasses.replace(video, sha256="0" * 64)

    outcome = await client.publish(video_request(damaged, RecordingStage()))

    assert outcome.result == Result.PERMANENT
    assert outcome.code == "media"
    assert "SHA-256" in outcome.message
    assert fake.posts == []


async def test_a_body_over_the_upload_limit_is_refused_413_for_good(
    client: telegram.TelegramClient, fake: TelegramFake, video: StoredMedia
) -> None:
    fake.upload_limit = video.size // 2

    outcome = await client.publish(video_request(video, RecordingStage()))

    assert outcome.result == Result.PERMANENT
    assert (outcome.http_status, outcome.code) == (413, "413")
    assert outcome.message == "Request Entity Too Large"
    assert fake.posts == []


async def test_rate_limited_waits_retry_after(
    client: telegram.TelegramClient, fake: TelegramFake, video: StoredMedia
) -> None:
    fake.fail_next("create", "rate_limit", seconds=7)

    outcome = await client.publish(video_request(video, RecordingStage()))

    assert outcome.result == Result.RETRYABLE
    assert outcome.retry_not_before is not None
    assert 5 < (outcome.retry_not_before - datetime.now(UTC)).total_seconds() <= 7
    assert fake.posts == []


async def test_a_caption_over_1024_utf16_units_is_refused_before_anything_is_sent(
    client: telegram.TelegramClient, fake: TelegramFake, video: StoredMedia
) -> None:
    stage = RecordingStage()

    outcome = await client.publish(video_request(video, stage, content="😀" * 513))

    assert outcome.result == Result.PERMANENT
    assert outcome.code == "caption_too_long"
    assert stage.calls == []
    assert fake.requests == []


def test_the_catalogue_takes_an_mp4_up_to_the_bot_apis_upload_limit() -> None:
    rules = CATALOGUE[Platform.TELEGRAM].video
    assert rules is not None
    assert rules.max_bytes == UPLOAD_LIMIT
    assert rules.types == frozenset({"video/mp4"})
    assert not CATALOGUE[Platform.TELEGRAM].pulls_by_url("video")
