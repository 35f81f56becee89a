"""The YouTube client against the YouTube fake, over real HTTP: a video post through the resumable
upload (session, chunks, the session's status after a lost answer), processing, YouTube's errors
and Google's token refresh."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from kairos_fakes.youtube import YouTubeFake
from kairos_media import FileStore
from kairos_publisher.media import MediaFetcher, StoredMedia
from kairos_publisher.platforms import youtube
from kairos_publisher.platforms.base import PublishOutcome, PublishRequest, RefreshedTokens, Result
from support.platforms import context, publish_request
from support.video import RecordingStage, stored_video

APP = {"KAIROS_YOUTUBE_CLIENT_ID": "app-id", "KAIROS_YOUTUBE_CLIENT_SECRET": "app-secret"}
UNIT = youtube.CHUNK_UNIT


@pytest.fixture
async def fake() -> AsyncIterator[YouTubeFake]:
    server = YouTubeFake()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "media")


@pytest.fixture
async def fetcher(store: FileStore) -> AsyncIterator[MediaFetcher]:
    made = MediaFetcher(store=store)
    yield made
    await made.aclose()


class WatchingStage(RecordingStage):
    """A stage that also notes what YouTube had when the module said it was about to publish:
    how many chunk PUTs had arrived and how many videos existed."""

    def __init__(self, fake: YouTubeFake, *, refuse: bool = False) -> None:
        super().__init__(refuse=refuse)
        self.fake = fake
        self.seen: list[tuple[int, int]] = []

    async def publishing(self) -> PublishOutcome | None:
        self.seen.append((len(chunk_puts(self.fake)), len(self.fake.videos)))
        return await super().publishing()


def chunk_puts(fake: YouTubeFake) -> list[dict[str, str]]:
    """The headers of the PUTs that carried bytes (not status queries)."""
    return [r.headers for r in fake.calls("PUT", "/upload/youtube/v3/videos") if r.body]


def client(
    http: httpx.AsyncClient, fetcher: MediaFetcher, fake: YouTubeFake
) -> youtube.YouTubeClient:
    made = youtube.create(context(http, fetcher, fake, environ=APP))
    made.poll_interval = 0.05
    made.max_wait = 2.0
    return made


def request(
    video: StoredMedia | None,
    stage: RecordingStage,
    content: str = "Sourdough, start to finish\nEverything about the starter.",
    settings: dict[str, str] | None = None,
    **fields: object,
) -> PublishRequest:
    return publish_request(
        content,
        stored_media=[video] if video else [],
        settings={"privacy": "public", **(settings or {})},
        stage=stage,
        **fields,
    )


async def random_video(store: FileStore, size: int) -> StoredMedia:
    """Bytes the fake takes as a video (it does not decode them), large enough for chunks."""
    data = os.urandom(size)

    async def chunks() -> AsyncIterator[bytes]:
        yield data

    kept = await store.put("media/big", chunks())
    return StoredMedia("big", "video/mp4", kept.size, kept.sha256, kept.key, kind="video")


async def test_a_video_post_is_uploaded_processed_and_published_with_its_id_and_url(
    http: httpx.AsyncClient,
    fetcher: MediaFetcher,
    fake: YouTubeFake,
    store: FileStore,
    tmp_path: Path,
) -> None:
    video = await stored_video(store, tmp_path)
    stage = WatchingStage(fake)
    outcome = await client(http, fetcher, fake).publish(
        request(video, stage, settings={"made_for_kids": "false", "tags": "bread, baking"})
    )

    assert outcome.result == Result.PUBLISHED, outcome
    [made] = fake.videos
    assert outcome.platform_post_id == made.id
    assert outcome.url == f"https://www.youtube.com/watch?v={made.id}"
    assert made.sha256 == video.sha256
    assert made.resource["status"]["uploadStatus"] == "processed"
    # The session was started as the guide says, with the video resource.
    [start] = fake.calls("POST", "/upload/youtube/v3/videos")
    assert start.query == {"uploadType": "resumable", "part": "snippet,status"}
    assert start.headers["authorization"] == "Bearer token-1"
    assert start.headers["content-type"] == "application/json; charset=UTF-8"
    assert start.headers["x-upload-content-length"] == str(video.size)
    assert start.headers["x-upload-content-type"] == "video/mp4"
    assert json.loads(start.body) == {
        "snippet": {
            "title": "Sourdough, start to finish",
            "description": "Sourdough, start to finish\nEverything about the starter.",
            "tags": ["bread", "baking"],
        },
        "status": {"privacyStatus": "public", "selfDeclaredMadeForKids": False},
    }
    # One chunk (the whole file): the mark came before it, when no video existed.
    assert [(h["content-range"], h["content-type"]) for h in chunk_puts(fake)] == [
        (f"bytes 0-{video.size - 1}/{video.size}", "video/mp4")
    ]
    assert stage.seen == [(0, 0)]
    assert stage.published_marks == 1
    assert stage.calls[0] == "publishing"
    assert all(isinstance(call, tuple) and call[0] == "pause" for call in stage.calls[1:])
    # Processing was asked about by the video's id.
    [listed] = fake.calls("GET", "/youtube/v3/videos")
    assert listed.query == {"part": "status,processingDetails", "id": made.id}


async def test_a_large_video_goes_in_chunks_of_256_kib_multiples_and_is_marked_before_the_last(
    http: httpx.AsyncClient, fetcher: MediaFetcher, fake: YouTubeFake, store: FileStore
) -> None:
    video = await random_video(store, 2 * UNIT + 1000)
    stage = WatchingStage(fake)
    made = client(http, fetcher, fake)
    made.chunk_size = UNIT
    outcome = await made.publish(request(video, stage))

    assert outcome.result == Result.PUBLISHED, outcome
    total = video.size
    assert [h["content-range"] for h in chunk_puts(fake)] == [
        f"bytes 0-{UNIT - 1}/{total}",
        f"bytes {UNIT}-{2 * UNIT - 1}/{total}",
        f"bytes {2 * UNIT}-{total - 1}/{total}",
    ]
    # Marked once, after the first two chunks and before the one that makes the video.
    assert stage.seen == [(2, 0)]
    assert [v.sha256 for v in fake.videos] == [video.sha256]


async def test_bytes_youtube_did_not_take_go_first_in_the_next_put(
    http: httpx.AsyncClient, fetcher: MediaFetcher, fake: YouTubeFake, store: FileStore
) -> None:
    video = await random_video(store, 4 * UNIT + 10)
    made = client(http, fetcher, fake)
    made.chunk_size = 2 * UNIT
    fake.partial_takes = 3  # each PUT of more than one unit keeps only its first unit
    stage = WatchingStage(fake)
    outcome = await made.publish(request(video, stage))

    assert outcome.result == Result.PUBLISHED, outcome
    total = video.size
    assert [h["content-range"] for h in chunk_puts(fake)] == [
        f"bytes 0-{2 * UNIT - 1}/{total}",  # one unit taken
        f"bytes {UNIT}-{4 * UNIT - 1}/{total}",  # the unit left over, then the next part
        f"bytes {2 * UNIT}-{total - 1}/{total}",  # the last request: one unit taken
        f"bytes {3 * UNIT}-{total - 1}/{total}",  # and the rest, once more
    ]
    # Marked once, before the first request that could complete the upload.
    assert stage.seen == [(2, 0)]
    assert [v.sha256 for v in fake.videos] == [video.sha256]


async def test_parts_of_any_size_are_sent_in_whole_256_kib_units(
    http: httpx.AsyncClient, fetcher: MediaFetcher, fake: YouTubeFake, store: FileStore
) -> None:
    video = await random_video(store, 3 * UNIT + 10)
    made = client(http, fetcher, fake)
    made.chunk_size = UNIT + UNIT // 2
    outcome = await made.publish(request(video, WatchingStage(fake)))

    assert outcome.result == Result.PUBLISHED, outcome
    total = video.size
    assert [h["content-range"] for h in chunk_puts(fake)] == [
        f"bytes 0-{UNIT - 1}/{total}",
        f"bytes {UNIT}-{3 * UNIT - 1}/{total}",
        f"bytes {3 * UNIT}-{total - 1}/{total}",
    ]
    assert [v.sha256 for v in fake.videos] == [video.sha256]


async def test_the_fake_refuses_a_chunk_short_of_the_end_that_is_not_whole_256_kib_units(
    fake: YouTubeFake,
) -> None:
    async with httpx.AsyncClient() as http:
        started = await http.post(
            f"{fake.url}/upload/youtube/v3/videos",
            params={"uploadType": "resumable", "part": "snippet,status"},
            json={"snippet": {"title": "t"}, "status": {"privacyStatus": "private"}},
            headers={
                "authorization": "Bearer t",
                "x-upload-content-length": str(2 * UNIT),
                "x-upload-content-type": "video/mp4",
            },
        )
        session = started.headers["location"]
        short = await http.put(
            session, content=b"x" * 1000, headers={"content-range": f"bytes 0-999/{2 * UNIT}"}
        )
        asked = await http.put(session, headers={"content-range": f"bytes */{2 * UNIT}"})

    assert started.status_code == 200
    assert short.status_code == 400
    [error] = short.json()["error"]["errors"]
    assert error["reason"] == "badRequest"
    assert "262144" in error["message"]
    assert (asked.status_code, asked.headers.get("range")) == (308, None)


async def test_a_short_is_published_at_its_shorts_url(
    http: httpx.AsyncClient,
    fetcher: MediaFetcher,
    fake: YouTubeFake,
    store: FileStore,
    tmp_path: Path,
) -> None:
    video = await stored_video(store, tmp_path)
    outcome = await client(http, fetcher, fake).publish(
        request(video, RecordingStage(), settings={"short": "true", "title": "A Short"})
    )

    assert outcome.result == Result.PUBLISHED, outcome
    assert outcome.url == f"https://www.youtube.com/shorts/{outcome.platform_post_id}"
    assert fake.videos[0].resource["snippet"]["title"] == "A Short"


async def test_refused_by_the_stage_the_last_chunk_is_never_sent(
    http: httpx.AsyncClient, fetcher: MediaFetcher, fake: YouTubeFake, store: FileStore
) -> None:
    video = await random_video(store, UNIT + 10)
    stage = WatchingStage(fake, refuse=True)
    made = client(http, fetcher, fake)
    made.chunk_size = UNIT
    outcome = await made.publish(request(video, stage))

    assert (outcome.result, outcome.code) == (Result.RETRYABLE, "stage")
    assert len(chunk_puts(fake)) == 1
    assert fake.videos == []
    assert stage.published_marks == 1


@pytest.mark.parametrize(
    ("reason", "state"), [("codec", "failed"), ("length", "rejected")], ids=["failed", "rejected"]
)
async def test_a_video_youtube_fails_or_rejects_in_processing_is_permanent(
    http: httpx.AsyncClient,
    fetcher: MediaFetcher,
    fake: YouTubeFake,
    store: FileStore,
    tmp_path: Path,
    reason: str,
    state: str,
) -> None:
    fake.processing_seconds = 0.2
    fake.fail_next("process", "reject", message=reason)
    video = await stored_video(store, tmp_path)
    outcome = await client(http, fetcher, fake).publish(request(video, RecordingStage()))

    assert (outcome.result, outcome.code) == (Result.PERMANENT, reason)
    assert state in outcome.message
    assert outcome.platform_post_id == fake.videos[0].id


async def test_a_video_still_processing_at_the_bound_is_published_with_a_note(
    http: httpx.AsyncClient,
    fetcher: MediaFetcher,
    fake: YouTubeFake,
    store: FileStore,
    tmp_path: Path,
) -> None:
    fake.processing_seconds = 30
    made = client(http, fetcher, fake)
    made.max_wait = 0.3
    stage = RecordingStage()
    outcome = await made.publish(request(await stored_video(store, tmp_path), stage))

    assert outcome.result == Result.PUBLISHED
    assert outcome.platform_post_id == fake.videos[0].id
    assert "still processing" in outcome.message
    assert ("pause", 0.05) in stage.calls


async def test_a_5xx_on_a_chunk_is_checked_against_the_session_and_the_chunk_sent_again(
    http: httpx.AsyncClient, fetcher: MediaFetcher, fake: YouTubeFake, store: FileStore
) -> None:
    video = await random_video(store, UNIT + 10)
    made = client(http, fetcher, fake)
    made.chunk_size = UNIT
    fake.fail_next("upload", "server_error")
    outcome = await made.publish(request(video, WatchingStage(fake)))

    assert outcome.result == Result.PUBLISHED, outcome
    queries = [r for r in fake.calls("PUT") if not r.body]
    assert [q.headers["content-range"] for q in queries] == [f"bytes */{video.size}"]
    assert [v.sha256 for v in fake.videos] == [video.sha256]


async def test_an_upload_that_keeps_failing_is_retryable_and_nothing_is_public(
    http: httpx.AsyncClient, fetcher: MediaFetcher, fake: YouTubeFake, store: FileStore
) -> None:
    video = await random_video(store, UNIT + 10)
    made = client(http, fetcher, fake)
    made.chunk_size = UNIT
    fake.fail_next("upload", "server_error", times=2)
    stage = WatchingStage(fake)
    outcome = await made.publish(request(video, stage))

    assert (outcome.result, outcome.code) == (Result.RETRYABLE, "upload_incomplete")
    assert stage.published_marks == 0
    assert fake.videos == []


async def test_a_lost_answer_to_a_chunk_is_resumed_from_what_the_session_has(
    http: httpx.AsyncClient, fetcher: MediaFetcher, fake: YouTubeFake, store: FileStore
) -> None:
    video = await random_video(store, 2 * UNIT + 10)
    made = client(http, fetcher, fake)
    made.chunk_size = UNIT
    fake.fail_next("upload", "hang")  # the first chunk is kept, its answer never comes
    outcome = await made.publish(request(video, WatchingStage(fake)))

    assert outcome.result == Result.PUBLISHED, outcome
    # The first chunk went once: the session said it had it.
    assert [h["content-range"].split("/")[0] for h in chunk_puts(fake)] == [
        f"bytes 0-{UNIT - 1}",
        f"bytes {UNIT}-{2 * UNIT - 1}",
        f"bytes {2 * UNIT}-{video.size - 1}",
    ]
    assert [v.sha256 for v in fake.videos] == [video.sha256]


async def test_a_lost_answer_to_the_last_chunk_finds_the_video_through_the_session(
    http: httpx.AsyncClient,
    fetcher: MediaFetcher,
    fake: YouTubeFake,
    store: FileStore,
    tmp_path: Path,
) -> None:
    fake.fail_next("upload", "hang")  # the video is made, the answer never comes
    stage = RecordingStage()
    outcome = await client(http, fetcher, fake).publish(
        request(await stored_video(store, tmp_path), stage)
    )

    assert outcome.result == Result.PUBLISHED, outcome
    [made] = fake.videos
    assert outcome.platform_post_id == made.id
    assert stage.published_marks == 1


async def test_a_lost_last_chunk_whose_session_cannot_say_is_unknown(
    http: httpx.AsyncClient,
    fetcher: MediaFetcher,
    fake: YouTubeFake,
    store: FileStore,
    tmp_path: Path,
) -> None:
    fake.fail_next("upload", "hang")
    fake.fail_next("status", "server_error")
    outcome = await client(http, fetcher, fake).publish(
        request(await stored_video(store, tmp_path), RecordingStage())
    )

    assert (outcome.result, outcome.code) == (Result.UNKNOWN, "upload_lost")


@pytest.mark.parametrize("kind", ["server_error", "hang"])
async def test_a_session_that_does_not_start_is_retryable_and_nothing_is_sent(
    http: httpx.AsyncClient,
    fetcher: MediaFetcher,
    fake: YouTubeFake,
    store: FileStore,
    tmp_path: Path,
    kind: str,
) -> None:
    fake.fail_next("create", kind)
    stage = RecordingStage()
    outcome = await client(http, fetcher, fake).publish(
        request(await stored_video(store, tmp_path), stage)
    )

    assert outcome.result == Result.RETRYABLE, outcome
    assert chunk_puts(fake) == []
    assert stage.calls == []


async def test_quota_exceeded_waits_for_midnight_pacific_time(
    http: httpx.AsyncClient,
    fetcher: MediaFetcher,
    fake: YouTubeFake,
    store: FileStore,
    tmp_path: Path,
) -> None:
    fake.inserts_used = fake.daily_inserts  # videos.insert's own daily bucket is spent
    before = datetime.now(UTC)
    outcome = await client(http, fetcher, fake).publish(
        request(await stored_video(store, tmp_path), RecordingStage())
    )

    assert (outcome.result, outcome.code, outcome.http_status) == (
        Result.RETRYABLE,
        "quotaExceeded",
        403,
    )
    assert outcome.retry_not_before is not None
    assert outcome.retry_not_before == outcome.blocked_until
    pacific = outcome.retry_not_before.astimezone(ZoneInfo("America/Los_Angeles"))
    assert (pacific.hour, pacific.minute, pacific.second) == (0, 0, 0)
    assert timedelta(0) < outcome.retry_not_before - before <= timedelta(hours=24)
    assert fake.sessions == {}


async def test_the_channels_upload_limit_waits_a_day_and_is_not_an_auth_failure(
    http: httpx.AsyncClient,
    fetcher: MediaFetcher,
    fake: YouTubeFake,
    store: FileStore,
    tmp_path: Path,
) -> None:
    fake.uploads_left = 0
    outcome = await client(http, fetcher, fake).publish(
        request(await stored_video(store, tmp_path), RecordingStage())
    )

    assert (outcome.result, outcome.code) == (Result.RETRYABLE, "uploadLimitExceeded")
    assert outcome.blocked_until is not None
    assert outcome.blocked_until - datetime.now(UTC) > timedelta(hours=23)


async def test_an_expired_token_is_auth_and_googles_refresh_keeps_the_refresh_token(
    http: httpx.AsyncClient,
    fetcher: MediaFetcher,
    fake: YouTubeFake,
    store: FileStore,
    tmp_path: Path,
) -> None:
    access, refresh = fake.issue()
    fake.tokens.expire(access)
    fake.client_id, fake.client_secret = "app-id", "app-secret"
    made = client(http, fetcher, fake)
    video = await stored_video(store, tmp_path)
    stale = request(video, RecordingStage(), access_token=access, refresh_token=refresh)

    assert (await made.publish(stale)).result == Result.AUTH
    fresh = await made.refresh(stale)
    assert isinstance(fresh, RefreshedTokens)
    assert fresh.refresh_token == refresh
    assert fresh.expires_at is not None
    [call] = fake.calls("POST", "/token")
    assert dict(httpx.QueryParams(call.body.decode())) == {
        "client_id": "app-id",
        "client_secret": "app-secret",
        "grant_type": "refresh_token",
        "refresh_token": refresh,
    }
    again = request(video, RecordingStage(), access_token=fresh.access_token)
    assert (await made.publish(again)).result == Result.PUBLISHED


async def test_a_revoked_refresh_token_needs_the_account_connected_again(
    http: httpx.AsyncClient, fetcher: MediaFetcher, fake: YouTubeFake
) -> None:
    made = client(http, fetcher, fake)
    fake.fail_next("refresh", "reject")
    answer = await made.refresh(request(None, RecordingStage(), refresh_token="1//gone"))
    assert isinstance(answer, str)
    assert "Token has been expired or revoked." in answer


@pytest.mark.parametrize(
    ("settings", "content", "code"),
    [
        ({"privacy": ""}, "text", "privacy"),
        ({"title": "a <b> title"}, "text", "title"),
        ({}, "fish > chips", "title"),
        ({"title": "ok"}, "fish > chips", "description"),
        ({"title": "ok"}, "é" * 2501, "description"),
        ({}, "", "title"),
    ],
)
async def test_what_youtube_would_refuse_is_refused_before_anything_is_sent(
    http: httpx.AsyncClient,
    fetcher: MediaFetcher,
    fake: YouTubeFake,
    store: FileStore,
    tmp_path: Path,
    settings: dict[str, str],
    content: str,
    code: str,
) -> None:
    video = await stored_video(store, tmp_path)
    outcome = await client(http, fetcher, fake).publish(
        request(video, RecordingStage(), content, settings)
    )

    assert (outcome.result, outcome.code) == (Result.PERMANENT, code)
    assert fake.requests == []


async def test_a_post_without_a_video_is_refused(
    http: httpx.AsyncClient, fetcher: MediaFetcher, fake: YouTubeFake
) -> None:
    outcome = await client(http, fetcher, fake).publish(request(None, RecordingStage()))
    assert (outcome.result, outcome.code) == (Result.PERMANENT, "media")
    assert fake.requests == []


async def test_a_damaged_file_is_refused_before_its_last_chunk_and_nothing_is_public(
    http: httpx.AsyncClient, fetcher: MediaFetcher, fake: YouTubeFake, store: FileStore
) -> None:
    video = await random_video(store, UNIT + 10)
    damaged = StoredMedia(
        video.media_id,
        video.content_type,
        video.size,
        hashlib.sha256(b"other").hexdigest(),
        video.storage_key,
        kind="video",
    )
    made = client(http, fetcher, fake)
    made.chunk_size = UNIT
    stage = RecordingStage()
    outcome = await made.publish(request(damaged, stage))

    assert (outcome.result, outcome.code) == (Result.PERMANENT, "media")
    assert stage.published_marks == 0
    assert fake.videos == []


async def test_an_unaudited_projects_video_is_kept_private_by_youtube(
    http: httpx.AsyncClient,
    fetcher: MediaFetcher,
    fake: YouTubeFake,
    store: FileStore,
    tmp_path: Path,
) -> None:
    fake.audited = False
    outcome = await client(http, fetcher, fake).publish(
        request(await stored_video(store, tmp_path), RecordingStage())
    )

    assert outcome.result == Result.PUBLISHED
    assert fake.videos[0].resource["status"]["privacyStatus"] == "private"
