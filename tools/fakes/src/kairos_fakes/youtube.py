"""A fake of the YouTube Data API v3's video upload (videos.insert as a resumable upload), the
video's processing as videos.list shows it, and Google's OAuth token refresh.

Sources, read in December 2026:
- "Resumable Uploads" (developers.google.com/youtube/v3/guides/using_resumable_upload_protocol,
  "the guide"): the session is started with a POST of the video resource as JSON to
  `/upload/youtube/v3/videos?uploadType=resumable&part=...` with `X-Upload-Content-Length` and
  `X-Upload-Content-Type` (any `video/*` or `application/octet-stream`), answered 200 with the
  session URI in `Location`; the bytes are PUT to that URI, in one request or in chunks each
  with `Content-Range: bytes FIRST-LAST/TOTAL`; a chunk short of the end is answered `308 Resume
  Incomplete` with `Range: bytes=0-LAST` (no `Range` when nothing was received); the request
  that completes the upload is answered with the video resource ("201 Created"); an
  interrupted upload's status is asked with an empty PUT and `Content-Range: bytes */TOTAL`,
  answered 308 (with `Range`) or, when complete, as the completing request. A session that is
  gone is a 404 (Google's resumable-upload pages for Drive and Cloud Storage: the session
  "has expired", start again).
- Chunk sizes: every chunk but the last is a multiple of 256 KiB (262,144 bytes), as Google's
  resumable protocol requires (Drive's "Upload file data" and Cloud Storage's resumable upload
  pages; google-api-python-client's `MediaUpload` chunksize). The refusal of a smaller chunk is
  Google's wording as public issue threads quote it ("The number of bytes uploaded is required
  to be equal or greater than 262144, except for the final request ...").
- videos.insert (developers.google.com/youtube/v3/docs/videos/insert) and the videos resource
  (.../docs/videos): "Maximum file size: 256GB"; `snippet.title`
  at most 100 characters and `snippet.description` at most 5,000 bytes, neither with `<` or
  `>`; `snippet.tags` at most 500 characters together; `status.privacyStatus` private, public
  or unlisted; `status.selfDeclaredMadeForKids`; its error table (400 `invalidTitle`,
  `invalidDescription`, `invalidTags`, `invalidCategoryId`, `invalidVideoMetadata`,
  `mediaBodyRequired`, `uploadLimitExceeded`; 403 `forbidden`). `status.uploadStatus`
  (uploaded, processed, failed, rejected, deleted) with `failureReason` (codec, conversion,
  emptyFile, invalidFile, tooSmall, uploadAborted) and `rejectionReason` (claim, copyright,
  duplicate, inappropriate, legal, length, termsOfUse, trademark, uploaderAccountClosed,
  uploaderAccountSuspended); `processingDetails.processingStatus` (processing, succeeded,
  failed, terminated) and `processingProgress` (`partsTotal`, `partsProcessed`, `timeLeftMs`).
  Videos of an API project not audited since 2020-07-28 are "restricted to private viewing
  mode" (the insert page's note).
- Errors are Google's JSON error form `{"error": {"code", "message", "errors": [{"message",
  "domain", "reason"}]}}` (the YouTube errors page, developers.google.com/youtube/v3/docs/
  errors, and Google's JSON style guide); the quota refusal is a 403 with reason
  `quotaExceeded` in domain `youtube.quota` and message "The request cannot be completed
  because you have exceeded your <a href="/youtube/v3/getting-started#quota">quota</a>.",
  as recorded in bperel/youtube-caption-indicator#1. The 401 is `authError` in domain
  `global` with `status` UNAUTHENTICATED, as Google's APIs answer a bad bearer token.
- Quota ("Quota Calculator", developers.google.com/youtube/v3/determine_quota_cost, as current
  in December 2026): videos.insert has "its own quota bucket", 100 calls a day by default at a
  cost of 1 per call; the other methods share 10,000 units a day (videos.list costs 1). "Daily
  quotas reset at midnight Pacific Time (PT)." (Older versions of the page charged an insert
  1,600 of the 10,000 units.)
- `POST /token` is Google's OAuth 2.0 token endpoint (oauth2.googleapis.com, developers.google.
  com/identity/protocols/oauth2/web-server "Refreshing an access token"): form `client_id`,
  `client_secret`, `refresh_token`, `grant_type=refresh_token`; answered with `access_token`,
  `expires_in` (3,599), `scope` and `token_type` "Bearer", and no new refresh token: Google's
  refresh tokens do not rotate. A refused one is 400 `{"error": "invalid_grant",
  "error_description": "Token has been expired or revoked."}`; an unknown client 401
  `invalid_client`.

Routes (one host standing in for www.googleapis.com and oauth2.googleapis.com):
`POST /upload/youtube/v3/videos` (start a session), `PUT /upload/youtube/v3/videos?upload_id=`
(the session URI: bytes, or a status query), `GET /youtube/v3/videos` (videos.list by `id`),
`POST /token`.

After the last byte the video exists (`uploadStatus` "uploaded") and is processed
`processing_seconds` later: "processed", unless a "process" fault says otherwise. Choices of
this fake, not documented: a chunk that does not start where the received bytes end is answered
308 with what was received (nothing is stored from it); a total differing from the session's
`X-Upload-Content-Length` is a 400 `badRequest`; an insert is counted when its session starts.

Fault operations: "create" (the session start), "upload" (each PUT with bytes), "status" (the
status query), "list", "process" and "refresh". `rate_limit` answers 403 `quotaExceeded` (on
"create" and "list"; YouTube's only rate refusal), `server_error` 503 `backendError`, `reject` a
400 with the fault's message as reason (`invalidVideoMetadata` when none), `expire_token` the 401,
`hang` does the work and never answers (on the last chunk: the video is made). On "process",
`reject` fails the video: a `rejectionReason` name rejects it, any other message is its
`failureReason` (`codec` when none).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import parse_qs

from aiohttp import web

from kairos_fakes.base import FakeServer, Fault, Tokens, bearer

ACCESS_LIFETIME = 3599.0
SCOPE = "https://www.googleapis.com/auth/youtube.upload"
#: Every chunk but the last is a multiple of this many bytes.
CHUNK_UNIT = 256 * 1024
MAX_BYTES = 256 * 1024**3
MAX_TITLE = 100
MAX_DESCRIPTION_BYTES = 5000
MAX_TAGS = 500
#: videos.insert's own daily bucket, in calls, and the other methods' shared units.
DAILY_INSERTS = 100
LIST_COST = 1
DAILY_QUOTA = 10_000
PRIVACY = ("private", "unlisted", "public")
#: The categories of the US region (videoCategories.list regionCode=US, assignable ones).
CATEGORIES = frozenset(
    {"1", "2", "10", "15", "17", "19", "20", "22", "23", "24", "25", "26", "27", "28", "29"}
)
REJECTIONS = frozenset(
    {
        "claim",
        "copyright",
        "duplicate",
        "inappropriate",
        "legal",
        "length",
        "termsOfUse",
        "trademark",
        "uploaderAccountClosed",
        "uploaderAccountSuspended",
    }
)
QUOTA_MESSAGE = (
    'The request cannot be completed because you have exceeded your <a href="/youtube/v3/'
    'getting-started#quota">quota</a>.'
)
SMALL_CHUNK = (
    "Invalid request. The number of bytes uploaded is required to be equal or greater than "
    "262144, except for the final request (it's recommended to be the exact multiple of "
    "262144). The received request contained {size} bytes, which does not meet this "
    "requirement."
)
#: Messages of the errors the insert page lists, by reason.
MESSAGES = {
    "invalidTitle": "The request metadata specifies an invalid or empty video title.",
    "invalidDescription": "The request metadata specifies an invalid video description.",
    "invalidTags": "The request metadata specifies invalid video keywords.",
    "invalidCategoryId": "The snippet.categoryId property specifies an invalid category ID.",
    "invalidVideoMetadata": "The request metadata is invalid.",
    "mediaBodyRequired": "The request does not include the video content.",
    "uploadLimitExceeded": "The user has exceeded the number of videos they may upload.",
    "forbidden": "Access forbidden. The request may not be properly authorized.",
}
RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")
STATUS_QUERY = re.compile(r"bytes \*/(\d+)")


def google_error(status: int, reason: str, message: str = "", domain: str = "") -> web.Response:
    """Google's JSON error for one `reason`."""
    words = message or MESSAGES.get(reason, reason)
    item = {"message": words, "domain": domain or "youtube.video", "reason": reason}
    return web.json_response(
        {"error": {"code": status, "message": words, "errors": [item]}}, status=status
    )


