"""The Pinterest client against the Pinterest fake, over real HTTP."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from kairos_fakes.media import MediaHost
from kairos_fakes.pinterest import PinterestFake
from kairos_publisher.media import MediaFetcher
from kairos_publisher.platforms import pinterest
from kairos_publisher.platforms.base import PublishOutcome, PublishRequest, RefreshedTokens, Result
from support.platforms import context, publish_request

BOARD = "549755885175"
APP = {"KAIROS_PINTEREST_CLIENT_ID": "app-id", "KAIROS_PINTEREST_CLIENT_SECRET": "app-secret"}


@pytest.fixture
async def fake() -> AsyncIterator[PinterestFake]:
    server = PinterestFake()
    await server.start()
    yield server
    await server.stop()


def client(
    http: httpx.AsyncClient, media: MediaFetcher, fake: PinterestFake
) -> pinterest.PinterestClient:
    return pinterest.create(context(http, media, fake, environ=APP))


def request(
    media_host: MediaHost, content: str = "Hello from Kairos", **fields: object
) -> PublishRequest:
    defaults: dict[str, object] = {
        "page_id": BOARD,
        "media_urls": [media_host.image_url("pin.jpg")],
    }
    return publish_request(content, **{**defaults, **fields})


async def test_an_image_pin_is_saved_to_the_board_as_pinterest_expects(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: PinterestFake
) -> None:
    outcome = await client(http, media, fake).publish(request(media_host))

    assert outcome.result == Result.PUBLISHED
    [pin] = fake.posts
    assert outcome.platform_post_id == pin["id"]
    assert outcome.platform_post_id.isdigit()
    assert outcome.url == f"https://www.pinterest.com/pin/{pin['id']}"
    assert outcome.http_status == 201
    [sent] = fake.calls("POST", "/v5/pins")
    assert sent.headers["authorization"] == "Bearer token-1"
    assert sent.headers["content-type"] == "application/json"
    assert json.loads(sent.body) == {
        "board_id": BOARD,
        "description": "Hello from Kairos",
        "media_source": {"source_type": "image_url", "url": media_host.image_url("pin.jpg")},
    }
    assert pin["board_id"] == BOARD
    assert pin["media"]["images"]["originals"]["url"] == media_host.image_url("pin.jpg")
    # Pinterest fetched the image itself; the publisher never downloaded it.
    assert [r.path for r in media_host.requests] == ["/images/pin.jpg"]


async def test_the_targets_settings_title_the_pin_link_it_and_choose_its_board(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: PinterestFake
) -> None:
    settings = {
        "title": "Sourdough, step by step",
        "link": "https://example.com/bread",
        "alt_text": "A loaf on a board",
        "board_id": "1122334455",
    }
    outcome = await client(http, media, fake).publish(request(media_host, settings=settings))

    assert outcome.result == Result.PUBLISHED
    [pin] = fake.posts
    assert {key: pin[key] for key in settings} == settings
    [sent] = fake.calls("POST", "/v5/pins")
    assert json.loads(sent.body)["board_id"] == "1122334455"


async def test_an_image_pinterest_cannot_fetch_is_retried_and_nothing_is_pinned(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: PinterestFake
) -> None:
    missing = f"{media_host.url}/images/gone.bmp"
    outcome = await client(http, media, fake).publish(request(media_host, media_urls=[missing]))

    assert outcome.result == Result.RETRYABLE
    assert (outcome.http_status, outcome.code) == (400, "1")
    assert outcome.message == "Sorry we could not fetch the image."
    assert fake.posts == []


async def test_a_board_that_does_not_exist_is_permanent(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: PinterestFake
) -> None:
    fake.boards = {"1234"}
    outcome = await client(http, media, fake).publish(request(media_host))

    assert outcome.result == Result.PERMANENT
    assert (outcome.http_status, outcome.code) == (404, "40")
    assert outcome.message == "Board not found."
    assert fake.posts == []


async def test_a_description_over_800_characters_is_permanent(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: PinterestFake
) -> None:
    outcome = await client(http, media, fake).publish(request(media_host, "é" * 801))

    assert outcome.result == Result.PERMANENT
    assert (outcome.http_status, outcome.code) == (400, "1")
    assert "'description'" in outcome.message
    assert fake.posts == []


@pytest.mark.parametrize("count", [0, 2])
async def test_a_pin_without_exactly_one_image_is_refused_before_any_call(
    http: httpx.AsyncClient,
    media: MediaFetcher,
    media_host: MediaHost,
    fake: PinterestFake,
    count: int,
) -> None:
    urls = [media_host.image_url(f"{n}.png") for n in range(count)]
    outcome = await client(http, media, fake).publish(request(media_host, media_urls=urls))

    assert (outcome.result, outcome.code) == (Result.PERMANENT, "media")
    assert fake.requests == []


async def test_an_account_without_a_numeric_board_is_refused_before_any_call(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: PinterestFake
) -> None:
    outcome = await client(http, media, fake).publish(request(media_host, page_id="my-board"))

    assert (outcome.result, outcome.code) == (Result.PERMANENT, "no_board")
    assert fake.requests == []


async def test_expired_token_is_auth_then_refresh_then_publishes(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: PinterestFake
) -> None:
    fake.client_id, fake.client_secret = "app-id", "app-secret"
    access, refresh = fake.issue()
    fake.tokens.expire(access)
    pinterest_client = client(http, media, fake)
    stale = request(media_host, access_token=access, refresh_token=refresh)

    refused = await pinterest_client.publish(stale)
    tokens = await pinterest_client.refresh(stale)
    assert isinstance(tokens, RefreshedTokens)
    published = await pinterest_client.publish(
        request(media_host, access_token=tokens.access_token, refresh_token=tokens.refresh_token)
    )
    spent = await pinterest_client.refresh(stale)  # the old refresh token was rotated away

    assert (refused.result, refused.http_status, refused.code) == (Result.AUTH, 401, "2")
    assert refused.message == "Authentication failed."
    assert tokens.refresh_token not in ("", refresh)
    assert tokens.expires_at is not None
    assert timedelta(days=29) < tokens.expires_at - datetime.now(UTC) <= timedelta(days=30)
    assert published.result == Result.PUBLISHED
    assert len(fake.posts) == 1
    assert isinstance(spent, str)
    assert "HTTP 400" in spent
    first, _ = fake.calls("POST", "/v5/oauth/token")
    assert (
        first.headers["authorization"] == "Basic " + base64.b64encode(b"app-id:app-secret").decode()
    )
    assert dict(httpx.QueryParams(first.body.decode())) == {
        "grant_type": "refresh_token",
        "refresh_token": refresh,
    }
    assert pinterest_client.refresh_margin == timedelta(days=1)


async def test_expire_token_fault_is_auth(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: PinterestFake
) -> None:
    fake.fail_next("create", "expire_token")
    outcome = await client(http, media, fake).publish(request(media_host))

    assert (outcome.result, outcome.http_status) == (Result.AUTH, 401)
    assert fake.posts == []


async def test_refresh_needs_a_refresh_token_and_the_apps_credentials(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: PinterestFake
) -> None:
    _, refresh = fake.issue()
    without_token = await client(http, media, fake).refresh(request(media_host))
    without_app = await pinterest.create(context(http, media, fake)).refresh(
        request(media_host, refresh_token=refresh)
    )

    assert isinstance(without_token, str)
    assert "connected again" in without_token
    assert isinstance(without_app, str)
    assert "client_id" in without_app
    assert fake.requests == []


async def test_refresh_with_the_wrong_app_credentials_is_refused_for_good(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: PinterestFake
) -> None:
    fake.client_id, fake.client_secret = "app-id", "another-secret"
    _, refresh = fake.issue()
    reason = await client(http, media, fake).refresh(request(media_host, refresh_token=refresh))

    assert reason == "refresh refused with HTTP 401: Authentication failed."


@pytest.mark.parametrize(("kind", "status"), [("rate_limit", 429), ("server_error", 500)])
async def test_a_token_endpoint_that_cannot_answer_now_only_delays(
    http: httpx.AsyncClient,
    media: MediaFetcher,
    media_host: MediaHost,
    fake: PinterestFake,
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


async def test_rate_limit_is_retryable_without_a_wait_of_pinterests_own(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: PinterestFake
) -> None:
    fake.fail_next("create", "rate_limit", seconds=30)
    outcome = await client(http, media, fake).publish(request(media_host))

    assert outcome.result == Result.RETRYABLE
    assert (outcome.http_status, outcome.code) == (429, "8")
    assert outcome.message.startswith("This request exceeded a rate limit.")
    assert outcome.retry_not_before is None
    assert outcome.blocked_until is None
    assert fake.posts == []


async def test_a_spam_block_is_permanent(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: PinterestFake
) -> None:
    fake.fail_next(
        "create",
        "rate_limit",
        message="Your request was blocked by a block (Pins) we have in place to combat spam.",
    )
    outcome = await client(http, media, fake).publish(request(media_host))

    assert outcome.result == Result.PERMANENT
    assert (outcome.http_status, outcome.code) == (429, "8")
    assert "spam" in outcome.message


async def test_server_error_is_retryable(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: PinterestFake
) -> None:
    fake.fail_next("create", "server_error")
    outcome = await client(http, media, fake).publish(request(media_host))

    assert (outcome.result, outcome.http_status) == (Result.RETRYABLE, 500)
    assert fake.posts == []


async def test_forbidden_is_permanent_with_pinterests_message(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: PinterestFake
) -> None:
    fake.fail_next("create", "reject")
    outcome = await client(http, media, fake).publish(request(media_host))

    assert outcome.result == Result.PERMANENT
    assert (outcome.http_status, outcome.code) == (403, "29")
    assert outcome.message == "You are not permitted to access that resource."


async def test_timeout_after_sending_is_unknown(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: PinterestFake
) -> None:
    fake.fail_next("create", "hang")
    outcome = await client(http, media, fake).publish(request(media_host))

    assert outcome.result == Result.UNKNOWN
    assert len(fake.posts) == 1  # it was pinned: a retry would pin it twice
