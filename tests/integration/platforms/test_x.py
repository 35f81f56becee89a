"""The X client against the fake X API v2, over real HTTP."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import httpx
import pytest

from kairos_fakes.media import GIF, JPEG, MediaHost, png
from kairos_fakes.x import DUPLICATE, XFake, form_parts
from kairos_publisher.media import MediaFetcher
from kairos_publisher.platforms import x
from kairos_publisher.platforms.base import PublishOutcome, RefreshedTokens, Result
from support.platforms import context, publish_request

CLIENT_ENV = {"KAIROS_X_CLIENT_ID": "client-1"}


@pytest.fixture
async def fake() -> AsyncIterator[XFake]:
    server = XFake()
    await server.start()
    yield server
    await server.stop()


def client(
    http: httpx.AsyncClient,
    media: MediaFetcher,
    fake: XFake,
    environ: dict[str, str] | None = None,
) -> x.XClient:
    return x.create(context(http, media, fake, environ=environ))


def close_to(instant: datetime | None, expected: datetime, slack: float = 1.5) -> bool:
    return instant is not None and abs((instant - expected).total_seconds()) <= slack


async def test_text_post_sends_what_x_expects(
    http: httpx.AsyncClient, media: MediaFetcher, fake: XFake
) -> None:
    access, _ = fake.grant()
    outcome = await client(http, media, fake).publish(publish_request(access_token=access))

    assert outcome.result is Result.PUBLISHED, outcome
    [post] = fake.posts
    assert outcome.platform_post_id == post["id"]
    assert outcome.url == f"https://x.com/kairos/status/{post['id']}"
    assert outcome.http_status == 201
    assert outcome.blocked_until is None
    [sent] = fake.calls("POST")
    assert sent.path == "/2/tweets"
    assert sent.headers["authorization"] == f"Bearer {access}"
    assert sent.headers["content-type"] == "application/json"
    assert json.loads(sent.body) == {"text": "Hello from Kairos"}
    assert (post["text"], post["author"]) == ("Hello from Kairos", "kairos")
    assert post["in_reply_to"] == ""


@pytest.mark.parametrize(
    ("handle", "prefix"),
    [("@kairos_app", "https://x.com/kairos_app/status/"), ("", "https://x.com/i/web/status/")],
)
async def test_public_url_uses_the_handle_without_at_or_the_generic_form(
    http: httpx.AsyncClient, media: MediaFetcher, fake: XFake, handle: str, prefix: str
) -> None:
    outcome = await client(http, media, fake).publish(publish_request(handle=handle))

    assert outcome.result is Result.PUBLISHED, outcome
    assert outcome.url == prefix + fake.posts[0]["id"]


async def test_images_are_uploaded_as_bytes_then_attached(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: XFake
) -> None:
    urls = [media_host.image_url("a.png"), media_host.image_url("b.jpg")]
    outcome = await client(http, media, fake).publish(publish_request(media_urls=urls))

    assert outcome.result is Result.PUBLISHED, outcome
    uploads = fake.calls("POST", "/2/media/upload")
    assert len(uploads) == 2
    sent = [form_parts(u.headers["content-type"], u.body) for u in uploads]
    assert [s["media"] for s in sent] == [("image/png", png()), ("image/jpeg", JPEG)]
    assert {s["media_category"][1] for s in sent} == {b"tweet_image"}
    assert all(u.headers["authorization"] == "Bearer token-1" for u in uploads)
    [tweet] = fake.calls("POST", "/2/tweets")
    media_ids = list(fake.uploads)
    assert json.loads(tweet.body) == {
        "text": "Hello from Kairos",
        "media": {"media_ids": media_ids},
    }
    assert fake.posts[0]["media_ids"] == media_ids


async def test_processing_media_is_polled_until_it_succeeded(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: XFake
) -> None:
    fake.processing_secs = 1
    request = publish_request(content="", media_urls=[media_host.image_url("c.gif")])
    outcome = await client(http, media, fake).publish(request)

    assert outcome.result is Result.PUBLISHED, outcome
    [upload] = fake.calls("POST", "/2/media/upload")
    assert form_parts(upload.headers["content-type"], upload.body)["media"] == ("image/gif", GIF)
    [media_id] = fake.uploads
    polls = fake.calls("GET", "/2/media/upload")
    assert polls, "STATUS was never polled"
    assert polls[0].query == {"command": "STATUS", "media_id": media_id}
    assert polls[0].at - upload.at >= 1.0  # after check_after_secs, not at once
    [tweet] = fake.calls("POST", "/2/tweets")
    assert tweet.at >= fake.uploads[media_id].ready_at
    assert json.loads(tweet.body) == {"media": {"media_ids": [media_id]}}


async def test_media_over_the_limits_is_refused_before_anything_is_sent(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: XFake
) -> None:
    big = f"{media_host.url}/big.png?bytes={x.IMAGE_LIMIT + 1}"
    too_big = await client(http, media, fake).publish(publish_request(media_urls=[big]))
    five = [media_host.image_url(f"{n}.png") for n in range(5)]
    too_many = await client(http, media, fake).publish(publish_request(media_urls=five))

    assert (too_big.result, too_big.code) == (Result.PERMANENT, "media"), too_big
    assert "limit" in too_big.message
    assert (too_many.result, too_many.code) == (Result.PERMANENT, "too_many_media"), too_many
    assert fake.requests == []


async def test_missing_media_is_permanent(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: XFake
) -> None:
    request = publish_request(media_urls=[media_host.image_url("gone.webm")])
    outcome = await client(http, media, fake).publish(request)

    assert (outcome.result, outcome.code) == (Result.PERMANENT, "media"), outcome
    assert "404" in outcome.message
    assert fake.requests == []


async def test_thread_parts_reply_to_the_part_before(
    http: httpx.AsyncClient, media: MediaFetcher, fake: XFake
) -> None:
    x_client = client(http, media, fake)
    ids: list[str] = []
    for n in range(3):
        reply_to = ids[-1] if ids else ""
        outcome = await x_client.publish(publish_request(f"part {n + 1}", reply_to=reply_to))
        assert outcome.result is Result.PUBLISHED, outcome
        ids.append(outcome.platform_post_id)

    assert [p["id"] for p in fake.posts] == ids
    assert [p["in_reply_to"] for p in fake.posts] == ["", ids[0], ids[1]]
    bodies = [json.loads(r.body) for r in fake.calls("POST", "/2/tweets")]
    assert bodies[0] == {"text": "part 1"}
    assert bodies[2] == {"text": "part 3", "reply": {"in_reply_to_tweet_id": ids[1]}}


async def test_resuming_a_thread_posts_only_the_missing_part(
    http: httpx.AsyncClient, media: MediaFetcher, fake: XFake
) -> None:
    first = client(http, media, fake)
    one = await first.publish(publish_request("part 1"))
    two = await first.publish(publish_request("part 2", reply_to=one.platform_post_id))
    fake.fail_next("create", "server_error")
    failed = await first.publish(publish_request("part 3", reply_to=two.platform_post_id))
    assert failed.result is Result.RETRYABLE, failed

    # A new publisher process picks up part 3 alone, with part 2's id.
    three = await client(http, media, fake).publish(
        publish_request("part 3", reply_to=two.platform_post_id)
    )

    assert three.result is Result.PUBLISHED, three
    assert [p["text"] for p in fake.posts] == ["part 1", "part 2", "part 3"]
    assert [p["in_reply_to"] for p in fake.posts] == [
        "",
        one.platform_post_id,
        two.platform_post_id,
    ]


async def test_expired_token_is_auth_then_refresh_and_publish(
    http: httpx.AsyncClient, media: MediaFetcher, fake: XFake
) -> None:
    access, refresh = fake.grant()
    fake.tokens.expire(access)
    x_client = client(http, media, fake, environ=CLIENT_ENV)
    request = publish_request(access_token=access, refresh_token=refresh)

    refused = await x_client.publish(request)
    assert (refused.result, refused.http_status) == (Result.AUTH, 401), refused
    assert refused.message == "Unauthorized"
    assert fake.posts == []

    tokens = await x_client.refresh(request)
    assert isinstance(tokens, RefreshedTokens), tokens
    assert tokens.refresh_token not in ("", refresh)  # rotated
    assert close_to(tokens.expires_at, datetime.now(UTC) + timedelta(hours=2))
    [sent] = fake.calls("POST", "/2/oauth2/token")
    assert sent.headers["content-type"] == "application/x-www-form-urlencoded"
    assert "authorization" not in sent.headers  # a public client names itself in the form
    assert parse_qs(sent.body.decode()) == {
        "grant_type": ["refresh_token"],
        "refresh_token": [refresh],
        "client_id": ["client-1"],
    }

    published = await x_client.publish(
        publish_request(access_token=tokens.access_token, refresh_token=tokens.refresh_token)
    )
    assert published.result is Result.PUBLISHED, published
    assert fake.posts[0]["author"] == "kairos"

    again = await x_client.refresh(request)  # the spent refresh token
    assert isinstance(again, str)
    assert "400" in again
    assert "invalid_request" in again
    assert "Value passed for the token was invalid." in again


async def test_confidential_client_refreshes_with_basic_auth(
    http: httpx.AsyncClient, media: MediaFetcher, fake: XFake
) -> None:
    fake.clients["client-2"] = "s3cret"
    _, refresh = fake.grant()
    extra = {"client_id": "client-2", "client_secret": "s3cret"}
    x_client = client(http, media, fake, environ=CLIENT_ENV)

    tokens = await x_client.refresh(publish_request(refresh_token=refresh, extra=extra))

    assert isinstance(tokens, RefreshedTokens), tokens
    [sent] = fake.calls("POST", "/2/oauth2/token")
    expected = base64.b64encode(b"client-2:s3cret").decode()
    assert sent.headers["authorization"] == f"Basic {expected}"
    wrong = {"client_id": "client-2", "client_secret": "wrong"}
    refused = await x_client.refresh(
        publish_request(refresh_token=tokens.refresh_token, extra=wrong)
    )
    assert isinstance(refused, str)
    assert "401" in refused
    assert "unauthorized_client" in refused


async def test_refresh_without_client_id_fails_without_calling(
    http: httpx.AsyncClient, media: MediaFetcher, fake: XFake
) -> None:
    answer = await client(http, media, fake).refresh(publish_request(refresh_token="r-1"))

    assert isinstance(answer, str)
    assert "client_id" in answer
    assert fake.requests == []


async def test_rate_limit_is_retryable_at_the_reset(
    http: httpx.AsyncClient, media: MediaFetcher, fake: XFake
) -> None:
    fake.fail_next("create", "rate_limit", seconds=30)
    outcome = await client(http, media, fake).publish(publish_request())

    assert (outcome.result, outcome.http_status, outcome.code) == (Result.RETRYABLE, 429, "429")
    assert close_to(outcome.retry_not_before, datetime.now(UTC) + timedelta(seconds=30))
    assert outcome.blocked_until == outcome.retry_not_before
    assert outcome.message == "Too Many Requests"
    assert fake.posts == []


async def test_used_up_budget_on_a_success_blocks_until_the_reset(
    http: httpx.AsyncClient, media: MediaFetcher, fake: XFake
) -> None:
    fake.limits["create"] = 1
    x_client = client(http, media, fake)

    published = await x_client.publish(publish_request("one"))
    refused = await x_client.publish(publish_request("two"))

    window = fake.windows[("create", "token-1")]
    reset = datetime.fromtimestamp(int(window.started + window.length), UTC)
    assert published.result is Result.PUBLISHED, published
    assert published.blocked_until == reset
    assert refused.result is Result.RETRYABLE, refused
    assert refused.retry_not_before == refused.blocked_until == reset
    assert [p["text"] for p in fake.posts] == ["one"]


async def test_server_error_is_retryable(
    http: httpx.AsyncClient, media: MediaFetcher, fake: XFake
) -> None:
    fake.fail_next("create", "server_error")
    outcome = await client(http, media, fake).publish(publish_request())

    assert (outcome.result, outcome.http_status) == (Result.RETRYABLE, 503), outcome
    assert outcome.blocked_until is None
    assert fake.posts == []


async def test_duplicate_content_is_permanent_with_x_words(
    http: httpx.AsyncClient, media: MediaFetcher, fake: XFake
) -> None:
    x_client = client(http, media, fake)
    first = await x_client.publish(publish_request("Same words"))
    second = await x_client.publish(publish_request("Same words"))

    assert first.result is Result.PUBLISHED, first
    assert (second.result, second.http_status) == (Result.PERMANENT, 403), second
    assert second.message == DUPLICATE
    assert len(fake.posts) == 1


async def test_permission_rejection_is_permanent(
    http: httpx.AsyncClient, media: MediaFetcher, fake: XFake
) -> None:
    fake.fail_next("create", "reject")
    outcome = await client(http, media, fake).publish(publish_request())

    assert (outcome.result, outcome.http_status) == (Result.PERMANENT, 403), outcome
    assert outcome.message == "You are not permitted to perform this action."
    assert fake.posts == []


@pytest.mark.parametrize(
    ("text", "fits"),
    [
        ("a" * 280, True),
        ("a" * 281, False),
        ("漢" * 140, True),  # CJK weighs 2
        ("漢" * 141, False),
        ("👍🏽" * 140, True),  # an emoji sequence weighs 2 in all
        ("👍🏽" * 141, False),
        ("a" * 256 + " https://example.com/" + "p" * 200, True),  # a URL weighs 23
        ("a" * 257 + " https://example.com/" + "p" * 200, False),
    ],
)
async def test_text_is_limited_to_280_weighted_characters(
    http: httpx.AsyncClient, media: MediaFetcher, fake: XFake, text: str, fits: bool
) -> None:
    outcome = await client(http, media, fake).publish(publish_request(text))

    if fits:
        assert outcome.result is Result.PUBLISHED, outcome
        return
    assert (outcome.result, outcome.http_status) == (Result.PERMANENT, 400), outcome
    assert outcome.code == "invalid-request"
    assert "too long" in outcome.message
    assert fake.posts == []


async def test_timeout_after_sending_is_unknown_and_the_post_exists_once(
    http: httpx.AsyncClient, media: MediaFetcher, fake: XFake
) -> None:
    fake.fail_next("create", "hang")
    x_client = client(http, media, fake)
    outcome = await x_client.publish(publish_request())

    assert (outcome.result, outcome.code) == (Result.UNKNOWN, "timeout"), outcome
    assert len(fake.posts) == 1
    # Sending it again meets X's duplicate guard rather than a second post.
    again = await x_client.publish(publish_request())
    assert (again.result, again.message) == (Result.PERMANENT, DUPLICATE)
    assert len(fake.posts) == 1


async def test_upload_timeout_is_retryable_and_posts_nothing(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: XFake
) -> None:
    fake.fail_next("upload", "hang")
    request = publish_request(media_urls=[media_host.image_url("a.png")])
    outcome = await client(http, media, fake).publish(request)

    assert (outcome.result, outcome.code) == (Result.RETRYABLE, "timeout"), outcome
    assert fake.calls("POST", "/2/tweets") == []
    assert fake.posts == []


async def test_expired_token_on_upload_is_auth(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: XFake
) -> None:
    fake.fail_next("upload", "expire_token")
    request = publish_request(media_urls=[media_host.image_url("a.png")])
    outcome: PublishOutcome = await client(http, media, fake).publish(request)

    assert (outcome.result, outcome.http_status) == (Result.AUTH, 401), outcome
    assert fake.posts == []
