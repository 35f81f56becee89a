"""The TikTok client against the TikTok fake, over real HTTP: photo posts and token refresh."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from kairos_fakes.media import MediaHost
from kairos_fakes.tiktok import TikTokFake
from kairos_publisher.media import MediaFetcher
from kairos_publisher.platforms import tiktok
from kairos_publisher.platforms.base import PublishOutcome, PublishRequest, RefreshedTokens, Result
from support.platforms import context, publish_request

APP = {"KAIROS_TIKTOK_CLIENT_KEY": "app-key", "KAIROS_TIKTOK_CLIENT_SECRET": "app-secret"}


@pytest.fixture
async def fake() -> AsyncIterator[TikTokFake]:
    server = TikTokFake()
    await server.start()
    yield server
    await server.stop()


def client(http: httpx.AsyncClient, media: MediaFetcher, fake: TikTokFake) -> tiktok.TikTokClient:
    made = tiktok.create(context(http, media, fake, environ=APP))
    made.poll_interval = 0.05
    made.max_wait = 2.0
    return made


def request(
    media_host: MediaHost,
    content: str = "Hello from Kairos",
    settings: dict[str, str] | None = None,
    **fields: object,
) -> PublishRequest:
    defaults: dict[str, object] = {
        "media_urls": [media_host.image_url("one.jpg"), media_host.image_url("two.jpg")],
        "settings": {"privacy_level": "PUBLIC_TO_EVERYONE", **(settings or {})},
    }
    return publish_request(content, **{**defaults, **fields})


async def test_a_photo_post_goes_out_as_tiktok_expects_and_its_id_and_url_are_recorded(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: TikTokFake
) -> None:
    settings = {
        "title": "Sourdough",
        "disable_comment": "true",
        "auto_add_music": "true",
        "photo_cover_index": "1",
    }
    outcome = await client(http, media, fake).publish(request(media_host, settings=settings))

    assert outcome.result == Result.PUBLISHED, outcome
    [post] = fake.posts
    assert outcome.platform_post_id == post["id"]
    assert outcome.url == f"https://www.tiktok.com/@kairos/video/{post['id']}"
    photos = [media_host.image_url("one.jpg"), media_host.image_url("two.jpg")]
    assert [r.path for r in fake.requests][:2] == [
        "/v2/post/publish/creator_info/query/",
        "/v2/post/publish/content/init/",
    ]
    [init] = fake.calls("POST", "/content/init/")
    assert init.headers["authorization"] == "Bearer token-1"
    assert init.headers["content-type"] == "application/json; charset=UTF-8"
    assert json.loads(init.body) == {
        "media_type": "PHOTO",
        "post_mode": "DIRECT_POST",
        "post_info": {
            "privacy_level": "PUBLIC_TO_EVERYONE",
            "disable_comment": True,
            "auto_add_music": True,
            "description": "Hello from Kairos",
            "title": "Sourdough",
        },
        "source_info": {"source": "PULL_FROM_URL", "photo_images": photos, "photo_cover_index": 1},
    }
    [publish_id] = fake.publishes
    statuses = fake.calls("POST", "/status/fetch/")
    assert statuses
    assert all(json.loads(r.body) == {"publish_id": publish_id} for r in statuses)
    # TikTok pulled the photos itself; the publisher never downloaded them.
    assert sorted(r.path for r in media_host.requests) == ["/images/one.jpg", "/images/two.jpg"]


async def test_a_post_only_its_creator_sees_records_the_publish_id_and_the_profile(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: TikTokFake
) -> None:
    outcome = await client(http, media, fake).publish(
        request(media_host, settings={"privacy_level": "SELF_ONLY"})
    )

    assert outcome.result == Result.PUBLISHED
    [publish_id] = fake.publishes
    assert outcome.platform_post_id == publish_id
    assert outcome.url == "https://www.tiktok.com/@kairos"
    assert [p["privacy_level"] for p in fake.posts] == ["SELF_ONLY"]


async def test_a_privacy_level_the_creator_does_not_have_is_refused_before_init(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: TikTokFake
) -> None:
    fake.privacy_level_options = ["FOLLOWER_OF_CREATOR", "MUTUAL_FOLLOW_FRIENDS", "SELF_ONLY"]
    outcome = await client(http, media, fake).publish(request(media_host))

    assert (outcome.result, outcome.code) == (Result.PERMANENT, "privacy_level_option_mismatch")
    assert "PUBLIC_TO_EVERYONE" in outcome.message
    assert "FOLLOWER_OF_CREATOR, MUTUAL_FOLLOW_FRIENDS, SELF_ONLY" in outcome.message
    assert fake.calls("POST", "/content/init/") == []
    assert fake.posts == []


async def test_tiktoks_own_privacy_mismatch_at_init_is_permanent(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: TikTokFake
) -> None:
    """The creator's options changed between the query and the init."""
    fake.fail_next("create", "reject", message="privacy_level_option_mismatch")
    outcome = await client(http, media, fake).publish(request(media_host))

    assert outcome.result == Result.PERMANENT
    assert (outcome.http_status, outcome.code) == (400, "privacy_level_option_mismatch")
    assert "log_id" in outcome.message
    assert fake.posts == []


