"""A fake of the X API v2: posts, simple and chunked media upload with processing, and OAuth 2
refresh.

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
- Chunked upload, for video (X's docs: "Use the chunked upload flow for all videos"):
  - `POST /2/media/upload/initialize`, JSON `{"media_type", "total_bytes", "media_category"}`,
    answered 200 `{"data": {"id", "media_key", "expires_after_secs"}}`. A `tweet_video` must be
    a video type and at most 512 MB (`VIDEO_LIMIT`).
  - `POST /2/media/upload/{id}/append`, multipart `media` (one segment, at most 5 MB) and
    `segment_index` (0 to 999), answered 200 `{"data": {"expires_at"}}`.
  - `POST /2/media/upload/{id}/finalize`: the segments, in index order, must add up to
    `total_bytes`; answered 200 `{"data": {"id", "media_key", "size", "expires_after_secs",
    "processing_info": {"state": "pending", "check_after_secs"}}}`. The video is then processed
    for `video_processing_secs`: STATUS answers `pending`, then `in_progress` with
    `progress_percent`, then `succeeded`; or `failed` with X's `error` object
    (`{"code", "name", "message"}`) when the bytes are not an MP4/QuickTime file or
    `fail_processing` names a reason.
  Sources: xdevplatform/docs `openapi.json` (paths `/2/media/upload/initialize`,
  `/{id}/append`, `/{id}/finalize`; schemas `InitializeMediaUploadRequest` with `total_bytes`
  and the `media_category` enum, `AppendMediaUploadRequest` with `segment_index` 0-999,
  `FinalizeMediaUploadResponseData`, `...ProcessingInfo` states pending, in_progress, failed,
  succeeded), `x-api/media/quickstart/media-upload-chunked.mdx` (the flow and its example
  answers), `x-api/media/quickstart/best-practices.mdx` (512 MB, 0.5-140 s),
  `x-api/fundamentals/rate-limits.mdx` (1,875 per 15 min per user for each of the three);
  the 5 MB segment limit is the APPEND reference of the v1.1 endpoint this one continues; the
  failed state's `error` object is X's STATUS example (`{"code": 1, "name": "InvalidMedia",
  "message": "Unsupported video format"}`, quoted in linvi/tweetinvi#597 and seen in
  plhery/node-twitter-api-v2#243). The wording of the fake's 400s for a chunk rule is its own.
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

Fault operations: "create" (POST /2/tweets), "upload" (POST /2/media/upload), "initialize",
"append", "finalize" (the chunked upload's steps), "status" (the STATUS poll) and "refresh"
(the token endpoint). `hang` on create makes the post first, on
upload stores the media first. `reject` is X's 403 (the fault's message, else "You are not
permitted to perform this action."), on refresh a 400 `invalid_request`.

Tests get tokens bound to a user with `grant(user)`, so that duplicate content is judged per
user across refreshes.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import hashlib
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
#: best-practices.mdx, "Advanced": a video "must not exceed 512 mb".
VIDEO_LIMIT = 512 * 1024 * 1024
#: The APPEND reference: each chunk "must be <= 5 MB".
SEGMENT_LIMIT = 5 * 1024 * 1024
#: `AppendMediaUploadRequest.segment_index`: 0 to 999.
MAX_SEGMENT_INDEX = 999
#: `InitializeMediaUploadRequest.media_type`: the video types X takes.
VIDEO_TYPES = frozenset({"video/mp4", "video/webm", "video/mp2t", "video/quicktime"})
#: The media categories a Post's video may be uploaded under (best-practices.mdx).
VIDEO_CATEGORIES = frozenset({"tweet_video", "amplify_video"})
#: X's STATUS example of a failed processing: `error.code` 1, `name` "InvalidMedia".
UNSUPPORTED_VIDEO = "Unsupported video format"
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


def is_video(content: bytes) -> bool:
    """Whether the bytes begin as an MP4 or QuickTime file (an `ftyp` box) or WebM (EBML)."""
    return content[4:8] == b"ftyp" or content.startswith(b"\x1a\x45\xdf\xa3")


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
    #: Chunked uploads only: the segments received by index, until FINALIZE joins them.
    segments: dict[int, bytes] = field(default_factory=dict)
    finalized: bool = True
    #: When FINALIZE came; processing runs from then until `ready_at`.
    finalized_at: float = 0.0
    #: The SHA-256 of the bytes X holds, once it has them all.
    sha256: str = ""
    #: Why processing fails (X's `error.message`), or "" when it succeeds.
    failure: str = ""

    @property
    def failed(self) -> bool:
        return bool(self.failure) and self.finalized and time.time() >= self.ready_at


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
        self.limits: dict[str, int] = {
            "create": 100,
            "upload": 500,
            "initialize": 1875,
            "append": 1875,
            "finalize": 1875,
        }
        #: Seconds an upload takes to process; 0 answers uploads ready, as X does for images.
        self.processing_secs = 0
        #: Seconds a finalized video takes to process (X always processes video).
        self.video_processing_secs = 2.0
        #: The `check_after_secs` X answers while a video processes.
        self.check_after_secs = 1
        #: When set, the next finalized video fails processing with these words.
        self.fail_processing = ""
        self.posts: list[dict[str, Any]] = []
        self.uploads: dict[str, Upload] = {}
        self.windows: dict[tuple[str, str], Window] = {}
        #: Posts per 24 hours for the whole app (X's documented 10,000).
        self.app_day = Window(10_000, DAY)

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/2/tweets", self.create)
        router.add_post("/2/media/upload", self.upload)
        router.add_get("/2/media/upload", self.status)
        router.add_post("/2/media/upload/initialize", self.initialize)
        router.add_post("/2/media/upload/{id}/append", self.append)
        router.add_post("/2/media/upload/{id}/finalize", self.finalize)
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
            if (
                upload is None
                or upload.user != user
                or not upload.finalized
                or upload.ready_at > time.time()
                or upload.failed
            ):
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
        if upload.category in VIDEO_CATEGORIES:
            return web.json_response({"data": self.video_data(upload)})
        left = upload.ready_at - time.time()
        info: dict[str, Any] = {"state": "succeeded", "progress_percent": 100}
        if left > 0:
            info = {"state": "in_progress", "check_after_secs": max(1, int(left + 0.999))}
        data = {"id": media_id, "media_key": f"3_{media_id}", "processing_info": info}
        return web.json_response({"data": data})

    # --- chunked upload (video) ----------------------------------------------------------

    def pending_upload(self, user: str, media_id: str) -> Upload | None:
        """The caller's chunked upload that is still taking segments, if `media_id` is one."""
        upload = self.uploads.get(media_id)
        if upload is None or upload.user != user or upload.finalized:
            return None
        return upload

    async def initialize(self, request: web.Request) -> web.Response:
        gated = await self.gate(request, "initialize")
        if isinstance(gated, web.Response):
            return gated
        user, fault = gated
        headers = self.window("initialize", user).headers("x-rate-limit")
        answer = self.check_initialize(await request.read())
        if isinstance(answer, web.Response):
            answer.headers.update(headers)
            return answer
        media_type, total, category = answer
        media_id = new_id()
        self.uploads[media_id] = Upload(
            media_id, user, total, media_type, category, math.inf, finalized=False
        )
        if fault is not None and fault.kind == "hang":
            return await self.hang()
        data = {"id": media_id, "media_key": f"7_{media_id}", "expires_after_secs": DAY}
        return web.json_response({"data": data}, headers=headers)

    @staticmethod
    def check_initialize(body: bytes) -> tuple[str, int, str] | web.Response:
        """(media_type, total_bytes, media_category) of an INIT body, or X's 400 for it.

        Simplification: the fake's chunked upload takes video only (X's also takes images)."""
        try:
            fields = json.loads(body)
        except ValueError:
            return invalid("Request body is not valid JSON.", "body", "")
        if not isinstance(fields, dict):
            return invalid("Request body must be a JSON object.", "body", "")
        known = {"media_type", "total_bytes", "media_category", "additional_owners", "shared"}
        for name in fields.keys() - known:
            return invalid(f"The query parameter [{name}] is not one of {sorted(known)}", name, "")
        media_type = fields.get("media_type")
        total = fields.get("total_bytes")
        category = fields.get("media_category", "tweet_video")
        if media_type not in VIDEO_TYPES:
            return invalid(f"media_type {media_type!r} is not a video type.", "media_type", "")
        if category not in VIDEO_CATEGORIES:
            return invalid(
                f"{category!r} is not a media category for a Post's video.", "media_category", ""
            )
        if not isinstance(total, int) or isinstance(total, bool) or total <= 0:
            return invalid("total_bytes must be a positive integer.", "total_bytes", total)
        if total > VIDEO_LIMIT:
            return invalid(f"File size exceeds {VIDEO_LIMIT} bytes.", "total_bytes", total)
        return media_type, total, category

    async def append(self, request: web.Request) -> web.Response:
        gated = await self.gate(request, "append")
        if isinstance(gated, web.Response):
            return gated
        user, fault = gated
        headers = self.window("append", user).headers("x-rate-limit")
        upload = self.pending_upload(user, request.match_info["id"])
        parts = form_parts(request.headers.get("content-type", ""), await request.read())
        index_text = parts.get("segment_index", ("", b""))[1].decode(errors="replace")
        if upload is None:
            answer = invalid("Your media IDs are invalid.", "id", request.match_info["id"])
        elif "media" not in parts:
            answer = invalid("media is required.", "media", "")
        elif not index_text.isdigit() or int(index_text) > MAX_SEGMENT_INDEX:
            answer = invalid(
                f"segment_index must be an integer from 0 to {MAX_SEGMENT_INDEX}.",
                "segment_index",
                index_text,
            )
        elif len(parts["media"][1]) > SEGMENT_LIMIT:
            answer = invalid(
                f"A segment may be at most {SEGMENT_LIMIT} bytes.", "media", len(parts["media"][1])
            )
        else:
            # A segment sent again replaces the first (X: "failed chunks can be retried").
            upload.segments[int(index_text)] = parts["media"][1]
            if fault is not None and fault.kind == "hang":
                return await self.hang()
            data = {"expires_at": int(time.time() + DAY)}
            return web.json_response({"data": data}, headers=headers)
        answer.headers.update(headers)
        return answer

    async def finalize(self, request: web.Request) -> web.Response:
        gated = await self.gate(request, "finalize")
        if isinstance(gated, web.Response):
            return gated
        user, fault = gated
        headers = self.window("finalize", user).headers("x-rate-limit")
        upload = self.pending_upload(user, request.match_info["id"])
        if upload is None:
            answer = invalid("Your media IDs are invalid.", "id", request.match_info["id"])
            answer.headers.update(headers)
            return answer
        indexes = sorted(upload.segments)
        received = sum(len(part) for part in upload.segments.values())
        if indexes != list(range(len(indexes))) or received != upload.size:
            answer = invalid(
                f"Segments do not add up to total_bytes: {received} of {upload.size} bytes in "
                f"segments {indexes}.",
                "id",
                upload.id,
            )
            answer.headers.update(headers)
            return answer
        content = b"".join(upload.segments[index] for index in indexes)
        upload.segments = {}
        upload.sha256 = hashlib.sha256(content).hexdigest()
        upload.failure = self.fail_processing or ("" if is_video(content) else UNSUPPORTED_VIDEO)
        self.fail_processing = ""
        upload.finalized = True
        upload.finalized_at = time.time()
        upload.ready_at = upload.finalized_at + self.video_processing_secs
        if fault is not None and fault.kind == "hang":
            return await self.hang()
        return web.json_response({"data": self.video_data(upload)}, headers=headers)

    def video_data(self, upload: Upload) -> dict[str, Any]:
        """A video upload as FINALIZE and STATUS describe it, its processing as it stands."""
        data: dict[str, Any] = {
            "id": upload.id,
            "media_key": f"7_{upload.id}",
            "size": upload.size,
            "expires_after_secs": DAY,
        }
        now = time.time()
        if not upload.finalized:
            return data
        if now >= upload.ready_at:
            if upload.failure:
                data["processing_info"] = {
                    "state": "failed",
                    "progress_percent": 100,
                    "error": {"code": 1, "name": "InvalidMedia", "message": upload.failure},
                }
            else:
                data["processing_info"] = {"state": "succeeded", "progress_percent": 100}
                data["video"] = {"video_type": upload.content_type}
            return data
        done = (now - upload.finalized_at) / max(upload.ready_at - upload.finalized_at, 1e-9)
        state = "pending" if done < 0.25 else "in_progress"
        info: dict[str, Any] = {"state": state, "check_after_secs": self.check_after_secs}
        if state == "in_progress":
            info["progress_percent"] = int(done * 100)
        data["processing_info"] = info
        return data

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