def quota_exceeded() -> web.Response:
    return google_error(403, "quotaExceeded", QUOTA_MESSAGE, "youtube.quota")


def backend_error() -> web.Response:
    return google_error(503, "backendError", "Service Unavailable", "global")


def auth_error() -> web.Response:
    words = (
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
        "cookie or other valid authentication credential. See https://developers.google.com/"
        "identity/sign-in/web/devconsole-project."
    )
    item = {
        "message": "Invalid Credentials",
        "domain": "global",
        "reason": "authError",
        "location": "Authorization",
        "locationType": "header",
    }
    return web.json_response(
        {"error": {"code": 401, "message": words, "errors": [item], "status": "UNAUTHENTICATED"}},
        status=401,
    )


def video_id() -> str:
    """An 11-character id like YouTube's (64 bits in URL-safe base64)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(8)).decode().rstrip("=")


@dataclass
class Session:
    """One resumable upload, from its start to its last byte."""

    upload_id: str
    resource: dict[str, Any]
    parts: str
    total: int
    content_type: str
    received: bytearray = field(default_factory=bytearray)
    video: str = ""


@dataclass
class Video:
    """A video YouTube holds, as videos.list shows it."""

    resource: dict[str, Any]
    content: bytes = field(repr=False)
    content_type: str

    @property
    def id(self) -> str:
        return str(self.resource["id"])

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


class YouTubeFake(FakeServer):
    name: ClassVar[str] = "youtube"
    default_port: ClassVar[int] = 9113

    def __init__(self) -> None:
        super().__init__()
        self.tokens = Tokens(prefix="ya29", rotating=False)
        self.sessions: dict[str, Session] = {}
        #: Videos YouTube made, in order.
        self.videos: list[Video] = []
        self.channel_id = "UC" + secrets.token_urlsafe(16)[:22]
        self.channel_title = "Kairos"
        #: Quota spent today: inserts (their own bucket) and other methods' units.
        self.inserts_used = 0
        self.daily_inserts = DAILY_INSERTS
        self.quota_used = 0
        self.daily_quota = DAILY_QUOTA
        #: The channel's uploads left today (YouTube's daily upload cap); None for no cap.
        self.uploads_left: int | None = None
        #: False for an API project not audited: its videos are kept private.
        self.audited = True
        #: How many of the next PUTs of more than 256 KiB keep only their first 256 KiB and
        #: answer 308 with what they kept (the guide: the `Range` says what the server has).
        self.partial_takes = 0
        #: How long after its last byte a video is processed.
        self.processing_seconds = 0.0
        #: When set, the token endpoint checks the app's credentials against these.
        self.client_id = ""
        self.client_secret = ""
        self.work: set[asyncio.Task[None]] = set()

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/upload/youtube/v3/videos", self.start_session)
        router.add_put("/upload/youtube/v3/videos", self.upload)
        router.add_get("/youtube/v3/videos", self.list_videos)
        router.add_post("/token", self.token)

    async def stop(self) -> None:
        for task in list(self.work):
            task.cancel()
        await super().stop()

    def issue(self) -> tuple[str, str]:
        """A new (access, refresh) pair as Google's authorization-code grant gives it."""
        return self.tokens.issue(ACCESS_LIFETIME)

    def reset_quota(self) -> None:
        """What midnight Pacific Time does."""
        self.inserts_used = 0
        self.quota_used = 0

    def charge(self, units: int) -> bool:
        """Spend `units` of today's quota; False (nothing spent) when they are not left."""
        if self.quota_used + units > self.daily_quota:
            return False
        self.quota_used += units
        return True

    async def refused(self, request: web.Request, fault: Fault | None) -> web.Response | None:
        """The answer for a queued fault (but `hang`) or a token Google would not take."""
        if fault is not None:
            if fault.kind == "rate_limit":
                return quota_exceeded()
            if fault.kind == "server_error":
                return backend_error()
            if fault.kind == "expire_token":
                self.tokens.expire(bearer(request))
                return auth_error()
            if fault.kind == "reject":
                reason = fault.message or "invalidVideoMetadata"
                status = 403 if reason == "forbidden" else 400
                return google_error(status, reason)
        if self.tokens.state(bearer(request)) != "ok":
            return auth_error()
        return None

    # -- videos.insert, resumable ------------------------------------------------------------

    async def start_session(self, request: web.Request) -> web.Response:
        fault = self.fault("create")
        hang = fault is not None and fault.kind == "hang"
        refusal = await self.refused(request, None if hang else fault)
        if refusal is not None:
            return refusal
        if request.query.get("uploadType") != "resumable":
            return google_error(400, "badRequest", "this fake takes uploadType=resumable only")
        parts = request.query.get("part", "")
        if not parts:
            return google_error(400, "required", "Required parameter: part", "global")
        length = request.headers.get("x-upload-content-length", "")
        kind = request.headers.get("x-upload-content-type", "")
        if not length.isdigit() or int(length) == 0:
            return google_error(400, "mediaBodyRequired")
        if int(length) > MAX_BYTES:
            return google_error(
                413, "uploadTooLarge", f"Media larger than {MAX_BYTES} bytes", "global"
            )
        if not (kind.startswith("video/") or kind == "application/octet-stream"):
            return google_error(
                400,
                "badContent",
                f"Media type '{kind}' is not supported. Valid media types: [video/*, "
                "application/octet-stream]",
                "global",
            )
        try:
            resource = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            return google_error(400, "parseError", "Parse Error", "global")
        if not isinstance(resource, dict):
            return google_error(400, "invalidVideoMetadata")
        problem = self.check(resource)
        if problem is not None:
            return problem
        if self.uploads_left is not None and self.uploads_left <= 0:
            return google_error(400, "uploadLimitExceeded")
        if self.inserts_used >= self.daily_inserts:
            return quota_exceeded()
        self.inserts_used += 1
        session = Session(secrets.token_urlsafe(24), resource, parts, int(length), kind)
        self.sessions[session.upload_id] = session
        if hang:
            return await self.hang()
        location = (
            f"{self.url}/upload/youtube/v3/videos?uploadType=resumable&part={parts}"
            f"&upload_id={session.upload_id}"
        )
        return web.Response(status=200, headers={"Location": location})

    def check(self, resource: dict[str, Any]) -> web.Response | None:
        """The insert page's refusal of this video resource, or None when it is taken."""
        snippet = resource.get("snippet")
        status = resource.get("status", {})
        if not isinstance(snippet, dict) or not isinstance(status, dict):
            return google_error(400, "invalidVideoMetadata")
        title = snippet.get("title")
        if (
            not isinstance(title, str)
            or not title.strip()
            or len(title) > MAX_TITLE
            or "<" in title
            or ">" in title
        ):
            return google_error(400, "invalidTitle")
        description = snippet.get("description", "")
        if (
            not isinstance(description, str)
            or len(description.encode()) > MAX_DESCRIPTION_BYTES
            or "<" in description
            or ">" in description
        ):
            return google_error(400, "invalidDescription")
        tags = snippet.get("tags", [])
        if (
            not isinstance(tags, list)
            or not all(isinstance(tag, str) for tag in tags)
            or sum(len(tag) + (2 if " " in tag else 0) for tag in tags) + max(len(tags) - 1, 0)
            > MAX_TAGS
        ):
            return google_error(400, "invalidTags")
        category = snippet.get("categoryId")
        if category is not None and category not in CATEGORIES:
            return google_error(400, "invalidCategoryId")
        privacy = status.get("privacyStatus", "private")
        kids = status.get("selfDeclaredMadeForKids", False)
        if privacy not in PRIVACY or not isinstance(kids, bool):
            return google_error(400, "invalidVideoMetadata")
        return None

    async def upload(self, request: web.Request) -> web.StreamResponse:
        session = self.sessions.get(request.query.get("upload_id", ""))
        if session is None:
            return web.Response(status=404, text="Not Found")
        body = await request.read()
        declared = request.headers.get("content-range", "")
        query = STATUS_QUERY.fullmatch(declared)
        if query is not None and not body:
            return await self.status_query(session, int(query.group(1)))
        fault = self.fault("upload")
        if fault is not None and fault.kind != "hang":
            refusal = await self.refused(request, fault)
            if refusal is not None:
                return refusal
        if declared:
            chunk = RANGE.fullmatch(declared)
            if chunk is None:
                return google_error(400, "badRequest", "Failed to parse Content-Range header.")
            first, last, total = (int(group) for group in chunk.groups())
        else:
            first, last, total = 0, len(body) - 1, len(body)
        if total != session.total:
            return google_error(
                400,
                "badRequest",
                f"the total of {total} bytes is not the session's {session.total}",
            )
        if last - first + 1 != len(body) or first > last:
            return google_error(400, "badRequest", "the body is not the Content-Range's bytes")
        if first != len(session.received):
            return self.incomplete(session)
        final = last + 1 == total
        if not final and len(body) % CHUNK_UNIT:
            return google_error(400, "badRequest", SMALL_CHUNK.format(size=len(body)))
        if self.partial_takes and len(body) > CHUNK_UNIT:
            self.partial_takes -= 1
            session.received += body[:CHUNK_UNIT]
            return self.incomplete(session)
        session.received += body
        if not final:
            if fault is not None:  # hang: the bytes were kept, the answer is lost
                return await self.hang()
            return self.incomplete(session)
        video = self.make_video(session)
        if fault is not None:
            return await self.hang()
        return web.json_response(video.resource, status=201)

    async def status_query(self, session: Session, total: int) -> web.Response:
        fault = self.fault("status")
        if fault is not None:
            if fault.kind == "hang":
                return await self.hang()
            return backend_error()
        if total != session.total:
            return google_error(400, "badRequest", "the total is not the session's")
        if session.video:
            video = next(v for v in self.videos if v.id == session.video)
            return web.json_response(video.resource, status=201)
        return self.incomplete(session)

    @staticmethod
    def incomplete(session: Session) -> web.Response:
        headers = {}
        if session.received:
            headers["Range"] = f"bytes=0-{len(session.received) - 1}"
        return web.Response(status=308, headers=headers)

    def make_video(self, session: Session) -> Video:
        """The video YouTube makes of a complete upload: it exists, and is processed later."""
        snippet = session.resource["snippet"]
        status = session.resource.get("status", {})
        privacy = status.get("privacyStatus", "private") if self.audited else "private"
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        shown: dict[str, Any] = {
            "publishedAt": now,
            "channelId": self.channel_id,
            "title": snippet["title"],
            "description": snippet.get("description", ""),
            "channelTitle": self.channel_title,
            "categoryId": snippet.get("categoryId", "22"),
            "liveBroadcastContent": "none",
            "localized": {
                "title": snippet["title"],
                "description": snippet.get("description", ""),
            },
        }
        if snippet.get("tags"):
            shown["tags"] = list(snippet["tags"])
        resource: dict[str, Any] = {
            "kind": "youtube#video",
            "etag": secrets.token_urlsafe(20),
            "id": video_id(),
            "snippet": shown,
            "status": {
                "uploadStatus": "uploaded",
                "privacyStatus": privacy,
                "license": "youtube",
                "embeddable": True,
                "publicStatsViewable": True,
                "selfDeclaredMadeForKids": status.get("selfDeclaredMadeForKids", False),
                "madeForKids": status.get("selfDeclaredMadeForKids", False),
            },
            "processingDetails": {
                "processingStatus": "processing",
                "processingProgress": {"partsTotal": 1000, "partsProcessed": 0, "timeLeftMs": 0},
            },
        }
        video = Video(resource, bytes(session.received), session.content_type)
        self.videos.append(video)
        session.video = video.id
        if self.uploads_left is not None:
            self.uploads_left -= 1
        task = asyncio.create_task(self.process(video))
        self.work.add(task)
        task.add_done_callback(self.work.discard)
        return video

    async def process(self, video: Video) -> None:
        """Process the video as YouTube does after its upload: processed, failed or rejected."""
        details = video.resource["processingDetails"]
        details["processingProgress"]["timeLeftMs"] = int(self.processing_seconds * 1000)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closing.wait(), timeout=self.processing_seconds)
        if self.closing.is_set():
            return
        status = video.resource["status"]
        fault = self.fault("process")
        details.pop("processingProgress", None)
        if fault is not None and fault.kind == "reject":
            reason = fault.message or "codec"
            if reason in REJECTIONS:
                status.update(uploadStatus="rejected", rejectionReason=reason)
                details["processingStatus"] = "terminated"
            else:
                status.update(uploadStatus="failed", failureReason=reason)
                details["processingStatus"] = "failed"
            return
        status["uploadStatus"] = "processed"
        details["processingStatus"] = "succeeded"

    # -- videos.list ------------------------------------------------------------------------

    async def list_videos(self, request: web.Request) -> web.Response:
        fault = self.fault("list")
        if fault is not None and fault.kind == "hang":
            return await self.hang()
        refusal = await self.refused(request, fault)
        if refusal is not None:
            return refusal
        parts = [p for p in request.query.get("part", "").split(",") if p]
        if not parts:
            return google_error(400, "required", "Required parameter: part", "global")
        if not self.charge(LIST_COST):
            return quota_exceeded()
        wanted = set(request.query.get("id", "").split(","))
        items = []
        for video in self.videos:
            if video.id in wanted:
                shown = {k: v for k, v in video.resource.items() if k in ("kind", "etag", "id")}
                shown.update({p: video.resource[p] for p in parts if p in video.resource})
                items.append(shown)
        return web.json_response(
            {
                "kind": "youtube#videoListResponse",
                "etag": secrets.token_urlsafe(20),
                "items": items,
                "pageInfo": {"totalResults": len(items), "resultsPerPage": len(items)},
            }
        )

    # -- OAuth ------------------------------------------------------------------------------

    async def token(self, request: web.Request) -> web.Response:
        fault = self.fault("refresh")
        if fault is not None and fault.kind == "hang":
            return await self.hang()
        if fault is not None and fault.kind == "server_error":
            return web.json_response(
                {"error": "internal_failure", "error_description": "Backend Error"}, status=503
            )
        if fault is not None and fault.kind == "rate_limit":
            return web.json_response(
                {"error": "rate_limit_exceeded", "error_description": "Rate Limit Exceeded"},
                status=429,
            )
        form = {k: v[0] for k, v in parse_qs((await request.read()).decode()).items()}
        if self.client_id and (form.get("client_id"), form.get("client_secret")) != (
            self.client_id,
            self.client_secret,
        ):
            return web.json_response(
                {"error": "invalid_client", "error_description": "The OAuth client was not found."},
                status=401,
            )
        if form.get("grant_type") != "refresh_token":
            return web.json_response(
                {"error": "unsupported_grant_type", "error_description": "Invalid grant_type: "},
                status=400,
            )
        pair = None
        if fault is None:  # any other fault refuses the refresh token
            pair = self.tokens.use_refresh(form.get("refresh_token", ""), ACCESS_LIFETIME)
        if pair is None:
            return web.json_response(
                {
                    "error": "invalid_grant",
                    "error_description": "Token has been expired or revoked.",
                },
                status=400,
            )
        return web.json_response(
            {
                "access_token": pair[0],
                "expires_in": int(ACCESS_LIFETIME),
                "scope": SCOPE,
                "token_type": "Bearer",
            }
        )


Fake = YouTubeFake
