"""The Slack client against the fake Web API, over real HTTP."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import httpx
import pytest

from kairos_fakes.media import MediaHost
from kairos_fakes.slack import SlackFake
from kairos_publisher.media import MediaFetcher
from kairos_publisher.platforms import slack
from kairos_publisher.platforms.base import RefreshedTokens, Result
from support.platforms import context, publish_request

CHANNEL = "C0KAIROS1"
APP = {"KAIROS_SLACK_CLIENT_ID": "client-1", "KAIROS_SLACK_CLIENT_SECRET": "secret-1"}


@pytest.fixture
async def fake() -> AsyncIterator[SlackFake]:
    server = SlackFake()
    server.client_id, server.client_secret = "client-1", "secret-1"
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def client(http: httpx.AsyncClient, media: MediaFetcher, fake: SlackFake) -> slack.SlackClient:
    return slack.create(context(http, media, fake, environ=APP))


async def test_text_post(client: slack.SlackClient, fake: SlackFake) -> None:
    access, _ = fake.tokens.issue(12 * 3600)
    outcome = await client.publish(
        publish_request("Hello *team*", access_token=access, chat_id=CHANNEL)
    )

    assert outcome.result == Result.PUBLISHED
    [post] = fake.posts
    assert re.fullmatch(r"\d{10}\.\d{6}", post["ts"])
    assert outcome.platform_post_id == post["ts"]
    assert outcome.url == (
        f"https://kairos-fake.slack.com/archives/{CHANNEL}/p{post['ts'].replace('.', '')}"
    )
    create, link = fake.calls("POST")
    assert create.path == "/api/chat.postMessage"
    assert create.headers["authorization"] == f"Bearer {access}"
    assert create.headers["content-type"] == "application/json"
    assert json.loads(create.body) == {"channel": CHANNEL, "text": "Hello *team*"}
    assert link.path == "/api/chat.getPermalink"
    assert parse_qs(link.body.decode()) == {"channel": [CHANNEL], "message_ts": [post["ts"]]}


async def test_images_are_blocks_with_the_text_as_fallback(
    client: slack.SlackClient, fake: SlackFake, media_host: MediaHost
) -> None:
    images = [media_host.image_url("a.png"), media_host.image_url("b.jpg")]
    outcome = await client.publish(publish_request("Look", media_urls=images, chat_id=CHANNEL))

    assert outcome.result == Result.PUBLISHED
    body = json.loads(fake.calls("POST", "postMessage")[0].body)
    assert body["text"] == "Look"
    assert body["blocks"] == [
        {"type": "section", "text": {"type": "mrkdwn", "text": "Look"}},
        {"type": "image", "image_url": images[0], "alt_text": "Image 1 of 2"},
        {"type": "image", "image_url": images[1], "alt_text": "Image 2 of 2"},
    ]
    assert not media_host.requests  # Slack fetches the URLs itself


async def test_thread_replies_to_the_root_and_resumes(
    client: slack.SlackClient, fake: SlackFake
) -> None:
    first = await client.publish(publish_request("1/3", chat_id=CHANNEL))
    second = await client.publish(
        publish_request("2/3", chat_id=CHANNEL, reply_to=first.platform_post_id)
    )
    # Resuming: only part 3 is published, with reply_to = part 2's stored id.
    third = await client.publish(
        publish_request("3/3", chat_id=CHANNEL, reply_to=second.platform_post_id)
    )

    root, reply_2, reply_3 = (p["ts"] for p in fake.posts)
    assert [p["text"] for p in fake.posts] == ["1/3", "2/3", "3/3"]
    assert (first.platform_post_id, second.platform_post_id, third.platform_post_id) == (
        root,
        f"{root}/{reply_2}",
        f"{root}/{reply_3}",
    )
    assert [p["thread_ts"] for p in fake.posts] == ["", root, root]  # never a reply's ts
    assert [p["root"] for p in fake.posts] == ["", root, root]
    assert third.url.endswith(f"?thread_ts={root}&cid={CHANNEL}")


async def test_the_fake_threads_a_reply_to_a_reply_under_the_root(
    http: httpx.AsyncClient, fake: SlackFake
) -> None:
    """As Slack does, so that a client sending a reply's ts would be caught by `thread_ts`."""
    url = f"{fake.url}/api/chat.postMessage"
    auth = {"authorization": "Bearer xoxb-dev"}
    root = (await http.post(url, json={"channel": CHANNEL, "text": "a"}, headers=auth)).json()
    body = {"channel": CHANNEL, "text": "b", "thread_ts": root["ts"]}
    reply = (await http.post(url, json=body, headers=auth)).json()
    body = {"channel": CHANNEL, "text": "c", "thread_ts": reply["ts"]}
    nested = (await http.post(url, json=body, headers=auth)).json()

    assert nested["ok"] is True
    assert nested["message"]["thread_ts"] == root["ts"]
    assert fake.posts[2]["thread_ts"] == reply["ts"]
    assert fake.posts[2]["root"] == root["ts"]


