"""The X platform (Twitter API v2): `POST /2/tweets` with an OAuth 2 user token.

Credentials read: `access_token` (the OAuth 2 user token, sent as Bearer), `refresh_token` and
`expires_at` (tokens last 2 hours; refresh tokens are single use, so every refresh returns a new
one that must be saved), `handle` (for the public URL), and for refreshing the app's
`client_id` and, for a confidential client, `client_secret` (`extra[...]` of the account, else
`KAIROS_X_CLIENT_ID` / `KAIROS_X_CLIENT_SECRET`).

platform_post_id: the post's id as X gives it (a decimal string). A later part of a thread
replies to it with `{"reply": {"in_reply_to_tweet_id": <id>}}`, so nothing more is needed.
The public URL is `https://x.com/<handle>/status/<id>`, or `https://x.com/i/web/status/<id>`
when the account has no handle.

Media: X wants bytes, so each URL (at most 4) is downloaded (images up to 5 MB, GIFs 15 MB) and
sent with the simple upload (`POST /2/media/upload`, multipart `media` and `media_category`);
when the answer has `processing_info`, STATUS is polled after `check_after_secs` until the
media has `succeeded`. A failed or timed-out upload publishes nothing, so it is retryable.

Video: a post's uploaded video (`request.video`, then its only media item: X takes "up to 4
photos, 1 animated GIF or 1 video") goes through X's chunked upload, the flow X's docs name for
all videos: `POST /2/media/upload/initialize` (JSON `media_type`, `total_bytes`,
`media_category=tweet_video`), `POST /2/media/upload/{id}/append` for each segment (multipart
`media` and `segment_index`, `VIDEO_SEGMENT` bytes each, streamed from the media store one
segment at a time), `POST /2/media/upload/{id}/finalize`, then STATUS polled while
`processing_info.state` is `pending` or `in_progress`, waiting `check_after_secs` each time
through `request.stage.pause` (the call slot is given back meanwhile), for at most
`MAX_VIDEO_PROCESSING_WAIT` in all. These v2 paths are what X documents today (openapi.json,
the chunked-upload quickstart and best practices); the older `command=INIT/APPEND/FINALIZE`
form on `/2/media/upload` is still shown in the quickstart's curl lines, but the API reference's
`POST /2/media/upload` is the one-shot upload with no `command` (only STATUS, a GET, keeps it),
and the v1.1 `upload.twitter.com` endpoint is superseded. Processing `failed` is
PERMANENT with X's `error.message`; still processing at the bound is RETRYABLE (nothing is
public yet: the next attempt uploads again). `request.stage.publishing()` is awaited just
before `POST /2/tweets`, and an outcome it returns is given instead of posting. Every upload
request whose answer is lost is RETRYABLE, like the image upload's.

Outcomes: 401 is AUTH (expired or revoked token). 403 is PERMANENT: duplicate content, a missing
permission or a reply restriction, none of which a new token fixes. 400 is PERMANENT, 429 and
5xx are RETRYABLE at X's reset instant. X has no idempotency key: a post whose answer never came
is UNKNOWN, and a retry of the same text would meet X's duplicate-content 403.

Rate limits: every answer's `x-rate-limit-*`, `x-user-limit-24hour-*` and `x-app-limit-24hour-*`
headers are read; a bucket with nothing remaining blocks the account until its reset (epoch).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from kairos_publisher.media import (
    IMAGE_TYPES,
    MediaError,
    MediaFetcher,
    MediaSource,
    StoredMedia,
)
from kairos_publisher.platforms.base import (
    PlatformContext,
    PublishOutcome,
    PublishRequest,
    RefreshedTokens,
    Result,
    classify_http,
    epoch,
    excerpt,
    json_object,
    media_failed,
    nothing_posted,
    retry_after,
    send,
)

API = "https://api.x.com"
MAX_MEDIA = 4
IMAGE_LIMIT = 5 * 1024 * 1024
GIF_LIMIT = 15 * 1024 * 1024
#: How long one publish call waits for X to process its media before giving its turn back.
MAX_PROCESSING_WAIT = 60.0
#: X's largest video for a Post (best-practices.mdx: "must not exceed 512 mb").
VIDEO_LIMIT = 512 * 1024 * 1024
#: The video types X's INIT takes (`InitializeMediaUploadRequest.media_type`).
VIDEO_TYPES = frozenset({"video/mp4", "video/webm", "video/mp2t", "video/quicktime"})
#: Bytes per APPEND: about the 1 MiB of the chunked-upload quickstart's example, well under the
#: 5 MB a segment may hold; a 512 MB video takes 537 segments, within `segment_index` 0-999.
#: It also keeps each request body, framing included, under the 1 MiB above which aiohttp (the
#: publisher's transport) warns that a body sent as bytes may block the event loop.
VIDEO_SEGMENT = 1_000_000
#: How long one attempt waits for X to process a video, paused between polls; then RETRYABLE.
MAX_VIDEO_PROCESSING_WAIT = 600.0
#: X's rate-limit buckets, each sent as `<prefix>-limit`, `-remaining` and `-reset`.
LIMIT_PREFIXES = ("x-rate-limit", "x-user-limit-24hour", "x-app-limit-24hour")


def public_url(handle: str, post_id: str) -> str:
    name = handle.strip().lstrip("@")
    if name:
        return f"https://x.com/{name}/status/{post_id}"
    return f"https://x.com/i/web/status/{post_id}"


def blocked_until(response: httpx.Response) -> datetime | None:
    """Until when this answer says the account may not call: the latest reset among the used-up
    buckets, and for a 429 without one its reset or Retry-After."""
    resets = [
        epoch(response.headers.get(f"{prefix}-reset"))
        for prefix in LIMIT_PREFIXES
        if response.headers.get(f"{prefix}-remaining", "").strip() == "0"
    ]
    found = [reset for reset in resets if reset is not None]
    if found:
        return max(found)
    if response.status_code == 429:
        return epoch(response.headers.get("x-rate-limit-reset")) or retry_after(response)
    return None


def failure(response: httpx.Response) -> PublishOutcome:
    """X's problem+json error read into an outcome (see the module docstring for the mapping)."""
    status = response.status_code
    body = json_object(response)
    kind = str(body.get("type", ""))
    code = kind.rsplit("/", 1)[-1] if kind and kind != "about:blank" else str(status)
    detail = str(body.get("detail") or body.get("title") or "")
    errors = body.get("errors")
    reasons = [
        str(error["message"])
        for error in (errors if isinstance(errors, list) else [])
        if isinstance(error, dict) and error.get("message") and error.get("message") != detail
    ]
    message = " ".join([detail, *reasons]).strip()[:500] or excerpt(response)
    if status == 401:
        return PublishOutcome(Result.AUTH, http_status=status, code=code, message=message)
    if status in (408, 429) or status >= 500:
        return PublishOutcome(
            Result.RETRYABLE,
            http_status=status,
            code=code,
            message=message,
            retry_not_before=blocked_until(response) or retry_after(response),
        )
    return PublishOutcome(Result.PERMANENT, http_status=status, code=code, message=message)


