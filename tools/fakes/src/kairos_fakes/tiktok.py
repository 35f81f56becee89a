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
- `POST /v2/oauth/token/`, form `client_key`, `client_secret`, `grant_type=refresh_token`,
  `refresh_token` (the refresh page). Answered with `open_id`, `scope`, `access_token`,
  `expires_in` (7,200: two hours), `refresh_token`, `refresh_expires_in` (180 days) and
  `token_type` "Bearer". Refresh tokens rotate ("The previous refresh token stops working once
  a new one is issued"). The refusal's body is not on the pages read: this fake answers 400
  `{"error", "error_description", "log_id"}` (OAuth's error form, RFC 6749 §5.2, with TikTok's
  log id), its own choice.

Fault operations: "creator_info", "create" (the init), "status", "process" (the pulling after
init) and "refresh". `rate_limit` answers the 429 (TikTok documents no wait header, so none is
sent and a fault's `seconds` is unused), `server_error` the 500 `internal_error`, `reject` the
error whose code is the fault's message (`spam_risk_too_many_posts` when none is given) with its
status from the photo page's table, `expire_token` expires the presented token and answers 401
`access_token_invalid`, `hang` answers nothing (on "create" after the publish was made, so the
post goes out). On "process", `reject` FAILS the post with the fault's message as `fail_reason`.
On "refresh", `reject` and `expire_token` refuse the refresh token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import parse_qs

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


@dataclass
class Publish:
    """One init's progress, as the status endpoint shows it."""

    publish_id: str
    request: dict[str, Any]
    status: str = "PROCESSING_DOWNLOAD"
    fail_reason: str = ""
    post_ids: list[int] = field(default_factory=list)


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
        #: How long after init the photos are pulled (a post stays PROCESSING_DOWNLOAD).
        self.processing_seconds = 0.0
        #: When set, the token endpoint checks the app's credentials against these.
        self.client_key = ""
        self.client_secret = ""
        self.work: set[asyncio.Task[None]] = set()

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v2/post/publish/creator_info/query/", self.creator_info)
        router.add_post("/v2/post/publish/content/init/", self.init)
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
                "comment_disabled": False,
                "duet_disabled": False,
                "stitch_disabled": True,
                "max_video_post_duration_sec": 300,
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
        task = asyncio.create_task(self.process(publish))
        self.work.add(task)
        task.add_done_callback(self.work.discard)
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
