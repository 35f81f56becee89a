"""A fake of TikTok's Content Posting API for photo posts (direct post, photos pulled from URLs),
and OAuth token refresh.

Sources: TikTok for Developers' pages (developers.tiktok.com/doc/...):
content-posting-api-reference-photo-post ("the photo page"), content-posting-api-reference-
direct-post, content-posting-api-get-started, content-posting-api-reference-query-creator-info,
content-posting-api-reference-get-video-status ("the status page"), tiktok-api-v2-error-handling
and oauth-refresh-a-user-access-token (with oauth-user-access-token-management), read in copies
fetched on 2026-09-11 and in the pages' current text (November 2026); and gitroomhq/postiz-app's
TikTok provider (libraries/nestjs-libraries/src/integrations/social/tiktok.provider.ts), which
reads the `fail_reason`s named below from real status answers.

Every answer is the envelope `{"data": {...}, "error": {"code": "ok" | "...", "message": "...",
"log_id": "..."}}` (the error-handling page's error struct; `log_id` in its examples' form, a
timestamp and hex digits), and "ok" is the code of success.

Routes (one host, as open.tiktokapis.com):
- `POST /v2/post/publish/creator_info/query/`, bearer token, no body: the creator's
  `creator_avatar_url`, `creator_username`, `creator_nickname`, `privacy_level_options`,
  `comment_disabled`, `duet_disabled`, `stitch_disabled`, `max_video_post_duration_sec` (the
  get-started page's example answer). `privacy_level_options` are those of a public account
  (PUBLIC_TO_EVERYONE, MUTUAL_FOLLOW_FRIENDS, SELF_ONLY) unless a test sets others.
- `POST /v2/post/publish/content/init/`, bearer token, JSON: `media_type` PHOTO, `post_mode`
  DIRECT_POST, `post_info` (`title` at most 90 and `description` at most 4,000 UTF-16 code
  units, `privacy_level` among the creator's options, `disable_comment`, `auto_add_music`) and
  `source_info` (`source` PULL_FROM_URL, 1 to 35 `photo_images`, `photo_cover_index` among
  them), all from the photo page. Answered 200 with `{"publish_id": "p_pub_url~v2.<digits>"}`
  (the photo page's example). Refusals from the photo page's error table: 400
  `privacy_level_option_mismatch`; 403 `url_ownership_unverified` for a photo outside
  `verified_prefixes` (when set); 403 `unaudited_client_can_only_post_to_private_accounts` when
  the app is not `audited` and the account not `private_account`; 401 `access_token_invalid`;
  429 `rate_limit_exceeded`; 5xx `internal_error`. Any other malformed body is 400
  `invalid_params` (the error-handling page's spelling; the reference tables write
  `invalid_param`) with this fake's own message. `MEDIA_UPLOAD` (drafts in the creator's inbox)
  is refused the same way: Kairos does not use it, so this fake does not make it.
- `POST /v2/post/publish/status/fetch/`, bearer token, JSON `{"publish_id"}`: `status`
  (PROCESSING_DOWNLOAD while the photos are pulled, then PUBLISH_COMPLETE or FAILED with its
  `fail_reason`) and `publicaly_available_post_id` (TikTok's spelling; numbers, as public
  clients' tests write it), the status page's example shape. After init the fake pulls every
  photo itself, `processing_seconds` later: one it cannot fetch FAILS the post with
  `photo_pull_failed`, one that is not JPEG or WebP with `file_format_check_failed` (the photo
  page's examples are WebP; TikTok refuses PNG). TikTok gives a post's id "only after
  moderation" and only for posts others may see, so a post that is not PUBLIC_TO_EVERYONE
  completes with no id (this fake's reading of the status page). An unknown `publish_id` is 400
  `invalid_params` (the fake's own). Byte counts are left out: the fake never measures photos.
- `POST /v2/post/publish/video/init/`, bearer token, JSON (the direct post page, "Initialize
  the posting request"): `post_info` (`title`, the post's text, at most 2,200 UTF-16 runes;
  `privacy_level` among the creator's options; booleans `disable_duet`, `disable_comment`,
  `disable_stitch`; `video_cover_timestamp_ms` an integer) and `source_info`. With `source`
  PULL_FROM_URL and a `video_url` (under `verified_prefixes` when set, else 403
  `url_ownership_unverified`) TikTok downloads the video itself: the status is
  PROCESSING_DOWNLOAD until this fake has read it all. With FILE_UPLOAD, `video_size`,
  `chunk_size` and `total_chunk_count` must follow the media transfer guide's chunk rules (a
  video under 5 MB is one chunk of its whole size; otherwise chunks of 5 to 64 MB, at most 1,000,
  `total_chunk_count` = `video_size` // `chunk_size`, the last chunk taking the trailing bytes,
  up to 128 MB; more than 64 MB takes several chunks), else 400 `invalid_params` "The chunk size
  is invalid" (the body recorded in DayMoonDevelopment/post-for-me#327 and
  andreaolivato/TikTok-LoginKit-PHP#11). The guide does not say whether its "MB" is 10^6 or 2^20
  bytes, so this fake reads each bound the stricter way (a chunk of at least 5 x 2^20 and at most
  64 x 10^6 bytes, a last chunk of at most 128 x 10^6): the guide's example, 10,000,000-byte
  chunks, passes either reading. A video over 4 GB is refused the same way. Answered with
  `publish_id` (`v_pub_url~v2.<digits>` or `v_pub_file~v2.<digits>`, the forms of the pages'
  examples) and, for FILE_UPLOAD, an `upload_url` on this fake
  (`/video/?upload_id=...&upload_token=...`, the examples' shape),
  valid for an hour ("The upload_url is valid for one hour after issuance"). Refusals as for
  photos, from the direct post page's error table.
- `PUT /video/?upload_id&upload_token`: one chunk, in order, with `Content-Type` video/mp4,
  video/quicktime or video/webm, and `Content-Range: bytes <first>-<last>/<video_size>` that
  must be the next chunk's exact range and match the body's length (the media transfer guide's
  HTTP schema). Answered 206 for a chunk before the last and 201 once the last is in (the guide's
  statuses, as elizaOS/eliza#23972's review of a client against the guide quotes them), with no
  body. A missing or wrong `Content-Range` is 416 with no body (the answer recorded in a public
  client's fix note for a PUT without one); any other bad chunk is 400, an unknown or expired
  upload 404 (this fake's own choices: TikTok documents neither). While chunks arrive the status
  is PROCESSING_UPLOAD with `uploaded_bytes`.
- After the whole video is in (uploaded or downloaded), `processing_seconds` later: a file that
  is neither MP4/QuickTime (`ftyp` at byte 4) nor WebM (EBML) FAILS with
  `file_format_check_failed`, a download that fails with `video_pull_failed` (the status page's
  fail_reason table); else PUBLISH_COMPLETE, with the post's id for a PUBLIC_TO_EVERYONE post.
  The post keeps the video's size and SHA-256 (`video_size`, `video_sha256`), never the bytes;
  the fake cannot measure duration, frame rate or picture size.
- `POST /v2/oauth/token/`, form `client_key`, `client_secret`, `grant_type=refresh_token`,
  `refresh_token` (the refresh page). Answered with `open_id`, `scope`, `access_token`,
  `expires_in` (7,200: two hours), `refresh_token`, `refresh_expires_in` (180 days) and
  `token_type` "Bearer". Refresh tokens rotate ("The previous refresh token stops working once
  a new one is issued"). The refusal's body is not on the pages read: this fake answers 400
  `{"error", "error_description", "log_id"}` (OAuth's error form, RFC 6749 §5.2, with TikTok's
  log id), its own choice.

Fault operations: "creator_info", "create" (the photo or video init), "upload" (a chunk's PUT),
"status", "process" (the pulling or processing after init or the last chunk) and "refresh".
`rate_limit` answers the 429 (TikTok documents no wait header, so none is sent and a fault's
`seconds` is unused), `server_error` the 500 `internal_error`, `reject` the error whose code is the
fault's message (`spam_risk_too_many_posts` when none is given) with its status from the photo
page's table, `expire_token` expires the presented token and answers 401 `access_token_invalid`,
`hang` answers nothing (on "create" after the publish was made, so the post goes out; on "upload"
after the chunk was taken). On "upload", `server_error` answers 500 with no body and the chunk is
not taken. On "process", `reject` FAILS the post with the fault's message as `fail_reason`. On
"refresh", `reject` and `expire_token` refuse the refresh token.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import parse_qs

import aiohttp
from aiohttp import web

from kairos_fakes._graph import fetch_type
from kairos_fakes.base import FakeServer, Fault, Tokens, bearer, new_id

ACCESS_LIFETIME = 2 * 3600.0
REFRESH_LIFETIME = 180 * 24 * 3600
SCOPE = "user.info.basic,video.publish"
#: The photo page's limits, in UTF-16 code units ("UTF-16 runes").
MAX_TITLE = 90
MAX_DESCRIPTION = 4000
MAX_PHOTOS = 35
#: Error codes by name: HTTP status and message, from the photo page's error table (the token's
#: message from the error-handling page).
ERRORS: dict[str, tuple[int, str]] = {
    "invalid_params": (400, "One or more fields in request is invalid."),
    "privacy_level_option_mismatch": (
        400,
        "privacy_level is either unspecified or not among the options from the "
        "privacy_level_options returned in /publish/creator_info/query/ API.",
    ),
    "spam_risk_too_many_posts": (
        403,
        "The daily post cap from API is reached for the current user",
    ),
    "spam_risk_user_banned_from_posting": (403, "The user is banned from making new posts"),
    "reached_active_user_cap": (
        403,
        "The daily quota for active publishing users from your client is reached",
    ),
    "unaudited_client_can_only_post_to_private_accounts": (
        403,
        "Unaudited clients can only post to private account. The publish attempt will be "
        "blocked when calling /publish/content/init/.",
    ),
    "url_ownership_unverified": (
        403,
        "To use PULL_FROM_URL as the content transfer method, developer must verify the "
        "ownership of the URL prefix or domain.",
    ),
    "access_token_invalid": (401, "The access token is invalid or not found in the request."),
    "scope_not_authorized": (
        401,
        "The access_token does not bear user's grant on video.publish or video.upload scope",
    ),
    "rate_limit_exceeded": (429, "Your request is blocked due to exceeding the API rate limit"),
    "internal_error": (500, "TikTok server or network error. Try again later."),
}


#: The media transfer guide's chunk rules, each bound read the stricter way (see above).
MIN_CHUNK = 5 * 2**20
MAX_CHUNK = 64 * 10**6
MAX_LAST_CHUNK = 128 * 10**6
MAX_CHUNKS = 1000
#: "Maximum of 4GB" (the guide's video restrictions).
MAX_VIDEO_BYTES = 4 * 2**30
#: The direct post page: `title` "The maximum length ... is 2200 in UTF-16 runes".
MAX_VIDEO_TITLE = 2200
VIDEO_TYPES = frozenset({"video/mp4", "video/quicktime", "video/webm"})
#: "The upload_url is valid for one hour after issuance."
UPLOAD_LIFETIME = 3600.0
CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


def log_id() -> str:
    """A request id in the form of the pages' examples: a timestamp, then hex digits."""
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    return stamp + secrets.token_hex(10).upper()


