"""Telegram through the Bot API: `sendMessage`, `sendPhoto`, `sendMediaGroup` and `sendVideo`.

Credentials read: `access_token` is the bot token (it goes in the path, `/bot<token>/<method>`;
there is no auth header) and `chat_id` is the chat (a numeric id, or `@channelusername`). Bot
tokens do not expire and cannot be refreshed, so this client has no `refresh`: a revoked token is
AUTH and the account must be reconnected.

Posts:
- text only: `sendMessage {chat_id, text}`;
- one image: `sendPhoto {chat_id, photo: <url>, caption: <text>}` (Telegram fetches the URL);
- 2-10 images: `sendMediaGroup` with the text as the first item's caption.
A caption holds at most 1,024 UTF-16 code units. When the text is longer, the part is still sent
in one call, so that a retry can never leave half a part behind or post an image twice: with one
image, as `sendMessage` whose link preview is that image, shown large above the text; with several
images, the part is refused as PERMANENT (`caption_too_long`), because one message cannot carry
both and two calls would not be one part.

Video: the post's uploaded video goes to `sendVideo` as a multipart/form-data upload (field
`video`, streamed from the media store) with `chat_id`, `caption`, `supports_streaming=true` and
the probed `width`, `height` and `duration` (whole seconds), plus `reply_parameters` as JSON. The
bytes are sent, never a URL: Telegram fetches a video by URL only up to 20 MB, while an upload
may hold 50 MB ("Sending Files"). That one request both uploads and publishes, so
`request.stage.publishing()` is awaited just before it, and an answer lost after it was sent is
UNKNOWN (the video may be in the chat); a 413 "Request Entity Too Large" (over 50 MB) is
PERMANENT. Telegram processes the video before it answers, so there is nothing to poll. A
caption over 1,024 UTF-16 code units is PERMANENT (`caption_too_long`): the video cannot be
posted with the whole text in one message.

Replies: `reply_parameters: {message_id}`; a thread is a chain of replies. `platform_post_id` is
the message id (for a media group, the first message's id), which is all a reply needs since every
part goes to the same chat. Public URL: `https://t.me/<username>/<id>` for a chat with a username,
`https://t.me/c/<id without -100>/<id>` for a private supergroup or channel, "" for other chats.

Errors: the HTTP status equals `error_code`, the body is `{"ok":false,"error_code","description",
"parameters":{"retry_after"}}`. 429 is RETRYABLE at `retry_after` (Telegram sends no rate-limit
headers, so that wait is also `blocked_until`); 401, and 404 (the path's token is not a token),
are AUTH; other 4xx are PERMANENT with the description; 5xx are RETRYABLE.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from kairos_publisher.media import StoredMedia
from kairos_publisher.platforms.base import (
    PlatformContext,
    PublishOutcome,
    PublishRequest,
    Result,
    excerpt,
    json_object,
    retry_after,
    send,
    utf16_length,
)
from kairos_publisher.upload import multipart, send_publishing

#: Most characters (UTF-16 code units) in a photo or album caption.
CAPTION_LIMIT = 1024
#: Most items in one album.
ALBUM_LIMIT = 10


def chat_ref(chat_id: str) -> int | str:
    """A numeric chat id as a number (as the API documents it); `@username` as is."""
    try:
        return int(chat_id)
    except ValueError:
        return chat_id


def public_url(message: dict[str, Any]) -> str:
    """The t.me link of a message, or "" where the chat has none (private chats, groups)."""
    chat = message.get("chat") or {}
    message_id = message.get("message_id")
    username = chat.get("username")
    if username:
        return f"https://t.me/{username}/{message_id}"
    chat_id = str(chat.get("id", ""))
    if chat.get("type") in ("supergroup", "channel") and chat_id.startswith("-100"):
        return f"https://t.me/c/{chat_id[4:]}/{message_id}"
    return ""


def classify(response: httpx.Response) -> PublishOutcome:
    """An unsuccessful Bot API answer, read by its `error_code` and `parameters`."""
    data = json_object(response)
    status = response.status_code
    code = data.get("error_code")
    if not isinstance(code, int):
        code = status
    message = str(data.get("description") or excerpt(response))
    parameters = data.get("parameters") or {}
    if code == 429 or status == 429:
        wait = parameters.get("retry_after") if isinstance(parameters, dict) else None
        until = retry_after(response)
        if isinstance(wait, int | float):
            until = datetime.now(UTC) + timedelta(seconds=max(0.0, float(wait)))
        return PublishOutcome(
            Result.RETRYABLE,
            http_status=status,
            code=str(code),
            message=message,
            retry_not_before=until,
            blocked_until=until,
        )
    if code >= 500 or status >= 500:
        return PublishOutcome(Result.RETRYABLE, http_status=status, code=str(code), message=message)
    if code in (401, 404):
        return PublishOutcome(Result.AUTH, http_status=status, code=str(code), message=message)
    if isinstance(parameters, dict) and "migrate_to_chat_id" in parameters:
        message = f"{message} (the chat is now {parameters['migrate_to_chat_id']})"
    return PublishOutcome(Result.PERMANENT, http_status=status, code=str(code), message=message)


class TelegramClient:
    """Sends each part as one Bot API call to the account's chat."""

    def __init__(self, context: PlatformContext) -> None:
        self.http = context.http
        self.media = context.media
        self.base = context.url("telegram", "https://api.telegram.org")

    def call(self, request: PublishRequest) -> tuple[str, dict[str, Any]] | PublishOutcome:
        """The method and body for this part, or why it cannot be sent."""
        body: dict[str, Any] = {"chat_id": chat_ref(request.chat_id)}
        if request.reply_to:
            try:
                body["reply_parameters"] = {"message_id": int(request.reply_to)}
            except ValueError:
                return PublishOutcome(
                    Result.PERMANENT,
                    code="bad_reply_to",
                    message=f"reply_to {request.reply_to!r} is not a Telegram message id",
                )
        images = request.media_urls
        fits = utf16_length(request.content) <= CAPTION_LIMIT
        if not images:
            return "sendMessage", body | {"text": request.content}
        if len(images) == 1 and fits:
            return "sendPhoto", body | {"photo": images[0], "caption": request.content}
        if len(images) == 1:
            preview = {"url": images[0], "prefer_large_media": True, "show_above_text": True}
            return "sendMessage", body | {"text": request.content, "link_preview_options": preview}
        if len(images) > ALBUM_LIMIT:
            return PublishOutcome(
                Result.PERMANENT,
                code="too_many_media",
                message=f"{len(images)} images; a Telegram album holds at most {ALBUM_LIMIT}",
            )
        if not fits:
            return PublishOutcome(
                Result.PERMANENT,
                code="caption_too_long",
                message=f"text over {CAPTION_LIMIT} UTF-16 units cannot caption an album",
            )
        media: list[dict[str, Any]] = [{"type": "photo", "media": url} for url in images]
        media[0]["caption"] = request.content
        return "sendMediaGroup", body | {"media": media}

    async def publish(self, request: PublishRequest) -> PublishOutcome:
        if not request.access_token or not request.chat_id:
            return PublishOutcome(
                Result.PERMANENT, code="no_chat", message="account has no bot token or chat_id"
            )
        video = request.video
        if video is not None:
            response = await self.send_video(request, video)
        else:
            call = self.call(request)
            if isinstance(call, PublishOutcome):
                return call
            method, body = call
            url = f"{self.base}/bot{request.access_token}/{method}"
            response = await send(self.http, self.http.build_request("POST", url, json=body))
        if isinstance(response, PublishOutcome):
            return response
        if not response.is_success:
            return classify(response)
        try:
            result = response.json()["result"]
            message = result[0] if isinstance(result, list) else result
            message_id = str(message["message_id"])
        except (ValueError, KeyError, IndexError, TypeError):
            return PublishOutcome(
                Result.UNKNOWN,
                http_status=response.status_code,
                message=f"sent, but the answer has no message: {excerpt(response)}",
            )
        return PublishOutcome(
            Result.PUBLISHED,
            platform_post_id=message_id,
            url=public_url(message),
            http_status=response.status_code,
        )

    async def send_video(
        self, request: PublishRequest, video: StoredMedia
    ) -> httpx.Response | PublishOutcome:
        """Upload and post the video in one `sendVideo` call, marked as the publishing one."""
        if utf16_length(request.content) > CAPTION_LIMIT:
            return PublishOutcome(
                Result.PERMANENT,
                code="caption_too_long",
                message=f"text over {CAPTION_LIMIT} UTF-16 units cannot caption a video",
            )
        fields = {
            "chat_id": str(chat_ref(request.chat_id)),
            "caption": request.content,
            "supports_streaming": "true",
        }
        if video.width > 0 and video.height > 0:
            fields |= {"width": str(video.width), "height": str(video.height)}
        if video.duration_seconds > 0:
            fields["duration"] = str(max(1, round(video.duration_seconds)))
        if request.reply_to:
            try:
                reply = {"message_id": int(request.reply_to)}
            except ValueError:
                return PublishOutcome(
                    Result.PERMANENT,
                    code="bad_reply_to",
                    message=f"reply_to {request.reply_to!r} is not a Telegram message id",
                )
            fields["reply_parameters"] = json.dumps(reply)
        body = multipart(self.media, video, "video", fields)
        outgoing = self.http.build_request(
            "POST",
            f"{self.base}/bot{request.access_token}/sendVideo",
            headers=body.headers,
            content=body.content(),
        )
        return await send_publishing(self.http, request.stage, outgoing)


def create(context: PlatformContext) -> TelegramClient:
    return TelegramClient(context)
