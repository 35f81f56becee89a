"""The Facebook Pages client against the fake Graph API, and the Graph error table."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import httpx
import pytest

from kairos_fakes.facebook import FacebookFake
from kairos_fakes.media import MediaHost
from kairos_publisher.media import MediaFetcher
from kairos_publisher.platforms import facebook
from kairos_publisher.platforms._graph import DEFAULT_THROTTLE, classify
from kairos_publisher.platforms.base import (
    GRAPH_API_VERSION,
    PlatformContext,
    PublishOutcome,
    Result,
)
from support.platforms import context, publish_request

PAGE = "546349135390552"


@pytest.fixture
async def fake() -> AsyncIterator[FacebookFake]:
    server = FacebookFake()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def client(
    http: httpx.AsyncClient, media: MediaFetcher, fake: FacebookFake
) -> facebook.FacebookClient:
    return facebook.create(context(http, media, fake))


#: The path prefix of every Graph call: the version the publisher is configured with.
V = f"/{GRAPH_API_VERSION}"


def versioned(http: httpx.AsyncClient, media: MediaFetcher, fake: FacebookFake) -> PlatformContext:
    """A context whose Graph version is not the default, as KAIROS_GRAPH_API_VERSION sets it."""
    return PlatformContext(http, media, urls={"facebook": fake.url}, graph_version="v26.0")


def form(body: bytes) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}


def near(instant: datetime | None, expected: datetime) -> bool:
    return instant is not None and abs(instant - expected) < timedelta(seconds=5)


async def test_text_post_is_a_feed_post(
    http: httpx.AsyncClient, media: MediaFetcher, fake: FacebookFake
) -> None:
    client = facebook.create(versioned(http, media, fake))
    outcome = await client.publish(publish_request("Hello Page", page_id=PAGE))
    assert outcome.result == Result.PUBLISHED, outcome
    [call] = fake.calls("POST")
    assert call.path == f"/v26.0/{PAGE}/feed"
    assert call.headers["content-type"] == "application/x-www-form-urlencoded"
    assert form(call.body) == {"message": "Hello Page", "access_token": "token-1"}
    [post] = fake.posts
    assert outcome.platform_post_id == post["id"]
    assert post["id"].startswith(f"{PAGE}_")
    assert outcome.url == f"https://www.facebook.com/{post['id']}"
    assert outcome.blocked_until is None


async def test_one_image_passes_the_url_and_returns_the_post_id(
    client: facebook.FacebookClient, fake: FacebookFake, media_host: MediaHost
) -> None:
    url = media_host.image_url("a.jpg")
    outcome = await client.publish(publish_request("Look", page_id=PAGE, media_urls=[url]))
    assert outcome.result == Result.PUBLISHED, outcome
    [call] = fake.calls("POST")
    assert call.path == f"{V}/{PAGE}/photos"
    assert form(call.body) == {"url": url, "message": "Look", "access_token": "token-1"}
    [post] = fake.posts
    assert post["photos"] == [url]
    [photo_id] = fake.photos
    assert outcome.platform_post_id == post["id"] != photo_id


async def test_several_images_are_attached_to_one_feed_post(
    client: facebook.FacebookClient, fake: FacebookFake, media_host: MediaHost
) -> None:
    urls = [media_host.image_url("a.jpg"), media_host.image_url("b.png")]
    outcome = await client.publish(publish_request("Two", page_id=PAGE, media_urls=urls))
    assert outcome.result == Result.PUBLISHED, outcome
    first, second, feed = fake.calls("POST")
    assert [form(c.body)["published"] for c in (first, second)] == ["false", "false"]
    assert feed.path == f"{V}/{PAGE}/feed"
    fields = form(feed.body)
    attached = [json.loads(fields[f"attached_media[{i}]"])["media_fbid"] for i in (0, 1)]
    assert attached == list(fake.photos)
    [post] = fake.posts
    assert post["photos"] == urls
    assert outcome.platform_post_id == post["id"]


async def test_a_thread_comments_on_each_previous_part_and_resumes_without_repeats(
    client: facebook.FacebookClient, fake: FacebookFake
) -> None:
    first = await client.publish(publish_request("1/3", page_id=PAGE))
    second = await client.publish(
        publish_request("2/3", page_id=PAGE, reply_to=first.platform_post_id)
    )
    assert second.result == Result.PUBLISHED, second
    assert fake.calls("POST")[-1].path == f"{V}/{first.platform_post_id}/comments"
    assert "comment_id=" in second.url
    fake.fail_next("create", "server_error")
    third = publish_request("3/3", page_id=PAGE, reply_to=second.platform_post_id)
    failed = await client.publish(third)
    assert failed.result == Result.RETRYABLE
    assert failed.code == "2"
    resumed = await client.publish(third)
    assert resumed.result == Result.PUBLISHED, resumed
    assert [p["message"] for p in fake.posts] == ["1/3"]
    assert [(c["message"], c["parent"]) for c in fake.comments] == [
        ("2/3", first.platform_post_id),
        ("3/3", second.platform_post_id),
    ]


async def test_an_expired_page_token_is_auth_and_there_is_no_refresh(
    client: facebook.FacebookClient, fake: FacebookFake
) -> None:
    token, _ = fake.tokens.issue()
    fake.tokens.expire(token)
    outcome = await client.publish(publish_request(page_id=PAGE, access_token=token))
    assert outcome.result == Result.AUTH
    assert outcome.code == "190/463"
    assert outcome.http_status == 400
    assert "expired" in outcome.message
    fake.fail_next("create", "expire_token")
    assert (await client.publish(publish_request(page_id=PAGE))).result == Result.AUTH
    assert not hasattr(client, "refresh")
    assert fake.posts == []


@pytest.mark.parametrize("code", [4, 17, 32])
async def test_throttling_in_a_400_is_retryable_at_the_time_to_regain_access(
    client: facebook.FacebookClient, fake: FacebookFake, code: int
) -> None:
    fake.throttle_code = code
    fake.fail_next("create", "rate_limit", seconds=180)
    outcome = await client.publish(publish_request(page_id=PAGE))
    assert outcome.result == Result.RETRYABLE
    assert outcome.http_status == 400
    assert outcome.code == str(code)
    expected = datetime.now(UTC) + timedelta(minutes=3)
    assert near(outcome.retry_not_before, expected)
    assert near(outcome.blocked_until, expected)
    assert fake.posts == []


async def test_full_usage_on_a_success_blocks_the_account(
    client: facebook.FacebookClient, fake: FacebookFake
) -> None:
    fake.usage = 100
    outcome = await client.publish(publish_request(page_id=PAGE))
    assert outcome.result == Result.PUBLISHED
    assert near(outcome.blocked_until, datetime.now(UTC) + DEFAULT_THROTTLE)
    fake.usage, fake.regain_minutes = 40, 12
    again = await client.publish(publish_request("Other", page_id=PAGE))
    assert near(again.blocked_until, datetime.now(UTC) + timedelta(minutes=12))
    fake.regain_minutes = 0
    calm = await client.publish(publish_request("Third", page_id=PAGE))
    assert calm.result == Result.PUBLISHED
    assert calm.blocked_until is None


async def test_duplicates_and_blocks_are_permanent_with_the_platform_message(
    client: facebook.FacebookClient, fake: FacebookFake
) -> None:
    assert (await client.publish(publish_request("Same", page_id=PAGE))).result == Result.PUBLISHED
    duplicate = await client.publish(publish_request("Same", page_id=PAGE))
    assert duplicate.result == Result.PERMANENT
    assert duplicate.code == "506"
    assert duplicate.message == "(#506) Duplicate status message"
    fake.fail_next("create", "reject")
    blocked = await client.publish(publish_request("New", page_id=PAGE))
    assert blocked.result == Result.PERMANENT
    assert blocked.code == "368/1390008"
    assert "temporarily blocked" in blocked.message
    assert len(fake.posts) == 1


async def test_an_unreachable_image_is_permanent(
    client: facebook.FacebookClient, fake: FacebookFake, media_host: MediaHost
) -> None:
    bad = f"{media_host.url}/images/missing.txt"
    outcome = await client.publish(publish_request(page_id=PAGE, media_urls=[bad]))
    assert outcome.result == Result.PERMANENT
    assert outcome.code == "324"
    assert fake.posts == []


async def test_a_timeout_after_sending_is_unknown_and_the_post_exists_once(
    client: facebook.FacebookClient, fake: FacebookFake
) -> None:
    fake.fail_next("create", "hang")
    outcome = await client.publish(publish_request(page_id=PAGE))
    assert outcome.result == Result.UNKNOWN
    assert len(fake.posts) == 1


def graph_answer(
    code: int, subcode: int = 0, *, status: int = 400, transient: bool = False, usage: str = ""
) -> httpx.Response:
    error: dict[str, object] = {"message": f"m{code}", "type": "OAuthException", "code": code}
    if subcode:
        error["error_subcode"] = subcode
    if transient:
        error["is_transient"] = True
    headers = {"x-business-use-case-usage": usage} if usage else {}
    return httpx.Response(status, json={"error": error}, headers=headers)


@pytest.mark.parametrize(
    ("answer", "result"),
    [
        (graph_answer(190, 463), Result.AUTH),
        (graph_answer(190, 460), Result.AUTH),
        (graph_answer(1, status=500), Result.RETRYABLE),
        (graph_answer(2), Result.RETRYABLE),
        (graph_answer(4, transient=True), Result.RETRYABLE),
        (graph_answer(17), Result.RETRYABLE),
        (graph_answer(32, status=403), Result.RETRYABLE),
        (graph_answer(613), Result.RETRYABLE),
        (graph_answer(80001), Result.RETRYABLE),
        (graph_answer(9007, 2207027), Result.RETRYABLE),
        (graph_answer(9, 2207042), Result.RETRYABLE),
        (graph_answer(999, transient=True), Result.RETRYABLE),
        (graph_answer(100), Result.PERMANENT),
        (graph_answer(100, 33), Result.PERMANENT),
        (graph_answer(10), Result.PERMANENT),
        (graph_answer(200), Result.PERMANENT),
        (graph_answer(299), Result.PERMANENT),
        (graph_answer(368, 1390008), Result.PERMANENT),
        (graph_answer(368, transient=True), Result.PERMANENT),
        (graph_answer(506), Result.PERMANENT),
        (graph_answer(9004, 2207052), Result.PERMANENT),
        (graph_answer(999), Result.PERMANENT),
        (httpx.Response(502, text="Bad Gateway"), Result.RETRYABLE),
    ],
)
def test_graph_error_table(answer: httpx.Response, result: Result) -> None:
    outcome: PublishOutcome = classify(answer)
    assert outcome.result == result
    assert outcome.http_status == answer.status_code


def test_throttling_waits_for_the_business_use_case_estimate_else_the_default() -> None:
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    usage = json.dumps({PAGE: [{"type": "pages", "estimated_time_to_regain_access": 7}]})
    told = classify(graph_answer(80001, usage=usage), now)
    assert told.retry_not_before == told.blocked_until == now + timedelta(minutes=7)
    untold = classify(graph_answer(17), now)
    assert untold.retry_not_before == untold.blocked_until == now + DEFAULT_THROTTLE
    assert classify(graph_answer(100), now).blocked_until is None
