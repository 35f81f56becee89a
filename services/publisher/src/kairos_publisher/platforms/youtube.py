"""YouTube: a post is one uploaded video, sent through the YouTube Data API v3's videos.insert as
a resumable upload, and Google OAuth token refresh.

Credentials read: `access_token` (sent as Bearer), `refresh_token` and `expires_at` (Google's
access tokens last an hour, so the publisher refreshes ahead of expiry), and for refreshing the
app's `client_id` and `client_secret` (`extra[...]` of the account, else
`KAIROS_YOUTUBE_CLIENT_ID` / `KAIROS_YOUTUBE_CLIENT_SECRET`).

The flow ("Resumable Uploads", developers.google.com/youtube/v3/guides/
using_resumable_upload_protocol, and videos.insert):

1. `POST /upload/youtube/v3/videos?uploadType=resumable&part=snippet,status` with the video
   resource as JSON and `X-Upload-Content-Length` / `X-Upload-Content-Type`: YouTube answers
   200 with the upload session's URI in `Location`. Nothing exists yet (a lost answer is
   RETRYABLE); this is the call that counts against videos.insert's daily quota (its own
   bucket: 100 calls a day by default, developers.google.com/youtube/v3/determine_quota_cost).
2. The bytes are PUT to the session URI in chunks of `chunk_size` (8 MiB: every chunk but the
   last must be a multiple of 256 KiB), each with `Content-Range: bytes FIRST-LAST/TOTAL`,
   streamed from the media store (`MediaFetcher.stream`: about one chunk in memory at a time).
   YouTube answers `308` with `Range: bytes=0-LAST` while bytes are missing; that `Range` is
   what counts: bytes it did not take go first in the next PUT.
3. The last chunk's PUT completes the upload and makes the video: it is the call that makes
   the post public, so `stage.publishing()` is awaited just before it (every earlier request is
   safe to do again: a new attempt starts a new session). YouTube answers the video resource,
   whose `id` is the post's: `https://www.youtube.com/watch?v=<id>`, or
   `https://www.youtube.com/shorts/<id>` for a target whose `short` setting is "true".
4. After a chunk's answer was lost (a timeout) or was a 5xx, the session's status is asked as
   the guide says, with an empty PUT and `Content-Range: bytes */TOTAL`: a 308 whose `Range`
   ends before the chunk has it sent again (once); one that covers some or all of it goes on
   from there; a 200/201 is the finished video. When even that cannot be had, an unfinished
   upload is RETRYABLE (no video exists), and after the last chunk UNKNOWN (the video may
   exist).
5. YouTube processes the video after it exists. `GET /youtube/v3/videos?part=status,
   processingDetails&id=<id>` (1 quota unit) is asked every `poll_interval` seconds (or sooner
   when `processingProgress.timeLeftMs` says so), through `stage.pause`, for at most
   `max_wait` seconds: `uploadStatus` "processed" is PUBLISHED; "failed" (`failureReason`:
   codec, conversion, emptyFile, invalidFile, tooSmall, uploadAborted), "rejected"
   (`rejectionReason`: duplicate, length, copyright ...) and "deleted" are PERMANENT with
   YouTube's reason; a video still processing at the bound is PUBLISHED with its id and a note
   (it exists, and sending it again would make a second one).

What is sent: `snippet.title` is the target's `title`, else the text's first line (cut to 100
characters); `snippet.description` the post's text (5,000 UTF-8 bytes); neither may hold `<`
or `>` (videos resource), which is refused here before anything is sent. `status.privacyStatus`
is the target's `privacy` (required: private, unlisted or public); `made_for_kids` becomes
`status.selfDeclaredMadeForKids`, `category_id` `snippet.categoryId` and `tags` (comma
separated) `snippet.tags`, each only when set. YouTube makes a square or vertical video of at
most 3 minutes a Short by itself; `#Shorts` in the text or title is not needed. Videos of an API
project Google has not audited are kept private by YouTube whatever `privacy` says.

Outcomes, from Google's error JSON `{"error": {"code", "message", "errors": [{"reason",
"domain", "message"}]}}` (developers.google.com/youtube/v3/docs/errors):
- 403 `quotaExceeded`: RETRYABLE, not before the next midnight Pacific Time (when YouTube's
  daily quota resets), and the account is blocked until then, so the post waits for the
  quota instead of spending retries on it. (The quota is the Google project's, shared by every
  channel Kairos posts to; each account learns of it at its own next upload.)
- 400 `uploadLimitExceeded` (the channel's daily upload cap; YouTube says to try again in 24
  hours): RETRYABLE a day later, the account blocked as long. Not AUTH: the token is fine.
- 401 (`authError`) and 403 `forbidden`: AUTH (the publisher refreshes once, then asks for
  re-authorisation).
- 429, 5xx (`backendError`), `rateLimitExceeded`, `userRateLimitExceeded`: RETRYABLE.
- Any other refusal (`invalidTitle`, `invalidDescription`, `invalidCategoryId`,
  `forbiddenPrivacySetting` ...): PERMANENT with YouTube's reason and message.

A post without a video is refused (PERMANENT): YouTube takes nothing else. YouTube has no
replies to videos through this API: a later part of a thread is a video of its own.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from kairos_publisher.media import MediaError, StoredMedia
from kairos_publisher.platforms.base import (
    PlatformContext,
    PublishOutcome,
    PublishRequest,
    RefreshedTokens,
    Result,
    excerpt,
    json_object,
    media_failed,
    retry_after,
    send,
    token_answer,
)

API = "https://www.googleapis.com"
OAUTH = "https://oauth2.googleapis.com"
UPLOAD = "/upload/youtube/v3/videos"
VIDEOS = "/youtube/v3/videos"
TOKEN = "/token"
WATCH = "https://www.youtube.com/watch?v="
SHORTS = "https://www.youtube.com/shorts/"
JSON = "application/json; charset=UTF-8"
#: Google's resumable protocol takes chunks in multiples of 256 KiB (but the last).
CHUNK_UNIT = 256 * 1024
CHUNK = 32 * CHUNK_UNIT
MAX_TITLE = 100
MAX_DESCRIPTION_BYTES = 5000
MAX_TAGS = 500
PRIVACY = ("private", "unlisted", "public")
#: YouTube's daily quota resets at midnight Pacific Time.
PACIFIC = ZoneInfo("America/Los_Angeles")
AUTH_REASONS = frozenset({"authError", "forbidden"})
RETRY_REASONS = frozenset({"backendError", "rateLimitExceeded", "userRateLimitExceeded"})


def next_quota_reset(now: datetime) -> datetime:
    """The next midnight Pacific Time after `now`, in UTC."""
    pacific = now.astimezone(PACIFIC)
    midnight = datetime.combine(pacific.date() + timedelta(days=1), time(0), tzinfo=PACIFIC)
    return midnight.astimezone(UTC)


def google_reason(response: httpx.Response) -> tuple[str, str]:
    """The first error's `reason` and the error's `message` ("" when the body has none)."""
    error = json_object(response).get("error")
    if not isinstance(error, dict):
        return "", ""
    errors = error.get("errors")
    first = errors[0] if isinstance(errors, list) and errors else {}
    reason = first.get("reason") if isinstance(first, dict) else ""
    return str(reason or ""), str(error.get("message") or "")


def failure(response: httpx.Response, now: datetime | None = None) -> PublishOutcome:
    """YouTube's refusal read into an outcome (see the module docstring)."""
    now = now or datetime.now(UTC)
    status = response.status_code
    reason, words = google_reason(response)
    code = reason or str(status)
    outcome = PublishOutcome(
        Result.PERMANENT,
        http_status=status,
        code=code,
        message=(words or excerpt(response))[:500],
    )
    if reason == "quotaExceeded":
        reset = next_quota_reset(now)
        return replace(
            outcome, result=Result.RETRYABLE, retry_not_before=reset, blocked_until=reset
        )
    if reason == "uploadLimitExceeded":
        later = now + timedelta(hours=24)
        return replace(
            outcome, result=Result.RETRYABLE, retry_not_before=later, blocked_until=later
        )
    if status == 401 or reason in AUTH_REASONS:
        return replace(outcome, result=Result.AUTH)
    if status in (408, 429) or status >= 500 or reason in RETRY_REASONS:
        return replace(outcome, result=Result.RETRYABLE, retry_not_before=retry_after(response))
    return outcome


