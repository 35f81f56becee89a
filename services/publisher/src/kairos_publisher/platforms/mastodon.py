"""Mastodon: `POST /api/v1/statuses` on the account's instance, images uploaded first.

Credentials read: `access_token` (a user token with `write:statuses` and `write:media`) and
`instance_url` (the instance's base URL; when empty, the `mastodon` base URL override is used, so
`make dev` can point accounts without one at the fake). Mastodon tokens do not expire and cannot
be refreshed, so a 401 is AUTH and the account must be connected again: there is no `refresh`.

The platform_post_id is the status id (a string, not necessarily numeric); a reply sends it as
`in_reply_to_id`, which is all a thread needs. The URL is the status' own `url`.

Every create carries `Idempotency-Key: <request.idempotency_key>`: Mastodon keeps the key for an
hour and answers a repeat with the status it created first, so retrying after a timeout cannot
post twice (images are uploaded again, and the unused copies are dropped by the instance).
Each part of a thread must therefore have its own key.

Settings passed through to the status when present: `visibility`, `spoiler_text`, `sensitive`,
`language`.

Images are downloaded (8 MB at most, the instance default for images) and sent to
`POST /api/v2/media`; a 202 means the instance is still processing the file, so
`GET /api/v1/media/:id` is polled (206 while processing, 200 when done) before the status is
created with `media_ids`. Mastodon writes its errors in the account's language (the 422 for
media not yet processed is `media_attachments.validations.not_ready`, translated), so a 422 is
never read for words: when the status had media, the attachments are polled again, and if any
is still processing (206) the client waits for it and creates the status once more; a 422 with
every attachment processed is a real validation error (PERMANENT, in the account's words).

Video: a post's uploaded video (`request.video`, then its only media item) is streamed from the
media store as the multipart `file` of `POST /api/v2/media` (one request: Mastodon has no
chunked upload), which answers 202 while the instance transcodes it. `GET /api/v1/media/:id` is
then polled, 206 meaning still processing, 200 processed, 422 failed ("Error processing
thumbnail for uploaded media", PERMANENT). Mastodon gives no hint when to look again, so the
waits are Kairos's own (`VIDEO_POLL_DELAYS`, through `request.stage.pause`, which gives the
call slot back), `MAX_VIDEO_PROCESSING_WAIT` in all; still processing then is RETRYABLE, since
no status exists yet (the next attempt uploads again; the instance drops unattached media).
`request.stage.publishing()` is awaited just before `POST /api/v1/statuses`, whose
Idempotency-Key still guards the repeat. The instance's limits (99 MB, 3840x2160 pixels, 120
fps by default) are checked by the api from the catalogue; an instance that allows less answers
422, which is PERMANENT in its own words.

Rate limits: `X-RateLimit-Remaining: 0` on any answer blocks the account until
`X-RateLimit-Reset` (an ISO-8601 instant); a 429 waits for the same instant.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx

from kairos_publisher.media import IMAGE_TYPES, MediaError, MediaSource, StoredMedia
from kairos_publisher.platforms.base import (
    PlatformContext,
    PublishOutcome,
    PublishRequest,
    Result,
    excerpt,
    json_object,
    media_failed,
    nothing_posted,
    send,
)
from kairos_publisher.upload import multipart, send_upload

#: The image limit Kairos keeps to on Mastodon: below `IMAGE_LIMIT` in 3.x (10 MB) and 4.4 on
#: (16 MB). A video goes by the catalogue's rules (99 MB by default), checked by the api.
MAX_IMAGE_BYTES = 8 * 1024 * 1024
#: Waits before each poll of an upload still processing; about 25 s in all, then retry later.
POLL_DELAYS = (0.2, 0.5, 1.0, 2.0, 3.0, 3.0, 5.0, 5.0, 5.0)
#: Waits before each poll of a video still processing, Kairos's own (Mastodon gives no hint):
#: soon at first, then every 5 s; the last repeats until `MAX_VIDEO_PROCESSING_WAIT`.
VIDEO_POLL_DELAYS = (1.0, 2.0, 3.0, 5.0)
#: How long one attempt waits for the instance to process a video; then RETRYABLE.
MAX_VIDEO_PROCESSING_WAIT = 600.0
#: Status fields a target's settings may set, under Mastodon's own names.
STATUS_SETTINGS = ("visibility", "spoiler_text", "sensitive", "language")


def reset_instant(response: httpx.Response) -> datetime | None:
    """`X-RateLimit-Reset` (ISO-8601) as an instant."""
    value = response.headers.get("x-ratelimit-reset", "")
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def blocked_until(response: httpx.Response) -> datetime | None:
    """When the account may call again, if this answer says its budget is spent."""
    if response.status_code == 429 or response.headers.get("x-ratelimit-remaining") == "0":
        return reset_instant(response)
    return None


def failure(response: httpx.Response) -> PublishOutcome:
    """An unsuccessful answer classified by its status, with Mastodon's `error` text."""
    status = response.status_code
    data = json_object(response)
    message = str(data.get("error") or "") or excerpt(response)
    if data.get("error_description"):
        message = f"{message}: {data['error_description']}"
    message = message[:500]
    code = str(status)
    if status == 401:
        return PublishOutcome(Result.AUTH, http_status=status, code=code, message=message)
    if status == 429:
        return PublishOutcome(
            Result.RETRYABLE,
            http_status=status,
            code=code,
            message=message,
            retry_not_before=reset_instant(response),
        )
    if status >= 500 or status == 408:
        return PublishOutcome(Result.RETRYABLE, http_status=status, code=code, message=message)
    return PublishOutcome(Result.PERMANENT, http_status=status, code=code, message=message)


