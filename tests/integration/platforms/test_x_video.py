"""A video post on X through the chunked upload (initialize, append, finalize, STATUS) against
the fake X API, over real HTTP, the video read from a real media store."""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from kairos_fakes.x import SEGMENT_LIMIT, XFake, form_parts
from kairos_media import FileStore
from kairos_publisher.media import MediaFetcher, StoredMedia
from kairos_publisher.platforms import x
from kairos_publisher.platforms.base import PublishOutcome, PublishRequest, Result
from support.platforms import context, publish_request
from support.video import RecordingStage, stored_video


class WatchingStage(RecordingStage):
    """Records, when the module says it is about to publish, how many posts the fake holds."""

    def __init__(self, fake: XFake, *, refuse: bool = False) -> None:
        super().__init__(refuse=refuse)
        self.fake = fake
        self.posts_when_publishing: list[int] = []

    async def publishing(self) -> PublishOutcome | None:
        self.posts_when_publishing.append(len(self.fake.calls("POST", "/2/tweets")))
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
async def fake() -> AsyncIterator[XFake]:
    server = XFake()
    server.video_processing_secs = 0.2
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def video(store: FileStore, tmp_path: Path) -> StoredMedia:
    return await stored_video(store, tmp_path)


def request_for(fake: XFake, video: StoredMedia, stage: RecordingStage) -> PublishRequest:
    access, _ = fake.grant()
    return publish_request("A video", access_token=access, stored_media=[video], stage=stage)


async def publish(
    http: httpx.AsyncClient, media: MediaFetcher, fake: XFake, request: PublishRequest
) -> PublishOutcome:
    return await x.create(context(http, media, fake)).publish(request)


