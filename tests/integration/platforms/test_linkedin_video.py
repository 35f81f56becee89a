"""A LinkedIn video post through the Videos API of the fake, over real HTTP: initializeUpload,
the stored bytes PUT part by part to pre-signed URLs, finalizeUpload with the parts' ETags, the
video polled until AVAILABLE, and only then the post, marked to the stage just before it."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import random
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from av.video.stream import VideoStream

from kairos_fakes.linkedin import LinkedInFake
from kairos_media import FileStore
from kairos_media.probe import VideoInfo, probe_file
from kairos_publisher.media import MediaFetcher, StoredMedia
from kairos_publisher.platforms import linkedin
from kairos_publisher.platforms.base import PublishOutcome, PublishRequest, Result
from support.platforms import context, publish_request
from support.video import RecordingStage, stored_video

AUTHOR = "urn:li:person:8675309abc"
VIDEOS = "/rest/videos"
POSTS = "/rest/posts"
PARTS = "/uploadedVideo/"
PART = 64 * 1024


class OrderedStage(RecordingStage):
    """A stage that also notes which requests the fake had received when the module said it
    was about to make the post public."""

    def __init__(self, fake: LinkedInFake, *, refuse: bool = False) -> None:
        super().__init__(refuse=refuse)
        self.fake = fake
        self.received_before: list[str] | None = None

    async def publishing(self) -> PublishOutcome | None:
        self.received_before = [call.path for call in self.fake.requests]
        return await super().publishing()


def noisy_mp4(path: Path, *, seconds: float = 3.2, width: int = 96, height: int = 64) -> Path:
    """An H.264 MP4 of random frames: unlike flat frames, it does not compress to a few KB, so
    it passes LinkedIn's floor of 75 KB (about 220 KB at the defaults)."""
    noise = random.Random(7)
    with av.open(str(path), "w", format="mp4") as output:
        stream = output.add_stream("h264", rate=24)
        assert isinstance(stream, VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for _ in range(round(24 * seconds)):
            frame = av.VideoFrame(width, height, "rgb24")
            frame.planes[0].update(noise.randbytes(frame.planes[0].buffer_size))
            output.mux(stream.encode(frame))
        output.mux(stream.encode())
    return path


async def stored_noisy_video(store: FileStore, folder: Path) -> StoredMedia:
    path = noisy_mp4(folder / "noisy.mp4")
    info = probe_file(path)
    assert isinstance(info, VideoInfo)

    async def chunks() -> AsyncIterator[bytes]:
        yield path.read_bytes()

    kept = await store.put("media/video-1", chunks())
    return StoredMedia(
        "video-1",
        info.mime_type,
        kept.size,
        kept.sha256,
        kept.key,
        kind="video",
        width=info.width,
        height=info.height,
        duration_seconds=info.duration_seconds,
    )


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
async def fake() -> AsyncIterator[LinkedInFake]:
    server = LinkedInFake()
    server.video_part_bytes = PART
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def client(
    http: httpx.AsyncClient, media: MediaFetcher, fake: LinkedInFake
) -> linkedin.LinkedInClient:
    return linkedin.create(context(http, media, fake))


@pytest.fixture
async def video(store: FileStore, tmp_path: Path) -> StoredMedia:
    return await stored_noisy_video(store, tmp_path)


def request_for(video: StoredMedia, stage: RecordingStage, **fields: Any) -> PublishRequest:
    values: dict[str, Any] = {"page_id": AUTHOR, "stored_media": [video], "stage": stage}
    values.update(fields)
    return publish_request("A video from Kairos", **values)


def paths(fake: LinkedInFake) -> list[str]:
    return [call.path for call in fake.requests]


def actions(fake: LinkedInFake) -> list[str]:
    """The Videos API calls and the post, in the order they came."""
    named = []
    for call in fake.requests:
        if call.path == VIDEOS:
            named.append(call.query["action"])
        elif PARTS in call.path:
            named.append("part")
        elif call.path.startswith(VIDEOS + "/"):
            named.append("get")
        elif call.path == POSTS:
            named.append("post")
    return named


async def test_a_video_post_is_uploaded_in_parts_and_published(
    client: linkedin.LinkedInClient, fake: LinkedInFake, video: StoredMedia
) -> None:
    stage = OrderedStage(fake)

    outcome = await client.publish(request_for(video, stage))

    assert outcome.result == Result.PUBLISHED, outcome
    [post] = fake.posts
    assert outcome.platform_post_id == post["urn"]
    assert outcome.platform_post_id.startswith("urn:li:share:")
    assert outcome.url == f"https://www.linkedin.com/feed/update/{post['urn']}/"
    parts = -(-video.size // PART)
    assert parts >= 3
    assert actions(fake) == [
        "initializeUpload",
        *["part"] * parts,
        "finalizeUpload",
        "get",
        "get",
        "post",
    ]
    [(urn, kept)] = fake.videos.items()
    # LinkedIn holds exactly the stored bytes.
    assert hashlib.sha256(kept["content"]).hexdigest() == video.sha256
    initialize = json.loads(fake.calls("POST", VIDEOS)[0].body)
    assert initialize == {
        "initializeUploadRequest": {
            "owner": AUTHOR,
            "fileSizeBytes": video.size,
            "uploadCaptions": False,
            "uploadThumbnail": False,
        }
    }
    # Each part is its range, sent to its pre-signed URL without the token.
    puts = fake.calls("PUT", PARTS)
    assert [len(put.body) for put in puts] == [
        part["lastByte"] - part["firstByte"] + 1 for part in kept["instructions"]
    ]
    for put in puts:
        assert "authorization" not in put.headers
        assert put.headers["content-type"] == "application/octet-stream"
    finalize = json.loads(fake.calls("POST", VIDEOS)[1].body)
    assert finalize == {
        "finalizeUploadRequest": {
            "video": urn,
            "uploadToken": kept["upload_token"],
            "uploadedPartIds": kept["etags"],
        }
    }
    assert kept["upload_token"]  # several parts: a token to hand back
    assert json.loads(fake.calls("POST", POSTS)[0].body)["content"] == {"media": {"id": urn}}
    # Every versioned call carries the version and the protocol header; the parts do not.
    for call in fake.requests:
        if call.path.startswith("/rest/"):
            assert call.headers["linkedin-version"] == linkedin.VERSION
            assert call.headers["x-restli-protocol-version"] == "2.0.0"
            assert call.headers["authorization"] == "Bearer token-1"
        else:
            assert "linkedin-version" not in call.headers
    # Polled with the call slot given back, then marked just before the post, once.
    assert stage.calls == [("pause", 5.0), "publishing"]
    assert stage.received_before == paths(fake)[:-1]


async def test_a_video_of_one_part_hands_back_an_empty_upload_token(
    client: linkedin.LinkedInClient, fake: LinkedInFake, video: StoredMedia
) -> None:
    fake.video_part_bytes = 4 * 1024 * 1024  # LinkedIn's own: this video fits one part

    outcome = await client.publish(request_for(video, RecordingStage()))

    assert outcome.result == Result.PUBLISHED, outcome
    assert len(fake.calls("PUT", PARTS)) == 1
    finalize = json.loads(fake.calls("POST", VIDEOS)[1].body)["finalizeUploadRequest"]
    assert finalize["uploadToken"] == ""
    assert len(finalize["uploadedPartIds"]) == 1


async def test_the_targets_linkedin_version_goes_on_every_video_call(
    client: linkedin.LinkedInClient, fake: LinkedInFake, video: StoredMedia
) -> None:
    stage = RecordingStage()
    request = request_for(video, stage, settings={"linkedin_version": "202601"})

    outcome = await client.publish(request)

    assert outcome.result == Result.PUBLISHED, outcome
    versions = {
        call.headers["linkedin-version"] for call in fake.requests if call.path.startswith("/rest/")
    }
    assert versions == {"202601"}


async def test_a_retired_version_fails_before_anything_is_uploaded(
    client: linkedin.LinkedInClient, fake: LinkedInFake, video: StoredMedia
) -> None:
    request = request_for(video, RecordingStage(), settings={"linkedin_version": "202401"})

    outcome = await client.publish(request)

    assert (outcome.result, outcome.http_status, outcome.code) == (
        Result.PERMANENT,
        426,
        "NONEXISTENT_VERSION",
    )
    assert actions(fake) == ["initializeUpload"]


async def test_the_stage_refusing_means_no_post(
    client: linkedin.LinkedInClient, fake: LinkedInFake, video: StoredMedia
) -> None:
    stage = OrderedStage(fake, refuse=True)

    outcome = await client.publish(request_for(video, stage))

    assert (outcome.result, outcome.code) == (Result.RETRYABLE, "stage")
    assert POSTS not in paths(fake)
    assert fake.posts == []
    assert stage.published_marks == 1


async def test_a_video_linkedin_cannot_process_is_permanent(
    client: linkedin.LinkedInClient, fake: LinkedInFake, video: StoredMedia
) -> None:
    fake.fail_next("process", "reject")
    stage = RecordingStage()

    outcome = await client.publish(request_for(video, stage))

    assert (outcome.result, outcome.code) == (Result.PERMANENT, "PROCESSING_FAILED")
    assert POSTS not in paths(fake)
    assert stage.published_marks == 0


@pytest.mark.parametrize(
    ("operation", "kind", "status"),
    [
        ("upload_part", "server_error", 500),
        ("upload_part", "rate_limit", 429),
        ("initialize_video", "server_error", 500),
        ("finalize_video", "server_error", 500),
        ("get_video", "rate_limit", 429),
    ],
)
async def test_a_refusal_for_now_before_the_post_is_retryable_and_posts_nothing(
    client: linkedin.LinkedInClient,
    fake: LinkedInFake,
    video: StoredMedia,
    operation: str,
    kind: str,
    status: int,
) -> None:
    fake.fail_next(operation, kind)
    stage = RecordingStage()

    outcome = await client.publish(request_for(video, stage))

    assert (outcome.result, outcome.http_status) == (Result.RETRYABLE, status)
    assert POSTS not in paths(fake)
    assert stage.published_marks == 0


@pytest.mark.parametrize("operation", ["upload_part", "finalize_video", "initialize_video"])
async def test_a_lost_answer_before_the_post_is_retryable(
    client: linkedin.LinkedInClient, fake: LinkedInFake, video: StoredMedia, operation: str
) -> None:
    fake.fail_next(operation, "hang")

    outcome = await client.publish(request_for(video, RecordingStage()))

    assert outcome.result == Result.RETRYABLE
    assert POSTS not in paths(fake)


async def test_a_video_still_processing_at_the_bound_is_retryable(
    client: linkedin.LinkedInClient, fake: LinkedInFake, video: StoredMedia
) -> None:
    fake.processing_polls = 1000
    client.video_wait = 10.0
    stage = RecordingStage()

    outcome = await client.publish(request_for(video, stage))

    assert (outcome.result, outcome.code) == (Result.RETRYABLE, "video_processing")
    assert "PROCESSING" in outcome.message
    assert stage.calls == [("pause", 5.0), ("pause", 5.0)]
    assert POSTS not in paths(fake)


async def test_a_video_under_75_kb_is_refused_before_any_call(
    client: linkedin.LinkedInClient, fake: LinkedInFake, store: FileStore, tmp_path: Path
) -> None:
    small = await stored_video(store, tmp_path, "small", seconds=3.2)
    assert small.size < 75 * 1024

    outcome = await client.publish(request_for(small, RecordingStage()))

    assert (outcome.result, outcome.code) == (Result.PERMANENT, "video_size")
    assert fake.requests == []


async def test_a_video_that_is_not_mp4_is_refused_before_any_call(
    client: linkedin.LinkedInClient, fake: LinkedInFake, video: StoredMedia
) -> None:
    outcome = await client.publish(
        request_for(replace(video, content_type="video/quicktime"), RecordingStage())
    )

    assert (outcome.result, outcome.code) == (Result.PERMANENT, "video_type")
    assert fake.requests == []


async def test_damaged_stored_bytes_are_refused_before_the_upload_is_finished(
    client: linkedin.LinkedInClient, fake: LinkedInFake, video: StoredMedia
) -> None:
    outcome = await client.publish(request_for(replace(video, sha256="0" * 64), RecordingStage()))

    assert (outcome.result, outcome.code) == (Result.PERMANENT, "media")
    assert "finalizeUpload" not in actions(fake)
    # The last part never left: the damage was found before it.
    assert len(fake.calls("PUT", PARTS)) < -(-video.size // PART)
    assert fake.posts == []


async def test_a_reply_cannot_carry_a_video(
    client: linkedin.LinkedInClient, fake: LinkedInFake, video: StoredMedia
) -> None:
    request = request_for(video, RecordingStage(), reply_to="urn:li:share:7000000000000000001")

    outcome = await client.publish(request)

    assert (outcome.result, outcome.code) == (Result.PERMANENT, "media_on_comment")
    assert fake.requests == []


async def test_the_fake_wants_the_parts_signed_ids_and_whole_ranges(
    http: httpx.AsyncClient, fake: LinkedInFake
) -> None:
    headers = {
        "authorization": "Bearer token-1",
        "linkedin-version": linkedin.VERSION,
        "x-restli-protocol-version": "2.0.0",
    }
    size = 100 * 1024
    answer = await http.post(
        f"{fake.url}/rest/videos",
        params={"action": "initializeUpload"},
        json={"initializeUploadRequest": {"owner": AUTHOR, "fileSizeBytes": size}},
        headers=headers,
    )
    value = answer.json()["value"]
    first, second = value["uploadInstructions"]
    assert (first["firstByte"], first["lastByte"], second["firstByte"]) == (0, PART - 1, PART)
    assert second["lastByte"] == size - 1
    short = await http.put(first["uploadUrl"], content=b"x" * 10)
    assert short.status_code == 400
    finalize = {
        "finalizeUploadRequest": {
            "video": value["video"],
            "uploadToken": value["uploadToken"],
            "uploadedPartIds": ["made-up", "ids"],
        }
    }
    refused = await http.post(
        f"{fake.url}/rest/videos",
        params={"action": "finalizeUpload"},
        json=finalize,
        headers=headers,
    )
    assert refused.status_code == 400
    assert refused.json()["message"] == "All chunks IDs must be signed"
    too_small = await http.post(
        f"{fake.url}/rest/videos",
        params={"action": "initializeUpload"},
        json={"initializeUploadRequest": {"owner": AUTHOR, "fileSizeBytes": 1000}},
        headers=headers,
    )
    assert too_small.status_code == 422