async def test_expired_token_refreshes_once_and_rotates(
    client: slack.SlackClient, fake: SlackFake
) -> None:
    access, refresh = fake.tokens.issue(12 * 3600)
    fake.tokens.expire(access)
    request = publish_request(access_token=access, refresh_token=refresh, chat_id=CHANNEL)

    refused = await client.publish(request)
    assert (refused.result, refused.code) == (Result.AUTH, "token_expired")
    assert client.refresh_margin == timedelta(minutes=30)

    tokens = await client.refresh(request)
    assert isinstance(tokens, RefreshedTokens)
    assert tokens.refresh_token != refresh
    assert tokens.expires_at is not None
    assert tokens.expires_at - datetime.now(UTC) > timedelta(hours=11, minutes=59)
    [call] = fake.calls("POST", "oauth.v2.access")
    assert parse_qs(call.body.decode()) == {
        "grant_type": ["refresh_token"],
        "refresh_token": [refresh],
        "client_id": ["client-1"],
        "client_secret": ["secret-1"],
    }

    retried = await client.publish(
        replace(request, access_token=tokens.access_token, refresh_token=tokens.refresh_token)
    )
    assert retried.result == Result.PUBLISHED
    assert len(fake.posts) == 1

    again = await client.refresh(request)  # the used refresh token was revoked
    assert isinstance(again, str)
    assert "invalid_refresh_token" in again


async def test_revoked_token_is_auth_and_no_rotation_cannot_refresh(
    client: slack.SlackClient, fake: SlackFake
) -> None:
    access, _ = fake.tokens.issue(None)
    fake.tokens.revoke(access)
    request = publish_request(access_token=access, chat_id=CHANNEL)

    outcome = await client.publish(request)

    assert (outcome.result, outcome.http_status, outcome.code) == (
        Result.AUTH,
        200,
        "token_revoked",
    )
    assert isinstance(await client.refresh(request), str)
    assert fake.calls("POST", "oauth") == []


async def test_rate_limit_waits_retry_after(client: slack.SlackClient, fake: SlackFake) -> None:
    fake.fail_next("create", "rate_limit", seconds=3)
    before = datetime.now(UTC)

    outcome = await client.publish(publish_request(chat_id=CHANNEL))

    assert (outcome.result, outcome.http_status, outcome.code) == (
        Result.RETRYABLE,
        429,
        "ratelimited",
    )
    assert outcome.retry_not_before is not None
    assert timedelta(seconds=2.5) < outcome.retry_not_before - before < timedelta(seconds=3.5)
    assert outcome.blocked_until == outcome.retry_not_before
    assert fake.posts == []


async def test_ok_false_in_a_200_is_permanent_with_the_code(
    client: slack.SlackClient, fake: SlackFake
) -> None:
    fake.absent.add("C0GONE")
    fake.archive("C0OLD")
    fake.leave("C0OUT")

    outcomes = [
        await client.publish(publish_request(chat_id="C0GONE")),
        await client.publish(publish_request(chat_id="C0OLD")),
        await client.publish(publish_request(chat_id="C0OUT")),
        await client.publish(publish_request("x" * 40001, chat_id=CHANNEL)),
        await client.publish(publish_request("", chat_id=CHANNEL)),
    ]

    assert [(o.result, o.http_status, o.code) for o in outcomes] == [
        (Result.PERMANENT, 200, "channel_not_found"),
        (Result.PERMANENT, 200, "is_archived"),
        (Result.PERMANENT, 200, "not_in_channel"),
        (Result.PERMANENT, 200, "msg_too_long"),
        (Result.PERMANENT, 200, "no_text"),
    ]
    assert json.loads(outcomes[0].message) == {"ok": False, "error": "channel_not_found"}
    assert fake.posts == []


@pytest.mark.parametrize("code", ["internal_error", "fatal_error"])
async def test_an_error_after_which_the_message_may_exist_is_unknown_and_not_retried(
    client: slack.SlackClient, fake: SlackFake, code: str
) -> None:
    """Slack: "It's possible some aspect of the operation succeeded before the error was
    raised". The fake plays the case where it did: a retry would post the message twice."""
    fake.fail_next("create", "reject", message=code)

    outcome = await client.publish(publish_request("maybe twice", chat_id=CHANNEL))

    assert (outcome.result, outcome.http_status, outcome.code) == (Result.UNKNOWN, 200, code)
    assert json.loads(outcome.message) == {"ok": False, "error": code}
    assert [p["text"] for p in fake.posts] == ["maybe twice"]


async def test_a_truncated_request_and_an_unavailable_slack_posted_nothing_and_are_retryable(
    client: slack.SlackClient, fake: SlackFake
) -> None:
    fake.fail_next("create", "reject", message="request_timeout")
    truncated = await client.publish(publish_request(chat_id=CHANNEL))
    fake.fail_next("create", "server_error")
    unavailable = await client.publish(publish_request(chat_id=CHANNEL))

    assert (truncated.result, truncated.code) == (Result.RETRYABLE, "request_timeout")
    assert (unavailable.result, unavailable.http_status) == (Result.RETRYABLE, 503)
    assert fake.posts == []
    assert len(fake.calls("POST", "postMessage")) == 2


async def test_timeout_after_sending_is_unknown(client: slack.SlackClient, fake: SlackFake) -> None:
    fake.fail_next("create", "hang")

    outcome = await client.publish(publish_request("maybe", chat_id=CHANNEL))

    assert outcome.result == Result.UNKNOWN
    assert [p["text"] for p in fake.posts] == ["maybe"]


async def test_permalink_failure_still_publishes(
    client: slack.SlackClient, fake: SlackFake
) -> None:
    fake.fail_next("permalink", "server_error")

    outcome = await client.publish(publish_request(chat_id=CHANNEL))

    assert outcome.result == Result.PUBLISHED
    assert outcome.platform_post_id == fake.posts[0]["ts"]
    assert outcome.url == ""