class MastodonClient:
    """Posts statuses to the account's instance."""

    def __init__(self, context: PlatformContext) -> None:
        self.context = context
        self.http = context.http

    async def publish(self, request: PublishRequest) -> PublishOutcome:
        base = request.instance_url.rstrip("/") or self.context.url("mastodon", "")
        if not base:
            return PublishOutcome(
                Result.PERMANENT, code="no_instance_url", message="no instance_url"
            )
        call = _Call(self.http, base, request.access_token)
        outcome = await self._publish(call, request)
        return replace(outcome, blocked_until=call.blocked_until)

    async def _publish(self, call: _Call, request: PublishRequest) -> PublishOutcome:
        media_ids: list[str] = []
        if request.video is not None:
            if request.media:
                return PublishOutcome(
                    Result.PERMANENT,
                    code="too_many_media",
                    message="Mastodon takes a video as a status' only attachment",
                )
            uploaded = await self._upload_video(call, request, request.video)
            if isinstance(uploaded, PublishOutcome):
                return uploaded
            media_ids.append(uploaded)
            refused = await request.stage.publishing()
            if refused is not None:
                return refused
        for source in request.media:
            uploaded = await self._upload(call, source)
            if isinstance(uploaded, PublishOutcome):
                return uploaded
            media_ids.append(uploaded)
        payload: dict[str, Any] = {"status": request.content}
        if media_ids:
            payload["media_ids"] = media_ids
        if request.reply_to:
            payload["in_reply_to_id"] = request.reply_to
        for name in STATUS_SETTINGS:
            if request.settings.get(name):
                payload[name] = request.settings[name]
        if "sensitive" in payload:
            payload["sensitive"] = payload["sensitive"].lower() == "true"
        response = await self._create(call, payload, request.idempotency_key)
        if isinstance(response, PublishOutcome):
            return response
        if response.status_code == 422 and media_ids:
            # Maybe an attachment is still processing; the answer's words cannot say (they are
            # in the account's language), the attachments' own state can.
            processing = await self._still_processing(call, media_ids)
            if isinstance(processing, PublishOutcome):
                return processing
            if processing:
                for media_id in processing:
                    waited = await self._processed(call, media_id)
                    if waited is not None:
                        return waited
                # A 422 created nothing, so creating the status again cannot post it twice.
                response = await self._create(call, payload, request.idempotency_key)
                if isinstance(response, PublishOutcome):
                    return response
        if not response.is_success:
            return failure(response)
        status = json_object(response)
        status_id = str(status.get("id") or "")
        if not status_id:
            return PublishOutcome(
                Result.UNKNOWN,
                http_status=response.status_code,
                message=f"accepted without a status id: {excerpt(response, 200)}",
            )
        return PublishOutcome(
            Result.PUBLISHED,
            platform_post_id=status_id,
            url=str(status.get("url") or status.get("uri") or ""),
            http_status=response.status_code,
        )

    async def _create(
        self, call: _Call, payload: dict[str, Any], key: str
    ) -> httpx.Response | PublishOutcome:
        return await call.send(
            "POST", "/api/v1/statuses", json=payload, headers={"idempotency-key": key}
        )

    async def _still_processing(
        self, call: _Call, media_ids: list[str]
    ) -> list[str] | PublishOutcome:
        """The attachments that answer 206 (still processing), or why they could not be read."""
        processing: list[str] = []
        for media_id in media_ids:
            polled = await call.send("GET", f"/api/v1/media/{media_id}")
            if isinstance(polled, PublishOutcome):
                return nothing_posted(polled)
            if polled.status_code == 206:
                processing.append(media_id)
            elif polled.status_code != 200:
                return failure(polled)
        return processing

    async def _processed(self, call: _Call, media_id: str) -> PublishOutcome | None:
        """None once the attachment is processed (200), after polling while it answers 206."""
        for delay in POLL_DELAYS:
            await asyncio.sleep(delay)
            polled = await call.send("GET", f"/api/v1/media/{media_id}")
            if isinstance(polled, PublishOutcome):
                return nothing_posted(polled)
            if polled.status_code == 200:
                return None
            if polled.status_code != 206:
                return failure(polled)
        return PublishOutcome(
            Result.RETRYABLE,
            code="media_not_ready",
            message=f"media {media_id} still processing after {sum(POLL_DELAYS):.0f} s",
        )

    async def _upload_video(
        self, call: _Call, request: PublishRequest, video: StoredMedia
    ) -> str | PublishOutcome:
        """Stream the video to `/api/v2/media` and wait until the instance has processed it:
        its media id, or why not."""
        body = multipart(self.context.media, video, "file")
        response = await call.send(
            "POST", "/api/v2/media", headers=body.headers, content=body.content(), upload=True
        )
        if isinstance(response, PublishOutcome):
            return response
        if not response.is_success:
            return failure(response)
        media_id = str(json_object(response).get("id") or "")
        if not media_id:
            return PublishOutcome(
                Result.RETRYABLE,
                http_status=response.status_code,
                code="media",
                message=f"upload answered without a media id: {excerpt(response, 200)}",
            )
        if response.status_code != 202:
            return media_id
        waited = 0.0
        delays = itertools.chain(VIDEO_POLL_DELAYS, itertools.repeat(VIDEO_POLL_DELAYS[-1]))
        while True:
            delay = next(delays)
            if waited + delay > MAX_VIDEO_PROCESSING_WAIT:
                return PublishOutcome(
                    Result.RETRYABLE,
                    code="media_not_ready",
                    message=f"video {media_id} still processing after {waited:.0f} s",
                )
            await request.stage.pause(delay)
            waited += delay
            polled = await call.send("GET", f"/api/v1/media/{media_id}")
            if isinstance(polled, PublishOutcome):
                return nothing_posted(polled)
            if polled.status_code == 200:
                return media_id
            if polled.status_code != 206:
                outcome = failure(polled)
                if polled.status_code == 422:
                    message = f"the instance could not process video {media_id}: {outcome.message}"
                    return replace(outcome, code="media_processing", message=message[:500])
                return outcome

    async def _upload(self, call: _Call, source: MediaSource) -> str | PublishOutcome:
        """Download one image and upload it until processed: its media id, or why not."""
        try:
            media = await self.context.media.fetch(
                source, max_bytes=MAX_IMAGE_BYTES, types=IMAGE_TYPES
            )
        except MediaError as error:
            return media_failed(error)
        response = await call.send(
            "POST",
            "/api/v2/media",
            files={"file": (media.filename, media.content, media.content_type)},
        )
        if isinstance(response, PublishOutcome):
            return nothing_posted(response)
        if not response.is_success:
            return failure(response)
        media_id = str(json_object(response).get("id") or "")
        if not media_id:
            return PublishOutcome(
                Result.RETRYABLE,
                http_status=response.status_code,
                code="media",
                message=f"upload answered without a media id: {excerpt(response, 200)}",
            )
        if response.status_code != 202:  # 200: processed already
            return media_id
        waited = await self._processed(call, media_id)
        return media_id if waited is None else waited


class _Call:
    """The requests of one publish: authorised, against one instance, rate limits noted."""

    def __init__(self, http: httpx.AsyncClient, base: str, token: str) -> None:
        self.http = http
        self.base = base
        self.token = token
        self.blocked_until: datetime | None = None

    async def send(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        upload: bool = False,
        **kwargs: Any,
    ) -> httpx.Response | PublishOutcome:
        """Send one request; an `upload` streams a stored file (`send_upload`: a damaged file is
        a media outcome, a lost answer RETRYABLE)."""
        outgoing = self.http.build_request(
            method,
            self.base + path,
            headers={"authorization": f"Bearer {self.token}", **(headers or {})},
            **kwargs,
        )
        response = await (send_upload if upload else send)(self.http, outgoing)
        if isinstance(response, httpx.Response):
            until = blocked_until(response)
            if until is not None and (self.blocked_until is None or until > self.blocked_until):
                self.blocked_until = until
        return response


def create(context: PlatformContext) -> MastodonClient:
    return MastodonClient(context)
