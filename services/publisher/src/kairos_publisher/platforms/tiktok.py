"""TikTok: photo and video posts through the Content Posting API (direct post: photos pulled
from their URLs, a video pulled from its URL or uploaded in chunks), and token refresh.

Credentials read: `access_token` (sent as Bearer), `refresh_token` and `expires_at` (access
tokens last two hours, so the publisher refreshes ahead of expiry), the account's `handle` (for
the post's URL), and for refreshing the app's `client_key` and `client_secret` (`extra[...]` of
the account, else `KAIROS_TIKTOK_CLIENT_KEY` / `KAIROS_TIKTOK_CLIENT_SECRET`).

A post is one photo post, made in three calls (developers.tiktok.com/doc/
content-posting-api-reference-photo-post, -query-creator-info, -get-video-status):

1. `POST /v2/post/publish/creator_info/query/`: the privacy levels the creator may post with
   today. The target's `privacy_level` (required: the api refuses a TikTok target without one)
   must be among them; otherwise the post is refused here, PERMANENT, naming the levels the
   creator has, and nothing is sent.
2. `POST /v2/post/publish/content/init/` with `media_type` PHOTO, `post_mode` DIRECT_POST,
   `post_info` (the text as `description`, the target's `title`, `privacy_level`,
   `disable_comment`, `auto_add_music`) and `source_info` (`PULL_FROM_URL`, the media URLs as
   `photo_images`, `photo_cover_index`). TikTok answers a `publish_id` and then fetches the
   photos itself. This is the point of no return: once it was sent, an answer that never came
   is UNKNOWN (TikTok has no idempotency key, and a post may be on its way).
3. `POST /v2/post/publish/status/fetch/` every `poll_interval` seconds until PUBLISH_COMPLETE
   (PUBLISHED) or FAILED (PERMANENT with TikTok's `fail_reason`: it published nothing), for at
   most `max_wait` seconds counted from the attempt's first call (60, so that with a last
   status call's HTTP timeout it ends well inside the api's 120-second attempt lease, as
   Instagram's wait does). A status answer that fails (a timeout, a 5xx, a rate limit) is only
   news not had yet: polling goes on until the bound. A post still processing at the bound is
   UNKNOWN, never retried: TikTok accepted it, and moderation "may take a few hours" (the
   status page), so sending it again could post it twice. Its `publish_id` is in the outcome's
   message, for a person to look up. A refused status call with the token (401) is UNKNOWN at
   once for the same reason: refreshing and retrying would init a second post.

platform_post_id: the first of `publicaly_available_post_id` (TikTok's spelling) and the URL
`https://www.tiktok.com/@<handle>/video/<id>`, the form gitroomhq/postiz-app's TikTok provider
records (TikTok serves a photo post at that address too). TikTok gives that id only for posts
others may see, once moderated: a post without one records its `publish_id` and the account's
profile URL.

Outcomes. Every answer is `{"data": {...}, "error": {"code", "message", "log_id"}}`; a call
succeeded when `error.code` is "ok". The code decides (error tables of the photo post and
direct post references, and tiktok-api-v2-error-handling):

- `access_token_invalid`, `scope_not_authorized`, `scope_permission_missed` (401): AUTH.
- `rate_limit_exceeded` (429): RETRYABLE, after `Retry-After` if the answer has one, else
  after a minute: TikTok's limits are per access token per minute (six inits, twenty creator
  queries, thirty status fetches).
- `internal_error` and any 5xx: RETRYABLE (an init answered with an error made nothing).
- Everything else (`invalid_params`, `privacy_level_option_mismatch`, `url_ownership_unverified`,
  `unaudited_client_can_only_post_to_private_accounts`, `spam_risk_too_many_posts`: the daily
  cap, `spam_risk_user_banned_from_posting`, `reached_active_user_cap`, ...): PERMANENT with
  TikTok's message and `log_id`.

A post with an uploaded video is a video direct post (content-posting-api-reference-direct-post,
-media-transfer-guide):

1. creator_info as above: besides the privacy level, a video longer than the creator's
   `max_video_post_duration_sec` is refused here, PERMANENT, naming it (TikTok's UX guidelines
   make apps check it), and a creator whose `comment_disabled`, `duet_disabled` or
   `stitch_disabled` is true gets that interaction off whatever the target says.
2. `POST /v2/post/publish/video/init/` with `post_info` (the post's text as `title`, at most 2,200
   UTF-16 runes, refused here when longer: a video has no `description`, so the target's
   `title` setting, a photo post's, is not sent; `privacy_level`; `disable_comment`, `disable_duet`,
   `disable_stitch`; the target's `video_cover_timestamp_ms`) and `source_info`:
   - FILE_UPLOAD, the way Kairos sends a video: the catalogue marks TikTok `uploads_video`, so
     an uploaded video reaches this module without a URL and any media store serves it (no
     domain to verify with TikTok, no store reachable from the internet). (With a URL, as a
     caller building a request may give, PULL_FROM_URL is used unless
     `KAIROS_TIKTOK_VIDEO_SOURCE=FILE_UPLOAD`: TikTok downloads the video itself from a URL
     prefix verified for the app, and the init is the call that makes the post public, so
     `stage.publishing()` comes right before it.)
   - FILE_UPLOAD in detail: `video_size`, `chunk_size` and `total_chunk_count` follow the guide's
     chunk rules: a video of at most 10,000,000 bytes (the guide's example chunk, valid whether its
     "MB" means 10^6 or 2^20 bytes) is one chunk of its whole size; a larger one goes in
     10,000,000-byte chunks, `video_size // chunk_size` of them, the last taking the trailing bytes
     (under 20 MB, within the 128 MB a last chunk may have; 4 GB is 429 chunks, within 1,000). Each
     chunk is a `PUT` to the answered `upload_url` with `Content-Type` (the video's type),
     `Content-Length` and `Content-Range: bytes <first>-<last>/<size>`, streamed from the media
     store a megabyte at a time, never the whole chunk in memory. Nothing is public until TikTok has
     the last chunk (it then processes and posts the video by itself), so the init and every chunk
     before the last are safe to redo: a lost answer there is RETRYABLE and the next attempt starts
     over with a new init. `stage.publishing()` comes right before the last chunk's PUT, which is
     this path's point of no return (its lost answer is UNKNOWN).
3. The status, polled as for photos, but through `stage.pause` (the call slot is given back
   while TikTok works) and bounded from the public call, not the attempt's start: the upload may
   take minutes, and TikTok's status page puts processing at "less than half a minute" for
   512 MB to "more than two minutes" for 4 GB, and moderation at "usually ... within one minute".
   Every `video_poll_interval` (5 s: the status endpoint takes 30 calls a minute) for at most
   `video_max_wait` (300 s) after the public call; still processing then is UNKNOWN (TikTok has
   the video and may still post it). PROCESSING_UPLOAD and PROCESSING_DOWNLOAD are waited
   through; FAILED is PERMANENT with TikTok's `fail_reason`; SEND_TO_USER_INBOX (an inbox draft,
   not a direct post) is PERMANENT: the creator must finish it in the app.

TikTok has no replies: a later part of a thread is a post of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from kairos_publisher.media import StoredMedia
from kairos_publisher.platforms.base import (
    PlatformContext,
    PublishOutcome,
    PublishRequest,
    RefreshedTokens,
    Result,
    excerpt,
    json_object,
    retry_after,
    send,
    token_answer,
    utf16_length,
)
from kairos_publisher.upload import send_publishing, send_upload

API = "https://open.tiktokapis.com"
WEB = "https://www.tiktok.com"
CREATOR_INFO = "/v2/post/publish/creator_info/query/"
CONTENT_INIT = "/v2/post/publish/content/init/"
VIDEO_INIT = "/v2/post/publish/video/init/"
STATUS = "/v2/post/publish/status/fetch/"
TOKEN = "/v2/oauth/token/"
JSON = "application/json; charset=UTF-8"
#: `photo_images` takes "up to 35 photo content URLs".
MAX_PHOTOS = 35
PRIVACY_LEVELS = frozenset(
    {"PUBLIC_TO_EVERYONE", "MUTUAL_FOLLOW_FRIENDS", "FOLLOWER_OF_CREATOR", "SELF_ONLY"}
)
AUTH_CODES = frozenset({"access_token_invalid", "scope_not_authorized", "scope_permission_missed"})
#: TikTok's rate limits count requests per access token per minute.
RATE_WINDOW = timedelta(minutes=1)
#: A video post's `title`: "The maximum length ... is 2200 in UTF-16 runes" (the direct post page).
MAX_VIDEO_TITLE = 2200
#: The size of every chunk but the last, and the largest video sent as one chunk (see above).
CHUNK_SIZE = 10_000_000
#: What a chunk's body is read from the media store in: a divisor of CHUNK_SIZE, so every
#: chunk is made of whole parts.
PART_SIZE = 1_000_000
PULL_FROM_URL = "PULL_FROM_URL"
FILE_UPLOAD = "FILE_UPLOAD"


def chunk_plan(size: int) -> tuple[int, int]:
    """(`chunk_size`, `total_chunk_count`) for a video of `size` bytes, by the guide's rules."""
    if size <= CHUNK_SIZE:
        return size, 1
    return CHUNK_SIZE, size // CHUNK_SIZE