async def test_a_video_is_uploaded_in_segments_processed_then_posted_once(
    http: httpx.AsyncClient,
    media: MediaFetcher,
    fake: XFake,
    video: StoredMedia,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(x, "VIDEO_SEGMENT", 4096)
    stage = WatchingStage(fake)

    outcome = await publish(http, media, fake, request_for(fake, video, stage))

    assert outcome.result is Result.PUBLISHED, outcome
    [post] = fake.posts
    assert (outcome.platform_post_id, outcome.http_status) == (post["id"], 201)
    assert outcome.url == f"https://x.com/kairos/status/{post['id']}"
    [init] = fake.calls("POST", "/2/media/upload/initialize")
    assert json.loads(init.body) == {
        "media_type": "video/mp4",
        "total_bytes": video.size,
        "media_category": "tweet_video",
    }
    [media_id] = fake.uploads
    appends = fake.calls("POST", f"/2/media/upload/{media_id}/append")
    parts = [form_parts(a.headers["content-type"], a.body) for a in appends]
    assert [p["segment_index"][1] for p in parts] == [
        str(i).encode() for i in range(math.ceil(video.size / 4096))
    ]
    assert all(len(p["media"][1]) <= 4096 for p in parts)
    assert len(fake.calls("POST", f"/2/media/upload/{media_id}/finalize")) == 1
    # X holds exactly the stored bytes.
    upload = fake.uploads[media_id]
    assert (upload.size, upload.sha256) == (video.size, video.sha256)
    # Processing was polled, paused as X asked, until it succeeded; then the post went once.
    polls = fake.calls("GET", "/2/media/upload")
    assert polls
    assert all(p.query == {"command": "STATUS", "media_id": media_id} for p in polls)
    [tweet] = fake.calls("POST", "/2/tweets")
    assert tweet.at >= upload.ready_at
    assert json.loads(tweet.body) == {"text": "A video", "media": {"media_ids": [media_id]}}
    assert stage.calls[-1] == "publishing"
    assert stage.published_marks == 1
    assert [c for c in stage.calls if c != "publishing"] == [("pause", 1.0)] * len(polls)
    assert stage.posts_when_publishing == [0]


async def test_segments_fit_xs_rules() -> None:
    assert x.VIDEO_SEGMENT <= 5 * 1000 * 1000
    assert math.ceil(x.VIDEO_LIMIT / x.VIDEO_SEGMENT) <= 1000  # segment_index runs 0 to 999


async def test_the_fake_refuses_a_segment_over_five_megabytes(fake: XFake) -> None:
    access, _ = fake.grant()
    auth = {"authorization": f"Bearer {access}"}
    async with httpx.AsyncClient(timeout=5.0) as http:
        init, append, finalize = await chunk_too_big(http, fake, auth)

    assert init.status_code == 200

    assert append.status_code == 400
    assert append.headers["content-type"].startswith("application/problem+json")
    assert finalize.status_code == 400  # nothing was appended: the segments do not add up


async def chunk_too_big(
    http: httpx.AsyncClient, fake: XFake, auth: dict[str, str]
) -> tuple[httpx.Response, httpx.Response, httpx.Response]:
    init = await http.post(
        f"{fake.url}/2/media/upload/initialize",
        json={"media_type": "video/mp4", "total_bytes": SEGMENT_LIMIT + 1},
        headers=auth,
    )
    media_id = init.json()["data"]["id"]
    append = await http.post(
        f"{fake.url}/2/media/upload/{media_id}/append",
        files={"media": ("blob", b"\0" * (SEGMENT_LIMIT + 1), "application/octet-stream")},
        data={"segment_index": "0"},
        headers=auth,
    )
    finalize = await http.post(f"{fake.url}/2/media/upload/{media_id}/finalize", headers=auth)
    return init, append, finalize


async def test_a_video_over_xs_limit_is_refused_at_initialize(
    http: httpx.AsyncClient, fake: XFake
) -> None:
    access, _ = fake.grant()
    init = await http.post(
        f"{fake.url}/2/media/upload/initialize",
        json={
            "media_type": "video/mp4",
            "total_bytes": x.VIDEO_LIMIT + 1,
            "media_category": "tweet_video",
        },
        headers={"authorization": f"Bearer {access}"},
    )

    assert init.status_code == 400
    assert init.json()["type"] == "https://api.x.com/2/problems/invalid-request"


async def test_refused_by_the_stage_nothing_is_posted(
    http: httpx.AsyncClient, media: MediaFetcher, fake: XFake, video: StoredMedia
) -> None:
    stage = RecordingStage(refuse=True)

    outcome = await publish(http, media, fake, request_for(fake, video, stage))

    assert (outcome.result, outcome.code) == (Result.RETRYABLE, "stage"), outcome
    assert stage.published_marks == 1
    assert fake.calls("POST", "/2/tweets") == []
    assert fake.posts == []


@pytest.mark.parametrize(
    ("setup", "words"),
    [
        ("reason", "Duration 2.minutes+29.seconds exceeds max duration of 2.minutes+20.seconds"),
        ("not_a_video", "Unsupported video format"),
    ],
)
async def test_processing_failure_is_permanent_with_xs_words(
    http: httpx.AsyncClient,
    media: MediaFetcher,
    store: FileStore,
    fake: XFake,
    video: StoredMedia,
    setup: str,
    words: str,
) -> None:
    if setup == "reason":
        fake.fail_processing = words
    else:

        async def text() -> AsyncIterator[bytes]:
            yield b"this is a text file named .mp4\n" * 100

        kept = await store.put("media/text", text())
        video = replace(video, size=kept.size, sha256=kept.sha256, storage_key=kept.key)
    stage = RecordingStage()

    outcome = await publish(http, media, fake, request_for(fake, video, stage))

    assert (outcome.result, outcome.code) == (Result.PERMANENT, "media_processing"), outcome
    assert words in outcome.message
    assert stage.published_marks == 0
    assert fake.posts == []


@pytest.mark.parametrize(
    ("operation", "kind"),
    [
        ("initialize", "server_error"),
        ("append", "server_error"),
        ("finalize", "server_error"),
        ("status", "server_error"),
        ("append", "hang"),
        ("finalize", "hang"),
    ],
)
async def test_an_upload_failure_or_lost_answer_is_retryable_and_publishes_nothing(
    http: httpx.AsyncClient,
    media: MediaFetcher,
    fake: XFake,
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
    assert len(fake.posts) == 1


async def test_still_processing_at_the_bound_is_retryable_and_publishes_nothing(
    http: httpx.AsyncClient,
    media: MediaFetcher,
    fake: XFake,
    video: StoredMedia,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(x, "MAX_VIDEO_PROCESSING_WAIT", 3.0)
    fake.video_processing_secs = 3600.0
    stage = RecordingStage()

    outcome = await publish(http, media, fake, request_for(fake, video, stage))

    assert (outcome.result, outcome.code) == (Result.RETRYABLE, "media_processing"), outcome
    assert stage.calls == [("pause", 1.0)] * 3
    assert fake.posts == []


async def test_a_damaged_stored_video_is_never_finalized(
    http: httpx.AsyncClient,
    media: MediaFetcher,
    fake: XFake,
    video: StoredMedia,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(x, "VIDEO_SEGMENT", 4096)
    damaged = replace(video, sha256="0" * 64)

    outcome = await publish(http, media, fake, request_for(fake, damaged, RecordingStage()))

    assert (outcome.result, outcome.code) == (Result.PERMANENT, "media"), outcome
    assert fake.calls("POST", "/finalize") == []
    assert fake.posts == []


async def test_a_video_with_other_media_is_refused_before_anything_is_sent(
    http: httpx.AsyncClient, media: MediaFetcher, fake: XFake, video: StoredMedia
) -> None:
    request = replace(
        request_for(fake, video, RecordingStage()), media_urls=["https://example.com/a.png"]
    )

    outcome = await publish(http, media, fake, request)

    assert (outcome.result, outcome.code) == (Result.PERMANENT, "too_many_media"), outcome
    assert fake.requests == []


async def test_a_video_reply_names_the_post_before(
    http: httpx.AsyncClient, media: MediaFetcher, fake: XFake, video: StoredMedia
) -> None:
    request = request_for(fake, video, RecordingStage())
    first = await publish(http, media, fake, replace(request, stored_media=[]))
    reply = replace(request, content="", reply_to=first.platform_post_id)

    outcome = await publish(http, media, fake, reply)

    assert outcome.result is Result.PUBLISHED, outcome
    [media_id] = fake.uploads
    assert json.loads(fake.calls("POST", "/2/tweets")[-1].body) == {
        "media": {"media_ids": [media_id]},
        "reply": {"in_reply_to_tweet_id": first.platform_post_id},
    }