def answer(data: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(
        {"data": data, "error": {"code": "ok", "message": "", "log_id": log_id()}}, status=status
    )


def error(code: str, message: str = "") -> web.Response:
    """TikTok's error envelope for `code`, with its status from the error table."""
    status, words = ERRORS.get(code, (403, code))
    return web.json_response(
        {"data": {}, "error": {"code": code, "message": message or words, "log_id": log_id()}},
        status=status,
    )


def invalid(message: str) -> web.Response:
    return error("invalid_params", message)


def oauth_error(kind: str, description: str) -> web.Response:
    return web.json_response(
        {"error": kind, "error_description": description, "log_id": log_id()}, status=400
    )


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def chunks_invalid(size: Any, chunk: Any, count: Any) -> bool:
    """Whether `video_size`, `chunk_size` and `total_chunk_count` break the guide's chunk rules."""
    numbers = (size, chunk, count)
    if not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in numbers):
        return True
    if size > MAX_VIDEO_BYTES or count != size // chunk or not 1 <= count <= MAX_CHUNKS:
        return True
    if size < MIN_CHUNK:
        return bool(chunk != size)
    last = size - chunk * (count - 1)
    return not MIN_CHUNK <= chunk <= MAX_CHUNK or last > MAX_LAST_CHUNK


