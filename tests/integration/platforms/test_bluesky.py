"""The Bluesky client against the fake PDS, over real HTTP."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from kairos_fakes.bluesky import Account, BlueskyFake
from kairos_fakes.media import JPEG, MediaHost, png
from kairos_publisher.media import MediaFetcher
from kairos_publisher.platforms import bluesky
from kairos_publisher.platforms.base import PublishRequest, RefreshedTokens, Result
from support.platforms import context, publish_request

CREATE = "/xrpc/com.atproto.repo.createRecord"
UPLOAD = "/xrpc/com.atproto.repo.uploadBlob"
GET_RECORD = "/xrpc/com.atproto.repo.getRecord"
REFRESH = "/xrpc/com.atproto.server.refreshSession"
CREATE_SESSION = "/xrpc/com.atproto.server.createSession"


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


def request_for(
    fake: BlueskyFake, account: Account, content: str = "Hello from Kairos", **fields: Any
) -> PublishRequest:
    """A request with a fresh session of `account`, as the publisher holds it."""
    access, refresh = fake.session_for(account.did)
    values: dict[str, Any] = {
        "access_token": access,
        "refresh_token": refresh,
        "handle": account.handle,
        "extra": {"did": account.did},
    }
    values.update(fields)
    return publish_request(content, **values)


def near(instant: datetime | None, expected: datetime, slack: float = 2.0) -> bool:
    return instant is not None and abs((instant - expected).total_seconds()) <= slack


async def test_text_post(
    client: bluesky.BlueskyClient, fake: BlueskyFake, account: Account
) -> None:
    request = request_for(fake, account, "Hello from Kairos")
    outcome = await client.publish(request)

    assert outcome.result == Result.PUBLISHED
    [stored] = fake.posts
    assert outcome.platform_post_id == stored["uri"]
    assert stored["uri"] == f"at://{account.did}/app.bsky.feed.post/{stored['rkey']}"
    assert outcome.url == f"https://bsky.app/profile/kairos.test/post/{stored['rkey']}"
    [call] = fake.requests
    assert (call.method, call.path) == ("POST", CREATE)
    assert call.headers["authorization"] == f"Bearer {request.access_token}"
    assert call.headers["content-type"] == "application/json"
    body = json.loads(call.body)
    assert set(body) == {"repo", "collection", "record"}
    assert body["repo"] == account.did
    assert body["collection"] == "app.bsky.feed.post"
    record = body["record"]
    assert set(record) == {"$type", "text", "createdAt", "facets"}
    assert record["$type"] == "app.bsky.feed.post"
    assert record["text"] == "Hello from Kairos"
    assert record["facets"] == []
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["createdAt"])
    created = datetime.fromisoformat(record["createdAt"].replace("Z", "+00:00"))
    assert near(created, datetime.now(UTC), 5)
    assert outcome.blocked_until is None  # 2,999 of 3,000 calls left


async def test_link_facets_use_utf8_byte_offsets(
    client: bluesky.BlueskyClient, fake: BlueskyFake, account: Account
) -> None:
    text = "héllo 🌍 https://example.com/x and (see http://a.example/wiki/Foo_(bar)). Done"
    outcome = await client.publish(request_for(fake, account, text))

    assert outcome.result == Result.PUBLISHED
    facets = fake.posts[0]["record"]["facets"]
    # "héllo " is 7 bytes (é is 2), the globe 4 and the space 1: the URL starts at byte 12.
    assert facets[0] == {
        "index": {"byteStart": 12, "byteEnd": 33},
        "features": [{"$type": "app.bsky.richtext.facet#link", "uri": "https://example.com/x"}],
    }
    # Its own bracket stays; the sentence's ")." does not.
    assert facets[1]["features"][0]["uri"] == "http://a.example/wiki/Foo_(bar)"
    encoded = text.encode()
    for facet in facets:
        index = facet["index"]
        assert (
            encoded[index["byteStart"] : index["byteEnd"]].decode() == facet["features"][0]["uri"]
        )
    assert len(facets) == 2


async def test_post_with_images(
    client: bluesky.BlueskyClient, fake: BlueskyFake, account: Account, media_host: MediaHost
) -> None:
    urls = [media_host.image_url("a.png"), media_host.image_url("b.jpg")]
    request = request_for(fake, account, "Two pictures", media_urls=urls)
    outcome = await client.publish(request)

    assert outcome.result == Result.PUBLISHED
    uploads = fake.calls("POST", UPLOAD)
    assert [u.body for u in uploads] == [png(), JPEG]  # the raw bytes, not multipart
    assert [u.headers["content-type"] for u in uploads] == ["image/png", "image/jpeg"]
    assert all(u.headers["authorization"] == f"Bearer {request.access_token}" for u in uploads)
    embed = fake.posts[0]["record"]["embed"]
    assert embed["$type"] == "app.bsky.embed.images"
    assert [image["alt"] for image in embed["images"]] == ["", ""]
    refs = [image["image"]["ref"]["$link"] for image in embed["images"]]
    assert [fake.blobs[ref]["content"] for ref in refs] == [png(), JPEG]
    assert embed["images"][0]["image"]["mimeType"] == "image/png"
    assert embed["images"][0]["image"]["size"] == len(png())


async def test_image_over_the_limit_is_permanent_and_not_uploaded(
    client: bluesky.BlueskyClient, fake: BlueskyFake, account: Account, media_host: MediaHost
) -> None:
    big = f"{media_host.url}/big.png?bytes=1000001"
    too_big = await client.publish(request_for(fake, account, media_urls=[big]))
    five = [media_host.image_url(f"{n}.png") for n in range(5)]
    too_many = await client.publish(request_for(fake, account, media_urls=five))

    assert too_big.result == Result.PERMANENT
    assert too_big.code == "media"
    assert "1000000" in too_big.message
    assert too_many.result == Result.PERMANENT
    assert too_many.code == "too_many_images"
    assert fake.requests == []
    assert media_host.calls("GET", "/images/") == []


async def test_blob_too_large_is_permanent_with_its_message(
    client: bluesky.BlueskyClient, fake: BlueskyFake, account: Account, media_host: MediaHost
) -> None:
    fake.fail_next("upload", "reject", message="This file is too large. It is 2.1MB.")
    request = request_for(fake, account, media_urls=[media_host.image_url("a.png")])
    outcome = await client.publish(request)

    assert outcome.result == Result.PERMANENT
    assert (outcome.http_status, outcome.code) == (400, "BlobTooLarge")
    assert outcome.message == "This file is too large. It is 2.1MB."
    assert fake.posts == []


async def test_thread_of_three_roots_every_part_at_the_first(
    client: bluesky.BlueskyClient, fake: BlueskyFake, account: Account
) -> None:
    first = await client.publish(request_for(fake, account, "1/3"))
    second = await client.publish(
        request_for(fake, account, "2/3", reply_to=first.platform_post_id)
    )
    third = await client.publish(
        request_for(fake, account, "3/3", reply_to=second.platform_post_id)
    )

    assert [o.result for o in (first, second, third)] == [Result.PUBLISHED] * 3
    one, two, three = fake.posts
    assert "reply" not in one["record"]
    assert two["record"]["reply"] == {
        "root": {"uri": one["uri"], "cid": one["cid"]},
        "parent": {"uri": one["uri"], "cid": one["cid"]},
    }
    assert three["record"]["reply"] == {
        "root": {"uri": one["uri"], "cid": one["cid"]},
        "parent": {"uri": two["uri"], "cid": two["cid"]},
    }
    lookups = fake.calls("GET", GET_RECORD)
    assert [c.query for c in lookups] == [
        {"repo": account.did, "collection": "app.bsky.feed.post", "rkey": one["rkey"]},
        {"repo": account.did, "collection": "app.bsky.feed.post", "rkey": two["rkey"]},
    ]


async def test_resuming_a_thread_posts_only_the_missing_part(
    http: httpx.AsyncClient, media: MediaFetcher, fake: BlueskyFake, account: Account
) -> None:
    before = bluesky.create(context(http, media, fake))
    first = await before.publish(request_for(fake, account, "part 1"))
    second = await before.publish(
        request_for(fake, account, "part 2", reply_to=first.platform_post_id)
    )

    # A restarted publisher knows only the stored id of part 2.
    after = bluesky.create(context(http, media, fake))
    third = await after.publish(
        request_for(fake, account, "part 3", reply_to=second.platform_post_id)
    )

    assert third.result == Result.PUBLISHED
    assert [p["record"]["text"] for p in fake.posts] == ["part 1", "part 2", "part 3"]
    assert len(fake.calls("POST", CREATE)) == 3
    reply = fake.posts[2]["record"]["reply"]
    assert reply["root"]["uri"] == first.platform_post_id
    assert reply["parent"]["uri"] == second.platform_post_id


async def test_reply_to_a_missing_post_is_permanent(
    client: bluesky.BlueskyClient, fake: BlueskyFake, account: Account
) -> None:
    gone = f"at://{account.did}/app.bsky.feed.post/3kaaaaaaaaaa2"
    outcome = await client.publish(request_for(fake, account, "reply", reply_to=gone))

    assert outcome.result == Result.PERMANENT
    assert (outcome.http_status, outcome.code) == (400, "RecordNotFound")
    assert gone in outcome.message
    assert fake.posts == []


async def test_expired_token_then_refresh_then_publish(
    client: bluesky.BlueskyClient, fake: BlueskyFake, account: Account
) -> None:
    request = request_for(fake, account, "after refresh")
    fake.fail_next("create", "expire_token")

    refused = await client.publish(request)
    assert refused.result == Result.AUTH
    assert (refused.http_status, refused.code) == (400, "ExpiredToken")
    assert refused.message == "Token has expired"

    tokens = await client.refresh(request)
    assert isinstance(tokens, RefreshedTokens)
    [call] = fake.calls("POST", REFRESH)
    assert call.headers["authorization"] == f"Bearer {request.refresh_token}"
    assert call.body == b""
    assert tokens.refresh_token != request.refresh_token
    assert tokens.extra == {"did": account.did, "handle": "kairos.test"}
    assert near(tokens.expires_at, datetime.now(UTC) + timedelta(hours=2), 5)

    again = await client.publish(
        replace(request, access_token=tokens.access_token, refresh_token=tokens.refresh_token)
    )
    assert again.result == Result.PUBLISHED
    assert [p["record"]["text"] for p in fake.posts] == ["after refresh"]
    still_expired = await client.publish(request)
    assert still_expired.result == Result.AUTH


async def test_a_used_refresh_jwt_is_refused(
    client: bluesky.BlueskyClient, fake: BlueskyFake, account: Account
) -> None:
    request = request_for(fake, account)
    assert isinstance(await client.refresh(request), RefreshedTokens)

    reused = await client.refresh(request)

    assert reused == "refreshSession: HTTP 400 ExpiredToken: Token has been revoked"
    assert fake.sessions.refreshes == 1
    assert fake.sessions_created == 0


async def test_refresh_falls_back_to_the_app_password(
    client: bluesky.BlueskyClient, fake: BlueskyFake, account: Account
) -> None:
    request = request_for(
        fake, account, extra={"did": account.did, "app_password": "app-pass-1234"}
    )
    assert isinstance(await client.refresh(request), RefreshedTokens)  # uses the refresh JWT

    tokens = await client.refresh(request)  # the refresh JWT is spent now

    assert isinstance(tokens, RefreshedTokens)
    [login] = fake.calls("POST", CREATE_SESSION)
    assert json.loads(login.body) == {"identifier": "kairos.test", "password": "app-pass-1234"}
    assert tokens.extra["did"] == account.did
    assert fake.sessions_created == 1


async def test_no_session_opens_one_with_the_app_password_and_learns_the_did(
    client: bluesky.BlueskyClient, fake: BlueskyFake, account: Account
) -> None:
    request = publish_request(
        "first post",
        access_token="",
        handle="kairos.test",
        extra={"app_password": "app-pass-1234"},
    )
    first = await client.publish(request)
    assert (first.result, first.code) == (Result.AUTH, "no_session")
    assert fake.requests == []

    tokens = await client.refresh(request)
    assert isinstance(tokens, RefreshedTokens)
    assert tokens.extra["did"] == account.did
    assert fake.calls("POST", REFRESH) == []  # there was no refresh JWT to try

    outcome = await client.publish(
        publish_request(
            "first post", access_token=tokens.access_token, handle="kairos.test", extra={}
        )
    )
    assert outcome.result == Result.PUBLISHED
    assert len(fake.calls("GET", "/xrpc/com.atproto.server.getSession")) == 1
    assert json.loads(fake.calls("POST", CREATE)[0].body)["repo"] == account.did
    assert outcome.platform_post_id.startswith(f"at://{account.did}/")


async def test_wrong_app_password_fails_for_good(
    client: bluesky.BlueskyClient, fake: BlueskyFake, account: Account
) -> None:
    request = publish_request(
        "x", access_token="", handle="kairos.test", extra={"app_password": "no"}
    )

    answer = await client.refresh(request)

    assert (
        answer == "createSession: HTTP 401 AuthenticationRequired: Invalid identifier or password"
    )


async def test_rate_limit_is_retryable_at_the_reset(
    client: bluesky.BlueskyClient, fake: BlueskyFake, account: Account
) -> None:
    fake.fail_next("create", "rate_limit", seconds=30)
    before = datetime.now(UTC)
    outcome = await client.publish(request_for(fake, account))
    after = datetime.now(UTC)

    assert outcome.result == Result.RETRYABLE
    assert (outcome.http_status, outcome.code) == (429, "RateLimitExceeded")
    # The reset header is in whole seconds, rounded up.
    assert outcome.retry_not_before is not None
    assert before + timedelta(seconds=29) <= outcome.retry_not_before
    assert outcome.retry_not_before <= after + timedelta(seconds=31)
    assert outcome.blocked_until == outcome.retry_not_before
    assert fake.posts == []


async def test_a_spent_budget_blocks_the_account_after_a_success(
    client: bluesky.BlueskyClient, fake: BlueskyFake, account: Account
) -> None:
    fake.rate_limit = 1
    outcome = await client.publish(request_for(fake, account))
    over = await client.publish(request_for(fake, account))

    assert outcome.result == Result.PUBLISHED
    window_end = datetime.now(UTC) + timedelta(seconds=300)
    assert near(outcome.blocked_until, window_end, 5)
    assert over.result == Result.RETRYABLE
    assert (over.http_status, over.code) == (429, "RateLimitExceeded")
    assert over.retry_not_before == outcome.blocked_until
    assert len(fake.posts) == 1


async def test_text_too_long_is_permanent_with_the_pds_message(
    client: bluesky.BlueskyClient, fake: BlueskyFake, account: Account
) -> None:
    graphemes = await client.publish(request_for(fake, account, "é" * 301))
    # 121 family emoji: 121 graphemes but 3,025 bytes.
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"
    byte_heavy = await client.publish(request_for(fake, account, family * 121))
    fits = await client.publish(request_for(fake, account, "é" * 300))

    assert graphemes.result == Result.PERMANENT
    assert (graphemes.http_status, graphemes.code) == (400, "InvalidRequest")
    assert graphemes.message == (
        "Invalid app.bsky.feed.post record: Record/text must not be longer than 300 graphemes"
    )
    assert byte_heavy.result == Result.PERMANENT
    assert byte_heavy.message.endswith("must not be longer than 3000 characters")
    assert fits.result == Result.PUBLISHED
    assert len(fake.posts) == 1


async def test_timeout_after_sending_is_unknown_and_posted_once(
    client: bluesky.BlueskyClient, fake: BlueskyFake, account: Account
) -> None:
    fake.fail_next("create", "hang")
    outcome = await client.publish(request_for(fake, account, "maybe"))

    assert outcome.result == Result.UNKNOWN
    assert [p["record"]["text"] for p in fake.posts] == ["maybe"]


async def test_upload_timeout_is_retryable_since_nothing_was_posted(
    client: bluesky.BlueskyClient, fake: BlueskyFake, account: Account, media_host: MediaHost
) -> None:
    fake.fail_next("upload", "hang")
    request = request_for(fake, account, media_urls=[media_host.image_url("a.png")])
    outcome = await client.publish(request)

    assert outcome.result == Result.RETRYABLE
    assert outcome.code == "timeout"
    assert fake.calls("POST", CREATE) == []


async def test_server_error_is_retryable(
    client: bluesky.BlueskyClient, fake: BlueskyFake, account: Account
) -> None:
    fake.fail_next("create", "server_error")
    outcome = await client.publish(request_for(fake, account))

    assert outcome.result == Result.RETRYABLE
    assert (outcome.http_status, outcome.code) == (500, "InternalServerError")
    assert fake.posts == []


async def test_writing_to_another_accounts_repo_is_auth(
    client: bluesky.BlueskyClient, fake: BlueskyFake, account: Account
) -> None:
    other = fake.add_account("someone.else", "pw")
    outcome = await client.publish(request_for(fake, account, extra={"did": other.did}))

    assert outcome.result == Result.AUTH
    assert (outcome.http_status, outcome.code) == (401, "AuthenticationRequired")
    assert fake.posts == []


async def test_the_accounts_pds_is_used_over_the_default(
    http: httpx.AsyncClient, media: MediaFetcher, fake: BlueskyFake, account: Account
) -> None:
    unreachable = bluesky.create(context(http, media))  # would go to https://bsky.social
    request = request_for(fake, account, instance_url=fake.url + "/")
    outcome = await unreachable.publish(request)

    assert outcome.result == Result.PUBLISHED
    assert len(fake.posts) == 1
