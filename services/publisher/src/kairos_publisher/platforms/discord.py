"""Discord through an incoming webhook: `POST /api/webhooks/{id}/{token}?wait=true`.

Credentials read: the webhook URL `https://discord.com/api/webhooks/{id}/{token}`, from
`extra["webhook_url"]` or else `access_token`; optional `extra["guild_id"]` for public URLs. The
token in the URL is the only secret, and it does not expire, so this client has no `refresh`:
an invalid token (401, code 50027) is AUTH and the webhook must be reconnected; a deleted webhook
(404, code 10015) is PERMANENT, since calling it again only earns a temporary ban. A stored URL on
discord.com is rebased onto `context.url("discord", ...)`, so development and tests reach a fake.

Every call carries `wait=true`: without it Discord answers 204 and a message it failed to save
produces no error. Body: `{"content", "allowed_mentions": {"parse": []}}` (text never pings
anyone), plus images as up to 10 embeds `{"image": {"url"}}` (Discord fetches them).

Video: the post's uploaded video is an attachment of the webhook message: a multipart/form-data
execute whose `payload_json` is the body above plus `attachments: [{"id": 0, "filename"}]` and
whose `files[0]` is the video, streamed from the media store (discord-api-docs reference.mdx
"Uploading Files"). The bytes are sent rather than a link, so the video plays in the channel.
That one request both uploads and publishes: `request.stage.publishing()` is awaited just before
it, and an answer lost after it was sent is UNKNOWN. Discord stores the file before it answers,
so nothing is polled. A file over the webhook's limit (10 MiB unless the server is boosted) is
413 code 40005, PERMANENT.

Threads: webhooks cannot reply to a message. A later part of a thread is posted as the next
message in the channel, or in the thread `settings["thread_id"]` (`?thread_id=`) when the target
names one. `platform_post_id` is the message id; `reply_to` is not needed and not used.

Public URL: `https://discord.com/channels/<guild>/<channel>/<message>`. The message does not say
its guild, so it comes from `extra["guild_id"]` or the webhook object (`GET` on the webhook URL),
fetched once per webhook and kept; "" when neither says.

Rate limits: `X-RateLimit-Remaining: 0` on any answer blocks the account until
`X-RateLimit-Reset-After` (or `X-RateLimit-Reset`); a 429 waits `retry_after` from the body (or
`Retry-After`). 5xx are RETRYABLE, other 4xx PERMANENT with Discord's code and message.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from kairos_publisher.media import StoredMedia
from kairos_publisher.platforms.base import (
    PlatformContext,
    PublishOutcome,
    PublishRequest,
    Result,
    epoch,
    excerpt,
    json_object,
    retry_after,
    send,
)
from kairos_publisher.upload import multipart, send_publishing

WEBHOOK_PATH = re.compile(r"^/api(?:/v\d+)?/webhooks/(\d+)/([^/]+)/?$")
DISCORD_HOSTS = frozenset(
    {"discord.com", "discordapp.com", "ptb.discord.com", "canary.discord.com"}
)
#: Most embeds in one message.
EMBED_LIMIT = 10


def seconds_from_now(value: object, now: datetime) -> datetime | None:
    """`now` plus a number of seconds given as a number or a numeric string."""
    try:
        return now + timedelta(seconds=max(0.0, float(str(value))))
    except ValueError:
        return None


def blocked_until(response: httpx.Response, now: datetime) -> datetime | None:
    """When the bucket this answer drew on refills, if it is now empty."""
    headers = response.headers
    if headers.get("x-ratelimit-remaining") != "0":
        return None
    after = headers.get("x-ratelimit-reset-after")
    if after:
        return seconds_from_now(after, now)
    return epoch(headers.get("x-ratelimit-reset"))


def classify(response: httpx.Response, blocked: datetime | None, now: datetime) -> PublishOutcome:
    """An unsuccessful answer, by status and Discord's `{message, code}` body."""
    status = response.status_code
    body = json_object(response)
    code = str(body.get("code") or status)
    message = str(body.get("message") or excerpt(response))
    if body.get("errors"):
        message = f"{message}: {json.dumps(body['errors'], separators=(',', ':'))}"[:500]
    if status == 429:
        wait = seconds_from_now(body["retry_after"], now) if "retry_after" in body else None
        wait = wait or retry_after(response, now)
        until = max((t for t in (wait, blocked) if t is not None), default=None)
        return PublishOutcome(
            Result.RETRYABLE,
            http_status=status,
            code=code,
            message=message,
            retry_not_before=wait,
            blocked_until=until,
        )
    if status >= 500 or status == 408:
        result = Result.RETRYABLE
    elif status == 401:
        result = Result.AUTH
    else:
        result = Result.PERMANENT
    return PublishOutcome(
        result, http_status=status, code=code, message=message, blocked_until=blocked
    )


