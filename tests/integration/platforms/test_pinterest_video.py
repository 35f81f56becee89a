"""Pinterest video pins against the Pinterest fake, over real HTTP: the video registered,
uploaded to the fake's S3-style POST policy URL, processed, then pinned, with the stage told
right before the pin; S3's and Pinterest's failures on the way."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from kairos_fakes.pinterest import PinterestFake
from kairos_fakes.x import form_parts
from kairos_media import FileStore
from kairos_publisher.media import MediaFetcher, StoredMedia
from kairos_publisher.platforms import pinterest
from kairos_publisher.platforms.base import PublishOutcome, PublishRequest, Result
from support.platforms import context, publish_request
from support.video import RecordingStage, stored_video

BOARD = "549755885175"


class OrderStage(RecordingStage):
    """Records, when the module says it is about to publish, what the fake had received."""

    def __init__(self, fake: PinterestFake, *, refuse: bool = False) -> None:
        super().__init__(refuse=refuse)
        self.fake = fake
        self.seen_before: list[str] = []

    async def publishing(self) -> PublishOutcome | None:
        self.seen_before = [f"{r.method} {r.path}" for r in self.fake.requests]
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
async def fake() -> AsyncIterator[PinterestFake]:
    server = PinterestFake()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def video(store: FileStore, tmp_path: Path) -> StoredMedia:
    # Pinterest pulls images by URL, so an uploaded video arrives presigned too; its bytes are
    # uploaded all the same (Pinterest takes no video by URL).
    made = await stored_video(store, tmp_path, seconds=1.0)
    return replace(made, url="http://127.0.0.1:9/presigned-but-unused")


def client(
    http: httpx.AsyncClient, media: MediaFetcher, fake: PinterestFake
) -> pinterest.PinterestClient:
    made = pinterest.create(context(http, media, fake))
    made.media_poll_interval = 0.05
    made.media_max_wait = 3.0
    return made


def request(
    video: StoredMedia, stage: RecordingStage, settings: dict[str, str] | None = None
) -> PublishRequest:
    return publish_request(
        "How to shape a boule",
        page_id=BOARD,
        stored_media=[video],
        settings=settings or {},
        stage=stage,
    )


async def test_a_video_pin_goes_through_registration_upload_and_processing_then_is_pinned(
    http: httpx.AsyncClient, media: MediaFetcher, fake: PinterestFake, video: StoredMedia
) -> None:
    fake.processing_seconds = 0.2
    stage = OrderStage(fake)

    outcome = await client(http, media, fake).publish(request(video, stage, {"title": "Boule"}))

    assert outcome.result == Result.PUBLISHED, outcome
    [pin] = fake.posts
    assert outcome.platform_post_id == pin["id"]
    assert outcome.url == f"https://www.pinterest.com/pin/{pin['id']}"
    # Pinterest holds exactly the stored bytes.
    assert (pin["video_sha256"], pin["video_size"]) == (video.sha256, video.size)
    assert pin["media"]["media_type"] == "video"
    [register] = fake.calls("POST", "/v5/media")
    assert json.loads(register.body) == {"media_type": "video"}
    [upload] = fake.calls("POST", "/pinterest-media-upload/")
    assert "authorization" not in upload.headers  # S3 takes the policy, not Pinterest's token
    # Streamed from the store with its length known: S3's POST takes no chunked body.
    assert upload.headers["content-length"] == str(len(upload.body))
    assert "transfer-encoding" not in upload.headers
    parts = form_parts(upload.headers["content-type"], upload.body)
    media_upload = next(iter(fake.media.values()))
    assert list(parts) == [*media_upload.parameters, "file"]  # the fields, then the file
    [create] = fake.calls("POST", "/v5/pins")
    assert json.loads(create.body) == {
        "board_id": BOARD,
        "description": "How to shape a boule",
        "media_source": {
            "source_type": "video_id",
            "cover_image_key_frame_time": 0,
            "media_id": media_upload.media_id,
        },
        "title": "Boule",
    }
    # Told once, after the upload and the processing polls, right before the pin.
    assert stage.published_marks == 1
    assert stage.seen_before[:2] == ["POST /v5/media", "POST /pinterest-media-upload/"]
    assert stage.seen_before[-1] == f"GET /v5/media/{media_upload.media_id}"
    assert "POST /v5/pins" not in stage.seen_before
    # The processing polls waited through the stage.
    assert stage.calls[-1] == "publishing"
    assert set(stage.calls[:-1]) == {("pause", 0.05)}


@pytest.mark.parametrize(
    ("settings", "cover"),
    [
        (
            {"cover_image_url": "https://example.com/cover.jpg"},
            {"cover_image_url": "https://example.com/cover.jpg"},
        ),
        ({"cover_image_key_frame_time": "3"}, {"cover_image_key_frame_time": 3}),
    ],
)
async def test_the_cover_is_the_targets(
    http: httpx.AsyncClient,
    media: MediaFetcher,
    fake: PinterestFake,
    video: StoredMedia,
    settings: dict[str, str],
    cover: dict[str, object],
) -> None:
    outcome = await client(http, media, fake).publish(request(video, RecordingStage(), settings))

    assert outcome.result == Result.PUBLISHED, outcome
    [create] = fake.calls("POST", "/v5/pins")
    source = json.loads(create.body)["media_source"]
    assert {k: v for k, v in source.items() if k.startswith("cover")} == cover


async def test_a_stage_that_refuses_leaves_the_pin_unmade(
    http: httpx.AsyncClient, media: MediaFetcher, fake: PinterestFake, video: StoredMedia
) -> None:
    stage = OrderStage(fake, refuse=True)

    outcome = await client(http, media, fake).publish(request(video, stage))

    assert (outcome.result, outcome.code) == (Result.RETRYABLE, "stage")
    assert fake.calls("POST", "/v5/pins") == []
    assert fake.posts == []


async def test_pinterests_processing_failure_is_permanent(
    http: httpx.AsyncClient, media: MediaFetcher, fake: PinterestFake, video: StoredMedia
) -> None:
    fake.fail_next("process", "reject")
    stage = RecordingStage()

    outcome = await client(http, media, fake).publish(request(video, stage))

    assert (outcome.result, outcome.code) == (Result.PERMANENT, "media_failed")
    assert stage.published_marks == 0
    assert fake.calls("POST", "/v5/pins") == []


async def test_a_file_that_is_not_a_video_fails_processing(
    http: httpx.AsyncClient, media: MediaFetcher, fake: PinterestFake, store: FileStore
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"<html>not a video</html>"

    kept = await store.put("media/text", chunks())
    text = StoredMedia("text", "video/mp4", kept.size, kept.sha256, kept.key, kind="video")

    outcome = await client(http, media, fake).publish(request(text, RecordingStage()))

    assert (outcome.result, outcome.code) == (Result.PERMANENT, "media_failed")


async def test_an_s3_5xx_is_retryable_and_nothing_is_pinned(
    http: httpx.AsyncClient, media: MediaFetcher, fake: PinterestFake, video: StoredMedia
) -> None:
    fake.fail_next("upload", "server_error")
    stage = RecordingStage()

    outcome = await client(http, media, fake).publish(request(video, stage))

    assert (outcome.result, outcome.http_status, outcome.code) == (
        Result.RETRYABLE,
        500,
        "InternalError",
    )
    assert "internal error" in outcome.message
    assert stage.published_marks == 0
    assert fake.calls("POST", "/v5/pins") == []


async def test_an_upload_whose_answer_never_came_is_retryable(
    http: httpx.AsyncClient, media: MediaFetcher, fake: PinterestFake, video: StoredMedia
) -> None:
    fake.fail_next("upload", "hang")
    stage = RecordingStage()

    outcome = await client(http, media, fake).publish(request(video, stage))

    assert (outcome.result, outcome.code) == (Result.RETRYABLE, "upload_timeout")
    assert stage.published_marks == 0
    assert fake.posts == []


async def test_an_expired_upload_policy_is_retryable(
    http: httpx.AsyncClient, media: MediaFetcher, fake: PinterestFake, video: StoredMedia
) -> None:
    fake.upload_lifetime = -1.0

    outcome = await client(http, media, fake).publish(request(video, RecordingStage()))

    assert (outcome.result, outcome.http_status, outcome.code) == (
        Result.RETRYABLE,
        403,
        "AccessDenied",
    )
    assert "Policy expired" in outcome.message


async def test_a_video_still_processing_at_the_bound_is_retryable_not_unknown(
    http: httpx.AsyncClient, media: MediaFetcher, fake: PinterestFake, video: StoredMedia
) -> None:
    fake.processing_seconds = 30.0
    made = client(http, media, fake)
    made.media_max_wait = 0.3
    stage = RecordingStage()

    outcome = await made.publish(request(video, stage))

    assert (outcome.result, outcome.code) == (Result.RETRYABLE, "media_processing")
    assert "still processing" in outcome.message
    assert stage.published_marks == 0


async def test_an_unanswered_registration_is_retryable(
    http: httpx.AsyncClient, media: MediaFetcher, fake: PinterestFake, video: StoredMedia
) -> None:
    fake.fail_next("register", "hang")

    outcome = await client(http, media, fake).publish(request(video, RecordingStage()))

    assert outcome.result == Result.RETRYABLE
    assert fake.calls("POST", "/pinterest-media-upload/") == []
    assert fake.posts == []


async def test_an_expired_token_at_registration_is_auth(
    http: httpx.AsyncClient, media: MediaFetcher, fake: PinterestFake, video: StoredMedia
) -> None:
    fake.fail_next("register", "expire_token")

    outcome = await client(http, media, fake).publish(request(video, RecordingStage()))

    assert (outcome.result, outcome.http_status) == (Result.AUTH, 401)


async def test_a_lost_pin_answer_after_the_stage_is_unknown(
    http: httpx.AsyncClient, media: MediaFetcher, fake: PinterestFake, video: StoredMedia
) -> None:
    fake.fail_next("create", "hang")

    outcome = await client(http, media, fake).publish(request(video, RecordingStage()))

    assert outcome.result == Result.UNKNOWN
    assert len(fake.posts) == 1


async def test_a_damaged_stored_video_is_refused_before_upload_completes(
    http: httpx.AsyncClient, media: MediaFetcher, fake: PinterestFake, video: StoredMedia
) -> None:
    damaged = replace(video, sha256="0" * 64)

    outcome = await client(http, media, fake).publish(request(damaged, RecordingStage()))

    assert (outcome.result, outcome.code) == (Result.PERMANENT, "media")
    assert fake.posts == []
    assert all(m.status == "registered" for m in fake.media.values())


async def test_the_fake_s3_refuses_a_changed_policy_field(fake: PinterestFake) -> None:
    async with httpx.AsyncClient() as http:
        registered = await http.post(
            f"{fake.url}/v5/media",
            json={"media_type": "video"},
            headers={"authorization": "Bearer token-1"},
        )
        assert registered.status_code == 201
        fields = dict(registered.json()["upload_parameters"])
        fields["x-amz-signature"] = "0" * 64
        answer = await http.post(
            registered.json()["upload_url"], data=fields, files={"file": ("v.mp4", b"video")}
        )
    assert answer.status_code == 403
    assert "<Code>AccessDenied</Code>" in answer.text
    assert "Policy Condition failed" in answer.text
