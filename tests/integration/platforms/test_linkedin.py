"""The LinkedIn client against the LinkedIn fake, over real HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from kairos_fakes.linkedin import LinkedInFake
from kairos_fakes.media import GIF, JPEG, MediaHost, png
from kairos_publisher.media import MediaFetcher
from kairos_publisher.platforms import linkedin
from kairos_publisher.platforms.base import PublishRequest, RefreshedTokens, Result
from support.platforms import context, publish_request

AUTHOR = "urn:li:person:8675309abc"
#: The publisher's transport hands aiohttp `str(url)`, and yarl re-quotes it, decoding `%3A`,
#: `%28`, `%29` and `%2C`; LinkedIn (and the fake) refuse a URN left unencoded in a path
#: ("Syntax exception in path variables"). Passing `yarl.URL(str(request.url), encoded=True)` in
#: kairos_publisher/transport.py fixes it (checked); until then the comment tests fail.
APP = {"KAIROS_LINKEDIN_CLIENT_ID": "app-id", "KAIROS_LINKEDIN_CLIENT_SECRET": "app-secret"}


@pytest.fixture
async def fake() -> AsyncIterator[LinkedInFake]:
    server = LinkedInFake()
    await server.start()
    yield server
    await server.stop()


def client(
    http: httpx.AsyncClient, media: MediaFetcher, fake: LinkedInFake
) -> linkedin.LinkedInClient:
    return linkedin.create(context(http, media, fake, environ=APP))


def request(content: str = "Hello from Kairos", **fields: object) -> PublishRequest:
    return publish_request(content, page_id=AUTHOR, **fields)


async def test_text_post_is_sent_as_linkedin_expects(
    http: httpx.AsyncClient, media: MediaFetcher, fake: LinkedInFake
) -> None:
    outcome = await client(http, media, fake).publish(request())

    assert outcome.result == Result.PUBLISHED
    assert outcome.platform_post_id == fake.posts[0]["urn"]
    assert outcome.platform_post_id.startswith("urn:li:share:")
    assert outcome.url == f"https://www.linkedin.com/feed/update/{outcome.platform_post_id}/"
    assert outcome.blocked_until is None
    [sent] = fake.calls("POST", "/rest/posts")
    assert sent.headers["authorization"] == "Bearer token-1"
    assert sent.headers["linkedin-version"] == linkedin.VERSION
    assert sent.headers["x-restli-protocol-version"] == "2.0.0"
    assert sent.headers["content-type"] == "application/json"
    assert json.loads(sent.body) == {
        "author": AUTHOR,
        "commentary": "Hello from Kairos",
        "visibility": "PUBLIC",
        "distribution": {
            "feedDistribution": "MAIN_FEED",
            "targetEntities": [],
            "thirdPartyDistributionChannels": [],
        },
        "lifecycleState": "PUBLISHED",
        "isReshareDisabledByAuthor": False,
    }


async def test_reserved_characters_are_escaped_and_shown_whole(
    http: httpx.AsyncClient, media: MediaFetcher, fake: LinkedInFake
) -> None:
    text = r"a\b|c{d}e@f[g]h(i)j<k>l#m*n_o~p. Done"
    outcome = await client(http, media, fake).publish(request(text))

    assert outcome.result == Result.PUBLISHED
    assert fake.posts[0]["commentary"] == (r"a\\b\|c\{d\}e\@f\[g\]h\(i\)j\<k\>l\#m\*n\_o\~p. Done")
    assert fake.posts[0]["text"] == text  # unescaped, the fake would have cut it at the "|"


async def test_version_comes_from_settings_and_a_retired_one_is_permanent(
    http: httpx.AsyncClient, media: MediaFetcher, fake: LinkedInFake
) -> None:
    linkedin_client = client(http, media, fake)
    chosen = await linkedin_client.publish(request(settings={"linkedin_version": "202512"}))
    retired = await linkedin_client.publish(
        request("Another", settings={"linkedin_version": "202401"})
    )

    assert chosen.result == Result.PUBLISHED
    assert fake.calls("POST", "/rest/posts")[0].headers["linkedin-version"] == "202512"
    assert retired.result == Result.PERMANENT
    assert (retired.http_status, retired.code) == (426, "NONEXISTENT_VERSION")
    assert retired.message == "Requested version 202401 is not active"
    assert len(fake.posts) == 1


async def test_the_version_is_the_publishers_setting(
    http: httpx.AsyncClient, media: MediaFetcher, fake: LinkedInFake
) -> None:
    """KAIROS_LINKEDIN_VERSION reaches the header; the fake serves the versions LinkedIn does."""
    configured = replace(context(http, media, fake, environ=APP), linkedin_version="202607")
    outcome = await linkedin.create(configured).publish(request())

    assert outcome.result == Result.PUBLISHED
    assert fake.calls("POST", "/rest/posts")[0].headers["linkedin-version"] == "202607"
    assert linkedin.VERSION == context(http, media, fake).linkedin_version == "202609"


async def test_fake_refuses_calls_without_the_version_headers(fake: LinkedInFake) -> None:
    headers = {"authorization": "Bearer token-1", "content-type": "application/json"}
    async with httpx.AsyncClient(base_url=fake.url) as plain:
        no_version = await plain.post(
            "/rest/posts", json={}, headers={**headers, "x-restli-protocol-version": "2.0.0"}
        )
        no_protocol = await plain.post(
            "/rest/posts", json={}, headers={**headers, "linkedin-version": linkedin.VERSION}
        )

    assert no_version.status_code == 400
    assert no_version.json()["code"] == "VERSION_MISSING"
    assert no_protocol.status_code == 400
    assert fake.posts == []


async def test_one_image_is_uploaded_then_posted_as_media(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: LinkedInFake
) -> None:
    outcome = await client(http, media, fake).publish(
        request(media_urls=[media_host.image_url("a.png")])
    )

    assert outcome.result == Result.PUBLISHED
    [initialize] = fake.calls("POST", "/rest/images")
    assert initialize.query == {"action": "initializeUpload"}
    assert json.loads(initialize.body) == {"initializeUploadRequest": {"owner": AUTHOR}}
    [put] = fake.calls("PUT", "/dms-uploads/")
    assert put.headers["authorization"] == "Bearer token-1"
    [(urn, image)] = fake.images.items()
    assert image["content"] == png()
    assert fake.posts[0]["content"] == {"media": {"id": urn}}


async def test_several_images_are_posted_as_multi_image_in_order(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: LinkedInFake
) -> None:
    names = ["a.jpg", "b.gif", "c.png"]
    outcome = await client(http, media, fake).publish(
        request(media_urls=[media_host.image_url(name) for name in names])
    )

    assert outcome.result == Result.PUBLISHED
    ids = [image["id"] for image in fake.posts[0]["content"]["multiImage"]["images"]]
    assert [fake.images[urn]["content"] for urn in ids] == [JPEG, GIF, png()]


async def test_an_image_over_ten_megabytes_is_refused_before_anything_is_posted(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: LinkedInFake
) -> None:
    big = f"{media_host.url}/big.png?bytes={10 * 1024 * 1024 + 1}"
    outcome = await client(http, media, fake).publish(request(media_urls=[big]))

    assert outcome.result == Result.PERMANENT
    assert outcome.code == "media"
    assert fake.requests == []


async def test_a_thread_chains_each_part_as_a_comment_on_the_one_before(
    http: httpx.AsyncClient, media: MediaFetcher, fake: LinkedInFake
) -> None:
    linkedin_client = client(http, media, fake)
    first = await linkedin_client.publish(request("Part 1"))
    second = await linkedin_client.publish(
        request("Part 2 (of 3)", reply_to=first.platform_post_id)
    )
    third = await linkedin_client.publish(request("Part 3", reply_to=second.platform_post_id))

    assert [o.result for o in (first, second, third)] == [Result.PUBLISHED] * 3
    post = first.platform_post_id
    assert [c["commentUrn"] for c in fake.comments] == [
        second.platform_post_id,
        third.platform_post_id,
    ]
    on_post, on_comment = (json.loads(r.body) for r in fake.calls("POST", "/comments"))
    assert on_post == {"actor": AUTHOR, "object": post, "message": {"text": "Part 2 (of 3)"}}
    assert on_comment == {
        "actor": AUTHOR,
        "object": post,
        "message": {"text": "Part 3"},
        "parentComment": second.platform_post_id,
    }
    assert second.url.startswith(f"https://www.linkedin.com/feed/update/{post}/?commentUrn=")


async def test_resuming_after_part_two_publishes_only_part_three(
    http: httpx.AsyncClient, media: MediaFetcher, fake: LinkedInFake
) -> None:
    first = await client(http, media, fake).publish(request("Part 1"))
    second = await client(http, media, fake).publish(
        request("Part 2", reply_to=first.platform_post_id)
    )
    assert second.result == Result.PUBLISHED

    # A fresh client, as after a restart: only the saved id of part 2 carries over.
    third = await client(http, media, fake).publish(
        request("Part 3", reply_to=second.platform_post_id)
    )

    assert third.result == Result.PUBLISHED
    assert [p["commentary"] for p in fake.posts] == ["Part 1"]
    assert [c["message"]["text"] for c in fake.comments] == ["Part 2", "Part 3"]
    assert fake.comments[1]["parentComment"] == second.platform_post_id


async def test_expired_token_is_auth_then_refresh_then_publishes(
    http: httpx.AsyncClient, media: MediaFetcher, fake: LinkedInFake
) -> None:
    fake.client_id, fake.client_secret = "app-id", "app-secret"
    access, refresh = fake.issue()
    fake.tokens.expire(access)
    linkedin_client = client(http, media, fake)
    stale = request(access_token=access, refresh_token=refresh)

    refused = await linkedin_client.publish(stale)
    tokens = await linkedin_client.refresh(stale)
    assert isinstance(tokens, RefreshedTokens)
    published = await linkedin_client.publish(
        request(access_token=tokens.access_token, refresh_token=tokens.refresh_token)
    )
    again = await linkedin_client.refresh(stale)  # not rotated: the same token works again

    assert (refused.result, refused.http_status) == (Result.AUTH, 401)
    assert refused.code == "EXPIRED_ACCESS_TOKEN"
    assert tokens.refresh_token == refresh
    assert tokens.expires_at is not None
    assert tokens.expires_at - datetime.now(UTC) > timedelta(days=59)
    assert published.result == Result.PUBLISHED
    assert isinstance(again, RefreshedTokens)
    [form, _] = fake.calls("POST", "/oauth/v2/accessToken")
    assert dict(httpx.QueryParams(form.body.decode())) == {
        "grant_type": "refresh_token",
        "refresh_token": refresh,
        "client_id": "app-id",
        "client_secret": "app-secret",
    }
    assert linkedin_client.refresh_margin == timedelta(days=1)


async def test_expire_token_fault_is_auth_and_without_refresh_token_needs_reauth(
    http: httpx.AsyncClient, media: MediaFetcher, fake: LinkedInFake
) -> None:
    fake.fail_next("create", "expire_token")
    linkedin_client = client(http, media, fake)

    refused = await linkedin_client.publish(request())
    reason = await linkedin_client.refresh(request())

    assert refused.result == Result.AUTH
    assert isinstance(reason, str)
    assert "connect the account again" in reason
    assert fake.calls("POST", "/oauth/") == []
    assert fake.posts == []


async def test_rate_limit_is_retryable_without_a_wait(
    http: httpx.AsyncClient, media: MediaFetcher, fake: LinkedInFake
) -> None:
    fake.fail_next("create", "rate_limit", seconds=30)
    outcome = await client(http, media, fake).publish(request())

    assert outcome.result == Result.RETRYABLE
    assert (outcome.http_status, outcome.code) == (429, "TOO_MANY_REQUESTS")
    assert outcome.retry_not_before is None
    assert outcome.blocked_until is None
    assert fake.posts == []


async def test_server_error_is_retryable(
    http: httpx.AsyncClient, media: MediaFetcher, fake: LinkedInFake
) -> None:
    fake.fail_next("create", "server_error")
    outcome = await client(http, media, fake).publish(request())

    assert (outcome.result, outcome.http_status) == (Result.RETRYABLE, 500)


async def test_forbidden_is_permanent_with_linkedins_message(
    http: httpx.AsyncClient, media: MediaFetcher, fake: LinkedInFake
) -> None:
    fake.fail_next("create", "reject", message="Not enough permissions to access: posts.CREATE")
    outcome = await client(http, media, fake).publish(request())

    assert outcome.result == Result.PERMANENT
    assert (outcome.http_status, outcome.code) == (403, "ACCESS_DENIED")
    assert outcome.message == "Not enough permissions to access: posts.CREATE"


async def test_too_long_commentary_is_permanent(
    http: httpx.AsyncClient, media: MediaFetcher, fake: LinkedInFake
) -> None:
    outcome = await client(http, media, fake).publish(request("x" * 3001))

    assert outcome.result == Result.PERMANENT
    assert (outcome.http_status, outcome.code) == (422, "FIELD_LENGTH_TOO_LONG")
    assert "3000" in outcome.message
    assert fake.posts == []


async def test_timeout_after_sending_is_unknown_and_the_retry_recovers_the_id(
    http: httpx.AsyncClient, media: MediaFetcher, fake: LinkedInFake
) -> None:
    fake.fail_next("create", "hang")
    linkedin_client = client(http, media, fake)

    lost = await linkedin_client.publish(request())
    # The api tells the retry that this target's earlier attempt ended UNKNOWN.
    retried = await linkedin_client.publish(request(earlier_outcome_lost=True))

    assert lost.result == Result.UNKNOWN
    assert len(fake.posts) == 1
    assert retried.result == Result.PUBLISHED
    assert retried.platform_post_id == fake.posts[0]["urn"]
    assert retried.url == f"https://www.linkedin.com/feed/update/{fake.posts[0]['urn']}/"
    assert (retried.http_status, retried.code) == (422, "DUPLICATE_POST")
    assert len(fake.posts) == 1


async def test_a_duplicate_of_an_older_post_fails_naming_it_when_no_attempt_was_lost(
    http: httpx.AsyncClient, media: MediaFetcher, fake: LinkedInFake
) -> None:
    """LinkedIn answers DUPLICATE_POST for any earlier post with the same text, one the member
    deleted included: without a lost attempt of its own, the target made nothing."""
    headers = {
        "authorization": "Bearer member-token",
        "linkedin-version": linkedin.VERSION,
        "x-restli-protocol-version": "2.0.0",
    }
    earlier = await http.post(
        f"{fake.url}/rest/posts",
        json={
            "author": AUTHOR,
            "commentary": "Hello from Kairos",
            "visibility": "PUBLIC",
            "distribution": {"feedDistribution": "MAIN_FEED"},
            "lifecycleState": "PUBLISHED",
        },
        headers=headers,
    )
    old = earlier.headers["x-restli-id"]
    fake.delete(old)

    outcome = await client(http, media, fake).publish(request())

    assert outcome.result == Result.PERMANENT
    assert (outcome.http_status, outcome.code) == (422, "DUPLICATE_POST")
    assert old in outcome.message
    assert outcome.platform_post_id == ""
    assert fake.posts == []