class DiscordClient:
    """Executes the account's webhook, one message per part."""

    def __init__(self, context: PlatformContext) -> None:
        self.http = context.http
        self.media = context.media
        self.base = context.url("discord", "https://discord.com")
        #: Guild id by webhook id, as the webhook object said ("" for none).
        self.guilds: dict[str, str] = {}

    def webhook(self, request: PublishRequest) -> tuple[str, str] | None:
        """The URL to call (rebased when on discord.com) and the webhook id."""
        stored = request.extra.get("webhook_url") or request.access_token
        parts = urlsplit(stored)
        match = WEBHOOK_PATH.match(parts.path)
        if parts.scheme not in ("http", "https") or match is None:
            return None
        if parts.hostname in DISCORD_HOSTS:
            return self.base + parts.path.rstrip("/"), match.group(1)
        return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}", match.group(1)

    async def guild(self, request: PublishRequest, url: str, webhook_id: str) -> str:
        """The webhook's guild id: the account's, else the webhook object's (asked once)."""
        known = request.extra.get("guild_id") or self.guilds.get(webhook_id)
        if known is not None:
            return known
        response = await send(self.http, self.http.build_request("GET", url))
        if isinstance(response, PublishOutcome) or response.status_code >= 500:
            return ""  # ask again next time
        guild = ""
        if response.is_success:
            try:
                guild = str(response.json().get("guild_id") or "")
            except (ValueError, AttributeError):
                guild = ""
        self.guilds[webhook_id] = guild
        return guild

    async def publish(self, request: PublishRequest) -> PublishOutcome:
        found = self.webhook(request)
        if found is None:
            return PublishOutcome(
                Result.PERMANENT, code="no_webhook", message="account has no Discord webhook URL"
            )
        url, webhook_id = found
        if len(request.media_urls) > EMBED_LIMIT:
            return PublishOutcome(
                Result.PERMANENT,
                code="too_many_media",
                message=f"{len(request.media_urls)} images; a message holds {EMBED_LIMIT} embeds",
            )
        body: dict[str, Any] = {"content": request.content, "allowed_mentions": {"parse": []}}
        if request.media_urls:
            body["embeds"] = [{"image": {"url": image}} for image in request.media_urls]
        params = {"wait": "true"}
        if request.settings.get("thread_id"):
            params["thread_id"] = request.settings["thread_id"]
        video = request.video
        if video is not None:
            response = await self.send_video(request, url, params, body, video)
        else:
            outgoing = self.http.build_request("POST", url, params=params, json=body)
            response = await send(self.http, outgoing)
        if isinstance(response, PublishOutcome):
            return response
        now = datetime.now(UTC)
        blocked = blocked_until(response, now)
        if response.status_code != 200:
            if response.is_success:  # 204: Discord ignored wait=true; nothing says it was kept
                return PublishOutcome(
                    Result.UNKNOWN,
                    http_status=response.status_code,
                    message="webhook answered without the message",
                    blocked_until=blocked,
                )
            return classify(response, blocked, now)
        try:
            message = response.json()
            message_id = str(message["id"])
            channel_id = str(message.get("channel_id") or "")
        except (ValueError, KeyError, TypeError, AttributeError):
            return PublishOutcome(
                Result.UNKNOWN,
                http_status=response.status_code,
                message=f"sent, but the answer has no message: {excerpt(response)}",
                blocked_until=blocked,
            )
        guild = await self.guild(request, url, webhook_id)
        link = f"https://discord.com/channels/{guild}/{channel_id}/{message_id}"
        return PublishOutcome(
            Result.PUBLISHED,
            platform_post_id=message_id,
            url=link if guild and channel_id else "",
            http_status=response.status_code,
            blocked_until=blocked,
        )

    async def send_video(
        self,
        request: PublishRequest,
        url: str,
        params: dict[str, str],
        body: dict[str, Any],
        video: StoredMedia,
    ) -> httpx.Response | PublishOutcome:
        """Execute the webhook with the video as `files[0]`, marked as the publishing call."""
        payload = body | {"attachments": [{"id": 0, "filename": video.filename}]}
        form = multipart(self.media, video, "files[0]", {"payload_json": json.dumps(payload)})
        outgoing = self.http.build_request(
            "POST", url, params=params, headers=form.headers, content=form.content()
        )
        return await send_publishing(self.http, request.stage, outgoing)


def create(context: PlatformContext) -> DiscordClient:
    return DiscordClient(context)