@dataclass(frozen=True)
class CreatorInfo:
    """What creator_info says the creator may post today."""

    privacy_level_options: list[str]
    max_video_post_duration_sec: float | None = None
    comment_disabled: bool = False
    duet_disabled: bool = False
    stitch_disabled: bool = False


def post_url(handle: str, post_id: str) -> str:
    return f"{WEB}/@{handle.lstrip('@')}/video/{post_id}"


def profile_url(handle: str) -> str:
    return f"{WEB}/@{handle.lstrip('@')}"


def envelope_error(response: httpx.Response) -> dict[str, Any]:
    """The answer's `error` object, or {} when it has none."""
    error = json_object(response).get("error")
    return error if isinstance(error, dict) else {}


def succeeded(response: httpx.Response) -> bool:
    return response.is_success and envelope_error(response).get("code") == "ok"


def failure(response: httpx.Response, now: datetime | None = None) -> PublishOutcome:
    """TikTok's refusal read into an outcome (see the module docstring)."""
    status = response.status_code
    error = envelope_error(response)
    code = str(error.get("code") or "") or str(status)
    words = str(error.get("message") or "") or excerpt(response)
    log_id = error.get("log_id")
    message = f"{words} (log_id {log_id})" if log_id else words
    outcome = PublishOutcome(Result.PERMANENT, http_status=status, code=code, message=message[:500])
    if code in AUTH_CODES or status == 401:
        return replace(outcome, result=Result.AUTH)
    if code == "rate_limit_exceeded" or status == 429:
        later = retry_after(response, now) or (now or datetime.now(UTC)) + RATE_WINDOW
        return replace(outcome, result=Result.RETRYABLE, retry_not_before=later)
    if code == "internal_error" or status >= 500 or status == 408:
        return replace(outcome, result=Result.RETRYABLE, retry_not_before=retry_after(response))
    return outcome


