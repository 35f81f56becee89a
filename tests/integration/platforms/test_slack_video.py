"""A video post on Slack: the Slack client takes the stored video through the fake's external
upload (files.getUploadURLExternal, the upload URL, files.completeUploadExternal), over real
HTTP, then finds the message Slack shared it in through files.info."""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest

from kairos_common.platforms import CATALOGUE, Platform
from kairos_fakes._multipart import parts
from kairos_fakes.slack import FILE_LIMIT, SlackFake
from kairos_media import FileStore
from kairos_publisher.media import MediaFetcher, StoredMedia
from kairos_publisher.platforms import slack
from kairos_publisher.platforms.base import PublishOutcome, PublishRequest, Result
from support.platforms import context, publish_request
from support.video import RecordingStage, stored_video

CHANNEL = "C0KAIROS1"


class OrderStage(RecordingStage):
    """A stage that also notes which Slack calls the fake had received when the module said it
    was about to make the post public."""

    def __init__(self, fake: SlackFake, *, refuse: bool = False) -> None:
        super().__init__(refuse=refuse)
        self.fake = fake
        self.seen: list[str] | None = None

    async def publishing(self) -> PublishOutcome | None:
        self.seen = [call_name(r.path) for r in self.fake.requests]
        return await super().publishing()


def call_name(path: str) -> str:
    return "upload" if path.startswith("/upload/") else path.removeprefix("/api/")


@pytest.fixture
async def fake() -> AsyncIterator[SlackFake]:
    server = SlackFake()
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
def client(http: httpx.AsyncClient, fetcher: MediaFetcher, fake: SlackFake) -> slack.SlackClient:
    return slack.create(context(http, fetcher, fake))


@pytest.fixture
async def video(store: FileStore, tmp_path: Path) -> StoredMedia:
    return await stored_video(store, tmp_path, width=640, height=360, seconds=1.0)


@pytest.fixture
def token(fake: SlackFake) -> str:
    access, _ = fake.tokens.issue(12 * 3600)
    return access


def video_request(
    token: str, video: StoredMedia, stage: RecordingStage, **fields: object
) -> PublishRequest:
    base = publish_request(
        "Our *launch* video",
        access_token=token,
        chat_id=CHANNEL,
        stored_media=[video],
        stage=stage,
    )
    return dataclasses.replace(base, **fields)  # type: ignore[arg-type]


async def test_a_video_goes_through_the_external_upload_and_is_published(
    client: slack.SlackClient, fake: SlackFake, video: StoredMedia, token: str
) -> None:
    stage = OrderStage(fake)

    outcome = await client.publish(video_request(token, video, stage))

    assert outcome.result == Result.PUBLISHED, outcome
    [post] = fake.posts
    assert outcome.platform_post_id == post["ts"]
    assert outcome.url == (
        f"https://kairos-fake.slack.com/archives/{CHANNEL}/p{post['ts'].replace('.', '')}"
    )
    assert post["text"] == "Our *launch* video"
    [upload] = fake.uploads
    assert post["files"] == [upload.file_id]
    assert upload.content is not None
    assert hashlib.sha256(upload.content).hexdigest() == video.sha256
    assert (upload.filename, upload.length, upload.title) == (
        "video-1.mp4",
        video.size,
        upload.filename,
    )
    # Uploads first; the stage hears of the completion before it is sent; then the look-ups.
    assert stage.seen == ["files.getUploadURLExternal", "upload"]
    assert [call_name(r.path) for r in fake.requests] == [
        "files.getUploadURLExternal",
        "upload",
        "files.completeUploadExternal",
        "files.info",
        "files.info",
        "chat.getPermalink",
    ]
    # Slack shares asynchronously: the module waited between its files.info looks.
    assert stage.calls == ["publishing", ("pause", 1.0), ("pause", 2.0)]
    ticket, uploaded, completed = fake.requests[:3]
    assert ticket.headers["authorization"] == f"Bearer {token}"
    assert parse_qs(ticket.body.decode()) == {
        "filename": ["video-1.mp4"],
        "length": [str(video.size)],
    }
    assert "authorization" not in uploaded.headers  # the upload URL is its own secret
    form = parts(uploaded.headers["content-type"], uploaded.body)
    assert form is not None
    assert form["filename"].filename == "video-1.mp4"
    assert json.loads(completed.body) == {
        "files": [{"id": upload.file_id, "title": "video-1.mp4"}],
        "channel_id": CHANNEL,
        "initial_comment": "Our *launch* video",
    }


async def test_a_video_replying_to_a_part_goes_into_its_thread(
    client: slack.SlackClient, fake: SlackFake, video: StoredMedia, token: str
) -> None:
    first = await client.publish(publish_request("Part 1", access_token=token, chat_id=CHANNEL))

    outcome = await client.publish(
        video_request(token, video, RecordingStage(), reply_to=first.platform_post_id)
    )

    assert outcome.result == Result.PUBLISHED
    root, ts = outcome.platform_post_id.split("/")
    assert root == first.platform_post_id
    assert fake.posts[-1]["ts"] == ts
    assert fake.posts[-1]["root"] == root


async def test_refused_by_the_stage_the_file_is_never_shared(
    client: slack.SlackClient, fake: SlackFake, video: StoredMedia, token: str
) -> None:
    stage = RecordingStage(refuse=True)

    outcome = await client.publish(video_request(token, video, stage))

    assert outcome.result == Result.RETRYABLE
    assert outcome.code == "stage"
    assert fake.calls("POST", "files.completeUploadExternal") == []
    assert fake.posts == []


