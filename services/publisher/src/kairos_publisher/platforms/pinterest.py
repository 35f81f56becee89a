"""Pinterest: an image or video pin on a board through API v5 (`POST /v5/pins`, a video through
`POST /v5/media` and its upload first), and token refresh.

Credentials read: `access_token` (sent as Bearer), `page_id` (the board the pin is saved to,
digits), `refresh_token` and `expires_at` (the publisher refreshes a day before expiry), and for
refreshing the app's `client_id` and `client_secret` (`extra[...]` of the account, else
`KAIROS_PINTEREST_CLIENT_ID` / `KAIROS_PINTEREST_CLIENT_SECRET`), which Pinterest takes as HTTP
Basic auth (the `basic` security of `/oauth/token`).

A post is one pin: its text is the pin's `description`, its one media URL the pin's image
(`media_source` `{"source_type": "image_url", "url": ...}`), which Pinterest fetches itself.
A target's settings add the pin's `title`, `link` and `alt_text`, and `board_id` saves it to
another board than the account's (the api checks them against the catalogue row).
A post with an uploaded video is a video pin, made in four steps (Pinterest's OpenAPI
description: `media/create`, `media/get`, `PinMediaSourceVideoID`; pinterest/api-quickstart's
`Pin.upload_media` and `check_media_id` do the same):

1. `POST /v5/media` `{"media_type": "video"}`: Pinterest answers a `media_id`, an `upload_url`
   (an S3 bucket) and `upload_parameters` (an S3 POST policy: key, policy, credential, date,
   signature ...).
2. A `POST` of a multipart form to `upload_url`: every upload parameter as a field, then the
   file as `file` (S3's POST Object takes fields after the file as none), streamed from the
   media store, with no Pinterest token. S3 answers 204 No Content. Its errors are XML
   `<Error><Code>...</Code><Message>...</Message></Error>` (S3's POST Object and error
   responses pages): 5xx (`InternalError`, `SlowDown`), `RequestTimeout` and an expired policy
   (403 `AccessDenied` "Policy expired") are RETRYABLE, the next attempt registering anew;
   anything else (`EntityTooLarge`, a refused policy condition) is PERMANENT.
3. `GET /v5/media/{media_id}` until its `status` is `succeeded` (`registered` and `processing`
   are waited through), every `media_poll_interval` (3 s) through `stage.pause`, for at most
   `media_max_wait` (300 s: Pinterest documents no processing time; this is Kairos's bound).
   `failed` is PERMANENT. Still processing at the bound is RETRYABLE: nothing is public yet.
4. `stage.publishing()`, then `POST /v5/pins` with `media_source` `{"source_type": "video_id",
   "media_id", ...}` and the cover: the target's `cover_image_url`, else its
   `cover_image_key_frame_time` (whole seconds), else the first frame (`cover_image_key_frame_time`
   0). This is the call that makes the pin public, read as an image pin's answer is.

Every step before the pin is safe to redo: an unanswered registration, upload or status call is
RETRYABLE (the next attempt uploads again), and a publisher killed there is retried.

Pinterest has no replies: a later part of a thread is a pin of its own on the same board.

platform_post_id: the pin's `id` (digits); its URL `https://www.pinterest.com/pin/<id>`, the
form gitroomhq/postiz-app's Pinterest provider records as a pin's release URL.

Outcomes. Errors are `{"code": <int>, "message": "..."}` (`Pinterest.Lib.Error` in Pinterest's
OpenAPI description, pinterest/api-description v5/openapi.json); the HTTP status decides:

- 401 (code 2 "Authentication failed.", or 3, a token without the scopes asked for): AUTH.
- 429 (code 8, "This request exceeded a rate limit..."): RETRYABLE, after `Retry-After` when
  the answer has one (Pinterest documents no wait header, so usually the publisher's own
  backoff). A 429 whose message says spam is PERMANENT: pinterest/api-quickstart tells it apart
  from a rate limit (`SpamException`) and the same pin would be blocked again.
- "Sorry we could not fetch the image." (code 1) and "Something went wrong on our end": a
  transient failure on Pinterest's side that published nothing (gitroomhq/postiz-app#1931: the
  same image published on retry), RETRYABLE.
- 408 and 5xx: RETRYABLE; any other 4xx (400 invalid parameters, 403 code 29 not permitted,
  404 code 40 board not found): PERMANENT.

Pinterest has no idempotency key: a pin whose answer never came is UNKNOWN.
"""

