"""A fake of the X API v2: posts, simple media upload with processing, and OAuth 2 refresh.

Routes (all on one host, as on api.x.com):
- `POST /2/tweets`: JSON `{"text", "media": {"media_ids"}, "reply": {"in_reply_to_tweet_id"}}`,
  answered 201 `{"data": {"id", "text", "edit_history_tweet_ids"}}`. The text is limited to 280
  weighted characters (NFC; URLs 23; code points outside X's light ranges and each emoji
  sequence 2); the same text twice from one user is refused with X's duplicate-content 403.
- `POST /2/media/upload`: multipart `media` plus `media_category`, answered 200
  `{"data": {"id", "media_key", "size", "expires_after_secs", "processing_info"?}}`; images up
  to 5 MB, GIFs up to 15 MB. With `processing_secs` > 0 every upload is processed that long and
  answers `processing_info` (state `pending`, `check_after_secs`); posting the media before then
  is refused.
- `GET /2/media/upload?command=STATUS&media_id=..`: the processing state.
- `POST /2/oauth2/token`: form `grant_type=refresh_token&refresh_token&client_id`, HTTP Basic for
  confidential clients (`clients`); refresh tokens are single use.

Errors are `application/problem+json` as X sends them (`type: about:blank` for 401, 403, 429
and 5xx; `.../2/problems/invalid-request` for 400), token errors `{"error",
"error_description"}`. Every API answer carries `x-rate-limit-limit/remaining/reset` (epoch
seconds) for the user's window of that endpoint (`limits`, per 15 minutes), and posts also
`x-app-limit-24hour-*`.

Simplifications: URLs are found by scheme or `www.` (twitter-text also finds bare domains), and
a reply must name a post made on this fake.

Fault operations: "create" (POST /2/tweets), "upload" (POST /2/media/upload), "status" (the
STATUS poll) and "refresh" (the token endpoint). `hang` on create makes the post first, on
upload stores the media first. `reject` is X's 403 (the fault's message, else "You are not
permitted to perform this action."), on refresh a 400 `invalid_request`.

Tests get tokens bound to a user with `grant(user)`, so that duplicate content is judged per
user across refreshes.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import json
import math
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import parse_qs

import regex  # type: ignore[import-untyped]
from aiohttp import web

from kairos_fakes.base import FakeServer, Fault, Tokens, bearer, new_id

MAX_WEIGHTED_LENGTH = 280
URL_WEIGHT = 23
IMAGE_LIMIT = 5 * 1024 * 1024
GIF_LIMIT = 15 * 1024 * 1024
WINDOW = 15 * 60
DAY = 24 * 60 * 60
ACCESS_LIFETIME = 7200.0
DUPLICATE = "You are not allowed to create a Tweet with duplicate content."
FORBIDDEN = "You are not permitted to perform this action."
INVALID = "One or more parameters to your request was invalid."
BAD_REFRESH = "Value passed for the token was invalid."
INVALID_REQUEST_TYPE = "https://api.x.com/2/problems/invalid-request"

#: A URL as the fake detects one: a scheme or `www.`, without trailing punctuation.
URL = regex.compile(r"(?:https?://|www\.)\S+?(?=[.,;:!?)\]'\"]*(?:\s|$))", regex.IGNORECASE)
EMOJI = regex.compile(r"\p{Extended_Pictographic}|\p{Regional_Indicator}")
#: twitter-text v3: code points in these ranges weigh 1, every other one 2.
LIGHT = ((0x0000, 0x10FF), (0x2000, 0x200D), (0x2010, 0x201F), (0x2032, 0x2037))


def weighted_length(text: str) -> int:
    """The length X counts against 280, in the units of twitter-text's v3 config."""
    text = unicodedata.normalize("NFC", text)
    urls = len(URL.findall(text))
    total = URL_WEIGHT * urls
    for cluster in regex.findall(r"\X", URL.sub("", text)):
        if EMOJI.search(cluster):
            total += 2
            continue
        for char in cluster:
            point = ord(char)
            total += 1 if any(low <= point <= high for low, high in LIGHT) else 2
    return total


def sniff(content: bytes) -> str:
    """The image type the bytes are, as X decides it from the file rather than the label."""
    if content.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if content.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp"
    return ""


def problem(status: int, title: str, detail: str, **more: Any) -> web.Response:
    """An RFC 7807 answer as X sends it."""
    body: dict[str, Any] = {"title": title, "detail": detail, "type": "about:blank"}
    body.update(more)
    body["status"] = status
    return web.json_response(body, status=status, content_type="application/problem+json")


