"""A fake of Pinterest's API v5: image pins on a board, and OAuth token refresh.

Sources: Pinterest's OpenAPI description (github.com/pinterest/api-description, v5/openapi.json,
release 5.23.0; "the spec" below), Pinterest's own clients (pinterest/api-quickstart,
pinterest/pinterest-python-sdk) and exchanges recorded in public issue threads.

Routes (one host, as api.pinterest.com):
- `POST /v5/pins`: JSON `PinCreate` (`board_id`, `description`, `title`, `link`, `alt_text`,
  `media_source`), bearer token. Answered 201 with the `Pin` (`id`, `created_at`, `board_id`,
  `board_owner`, `media`, ...), shaped as the response recorded in pinterest/api-quickstart#78.
  Pinterest fetches an `image_url` itself, and so does this fake: one it cannot fetch is
  answered 400 `{"code": 1, "message": "Sorry we could not fetch the image."}` (the body
  recorded in gitroomhq/postiz-app#1931). Limits from `PinCreate`: `board_id` `^\\d+$`, title
  100, description 800, alt_text 500, link 2,048 characters; a longer field, a missing board or
  media source, or a `source_type` other than `image_url` is a 400 code 1 (that wording is this
  fake's own). A board outside `boards` (when set) is 404 `{"code": 40, "message": "Board not
  found."}` (the spec's example).
- `POST /v5/media`: JSON `MediaUploadCreate` (`media_type` "video", the only `MediaUploadType`),
  bearer token. Answered 201 with the spec's `MediaUpload`: `media_id` (digits), `media_type`,
  `upload_url` and `upload_parameters`, the fields of an S3 POST policy named as the spec's
  `MediaUploadParameters` example names them (`Content-Type`, `key`, `policy`,
  `x-amz-algorithm`, `x-amz-credential`, `x-amz-date`, `x-amz-security-token`,
  `x-amz-signature`), the key in the example's form (`uploads/../..:video:<digits>:<digits>`).
  The `upload_url` is this fake's own `/pinterest-media-upload/` (Pinterest's is an S3 bucket,
  the spec's example `https://pinterest-media-upload.s3-accelerate.amazonaws.com/`).
- `POST /pinterest-media-upload/`: the upload, as S3's POST Object takes it (the Amazon S3 API
  reference, "POST Object" and "Browser-Based Uploads Using POST"): a multipart/form-data body
  whose fields, before the `file` field, must carry every upload parameter unchanged (fields after
  the file are ignored); no Authorization header. Answered 204 No Content with `ETag` (the
  file's MD5, quoted), `Location` and `x-amz-request-id`, S3's default `success_action_status`.
  Refusals are S3's XML error body `<Error><Code/><Message/><RequestId/><HostId/></Error>`: a
  missing or changed field is 403 `AccessDenied` "Invalid according to Policy: Policy Condition
  failed: ...", a policy past its expiration (`upload_lifetime`, an hour here) 403
  `AccessDenied` "Invalid according to Policy: Policy expired.", a body without a file 400
  `InvalidArgument` "POST requires exactly one file upload per request.", a file over 2 GB (the
  policy's `content-length-range`, Pinterest's video size limit) 400 `EntityTooLarge` "Your
  proposed upload exceeds the maximum allowed size", and the "upload" fault's `server_error`
  500 `InternalError` "We encountered an internal error. Please try again." (S3's error
  responses list). The fake keeps the file's size and SHA-256, not its bytes.
- `GET /v5/media/{media_id}`, bearer token: the spec's `Media` (`media_id`, `media_type`,
  `status`): `registered` until the upload, `processing` for `processing_seconds` after it, then
  `succeeded`, or `failed` when the file is not an MP4/QuickTime file (`ftyp` at byte 4) or the
  "process" fault says `reject`. An unknown id is 404 `{"code": 404, "message": "Media upload
  not found."}` (the spec gives a 404 with `Pinterest.Lib.Error`; the words are this fake's).
- `POST /v5/pins` also takes `media_source` `{"source_type": "video_id", "media_id", ...}`
  (`PinMediaSourceVideoID`: `cover_image_url`, `cover_image_key_frame_time` an integer from 0).
  The media must have `succeeded`; otherwise, or for an unknown id, 400 code 1 "Invalid request:
  ..." (this fake's words: the spec names no such error). The pin's `media` is the spec's
  `PinMediaWithVideo` (`media_type` "video", `cover_image_url`, and `duration`, `height`, `width`
  null: "Field maybe null after creation due to video processing time").
- `POST /v5/oauth/token`: form `grant_type=refresh_token&refresh_token=...` with the app's
  client id and secret as HTTP Basic auth (the spec's `basic` security on `/oauth/token`; the
  same request in pinterest-python-sdk's `get_new_access_token` and pinterest/api-quickstart's
  `AccessToken.refresh`). Answered 200 with the spec's `OauthAccessTokenResponseRefresh`:
  `access_token`, `token_type`, `expires_in` (30 days, as recorded in public clients' tests),
  `scope`, `refresh_token` and its `refresh_token_expires_in` (60 days: the spec's "continuous
  refresh token (60-day expiration, refreshable indefinitely)") and `refresh_token_expires_at`.
  Every refresh returns a new refresh token (the spec requires one in the answer); whether
  Pinterest still takes the old one afterwards is not documented, so this fake spends it
  (`rotating`), the stricter reading: Kairos must keep the new one.

Errors are the spec's `{"code": <int>, "message": "..."}`; the 401 for a missing, expired or
revoked token is `{"code": 2, "message": "Authentication failed.", "status": "failure"}`, the
body recorded in pinterest/pinterest-python-generated-api-client#31 and
vijaypatoliya/pinterest-node-api#20. Every answer carries `x-pinterest-rid`, the request id
Pinterest's clients log (pinterest/api-quickstart `api_common.py`).

Rate limits: a 429 is code 8 with the spec's message ("This request exceeded a rate limit...").
Pinterest documents no header saying how long to wait (its rate-limits page,
developers.pinterest.com/docs/reference/rate-limits, gives per-category budgets per minute or per
day, and the spec no response headers), so the 429 carries none and a fault's `seconds` is
unused.

Fault operations: "register" (`POST /v5/media`), "upload" (the S3 POST: `server_error` and `hang`,
the file kept but no answer), "media_status", "process" (`reject` fails the media), "create"
and "refresh". `rate_limit` answers the 429 (with the fault's message
instead when given: a spam block is a 429 too, and pinterest/api-quickstart tells it apart by
"spam" in its message), `server_error` a 500 "Something went wrong on our end." (the words
gitroomhq/postiz-app retries on), `reject` the spec's 403 `{"code": 29, "message": "You are not
permitted to access that resource."}` (or the fault's message), `expire_token` expires the
presented token and answers the 401, `hang` saves the pin (or registers the media) and never
answers. On "refresh", `reject` and `expire_token` refuse the refresh token.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from aiohttp import web

from kairos_fakes._graph import fetch_type
from kairos_fakes.base import FakeServer, Fault, Tokens, bearer, new_id
from kairos_fakes.x import form_parts

ACCESS_LIFETIME = 30 * 24 * 3600.0
REFRESH_LIFETIME = 60 * 24 * 3600
SCOPE = "boards:read,boards:write,pins:read,pins:write"
#: `PinCreate` string limits (`maxLength`, in characters).
MAX_LENGTHS = {"title": 100, "description": 800, "alt_text": 500, "link": 2048}
BOARD_ID = re.compile(r"^\d+$")
RATE_LIMITED = (
    "This request exceeded a rate limit. This can happen if the client exceeds one\n"
    "of the published rate limits or if multiple write operations are applied to\n"
    "an object within a short time window."
)
NOT_PERMITTED = "You are not permitted to access that resource."
COULD_NOT_FETCH = "Sorry we could not fetch the image."
SERVER_ERROR = "Something went wrong on our end."
#: Marks a call whose `hang` fault lets the pin be saved but the answer never come.
HANG = web.RequestKey("hang", bool)
#: Pinterest's video size limit, as the upload policy's `content-length-range` would hold it.
MAX_VIDEO_BYTES = 2 * 2**30
UPLOAD_PATH = "/pinterest-media-upload/"


@dataclass
class MediaUpload:
    """A registered video: its upload policy's fields, then what was uploaded."""

    media_id: str
    parameters: dict[str, str]
    expires_at: float
    status: str = "registered"
    size: int = 0
    sha256: str = ""


