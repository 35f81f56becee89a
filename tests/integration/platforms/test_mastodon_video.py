"""A video status on Mastodon: the video streamed to `POST /api/v2/media` (202 while the
instance processes it), `GET /api/v1/media/:id` polled until 200, then the status created with
its id, against the fake instance over real HTTP, the video read from a real media store."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from kairos_fakes.mastodon import PROCESSING_ERROR, MastodonFake, human_size, multipart
from kairos_media import FileStore
from kairos_publisher.media import MediaFetcher, StoredMedia
from kairos_publisher.platforms import mastodon
from kairos_publisher.platforms.base import PublishOutcome, PublishRequest, Result
from support.platforms import context, publish_request
from support.video import RecordingStage, stored_video


class WatchingStage(RecordingStage):
    """Records, when the module says it is about to publish, how many status creates the fake
    has received."""

    def __init__(self, fake: MastodonFake, *, refuse: bool = False) -> None:
        super().__init__(refuse=refuse)
        self.fake = fake
        self.creates_when_publishing: list[int] = []

    async def publishing(self) -> PublishOutcome | None:
        self.creates_when_publishing.append(len(self.fake.calls("POST", "/api/v1/statuses")))
        return await super().publishing()


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "media")


@pytest.fixture
async def media(store: FileStore) -> AsyncIterator[MediaFetcher]:
    fetcher = MediaFetcher(
        timeout=2.0, allowed_networks=[ipaddress.ip_network("127.0.0.0/8")], store=store
    )
    yield fetcher
    await fetcher.aclose()


@pytest.fixture
async def fake() -> AsyncIterator[MastodonFake]:
    server = MastodonFake()
    server.processing_polls = 3
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def video(store: FileStore, tmp_path: Path) -> StoredMedia:
    return await stored_video(store, tmp_path)


def request_for(fake: MastodonFake, video: StoredMedia, stage: RecordingStage) -> PublishRequest:
    return publish_request("A video", instance_url=fake.url, stored_media=[video], stage=stage)


async def publish(
    http: httpx.AsyncClient, media: MediaFetcher, fake: MastodonFake, request: PublishRequest
) -> PublishOutcome:
    return await mastodon.create(context(http, media, fake)).publish(request)


async def test_a_video_is_uploaded_processed_then_posted_once(
    http: httpx.AsyncClient, media: MediaFetcher, fake: MastodonFake, video: StoredMedia
) -> None:
    stage = WatchingStage(fake)

    outcome = await publish(http, media, fake, request_for(fake, video, stage))

    assert outcome.result is Result.PUBLISHED, outcome
    [status] = fake.statuses
    assert (outcome.platform_post_id, outcome.url) == (status["id"], status["url"])
    [upload] = fake.calls("POST", "/api/v2/media")
    content_type, sent = multipart(upload.headers["content-type"], upload.body)["file"]
    assert (content_type, len(sent)) == ("video/mp4", video.size)
    [attachment] = fake.media.values()
    assert attachment.sha256 == video.sha256  # the instance holds exactly the stored bytes
    assert status["media_attachments"][0]["type"] == "video"
    # Three 206 answers, then 200; each poll after a pause the stage saw.
    polls = fake.calls("GET", f"/api/v1/media/{attachment.id}")
    assert len(polls) == 4
    assert [c for c in stage.calls if c != "publishing"] == [
        ("pause", d) for d in (1.0, 2.0, 3.0, 5.0)
    ]
    [create] = fake.calls("POST", "/api/v1/statuses")
    assert create.at > polls[-1].at
    assert json.loads(create.body) == {"status": "A video", "media_ids": [attachment.id]}
    assert create.headers["idempotency-key"] == "kairos-target-1"
    assert stage.calls[-1] == "publishing"
    assert stage.published_marks == 1
    assert stage.creates_when_publishing == [0]


async def test_refused_by_the_stage_no_status_is_created(
    http: httpx.AsyncClient, media: MediaFetcher, fake: MastodonFake, video: StoredMedia
) -> None:
    stage = RecordingStage(refuse=True)

    outcome = await publish(http, media, fake, request_for(fake, video, stage))

    assert (outcome.result, outcome.code) == (Result.RETRYABLE, "stage"), outcome
    assert stage.published_marks == 1
    assert fake.calls("POST", "/api/v1/statuses") == []
    assert fake.statuses == []


async def test_processing_failure_is_permanent_with_mastodons_words(
    http: httpx.AsyncClient, media: MediaFetcher, fake: MastodonFake, video: StoredMedia
) -> None:
    fake.fail_processing = True
    stage = RecordingStage()

    outcome = await publish(http, media, fake, request_for(fake, video, stage))

    assert (outcome.result, outcome.code) == (Result.PERMANENT, "media_processing"), outcome
    assert outcome.http_status == 422
    assert PROCESSING_ERROR in outcome.message
    assert stage.published_marks == 0
    assert fake.statuses == []


async def test_a_file_that_is_not_the_video_it_claims_is_refused_for_good(
    http: httpx.AsyncClient,
    media: MediaFetcher,
    store: FileStore,
    fake: MastodonFake,
    video: StoredMedia,
) -> None:
    async def text() -> AsyncIterator[bytes]:
        yield b"this is a text file named .mp4\n" * 100

    kept = await store.put("media/text", text())
    named_mp4 = replace(video, size=kept.size, sha256=kept.sha256, storage_key=kept.key)

    outcome = await publish(http, media, fake, request_for(fake, named_mp4, RecordingStage()))

    assert (outcome.result, outcome.http_status) == (Result.PERMANENT, 422), outcome
    assert "File content type is invalid" in outcome.message
    assert fake.statuses == []


@pytest.mark.parametrize(
    ("operation", "kind"),
    [
        ("upload", "server_error"),
        ("upload", "hang"),
        ("poll", "server_error"),
        ("poll", "hang"),
    ],
)
async def test_an_upload_failure_or_lost_answer_is_retryable_and_publishes_nothing(
    http: httpx.AsyncClient,
    media: MediaFetcher,
    fake: MastodonFake,
    video: StoredMedia,
    operation: str,
    kind: str,
) -> None:
    fake.fail_next(operation, kind)
    stage = RecordingStage()
    request = request_for(fake, video, stage)

    failed = await publish(http, media, fake, request)
    again = await publish(http, media, fake, request)

    assert failed.result is Result.RETRYABLE, failed
    assert stage.published_marks == 1  # only the second attempt reached the public call
    assert again.result is Result.PUBLISHED, again
    assert len(fake.statuses) == 1


async def test_still_processing_at_the_bound_is_retryable_and_publishes_nothing(
    http: httpx.AsyncClient,
    media: MediaFetcher,
    fake: MastodonFake,
    video: StoredMedia,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(mastodon, "MAX_VIDEO_PROCESSING_WAIT", 20.0)
    fake.processing_polls = 1000
    stage = RecordingStage()

    outcome = await publish(http, media, fake, request_for(fake, video, stage))

    assert (outcome.result, outcome.code) == (Result.RETRYABLE, "media_not_ready"), outcome
    assert stage.calls == [("pause", d) for d in (1.0, 2.0, 3.0, 5.0, 5.0)]
    assert fake.statuses == []


async def test_a_damaged_stored_video_publishes_nothing(
    http: httpx.AsyncClient, media: MediaFetcher, fake: MastodonFake, video: StoredMedia
) -> None:
    damaged = replace(video, sha256="0" * 64)

    outcome = await publish(http, media, fake, request_for(fake, damaged, RecordingStage()))

    assert (outcome.result, outcome.code) == (Result.PERMANENT, "media"), outcome
    assert fake.media == {}
    assert fake.statuses == []


async def test_a_video_over_the_instances_limit_is_refused_for_good(
    http: httpx.AsyncClient, media: MediaFetcher, fake: MastodonFake, video: StoredMedia
) -> None:
    # An instance may set MAX_VIDEO_SIZE below the 99 MB default the api checks.
    fake.video_limit = video.size

    outcome = await publish(http, media, fake, request_for(fake, video, RecordingStage()))

    assert (outcome.result, outcome.http_status) == (Result.PERMANENT, 422), outcome
    assert "File file size must be less than" in outcome.message
    assert fake.statuses == []


def test_the_size_message_is_written_as_rails_writes_sizes() -> None:
    assert human_size(99 * 1024 * 1024) == "99 MB"
    assert human_size(16 * 1024 * 1024) == "16 MB"
    assert human_size(20_000) == "19.5 KB"


async def test_a_video_with_other_media_is_refused_before_anything_is_sent(
    http: httpx.AsyncClient, media: MediaFetcher, fake: MastodonFake, video: StoredMedia
) -> None:
    request = replace(
        request_for(fake, video, RecordingStage()), media_urls=["https://example.com/a.png"]
    )

    outcome = await publish(http, media, fake, request)

    assert (outcome.result, outcome.code) == (Result.PERMANENT, "too_many_media"), outcome
    assert fake.requests == []


async def test_a_video_reply_keeps_the_targets_status_settings(
    http: httpx.AsyncClient, media: MediaFetcher, fake: MastodonFake, video: StoredMedia
) -> None:
    first = await publish(http, media, fake, publish_request(instance_url=fake.url))
    settings = {"visibility": "unlisted", "sensitive": "true", "spoiler_text": "flashing"}
    request = replace(
        request_for(fake, video, RecordingStage()),
        reply_to=first.platform_post_id,
        settings=settings,
        idempotency_key="kairos-target-1-part-2",
    )

    outcome = await publish(http, media, fake, request)

    assert outcome.result is Result.PUBLISHED, outcome
    status = fake.statuses[-1]
    assert status["in_reply_to_id"] == first.platform_post_id
    assert (status["visibility"], status["sensitive"], status["spoiler_text"]) == (
        "unlisted",
        True,
        "flashing",
    )
    assert [m["type"] for m in status["media_attachments"]] == ["video"]