@pytest.mark.parametrize("count", [0, 36])
async def test_a_post_without_1_to_35_photos_is_refused_before_any_call(
    http: httpx.AsyncClient,
    media: MediaFetcher,
    media_host: MediaHost,
    fake: TikTokFake,
    count: int,
) -> None:
    urls = [media_host.image_url(f"{n}.jpg") for n in range(count)]
    outcome = await client(http, media, fake).publish(request(media_host, media_urls=urls))

    assert (outcome.result, outcome.code) == (Result.PERMANENT, "media")
    assert fake.requests == []


async def test_a_target_without_a_privacy_level_is_refused_before_any_call(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: TikTokFake
) -> None:
    without = publish_request(media_urls=[media_host.image_url("a.jpg")], settings={})
    outcome = await client(http, media, fake).publish(without)

    assert (outcome.result, outcome.code) == (Result.PERMANENT, "privacy_level")
    assert fake.requests == []


async def test_expired_token_is_auth_then_refresh_then_publishes(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: TikTokFake
) -> None:
    fake.client_key, fake.client_secret = "app-key", "app-secret"
    access, refresh = fake.issue()
    fake.tokens.expire(access)
    tiktok_client = client(http, media, fake)
    stale = request(media_host, access_token=access, refresh_token=refresh)

    refused = await tiktok_client.publish(stale)
    tokens = await tiktok_client.refresh(stale)
    assert isinstance(tokens, RefreshedTokens)
    published = await tiktok_client.publish(
        request(media_host, access_token=tokens.access_token, refresh_token=tokens.refresh_token)
    )
    spent = await tiktok_client.refresh(stale)  # TikTok rotated the old refresh token away

    assert (refused.result, refused.http_status, refused.code) == (
        Result.AUTH,
        401,
        "access_token_invalid",
    )
    assert refused.message.startswith("The access token is invalid or not found in the request.")
    assert tokens.refresh_token not in ("", refresh)
    assert tokens.expires_at is not None
    assert timedelta(minutes=119) < tokens.expires_at - datetime.now(UTC) <= timedelta(hours=2)
    assert published.result == Result.PUBLISHED
    assert len(fake.posts) == 1
    assert spent == "TikTok refused the refresh with HTTP 400: Refresh token is invalid or expired."
    first, _ = fake.calls("POST", "/v2/oauth/token/")
    assert first.headers["content-type"] == "application/x-www-form-urlencoded"
    assert dict(httpx.QueryParams(first.body.decode())) == {
        "client_key": "app-key",
        "client_secret": "app-secret",
        "grant_type": "refresh_token",
        "refresh_token": refresh,
    }
    assert tiktok_client.refresh_margin == timedelta(minutes=15)


async def test_a_token_without_the_publish_scope_is_auth(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: TikTokFake
) -> None:
    fake.fail_next("creator_info", "reject", message="scope_not_authorized")
    outcome = await client(http, media, fake).publish(request(media_host))

    assert (outcome.result, outcome.http_status, outcome.code) == (
        Result.AUTH,
        401,
        "scope_not_authorized",
    )
    assert fake.calls("POST", "/content/init/") == []


async def test_refresh_needs_a_refresh_token_and_the_apps_credentials(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: TikTokFake
) -> None:
    _, refresh = fake.issue()
    without_token = await client(http, media, fake).refresh(request(media_host))
    without_app = await tiktok.create(context(http, media, fake)).refresh(
        request(media_host, refresh_token=refresh)
    )

    assert without_token == "no TikTok refresh token; the account must be connected again"
    assert without_app == "no TikTok client_key/client_secret to refresh with"
    assert fake.requests == []


@pytest.mark.parametrize(("kind", "status"), [("rate_limit", 429), ("server_error", 500)])
async def test_a_token_endpoint_that_cannot_answer_now_only_delays(
    http: httpx.AsyncClient,
    media: MediaFetcher,
    media_host: MediaHost,
    fake: TikTokFake,
    kind: str,
    status: int,
) -> None:
    _, refresh = fake.issue()
    fake.fail_next("refresh", kind)
    outcome = await client(http, media, fake).refresh(request(media_host, refresh_token=refresh))

    assert isinstance(outcome, PublishOutcome)
    assert (outcome.result, outcome.http_status) == (Result.RETRYABLE, status)
    again = await client(http, media, fake).refresh(request(media_host, refresh_token=refresh))
    assert isinstance(again, RefreshedTokens)  # the refresh token was not spent


async def test_rate_limit_is_retried_after_tiktoks_minute(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: TikTokFake
) -> None:
    fake.fail_next("create", "rate_limit")
    before = datetime.now(UTC)
    outcome = await client(http, media, fake).publish(request(media_host))

    assert outcome.result == Result.RETRYABLE
    assert (outcome.http_status, outcome.code) == (429, "rate_limit_exceeded")
    assert outcome.retry_not_before is not None
    assert before + timedelta(seconds=59) <= outcome.retry_not_before
    assert outcome.retry_not_before <= datetime.now(UTC) + timedelta(minutes=1)
    assert fake.posts == []


