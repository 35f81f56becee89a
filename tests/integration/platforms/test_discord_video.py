"""A video post on Discord: the webhook client sends the stored video as the message's `files[0]`
attachment (multipart/form-data with `payload_json`) to the fake, over real HTTP."""

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
from kairos_fakes.discord import ATTACHMENT_LIMIT, DiscordFake, Webhook
from kairos_media import FileStore
from kairos_publisher.media import MediaFetcher, StoredMedia
from kairos_publisher.platforms import discord
from kairos_publisher.platforms.base import PublishOutcome, PublishRequest, Result
from support.platforms import context, publish_request
from support.video import RecordingStage, stored_video


class OrderStage(RecordingStage):
    """A stage that also notes how many requests the fake had received when the module said it
    was about to make the post public."""

    def __init__(self, fake: DiscordFake) -> None:
        super().__init__()
        self.fake = fake
        self.seen: int | None = None

    async def publishing(self) -> PublishOutcome | None:
        self.seen = len(self.fake.requests)
        return await super().publishing()


@pytest.fixture
async def fake() -> AsyncIterator[DiscordFake]:
    server = DiscordFake()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def hook(fake: DiscordFake) -> Webhook:
    return fake.create_webhook(guild_id="111", channel_id="222")


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
    http: httpx.AsyncClient, fetcher: MediaFetcher, fake: DiscordFake
) -> discord.DiscordClient:
    return discord.create(context(http, fetcher, fake))


@pytest.fixture
async def video(store: FileStore, tmp_path: Path) -> StoredMedia:
    return await stored_video(store, tmp_path, width=640, height=360, seconds=1.0)


def video_request(
    fake: DiscordFake, hook: Webhook, video: StoredMedia, stage: RecordingStage, **fields: object
) -> PublishRequest:
    base = publish_request(
        "Watch this",
        access_token=fake.webhook_url(hook, "https://discord.com"),
        stored_media=[video],
        stage=stage,
    )
    return dataclasses.replace(base, **fields)  # type: ignore[arg-type]


async def test_a_video_is_sent_as_the_webhook_messages_attachment(
    client: discord.DiscordClient, fake: DiscordFake, hook: Webhook, video: StoredMedia
) -> None:
    stage = OrderStage(fake)

    outcome = await client.publish(video_request(fake, hook, video, stage))

    assert outcome.result == Result.PUBLISHED, outcome
    [post] = fake.posts
    message_id = post["message"]["id"]
    assert outcome.platform_post_id == message_id
    assert outcome.url == f"https://discord.com/channels/111/222/{message_id}"
    assert stage.calls == ["publishing"]
    assert stage.seen == 0, "the stage was told after the video was sent"
    [call] = fake.calls("POST")
    assert call.query == {"wait": "true"}
    form = parts(call.headers["content-type"], call.body)
    assert form is not None
    assert json.loads(form["payload_json"].text) == {
        "content": "Watch this",
        "allowed_mentions": {"parse": []},
        "attachments": [{"id": 0, "filename": "video-1.mp4"}],
    }
    assert (form["files[0]"].filename, form["files[0]"].content_type) == (
        "video-1.mp4",
        "video/mp4",
    )
    [kept] = post["files"]
    assert hashlib.sha256(kept["content"]).hexdigest() == video.sha256
    [attachment] = post["message"]["attachments"]
    assert (attachment["filename"], attachment["size"]) == ("video-1.mp4", video.size)


async def test_a_video_goes_into_the_targets_thread(
    client: discord.DiscordClient, fake: DiscordFake, hook: Webhook, video: StoredMedia
) -> None:
    outcome = await client.publish(
        video_request(fake, hook, video, RecordingStage(), settings={"thread_id": "333"})
    )

    assert outcome.result == Result.PUBLISHED
    assert fake.posts[0]["message"]["channel_id"] == "333"
    assert outcome.url.endswith(f"/111/333/{outcome.platform_post_id}")


async def test_refused_by_the_stage_nothing_is_sent(
    client: discord.DiscordClient, fake: DiscordFake, hook: Webhook, video: StoredMedia
) -> None:
    stage = RecordingStage(refuse=True)

    outcome = await client.publish(video_request(fake, hook, video, stage))

    assert outcome.result == Result.RETRYABLE
    assert outcome.code == "stage"
    assert fake.calls("POST") == []
    assert fake.posts == []


async def test_a_server_error_is_retryable_and_nothing_is_posted(
    client: discord.DiscordClient, fake: DiscordFake, hook: Webhook, video: StoredMedia
) -> None:
    fake.fail_next("create", "server_error")

    outcome = await client.publish(video_request(fake, hook, video, RecordingStage()))

    assert outcome.result == Result.RETRYABLE
    assert outcome.http_status == 500
    assert fake.posts == []


async def test_an_answer_lost_after_the_execute_is_unknown_since_it_is_the_public_call(
    client: discord.DiscordClient, fake: DiscordFake, hook: Webhook, video: StoredMedia
) -> None:
    fake.fail_next("create", "hang")
    stage = RecordingStage()

    outcome = await client.publish(video_request(fake, hook, video, stage))

    assert outcome.result == Result.UNKNOWN
    assert stage.published_marks == 1
    assert len(fake.posts) == 1


async def test_a_damaged_video_is_permanent_and_nothing_is_posted(
    client: discord.DiscordClient, fake: DiscordFake, hook: Webhook, video: StoredMedia
) -> None:
    damaged = dataclasses.replace(video, size=video.size + 1)

    outcome = await client.publish(video_request(fake, hook, damaged, RecordingStage()))

    assert outcome.result == Result.PERMANENT
    assert outcome.code == "media"
    assert fake.posts == []


async def test_a_file_over_the_attachment_limit_is_413_for_good(
    client: discord.DiscordClient, fake: DiscordFake, hook: Webhook, video: StoredMedia
) -> None:
    fake.attachment_limit = video.size - 1

    outcome = await client.publish(video_request(fake, hook, video, RecordingStage()))

    assert outcome.result == Result.PERMANENT
    assert (outcome.http_status, outcome.code) == (413, "40005")
    assert outcome.message == "Request entity too large"
    assert fake.posts == []


async def test_rate_limited_waits_retry_after(
    client: discord.DiscordClient, fake: DiscordFake, hook: Webhook, video: StoredMedia
) -> None:
    fake.fail_next("create", "rate_limit", seconds=3.5)

    outcome = await client.publish(video_request(fake, hook, video, RecordingStage()))

    assert outcome.result == Result.RETRYABLE
    assert outcome.retry_not_before is not None
    assert 2.5 < (outcome.retry_not_before - datetime.now(UTC)).total_seconds() <= 3.5
    assert fake.posts == []


def test_the_catalogue_takes_a_video_up_to_the_webhook_attachment_limit() -> None:
    rules = CATALOGUE[Platform.DISCORD].video
    assert rules is not None
    assert rules.max_bytes == ATTACHMENT_LIMIT == 10 * 1024 * 1024
    assert not CATALOGUE[Platform.DISCORD].pulls_by_url("video")