from __future__ import annotations

import asyncio
import base64
import html
import re
from dataclasses import replace
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
    classify_http,
    excerpt,
    json_object,
    retry_after,
    send,
)
from kairos_publisher.upload import multipart, send_upload

API = "https://api.pinterest.com"
PIN_URL = "https://www.pinterest.com/pin"
#: `board_id` has the pattern `^\d+$` in `PinCreate`.
BOARD_ID = re.compile(r"[0-9]+")
#: The target settings sent as the `PinCreate` fields of the same name.
PIN_SETTINGS = ("title", "link", "alt_text")
#: Messages of answers that say Pinterest failed on its side and nothing was made.
TRANSIENT = ("could not fetch the image", "something went wrong on our end")
#: S3 error codes that say trying again (with a new registration) may work.
S3_TRANSIENT = frozenset({"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout"})
S3_CODE = re.compile(r"<Code>([^<]*)</Code>")
S3_MESSAGE = re.compile(r"<Message>([^<]*)</Message>")


def pin_url(pin_id: str) -> str:
    return f"{PIN_URL}/{pin_id}"


def failure(response: httpx.Response) -> PublishOutcome:
    """Pinterest's error answer read into an outcome (see the module docstring)."""
    status = response.status_code
    body = json_object(response)
    code = body.get("code")
    code_text = str(code) if isinstance(code, int) and not isinstance(code, bool) else str(status)
    message = str(body.get("message") or "") or excerpt(response)
    detail = f"{message} {body.get('message_detail') or ''}".lower()
    if status == 401:
        result = Result.AUTH
    elif status == 429 and "spam" in detail:
        result = Result.PERMANENT
    elif status in (408, 429) or status >= 500 or any(words in detail for words in TRANSIENT):
        result = Result.RETRYABLE
    else:
        result = Result.PERMANENT
    return PublishOutcome(
        result,
        http_status=status,
        code=code_text,
        message=message[:500],
        retry_not_before=retry_after(response) if result is Result.RETRYABLE else None,
    )


def s3_failure(response: httpx.Response) -> PublishOutcome:
    """S3's refusal of the video's upload (see the module docstring)."""
    status = response.status_code
    text = excerpt(response, 2000)
    found, said = S3_CODE.search(text), S3_MESSAGE.search(text)
    code = found[1] if found else str(status)
    words = html.unescape(said[1]) if said else ""
    retryable = (
        status >= 500
        or status in (408, 429)
        or code in S3_TRANSIENT
        or (code == "AccessDenied" and "expired" in words.lower())
    )
    return PublishOutcome(
        Result.RETRYABLE if retryable else Result.PERMANENT,
        http_status=status,
        code=code,
        message=f"the video's upload was refused: {code} {words}".strip()[:500],
        retry_not_before=retry_after(response) if retryable else None,
    )


def not_public(outcome: PublishOutcome) -> PublishOutcome:
    """An unanswered call before the pin made nothing public: it is only retried."""
    if outcome.result is Result.UNKNOWN:
        return replace(outcome, result=Result.RETRYABLE)
    return outcome


