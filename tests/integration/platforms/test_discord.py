"""The Discord webhook client against the fake, over real HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from kairos_fakes.discord import DiscordFake, Webhook
from kairos_fakes.media import MediaHost
from kairos_publisher.media import MediaFetcher
from kairos_publisher.platforms import discord
from kairos_publisher.platforms.base import PublishRequest, Result
from support.platforms import context, publish_request


@pytest.fixture
async def fake() -> AsyncIterator[DiscordFake]:
    server = DiscordFake()
    await server.start()
    yield server
    await server.stop()
    # The client never relies on a 204: every execute asked for the created message.
    assert all(r.query.get("wait") == "true" for r in server.calls("POST"))


@pytest.fixture
def hook(fake: DiscordFake) -> Webhook:
    return fake.create_webhook(guild_id="111", channel_id="222")


@pytest.fixture
def client(
    http: httpx.AsyncClient, media: MediaFetcher, fake: DiscordFake
) -> discord.DiscordClient:
    return discord.create(context(http, media, fake))


def request_for(
    fake: DiscordFake, hook: Webhook, content: str = "Hi", **fields: object
) -> PublishRequest:
    """A request whose stored webhook URL is the real discord.com one."""
    url = fake.webhook_url(hook, "https://discord.com")
    return publish_request(content, access_token=url, **fields)


async def test_text_post(client: discord.DiscordClient, fake: DiscordFake, hook: Webhook) -> None:
    outcome = await client.publish(request_for(fake, hook, "Hello @everyone"))

    assert outcome.result == Result.PUBLISHED
    [post] = fake.posts
    message_id = post["message"]["id"]
    assert outcome.platform_post_id == message_id
    assert outcome.url == f"https://discord.com/channels/111/222/{message_id}"
    [call] = fake.calls("POST")
    assert call.path == f"/api/webhooks/{hook.id}/{hook.token}"  # rebased onto the fake
    assert call.query == {"wait": "true"}
    assert call.headers["content-type"] == "application/json"
    assert "authorization" not in call.headers
    assert json.loads(call.body) == {
        "content": "Hello @everyone",
        "allowed_mentions": {"parse": []},
    }
    assert outcome.blocked_until is None  # 4 of 5 calls left in the window


async def test_guild_is_asked_once_per_webhook(
    client: discord.DiscordClient, fake: DiscordFake, hook: Webhook
) -> None:
    first = await client.publish(request_for(fake, hook))
    second = await client.publish(request_for(fake, hook))
    other = fake.create_webhook(guild_id="333", channel_id="444")
    named = await client.publish(
        publish_request(extra={"webhook_url": fake.webhook_url(other), "guild_id": "555"})
    )

    assert first.url.startswith("https://discord.com/channels/111/222/")
    assert second.url.startswith("https://discord.com/channels/111/222/")
    assert named.url.startswith("https://discord.com/channels/555/444/")
    assert len(fake.calls("GET")) == 1  # cached; none when the account names its guild


async def test_images_are_embeds(
    client: discord.DiscordClient, fake: DiscordFake, hook: Webhook, media_host: MediaHost
) -> None:
    images = [media_host.image_url("a.png"), media_host.image_url("b.gif")]
    outcome = await client.publish(request_for(fake, hook, "Look", media_urls=images))

    assert outcome.result == Result.PUBLISHED
    assert fake.posts[0]["body"]["embeds"] == [{"image": {"url": u}} for u in images]
    assert not media_host.requests  # Discord fetches the URLs itself

    too_many = await client.publish(request_for(fake, hook, media_urls=images * 6))
    assert (too_many.result, too_many.code) == (Result.PERMANENT, "too_many_media")
    assert len(fake.posts) == 1


async def test_thread_parts_follow_in_the_channel_or_thread(
    client: discord.DiscordClient, fake: DiscordFake, hook: Webhook
) -> None:
    settings = {"thread_id": "999"}
    first = await client.publish(request_for(fake, hook, "1/3", settings=settings))
    second = await client.publish(
        request_for(fake, hook, "2/3", settings=settings, reply_to=first.platform_post_id)
    )
    # Resuming: only part 3 goes out.
    third = await client.publish(
        request_for(fake, hook, "3/3", settings=settings, reply_to=second.platform_post_id)
    )

    assert [o.result for o in (first, second, third)] == [Result.PUBLISHED] * 3
    assert [p["body"]["content"] for p in fake.posts] == ["1/3", "2/3", "3/3"]
    assert all(p["query"] == {"wait": "true", "thread_id": "999"} for p in fake.posts)
    assert all(p["message"]["channel_id"] == "999" for p in fake.posts)
    assert third.url == f"https://discord.com/channels/111/999/{third.platform_post_id}"


async def test_deleted_webhook_is_permanent_and_bad_token_auth(
    client: discord.DiscordClient, fake: DiscordFake, hook: Webhook
) -> None:
    wrong = Webhook(hook.id, "not-the-token", "", "")
    bad_token = await client.publish(request_for(fake, wrong))
    fake.delete_webhook(hook.id)
    deleted = await client.publish(request_for(fake, hook))

    assert (bad_token.result, bad_token.http_status, bad_token.code, bad_token.message) == (
        Result.AUTH,
        401,
        "50027",
        "Invalid Webhook Token",
    )
    assert not hasattr(client, "refresh")  # webhook tokens do not expire
    assert (deleted.result, deleted.http_status, deleted.code, deleted.message) == (
        Result.PERMANENT,
        404,
        "10015",
        "Unknown Webhook",
    )
    assert fake.posts == []


async def test_rate_limit_waits_the_bodys_retry_after(
    client: discord.DiscordClient, fake: DiscordFake, hook: Webhook
) -> None:
    fake.fail_next("create", "rate_limit", seconds=2.5)
    before = datetime.now(UTC)

    outcome = await client.publish(request_for(fake, hook))

    assert (outcome.result, outcome.http_status) == (Result.RETRYABLE, 429)
    assert outcome.message == "You are being rate limited."
    assert outcome.retry_not_before is not None
    assert outcome.blocked_until is not None
    # 2.5 s from the float in the body, not the Retry-After header's rounded-up 3.
    assert timedelta(seconds=2.3) < outcome.retry_not_before - before < timedelta(seconds=2.8)
    assert outcome.blocked_until >= outcome.retry_not_before
    assert fake.posts == []


async def test_used_up_bucket_blocks_after_a_success(
    client: discord.DiscordClient, fake: DiscordFake, hook: Webhook
) -> None:
    fake.limit, fake.window = 1, 4.0
    before = datetime.now(UTC)

    published = await client.publish(request_for(fake, hook))
    refused = await client.publish(request_for(fake, hook))

    assert published.result == Result.PUBLISHED
    assert published.blocked_until is not None
    assert timedelta(seconds=3.5) < published.blocked_until - before < timedelta(seconds=4.5)
    assert refused.result == Result.RETRYABLE
    assert refused.retry_not_before is not None
    assert abs((refused.retry_not_before - published.blocked_until).total_seconds()) < 0.5
    assert len(fake.posts) == 1


async def test_permanent_rejections_carry_discords_code(
    client: discord.DiscordClient, fake: DiscordFake, hook: Webhook
) -> None:
    too_long = await client.publish(request_for(fake, hook, "x" * 2001))
    empty = await client.publish(request_for(fake, hook, ""))
    fits = await client.publish(request_for(fake, hook, "x" * 2000))

    assert (too_long.result, too_long.http_status, too_long.code) == (
        Result.PERMANENT,
        400,
        "50035",
    )
    assert too_long.message.startswith("Invalid Form Body: ")
    assert "Must be 2000 or fewer in length." in too_long.message
    assert (empty.result, empty.code, empty.message) == (
        Result.PERMANENT,
        "50006",
        "Cannot send an empty message",
    )
    assert fits.result == Result.PUBLISHED
    assert len(fake.posts) == 1


async def test_server_error_is_retryable(
    client: discord.DiscordClient, fake: DiscordFake, hook: Webhook
) -> None:
    fake.fail_next("create", "server_error")

    outcome = await client.publish(request_for(fake, hook))

    assert (outcome.result, outcome.http_status) == (Result.RETRYABLE, 500)
    assert fake.posts == []


async def test_timeout_after_sending_is_unknown(
    client: discord.DiscordClient, fake: DiscordFake, hook: Webhook
) -> None:
    fake.fail_next("create", "hang")

    outcome = await client.publish(request_for(fake, hook, "maybe"))

    assert outcome.result == Result.UNKNOWN
    assert [p["body"]["content"] for p in fake.posts] == ["maybe"]


async def test_the_fake_answers_204_without_wait(
    http: httpx.AsyncClient, fake: DiscordFake
) -> None:
    """Why the client always sends wait=true: without it there is no message to read."""
    hook = fake.create_webhook()
    response = await http.post(
        f"{fake.url}/api/v10/webhooks/{hook.id}/{hook.token}", json={"content": "x"}
    )
    assert response.status_code == 204
    assert response.content == b""
    fake.requests.clear()  # the fixture's wait=true check is about the client's calls