def video_format(head: bytes) -> str:
    """ "mp4" (MP4 or QuickTime: an `ftyp` box first), "webm" (EBML), or "" for anything else."""
    if head[4:8] == b"ftyp":
        return "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm"
    return ""


@dataclass
class Upload:
    """A FILE_UPLOAD video's chunks as they arrive at its upload URL."""

    size: int
    chunk_size: int
    chunk_count: int
    token: str
    expires_at: float
    received: int = 0
    chunks: int = 0
    digest: Any = field(default_factory=hashlib.sha256)
    head: bytes = b""

    def next_range(self) -> tuple[int, int]:
        """The first and last byte the next chunk must carry."""
        first = self.chunks * self.chunk_size
        last = self.size - 1 if self.chunks == self.chunk_count - 1 else first + self.chunk_size - 1
        return first, last


@dataclass
class Publish:
    """One init's progress, as the status endpoint shows it."""

    publish_id: str
    request: dict[str, Any]
    status: str = "PROCESSING_DOWNLOAD"
    fail_reason: str = ""
    post_ids: list[int] = field(default_factory=list)
    #: A FILE_UPLOAD video's upload, until its last chunk is in.
    upload: Upload | None = None
    uploaded_bytes: int = 0
    downloaded_bytes: int = 0


class TikTokFake(FakeServer):
    name: ClassVar[str] = "tiktok"
    default_port: ClassVar[int] = 9112

    def __init__(self) -> None:
        super().__init__()
        self.tokens = Tokens(prefix="act", rotating=True)
        #: Photo posts TikTok made, as this fake keeps them.
        self.posts: list[dict[str, Any]] = []
        self.publishes: dict[str, Publish] = {}
        self.privacy_level_options = ["PUBLIC_TO_EVERYONE", "MUTUAL_FOLLOW_FRIENDS", "SELF_ONLY"]
        self.username = "kairos"
        #: An unaudited app may post only to private accounts, and only as SELF_ONLY.
        self.audited = True
        self.private_account = False
        #: URL prefixes the app verified for PULL_FROM_URL; None takes any URL (`make dev`).
        self.verified_prefixes: list[str] | None = None
        #: How long after init the photos are pulled (a post stays PROCESSING_DOWNLOAD), and
        #: after a video is in before it is published.
        self.processing_seconds = 0.0
        #: What creator_info says of the creator's interaction settings and longest video.
        self.comment_disabled = False
        self.duet_disabled = False
        self.stitch_disabled = True
        self.max_video_post_duration_sec = 300
        #: FILE_UPLOAD video publishes by their `upload_id`.
        self.uploads: dict[str, Publish] = {}
        #: When set, the token endpoint checks the app's credentials against these.
        self.client_key = ""
        self.client_secret = ""
        self.work: set[asyncio.Task[None]] = set()

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v2/post/publish/creator_info/query/", self.creator_info)
        router.add_post("/v2/post/publish/content/init/", self.init)
        router.add_post("/v2/post/publish/video/init/", self.video_init)
        router.add_put("/video/", self.upload_chunk)
        router.add_post("/v2/post/publish/status/fetch/", self.status)
        router.add_post("/v2/oauth/token/", self.token)

    async def stop(self) -> None:
        for task in list(self.work):
            task.cancel()
        await super().stop()

    def issue(self) -> tuple[str, str]:
        """A new (access, refresh) pair as TikTok's authorization-code grant gives it."""
        return self.tokens.issue(ACCESS_LIFETIME)

    async def refused(self, request: web.Request, fault: Fault | None) -> web.Response | None:
        """The answer for a queued fault or a token TikTok would not take; None to go on."""
        if fault is not None:
            if fault.kind == "hang":
                return await self.hang()
            if fault.kind == "rate_limit":
                return error("rate_limit_exceeded")
            if fault.kind == "server_error":
                return error("internal_error")
            if fault.kind == "expire_token":
                self.tokens.expire(bearer(request))
                return error("access_token_invalid")
            return error(fault.message or "spam_risk_too_many_posts")
        if self.tokens.state(bearer(request)) != "ok":
            return error("access_token_invalid")
        return None

    def background(self, work: Any) -> None:
        """Run `work` (a coroutine) in the background, cancelled when the fake stops."""
        task: asyncio.Task[None] = asyncio.create_task(work)
        self.work.add(task)
        task.add_done_callback(self.work.discard)

    async def creator_info(self, request: web.Request) -> web.Response:
        refusal = await self.refused(request, self.fault("creator_info"))
        if refusal is not None:
            return refusal
        return answer(
            {
                "creator_avatar_url": "https://p16-sign-va.tiktokcdn.com/obj/kairos-avatar.jpeg",
                "creator_username": self.username,
                "creator_nickname": "Kairos",
                "privacy_level_options": list(self.privacy_level_options),
                "comment_disabled": self.comment_disabled,
                "duet_disabled": self.duet_disabled,
                "stitch_disabled": self.stitch_disabled,
                "max_video_post_duration_sec": self.max_video_post_duration_sec,
            }
        )

    async def init(self, request: web.Request) -> web.Response:
        fault = self.fault("create")
        hang = fault is not None and fault.kind == "hang"
        refusal = await self.refused(request, None if hang else fault)
        if refusal is not None:
            return refusal
        try:
            data = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            return invalid("the body is not JSON")
        if not isinstance(data, dict):
            return invalid("the body must be a JSON object")
        problem = self.check(data)
        if problem is not None:
            return problem
        publish = Publish(f"p_pub_url~v2.{new_id(19)}", data)
        self.publishes[publish.publish_id] = publish
        self.background(self.process(publish))
        if hang:
            return await self.hang()
        return answer({"publish_id": publish.publish_id})

    def check(self, data: dict[str, Any]) -> web.Response | None:
        """TikTok's refusal of this photo post at init, or None when it is accepted."""
        if data.get("media_type") != "PHOTO":
            return invalid("media_type: only PHOTO is allowed")
        if data.get("post_mode") != "DIRECT_POST":
            return invalid("post_mode: this fake makes DIRECT_POST only")
        info, source = data.get("post_info"), data.get("source_info")
        if not isinstance(info, dict) or not isinstance(source, dict):
            return invalid("post_info and source_info are required")
        for name, limit in (("title", MAX_TITLE), ("description", MAX_DESCRIPTION)):
            value = info.get(name, "")
            if not isinstance(value, str) or utf16_length(value) > limit:
                return invalid(f"post_info.{name}: at most {limit} UTF-16 runes")
        for name in ("disable_comment", "auto_add_music"):
            if not isinstance(info.get(name, False), bool):
                return invalid(f"post_info.{name} must be a bool")
        if source.get("source") != "PULL_FROM_URL":
            return invalid("source_info.source: only PULL_FROM_URL is allowed")
        photos = source.get("photo_images")
        if (
            not isinstance(photos, list)
            or not 1 <= len(photos) <= MAX_PHOTOS
            or not all(isinstance(url, str) and url for url in photos)
        ):
            return invalid(f"source_info.photo_images: 1 to {MAX_PHOTOS} URLs")
        cover = source.get("photo_cover_index")
        if not isinstance(cover, int) or isinstance(cover, bool) or not 0 <= cover < len(photos):
            return invalid("source_info.photo_cover_index must be the index of one of the photos")
        if info.get("privacy_level") not in self.privacy_level_options:
            return error("privacy_level_option_mismatch")
        if self.verified_prefixes is not None and not all(
            url.startswith(tuple(self.verified_prefixes)) for url in photos
        ):
            return error("url_ownership_unverified")
        if not self.audited and not self.private_account:
            return error("unaudited_client_can_only_post_to_private_accounts")
        return None

    async def video_init(self, request: web.Request) -> web.Response:
        fault = self.fault("create")
        hang = fault is not None and fault.kind == "hang"
        refusal = await self.refused(request, None if hang else fault)
        if refusal is not None:
            return refusal
        try:
            data = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            return invalid("the body is not JSON")
        if not isinstance(data, dict):
            return invalid("the body must be a JSON object")
        problem = self.check_video(data)
        if problem is not None:
            return problem
        source = data["source_info"]
        answered: dict[str, Any] = {}
        if source["source"] == "PULL_FROM_URL":
            publish = Publish(f"v_pub_url~v2.{new_id(19)}", data)
            self.background(self.pull_video(publish, source["video_url"]))
        else:
            publish = Publish(f"v_pub_file~v2.{new_id(19)}", data, status="PROCESSING_UPLOAD")
            upload = Upload(
                source["video_size"],
                source["chunk_size"],
                source["total_chunk_count"],
                secrets.token_urlsafe(12),
                time.monotonic() + UPLOAD_LIFETIME,
            )
            publish.upload = upload
            upload_id = new_id(19)
            self.uploads[upload_id] = publish
            answered["upload_url"] = (
                f"{self.url}/video/?upload_id={upload_id}&upload_token={upload.token}"
            )
        self.publishes[publish.publish_id] = publish
        if hang:
            return await self.hang()
        return answer({"publish_id": publish.publish_id, **answered})

    def check_video(self, data: dict[str, Any]) -> web.Response | None:
        """TikTok's refusal of this video direct post at init, or None when it is accepted."""
        info, source = data.get("post_info"), data.get("source_info")
        if not isinstance(info, dict) or not isinstance(source, dict):
            return invalid("post_info and source_info are required")
        title = info.get("title", "")
        if not isinstance(title, str) or utf16_length(title) > MAX_VIDEO_TITLE:
            return invalid(f"post_info.title: at most {MAX_VIDEO_TITLE} UTF-16 runes")
        for name in ("disable_duet", "disable_comment", "disable_stitch"):
            if not isinstance(info.get(name, False), bool):
                return invalid(f"post_info.{name} must be a bool")
        cover = info.get("video_cover_timestamp_ms", 0)
        if not isinstance(cover, int) or isinstance(cover, bool) or cover < 0:
            return invalid("post_info.video_cover_timestamp_ms must be a whole number")
        kind = source.get("source")
        if kind == "PULL_FROM_URL":
            url = source.get("video_url")
            if not isinstance(url, str) or not url:
                return invalid("source_info.video_url is required for PULL_FROM_URL")
        elif kind == "FILE_UPLOAD":
            size, chunk = source.get("video_size"), source.get("chunk_size")
            if chunks_invalid(size, chunk, source.get("total_chunk_count")):
                return invalid("The chunk size is invalid")
        else:
            return invalid("source_info.source must be FILE_UPLOAD or PULL_FROM_URL")
        if info.get("privacy_level") not in self.privacy_level_options:
            return error("privacy_level_option_mismatch")
        if (
            kind == "PULL_FROM_URL"
            and self.verified_prefixes is not None
            and not str(source["video_url"]).startswith(tuple(self.verified_prefixes))
        ):
            return error("url_ownership_unverified")
        if not self.audited and not self.private_account:
            return error("unaudited_client_can_only_post_to_private_accounts")
        return None

    async def upload_chunk(self, request: web.Request) -> web.Response:
        fault = self.fault("upload")
        if fault is not None and fault.kind == "server_error":
            return web.Response(status=500)
        publish = self.uploads.get(request.query.get("upload_id", ""))
        upload = publish.upload if publish is not None else None
        if (
            publish is None
            or upload is None
            or not secrets.compare_digest(request.query.get("upload_token", ""), upload.token)
            or time.monotonic() > upload.expires_at
        ):
            return web.Response(status=404)
        if request.content_type not in VIDEO_TYPES:
            return web.Response(status=400)
        found = CONTENT_RANGE.fullmatch(request.headers.get("content-range", ""))
        body = await request.read()
        first, last = upload.next_range()
        if (
            found is None
            or (int(found[1]), int(found[2]), int(found[3])) != (first, last, upload.size)
            or len(body) != last - first + 1
        ):
            return web.Response(status=416)
        upload.digest.update(body)
        upload.head = upload.head or body[:16]
        upload.received += len(body)
        upload.chunks += 1
        publish.uploaded_bytes = upload.received
        done = upload.chunks == upload.chunk_count
        if done:
            publish.upload = None
            self.background(
                self.finish_video(publish, upload.size, upload.digest.hexdigest(), upload.head)
            )
        if fault is not None and fault.kind == "hang":
            return await self.hang()
        return web.Response(status=201 if done else 206)

    async def pull_video(self, publish: Publish, url: str) -> None:
        """Download the video as TikTok does for PULL_FROM_URL, counting and hashing it."""
        digest = hashlib.sha256()
        head = b""
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session,
                session.get(url) as response,
            ):
                if response.status != 200:
                    raise ValueError(f"GET answered {response.status}")
                async for chunk in response.content.iter_chunked(1 << 20):
                    digest.update(chunk)
                    head = head or chunk[:16]
                    publish.downloaded_bytes += len(chunk)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            publish.status, publish.fail_reason = "FAILED", "video_pull_failed"
            return
        await self.finish_video(publish, publish.downloaded_bytes, digest.hexdigest(), head)

    async def finish_video(self, publish: Publish, size: int, sha256: str, head: bytes) -> None:
        """Process a video that is wholly in, then publish it or fail it."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closing.wait(), timeout=self.processing_seconds)
        if self.closing.is_set():
            return
        fault = self.fault("process")
        if fault is not None and fault.kind == "reject":
            publish.status, publish.fail_reason = "FAILED", fault.message or "internal"
            return
        if not video_format(head):
            publish.status, publish.fail_reason = "FAILED", "file_format_check_failed"
            return
        info: dict[str, Any] = publish.request["post_info"]
        post_id = int(new_id(19))
        self.posts.append(
            {
                "id": str(post_id),
                "publish_id": publish.publish_id,
                "username": self.username,
                "title": info.get("title", ""),
                "privacy_level": info["privacy_level"],
                "disable_comment": info.get("disable_comment", False),
                "disable_duet": info.get("disable_duet", False),
                "disable_stitch": info.get("disable_stitch", False),
                "video_cover_timestamp_ms": info.get("video_cover_timestamp_ms"),
                "source": publish.request["source_info"]["source"],
                "video_size": size,
                "video_sha256": sha256,
            }
        )
        if info["privacy_level"] == "PUBLIC_TO_EVERYONE":
            publish.post_ids = [post_id]
        publish.status = "PUBLISH_COMPLETE"

    async def process(self, publish: Publish) -> None:
        """Pull the photos as TikTok does after init, then publish or fail the post."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closing.wait(), timeout=self.processing_seconds)
        if self.closing.is_set():
            return
        fault = self.fault("process")
        if fault is not None and fault.kind == "reject":
            publish.status, publish.fail_reason = "FAILED", fault.message or "internal"
            return
        photos: list[str] = publish.request["source_info"]["photo_images"]
        for url in photos:
            kind = await fetch_type(url)
            if kind not in ("jpeg", "webp"):
                publish.status = "FAILED"
                publish.fail_reason = "file_format_check_failed" if kind else "photo_pull_failed"
                return
        info: dict[str, Any] = publish.request["post_info"]
        post_id = int(new_id(19))
        self.posts.append(
            {
                "id": str(post_id),
                "publish_id": publish.publish_id,
                "username": self.username,
                "title": info.get("title", ""),
                "description": info.get("description", ""),
                "privacy_level": info["privacy_level"],
                "disable_comment": info.get("disable_comment", False),
                "auto_add_music": info.get("auto_add_music", False),
                "photo_images": photos,
                "photo_cover_index": publish.request["source_info"]["photo_cover_index"],
            }
        )
        if info["privacy_level"] == "PUBLIC_TO_EVERYONE":
            publish.post_ids = [post_id]
        publish.status = "PUBLISH_COMPLETE"

    async def status(self, request: web.Request) -> web.Response:
        refusal = await self.refused(request, self.fault("status"))
        if refusal is not None:
            return refusal
        try:
            data = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            return invalid("the body is not JSON")
        wanted = data.get("publish_id") if isinstance(data, dict) else None
        publish = self.publishes.get(wanted) if isinstance(wanted, str) else None
        if publish is None:
            return invalid("publish_id: no such publish")
        shown: dict[str, Any] = {
            "status": publish.status,
            "publicaly_available_post_id": list(publish.post_ids),
        }
        if publish.fail_reason:
            shown["fail_reason"] = publish.fail_reason
        if publish.uploaded_bytes:
            shown["uploaded_bytes"] = publish.uploaded_bytes
        if publish.downloaded_bytes:
            shown["downloaded_bytes"] = publish.downloaded_bytes
        return answer(shown)

    async def token(self, request: web.Request) -> web.Response:
        fault = self.fault("refresh")
        if fault is not None and fault.kind == "hang":
            return await self.hang()
        if fault is not None and fault.kind == "rate_limit":
            return error("rate_limit_exceeded")
        if fault is not None and fault.kind == "server_error":
            return error("internal_error")
        form = {k: v[0] for k, v in parse_qs((await request.read()).decode()).items()}
        if self.client_key and (
            form.get("client_key"),
            form.get("client_secret"),
        ) != (self.client_key, self.client_secret):
            return oauth_error("invalid_client", "Client key or secret is incorrect.")
        if form.get("grant_type") != "refresh_token":
            return oauth_error("unsupported_grant_type", "grant_type must be refresh_token here")
        pair = None
        if fault is None:  # any other fault refuses the refresh token
            pair = self.tokens.use_refresh(form.get("refresh_token", ""), ACCESS_LIFETIME)
        if pair is None:
            return oauth_error("invalid_grant", "Refresh token is invalid or expired.")
        access, refresh = pair
        return web.json_response(
            {
                "open_id": "723f24d7-e717-40f8-a2b6-cb8464cd23b4",
                "scope": SCOPE,
                "access_token": access,
                "expires_in": int(ACCESS_LIFETIME),
                "refresh_token": refresh,
                "refresh_expires_in": REFRESH_LIFETIME,
                "token_type": "Bearer",
            }
        )


Fake = TikTokFake