class PinterestClient:
    """Saves image and video pins to the account's board; refreshes its tokens."""

    #: Pinterest access tokens last 30 days (`expires_in` 2592000); a day early leaves room for
    #: a refresh that fails once.
    refresh_margin = timedelta(days=1)

    def __init__(self, context: PlatformContext) -> None:
        self.context = context
        self.http = context.http
        self.api = context.url("pinterest", API)
        self.oauth = context.url("pinterest.oauth", API)
        #: Seconds between a video's status polls, and the longest wait for its processing.
        self.media_poll_interval = 3.0
        self.media_max_wait = 300.0

    async def publish(self, request: PublishRequest) -> PublishOutcome:
        board = request.settings.get("board_id") or request.page_id.strip()
        if not BOARD_ID.fullmatch(board):
            return PublishOutcome(
                Result.PERMANENT,
                code="no_board",
                message="neither the target nor the account has a Pinterest board id (digits)",
            )
        if request.video is not None:
            return await self.publish_video(request, board, request.video)
        if len(request.media_urls) != 1:
            return PublishOutcome(
                Result.PERMANENT,
                code="media",
                message=f"a Pinterest pin takes exactly one image, not {len(request.media_urls)}",
            )
        body: dict[str, Any] = {
            "board_id": board,
            "description": request.content,
            "media_source": {"source_type": "image_url", "url": request.media_urls[0]},
        }
        return await self.create_pin(request, body)

    def bearer(self, request: PublishRequest) -> dict[str, str]:
        return {"authorization": f"Bearer {request.access_token}"}

    async def publish_video(
        self, request: PublishRequest, board: str, video: StoredMedia
    ) -> PublishOutcome:
        """A video pin (see the module docstring)."""
        settings = request.settings
        source: dict[str, Any] = {"source_type": "video_id"}
        frame = settings.get("cover_image_key_frame_time", "")
        if settings.get("cover_image_url"):
            source["cover_image_url"] = settings["cover_image_url"]
        elif frame and not (frame.isascii() and frame.isdigit()):
            return PublishOutcome(
                Result.PERMANENT,
                code="cover_image_key_frame_time",
                message="cover_image_key_frame_time must be whole seconds (digits)",
            )
        else:
            source["cover_image_key_frame_time"] = int(frame or "0")
        media_id = await self.upload_video(request, video)
        if isinstance(media_id, PublishOutcome):
            return media_id
        ready = await self.wait_for_media(request, media_id)
        if ready is not None:
            return ready
        outcome = await request.stage.publishing()
        if outcome is not None:
            return outcome
        source["media_id"] = media_id
        body: dict[str, Any] = {
            "board_id": board,
            "description": request.content,
            "media_source": source,
        }
        return await self.create_pin(request, body)

    async def upload_video(
        self, request: PublishRequest, video: StoredMedia
    ) -> str | PublishOutcome:
        """Register the video with Pinterest and upload it; its `media_id`, or the outcome."""
        response = await send(
            self.http,
            self.http.build_request(
                "POST",
                f"{self.api}/v5/media",
                json={"media_type": "video"},
                headers=self.bearer(request),
            ),
        )
        if isinstance(response, PublishOutcome):
            return not_public(response)
        if not response.is_success:
            return not_public(failure(response))
        data = json_object(response)
        media_id, upload_url = data.get("media_id"), data.get("upload_url")
        parameters = data.get("upload_parameters")
        if (
            not isinstance(media_id, str)
            or not media_id
            or not isinstance(upload_url, str)
            or not upload_url.startswith(("https://", "http://"))
            or not isinstance(parameters, dict)
        ):
            return PublishOutcome(
                Result.RETRYABLE,
                http_status=response.status_code,
                code="bad_answer",
                message=f"media registration answered without an upload: {excerpt(response)}",
            )
        fields = {str(name): str(value) for name, value in parameters.items()}
        body = multipart(self.context.media, video, "file", fields)
        uploaded = await send_upload(
            self.http,
            self.http.build_request(
                "POST", upload_url, headers=body.headers, content=body.content()
            ),
        )
        if isinstance(uploaded, PublishOutcome):
            return uploaded
        if not uploaded.is_success:
            return s3_failure(uploaded)
        return media_id

    async def wait_for_media(self, request: PublishRequest, media_id: str) -> PublishOutcome | None:
        """Poll the media until Pinterest has processed it: None then, else the outcome."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.media_max_wait
        last = "no status answer yet"
        while True:
            response = await send(
                self.http,
                self.http.build_request(
                    "GET", f"{self.api}/v5/media/{media_id}", headers=self.bearer(request)
                ),
            )
            if isinstance(response, PublishOutcome):
                last = response.message
            elif not response.is_success:
                refusal = failure(response)
                if refusal.result in (Result.AUTH, Result.PERMANENT):
                    return refusal
                last = f"status refused: {refusal.code} {refusal.message}"
            else:
                status = str(json_object(response).get("status") or "")
                if status == "succeeded":
                    return None
                if status == "failed":
                    return PublishOutcome(
                        Result.PERMANENT,
                        http_status=response.status_code,
                        code="media_failed",
                        message=f"Pinterest could not process the video (media {media_id}: "
                        "status failed)",
                    )
                last = f"still {status or 'without a status'}"
            if loop.time() + self.media_poll_interval > deadline:
                return PublishOutcome(
                    Result.RETRYABLE,
                    code="media_processing",
                    message=f"Pinterest had not processed media {media_id} after "
                    f"{self.media_max_wait:g} s ({last})"[:500],
                )
            await request.stage.pause(self.media_poll_interval)

    async def create_pin(self, request: PublishRequest, body: dict[str, Any]) -> PublishOutcome:
        """`POST /v5/pins`: the call that makes the pin, with the target's pin settings."""
        for name in PIN_SETTINGS:
            if request.settings.get(name):
                body[name] = request.settings[name]
        response = await send(
            self.http,
            self.http.build_request(
                "POST",
                f"{self.api}/v5/pins",
                json=body,
                headers=self.bearer(request),
            ),
        )
        if isinstance(response, PublishOutcome):
            return response
        if not response.is_success:
            return failure(response)
        pin_id = json_object(response).get("id")
        if not isinstance(pin_id, str) or not pin_id:
            return PublishOutcome(
                Result.UNKNOWN,
                http_status=response.status_code,
                message=f"answered without a pin id: {excerpt(response)}",
            )
        return PublishOutcome(
            Result.PUBLISHED,
            platform_post_id=pin_id,
            url=pin_url(pin_id),
            http_status=response.status_code,
        )

    async def refresh(self, request: PublishRequest) -> RefreshedTokens | str | PublishOutcome:
        """Trade the refresh token at `/v5/oauth/token`. The answer carries a refresh token
        (continuous refresh), which replaces the old one; without one the old one is kept."""
        if not request.refresh_token:
            return "no Pinterest refresh token; the account must be connected again"
        client_id = self.context.app_secret(request, "pinterest", "client_id")
        client_secret = self.context.app_secret(request, "pinterest", "client_secret")
        if not client_id or not client_secret:
            return "no Pinterest client_id/client_secret to refresh with"
        pair = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
        response = await send(
            self.http,
            self.http.build_request(
                "POST",
                f"{self.oauth}/v5/oauth/token",
                data={"grant_type": "refresh_token", "refresh_token": request.refresh_token},
                headers={"authorization": f"Basic {pair}"},
            ),
        )
        if isinstance(response, PublishOutcome):
            return response  # the token endpoint could not be reached: try again later
        if response.status_code == 429 or response.status_code >= 500:
            return classify_http(response)
        data = json_object(response)
        if not response.is_success:
            reason = data.get("message") or excerpt(response, 200)
            return f"refresh refused with HTTP {response.status_code}: {reason}"
        access = data.get("access_token")
        lifetime = data.get("expires_in")
        if not isinstance(access, str) or not access:
            return f"refresh answer without an access token: {excerpt(response, 200)}"
        expires_at = None
        if isinstance(lifetime, int | float):
            expires_at = datetime.now(UTC) + timedelta(seconds=float(lifetime))
        refresh = data.get("refresh_token")
        return RefreshedTokens(
            access,
            refresh if isinstance(refresh, str) and refresh else request.refresh_token,
            expires_at,
        )


def create(context: PlatformContext) -> PinterestClient:
    return PinterestClient(context)
