"""A fake Mastodon instance: statuses, media uploads with background processing, rate limits.

- `POST /api/v1/statuses` (JSON or form): `status`, `media_ids[]`, `in_reply_to_id`,
  `visibility`, `spoiler_text`, `sensitive`, `language`. 200 with a Status entity. Honours
  `Idempotency-Key` for an hour: a repeated key answers with the first status and creates
  nothing. Validates as Mastodon does: 500 grapheme clusters of spoiler text plus text, every
  URL counting 23 and `@user@domain` counting as `@user`; a blank text without media; media
  that is unknown, attached already or still processing; more than four attachments; a reply
  to a status that does not exist (404).
- `POST /api/v2/media` (multipart `file`, `description`): 202 with `url: null` while the file
  is processing (the first `processing_polls` polls), else 200 with the URL. A video (or gifv,
  audio) is always processed in the background, so it always answers 202 (Mastodon 4.0 on:
  "Larger media formats (video, gifv, audio) will continue to be processed asynchronously and
  return 202"). Files over the instance's limits are refused with 422: 16 MB for images, 99 MB
  for video and audio (`MediaAttachment::IMAGE_LIMIT`, `VIDEO_LIMIT` in Mastodon 4.4+, also
  the `configuration.media_attachments` example in the Instance entity's docs); a file whose
  type is not one Mastodon takes, or whose bytes are not the video its type claims, gets the
  docs' "Validation failed: File content type is invalid, File is invalid".
- `GET /api/v1/media/{id}`: 206 while processing, 200 when done; 422 `{"error": "Error
  processing thumbnail for uploaded media"}` when processing failed (`fail_processing`), as
  `Api::V1::MediaController#check_processing` answers; 404 `Record not found` once the file
  is attached to a status (the controller looks only among unattached media).

Every authenticated answer carries `X-RateLimit-Limit/Remaining/Reset` (reset as ISO-8601) for
a window of `limit` calls per token per five minutes; the call after the last is a real 429
`{"error":"Too many requests"}`. Tokens: any token is accepted unless revoked or expired here
(`tokens.revoke(...)`), which gives Doorkeeper's 401. `disabled = True` answers 403 as for a
disabled login.

Mastodon writes its errors in the account's language (`I18n.t(...)` in the user's locale):
`locale` ("en" by default, or "de") chooses the words of the media validation errors, taken
from mastodon/mastodon config/locales/en.yml and de.yml (`media_attachments.validations`).
`reports_processed_early = True` makes an upload answer 200 with its URL while the file still
processes for `processing_polls` more polls, so that a status created at once meets the
instance's own not-ready 422; Mastodon itself answers such an upload 202 (a test device for the
422, which a client that polls before posting otherwise never sees).

Simplifications: the fake does not probe a video, so Mastodon's refusal of one over 3840x2160
pixels or 120 fps (`check_video_dimensions`, 422) is not reproduced; the uploaded file's
SHA-256 is kept on its attachment (`sha256`) for tests.

Fault operations: "create" (POST statuses), "upload" (POST media), "poll" (GET media).
`reject` answers 422 with the fault's message (default: a validation failure). The fake has one
account, so idempotency keys are shared by every token.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import html
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import regex  # type: ignore[import-untyped]
from aiohttp import web

from kairos_fakes.base import FakeServer, Tokens, bearer, new_id

MAX_CHARACTERS = 500
URL_LENGTH = 23
MAX_ATTACHMENTS = 4
IDEMPOTENCY_SECONDS = 3600.0
#: `MediaAttachment::IMAGE_LIMIT` and `VIDEO_LIMIT` (video, gifv and audio), Mastodon 4.4+.
IMAGE_LIMIT = 16 * 1024 * 1024
VIDEO_LIMIT = 99 * 1024 * 1024
#: `MediaAttachment::VIDEO_MIME_TYPES`.
VIDEO_TYPES = frozenset({"video/webm", "video/mp4", "video/quicktime", "video/ogg"})
#: The docs' 422 for a file that is not what it claims (methods/media.md).
INVALID_FILE = "Validation failed: File content type is invalid, File is invalid"
#: `Api::V1::MediaController#processing_error`.
PROCESSING_ERROR = "Error processing thumbnail for uploaded media"
WINDOW_SECONDS = 300.0
USERNAME = "kairos"
#: `media_attachments.validations` in mastodon/mastodon config/locales/<locale>.yml.
MEDIA_VALIDATIONS: dict[str, dict[str, str]] = {
    "en": {
        "not_ready": (
            "Cannot attach files that have not finished processing. Try again in a moment!"
        ),
        "too_many": "Cannot attach more than 4 files",
    },
    "de": {
        "not_ready": (
            "Dateien, die noch nicht bearbeitet wurden, können nicht angehängt werden. "
            "Versuche es gleich noch einmal!"
        ),
        "too_many": "Es können nicht mehr als 4 Dateien angehängt werden",
    },
}

_GRAPHEME = regex.compile(r"\X")
# A URL ends before the punctuation that closes a sentence ("see https://a.example/x!").
_URL = regex.compile(r"https?://[^\s<>\"]*[^\s<>\".,:;!?'*)\]]", regex.IGNORECASE)
# Account::MENTION_RE: a remote mention counts without its domain.
_MENTION = regex.compile(r"(?<![=/\w])@([a-z0-9_]+(?:[.-]+[a-z0-9_]+)*)@[\w.-]+", regex.IGNORECASE)


def length(text: str) -> int:
    """Mastodon's StatusLengthValidator count: graphemes, URLs 23, remote mentions local."""
    text = _URL.sub("x" * URL_LENGTH, text)
    text = _MENTION.sub(r"@\1", text)
    return len(_GRAPHEME.findall(text))


