"""TikTok: photo posts through the Content Posting API (direct post, photos pulled from their
URLs), and token refresh.

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

Video posts (`/v2/post/publish/video/init/`, pulled from a URL or uploaded in chunks) are not
made here: a post whose media is a video reaches TikTok as a photo post and FAILS there.
TikTok has no replies: a later part of a thread is a photo post of its own.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

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

API = "https://open.tiktokapis.com"
WEB = "https://www.tiktok.com"
CREATOR_INFO = "/v2/post/publish/creator_info/query/"
CONTENT_INIT = "/v2/post/publish/content/init/"
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
    """Makes photo posts on one creator's account; refreshes its tokens."""

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

    async def publish(self, request: PublishRequest) -> PublishOutcome:
        deadline = asyncio.get_running_loop().time() + self.max_wait
        body = self.photo_post(request)
        if isinstance(body, PublishOutcome):
            return body
        privacy = body["post_info"]["privacy_level"]
        allowed = await self.privacy_levels(request)
        if isinstance(allowed, PublishOutcome):
            return allowed
        if privacy not in allowed:
            return refused(
                "privacy_level_option_mismatch",
                f"the TikTok account may not post with privacy_level {privacy} today; it may "
                f"with {', '.join(allowed) or 'none'}",
            )
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

    async def privacy_levels(self, request: PublishRequest) -> list[str] | PublishOutcome:
        """The creator's `privacy_level_options`, or the outcome when they could not be had.
        Nothing is posted by this call, so an unanswered one is only retried."""
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
        return [str(option) for option in options]

    async def wait(
        self, request: PublishRequest, publish_id: str, deadline: float
    ) -> PublishOutcome:
        """Poll the publish until it is final or `deadline` (the loop's clock) has passed:
        UNKNOWN then."""
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
                last = f"still {status or 'without a status'}"
            if loop.time() + self.poll_interval > deadline:
                return self.lost(publish_id, f"{last} after {self.max_wait:g} s")
            await asyncio.sleep(self.poll_interval)

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
        if isinstance(response, PublishOutcome):
            return response  # the token endpoint could not be reached: try again later
        if response.status_code == 429 or response.status_code >= 500:
            return classify_http(response)
        data = json_object(response)
        access = data.get("access_token")
        if not response.is_success or not isinstance(access, str) or not access:
            reason = data.get("error_description") or data.get("error") or excerpt(response, 200)
            return f"refresh refused with HTTP {response.status_code}: {reason}"
        lifetime = data.get("expires_in")
        expires_at = None
        if isinstance(lifetime, int | float) and not isinstance(lifetime, bool):
            expires_at = datetime.now(UTC) + timedelta(seconds=float(lifetime))
        refresh = data.get("refresh_token")
        return RefreshedTokens(
            access,
            refresh if isinstance(refresh, str) and refresh else request.refresh_token,
            expires_at,
        )


def create(context: PlatformContext) -> TikTokClient:
    return TikTokClient(context)
