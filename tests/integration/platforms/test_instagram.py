"""The Instagram client against the fake: containers, polling, publishing, comments, refresh."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import httpx
import pytest

from kairos_fakes.instagram import InstagramFake
from kairos_fakes.media import MediaHost
from kairos_publisher.media import MediaFetcher
from kairos_publisher.platforms import instagram
from kairos_publisher.platforms._graph import classify
from kairos_publisher.platforms.base import GRAPH_API_VERSION, RefreshedTokens, Result
from support.platforms import context, publish_request

USER = "17841400008460056"
#: The path prefix of every Graph call: the version the publisher is configured with.
V = f"/{GRAPH_API_VERSION}"


@pytest.fixture
async def fake() -> AsyncIterator[InstagramFake]:
    server = InstagramFake()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def client(
    http: httpx.AsyncClient, media: MediaFetcher, fake: InstagramFake
) -> instagram.InstagramClient:
    made = instagram.create(context(http, media, fake))
    made.poll_interval = 0.02
    return made


@pytest.fixture
def jpeg(media_host: MediaHost) -> str:
    return media_host.image_url("photo.jpg")


def form(body: bytes) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(body.decode()).items()}


async def test_an_image_post_goes_through_a_container(
    client: instagram.InstagramClient, fake: InstagramFake, jpeg: str
) -> None:
    outcome = await client.publish(publish_request("Caption #one", page_id=USER, media_urls=[jpeg]))
    assert outcome.result == Result.PUBLISHED, outcome
    create, publish = fake.calls("POST")
    assert create.path == f"{V}/{USER}/media"
    assert form(create.body) == {
        "image_url": jpeg,
        "caption": "Caption #one",
        "access_token": "token-1",
    }
    [container] = fake.containers
    assert fake.calls("GET", container)[0].query["fields"] == "status_code"
    assert publish.path == f"{V}/{USER}/media_publish"
    assert form(publish.body) == {"creation_id": container, "access_token": "token-1"}
    [post] = fake.posts
    assert outcome.platform_post_id == post["id"]
    assert outcome.url == post["permalink"]
    assert fake.calls("GET", post["id"])[0].query["fields"] == "permalink"


async def test_media_is_required(client: instagram.InstagramClient, fake: InstagramFake) -> None:
    outcome = await client.publish(publish_request("Just text", page_id=USER))
    assert outcome.result == Result.PERMANENT
    assert outcome.code == "media_required"
    assert "image" in outcome.message
    assert fake.requests == []


async def test_several_images_make_one_carousel(
    client: instagram.InstagramClient, fake: InstagramFake, jpeg: str
) -> None:
    urls = [jpeg, jpeg.replace("photo", "other")]
    outcome = await client.publish(publish_request("Album", page_id=USER, media_urls=urls))
    assert outcome.result == Result.PUBLISHED, outcome
    first, second, parent, _ = (form(c.body) for c in fake.calls("POST"))
    assert [first["is_carousel_item"], second["is_carousel_item"]] == ["true", "true"]
    assert [first["image_url"], second["image_url"]] == urls
    children = list(fake.containers)[:2]
    assert parent["media_type"] == "CAROUSEL"
    assert parent["children"] == ",".join(children)
    [post] = fake.posts
    assert post["media"] == urls
    assert post["media_type"] == "CAROUSEL_ALBUM"


async def test_publishing_waits_for_the_container_to_finish(
    client: instagram.InstagramClient, fake: InstagramFake, jpeg: str
) -> None:
    fake.processing = 0.15
    outcome = await client.publish(publish_request(page_id=USER, media_urls=[jpeg]))
    assert outcome.result == Result.PUBLISHED, outcome
    [container] = fake.containers
    assert len(fake.calls("GET", container)) >= 3
    assert len(fake.calls("POST", "media_publish")) == 1  # never too early: no 9007


async def test_a_container_that_never_finishes_is_retryable_and_nothing_is_published(
    client: instagram.InstagramClient, fake: InstagramFake, jpeg: str
) -> None:
    fake.processing, client.max_wait = 30.0, 0.1
    outcome = await client.publish(publish_request(page_id=USER, media_urls=[jpeg]))
    assert outcome.result == Result.RETRYABLE
    assert outcome.code == "container_not_ready"
    assert fake.calls("POST", "media_publish") == []
    assert fake.posts == []


async def test_the_fake_refuses_early_and_repeated_publishing(
    http: httpx.AsyncClient, fake: InstagramFake, jpeg: str
) -> None:
    fake.processing = 30.0
    fields = {"image_url": jpeg, "access_token": "t"}
    made = await http.post(f"{fake.url}/{USER}/media", data=fields)
    container = made.json()["id"]
    publish = {"creation_id": container, "access_token": "t"}
    early = await http.post(f"{fake.url}/{USER}/media_publish", data=publish)
    assert early.status_code == 400
    assert early.json()["error"]["code"] == 9007
    assert early.json()["error"]["error_subcode"] == 2207027
    assert classify(early).result == Result.RETRYABLE
    fake.containers[container].ready_at = 0
    first = await http.post(f"{fake.url}/{USER}/media_publish", data=publish)
    assert first.status_code == 200
    again = await http.post(f"{fake.url}/{USER}/media_publish", data=publish)
    assert again.status_code == 400
    assert classify(again).result == Result.PERMANENT
    status = await http.get(
        f"{fake.url}/{container}", params={"fields": "status_code", "access_token": "t"}
    )
    assert status.json()["status_code"] == "PUBLISHED"
    assert len(fake.posts) == 1


async def test_an_image_instagram_cannot_take_errors_the_container(
    client: instagram.InstagramClient, fake: InstagramFake, media_host: MediaHost
) -> None:
    png = media_host.image_url("photo.png")
    outcome = await client.publish(publish_request(page_id=USER, media_urls=[png]))
    assert outcome.result == Result.PERMANENT
    assert outcome.code == "container_error"
    assert "2207052" in outcome.message
    assert fake.posts == []


async def test_replies_are_comments_and_resume_without_repeats(
    client: instagram.InstagramClient, fake: InstagramFake, jpeg: str
) -> None:
    first = await client.publish(publish_request("1/4", page_id=USER, media_urls=[jpeg]))
    second = await client.publish(
        publish_request("2/4", page_id=USER, reply_to=first.platform_post_id)
    )
    assert second.result == Result.PUBLISHED, second
    assert fake.calls("POST")[-1].path == f"{V}/{first.platform_post_id}/comments"
    assert second.url == first.url
    fake.fail_next("create", "server_error")
    third = publish_request("3/4", page_id=USER, reply_to=second.platform_post_id)
    assert (await client.publish(third)).result == Result.RETRYABLE
    resumed = await client.publish(third)
    assert resumed.result == Result.PUBLISHED, resumed
    top = second.platform_post_id.split("/")[1]
    assert fake.calls("POST")[-1].path == f"{V}/{top}/replies"
    fourth = await client.publish(
        publish_request("4/4", page_id=USER, reply_to=resumed.platform_post_id)
    )
    assert fake.calls("POST")[-1].path == f"{V}/{top}/replies"  # comments nest one level
    media = first.platform_post_id
    assert [(c["message"], c["parent"]) for c in fake.comments] == [
        ("2/4", ""),
        ("3/4", top),
        ("4/4", top),
    ]
    assert resumed.platform_post_id == f"{media}/{top}/{fake.comments[1]['id']}"
    assert fourth.platform_post_id == f"{media}/{top}/{fake.comments[2]['id']}"
    assert len(fake.posts) == 1


async def test_an_expired_token_is_auth_then_refresh_then_publish(
    client: instagram.InstagramClient, fake: InstagramFake, jpeg: str
) -> None:
    token, _ = fake.tokens.issue()
    request = publish_request(page_id=USER, media_urls=[jpeg], access_token=token)
    fake.fail_next("container", "expire_token")
    refused = await client.publish(request)
    assert refused.result == Result.AUTH
    assert refused.code == "190/463"
    fresh = await client.refresh(request)
    assert isinstance(fresh, RefreshedTokens)
    [call] = fake.calls("GET", "refresh_access_token")
    assert call.path == "/refresh_access_token"
    assert call.query == {"grant_type": "ig_refresh_token", "access_token": token}
    assert fresh.expires_at is not None
    assert fresh.expires_at - datetime.now(UTC) > timedelta(days=59)
    assert client.refresh_margin == timedelta(days=7)
    retried = await client.publish(
        publish_request(page_id=USER, media_urls=[jpeg], access_token=fresh.access_token)
    )
    assert retried.result == Result.PUBLISHED
    assert form(fake.calls("POST", "media_publish")[-1].body)["access_token"] == fresh.access_token


async def test_a_token_already_expired_cannot_be_refreshed(
    client: instagram.InstagramClient, fake: InstagramFake
) -> None:
    token, _ = fake.tokens.issue()
    fake.tokens.expire(token)
    answer = await client.refresh(publish_request(page_id=USER, access_token=token))
    assert isinstance(answer, str)
    assert "190" in answer


@pytest.mark.parametrize("code", [4, 17, 32])
async def test_throttling_in_a_400_is_retryable(
    client: instagram.InstagramClient, fake: InstagramFake, jpeg: str, code: int
) -> None:
    fake.throttle_code = code
    fake.fail_next("container", "rate_limit", seconds=120)
    outcome = await client.publish(publish_request(page_id=USER, media_urls=[jpeg]))
    assert outcome.result == Result.RETRYABLE
    assert outcome.http_status == 400
    assert outcome.code == str(code)
    expected = datetime.now(UTC) + timedelta(minutes=2)
    assert outcome.retry_not_before is not None
    assert outcome.blocked_until is not None
    assert abs(outcome.retry_not_before - expected) < timedelta(seconds=5)
    assert fake.posts == []


async def test_the_publishing_quota_is_reported_and_enforced(
    client: instagram.InstagramClient, fake: InstagramFake, jpeg: str, http: httpx.AsyncClient
) -> None:
    fake.quota_total = 1
    assert (await client.publish(publish_request(page_id=USER, media_urls=[jpeg]))).result == (
        Result.PUBLISHED
    )
    over = await client.publish(publish_request(page_id=USER, media_urls=[jpeg]))
    assert over.result == Result.RETRYABLE
    assert over.code == "9/2207042"
    assert over.blocked_until is not None
    assert over.blocked_until > datetime.now(UTC)
    limit = await http.get(
        f"{fake.url}/{USER}/content_publishing_limit",
        params={"fields": "quota_usage,config", "access_token": "t"},
    )
    assert limit.json() == {
        "data": [{"quota_usage": 1, "config": {"quota_total": 1, "quota_duration": 86400}}]
    }


async def test_a_timeout_after_media_publish_is_unknown_and_the_post_exists_once(
    client: instagram.InstagramClient, fake: InstagramFake, jpeg: str
) -> None:
    fake.fail_next("create", "hang")
    outcome = await client.publish(publish_request(page_id=USER, media_urls=[jpeg]))
    assert outcome.result == Result.UNKNOWN
    [container] = fake.containers
    assert container in outcome.message
    assert len(fake.posts) == 1


async def test_a_timeout_while_creating_a_container_is_retryable(
    client: instagram.InstagramClient, fake: InstagramFake, jpeg: str
) -> None:
    fake.fail_next("container", "hang")
    outcome = await client.publish(publish_request(page_id=USER, media_urls=[jpeg]))
    assert outcome.result == Result.RETRYABLE
    assert outcome.code == "timeout"
    assert fake.posts == []


#: Rows of Meta's Instagram error-code table that say to try again, and the call that meets them.
TRY_AGAIN_ROWS = [
    ("container", -2, 2207003),  # It takes too long to download the media.
    ("container", -2, 2207020),  # The media ... has expired.
    ("container", -1, 2207001),  # Instagram server error. Try again.
    ("container", -1, 2207032),  # Create media fail, please try to re-create media
    ("container", -1, 2207053),  # unknown upload error
    ("create", 24, 2207006),  # The media with {id} cannot be found
    ("create", 24, 2207008),  # The media builder ... does not exist or has been expired.
]


@pytest.mark.parametrize(("operation", "code", "subcode"), TRY_AGAIN_ROWS)
async def test_what_metas_table_says_to_try_again_is_retryable_and_the_retry_publishes(
    client: instagram.InstagramClient,
    fake: InstagramFake,
    jpeg: str,
    operation: str,
    code: int,
    subcode: int,
) -> None:
    fake.fail_next(operation, "reject", message=str(subcode))
    before = datetime.now(UTC)
    outcome = await client.publish(publish_request(page_id=USER, media_urls=[jpeg]))

    assert (outcome.result, outcome.http_status, outcome.code) == (
        Result.RETRYABLE,
        400,
        f"{code}/{subcode}",
    )
    if subcode == 2207008:  # "Try again 1–2 times in the next 30 seconds to 2 minutes."
        assert outcome.retry_not_before is not None
        assert outcome.retry_not_before - before >= timedelta(seconds=30)
    assert fake.posts == []
    again = await client.publish(publish_request(page_id=USER, media_urls=[jpeg]))
    assert again.result == Result.PUBLISHED
    assert len(fake.posts) == 1


@pytest.mark.parametrize(("code", "subcode"), [(4, 2207051), (36000, 2207004), (25, 2207050)])
async def test_what_metas_table_says_needs_other_media_or_the_account_fixed_is_permanent(
    client: instagram.InstagramClient, fake: InstagramFake, jpeg: str, code: int, subcode: int
) -> None:
    fake.fail_next("container", "reject", message=str(subcode))
    outcome = await client.publish(publish_request(page_id=USER, media_urls=[jpeg]))
    assert (outcome.result, outcome.code) == (Result.PERMANENT, f"{code}/{subcode}")


async def test_the_graph_version_is_the_publishers_setting(
    http: httpx.AsyncClient, media: MediaFetcher, fake: InstagramFake, jpeg: str
) -> None:
    """KAIROS_GRAPH_API_VERSION is the path prefix of every Graph call; the fake follows it."""
    made = instagram.create(replace(context(http, media, fake), graph_version="v26.0"))
    made.poll_interval = 0.02
    outcome = await made.publish(publish_request(page_id=USER, media_urls=[jpeg]))

    assert outcome.result == Result.PUBLISHED
    assert {c.path.split("/")[1] for c in fake.requests} == {"v26.0"}
    assert GRAPH_API_VERSION == "v27.0"
