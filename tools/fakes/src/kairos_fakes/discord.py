"""A fake Discord webhook API: execute (`POST`) and get (`GET`) `/api[/v<n>]/webhooks/{id}/{token}`.

As Discord answers: with `wait=true` a 200 Message, without it 204 and no body; errors as
`{"message","code"[,"errors"]}`.

- Webhooks: `create_webhook()` makes one (guild and channel ids included); an id the fake never
  saw is created on first use with the token presented (for `make dev`). `delete_webhook(id)`
  makes it answer 404 code 10015 "Unknown Webhook"; a wrong token gets 401 code 50027 "Invalid
  Webhook Token".
- Validation: `content` up to 2,000 characters (code points), at most 10 embeds with
  http(s) image URLs (400 code 50035 "Invalid Form Body" with `errors`), and something to send
  (400 code 50006 "Cannot send an empty message"). `?thread_id=` posts into that thread (the
  message's `channel_id` is the thread's).
- Rate limits per webhook: `limit` executes per `window` seconds, announced on every execute
  answer with `X-RateLimit-Limit/Remaining/Reset/Reset-After/Bucket`; one more call inside the
  window gets a 429 `{"message","retry_after"(float),"global"}` with `Retry-After` and
  `X-RateLimit-Scope: user`.
- `posts` keeps every message created, with the query it came with.
- Files: a multipart/form-data execute carries the JSON body as `payload_json` and each file as
  `files[n]` with a file name, `attachments` naming them by `id` n (discord-api-docs
  reference.mdx "Uploading Files"). Each file over `attachment_limit` (10 MiB, "The default
  limit is `10 MiB`", applied to webhooks since 2025-01-16 by the change log) is answered 413
  `{"message": "Request entity too large", "code": 40005}` (the code's text in
  opcodes-and-status-codes.mdx; the 413 as reported in discord/discord-api-docs#6058). The
  message lists them as `attachments` (`id`, `filename`, `size`, `url`, `proxy_url`,
  `content_type`: message.mdx "Attachment Structure"), and its record in `posts` keeps each
  file's bytes under `files`. Discord answers once the file is stored: nothing to poll.

Fault operations: "create" (execute) and "webhook" (get). rate_limit: the 429 with `retry_after` =
seconds; server_error: 500; reject: 400 code 50035 (or the fault's message); hang: create, then
never answer; expire_token: 401 code 50027 (webhook tokens do not expire; this is how a dead one
looks).
"""

from __future__ import annotations

import json
import math
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from aiohttp import web

from kairos_fakes._multipart import Part, parts
from kairos_fakes.base import FakeServer, new_id

CONTENT_LIMIT = 2000
EMBED_LIMIT = 10
#: The default per-file upload limit, webhooks included: 10 MiB.
ATTACHMENT_LIMIT = 10 * 1024 * 1024
#: Most files in one message.
FILE_LIMIT = 10


@dataclass
class Webhook:
    id: str
    token: str
    guild_id: str
    channel_id: str
    deleted: bool = False

    def shown(self) -> dict[str, Any]:
        return {
            "type": 1,
            "id": self.id,
            "name": "Kairos",
            "avatar": None,
            "channel_id": self.channel_id,
            "guild_id": self.guild_id,
            "application_id": None,
            "token": self.token,
        }


@dataclass
class Bucket:
    remaining: int
    reset_at: float


def error(status: int, code: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"message": message, "code": code, **extra}, status=status)


def invalid_form(field: str, kind: str, message: str) -> web.Response:
    errors = {field: {"_errors": [{"code": kind, "message": message}]}}
    return error(400, 50035, "Invalid Form Body", errors=errors)