def refused(code: str, message: str) -> PublishOutcome:
    """A post Kairos will not send as it is: nothing reached YouTube."""
    return PublishOutcome(Result.PERMANENT, code=code, message=message)


def upload_type(video: StoredMedia) -> str:
    """The media type YouTube is told: the video's, or the generic one it also takes."""
    kind = video.content_type
    return kind if kind.startswith("video/") else "application/octet-stream"


def video_url(request: PublishRequest, video_id: str) -> str:
    return (SHORTS if request.settings.get("short") == "true" else WATCH) + video_id


class Lost(Exception):
    """A chunk whose fate could not be learned, even from the session's status."""

    def __init__(self, outcome: PublishOutcome) -> None:
        super().__init__(outcome.message)
        self.outcome = outcome


class YouTubeClient:
    """Uploads videos to one channel; refreshes its tokens."""

    #: Google's access tokens last an hour (`expires_in` 3599); five minutes early leaves
    #: room for a refresh that fails once.
    refresh_margin = timedelta(minutes=5)

    def __init__(self, context: PlatformContext) -> None:
        self.context = context
        self.http = context.http
        self.api = context.url("youtube", API)
        self.oauth = context.url("youtube.oauth", context.url("youtube", OAUTH))
        self.chunk_size = CHUNK
        #: Seconds between processing polls, and the longest wait for processing after the
        #: video exists (well inside the api's 120-second attempt lease).
        self.poll_interval = 5.0
        self.max_wait = 60.0

    async def publish(self, request: PublishRequest) -> PublishOutcome:
        video = request.video
        if video is None:
            return refused("media", "a YouTube post is a video, and this post has none")
        resource = self.resource(request)
        if isinstance(resource, PublishOutcome):
            return resource
        session = await self.start(request, video, resource)
        if isinstance(session, PublishOutcome):
            return session
        made = await self.upload(request, video, session)
        if isinstance(made, PublishOutcome):
            return made
        return await self.processed(request, made)

    def resource(self, request: PublishRequest) -> dict[str, Any] | PublishOutcome:
        """The video resource to insert, or why it cannot be sent (the api checks most of the
        same rules at create time; these guard what it cannot see)."""
        settings = request.settings
        privacy = settings.get("privacy", "")
        if privacy not in PRIVACY:
            return refused("privacy", f"the target's privacy must be one of {', '.join(PRIVACY)}")
        title = settings.get("title") or request.content.strip().split("\n", 1)[0].strip()
        title = title[:MAX_TITLE]
        if not title:
            return refused("title", "a YouTube video needs a title: set `title` or write text")
        description = request.content
        for name, value in (("title", title), ("description", description)):
            if "<" in value or ">" in value:
                return refused(name, f"YouTube refuses < and > in a video's {name}")
        if len(description.encode()) > MAX_DESCRIPTION_BYTES:
            return refused(
                "description",
                f"YouTube takes at most {MAX_DESCRIPTION_BYTES} UTF-8 bytes of description",
            )
        snippet: dict[str, Any] = {"title": title, "description": description}
        tags = [tag.strip() for tag in settings.get("tags", "").split(",") if tag.strip()]
        if tags:
            snippet["tags"] = tags
        if settings.get("category_id"):
            snippet["categoryId"] = settings["category_id"]
        status: dict[str, Any] = {"privacyStatus": privacy}
        if settings.get("made_for_kids") in ("true", "false"):
            status["selfDeclaredMadeForKids"] = settings["made_for_kids"] == "true"
        return {"snippet": snippet, "status": status}

    def headers(self, request: PublishRequest) -> dict[str, str]:
        return {"authorization": f"Bearer {request.access_token}"}

    async def start(
        self, request: PublishRequest, video: StoredMedia, resource: dict[str, Any]
    ) -> str | PublishOutcome:
        """The upload session's URI; nothing exists yet, so a lost answer is only retried."""
        response = await send(
            self.http,
            self.http.build_request(
                "POST",
                f"{self.api}{UPLOAD}",
                params={"uploadType": "resumable", "part": "snippet,status"},
                json=resource,
                headers={
                    **self.headers(request),
                    "content-type": JSON,
                    "x-upload-content-length": str(video.size),
                    "x-upload-content-type": upload_type(video),
                },
            ),
        )
        if isinstance(response, PublishOutcome):
            if response.result is Result.UNKNOWN:
                return replace(response, result=Result.RETRYABLE, code="upload_timeout")
            return response
        if response.status_code != 200:
            return failure(response)
        location = str(response.headers.get("location", ""))
        if not location:
            return PublishOutcome(
                Result.RETRYABLE,
                http_status=200,
                code="bad_answer",
                message="the upload session started without a Location",
            )
        return location

    async def upload(
        self, request: PublishRequest, video: StoredMedia, session: str
    ) -> dict[str, Any] | PublishOutcome:
        """Send the bytes; the video resource YouTube made of them, or the outcome.

        YouTube's `Range` is what counts: bytes it did not take are kept and go first in the
        next PUT. Every PUT but the last carries whole 256 KiB units; the rest waits for the
        next part of the stream, so a part of any size keeps to Google's rule."""
        total = video.size
        offset = 0  # the bytes the session has
        pending = bytearray()  # read from the store, not yet taken by YouTube
        read = 0
        try:
            async for part in self.context.media.stream(video, self.chunk_size):
                pending += part
                read += len(part)
                if read == total:
                    break
                size = len(pending) - len(pending) % CHUNK_UNIT
                if size:
                    kept = await self.put_part(session, video, pending, offset, size)
                    if isinstance(kept, PublishOutcome):
                        return kept
                    offset = kept
        except MediaError as error:
            return media_failed(error)
        except Lost as lost:
            return lost.outcome
        if read != total:
            return PublishOutcome(
                Result.RETRYABLE,
                code="upload_incomplete",
                message=f"the media store gave {read} of {total} bytes",
            )
        # The rest goes in the request that completes the upload and so makes the video.
        marked = await request.stage.publishing()
        if marked is not None:
            return marked
        try:
            for _ in range(3):
                answer = await self.put_chunk(session, video, bytes(pending), offset, last=True)
                if not isinstance(answer, int):
                    return answer
                del pending[: answer - offset]
                offset = answer
                if not pending:
                    return PublishOutcome(
                        Result.UNKNOWN,
                        code="bad_answer",
                        message="YouTube has every byte but answered 308, not the video",
                    )
        except Lost as lost:
            return lost.outcome
        return PublishOutcome(
            Result.RETRYABLE,
            code="upload_incomplete",
            message=f"YouTube kept taking part of the last {len(pending)} bytes",
        )

    async def put_part(
        self, session: str, video: StoredMedia, pending: bytearray, offset: int, size: int
    ) -> int | PublishOutcome:
        """PUT the first `size` of the `pending` bytes (not the last): how many bytes the
        session has now, the bytes it took dropped from `pending`; or the outcome."""
        answer = await self.put_chunk(session, video, bytes(pending[:size]), offset, last=False)
        if isinstance(answer, int):
            del pending[: answer - offset]
            return answer
        if isinstance(answer, dict):
            return PublishOutcome(
                Result.UNKNOWN,
                code="bad_answer",
                message=f"YouTube made video {answer.get('id')} before the last byte was sent",
            )
        return answer

    async def put_chunk(
        self, session: str, video: StoredMedia, chunk: bytes, offset: int, *, last: bool
    ) -> int | dict[str, Any] | PublishOutcome:
        """PUT bytes from `offset`: how many bytes the session has after it (a 308's `Range`),
        the video resource once the upload is complete, or the outcome that ends the attempt. A
        lost or 5xx answer is checked against the session's status, and the chunk sent again
        once when YouTube has none of it."""
        end = offset + len(chunk)
        total = video.size
        for sending in (1, 2):
            response = await send(
                self.http,
                self.http.build_request(
                    "PUT",
                    session,
                    content=chunk,
                    headers={
                        "content-type": upload_type(video),
                        "content-range": f"bytes {offset}-{end - 1}/{total}",
                    },
                ),
            )
            if isinstance(response, httpx.Response) and response.status_code < 500:
                return self.read_answer(response, offset, end)
            # A 5xx, or an answer that never came: the session says what it has.
            has = await self.status(session, total, last)
            if isinstance(has, dict):
                return has  # the last chunk arrived and the video was made
            if offset < has <= end:
                return has
            if has != offset or sending == 2:
                break
        why = f"YouTube did not take bytes {offset}-{end - 1} of {total}"
        return PublishOutcome(Result.RETRYABLE, code="upload_incomplete", message=why)

    def read_answer(
        self, response: httpx.Response, offset: int, end: int
    ) -> int | dict[str, Any] | PublishOutcome:
        """A chunk's answer: a 308's count of the bytes the session has (some of the chunk at
        least), the video once complete, else the outcome."""
        if response.status_code == 308:
            has = received(response)
            if offset < has <= end:
                return has
            return PublishOutcome(
                Result.RETRYABLE,
                http_status=308,
                code="upload_incomplete",
                message=f"YouTube has {has} bytes after bytes {offset}-{end - 1} were sent",
            )
        if response.status_code in (200, 201):
            made = json_object(response)
            if isinstance(made.get("id"), str) and made["id"]:
                return made
            return PublishOutcome(
                Result.UNKNOWN,
                http_status=response.status_code,
                code="bad_answer",
                message=f"the upload finished without a video id: {excerpt(response)}",
            )
        return failure(response)

    async def status(self, session: str, total: int, last: bool) -> int | dict[str, Any]:
        """How many bytes the session has, or the video when it is complete. Raises Lost when
        the session cannot say: RETRYABLE before the last chunk, UNKNOWN after it."""
        response = await send(
            self.http,
            self.http.build_request(
                "PUT",
                session,
                headers={"content-range": f"bytes */{total}", "content-length": "0"},
            ),
        )
        if isinstance(response, httpx.Response):
            if response.status_code == 308:
                return received(response)
            made = json_object(response)
            if response.status_code in (200, 201) and isinstance(made.get("id"), str):
                return made
            why = f"the upload's status query answered {response.status_code}"
        else:
            why = f"the upload's status query failed: {response.message}"
        if last:
            raise Lost(
                PublishOutcome(
                    Result.UNKNOWN,
                    code="upload_lost",
                    message=f"the last chunk was sent but its answer lost; {why}"[:500],
                )
            )
        raise Lost(PublishOutcome(Result.RETRYABLE, code="upload_lost", message=why[:500]))

    async def processed(self, request: PublishRequest, made: dict[str, Any]) -> PublishOutcome:
        """Wait for YouTube's processing of the video it made (see the module docstring)."""
        video_id = str(made["id"])
        published = PublishOutcome(
            Result.PUBLISHED, platform_post_id=video_id, url=video_url(request, video_id)
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        shown = made.get("status")
        state = shown.get("uploadStatus") if isinstance(shown, dict) else "uploaded"
        wait = self.poll_interval
        while True:
            if state == "processed":
                return published
            if loop.time() + wait > deadline:
                return replace(
                    published,
                    message=f"YouTube was still processing the video after {self.max_wait:g} s",
                )
            await request.stage.pause(wait)
            response = await send(
                self.http,
                self.http.build_request(
                    "GET",
                    f"{self.api}{VIDEOS}",
                    params={"part": "status,processingDetails", "id": video_id},
                    headers=self.headers(request),
                ),
            )
            if not isinstance(response, httpx.Response) or response.status_code != 200:
                continue  # news not had yet; the video exists either way
            items = json_object(response).get("items")
            if not isinstance(items, list) or not items or not isinstance(items[0], dict):
                continue
            status = items[0].get("status") or {}
            state = str(status.get("uploadStatus") or "")
            if state in ("failed", "rejected", "deleted"):
                reason = str(status.get("failureReason") or status.get("rejectionReason") or state)
                return PublishOutcome(
                    Result.PERMANENT,
                    platform_post_id=video_id,
                    http_status=200,
                    code=reason,
                    message=f"YouTube {state} video {video_id} while processing it: {reason}",
                )
            left = (items[0].get("processingDetails") or {}).get("processingProgress") or {}
            millis = left.get("timeLeftMs") if isinstance(left, dict) else None
            wait = self.poll_interval
            if isinstance(millis, int | str) and str(millis).isdigit():
                wait = min(self.poll_interval, max(1.0, int(millis) / 1000))

    async def refresh(self, request: PublishRequest) -> RefreshedTokens | str | PublishOutcome:
        """Trade the refresh token at Google's token endpoint. Google's refresh tokens do not
        rotate: the answer carries none, and the one kept goes on working."""
        if not request.refresh_token:
            return "no YouTube refresh token; the account must be connected again"
        client_id = self.context.app_secret(request, "youtube", "client_id")
        client_secret = self.context.app_secret(request, "youtube", "client_secret")
        if not client_id or not client_secret:
            return "no YouTube client_id/client_secret to refresh with"
        response = await send(
            self.http,
            self.http.build_request(
                "POST",
                f"{self.oauth}{TOKEN}",
                data={
                    "client_id": client_id,
                    "client_secret": client_secret,
                    "grant_type": "refresh_token",
                    "refresh_token": request.refresh_token,
                },
            ),
        )
        return token_answer(response, "YouTube", request.refresh_token)


def received(response: httpx.Response) -> int:
    """How many bytes a 308's `Range: bytes=0-LAST` says the session has (0 without one)."""
    value = response.headers.get("range", "")
    start, _, end = value.removeprefix("bytes=").partition("-")
    if start == "0" and end.isdigit():
        return int(end) + 1
    return 0


def create(context: PlatformContext) -> YouTubeClient:
    return YouTubeClient(context)