@pytest.mark.parametrize(
    "code",
    [
        "spam_risk_too_many_posts",
        "spam_risk_user_banned_from_posting",
        "url_ownership_unverified",
        "unaudited_client_can_only_post_to_private_accounts",
    ],
)
async def test_tiktoks_refusals_at_init_are_permanent_with_its_words(
    http: httpx.AsyncClient,
    media: MediaFetcher,
    media_host: MediaHost,
    fake: TikTokFake,
    code: str,
) -> None:
    fake.fail_next("create", "reject", message=code)
    outcome = await client(http, media, fake).publish(request(media_host))

    assert outcome.result == Result.PERMANENT
    assert (outcome.http_status, outcome.code) == (403, code)
    assert fake.posts == []
    assert fake.publishes == {}


async def test_photos_from_an_unverified_url_prefix_are_refused(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: TikTokFake
) -> None:
    fake.verified_prefixes = ["https://cdn.kairos.example/"]
    outcome = await client(http, media, fake).publish(request(media_host))

    assert (outcome.result, outcome.code) == (Result.PERMANENT, "url_ownership_unverified")
    assert outcome.message.startswith("To use PULL_FROM_URL")


async def test_server_error_at_init_is_retryable_and_made_nothing(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: TikTokFake
) -> None:
    fake.fail_next("create", "server_error")
    outcome = await client(http, media, fake).publish(request(media_host))

    assert (outcome.result, outcome.http_status, outcome.code) == (
        Result.RETRYABLE,
        500,
        "internal_error",
    )
    assert fake.publishes == {}


async def test_a_failed_publish_is_permanent_with_its_fail_reason(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: TikTokFake
) -> None:
    fake.fail_next("process", "reject", message="picture_size_check_failed")
    outcome = await client(http, media, fake).publish(request(media_host))

    assert (outcome.result, outcome.code) == (Result.PERMANENT, "picture_size_check_failed")
    [publish_id] = fake.publishes
    assert outcome.message == f"TikTok did not publish {publish_id}: picture_size_check_failed"
    assert fake.posts == []


@pytest.mark.parametrize(
    ("photo", "reason"), [("gone.bmp", "photo_pull_failed"), ("a.png", "file_format_check_failed")]
)
async def test_a_photo_tiktok_cannot_pull_or_take_fails_the_post(
    http: httpx.AsyncClient,
    media: MediaFetcher,
    media_host: MediaHost,
    fake: TikTokFake,
    photo: str,
    reason: str,
) -> None:
    urls = [media_host.image_url("one.jpg"), media_host.image_url(photo)]
    outcome = await client(http, media, fake).publish(request(media_host, media_urls=urls))

    assert (outcome.result, outcome.code) == (Result.PERMANENT, reason)
    assert fake.posts == []


async def test_an_init_whose_answer_never_came_is_unknown_and_the_post_went_out(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: TikTokFake
) -> None:
    fake.fail_next("create", "hang")
    outcome = await client(http, media, fake).publish(request(media_host))

    assert outcome.result == Result.UNKNOWN
    assert fake.calls("POST", "/status/fetch/") == []
    assert len(fake.publishes) == 1  # TikTok took it: a retry would post it twice


async def test_a_post_still_processing_at_the_bound_is_unknown_naming_its_publish(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: TikTokFake
) -> None:
    fake.processing_seconds = 30
    tiktok_client = client(http, media, fake)
    tiktok_client.max_wait = 0.5
    outcome = await tiktok_client.publish(request(media_host))

    assert (outcome.result, outcome.code) == (Result.UNKNOWN, "publish_pending")
    [publish_id] = fake.publishes
    assert publish_id in outcome.message
    assert "still PROCESSING_DOWNLOAD after 0.5 s" in outcome.message
    assert len(fake.calls("POST", "/status/fetch/")) > 1
    assert len(fake.calls("POST", "/content/init/")) == 1


async def test_a_status_answer_that_fails_once_is_polled_again(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: TikTokFake
) -> None:
    fake.fail_next("status", "server_error")
    fake.fail_next("status", "rate_limit")
    outcome = await client(http, media, fake).publish(request(media_host))

    assert outcome.result == Result.PUBLISHED
    assert len(fake.calls("POST", "/status/fetch/")) >= 3
    assert len(fake.posts) == 1


async def test_a_token_refused_while_polling_is_unknown_not_auth(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: TikTokFake
) -> None:
    """AUTH would refresh and send the post again; TikTok already has it."""
    fake.processing_seconds = 0.3
    fake.fail_next("status", "expire_token")
    outcome = await client(http, media, fake).publish(request(media_host))

    assert (outcome.result, outcome.code) == (Result.UNKNOWN, "publish_pending")
    assert "access_token_invalid" in outcome.message
    assert len(fake.calls("POST", "/content/init/")) == 1
