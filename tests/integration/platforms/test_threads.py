"""The Threads client against the fake: text and image containers, reply chains, refresh."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import httpx
import pytest

from kairos_fakes.media import MediaHost
from kairos_fakes.threads import ThreadsFake
from kairos_publisher.media import MediaFetcher
from kairos_publisher.platforms import threads
from kairos_publisher.platforms.base import RefreshedTokens, Result
from support.platforms import context, publish_request

USER = "25032501234567890"


@pytest.fixture
async def fake() -> AsyncIterator[ThreadsFake]:
    server = ThreadsFake()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def client(
    http: httpx.AsyncClient, media: MediaFetcher, fake: ThreadsFake
) -> threads.ThreadsClient:
    made = threads.create(context(http, media, fake))
    made.poll_interval = 0.02
    return made


def form(body: bytes) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(body.decode()).items()}


def created(fake: ThreadsFake) -> list[dict[str, str]]:
    """The fields of every container creation, in order."""
    return [form(c.body) for c in fake.calls("POST") if c.path == f"/v1.0/{USER}/threads"]


async def test_a_text_post_is_a_text_container_polled_then_published(
    client: threads.ThreadsClient, fake: ThreadsFake
) -> None:
    fake.processing = 0.05
    outcome = await client.publish(publish_request("Hello Threads", page_id=USER))
    assert outcome.result == Result.PUBLISHED, outcome
    create, publish = fake.calls("POST")
    assert create.path == f"/v1.0/{USER}/threads"
    assert form(create.body) == {
        "text": "Hello Threads",
        "media_type": "TEXT",
        "access_token": "token-1",
    }
    [container] = fake.containers
    polls = fake.calls("GET", container)
    assert len(polls) >= 2
    assert polls[0].query["fields"] == "status,error_message"
    assert publish.path == f"/v1.0/{USER}/threads_publish"
    assert form(publish.body) == {"creation_id": container, "access_token": "token-1"}
    [post] = fake.posts
    assert outcome.platform_post_id == post["id"]
    assert outcome.url == post["permalink"]
    assert outcome.url.startswith("https://www.threads.net/@kairos/post/")


async def test_an_image_post_passes_the_url(
    client: threads.ThreadsClient, fake: ThreadsFake, media_host: MediaHost
) -> None:
    url = media_host.image_url("photo.png")
    outcome = await client.publish(publish_request("Pic", page_id=USER, media_urls=[url]))
    assert outcome.result == Result.PUBLISHED, outcome
    fields = created(fake)[0]
    assert fields["media_type"] == "IMAGE"
    assert fields["image_url"] == url
    assert fake.posts[0]["media"] == [url]


async def test_several_images_make_a_carousel(
    client: threads.ThreadsClient, fake: ThreadsFake, media_host: MediaHost
) -> None:
    urls = [media_host.image_url("a.png"), media_host.image_url("b.jpg")]
    outcome = await client.publish(publish_request("Two", page_id=USER, media_urls=urls))
    assert outcome.result == Result.PUBLISHED, outcome
    first, second, parent = created(fake)
    assert first["is_carousel_item"] == second["is_carousel_item"] == "true"
    assert parent["media_type"] == "CAROUSEL"
    assert parent["text"] == "Two"
    assert parent["children"] == ",".join(list(fake.containers)[:2])
    assert fake.posts[0]["media"] == urls


async def test_a_thread_is_a_reply_chain_and_resumes_without_repeats(
    client: threads.ThreadsClient, fake: ThreadsFake
) -> None:
    first = await client.publish(publish_request("1/3", page_id=USER))
    second = await client.publish(
        publish_request("2/3", page_id=USER, reply_to=first.platform_post_id)
    )
    assert second.result == Result.PUBLISHED, second
    assert created(fake)[-1]["reply_to_id"] == first.platform_post_id
    fake.fail_next("create", "server_error")
    third = publish_request("3/3", page_id=USER, reply_to=second.platform_post_id)
    assert (await client.publish(third)).result == Result.RETRYABLE
    resumed = await client.publish(third)
    assert resumed.result == Result.PUBLISHED, resumed
    assert [(p["text"], p["reply_to"]) for p in fake.posts] == [
        ("1/3", ""),
        ("2/3", first.platform_post_id),
        ("3/3", second.platform_post_id),
    ]


async def test_text_over_500_characters_is_permanent(
    client: threads.ThreadsClient, fake: ThreadsFake
) -> None:
    outcome = await client.publish(publish_request("x" * 501, page_id=USER))
    assert outcome.result == Result.PERMANENT
    assert outcome.code == "100"
    assert "500 characters" in outcome.message
    assert fake.posts == []
    assert fake.containers == {}
    fits = await client.publish(publish_request("x" * 500, page_id=USER))
    assert fits.result == Result.PUBLISHED


async def test_an_expired_token_is_auth_then_refresh_then_publish(
    client: threads.ThreadsClient, fake: ThreadsFake
) -> None:
    token, _ = fake.tokens.issue()
    fake.fail_next("container", "expire_token")
    refused = await client.publish(publish_request(page_id=USER, access_token=token))
    assert refused.result == Result.AUTH
    assert refused.code == "190/463"
    fresh = await client.refresh(publish_request(page_id=USER, access_token=token))
    assert isinstance(fresh, RefreshedTokens)
    [call] = fake.calls("GET", "refresh_access_token")
    assert call.query == {"grant_type": "th_refresh_token", "access_token": token}
    assert client.refresh_margin == timedelta(days=7)
    retried = await client.publish(publish_request(page_id=USER, access_token=fresh.access_token))
    assert retried.result == Result.PUBLISHED
    fake.tokens.expire(fresh.access_token)
    dead = await client.refresh(publish_request(page_id=USER, access_token=fresh.access_token))
    assert isinstance(dead, str)
    assert "190" in dead


@pytest.mark.parametrize("code", [4, 17, 32])
async def test_throttling_in_a_400_is_retryable(
    client: threads.ThreadsClient, fake: ThreadsFake, code: int
) -> None:
    fake.throttle_code = code
    fake.fail_next("create", "rate_limit", seconds=60)
    outcome = await client.publish(publish_request(page_id=USER))
    assert outcome.result == Result.RETRYABLE
    assert outcome.http_status == 400
    assert outcome.code == str(code)
    expected = datetime.now(UTC) + timedelta(minutes=1)
    assert outcome.blocked_until is not None
    assert abs(outcome.blocked_until - expected) < timedelta(seconds=5)
    assert fake.posts == []


async def test_the_publishing_limit_counts_posts_and_replies_apart(
    client: threads.ThreadsClient, fake: ThreadsFake, http: httpx.AsyncClient
) -> None:
    first = await client.publish(publish_request("post", page_id=USER))
    await client.publish(publish_request("reply", page_id=USER, reply_to=first.platform_post_id))
    limit = await http.get(
        f"{fake.url}/{USER}/threads_publishing_limit",
        params={"fields": "quota_usage,config,reply_quota_usage,reply_config", "access_token": "t"},
    )
    [usage] = limit.json()["data"]
    assert usage["quota_usage"] == 1
    assert usage["reply_quota_usage"] == 1
    assert usage["config"] == {"quota_total": 250, "quota_duration": 86400}


async def test_a_timeout_after_threads_publish_is_unknown_and_the_post_exists_once(
    client: threads.ThreadsClient, fake: ThreadsFake
) -> None:
    fake.fail_next("create", "hang")
    outcome = await client.publish(publish_request(page_id=USER))
    assert outcome.result == Result.UNKNOWN
    assert len(fake.posts) == 1


@pytest.mark.parametrize(
    ("operation", "code", "subcode"),
    [("container", -2, 2207003), ("container", -1, 2207001), ("create", 24, 2207008)],
)
async def test_what_metas_error_table_says_to_try_again_is_retryable(
    client: threads.ThreadsClient, fake: ThreadsFake, operation: str, code: int, subcode: int
) -> None:
    """Threads answers in the Graph envelope and has no code table of its own: Instagram's is
    read for it too, `is_transient` false as in the table's sample."""
    fake.fail_next(operation, "reject", message=str(subcode))
    outcome = await client.publish(publish_request(page_id=USER))
    assert (outcome.result, outcome.code) == (Result.RETRYABLE, f"{code}/{subcode}")
    assert fake.posts == []
    assert (await client.publish(publish_request(page_id=USER))).result == Result.PUBLISHED
