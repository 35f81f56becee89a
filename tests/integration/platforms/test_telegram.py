"""The Telegram client against the fake Bot API, over real HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from kairos_fakes.media import MediaHost
from kairos_fakes.telegram import TelegramFake
from kairos_publisher.media import MediaFetcher
from kairos_publisher.platforms import telegram
from kairos_publisher.platforms.base import Result
from support.platforms import context, publish_request

CHAT = "421337"


@pytest.fixture
async def fake() -> AsyncIterator[TelegramFake]:
    server = TelegramFake()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def client(
    http: httpx.AsyncClient, media: MediaFetcher, fake: TelegramFake
) -> telegram.TelegramClient:
    return telegram.create(context(http, media, fake))


def sent(fake: TelegramFake) -> list[dict[str, object]]:
    return [json.loads(r.body) for r in fake.calls("POST", "/bot")]


async def test_text_post(client: telegram.TelegramClient, fake: TelegramFake) -> None:
    token = fake.new_token()
    outcome = await client.publish(publish_request("Hello 👋", access_token=token, chat_id=CHAT))

    assert outcome.result == Result.PUBLISHED
    assert outcome.platform_post_id == "1"
    assert outcome.url == ""  # a private chat has no link
    [call] = fake.calls("POST")
    assert call.path == f"/bot{token}/sendMessage"
    assert call.headers["content-type"] == "application/json"
    assert "authorization" not in call.headers
    assert json.loads(call.body) == {"chat_id": 421337, "text": "Hello 👋"}
    assert [(p["chat_id"], p["text"]) for p in fake.posts] == [(421337, "Hello 👋")]


async def test_public_and_private_channel_urls(
    client: telegram.TelegramClient, fake: TelegramFake
) -> None:
    fake.add_chat("-1001111111111", "channel", "kairosnews")
    fake.add_chat("-1002222222222", "supergroup")

    public = await client.publish(publish_request(chat_id="-1001111111111"))
    private = await client.publish(publish_request(chat_id="-1002222222222"))
    by_name = await client.publish(publish_request(chat_id="@kairos_updates"))

    assert public.url == "https://t.me/kairosnews/1"
    assert private.url == "https://t.me/c/2222222222/1"
    assert by_name.url == "https://t.me/kairos_updates/1"
    assert sent(fake)[2]["chat_id"] == "@kairos_updates"


async def test_one_image_is_a_photo_with_caption(
    client: telegram.TelegramClient, fake: TelegramFake, media_host: MediaHost
) -> None:
    image = media_host.image_url("a.png")
    outcome = await client.publish(publish_request("Look", media_urls=[image], chat_id=CHAT))

    assert outcome.result == Result.PUBLISHED
    [call] = fake.calls("POST")
    assert call.path.endswith("/sendPhoto")
    assert json.loads(call.body) == {"chat_id": 421337, "photo": image, "caption": "Look"}
    assert fake.posts[0]["photo"] == image
    assert not media_host.requests  # Telegram fetches the URL itself


async def test_several_images_are_an_album_with_the_caption_first(
    client: telegram.TelegramClient, fake: TelegramFake, media_host: MediaHost
) -> None:
    images = [media_host.image_url("a.png"), media_host.image_url("b.jpg")]
    outcome = await client.publish(publish_request("Two", media_urls=images, chat_id=CHAT))

    assert outcome.result == Result.PUBLISHED
    assert outcome.platform_post_id == "1"  # the album's first message
    [body] = sent(fake)
    assert fake.calls("POST")[0].path.endswith("/sendMediaGroup")
    assert body["media"] == [
        {"type": "photo", "media": images[0], "caption": "Two"},
        {"type": "photo", "media": images[1]},
    ]
    assert [(p["message_id"], p["caption"]) for p in fake.posts] == [(1, "Two"), (2, "")]


async def test_text_too_long_for_a_caption(
    client: telegram.TelegramClient, fake: TelegramFake, media_host: MediaHost
) -> None:
    text = "x" * 1025
    image = media_host.image_url("a.png")

    one = await client.publish(publish_request(text, media_urls=[image], chat_id=CHAT))
    assert one.result == Result.PUBLISHED
    [body] = sent(fake)
    assert body["text"] == text
    assert body["link_preview_options"] == {
        "url": image,
        "prefer_large_media": True,
        "show_above_text": True,
    }
    assert len(fake.posts) == 1

    several = await client.publish(publish_request(text, media_urls=[image] * 2, chat_id=CHAT))
    assert several.result == Result.PERMANENT
    assert several.code == "caption_too_long"
    assert len(fake.calls("POST")) == 1  # refused before any call


async def test_thread_and_resume(client: telegram.TelegramClient, fake: TelegramFake) -> None:
    first = await client.publish(publish_request("1/3", chat_id=CHAT))
    second = await client.publish(
        publish_request("2/3", chat_id=CHAT, reply_to=first.platform_post_id)
    )
    # Resuming: only part 3 is published, replying to part 2's stored id.
    third = await client.publish(
        publish_request("3/3", chat_id=CHAT, reply_to=second.platform_post_id)
    )

    assert [o.result for o in (first, second, third)] == [Result.PUBLISHED] * 3
    assert [(p["text"], p["reply_to"]) for p in fake.posts] == [
        ("1/3", None),
        ("2/3", 1),
        ("3/3", 2),
    ]
    assert sent(fake)[2]["reply_parameters"] == {"message_id": 2}


async def test_revoked_token_is_auth_without_refresh(
    client: telegram.TelegramClient, fake: TelegramFake
) -> None:
    token = fake.new_token()
    fake.tokens.revoke(token)

    outcome = await client.publish(publish_request(access_token=token, chat_id=CHAT))

    assert outcome.result == Result.AUTH
    assert (outcome.http_status, outcome.code, outcome.message) == (401, "401", "Unauthorized")
    assert not hasattr(client, "refresh")  # bot tokens cannot be refreshed
    assert fake.posts == []


async def test_rate_limit_honours_retry_after_in_the_body(
    client: telegram.TelegramClient, fake: TelegramFake
) -> None:
    fake.fail_next("create", "rate_limit", seconds=7)
    before = datetime.now(UTC)

    outcome = await client.publish(publish_request(chat_id=CHAT))

    assert outcome.result == Result.RETRYABLE
    assert outcome.http_status == 429
    assert outcome.message == "Too Many Requests: retry after 7"
    assert outcome.retry_not_before is not None
    wait = outcome.retry_not_before - before
    assert timedelta(seconds=6.5) < wait < timedelta(seconds=8)
    assert outcome.blocked_until == outcome.retry_not_before
    assert fake.posts == []


async def test_permanent_rejections_carry_the_description(
    client: telegram.TelegramClient, fake: TelegramFake
) -> None:
    fake.absent.add("999")
    missing = await client.publish(publish_request(chat_id="999"))
    # 2,049 emoji are 2,049 code points but 4,098 UTF-16 units: over the limit.
    too_long = await client.publish(publish_request("😀" * 2049, chat_id=CHAT))
    fake.fail_next("create", "reject")
    blocked = await client.publish(publish_request(chat_id=CHAT))

    assert (missing.result, missing.code, missing.message) == (
        Result.PERMANENT,
        "400",
        "Bad Request: chat not found",
    )
    assert (too_long.result, too_long.message) == (
        Result.PERMANENT,
        "Bad Request: message is too long",
    )
    assert (blocked.result, blocked.http_status, blocked.message) == (
        Result.PERMANENT,
        403,
        "Forbidden: bot was blocked by the user",
    )
    fits = await client.publish(publish_request("😀" * 2048, chat_id=CHAT))
    assert fits.result == Result.PUBLISHED
    assert len(fake.posts) == 1


async def test_server_error_is_retryable(
    client: telegram.TelegramClient, fake: TelegramFake
) -> None:
    fake.fail_next("create", "server_error")

    outcome = await client.publish(publish_request(chat_id=CHAT))

    assert (outcome.result, outcome.http_status) == (Result.RETRYABLE, 500)
    assert fake.posts == []


async def test_timeout_after_sending_is_unknown(
    client: telegram.TelegramClient, fake: TelegramFake
) -> None:
    fake.fail_next("create", "hang")

    outcome = await client.publish(publish_request("maybe", chat_id=CHAT))

    assert outcome.result == Result.UNKNOWN
    assert [p["text"] for p in fake.posts] == ["maybe"]