class XClient:
    """Posts to X, uploading media first; refreshes OAuth 2 tokens."""

    refresh_margin = timedelta(minutes=5)

    def __init__(self, context: PlatformContext) -> None:
        self.context = context
        self.http: httpx.AsyncClient = context.http
        self.media: MediaFetcher = context.media
        self.base = context.url("x", API)

    async def publish(self, request: PublishRequest) -> PublishOutcome:
        blocks: list[datetime] = []
        outcome = await self._publish(request, blocks)
        if blocks:
            return replace(outcome, blocked_until=max(blocks))
        return outcome

    async def _call(
        self, outgoing: httpx.Request, blocks: list[datetime]
    ) -> httpx.Response | PublishOutcome:
        """Send, noting any rate limit the answer says is used up."""
        response = await send(self.http, outgoing)
        if isinstance(response, httpx.Response):
            until = blocked_until(response)
            if until is not None:
                blocks.append(until)
        return response

    def _auth(self, request: PublishRequest) -> dict[str, str]:
        return {"authorization": f"Bearer {request.access_token}"}

    async def _publish(self, request: PublishRequest, blocks: list[datetime]) -> PublishOutcome:
        if request.video is not None:
            return await self._publish_video(request, request.video, blocks)
        if len(request.media) > MAX_MEDIA:
            return PublishOutcome(
                Result.PERMANENT,
                code="too_many_media",
                message=f"X takes at most {MAX_MEDIA} images, got {len(request.media)}",
            )
        media_ids: list[str] = []
        for source in request.media:
            uploaded = await self._upload(request, source, blocks)
            if isinstance(uploaded, PublishOutcome):
                return uploaded
            media_ids.append(uploaded)
        return await self._post(request, media_ids, blocks)

    async def _publish_video(
        self, request: PublishRequest, video: StoredMedia, blocks: list[datetime]
    ) -> PublishOutcome:
        """Upload the video in chunks, wait for X to process it, then post it."""
        if request.media:
            return PublishOutcome(
                Result.PERMANENT,
                code="too_many_media",
                message="X takes a video as a post's only media item",
            )
        uploaded = await self._upload_video(request, video, blocks)
        if isinstance(uploaded, PublishOutcome):
            return uploaded
        refused = await request.stage.publishing()
        if refused is not None:
            return refused
        return await self._post(request, [uploaded], blocks)

    async def _post(
        self, request: PublishRequest, media_ids: list[str], blocks: list[datetime]
    ) -> PublishOutcome:
        """`POST /2/tweets`: the call that makes the post public."""
        body: dict[str, Any] = {}
        if request.content or not media_ids:
            body["text"] = request.content
        if media_ids:
            body["media"] = {"media_ids": media_ids}
        if request.reply_to:
            body["reply"] = {"in_reply_to_tweet_id": request.reply_to}
        outgoing = self.http.build_request(
            "POST", f"{self.base}/2/tweets", json=body, headers=self._auth(request)
        )
        response = await self._call(outgoing, blocks)
        if isinstance(response, PublishOutcome):
            return response
        if not response.is_success:
            return failure(response)
        data = json_object(response).get("data")
        post_id = data.get("id") if isinstance(data, dict) else None
        if not post_id:
            return PublishOutcome(
                Result.UNKNOWN,
                http_status=response.status_code,
                message=f"accepted without a post id: {excerpt(response)}",
            )
        return PublishOutcome(
            Result.PUBLISHED,
            platform_post_id=str(post_id),
            url=public_url(request.handle, str(post_id)),
            http_status=response.status_code,
        )

    async def _upload(
        self, request: PublishRequest, source: MediaSource, blocks: list[datetime]
    ) -> str | PublishOutcome:
        """Download one image and upload it: its media id, or why not."""
        try:
            media = await self.media.fetch(source, max_bytes=GIF_LIMIT, types=IMAGE_TYPES)
        except MediaError as error:
            return media_failed(error)
        gif = media.content_type == "image/gif"
        if not gif and len(media.content) > IMAGE_LIMIT:
            return PublishOutcome(
                Result.PERMANENT,
                code="media",
                message=f"media {media.url}: {len(media.content)} bytes is over X's image limit "
                f"of {IMAGE_LIMIT}",
            )
        outgoing = self.http.build_request(
            "POST",
            f"{self.base}/2/media/upload",
            headers=self._auth(request),
            files={"media": (media.filename, media.content, media.content_type)},
            data={"media_category": "tweet_gif" if gif else "tweet_image"},
        )
        response = await self._call(outgoing, blocks)
        if isinstance(response, PublishOutcome):
            return nothing_posted(response)
        if not response.is_success:
            return failure(response)
        data = json_object(response).get("data")
        media_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(data, dict) or not media_id:
            return PublishOutcome(
                Result.RETRYABLE,
                http_status=response.status_code,
                code="media",
                message=f"upload answered without a media id: {excerpt(response)}",
            )
        waited = await self._processed(request, str(media_id), data.get("processing_info"), blocks)
        return waited if waited is not None else str(media_id)

    async def _upload_video(
        self, request: PublishRequest, video: StoredMedia, blocks: list[datetime]
    ) -> str | PublishOutcome:
        """INITIALIZE, APPEND each segment, FINALIZE, then wait for processing: the video's
        media id, or why not. Nothing here is public, so every lost answer is RETRYABLE."""
        if video.content_type not in VIDEO_TYPES:
            return PublishOutcome(
                Result.PERMANENT,
                code="media",
                message=f"media {video.media_id}: X does not take {video.content_type} video",
            )
        if video.size > VIDEO_LIMIT:
            return PublishOutcome(
                Result.PERMANENT,
                code="media",
                message=f"media {video.media_id}: {video.size} bytes is over X's video limit "
                f"of {VIDEO_LIMIT}",
            )
        init = {
            "media_type": video.content_type,
            "total_bytes": video.size,
            "media_category": "tweet_video",
        }
        response = await self._upload_call(
            self.http.build_request(
                "POST",
                f"{self.base}/2/media/upload/initialize",
                json=init,
                headers=self._auth(request),
            ),
            blocks,
        )
        if not isinstance(response, httpx.Response):
            return response
        data = json_object(response).get("data")
        media_id = str(data.get("id") or "") if isinstance(data, dict) else ""
        if not media_id:
            return PublishOutcome(
                Result.RETRYABLE,
                http_status=response.status_code,
                code="media",
                message=f"initialize answered without a media id: {excerpt(response)}",
            )
        index = 0
        try:
            async for segment in self.media.stream(video, VIDEO_SEGMENT):
                response = await self._upload_call(
                    self.http.build_request(
                        "POST",
                        f"{self.base}/2/media/upload/{media_id}/append",
                        headers=self._auth(request),
                        files={"media": ("blob", segment, "application/octet-stream")},
                        data={"segment_index": str(index)},
                    ),
                    blocks,
                )
                if not isinstance(response, httpx.Response):
                    return response
                index += 1
        except MediaError as error:
            return media_failed(error)
        response = await self._upload_call(
            self.http.build_request(
                "POST",
                f"{self.base}/2/media/upload/{media_id}/finalize",
                headers=self._auth(request),
            ),
            blocks,
        )
        if not isinstance(response, httpx.Response):
            return response
        data = json_object(response).get("data")
        info = data.get("processing_info") if isinstance(data, dict) else None
        waited = await self._processed(
            request,
            media_id,
            info,
            blocks,
            wait=request.stage.pause,
            limit=MAX_VIDEO_PROCESSING_WAIT,
        )
        return waited if waited is not None else media_id

    async def _upload_call(
        self, outgoing: httpx.Request, blocks: list[datetime]
    ) -> httpx.Response | PublishOutcome:
        """One request of an upload: its successful answer, or the outcome to give (a lost
        answer is RETRYABLE, since nothing was published)."""
        response = await self._call(outgoing, blocks)
        if isinstance(response, PublishOutcome):
            return nothing_posted(response)
        if not response.is_success:
            return failure(response)
        return response

    async def _processed(
        self,
        request: PublishRequest,
        media_id: str,
        info: object,
        blocks: list[datetime],
        *,
        wait: Callable[[float], Awaitable[None]] = asyncio.sleep,
        limit: float = MAX_PROCESSING_WAIT,
    ) -> PublishOutcome | None:
        """Wait while X processes the media: None once it has succeeded, else why not. `wait`
        sleeps between polls, for at most `limit` seconds in all."""
        waited = 0.0
        while isinstance(info, dict) and info.get("state") != "succeeded":
            if info.get("state") == "failed":
                error = info.get("error")
                reason = error.get("message") if isinstance(error, dict) else None
                return PublishOutcome(
                    Result.PERMANENT,
                    code="media_processing",
                    message=f"X could not process media {media_id}: {reason or info}"[:500],
                )
            after = info.get("check_after_secs")
            pause = max(1.0, float(after)) if isinstance(after, int | float) else 1.0
            if waited + pause > limit:
                return PublishOutcome(
                    Result.RETRYABLE,
                    code="media_processing",
                    message=f"media {media_id} still processing after {waited:.0f} s",
                )
            await wait(pause)
            waited += pause
            outgoing = self.http.build_request(
                "GET",
                f"{self.base}/2/media/upload",
                params={"command": "STATUS", "media_id": media_id},
                headers=self._auth(request),
            )
            response = await self._call(outgoing, blocks)
            if isinstance(response, PublishOutcome):
                return nothing_posted(response)
            if not response.is_success:
                return failure(response)
            data = json_object(response).get("data")
            info = data.get("processing_info") if isinstance(data, dict) else None
        return None

    async def refresh(self, request: PublishRequest) -> RefreshedTokens | str | PublishOutcome:
        """Trade the refresh token at `/2/oauth2/token`; X rotates it, so the old one is spent."""
        if not request.refresh_token:
            return "no refresh token (the account was connected without offline.access)"
        client_id = self.context.app_secret(request, "x", "client_id")
        if not client_id:
            return "no X client_id for refreshing (KAIROS_X_CLIENT_ID)"
        secret = self.context.app_secret(request, "x", "client_secret")
        headers: dict[str, str] = {}
        if secret:  # a confidential client authenticates; a public one only names itself
            pair = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
            headers["authorization"] = f"Basic {pair}"
        form = {
            "grant_type": "refresh_token",
            "refresh_token": request.refresh_token,
            "client_id": client_id,
        }
        outgoing = self.http.build_request(
            "POST", f"{self.base}/2/oauth2/token", data=form, headers=headers
        )
        response = await send(self.http, outgoing)
        if isinstance(response, PublishOutcome):
            return response  # the token endpoint could not be reached: try again later
        if response.status_code == 429 or response.status_code >= 500:
            return classify_http(response)
        body = json_object(response)
        if not response.is_success:
            reason = " ".join(
                str(body[key]) for key in ("error", "error_description", "detail") if key in body
            )
            return (
                f"refresh refused with HTTP {response.status_code}: {reason or excerpt(response)}"
            )
        access = body.get("access_token")
        refresh = body.get("refresh_token") or request.refresh_token
        if not isinstance(access, str) or not access:
            return f"refresh answer without an access token: {excerpt(response, 200)}"
        expires_at = None
        lifetime = body.get("expires_in")
        if isinstance(lifetime, int | float):
            expires_at = datetime.now(UTC) + timedelta(seconds=float(lifetime))
        return RefreshedTokens(access, str(refresh), expires_at)


def create(context: PlatformContext) -> XClient:
    return XClient(context)