def iso(instant: float) -> str:
    """An instant as Mastodon writes it (ISO-8601, UTC, fractional seconds)."""
    return datetime.fromtimestamp(instant, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


@dataclass
class Attachment:
    id: str
    description: str
    content_type: str
    size: int
    #: Polls still to answer 206 before the file counts as processed.
    pending_polls: int
    status_id: str = ""
    #: The SHA-256 of the file as it arrived.
    sha256: str = ""
    #: Processing failed: polls answer 422 once the pending ones are done.
    failed: bool = False

    @property
    def processed(self) -> bool:
        return self.pending_polls <= 0 and not self.failed


@dataclass(frozen=True)
class Gate:
    """How one call passed the checks every endpoint shares."""

    token: str
    #: An answer that ends the call (401, 403, 429, a fault), if any.
    answer: web.Response | None = None
    #: Do the work, then never answer.
    hang: bool = False


@dataclass
class Window:
    ends_at: float
    used: int = 0


@dataclass
class Idempotent:
    status_id: str
    at: float = field(default_factory=time.time)


class MastodonFake(FakeServer):
    name = "mastodon"
    default_port: ClassVar[int] = 9102
    #: A video at the default limit with its form fields (the fake reads no thumbnail).
    max_body: ClassVar[int] = VIDEO_LIMIT + 1024 * 1024

    def __init__(self) -> None:
        super().__init__()
        self.tokens = Tokens(prefix="mastodon", rotating=False)
        self.statuses: list[dict[str, Any]] = []
        self.media: dict[str, Attachment] = {}
        self.idempotency: dict[str, Idempotent] = {}
        self.windows: dict[str, Window] = {}
        #: Calls per token per five minutes before a 429.
        self.limit = 300
        #: How many polls of a new upload answer 206 (0: the upload itself answers 200).
        self.processing_polls = 1
        #: Answer 403 as for a disabled account.
        self.disabled = False
        #: The account's language, in which the media validation errors are written.
        self.locale = "en"
        #: Answer an upload 200 although its file is still processing (see the module doc).
        self.reports_processed_early = False
        #: When True, the next uploaded video fails processing.
        self.fail_processing = False
        #: The instance's `MAX_IMAGE_SIZE` and `MAX_VIDEO_SIZE` (Mastodon's defaults unless set).
        self.image_limit = IMAGE_LIMIT
        self.video_limit = VIDEO_LIMIT

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/api/v1/statuses", self.create_status)
        router.add_post("/api/v2/media", self.upload)
        router.add_get("/api/v1/media/{id}", self.poll)

    # --- shared answers ---------------------------------------------------------------------

    def error(
        self, status: int, message: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        return web.json_response({"error": message}, status=status, headers=headers)

    def rate_headers(self, token: str) -> dict[str, str]:
        window = self.windows[token]
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(0, self.limit - window.used)),
            "X-RateLimit-Reset": iso(window.ends_at),
        }

    def gate(self, request: web.Request, operation: str) -> Gate:
        """Auth, rate limit and the queued fault for one call of `operation`."""
        token = bearer(request)
        state = self.tokens.state(token)
        if state != "ok":
            return Gate(token, self.unauthorized(state))
        if self.disabled:
            return Gate(token, self.error(403, "Your login is currently disabled"))
        now = time.time()
        window = self.windows.get(token)
        if window is None or window.ends_at <= now:
            window = self.windows[token] = Window(ends_at=now + WINDOW_SECONDS)
        if window.used >= self.limit:
            return Gate(token, self.error(429, "Too many requests", self.rate_headers(token)))
        window.used += 1
        fault = self.fault(operation)
        if fault is None:
            return Gate(token)
        if fault.kind == "hang":
            return Gate(token, hang=True)
        if fault.kind == "rate_limit":
            headers = {
                "X-RateLimit-Limit": str(self.limit),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": iso(now + fault.seconds),
            }
            return Gate(token, self.error(429, "Too many requests", headers))
        if fault.kind == "expire_token":
            self.tokens.expire(token)
            return Gate(token, self.unauthorized("expired"))
        if fault.kind == "server_error":
            message = "The page could not be served due to a temporary server failure."
            return Gate(token, self.error(503, message))
        message = fault.message or "Validation failed: Text can't be blank"
        return Gate(token, self.error(422, message, self.rate_headers(token)))

    def unauthorized(self, state: str) -> web.Response:
        message = {
            "revoked": "The access token was revoked",
            "expired": "The access token expired",
        }.get(state, "The access token is invalid")
        challenge = (
            f'Bearer realm="Doorkeeper", error="invalid_token", error_description="{message}"'
        )
        return self.error(401, message, {"WWW-Authenticate": challenge})

    # --- statuses ---------------------------------------------------------------------------

    async def create_status(self, request: web.Request) -> web.Response:
        gate = self.gate(request, "create")
        if gate.answer is not None:
            return gate.answer
        headers = self.rate_headers(gate.token)
        params = await self.status_params(request)
        if params is None:
            return self.error(422, "Validation failed: unreadable body", headers)
        key = request.headers.get("Idempotency-Key", "")
        now = time.time()
        if key:
            seen = self.idempotency.get(key)
            if seen is not None and now - seen.at < IDEMPOTENCY_SECONDS:
                return web.json_response(self.status(seen.status_id), headers=headers)
        problem = self.validate(params)
        if problem is not None:
            status_code, message = problem
            return self.error(status_code, message, headers)
        status = self.new_status(request, params)
        if key:
            self.idempotency[key] = Idempotent(status["id"], now)
        if gate.hang:
            return await self.hang()
        return web.json_response(status, headers=headers)

    async def status_params(self, request: web.Request) -> dict[str, Any] | None:
        """The create parameters from a JSON or form body, `media_ids` as a list."""
        body = await request.read()
        if request.content_type == "application/json":
            try:
                data = json.loads(body)
            except ValueError:
                return None
            return data if isinstance(data, dict) else None
        form = await request.post()
        params: dict[str, Any] = {k: str(v) for k, v in form.items() if k != "media_ids[]"}
        params["media_ids"] = [str(v) for v in form.getall("media_ids[]", [])]
        return params

    def validate(self, params: dict[str, Any]) -> tuple[int, str] | None:
        text = str(params.get("status") or "")
        media_ids = [str(m) for m in params.get("media_ids") or []]
        reply_to = str(params.get("in_reply_to_id") or "")
        if reply_to and self.find(reply_to) is None:
            return 404, "The post you are trying to reply to does not appear to exist."
        words = MEDIA_VALIDATIONS[self.locale]
        if len(media_ids) > MAX_ATTACHMENTS:
            return 422, words["too_many"]
        missing = [m for m in media_ids if m not in self.media or self.media[m].status_id]
        if missing:
            return 422, f"Media {', '.join(missing)} not found or already attached to another post"
        if not all(self.media[m].processed for m in media_ids):
            return 422, words["not_ready"]
        if not text.strip() and not media_ids:
            return 422, "Validation failed: Text can't be blank"
        if length(str(params.get("spoiler_text") or "") + text) > MAX_CHARACTERS:
            return 422, f"Validation failed: Text character limit of {MAX_CHARACTERS} exceeded"
        return None

    def new_status(self, request: web.Request, params: dict[str, Any]) -> dict[str, Any]:
        status_id = new_id(18)
        base = f"{request.scheme}://{request.host}"
        media_ids = [str(m) for m in params.get("media_ids") or []]
        for media_id in media_ids:
            self.media[media_id].status_id = status_id
        reply_to = str(params.get("in_reply_to_id") or "") or None
        status = {
            "id": status_id,
            "created_at": iso(time.time()),
            "in_reply_to_id": reply_to,
            "in_reply_to_account_id": "1" if reply_to else None,
            "sensitive": str(params.get("sensitive", "false")).lower() == "true",
            "spoiler_text": str(params.get("spoiler_text") or ""),
            "visibility": str(params.get("visibility") or "public"),
            "language": params.get("language") or "en",
            "uri": f"{base}/users/{USERNAME}/statuses/{status_id}",
            "url": f"{base}/@{USERNAME}/{status_id}",
            "content": f"<p>{html.escape(str(params.get('status') or ''))}</p>",
            "media_attachments": [self.attachment(request, self.media[m]) for m in media_ids],
            "account": {"id": "1", "username": USERNAME, "acct": USERNAME},
        }
        self.statuses.append(status)
        return status

    def find(self, status_id: str) -> dict[str, Any] | None:
        return next((s for s in self.statuses if s["id"] == status_id), None)

    def status(self, status_id: str) -> dict[str, Any]:
        found = self.find(status_id)
        assert found is not None
        return found

    # --- media ------------------------------------------------------------------------------

    def attachment(self, request: web.Request, media: Attachment) -> dict[str, Any]:
        base = f"{request.scheme}://{request.host}"
        processed = media.processed
        return {
            "id": media.id,
            "type": media.content_type.partition("/")[0],
            "url": f"{base}/system/media/{media.id}/original" if processed else None,
            "preview_url": f"{base}/system/media/{media.id}/small",
            "description": media.description or None,
            "meta": {"size": media.size},
        }

    async def upload(self, request: web.Request) -> web.Response:
        gate = self.gate(request, "upload")
        if gate.answer is not None:
            return gate.answer
        headers = self.rate_headers(gate.token)
        parts = multipart(request.headers.get("Content-Type", ""), await request.read())
        file = parts.get("file")
        if file is None:
            return self.error(422, "Validation failed: File can't be blank", headers)
        content_type, content = file
        if not content_type.startswith(("image/", "video/", "audio/")):
            return self.error(422, "Validation failed: File content type is invalid", headers)
        video = content_type in VIDEO_TYPES
        if video and not (content[4:8] == b"ftyp" or content.startswith(b"\x1a\x45\xdf\xa3")):
            return self.error(422, INVALID_FILE, headers)
        limit = self.image_limit if content_type.startswith("image/") else self.video_limit
        if len(content) >= limit:  # Paperclip's `less_than`
            message = f"Validation failed: File file size must be less than {human_size(limit)}"
            return self.error(422, message, headers)
        description = parts.get("description", ("", b""))[1].decode()
        polls = max(self.processing_polls, 1) if video else self.processing_polls
        media = Attachment(
            new_id(18),
            description,
            content_type,
            len(content),
            polls,
            sha256=hashlib.sha256(content).hexdigest(),
            failed=video and self.fail_processing,
        )
        if video:
            self.fail_processing = False
        self.media[media.id] = media
        if gate.hang:
            return await self.hang()
        body = self.attachment(request, media)
        if self.reports_processed_early:
            base = f"{request.scheme}://{request.host}"
            body["url"] = f"{base}/system/media/{media.id}/original"
            return web.json_response(body, headers=headers)
        return web.json_response(body, status=202 if media.pending_polls else 200, headers=headers)

    async def poll(self, request: web.Request) -> web.Response:
        gate = self.gate(request, "poll")
        if gate.answer is not None:
            return gate.answer
        headers = self.rate_headers(gate.token)
        media = self.media.get(request.match_info["id"])
        if media is None or media.status_id:
            return self.error(404, "Record not found", headers)
        if media.pending_polls > 0:
            media.pending_polls -= 1
            answer = web.json_response(self.attachment(request, media), status=206, headers=headers)
        elif media.failed:
            answer = self.error(422, PROCESSING_ERROR, headers)
        else:
            answer = web.json_response(self.attachment(request, media), headers=headers)
        if gate.hang:
            return await self.hang()
        return answer


def human_size(size: int) -> str:
    """A size as Rails' `number_to_human_size` writes it in Paperclip's message: three
    significant digits, binary units ("99 MB", "19.5 KB")."""
    value, unit = float(size), "Bytes"
    for unit in ("Bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            break
        value /= 1024
    return f"{float(f'{value:.3g}'):g} {unit}"


def multipart(content_type: str, body: bytes) -> dict[str, tuple[str, bytes]]:
    """A multipart/form-data body as name -> (content type, bytes).

    The request body was read already (every request is recorded), so it is parsed from the
    bytes rather than streamed.
    """
    parser = email.parser.BytesParser(policy=email.policy.HTTP)
    message = parser.parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    parts: dict[str, tuple[str, bytes]] = {}
    if not message.is_multipart():
        return parts
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            parts[name] = (part.get_content_type(), payload)
    return parts


Fake = MastodonFake
