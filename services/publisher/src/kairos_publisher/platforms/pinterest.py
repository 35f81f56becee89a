"""Pinterest: an image pin on a board through API v5 (`POST /v5/pins`), and token refresh.

Credentials read: `access_token` (sent as Bearer), `page_id` (the board the pin is saved to,
digits), `refresh_token` and `expires_at` (the publisher refreshes a day before expiry), and for
refreshing the app's `client_id` and `client_secret` (`extra[...]` of the account, else
`KAIROS_PINTEREST_CLIENT_ID` / `KAIROS_PINTEREST_CLIENT_SECRET`), which Pinterest takes as HTTP
Basic auth (the `basic` security of `/oauth/token`).

A post is one pin: its text is the pin's `description`, its one media URL the pin's image
(`media_source` `{"source_type": "image_url", "url": ...}`), which Pinterest fetches itself.
A target's settings add the pin's `title`, `link` and `alt_text`, and `board_id` saves it to
another board than the account's (the api checks them against the catalogue row).
Video pins need media registered and uploaded first (`POST /v5/media`); they are not made here.
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

import base64
import re
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

API = "https://api.pinterest.com"
PIN_URL = "https://www.pinterest.com/pin"
#: `board_id` has the pattern `^\d+$` in `PinCreate`.
BOARD_ID = re.compile(r"[0-9]+")
#: The target settings sent as the `PinCreate` fields of the same name.
PIN_SETTINGS = ("title", "link", "alt_text")
#: Messages of answers that say Pinterest failed on its side and nothing was made.
TRANSIENT = ("could not fetch the image", "something went wrong on our end")


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


class PinterestClient:
    """Saves image pins to the account's board; refreshes its tokens."""

    #: Pinterest access tokens last 30 days (`expires_in` 2592000); a day early leaves room for
    #: a refresh that fails once.
    refresh_margin = timedelta(days=1)

    def __init__(self, context: PlatformContext) -> None:
        self.context = context
        self.http = context.http
        self.api = context.url("pinterest", API)
        self.oauth = context.url("pinterest.oauth", API)

    async def publish(self, request: PublishRequest) -> PublishOutcome:
        board = request.settings.get("board_id") or request.page_id.strip()
        if not BOARD_ID.fullmatch(board):
            return PublishOutcome(
                Result.PERMANENT,
                code="no_board",
                message="neither the target nor the account has a Pinterest board id (digits)",
            )
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
        for name in PIN_SETTINGS:
            if request.settings.get(name):
                body[name] = request.settings[name]
        response = await send(
            self.http,
            self.http.build_request(
                "POST",
                f"{self.api}/v5/pins",
                json=body,
                headers={"authorization": f"Bearer {request.access_token}"},
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