def invalid(message: str, parameter: str, value: object) -> web.Response:
    """X's 400 for a request that breaks a parameter rule."""
    return problem(
        400,
        "Invalid Request",
        INVALID,
        type=INVALID_REQUEST_TYPE,
        errors=[{"parameters": {parameter: [value]}, "message": message}],
    )


def unauthorized() -> web.Response:
    return problem(401, "Unauthorized", "Unauthorized")


def token_error(status: int, error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status)


def form_parts(content_type: str, body: bytes) -> dict[str, tuple[str, bytes]]:
    """A multipart/form-data body as {field: (declared content type, bytes)}."""
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        return {}
    parts: dict[str, tuple[str, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            parts[name] = (part.get_content_type(), payload)
    return parts


@dataclass
class Upload:
    id: str
    user: str
    size: int
    content_type: str
    category: str
    ready_at: float


@dataclass
class Window:
    """One rate-limit bucket: calls counted since `started`."""

    limit: int
    length: float
    started: float = field(default_factory=time.time)
    used: int = 0

    def take(self) -> bool:
        """Count a call; False when the bucket was already empty."""
        now = time.time()
        if now >= self.started + self.length:
            self.started, self.used = now, 0
        if self.used >= self.limit:
            return False
        self.used += 1
        return True

    def headers(self, prefix: str) -> dict[str, str]:
        return {
            f"{prefix}-limit": str(self.limit),
            f"{prefix}-remaining": str(max(0, self.limit - self.used)),
            f"{prefix}-reset": str(int(self.started + self.length)),
        }


class XFake(FakeServer):
    name: ClassVar[str] = "x"
    default_port: ClassVar[int] = 9101

    def __init__(self) -> None:
        super().__init__()
        self.tokens = Tokens(prefix="x", rotating=True)
        #: Who each token belongs to; a token never issued here is a user of its own.
        self.owners: dict[str, str] = {}
        #: Confidential clients: client_id -> client_secret.
        self.clients: dict[str, str] = {}
        #: Calls per 15-minute window per user, by operation (X's documented limits).
        self.limits: dict[str, int] = {"create": 100, "upload": 500}
        #: Seconds an upload takes to process; 0 answers uploads ready, as X does for images.
        self.processing_secs = 0
        self.posts: list[dict[str, Any]] = []
        self.uploads: dict[str, Upload] = {}
        self.windows: dict[tuple[str, str], Window] = {}
        #: Posts per 24 hours for the whole app (X's documented 10,000).
        self.app_day = Window(10_000, DAY)

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/2/tweets", self.create)
        router.add_post("/2/media/upload", self.upload)
        router.add_get("/2/media/upload", self.status)
        router.add_post("/2/oauth2/token", self.token)

    def grant(self, user: str = "kairos") -> tuple[str, str]:
        """Tokens for `user`, as the authorization-code flow would give them."""
        access, refresh = self.tokens.issue(ACCESS_LIFETIME)
        self.owners[access] = self.owners[refresh] = user
        return access, refresh

    def post(self, tweet_id: str) -> dict[str, Any]:
        """The stored post with this id."""
        return next(p for p in self.posts if p["id"] == tweet_id)

    # --- shared checks -------------------------------------------------------------------

    def user(self, request: web.Request) -> str | None:
        """The caller's user, or None when its token is missing, expired or revoked."""
        token = bearer(request)
        if self.tokens.state(token) != "ok":
            return None
        return self.owners.get(token, token)

    def window(self, operation: str, user: str) -> Window:
        key = (operation, user)
        if key not in self.windows:
            self.windows[key] = Window(self.limits[operation], WINDOW)
        return self.windows[key]

    def injected(self, fault: Fault, request: web.Request) -> web.Response | None:
        """The answer for a queued fault other than `hang`, which the handler does itself."""
        if fault.kind == "rate_limit":
            reset = str(math.ceil(time.time() + fault.seconds))
            response = problem(429, "Too Many Requests", "Too Many Requests")
            response.headers.update(
                {
                    "x-rate-limit-limit": "1",
                    "x-rate-limit-remaining": "0",
                    "x-rate-limit-reset": reset,
                }
            )
            return response
        if fault.kind == "server_error":
            return problem(503, "Service Unavailable", "Service Unavailable")
        if fault.kind == "reject":
            return problem(403, "Forbidden", fault.message or FORBIDDEN)
        if fault.kind == "expire_token":
            self.tokens.expire(bearer(request))
            return unauthorized()
        return None

    async def gate(
        self, request: web.Request, operation: str
    ) -> tuple[str, Fault | None] | web.Response:
        """Auth, faults and the rate limit every API call goes through: the caller's user and a
        `hang` fault to act on, or the answer to give instead."""
        fault = self.fault(operation)
        if fault is not None:
            answer = self.injected(fault, request)
            if answer is not None:
                return answer
        user = self.user(request)
        if user is None:
            return unauthorized()
        window = self.window(operation, user)
        if not window.take():
            response = problem(429, "Too Many Requests", "Too Many Requests")
            response.headers.update(window.headers("x-rate-limit"))
            return response
        return user, fault

    # --- posts ---------------------------------------------------------------------------

    async def create(self, request: web.Request) -> web.Response:
        gated = await self.gate(request, "create")
        if isinstance(gated, web.Response):
            return gated
        user, fault = gated
        headers = self.window("create", user).headers("x-rate-limit")
        try:
            body = json.loads(await request.read())
        except ValueError:
            return invalid("Request body is not valid JSON.", "body", "")
        if not isinstance(body, dict):
            return invalid("Request body must be a JSON object.", "body", "")
        answer = self.check_post(user, body)
        if answer is not None:
            answer.headers.update(headers)
            return answer
        if not self.app_day.take():
            answer = problem(429, "Too Many Requests", "Too Many Requests")
            answer.headers.update(self.app_day.headers("x-app-limit-24hour"))
            return answer
        headers.update(self.app_day.headers("x-app-limit-24hour"))
        tweet_id = new_id()
        text = str(body.get("text", ""))
        self.posts.append(
            {
                "id": tweet_id,
                "text": text,
                "author": user,
                "media_ids": list((body.get("media") or {}).get("media_ids", [])),
                "in_reply_to": str((body.get("reply") or {}).get("in_reply_to_tweet_id", "")),
                "created_at": time.time(),
            }
        )
        if fault is not None and fault.kind == "hang":
            return await self.hang()
        data = {"id": tweet_id, "text": text, "edit_history_tweet_ids": [tweet_id]}
        return web.json_response({"data": data}, status=201, headers=headers)

    def check_post(self, user: str, body: dict[str, Any]) -> web.Response | None:
        """X's refusal of this post body, or None if it may be created."""
        text = body.get("text")
        media = body.get("media") or {}
        media_ids = media.get("media_ids", []) if isinstance(media, dict) else None
        if text is not None and not isinstance(text, str):
            return invalid("text must be a string.", "text", text)
        if not isinstance(media_ids, list) or not all(isinstance(m, str) for m in media_ids):
            return invalid("media.media_ids must be a list of strings.", "media", media)
        if not text and not media_ids:
            return invalid("Text or media is required.", "text", text)
        if len(media_ids) > 4:
            return invalid("media.media_ids may hold 1 to 4 ids.", "media.media_ids", media_ids)
        for media_id in media_ids:
            upload = self.uploads.get(media_id)
            if upload is None or upload.user != user or upload.ready_at > time.time():
                return invalid("Your media IDs are invalid.", "media.media_ids", media_id)
        reply = body.get("reply")
        if reply is not None:
            target = reply.get("in_reply_to_tweet_id") if isinstance(reply, dict) else None
            if not any(p["id"] == target for p in self.posts):
                return invalid(
                    "The post you are replying to does not exist.",
                    "reply.in_reply_to_tweet_id",
                    target,
                )
        if text:
            length = weighted_length(text)
            if length > MAX_WEIGHTED_LENGTH:
                return invalid(
                    f"Your Tweet text is too long: {length} weighted characters, limit "
                    f"{MAX_WEIGHTED_LENGTH}.",
                    "text",
                    text,
                )
            if any(p["author"] == user and p["text"] == text for p in self.posts):
                return problem(403, "Forbidden", DUPLICATE)
        return None

    # --- media ---------------------------------------------------------------------------

    async def upload(self, request: web.Request) -> web.Response:
        gated = await self.gate(request, "upload")
        if isinstance(gated, web.Response):
            return gated
        user, fault = gated
        headers = self.window("upload", user).headers("x-rate-limit")
        parts = form_parts(request.headers.get("content-type", ""), await request.read())
        category = parts.get("media_category", ("", b""))[1].decode(errors="replace")
        if "media" not in parts:
            answer = invalid("media is required.", "media", "")
        elif category not in ("tweet_image", "tweet_gif", "dm_image", "dm_gif"):
            answer = invalid(
                f"{category!r} is not a media category for images.", "media_category", category
            )
        else:
            content = parts["media"][1]
            kind = sniff(content)
            limit = GIF_LIMIT if kind == "image/gif" else IMAGE_LIMIT
            if not kind:
                answer = invalid("media type unrecognized.", "media", "")
            elif len(content) > limit:
                answer = invalid(f"File size exceeds {limit} bytes.", "media", len(content))
            else:
                return await self.store(user, kind, category, len(content), fault, headers)
        answer.headers.update(headers)
        return answer

    async def store(
        self,
        user: str,
        kind: str,
        category: str,
        size: int,
        fault: Fault | None,
        headers: dict[str, str],
    ) -> web.Response:
        media_id = new_id()
        upload = Upload(media_id, user, size, kind, category, time.time() + self.processing_secs)
        self.uploads[media_id] = upload
        if fault is not None and fault.kind == "hang":
            return await self.hang()
        data: dict[str, Any] = {
            "id": media_id,
            "media_key": f"3_{media_id}",
            "size": size,
            "expires_after_secs": DAY,
        }
        if self.processing_secs:
            data["processing_info"] = {"state": "pending", "check_after_secs": self.processing_secs}
        return web.json_response({"data": data}, headers=headers)

    async def status(self, request: web.Request) -> web.Response:
        fault = self.fault("status")
        if fault is not None and fault.kind == "hang":
            return await self.hang()
        if fault is not None:
            answer = self.injected(fault, request)
            if answer is not None:
                return answer
        user = self.user(request)
        if user is None:
            return unauthorized()
        if request.query.get("command") != "STATUS":
            return invalid("command must be STATUS.", "command", request.query.get("command"))
        media_id = request.query.get("media_id", "")
        upload = self.uploads.get(media_id)
        if upload is None or upload.user != user:
            return invalid("Your media IDs are invalid.", "media_id", media_id)
        left = upload.ready_at - time.time()
        info: dict[str, Any] = {"state": "succeeded", "progress_percent": 100}
        if left > 0:
            info = {"state": "in_progress", "check_after_secs": max(1, int(left + 0.999))}
        data = {"id": media_id, "media_key": f"3_{media_id}", "processing_info": info}
        return web.json_response({"data": data})

    # --- OAuth 2 -------------------------------------------------------------------------

    async def token(self, request: web.Request) -> web.Response:
        fault = self.fault("refresh")
        if fault is not None:
            if fault.kind == "rate_limit":
                return problem(429, "Too Many Requests", "Too Many Requests")
            if fault.kind == "server_error":
                return problem(503, "Service Unavailable", "Service Unavailable")
            if fault.kind == "hang":
                return await self.hang()
            return token_error(400, "invalid_request", fault.message or BAD_REFRESH)
        form = {k: v[0] for k, v in parse_qs((await request.read()).decode()).items()}
        basic = self.basic(request)
        if basic is not None and self.clients.get(basic[0]) != basic[1]:
            return token_error(401, "unauthorized_client", "Missing valid authorization header")
        client_id = basic[0] if basic is not None else form.get("client_id", "")
        if not client_id:
            return token_error(400, "invalid_request", "Missing required parameter [client_id].")
        if basic is None and client_id in self.clients:
            return token_error(401, "unauthorized_client", "Missing valid authorization header")
        if form.get("grant_type") != "refresh_token":
            return token_error(
                400, "invalid_request", "Value passed for the grant type was invalid."
            )
        old = form.get("refresh_token", "")
        pair = self.tokens.use_refresh(old, ACCESS_LIFETIME)
        if pair is None:
            return token_error(400, "invalid_request", BAD_REFRESH)
        access, refresh = pair
        owner = self.owners.get(old, old)
        self.owners[access] = self.owners[refresh] = owner
        return web.json_response(
            {
                "token_type": "bearer",
                "expires_in": int(ACCESS_LIFETIME),
                "access_token": access,
                "scope": "tweet.write users.read tweet.read media.write offline.access",
                "refresh_token": refresh,
            }
        )

    @staticmethod
    def basic(request: web.Request) -> tuple[str, str] | None:
        """(client_id, client_secret) from an `Authorization: Basic` header, if any."""
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            client_id, _, secret = base64.b64decode(value).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return ("", "")
        return client_id, secret


Fake = XFake