def refused(code: str, message: str) -> PublishOutcome:
    """A post Kairos will not send as it is: nothing reached TikTok."""
    return PublishOutcome(Result.PERMANENT, code=code, message=message)


class TikTokClient:
    """Makes photo and video posts on one creator's account; refreshes its tokens."""

    #: Access tokens last two hours (`expires_in` 7200 on TikTok's "Refresh a User Access Token"
    #: page); fifteen minutes early leaves room for a refresh that fails once.
    refresh_margin = timedelta(minutes=15)

    def __init__(self, context: PlatformContext) -> None:
        self.context = context
        self.http = context.http
        self.api = context.url("tiktok", API)
        self.oauth = context.url("tiktok.oauth", API)
        #: Seconds between status fetches (thirty a minute are allowed), and the longest an
        #: attempt waits, from its first call, for a final status. Moderation "usually finishes
        #: within one minute" (the status page); a post past the bound is UNKNOWN.
        self.poll_interval = 3.0
        self.max_wait = 60.0
        #: A video post's status polls, and their bound counted from the public call.
        self.video_poll_interval = 5.0
        self.video_max_wait = 300.0
        #: FILE_UPLOAD even when a video has a URL TikTok could pull it from.
        source = context.environ.get("KAIROS_TIKTOK_VIDEO_SOURCE", "").strip().upper()
        self.always_upload = source == FILE_UPLOAD

    async def publish(self, request: PublishRequest) -> PublishOutcome:
        if request.video is not None:
            return await self.publish_video(request, request.video)
        deadline = asyncio.get_running_loop().time() + self.max_wait
        body = self.photo_post(request)
        if isinstance(body, PublishOutcome):
            return body
        privacy = body["post_info"]["privacy_level"]
        creator = await self.creator_info(request)
        if isinstance(creator, PublishOutcome):
            return creator
        mismatch = self.privacy_mismatch(privacy, creator)
        if mismatch is not None:
            return mismatch
        response = await send(
            self.http,
            self.http.build_request(
                "POST", f"{self.api}{CONTENT_INIT}", json=body, headers=self.headers(request)
            ),
        )
        if isinstance(response, PublishOutcome):
            return response  # unanswered after sending: UNKNOWN; not sent: RETRYABLE
        if not succeeded(response):
            return failure(response)
        data = json_object(response).get("data")
        publish_id = data.get("publish_id") if isinstance(data, dict) else None
        if not isinstance(publish_id, str) or not publish_id:
            return PublishOutcome(
                Result.UNKNOWN,
                http_status=response.status_code,
                code="bad_answer",
                message=f"init answered without a publish_id: {excerpt(response)}",
            )
        return await self.wait(request, publish_id, deadline)

    @staticmethod
    def privacy_mismatch(privacy: str, creator: CreatorInfo) -> PublishOutcome | None:
        allowed = creator.privacy_level_options
        if privacy in allowed:
            return None
        return refused(
            "privacy_level_option_mismatch",
            f"the TikTok account may not post with privacy_level {privacy} today; it may "
            f"with {', '.join(allowed) or 'none'}",
        )

    async def publish_video(self, request: PublishRequest, video: StoredMedia) -> PublishOutcome:
        """A video direct post (see the module docstring)."""
        settings = request.settings
        privacy = settings.get("privacy_level", "")
        if privacy not in PRIVACY_LEVELS:
            return refused(
                "privacy_level",
                f"the target's privacy_level must be one of {', '.join(sorted(PRIVACY_LEVELS))}",
            )
        if utf16_length(request.content) > MAX_VIDEO_TITLE:
            return refused(
                "title",
                f"a TikTok video's text (its title) is at most {MAX_VIDEO_TITLE} UTF-16 code "
                f"units, not {utf16_length(request.content)}",
            )
        cover = settings.get("video_cover_timestamp_ms", "")
        if cover and not (cover.isascii() and cover.isdigit()):
            return refused("video_cover_timestamp_ms", "video_cover_timestamp_ms must be digits")
        creator = await self.creator_info(request)
        if isinstance(creator, PublishOutcome):
            return creator
        mismatch = self.privacy_mismatch(privacy, creator)
        if mismatch is not None:
            return mismatch
        longest = creator.max_video_post_duration_sec
        if longest is not None and video.duration_seconds > longest:
            return refused(
                "max_video_post_duration_sec",
                f"the video is {video.duration_seconds:g} s long; this TikTok creator may post "
                f"videos of at most {longest:g} s (max_video_post_duration_sec)",
            )
        post_info: dict[str, Any] = {
            "title": request.content,
            "privacy_level": privacy,
            "disable_comment": settings.get("disable_comment") == "true"
            or creator.comment_disabled,
            "disable_duet": settings.get("disable_duet") == "true" or creator.duet_disabled,
            "disable_stitch": settings.get("disable_stitch") == "true" or creator.stitch_disabled,
        }
        if cover:
            post_info["video_cover_timestamp_ms"] = int(cover)
        if video.url and not self.always_upload:
            source: dict[str, Any] = {"source": PULL_FROM_URL, "video_url": video.url}
            outcome = await request.stage.publishing()
            if outcome is not None:
                return outcome
            init = await self.video_init(request, post_info, source, public=True)
            if isinstance(init, PublishOutcome):
                return init
            publish_id, _ = init
        else:
            chunk_size, count = chunk_plan(video.size)
            source = {
                "source": FILE_UPLOAD,
                "video_size": video.size,
                "chunk_size": chunk_size,
                "total_chunk_count": count,
            }
            init = await self.video_init(request, post_info, source, public=False)
            if isinstance(init, PublishOutcome):
                return init
            publish_id, upload_url = init
            if not upload_url:
                return PublishOutcome(
                    Result.RETRYABLE,
                    code="bad_answer",
                    message=f"FILE_UPLOAD init {publish_id} answered without an upload_url",
                )
            sent = await self.upload(request, video, upload_url, chunk_size, count)
            if sent is not None:
                return sent
        deadline = asyncio.get_running_loop().time() + self.video_max_wait
        return await self.wait(
            request,
            publish_id,
            deadline,
            interval=self.video_poll_interval,
            bound=self.video_max_wait,
        )

    async def video_init(
        self,
        request: PublishRequest,
        post_info: dict[str, Any],
        source: dict[str, Any],
        *,
        public: bool,
    ) -> tuple[str, str] | PublishOutcome:
        """(`publish_id`, `upload_url`) from `video/init`, or the outcome when it was refused or
        unanswered: UNKNOWN for a `public` init (TikTok may be pulling the video), else
        RETRYABLE (a FILE_UPLOAD init without its chunks makes nothing)."""
        body = {"post_info": post_info, "source_info": source}
        response = await send(
            self.http,
            self.http.build_request(
                "POST", f"{self.api}{VIDEO_INIT}", json=body, headers=self.headers(request)
            ),
        )
        if isinstance(response, PublishOutcome):
            if not public and response.result is Result.UNKNOWN:
                return replace(response, result=Result.RETRYABLE)
            return response
        if not succeeded(response):
            return failure(response)
        data = json_object(response).get("data")
        data = data if isinstance(data, dict) else {}
        publish_id = data.get("publish_id")
        if not isinstance(publish_id, str) or not publish_id:
            return PublishOutcome(
                Result.UNKNOWN if public else Result.RETRYABLE,
                http_status=response.status_code,
                code="bad_answer",
                message=f"video init answered without a publish_id: {excerpt(response)}",
            )
        upload_url = data.get("upload_url")
        return publish_id, upload_url if isinstance(upload_url, str) else ""

    async def upload(
        self,
        request: PublishRequest,
        video: StoredMedia,
        upload_url: str,
        chunk_size: int,
        count: int,
    ) -> PublishOutcome | None:
        """PUT the video's chunks in order; None when TikTok has them all. The stage is told
        before the last one, after which an unanswered PUT is UNKNOWN."""
        stream = self.context.media.stream(video, PART_SIZE)
        parts = aiter(stream)
        try:
            return await self.put_chunks(request, video, upload_url, chunk_size, count, parts)
        finally:
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()

    async def put_chunks(
        self,
        request: PublishRequest,
        video: StoredMedia,
        upload_url: str,
        chunk_size: int,
        count: int,
        parts: AsyncIterator[bytes],
    ) -> PublishOutcome | None:

        async def chunk_body(length: int) -> AsyncIterator[bytes]:
            taken = 0
            while taken < length:
                part = await anext(parts)
                taken += len(part)
                yield part

        for index in range(count):
            first = index * chunk_size
            last = video.size - 1 if index == count - 1 else first + chunk_size - 1
            length = last - first + 1
            put = self.http.build_request(
                "PUT",
                upload_url,
                content=chunk_body(length),
                headers={
                    "content-type": video.content_type,
                    "content-length": str(length),
                    "content-range": f"bytes {first}-{last}/{video.size}",
                },
            )
            if index < count - 1:
                response = await send_upload(self.http, put)
            else:
                response = await send_publishing(self.http, request.stage, put)
            if isinstance(response, PublishOutcome):
                return response
            if not response.is_success:
                status = response.status_code
                retryable = status == 429 or status >= 500 or status == 408
                return PublishOutcome(
                    Result.RETRYABLE if retryable else Result.PERMANENT,
                    http_status=status,
                    code="upload",
                    message=f"TikTok refused chunk {index + 1} of {count} with HTTP {status}: "
                    f"{excerpt(response, 300)}",
                    retry_not_before=retry_after(response) if retryable else None,
                )
        return None

    def photo_post(self, request: PublishRequest) -> dict[str, Any] | PublishOutcome:
        """The `content/init` body for this post, or why it cannot be sent (the api checks the
        same rules at create time; these guard a post edited around them)."""
        photos = request.media_urls
        if not 1 <= len(photos) <= MAX_PHOTOS:
            return refused(
                "media", f"a TikTok photo post takes 1 to {MAX_PHOTOS} photos, not {len(photos)}"
            )
        settings = request.settings
        privacy = settings.get("privacy_level", "")
        if privacy not in PRIVACY_LEVELS:
            return refused(
                "privacy_level",
                f"the target's privacy_level must be one of {', '.join(sorted(PRIVACY_LEVELS))}",
            )
        cover = settings.get("photo_cover_index") or "0"
        if not (cover.isascii() and cover.isdigit()) or int(cover) >= len(photos):
            return refused(
                "photo_cover_index",
                f"photo_cover_index {cover} is not one of the post's {len(photos)} photos",
            )
        post_info: dict[str, Any] = {
            "privacy_level": privacy,
            "disable_comment": settings.get("disable_comment") == "true",
            "auto_add_music": settings.get("auto_add_music") == "true",
        }
        if request.content:
            post_info["description"] = request.content
        if settings.get("title"):
            post_info["title"] = settings["title"]
        return {
            "media_type": "PHOTO",
            "post_mode": "DIRECT_POST",
            "post_info": post_info,
            "source_info": {
                "source": "PULL_FROM_URL",
                "photo_images": list(photos),
                "photo_cover_index": int(cover),
            },
        }

    def headers(self, request: PublishRequest) -> dict[str, str]:
        return {"authorization": f"Bearer {request.access_token}", "content-type": JSON}

    async def creator_info(self, request: PublishRequest) -> CreatorInfo | PublishOutcome:
        """What the creator may post today, or the outcome when it could not be had. Nothing
        is posted by this call, so an unanswered one is only retried."""
        response = await send(
            self.http,
            self.http.build_request(
                "POST", f"{self.api}{CREATOR_INFO}", headers=self.headers(request)
            ),
        )
        if isinstance(response, PublishOutcome):
            if response.result is Result.UNKNOWN:
                return replace(response, result=Result.RETRYABLE)
            return response
        if not succeeded(response):
            return failure(response)
        data = json_object(response).get("data")
        options = data.get("privacy_level_options") if isinstance(data, dict) else None
        if not isinstance(options, list):
            return PublishOutcome(
                Result.RETRYABLE,
                http_status=response.status_code,
                code="bad_answer",
                message=f"creator_info without privacy_level_options: {excerpt(response)}",
            )
        longest = data.get("max_video_post_duration_sec") if isinstance(data, dict) else None
        flags = data if isinstance(data, dict) else {}
        return CreatorInfo(
            [str(option) for option in options],
            float(longest)
            if isinstance(longest, int | float) and not isinstance(longest, bool)
            else None,
            comment_disabled=flags.get("comment_disabled") is True,
            duet_disabled=flags.get("duet_disabled") is True,
            stitch_disabled=flags.get("stitch_disabled") is True,
        )

    async def wait(
        self,
        request: PublishRequest,
        publish_id: str,
        deadline: float,
        *,
        interval: float | None = None,
        bound: float | None = None,
    ) -> PublishOutcome:
        """Poll the publish every `interval` seconds (the stage pausing between) until it is
        final or `deadline` (the loop's clock) has passed: UNKNOWN then."""
        interval = self.poll_interval if interval is None else interval
        bound = self.max_wait if bound is None else bound
        loop = asyncio.get_running_loop()
        last = "no status answer yet"
        while True:
            response = await send(
                self.http,
                self.http.build_request(
                    "POST",
                    f"{self.api}{STATUS}",
                    json={"publish_id": publish_id},
                    headers=self.headers(request),
                ),
            )
            if isinstance(response, PublishOutcome):
                last = response.message
            elif not succeeded(response):
                refusal = failure(response)
                last = f"status refused: {refusal.code} {refusal.message}"
                if refusal.result is Result.AUTH:
                    return self.lost(publish_id, last)
            else:
                data = json_object(response).get("data")
                data = data if isinstance(data, dict) else {}
                status = str(data.get("status") or "")
                if status == "PUBLISH_COMPLETE":
                    return self.published(request, publish_id, data, response.status_code)
                if status == "FAILED":
                    reason = str(data.get("fail_reason") or "unknown")
                    return PublishOutcome(
                        Result.PERMANENT,
                        http_status=response.status_code,
                        code=reason,
                        message=f"TikTok did not publish {publish_id}: {reason}",
                    )
                if status == "SEND_TO_USER_INBOX":
                    return PublishOutcome(
                        Result.PERMANENT,
                        http_status=response.status_code,
                        code="sent_to_user_inbox",
                        message=f"TikTok sent {publish_id} to the creator's inbox instead of "
                        "posting it: the creator must finish the post in the TikTok app",
                    )
                last = f"still {status or 'without a status'}"
            if loop.time() + interval > deadline:
                return self.lost(publish_id, f"{last} after {bound:g} s")
            await request.stage.pause(interval)

    @staticmethod
    def lost(publish_id: str, why: str) -> PublishOutcome:
        return PublishOutcome(
            Result.UNKNOWN,
            code="publish_pending",
            message=f"TikTok accepted publish {publish_id} but its outcome is not known: {why}"[
                :500
            ],
        )

    @staticmethod
    def published(
        request: PublishRequest, publish_id: str, data: dict[str, Any], http_status: int
    ) -> PublishOutcome:
        ids = data.get("publicaly_available_post_id")
        if isinstance(ids, list) and ids:
            post_id = str(ids[0])
            return PublishOutcome(
                Result.PUBLISHED,
                platform_post_id=post_id,
                url=post_url(request.handle, post_id),
                http_status=http_status,
            )
        return PublishOutcome(
            Result.PUBLISHED,
            platform_post_id=publish_id,
            url=profile_url(request.handle),
            http_status=http_status,
        )

    async def refresh(self, request: PublishRequest) -> RefreshedTokens | str | PublishOutcome:
        """Trade the refresh token at `/v2/oauth/token/`. TikTok rotates refresh tokens: the
        answer's one replaces the old, which "stops working once a new one is issued"."""
        if not request.refresh_token:
            return "no TikTok refresh token; the account must be connected again"
        client_key = self.context.app_secret(request, "tiktok", "client_key")
        client_secret = self.context.app_secret(request, "tiktok", "client_secret")
        if not client_key or not client_secret:
            return "no TikTok client_key/client_secret to refresh with"
        response = await send(
            self.http,
            self.http.build_request(
                "POST",
                f"{self.oauth}{TOKEN}",
                data={
                    "client_key": client_key,
                    "client_secret": client_secret,
                    "grant_type": "refresh_token",
                    "refresh_token": request.refresh_token,
                },
            ),
        )
        return token_answer(response, "TikTok", request.refresh_token)


def create(context: PlatformContext) -> TikTokClient:
    return TikTokClient(context)