@pytest.mark.parametrize("step", ["upload_url", "upload"])
async def test_a_server_error_before_the_share_is_retryable_and_nothing_is_posted(
    client: slack.SlackClient, fake: SlackFake, video: StoredMedia, token: str, step: str
) -> None:
    fake.fail_next(step, "server_error")
    stage = RecordingStage()

    outcome = await client.publish(video_request(token, video, stage))

    assert outcome.result == Result.RETRYABLE
    assert outcome.http_status in (500, 503)
    assert stage.calls == []
    assert fake.posts == []


@pytest.mark.parametrize("step", ["upload_url", "upload"])
async def test_a_lost_answer_before_the_share_is_retryable_and_nothing_is_posted(
    client: slack.SlackClient, fake: SlackFake, video: StoredMedia, token: str, step: str
) -> None:
    fake.fail_next(step, "hang")
    stage = RecordingStage()

    outcome = await client.publish(video_request(token, video, stage))

    assert outcome.result == Result.RETRYABLE
    assert outcome.code == "upload_timeout"
    assert stage.calls == []
    assert fake.posts == []


async def test_an_internal_error_before_the_share_is_only_retryable(
    client: slack.SlackClient, fake: SlackFake, video: StoredMedia, token: str
) -> None:
    fake.fail_next("upload_url", "reject", message="internal_error")

    outcome = await client.publish(video_request(token, video, RecordingStage()))

    assert outcome.result == Result.RETRYABLE
    assert outcome.code == "internal_error"


async def test_a_lost_answer_to_the_share_is_unknown(
    client: slack.SlackClient, fake: SlackFake, video: StoredMedia, token: str
) -> None:
    fake.fail_next("complete", "hang")
    stage = RecordingStage()

    outcome = await client.publish(video_request(token, video, stage))

    assert outcome.result == Result.UNKNOWN
    assert stage.calls == ["publishing"]
    assert len(fake.posts) == 1


async def test_a_damaged_video_is_permanent_and_never_shared(
    client: slack.SlackClient, fake: SlackFake, video: StoredMedia, token: str
) -> None:
    damaged = dataclasses.replace(video, sha256="f" * 64)
    stage = RecordingStage()

    outcome = await client.publish(video_request(token, damaged, stage))

    assert outcome.result == Result.PERMANENT
    assert outcome.code == "media"
    assert stage.calls == []
    assert fake.calls("POST", "files.completeUploadExternal") == []
    assert fake.posts == []


async def test_a_workspace_that_restricts_large_files_refuses_for_good(
    client: slack.SlackClient, fake: SlackFake, video: StoredMedia, token: str
) -> None:
    fake.file_limit = video.size - 1

    outcome = await client.publish(video_request(token, video, RecordingStage()))

    assert outcome.result == Result.PERMANENT
    assert outcome.code == "file_upload_size_restricted"
    assert fake.posts == []


async def test_an_expired_token_is_auth_before_anything_is_uploaded(
    client: slack.SlackClient, fake: SlackFake, video: StoredMedia, token: str
) -> None:
    fake.tokens.expire(token)

    outcome = await client.publish(video_request(token, video, RecordingStage()))

    assert outcome.result == Result.AUTH
    assert outcome.code == "token_expired"
    assert fake.uploads == []


async def test_a_channel_the_app_may_not_post_in_refuses_the_share_for_good(
    client: slack.SlackClient, fake: SlackFake, video: StoredMedia, token: str
) -> None:
    fake.archive(CHANNEL)

    outcome = await client.publish(video_request(token, video, RecordingStage()))

    assert outcome.result == Result.PERMANENT
    assert outcome.code == "posting_to_channel_denied"
    assert fake.posts == []


async def test_a_share_slack_never_shows_is_published_as_the_file_and_a_reply_waits_for_it(
    client: slack.SlackClient, fake: SlackFake, video: StoredMedia, token: str
) -> None:
    fake.share_after_polls = 99
    stage = RecordingStage()

    outcome = await client.publish(video_request(token, video, stage))

    [upload] = fake.uploads
    assert outcome.result == Result.PUBLISHED
    assert outcome.platform_post_id == upload.file_id
    assert outcome.url.endswith(f"/{upload.file_id}/video-1.mp4")
    assert [c for c in stage.calls if c != "publishing"] == [
        ("pause", wait) for wait in slack.SHARE_WAITS
    ]

    # A later part replying to it is not sent while Slack has not shared the file ...
    reply = publish_request("Part 2", access_token=token, chat_id=CHANNEL, reply_to=upload.file_id)
    waiting = await client.publish(reply)
    assert waiting.result == Result.RETRYABLE
    assert waiting.code == "file_not_shared"
    assert len(fake.posts) == 1

    # ... and goes into the video's thread once it has.
    fake.share_after_polls = 0
    threaded = await client.publish(reply)
    assert threaded.result == Result.PUBLISHED
    assert fake.posts[-1]["root"] == fake.posts[0]["ts"]
    assert threaded.platform_post_id == f"{fake.posts[0]['ts']}/{fake.posts[-1]['ts']}"


def test_the_catalogue_takes_a_video_up_to_slacks_file_limit() -> None:
    rules = CATALOGUE[Platform.SLACK].video
    assert rules is not None
    assert rules.max_bytes == FILE_LIMIT
    assert not CATALOGUE[Platform.SLACK].pulls_by_url("video")
