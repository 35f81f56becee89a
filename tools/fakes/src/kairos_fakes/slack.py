"""A fake Slack Web API: `chat.postMessage`, `chat.getPermalink` and `oauth.v2.access`.

As Slack answers: HTTP 200 with `{"ok": true, ...}` or `{"ok": false, "error": "<code>"}`; rate
limits are HTTP 429 with `Retry-After` and `{"ok": false, "error": "ratelimited"}`. Methods take
JSON or form bodies (and the query string); the token comes as `Authorization: Bearer`.

- Tokens: `tokens` issues rotating pairs whose access tokens last 12 hours; an expired one gets
  `token_expired`, a revoked one `token_revoked`, none `not_authed`. Unknown tokens are accepted
  (for `make dev`). `oauth.v2.access` trades a refresh token once (`invalid_refresh_token` after),
  and wants a client id and secret (`client_id`/`client_secret` if set, else any).
- Channels: made up on first use; `archive(id)` gives `is_archived`, `leave(id)` `not_in_channel`,
  and ids in `absent` `channel_not_found`.
- Validation: `no_text` without text or blocks, `msg_too_long` above 40,000 characters,
  `invalid_blocks` for blocks other than valid sections (text up to 3,000) and images (http(s)
  `image_url` and `alt_text`), or more than 50.
- `ts` values are `"<seconds>.<6 digits>"`, unique and increasing. Slack threads a reply to a
  reply under that reply's root, and so does the fake: each record in `posts` has the
  `thread_ts` as sent and the `root` it really landed under ("" for a top-level message).

Fault operations: "create" (postMessage), "permalink" and "refresh". rate_limit: the 429 with
`Retry-After` = seconds (rounded up); server_error: an HTTP 503 with an HTML page, as Slack's
edge answers when it is down (nothing posted; slack-ruby/slack-ruby-client#307 "with a 500 you
don't get JSON", jeremykenedy/slack#4 "Slack API sometimes responds with 503"; the page's words
are the fake's own); reject: `restricted_action`, or the fault's message as the code; hang: post,
then never answer; expire_token: `token_expired`.

A `reject` naming `internal_error` or `fatal_error` posts the message before answering the
error: Slack's error list says of both "It's possible some aspect of the operation succeeded
before the error was raised", and the fake plays the case where it did. `request_timeout` ("the
POST data was either missing or truncated") posts nothing. The error texts are from Slack's
chat.postMessage reference (slack-ruby/slack-api-ref methods/chat/chat.postMessage.json).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from aiohttp import web

from kairos_fakes.base import FakeServer, Tokens, bearer

TEXT_LIMIT = 40000
SECTION_LIMIT = 3000
BLOCK_LIMIT = 50
#: Access tokens last 12 hours with token rotation.
LIFETIME = 12 * 3600.0
#: Error codes after which, as Slack warns, the message may have been posted all the same.
POSTED_ANYWAY = frozenset({"internal_error", "fatal_error"})
#: What the fake's 503 page says (Slack's own outage page is not recorded).
UNAVAILABLE_PAGE = (
    "<html><head><title>Slack is temporarily unavailable</title></head>"
    "<body><h1>503 Service Unavailable</h1></body></html>"
)


@dataclass
class Channel:
    id: str
    archived: bool = False
    member: bool = True


def ok(**fields: Any) -> web.Response:
    return web.json_response({"ok": True, **fields})


def refuse(code: str, **fields: Any) -> web.Response:
    return web.json_response({"ok": False, "error": code, **fields})


class SlackFake(FakeServer):
    name = "slack"
    default_port: ClassVar[int] = 9110

    def __init__(self) -> None:
        self.tokens = Tokens(prefix="xoxe.xoxb-1", rotating=True)
        self.channels: dict[str, Channel] = {}
        self.absent: set[str] = set()
        self.posts: list[dict[str, Any]] = []
        self.client_id = ""
        self.client_secret = ""
        self.last_ts = 0.0
        super().__init__()

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/api/chat.postMessage", self.post_message)
        router.add_route("*", "/api/chat.getPermalink", self.get_permalink)
        router.add_post("/api/oauth.v2.access", self.oauth_access)

    def archive(self, channel_id: str) -> None:
        self.channels.setdefault(channel_id, Channel(channel_id)).archived = True

    def leave(self, channel_id: str) -> None:
        self.channels.setdefault(channel_id, Channel(channel_id)).member = False

    async def arguments(self, request: web.Request) -> dict[str, Any]:
        args: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                body = None
            if isinstance(body, dict):
                args.update(body)
        else:  # form fields (the recording middleware already read the body)
            args.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        if isinstance(args.get("blocks"), str):
            try:
                args["blocks"] = json.loads(args["blocks"])
            except ValueError:
                args["blocks"] = None
        return args

    def authorize(self, request: web.Request) -> web.Response | None:
        """Slack's answer to a missing or dead token, or None for a good one."""
        state = self.tokens.state(bearer(request))
        if state == "missing":
            return refuse("not_authed")
        if state == "expired":
            return refuse("token_expired")
        if state == "revoked":
            return refuse("token_revoked")
        return None

    def channel(self, channel_id: str) -> Channel | web.Response:
        if not channel_id or channel_id in self.absent:
            return refuse("channel_not_found")
        found = self.channels.setdefault(channel_id, Channel(channel_id))
        if found.archived:
            return refuse("is_archived")
        if not found.member:
            return refuse("not_in_channel")
        return found

    def new_ts(self) -> str:
        """A message timestamp: microseconds since the epoch, unique and increasing."""
        self.last_ts = max(round(time.time(), 6), round(self.last_ts + 0.000001, 6))
        return f"{self.last_ts:.6f}"

    def faulted(self, kind: str, seconds: float, message: str) -> web.Response:
        if kind == "rate_limit":
            return web.json_response(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": str(max(1, math.ceil(seconds)))},
            )
        if kind == "server_error":
            return web.Response(status=503, text=UNAVAILABLE_PAGE, content_type="text/html")
        if kind == "expire_token":
            return refuse("token_expired")
        return refuse(message or "restricted_action")

    @staticmethod
    def invalid(args: dict[str, Any]) -> str:
        """The error code of a message Slack would not post, or ""."""
        text = args.get("text")
        found = args.get("blocks")
        if not text and not found:
            return "no_text"
        if isinstance(text, str) and len(text) > TEXT_LIMIT:
            return "msg_too_long"
        if found is None:
            return ""
        if not isinstance(found, list) or len(found) > BLOCK_LIMIT:
            return "invalid_blocks"
        for block in found:
            if not isinstance(block, dict):
                return "invalid_blocks"
            if block.get("type") == "section":
                inner = block.get("text")
                if not isinstance(inner, dict) or inner.get("type") not in ("mrkdwn", "plain_text"):
                    return "invalid_blocks"
                if not 0 < len(str(inner.get("text") or "")) <= SECTION_LIMIT:
                    return "invalid_blocks"
            elif block.get("type") == "image":
                url = block.get("image_url")
                if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                    return "invalid_blocks"
                if not block.get("alt_text"):
                    return "invalid_blocks"
            else:
                return "invalid_blocks"
        return ""

    def root_of(self, channel_id: str, thread_ts: str) -> str:
        """The thread a reply to `thread_ts` lands in: a reply's own root, else `thread_ts`."""
        for post in self.posts:
            if post["channel"] == channel_id and post["ts"] == thread_ts:
                return str(post["root"] or post["ts"])
        return thread_ts

    async def post_message(self, request: web.Request) -> web.Response:
        refused = self.authorize(request)
        if refused is not None:
            return refused
        args = await self.arguments(request)
        channel = self.channel(str(args.get("channel") or ""))
        if isinstance(channel, web.Response):
            return channel
        fault = self.fault("create")
        posted_anyway = (
            fault is not None and fault.kind == "reject" and (fault.message in POSTED_ANYWAY)
        )
        if fault is not None and fault.kind != "hang" and not posted_anyway:
            return self.faulted(fault.kind, fault.seconds, fault.message)
        code = self.invalid(args)
        if code:
            return refuse(code)
        thread_ts = str(args.get("thread_ts") or "")
        post = {
            "channel": channel.id,
            "ts": self.new_ts(),
            "text": args.get("text") or "",
            "blocks": args.get("blocks"),
            "thread_ts": thread_ts,
            "root": self.root_of(channel.id, thread_ts) if thread_ts else "",
        }
        self.posts.append(post)
        if fault is not None and posted_anyway:
            return refuse(fault.message)
        if fault is not None:
            return await self.hang()
        message: dict[str, Any] = {
            "type": "message",
            "subtype": "bot_message",
            "text": post["text"],
            "ts": post["ts"],
            "bot_id": "B0KAIROS",
        }
        if post["blocks"]:
            message["blocks"] = post["blocks"]
        if post["root"]:
            message["thread_ts"] = post["root"]
        return ok(channel=channel.id, ts=post["ts"], message=message)

    async def get_permalink(self, request: web.Request) -> web.Response:
        refused = self.authorize(request)
        if refused is not None:
            return refused
        fault = self.fault("permalink")
        if fault is not None:
            return (
                await self.hang()
                if fault.kind == "hang"
                else self.faulted(fault.kind, fault.seconds, fault.message)
            )
        args = await self.arguments(request)
        channel, ts = str(args.get("channel") or ""), str(args.get("message_ts") or "")
        if channel in self.absent or channel not in self.channels:
            return refuse("channel_not_found")
        post = next((p for p in self.posts if p["channel"] == channel and p["ts"] == ts), None)
        if post is None:
            return refuse("message_not_found")
        link = f"https://kairos-fake.slack.com/archives/{channel}/p{ts.replace('.', '')}"
        if post["root"]:
            link += f"?thread_ts={post['root']}&cid={channel}"
        return ok(channel=channel, permalink=link)

    async def oauth_access(self, request: web.Request) -> web.Response:
        args = await self.arguments(request)
        fault = self.fault("refresh")
        if fault is not None:
            return (
                await self.hang()
                if fault.kind == "hang"
                else self.faulted(fault.kind, fault.seconds, fault.message)
            )
        client_id, secret = str(args.get("client_id") or ""), str(args.get("client_secret") or "")
        if not client_id or (self.client_id and client_id != self.client_id):
            return refuse("invalid_client_id")
        if not secret or (self.client_secret and secret != self.client_secret):
            return refuse("bad_client_secret")
        if args.get("grant_type") != "refresh_token":
            return refuse("invalid_grant_type")
        pair = self.tokens.use_refresh(str(args.get("refresh_token") or ""), LIFETIME)
        if pair is None:
            return refuse("invalid_refresh_token")
        access, refresh = pair
        return ok(
            app_id="A0KAIROS",
            scope="chat:write",
            token_type="bot",
            access_token=access,
            refresh_token=refresh,
            expires_in=int(LIFETIME),
            bot_user_id="U0KAIROS",
            team={"id": "T0KAIROS", "name": "Kairos"},
            enterprise=None,
            is_enterprise_install=False,
        )


Fake = SlackFake