class DiscordFake(FakeServer):
    name = "discord"
    default_port: ClassVar[int] = 9109

    def __init__(self) -> None:
        self.webhooks: dict[str, Webhook] = {}
        self.posts: list[dict[str, Any]] = []
        self.buckets: dict[str, Bucket] = {}
        #: Executes allowed per webhook in each window (Discord does not publish its numbers).
        self.limit = 5
        self.window = 2.0
        #: The largest file taken; a test may lower it to see the 413 without 10 MiB.
        self.attachment_limit = ATTACHMENT_LIMIT
        super().__init__()

    def routes(self, router: web.UrlDispatcher) -> None:
        for prefix in ("/api", r"/api/v{version:\d+}"):
            router.add_post(prefix + "/webhooks/{id}/{token}", self.execute)
            router.add_get(prefix + "/webhooks/{id}/{token}", self.get)

    def create_webhook(self, guild_id: str = "", channel_id: str = "") -> Webhook:
        hook = Webhook(
            new_id(), secrets.token_urlsafe(48), guild_id or new_id(), channel_id or new_id()
        )
        self.webhooks[hook.id] = hook
        return hook

    def webhook_url(self, hook: Webhook, base: str = "") -> str:
        """The execute URL on this fake, or on `base` (e.g. https://discord.com)."""
        return f"{base or self.url}/api/webhooks/{hook.id}/{hook.token}"

    def delete_webhook(self, webhook_id: str) -> None:
        self.webhooks[webhook_id].deleted = True

    def find(self, request: web.Request) -> Webhook | web.Response:
        """The webhook the path names, or Discord's refusal."""
        webhook_id, token = request.match_info["id"], request.match_info["token"]
        hook = self.webhooks.get(webhook_id)
        if hook is None and webhook_id.isdigit():
            hook = self.webhooks[webhook_id] = Webhook(webhook_id, token, new_id(), new_id())
        if hook is None or hook.deleted:
            return error(404, 10015, "Unknown Webhook")
        if hook.token != token:
            return error(401, 50027, "Invalid Webhook Token")
        return hook

    async def get(self, request: web.Request) -> web.Response:
        hook = self.find(request)
        if isinstance(hook, web.Response):
            return hook
        fault = self.fault("webhook")
        if fault is not None:
            return self.faulted(fault.kind, fault.seconds, fault.message, {})
        return web.json_response(hook.shown())

    def rate_headers(self, hook: Webhook, now: float) -> tuple[dict[str, str], bool]:
        """Draw one call from the webhook's bucket: its headers, and whether it was empty."""
        bucket = self.buckets.get(hook.id)
        if bucket is None or bucket.reset_at <= now:
            bucket = self.buckets[hook.id] = Bucket(self.limit, now + self.window)
        empty = bucket.remaining <= 0
        if not empty:
            bucket.remaining -= 1
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(bucket.remaining),
            "X-RateLimit-Reset": f"{bucket.reset_at:.3f}",
            "X-RateLimit-Reset-After": f"{bucket.reset_at - now:.3f}",
            "X-RateLimit-Bucket": f"webhook-{hook.id[-8:]}",
        }
        return headers, empty

    @staticmethod
    def limited(seconds: float, headers: dict[str, str]) -> web.Response:
        answer = {"message": "You are being rate limited.", "retry_after": seconds, "global": False}
        headers = headers | {
            "Retry-After": str(max(1, math.ceil(seconds))),
            "X-RateLimit-Scope": "user",
        }
        return web.json_response(answer, status=429, headers=headers)

    def faulted(
        self, kind: str, seconds: float, message: str, headers: dict[str, str]
    ) -> web.Response:
        if kind == "rate_limit":
            return self.limited(
                seconds,
                headers
                | {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": f"{seconds:.3f}"},
            )
        if kind == "server_error":
            return error(500, 0, "500: Internal Server Error")
        if kind == "expire_token":
            return error(401, 50027, "Invalid Webhook Token")
        if message:
            return error(400, 50035, message)
        return invalid_form("content", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 2000.")

    async def execute(self, request: web.Request) -> web.StreamResponse:
        hook = self.find(request)
        if isinstance(hook, web.Response):
            return hook
        now = time.time()
        headers, empty = self.rate_headers(hook, now)
        if empty:
            return self.limited(float(headers["X-RateLimit-Reset-After"]), headers)
        fault = self.fault("create")
        if fault is not None and fault.kind != "hang":
            return self.faulted(fault.kind, fault.seconds, fault.message, headers)
        files: list[Part] = []
        try:
            if request.content_type == "multipart/form-data":
                form = parts(request.headers.get("content-type", ""), await request.read())
                if form is None:
                    return invalid_form("files", "BASE_TYPE_REQUIRED", "Invalid form body.")
                body = json.loads(form["payload_json"].text) if "payload_json" in form else {}
                if "content" in form:
                    body["content"] = form["content"].text
                files = [part for name, part in form.items() if name.startswith("files[")]
            else:
                body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            return error(400, 50109, "The request body contains invalid JSON.")
        if any(len(f.content) > self.attachment_limit for f in files):
            return error(413, 40005, "Request entity too large")
        refused = self.validate(body, request.query.get("thread_id", ""), files)
        if refused is not None:
            refused.headers.update(headers)
            return refused
        channel_id = request.query.get("thread_id") or hook.channel_id
        message = self.message(hook, channel_id, body, files)
        self.posts.append(
            {
                "message": message,
                "body": body,
                "query": dict(request.query),
                "files": [
                    {"filename": f.filename, "content_type": f.content_type, "content": f.content}
                    for f in files
                ],
            }
        )
        if fault is not None:
            return await self.hang()
        if request.query.get("wait", "").lower() not in ("true", "1"):
            return web.Response(status=204, headers=headers)
        return web.json_response(message, headers=headers)

    @staticmethod
    def validate(
        body: dict[str, Any], thread_id: str, files: list[Part] | None = None
    ) -> web.Response | None:
        files = files or []
        content = body.get("content")
        embeds = body.get("embeds") or []
        if content is not None and not isinstance(content, str):
            return invalid_form("content", "BASE_TYPE_STRING", "Must be a string.")
        if content is not None and len(content) > CONTENT_LIMIT:
            return invalid_form(
                "content", "BASE_TYPE_MAX_LENGTH", f"Must be {CONTENT_LIMIT} or fewer in length."
            )
        if not isinstance(embeds, list) or len(embeds) > EMBED_LIMIT:
            return invalid_form(
                "embeds", "BASE_TYPE_MAX_LENGTH", f"Must be {EMBED_LIMIT} or fewer in length."
            )
        for embed in embeds:
            url = embed.get("image", {}).get("url", "") if isinstance(embed, dict) else ""
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                return invalid_form("embeds", "URL_TYPE_INVALID_URL", "Not a well formed URL.")
        if len(files) > FILE_LIMIT:
            return invalid_form(
                "files", "BASE_TYPE_MAX_LENGTH", f"Must be {FILE_LIMIT} or fewer in length."
            )
        if any(not f.filename for f in files):
            return invalid_form("files", "BASE_TYPE_REQUIRED", "This field is required")
        if not content and not embeds and not files:
            return error(400, 50006, "Cannot send an empty message")
        if thread_id and not thread_id.isdigit():
            return invalid_form("thread_id", "NUMBER_TYPE_COERCE", "Value is not snowflake.")
        return None

    @staticmethod
    def message(
        hook: Webhook, channel_id: str, body: dict[str, Any], files: list[Part] | None = None
    ) -> dict[str, Any]:
        embeds = [
            {"type": "rich", "image": {"url": e["image"]["url"], "width": 2, "height": 2}}
            for e in body.get("embeds") or []
        ]
        attachments = []
        for part in files or []:
            attachment_id = new_id()
            path = f"attachments/{channel_id}/{attachment_id}/{part.filename}"
            attachments.append(
                {
                    "id": attachment_id,
                    "filename": part.filename,
                    "size": len(part.content),
                    "url": f"https://cdn.discordapp.com/{path}",
                    "proxy_url": f"https://media.discordapp.net/{path}",
                    "content_type": part.content_type,
                }
            )
        return {
            "id": new_id(),
            "type": 0,
            "content": body.get("content") or "",
            "channel_id": channel_id,
            "author": {"id": hook.id, "username": "Kairos", "bot": True, "discriminator": "0000"},
            "attachments": attachments,
            "embeds": embeds,
            "mentions": [],
            "mention_roles": [],
            "pinned": False,
            "mention_everyone": False,
            "tts": False,
            "timestamp": datetime.now(UTC).isoformat(),
            "edited_timestamp": None,
            "flags": 0,
            "components": [],
            "webhook_id": hook.id,
        }


Fake = DiscordFake
