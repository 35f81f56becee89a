"""TikTok video posts against the TikTok fake, over real HTTP: a video pulled by TikTok from its
presigned URL or uploaded in chunks, the stage told before the call that makes it public, and
the creator's limits, TikTok's processing failures and lost or failed uploads."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from kairos_fakes.tiktok import TikTokFake
from kairos_media import FileStore
from kairos_publisher.media import MediaFetcher, StoredMedia
from kairos_publisher.platforms import tiktok
from kairos_publisher.platforms.base import PublishOutcome, PublishRequest, Result
from support.platforms import context, publish_request
from support.video import RecordingStage, stored_video

PUBLIC_CALLS = ("/v2/post/publish/video/init/", "/video/")


class OrderStage(RecordingStage):
    """Records, when the module says it is about to publish, what the fake had received."""

    def __init__(self, fake: TikTokFake, *, refuse: bool = False) -> None:
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
async def fake() -> AsyncIterator[TikTokFake]:
    server = TikTokFake()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def video_host(store: FileStore) -> AsyncIterator[tuple[str, list[str]]]:
    """A server that answers GET /<storage key> with the stored file, as a presigned S3 URL
    would; yields its base URL and the paths it served."""
    served: list[str] = []

    async def get(request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        served.append(key)
        response = web.StreamResponse(headers={"content-type": "video/mp4"})
        await response.prepare(request)
        async for chunk in store.read(key):
            await response.write(chunk)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/{key:.+}", get)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", served
    await runner.cleanup()


def client(
    http: httpx.AsyncClient, media: MediaFetcher, fake: TikTokFake, **environ: str
) -> tiktok.TikTokClient:
    made = tiktok.create(context(http, media, fake, environ=environ))
    made.poll_interval = made.video_poll_interval = 0.05
    made.max_wait = made.video_max_wait = 3.0
    return made


def request(
    video: StoredMedia,
    stage: RecordingStage,
    content: str = "A sourdough loaf, start to finish #bread",
    settings: dict[str, str] | None = None,
) -> PublishRequest:
    return publish_request(
        content,
        stored_media=[video],
        settings={"privacy_level": "PUBLIC_TO_EVERYONE", **(settings or {})},
        stage=stage,
    )


async def big_video(store: FileStore, size: int) -> StoredMedia:
    """`size` bytes that start as an MP4 does (the fake checks no more), in the store."""
    data = b"\x00\x00\x00\x18ftypmp42" + os.urandom(size - 12)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, size, 1 << 20):
            yield data[start : start + (1 << 20)]

    kept = await store.put("media/big", chunks())
    return StoredMedia(
        "big", "video/mp4", kept.size, kept.sha256, kept.key, kind="video", duration_seconds=20
    )


async def test_a_video_with_a_url_is_pulled_by_tiktok_and_published_with_its_id_and_url(
    http: httpx.AsyncClient,
    media: MediaFetcher,
    fake: TikTokFake,
    store: FileStore,
    tmp_path: Path,
    video_host: tuple[str, list[str]],
) -> None:
    base, served = video_host
    video = await stored_video(store, tmp_path)
    video = replace(video, url=f"{base}/{video.storage_key}")
    stage = OrderStage(fake)
    settings = {"disable_duet": "true", "video_cover_timestamp_ms": "500"}
    fake.processing_seconds = 0.2

    outcome = await client(http, media, fake).publish(request(video, stage, settings=settings))

    assert outcome.result == Result.PUBLISHED, outcome
    [post] = fake.posts
    assert outcome.platform_post_id == post["id"]
    assert outcome.url == f"https://www.tiktok.com/@kairos/video/{post['id']}"
    # TikTok downloaded exactly the stored bytes; the publisher sent none.
    assert (post["video_sha256"], post["video_size"]) == (video.sha256, video.size)
    assert served == [video.storage_key]
    assert fake.calls("PUT") == []
    [init] = fake.calls("POST", "/video/init/")
    assert json.loads(init.body) == {
        "post_info": {
            "title": "A sourdough loaf, start to finish #bread",
            "privacy_level": "PUBLIC_TO_EVERYONE",
            "disable_comment": False,
            "disable_duet": True,
            # The fake's creator has stitches off: the post has them off too.
            "disable_stitch": True,
            "video_cover_timestamp_ms": 500,
        },
        "source_info": {"source": "PULL_FROM_URL", "video_url": video.url},
    }
    assert init.headers["content-type"] == "application/json; charset=UTF-8"
    # Told once, after creator_info and right before the init, the call that makes it public.
    assert stage.published_marks == 1
    assert stage.seen_before == ["POST /v2/post/publish/creator_info/query/"]
    # While TikTok processed, the polls waited through the stage (giving the call slot back).
    assert stage.calls[0] == "publishing"
    assert stage.calls[1:]
    assert set(stage.calls[1:]) == {("pause", 0.05)}


async def test_a_video_without_a_url_is_uploaded_in_one_chunk_and_published(
    http: httpx.AsyncClient, media: MediaFetcher, fake: TikTokFake, store: FileStore, tmp_path: Path
) -> None:
    video = await stored_video(store, tmp_path)
    stage = OrderStage(fake)

    outcome = await client(http, media, fake).publish(request(video, stage))

    assert outcome.result == Result.PUBLISHED, outcome
    [post] = fake.posts
    assert (post["source"], post["video_sha256"]) == ("FILE_UPLOAD", video.sha256)
    [init] = fake.calls("POST", "/video/init/")
    assert json.loads(init.body)["source_info"] == {
        "source": "FILE_UPLOAD",
        "video_size": video.size,
        "chunk_size": video.size,
        "total_chunk_count": 1,
    }
    [put] = fake.calls("PUT", "/video/")
    assert put.headers["content-range"] == f"bytes 0-{video.size - 1}/{video.size}"
    assert put.headers["content-type"] == "video/mp4"
    assert put.headers["content-length"] == str(video.size)
    # The init made nothing public: the stage is told before the (only, so last) chunk.
    assert stage.published_marks == 1
    assert stage.seen_before[-1] == "POST /v2/post/publish/video/init/"


async def test_a_large_video_goes_in_ten_megabyte_chunks_the_last_taking_the_rest(
    http: httpx.AsyncClient, media: MediaFetcher, fake: TikTokFake, store: FileStore
) -> None:
    video = await big_video(store, 21_000_123)
    stage = OrderStage(fake)

    outcome = await client(http, media, fake).publish(request(video, stage))

    assert outcome.result == Result.PUBLISHED, outcome
    [init] = fake.calls("POST", "/video/init/")
    assert json.loads(init.body)["source_info"] == {
        "source": "FILE_UPLOAD",
        "video_size": 21_000_123,
        "chunk_size": 10_000_000,
        "total_chunk_count": 2,
    }
    puts = fake.calls("PUT", "/video/")
    assert [r.headers["content-range"] for r in puts] == [
        "bytes 0-9999999/21000123",
        "bytes 10000000-21000122/21000123",
    ]
    assert hashlib.sha256(b"".join(r.body for r in puts)).hexdigest() == video.sha256
    assert [r.headers["content-length"] for r in puts] == ["10000000", "11000123"]
    assert all("transfer-encoding" not in r.headers for r in puts)
    [post] = fake.posts
    assert post["video_sha256"] == video.sha256
    # Told after the first chunk went, before the last.
    assert stage.seen_before[-1] == "PUT /video/"
    assert stage.seen_before.count("PUT /video/") == 1


async def test_environment_may_ask_for_an_upload_even_when_the_video_has_a_url(
    http: httpx.AsyncClient, media: MediaFetcher, fake: TikTokFake, store: FileStore, tmp_path: Path
) -> None:
    video = replace(await stored_video(store, tmp_path), url="http://127.0.0.1:9/unreachable")
    made = client(http, media, fake, KAIROS_TIKTOK_VIDEO_SOURCE="FILE_UPLOAD")

    outcome = await made.publish(request(video, RecordingStage()))

    assert outcome.result == Result.PUBLISHED, outcome
    assert fake.posts[0]["source"] == "FILE_UPLOAD"


@pytest.mark.parametrize("pulled", [True, False])
async def test_a_stage_that_refuses_leaves_the_public_call_unmade(
    http: httpx.AsyncClient,
    media: MediaFetcher,
    fake: TikTokFake,
    store: FileStore,
    tmp_path: Path,
    pulled: bool,
) -> None:
    video = await stored_video(store, tmp_path)
    if pulled:
        video = replace(video, url="http://127.0.0.1:9/never-fetched")
    stage = OrderStage(fake, refuse=True)

    outcome = await client(http, media, fake).publish(request(video, stage))

    assert (outcome.result, outcome.code) == (Result.RETRYABLE, "stage")
    assert stage.published_marks == 1
    assert fake.calls("PUT") == []
    if pulled:
        assert fake.calls("POST", "/video/init/") == []
    assert fake.posts == []


async def test_a_video_longer_than_the_creator_may_post_is_refused_naming_the_limit(
    http: httpx.AsyncClient, media: MediaFetcher, fake: TikTokFake, store: FileStore, tmp_path: Path
) -> None:
    fake.max_video_post_duration_sec = 60
    video = replace(await stored_video(store, tmp_path), duration_seconds=61.5)
    stage = RecordingStage()

    outcome = await client(http, media, fake).publish(request(video, stage))

    assert (outcome.result, outcome.code) == (Result.PERMANENT, "max_video_post_duration_sec")
    assert "61.5 s" in outcome.message
    assert "at most 60 s" in outcome.message
    assert fake.calls("POST", "/video/init/") == []
    assert stage.published_marks == 0


async def test_a_privacy_level_the_creator_lacks_is_refused_before_init(
    http: httpx.AsyncClient, media: MediaFetcher, fake: TikTokFake, store: FileStore, tmp_path: Path
) -> None:
    fake.privacy_level_options = ["SELF_ONLY"]
    video = await stored_video(store, tmp_path)

    outcome = await client(http, media, fake).publish(request(video, RecordingStage()))

    assert (outcome.result, outcome.code) == (Result.PERMANENT, "privacy_level_option_mismatch")
    assert fake.calls("POST", "/video/init/") == []


async def test_a_title_over_2200_utf16_units_is_refused_before_any_call(
    http: httpx.AsyncClient, media: MediaFetcher, fake: TikTokFake, store: FileStore, tmp_path: Path
) -> None:
    video = await stored_video(store, tmp_path)
    text = "😀" * 1101  # 2,202 UTF-16 code units

    outcome = await client(http, media, fake).publish(request(video, RecordingStage(), text))

    assert (outcome.result, outcome.code) == (Result.PERMANENT, "title")
    assert fake.requests == []


async def test_tiktoks_processing_failure_is_permanent_with_its_reason(
    http: httpx.AsyncClient, media: MediaFetcher, fake: TikTokFake, store: FileStore, tmp_path: Path
) -> None:
    fake.fail_next("process", "reject", message="duration_check_failed")
    video = await stored_video(store, tmp_path)

    outcome = await client(http, media, fake).publish(request(video, RecordingStage()))

    assert (outcome.result, outcome.code) == (Result.PERMANENT, "duration_check_failed")
    assert fake.posts == []


async def test_a_file_that_is_not_a_video_fails_tiktoks_format_check(
    http: httpx.AsyncClient, media: MediaFetcher, fake: TikTokFake, store: FileStore
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"not a video at all" * 100

    kept = await store.put("media/text", chunks())
    video = StoredMedia("text", "video/mp4", kept.size, kept.sha256, kept.key, kind="video")

    outcome = await client(http, media, fake).publish(request(video, RecordingStage()))

    assert (outcome.result, outcome.code) == (Result.PERMANENT, "file_format_check_failed")


async def test_a_url_tiktok_cannot_download_fails_the_post(
    http: httpx.AsyncClient, media: MediaFetcher, fake: TikTokFake, store: FileStore, tmp_path: Path
) -> None:
    video = replace(await stored_video(store, tmp_path), url="http://127.0.0.1:9/gone.mp4")

    outcome = await client(http, media, fake).publish(request(video, RecordingStage()))

    assert (outcome.result, outcome.code) == (Result.PERMANENT, "video_pull_failed")


async def test_a_chunk_answered_with_a_5xx_is_retryable_and_nothing_is_public(
    http: httpx.AsyncClient, media: MediaFetcher, fake: TikTokFake, store: FileStore
) -> None:
    fake.fail_next("upload", "server_error")
    video = await big_video(store, 21_000_000)
    stage = RecordingStage()

    outcome = await client(http, media, fake).publish(request(video, stage))

    assert (outcome.result, outcome.http_status) == (Result.RETRYABLE, 500)
    assert len(fake.calls("PUT", "/video/")) == 1
    assert stage.published_marks == 0
    assert fake.posts == []


async def test_a_chunk_whose_answer_never_came_is_retryable_before_the_last(
    http: httpx.AsyncClient, media: MediaFetcher, fake: TikTokFake, store: FileStore
) -> None:
    fake.fail_next("upload", "hang")
    video = await big_video(store, 21_000_000)
    stage = RecordingStage()

    outcome = await client(http, media, fake).publish(request(video, stage))

    assert outcome.result == Result.RETRYABLE
    assert outcome.code == "upload_timeout"
    assert stage.published_marks == 0
    assert fake.posts == []


async def test_the_last_chunk_whose_answer_never_came_is_unknown(
    http: httpx.AsyncClient, media: MediaFetcher, fake: TikTokFake, store: FileStore, tmp_path: Path
) -> None:
    fake.fail_next("upload", "hang")
    video = await stored_video(store, tmp_path)

    outcome = await client(http, media, fake).publish(request(video, RecordingStage()))

    assert outcome.result == Result.UNKNOWN


async def test_an_unanswered_file_upload_init_is_retryable(
    http: httpx.AsyncClient, media: MediaFetcher, fake: TikTokFake, store: FileStore, tmp_path: Path
) -> None:
    """A FILE_UPLOAD init makes nothing public without its chunks."""
    fake.fail_next("create", "hang")
    video = await stored_video(store, tmp_path)

    outcome = await client(http, media, fake).publish(request(video, RecordingStage()))

    assert outcome.result == Result.RETRYABLE
    assert fake.posts == []


async def test_a_damaged_stored_video_is_refused_before_its_last_chunk_is_taken(
    http: httpx.AsyncClient, media: MediaFetcher, fake: TikTokFake, store: FileStore
) -> None:
    video = replace(await big_video(store, 21_000_000), sha256="0" * 64)

    outcome = await client(http, media, fake).publish(request(video, RecordingStage()))

    assert (outcome.result, outcome.code) == (Result.PERMANENT, "media")
    assert fake.posts == []


@pytest.mark.parametrize(
    ("size", "chunk", "count"),
    [
        (4_000_000, 2_000_000, 2),  # under 5 MB: one chunk of the whole size
        (30_000_000, 10_000_000, 2),  # the count must be size // chunk
        (30_000_000, 4_000_000, 7),  # chunks under 5 MB
        (70_000_000, 70_000_000, 1),  # over 64 MB in one chunk
        (5 * 2**30, 10_000_000, 536),  # over 4 GB
    ],
)
async def test_the_fake_refuses_init_against_the_chunk_rules(
    fake: TikTokFake, size: int, chunk: int, count: int
) -> None:
    body = {
        "post_info": {"title": "x", "privacy_level": "SELF_ONLY"},
        "source_info": {
            "source": "FILE_UPLOAD",
            "video_size": size,
            "chunk_size": chunk,
            "total_chunk_count": count,
        },
    }
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{fake.url}/v2/post/publish/video/init/",
            json=body,
            headers={"authorization": "Bearer token-1"},
        )
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_params"
    assert answer.json()["error"]["message"] == "The chunk size is invalid"


async def test_the_fake_refuses_a_chunk_out_of_range_with_416(fake: TikTokFake) -> None:
    body = {
        "post_info": {"title": "x", "privacy_level": "SELF_ONLY"},
        "source_info": {
            "source": "FILE_UPLOAD",
            "video_size": 100,
            "chunk_size": 100,
            "total_chunk_count": 1,
        },
    }
    async with httpx.AsyncClient() as http:
        init = await http.post(
            f"{fake.url}/v2/post/publish/video/init/",
            json=body,
            headers={"authorization": "Bearer token-1"},
        )
        upload_url = init.json()["data"]["upload_url"]
        wrong = await http.put(
            upload_url,
            content=b"v" * 100,
            headers={"content-type": "video/mp4", "content-range": "bytes 1-100/100"},
        )
        missing = await http.put(
            upload_url, content=b"v" * 100, headers={"content-type": "video/mp4"}
        )
    assert (wrong.status_code, missing.status_code) == (416, 416)
