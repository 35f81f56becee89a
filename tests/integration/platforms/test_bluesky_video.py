"""A Bluesky video post through the video service of the fake, over real HTTP: limits, a
service token for the PDS, the upload of the stored bytes, the job polled until it gives its
blob, and only then the record, marked to the stage just before it is created."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from kairos_fakes.bluesky import Account, BlueskyFake, claims_of, did_web
from kairos_media import FileStore
from kairos_publisher.media import MediaFetcher, StoredMedia
from kairos_publisher.platforms import bluesky
from kairos_publisher.platforms.base import PublishOutcome, PublishRequest, Result
from support.platforms import context, publish_request
from support.video import RecordingStage, stored_video

CREATE = "/xrpc/com.atproto.repo.createRecord"
SERVICE_AUTH = "/xrpc/com.atproto.server.getServiceAuth"
LIMITS = "/xrpc/app.bsky.video.getUploadLimits"
UPLOAD = "/xrpc/app.bsky.video.uploadVideo"
JOB = "/xrpc/app.bsky.video.getJobStatus"


class OrderedStage(RecordingStage):
    """A stage that also notes which requests the fake had received when the module said it
    was about to make the post public."""

    def __init__(self, fake: BlueskyFake, *, refuse: bool = False) -> None:
        super().__init__(refuse=refuse)
        self.fake = fake
        self.received_before: list[str] | None = None

    async def publishing(self) -> PublishOutcome | None:
        self.received_before = [call.path for call in self.fake.requests]
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
async def fake() -> AsyncIterator[BlueskyFake]:
    server = BlueskyFake()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def account(fake: BlueskyFake) -> Account:
    return fake.add_account("kairos.test", "app-pass-1234")


@pytest.fixture
def client(
    http: httpx.AsyncClient, media: MediaFetcher, fake: BlueskyFake
) -> bluesky.BlueskyClient:
    return bluesky.create(context(http, media, fake))


@pytest.fixture
async def video(store: FileStore, tmp_path: Path) -> StoredMedia:
    return await stored_video(store, tmp_path)


def request_for(
    fake: BlueskyFake, account: Account, video: StoredMedia, stage: RecordingStage, **fields: Any
) -> PublishRequest:
    access, refresh = fake.session_for(account.did)
    values: dict[str, Any] = {
        "access_token": access,
        "refresh_token": refresh,
        "handle": account.handle,
        "extra": {"did": account.did},
        "stored_media": [video],
        "stage": stage,
    }
    values.update(fields)
    return publish_request("A video from Kairos", **values)


def paths(fake: BlueskyFake) -> list[str]:
    return [call.path for call in fake.requests]


def service_claims(fake: BlueskyFake, index: int) -> dict[str, Any]:
    """The claims of the token the `index`-th getServiceAuth answered with."""
    answered = [claims for claims in fake.service_tokens.values()]
    return answered[index]


async def test_a_video_post_is_published_through_the_video_service(
    client: bluesky.BlueskyClient, fake: BlueskyFake, account: Account, video: StoredMedia
) -> None:
    stage = OrderedStage(fake)
    before = time.time()

    outcome = await client.publish(request_for(fake, account, video, stage))

    assert outcome.result == Result.PUBLISHED, outcome
    [post] = fake.posts
    assert outcome.platform_post_id == post["uri"]
    assert outcome.url == f"https://bsky.app/profile/kairos.test/post/{post['rkey']}"
    assert paths(fake) == [SERVICE_AUTH, LIMITS, SERVICE_AUTH, UPLOAD, JOB, JOB, CREATE]
    # The service got exactly the stored bytes, as the video's type, for the account.
    [job] = fake.video_jobs.values()
    assert hashlib.sha256(job["content"]).hexdigest() == video.sha256
    assert len(job["content"]) == video.size
    upload = fake.calls("POST", UPLOAD)[0]
    assert upload.headers["content-type"] == "video/mp4"
    assert upload.headers["content-length"] == str(video.size)
    assert upload.query == {"did": account.did, "name": "video-1.mp4"}
    # Two tokens: one for the video service's own limits, one the service hands to the PDS.
    limits_token, upload_token = service_claims(fake, 0), service_claims(fake, 1)
    assert (limits_token["aud"], limits_token["lxm"]) == (
        "did:web:video.bsky.app",
        "app.bsky.video.getUploadLimits",
    )
    assert (upload_token["aud"], upload_token["lxm"]) == (
        fake.pds_did,
        "com.atproto.repo.uploadBlob",
    )
    assert upload_token["iss"] == account.did
    assert before + 1790 <= upload_token["exp"] <= time.time() + 1810
    # The record embeds the blob the job stored in the repo, with the probed aspect ratio.
    record = post["record"]
    assert record["embed"] == {
        "$type": "app.bsky.embed.video",
        "video": job["blob"],
        "aspectRatio": {"width": 360, "height": 640},
    }
    assert fake.blobs[job["blob"]["ref"]["$link"]]["content"] == job["content"]
    # Polled with the call slot given back, then marked just before the record, once.
    assert stage.calls == [("pause", 1.5), ("pause", 1.5), "publishing"]
    assert stage.received_before == paths(fake)[:-1]


async def test_the_stage_refusing_means_no_record(
    client: bluesky.BlueskyClient, fake: BlueskyFake, account: Account, video: StoredMedia
) -> None:
    stage = OrderedStage(fake, refuse=True)

    outcome = await client.publish(request_for(fake, account, video, stage))

    assert (outcome.result, outcome.code) == (Result.RETRYABLE, "stage")
    assert CREATE not in paths(fake)
    assert fake.posts == []
    assert stage.published_marks == 1


async def test_a_failed_job_is_permanent_with_the_services_words(
    client: bluesky.BlueskyClient, fake: BlueskyFake, account: Account, video: StoredMedia
) -> None:
    fake.fail_next("process", "reject")
    stage = RecordingStage()

    outcome = await client.publish(request_for(fake, account, video, stage))

    assert outcome.result == Result.PERMANENT
    assert outcome.code == "encoding_failure"
    assert "Failed to process video" in outcome.message
    assert CREATE not in paths(fake)
    assert stage.published_marks == 0


@pytest.mark.parametrize("fault", ["server_error", "rate_limit"])
async def test_an_upload_refused_for_now_is_retryable_and_posts_nothing(
    client: bluesky.BlueskyClient,
    fake: BlueskyFake,
    account: Account,
    video: StoredMedia,
    fault: str,
) -> None:
    fake.fail_next("upload_video", fault)
    stage = RecordingStage()

    outcome = await client.publish(request_for(fake, account, video, stage))

    assert outcome.result == Result.RETRYABLE
    assert outcome.http_status == (500 if fault == "server_error" else 429)
    assert CREATE not in paths(fake)
    assert stage.calls == []


async def test_a_lost_upload_answer_is_retryable_and_the_retry_finds_the_same_job(
    client: bluesky.BlueskyClient, fake: BlueskyFake, account: Account, video: StoredMedia
) -> None:
    fake.fail_next("upload_video", "hang")
    first = await client.publish(request_for(fake, account, video, RecordingStage()))

    assert (first.result, first.code) == (Result.RETRYABLE, "upload_timeout")
    assert fake.posts == []
    [job] = fake.video_jobs.values()

    stage = RecordingStage()
    second = await client.publish(request_for(fake, account, video, stage))

    assert second.result == Result.PUBLISHED, second
    # The service knew the file: 409 already_exists named the same job, which was polled.
    assert list(fake.video_jobs) == [job["jobId"]]
    answered = [call for call in fake.calls("GET", JOB)]
    assert {call.query["jobId"] for call in answered} == {job["jobId"]}
    assert fake.posts[0]["record"]["embed"]["video"] == job["blob"]
    assert stage.published_marks == 1


async def test_a_job_still_encoding_at_the_bound_is_retryable(
    client: bluesky.BlueskyClient, fake: BlueskyFake, account: Account, video: StoredMedia
) -> None:
    fake.processing_polls = 1000
    client.video_wait = 3.0
    stage = RecordingStage()

    outcome = await client.publish(request_for(fake, account, video, stage))

    assert (outcome.result, outcome.code) == (Result.RETRYABLE, "video_processing")
    assert "JOB_STATE_ENCODING" in outcome.message
    assert stage.calls == [("pause", 1.5), ("pause", 1.5)]
    assert CREATE not in paths(fake)


async def test_a_lost_poll_answer_is_retryable(
    client: bluesky.BlueskyClient, fake: BlueskyFake, account: Account, video: StoredMedia
) -> None:
    fake.fail_next("job_status", "hang")

    outcome = await client.publish(request_for(fake, account, video, RecordingStage()))

    assert outcome.result == Result.RETRYABLE
    assert CREATE not in paths(fake)


@pytest.mark.parametrize(
    ("refusal", "result", "code"),
    [
        ("User has exceeded daily upload videos limit", Result.RETRYABLE, "video_daily_limit"),
        ("Account is not old enough to upload videos", Result.PERMANENT, "video_not_allowed"),
    ],
)
async def test_the_accounts_upload_limits_are_asked_first(
    client: bluesky.BlueskyClient,
    fake: BlueskyFake,
    account: Account,
    video: StoredMedia,
    refusal: str,
    result: Result,
    code: str,
) -> None:
    fake.video_refusal = refusal

    outcome = await client.publish(request_for(fake, account, video, RecordingStage()))

    assert (outcome.result, outcome.code, outcome.message) == (result, code, refusal)
    assert paths(fake) == [SERVICE_AUTH, LIMITS]


async def test_the_daily_count_runs_out_after_25_videos(
    client: bluesky.BlueskyClient,
    fake: BlueskyFake,
    account: Account,
    video: StoredMedia,
) -> None:
    fake.usage(account.did)[0] = 25

    outcome = await client.publish(request_for(fake, account, video, RecordingStage()))

    assert (outcome.result, outcome.code) == (Result.RETRYABLE, "video_daily_limit")
    assert UPLOAD not in paths(fake)


async def test_a_video_over_100_mb_is_refused_before_any_call(
    client: bluesky.BlueskyClient, fake: BlueskyFake, account: Account, video: StoredMedia
) -> None:
    big = replace(video, size=100_000_001)

    outcome = await client.publish(request_for(fake, account, big, RecordingStage()))

    assert (outcome.result, outcome.code) == (Result.PERMANENT, "video_too_large")
    assert fake.requests == []


async def test_damaged_stored_bytes_are_refused_and_nothing_is_posted(
    client: bluesky.BlueskyClient, fake: BlueskyFake, account: Account, video: StoredMedia
) -> None:
    damaged = replace(video, sha256="0" * 64)

    outcome = await client.publish(request_for(fake, account, damaged, RecordingStage()))

    assert (outcome.result, outcome.code) == (Result.PERMANENT, "media")
    assert fake.video_jobs == {}
    assert fake.posts == []


async def test_a_token_without_an_audience_names_the_pds_by_its_host(
    client: bluesky.BlueskyClient, fake: BlueskyFake, video: StoredMedia
) -> None:
    """A session the fake did not issue (as under `make dev`) carries no `aud`: the PDS is then
    named by the did:web of the host Kairos reaches it at."""
    owner = fake.default_account
    request = publish_request(
        "A video",
        access_token="made-up-token",
        handle=owner.handle,
        extra={"did": owner.did},
        stored_media=[video],
        stage=RecordingStage(),
    )

    outcome = await client.publish(request)

    assert outcome.result == Result.PUBLISHED, outcome
    upload_token = service_claims(fake, 1)
    assert upload_token["aud"] == did_web(f"127.0.0.1:{fake.port}")


def test_the_fakes_access_tokens_name_the_pds(fake: BlueskyFake, account: Account) -> None:
    access, _ = fake.session_for(account.did)
    assert claims_of(access)["aud"] == fake.pds_did
    assert bluesky.pds_audience(access, "https://elsewhere.example") == fake.pds_did
    assert bluesky.pds_audience("opaque", "http://127.0.0.1:8080") == "did:web:127.0.0.1%3A8080"


async def test_the_video_service_is_its_own_base_url(
    http: httpx.AsyncClient, media: MediaFetcher, fake: BlueskyFake
) -> None:
    ctx = context(http, media, fake)
    ctx = replace(ctx, urls={**ctx.urls, "bluesky.video": "http://video.example"})
    client = bluesky.create(ctx)
    assert client.video_base == "http://video.example"
    assert client.default_base == fake.url
    assert bluesky.create(replace(ctx, urls={})).video_base == "https://video.bsky.app"


async def test_service_auth_keeps_the_pds_rules_for_expiry(
    http: httpx.AsyncClient, fake: BlueskyFake, account: Account
) -> None:
    access, _ = fake.session_for(account.did)
    ask = f"{fake.url}/xrpc/com.atproto.server.getServiceAuth"
    headers = {"authorization": f"Bearer {access}"}
    far = str(int(time.time() + 7200))
    answer = await http.get(
        ask, params={"aud": fake.pds_did, "lxm": "x.y.z", "exp": far}, headers=headers
    )
    assert answer.status_code == 400
    assert json.loads(answer.content)["error"] == "BadExpiration"
    answer = await http.get(ask, params={"aud": "video.bsky.app"}, headers=headers)
    assert answer.status_code == 400
    assert "aud must be a valid atproto DID" in answer.json()["message"]