def s3_error(status: int, code: str, message: str) -> web.Response:
    """S3's XML error body."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{escape(message)}</Message>"
        f"<RequestId>{secrets.token_hex(8).upper()}</RequestId>"
        f"<HostId>{base64.b64encode(secrets.token_bytes(48)).decode()}</HostId></Error>"
    )
    return web.Response(status=status, text=body, content_type="application/xml")


def error(http_status: int, code: int, message: str, **more: Any) -> web.Response:
    """Pinterest's error body, with a request id as every answer has."""
    return web.json_response(
        {"code": code, "message": message, **more},
        status=http_status,
        headers={"x-pinterest-rid": new_id(16)},
    )


def invalid(message: str) -> web.Response:
    return error(400, 1, f"Invalid request: {message}")


def authentication_failed() -> web.Response:
    return error(401, 2, "Authentication failed.", status="failure")


class PinterestFake(FakeServer):
    name: ClassVar[str] = "pinterest"
    default_port: ClassVar[int] = 9111

    def __init__(self) -> None:
        super().__init__()
        self.tokens = Tokens(prefix="pin", rotating=True)
        self.posts: list[dict[str, Any]] = []
        #: The boards that exist; None accepts any board id (as `make dev` does).
        self.boards: set[str] | None = None
        #: When set, the token endpoint checks the app's Basic credentials against these.
        self.client_id = ""
        self.client_secret = ""
        #: The owner's username shown in a pin's `board_owner`.
        self.username = "kairos"
        #: Registered video uploads by `media_id`.
        self.media: dict[str, MediaUpload] = {}
        #: How long a video stays `processing` after its upload, and an upload policy's life.
        self.processing_seconds = 0.0
        self.upload_lifetime = 3600.0
        self.work: set[asyncio.Task[None]] = set()

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v5/pins", self.create)
        router.add_post("/v5/media", self.register_media)
        router.add_get("/v5/media/{media_id}", self.media_status)
        router.add_post(UPLOAD_PATH, self.upload)
        router.add_post("/v5/oauth/token", self.token)

    def issue(self) -> tuple[str, str]:
        """A new (access, refresh) pair as Pinterest's authorization-code grant gives it."""
        return self.tokens.issue(ACCESS_LIFETIME)

    def fault_answer(self, request: web.Request, fault: Fault | None) -> web.Response | None:
        """The answer for a queued fault; None for none or for `hang` (the handler saves the pin,
        then hangs)."""
        if fault is None:
            return None
        if fault.kind == "hang":
            request[HANG] = True
            return None
        if fault.kind == "rate_limit":
            return error(429, 8, fault.message or RATE_LIMITED)
        if fault.kind == "server_error":
            return error(500, 500, SERVER_ERROR)
        if fault.kind == "expire_token":
            self.tokens.expire(bearer(request))
            return authentication_failed()
        return error(403, 29, fault.message or NOT_PERMITTED)

    async def create(self, request: web.Request) -> web.Response:
        refused = self.fault_answer(request, self.fault("create"))
        if refused is not None:
            return refused
        if self.tokens.state(bearer(request)) != "ok":
            return authentication_failed()
        try:
            data = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            return invalid("the body is not JSON")
        if not isinstance(data, dict):
            return invalid("the body must be a JSON object")
        problem = await self.check(data)
        if problem is not None:
            return problem
        pin = self.save(data)
        if request.get(HANG):
            return await self.hang()
        return web.json_response(pin, status=201, headers={"x-pinterest-rid": new_id(16)})

    async def stop(self) -> None:
        for task in list(self.work):
            task.cancel()
        await super().stop()

    async def register_media(self, request: web.Request) -> web.Response:
        refused = self.fault_answer(request, self.fault("register"))
        if refused is not None:
            return refused
        if self.tokens.state(bearer(request)) != "ok":
            return authentication_failed()
        try:
            data = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            return invalid("the body is not JSON")
        if not isinstance(data, dict) or data.get("media_type") != "video":
            return invalid("'media_type' must be one of: video")
        media_id = new_id(19)
        now = datetime.now(UTC)
        expires = now + timedelta(seconds=self.upload_lifetime)
        key = f"uploads/{secrets.token_hex(1)}/{secrets.token_hex(1)}/{secrets.token_hex(1)}/"
        key += f"{secrets.randbelow(9) + 1}:video:{new_id(18)}:{new_id(19)}"
        policy = {
            "expiration": expires.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "conditions": [
                {"bucket": "pinterest-media-upload"},
                {"key": key},
                ["content-length-range", 0, MAX_VIDEO_BYTES],
            ],
        }
        parameters = {
            "Content-Type": "multipart/form-data",
            "key": key,
            "policy": base64.b64encode(json.dumps(policy).encode()).decode(),
            "x-amz-algorithm": "AWS4-HMAC-SHA256",
            "x-amz-credential": f"ASIA{secrets.token_hex(8).upper()}/"
            f"{now:%Y%m%d}/us-east-1/s3/aws4_request",
            "x-amz-date": f"{now:%Y%m%dT%H%M%SZ}",
            "x-amz-security-token": base64.b64encode(secrets.token_bytes(60)).decode(),
            "x-amz-signature": secrets.token_hex(32),
        }
        self.media[media_id] = MediaUpload(media_id, parameters, time.time() + self.upload_lifetime)
        if request.get(HANG):
            return await self.hang()
        return web.json_response(
            {
                "media_id": media_id,
                "media_type": "video",
                "upload_url": f"{self.url}{UPLOAD_PATH}",
                "upload_parameters": parameters,
            },
            status=201,
            headers={"x-pinterest-rid": new_id(16)},
        )

    async def upload(self, request: web.Request) -> web.Response:
        fault = self.fault("upload")
        if fault is not None and fault.kind == "server_error":
            return s3_error(
                500, "InternalError", "We encountered an internal error. Please try again."
            )
        parts = form_parts(request.headers.get("content-type", ""), await request.read())
        before_file: dict[str, bytes] = {}
        for name, (_, value) in parts.items():
            if name == "file":
                break
            before_file[name] = value
        if "file" not in parts:
            return s3_error(
                400, "InvalidArgument", "POST requires exactly one file upload per request."
            )
        key = before_file.get("key", b"").decode(errors="replace")
        media = next((m for m in self.media.values() if m.parameters["key"] == key), None)
        if media is None:
            return s3_error(
                403,
                "AccessDenied",
                'Invalid according to Policy: Policy Condition failed: ["eq", "$key", ...]',
            )
        for field, wanted in media.parameters.items():
            if field == "Content-Type":
                continue  # a form field S3 takes as the object's type; the policy allows any
            if before_file.get(field) != wanted.encode():
                condition = f'["eq", "${field}", "{wanted[:40]}"]'
                return s3_error(
                    403,
                    "AccessDenied",
                    f"Invalid according to Policy: Policy Condition failed: {condition}",
                )
        if time.time() > media.expires_at:
            return s3_error(403, "AccessDenied", "Invalid according to Policy: Policy expired.")
        content = parts["file"][1]
        if len(content) > MAX_VIDEO_BYTES:
            return s3_error(
                400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size"
            )
        media.size, media.sha256 = len(content), hashlib.sha256(content).hexdigest()
        media.status = "processing"
        task = asyncio.create_task(self.process(media, content[:16]))
        self.work.add(task)
        task.add_done_callback(self.work.discard)
        if fault is not None and fault.kind == "hang":
            return await self.hang()
        return web.Response(
            status=204,
            headers={
                "ETag": f'"{hashlib.md5(content, usedforsecurity=False).hexdigest()}"',
                "Location": f"https://pinterest-media-upload.s3.amazonaws.com/{key}",
                "x-amz-request-id": secrets.token_hex(8).upper(),
            },
        )

    async def process(self, media: MediaUpload, head: bytes) -> None:
        """Pinterest's processing of an uploaded video: `succeeded` or `failed`."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closing.wait(), timeout=self.processing_seconds)
        if self.closing.is_set():
            return
        fault = self.fault("process")
        failed = fault is not None and fault.kind == "reject"
        media.status = "failed" if failed or head[4:8] != b"ftyp" else "succeeded"

    async def media_status(self, request: web.Request) -> web.Response:
        refused = self.fault_answer(request, self.fault("media_status"))
        if refused is not None:
            return refused
        if self.tokens.state(bearer(request)) != "ok":
            return authentication_failed()
        media = self.media.get(request.match_info["media_id"])
        if media is None:
            return error(404, 404, "Media upload not found.")
        return web.json_response(
            {"media_id": media.media_id, "media_type": "video", "status": media.status},
            headers={"x-pinterest-rid": new_id(16)},
        )

    async def check(self, data: dict[str, Any]) -> web.Response | None:
        """Pinterest's refusal of this `PinCreate`, or None when a pin can be made of it."""
        board = data.get("board_id")
        if not isinstance(board, str) or not BOARD_ID.match(board):
            return invalid(f"'board_id' value {board!r} must match the pattern: ^\\d+$")
        for field, limit in MAX_LENGTHS.items():
            value = data.get(field)
            if value is not None and not isinstance(value, str):
                return invalid(f"'{field}' must be a string")
            if value is not None and len(value) > limit:
                return invalid(f"'{field}' is longer than {limit} characters ({len(value)})")
        source = data.get("media_source")
        if isinstance(source, dict) and source.get("source_type") == "video_id":
            return self.check_video(board, source)
        if not isinstance(source, dict) or source.get("source_type") != "image_url":
            return invalid("'media_source' must have source_type 'image_url' or 'video_id' here")
        url = source.get("url")
        if not isinstance(url, str) or not url:
            return invalid("'media_source.url' is required")
        if self.boards is not None and board not in self.boards:
            return error(404, 40, "Board not found.")
        if not await fetch_type(url):
            return error(400, 1, COULD_NOT_FETCH)
        return None

    def check_video(self, board: str, source: dict[str, Any]) -> web.Response | None:
        """Pinterest's refusal of a `video_id` media source, or None."""
        frame = source.get("cover_image_key_frame_time")
        if frame is not None and (
            not isinstance(frame, int) or isinstance(frame, bool) or frame < 0
        ):
            return invalid("'cover_image_key_frame_time' must be an integer of at least 0")
        cover = source.get("cover_image_url")
        if cover is not None and not isinstance(cover, str):
            return invalid("'cover_image_url' must be a string")
        media_id = source.get("media_id")
        if not isinstance(media_id, str) or not media_id.isdigit():
            return invalid("'media_source.media_id' must match the pattern: ^\\d+$")
        if self.boards is not None and board not in self.boards:
            return error(404, 40, "Board not found.")
        media = self.media.get(media_id)
        if media is None or media.status != "succeeded":
            shown = media.status if media is not None else "unknown"
            return invalid(f"media {media_id} is not ready to pin (status {shown})")
        return None

    def save(self, data: dict[str, Any]) -> dict[str, Any]:
        """Store the pin and return it as Pinterest shows it."""
        source: dict[str, Any] = data["media_source"]
        if source["source_type"] == "video_id":
            media = self.media[source["media_id"]]
            cover = str(
                source.get("cover_image_url")
                or f"https://i.pinimg.com/videos/thumbnails/originals/{media.media_id}.0000000.jpg"
            )
            shown: dict[str, Any] = {
                "media_type": "video",
                "cover_image_url": cover,
                "video_url": None,
                "duration": None,
                "height": None,
                "width": None,
                "images": {"originals": {"width": 1080, "height": 1920, "url": cover}},
            }
            extra = {
                "media_id": media.media_id,
                "video_size": media.size,
                "video_sha256": media.sha256,
                "cover_image_key_frame_time": source.get("cover_image_key_frame_time"),
            }
        else:
            image = str(source["url"])
            shown = {
                "media_type": "image",
                "images": {
                    "originals": {"width": 1200, "height": 1508, "url": image},
                },
            }
            extra = {}
        pin: dict[str, Any] = {
            "id": new_id(18),
            "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
            "link": data.get("link"),
            "title": data.get("title"),
            "description": data.get("description"),
            "dominant_color": "#e8d3db",
            "alt_text": data.get("alt_text"),
            "board_id": data["board_id"],
            "board_section_id": data.get("board_section_id"),
            "board_owner": {"username": self.username},
            "parent_pin_id": None,
            "media": shown,
        }
        self.posts.append({**pin, **extra})
        return pin

    async def token(self, request: web.Request) -> web.Response:
        fault = self.fault("refresh")
        if fault is not None and fault.kind == "hang":
            return await self.hang()
        if fault is not None and fault.kind == "rate_limit":
            return error(429, 8, fault.message or RATE_LIMITED)
        if fault is not None and fault.kind == "server_error":
            return error(500, 500, SERVER_ERROR)
        client = self.basic(request)
        if client is None or (self.client_id and client != (self.client_id, self.client_secret)):
            return authentication_failed()
        form = {k: v[0] for k, v in parse_qs((await request.read()).decode()).items()}
        if form.get("grant_type") != "refresh_token":
            return invalid("'grant_type' must be refresh_token here")
        pair = None
        if fault is None:  # any other fault refuses the refresh token
            pair = self.tokens.use_refresh(form.get("refresh_token", ""), ACCESS_LIFETIME)
        if pair is None:
            return invalid("the refresh token is invalid, expired or revoked")
        access, refresh = pair
        return web.json_response(
            {
                "access_token": access,
                "token_type": "bearer",
                "expires_in": int(ACCESS_LIFETIME),
                "scope": SCOPE,
                "refresh_token": refresh,
                "refresh_token_expires_in": REFRESH_LIFETIME,
                "refresh_token_expires_at": int(time.time()) + REFRESH_LIFETIME,
                "response_type": "refresh_token",
            },
            headers={"x-pinterest-rid": new_id(16)},
        )

    @staticmethod
    def basic(request: web.Request) -> tuple[str, str] | None:
        """(client_id, client_secret) from an `Authorization: Basic` header, else None."""
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            client_id, _, secret = base64.b64decode(value, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        if not client_id or not secret:
            return None
        return client_id, secret


Fake = PinterestFake
