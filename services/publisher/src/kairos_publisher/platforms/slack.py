"""Slack through the Web API: `POST /api/chat.postMessage`, then `chat.getPermalink` for the URL.

Credentials read: `access_token` (a bot `xoxb-` or user `xoxp-` token, sent as Bearer), `chat_id`
(the channel id), and, when the app has token rotation on, `refresh_token` and `expires_at`
(access tokens then last 12 hours). Refreshing also needs the app's `client_id` and
`client_secret` (`extra[...]` or `KAIROS_SLACK_CLIENT_ID` / `KAIROS_SLACK_CLIENT_SECRET`).

Body: `{"channel", "text"}`; with images, `blocks` carry the text as mrkdwn sections (3,000
characters each) and one `image` block per URL (Slack fetches them), while `text` stays as the
notification and accessibility fallback.

Threads: Slack threads hang off one root message, and `thread_ts` must be the root's `ts`, never
a reply's. So `platform_post_id` is `<ts>` for a top-level message and `<root_ts>/<ts>` for a
reply, and a part replying to either form goes into the root's thread: every later part of a
thread lands in part 1's thread.

Outcomes: Slack answers errors with HTTP 200 and `{"ok": false, "error": "<code>"}`.
`token_expired` and the other auth codes are AUTH (the publisher then refreshes, where it can);
content and channel codes are PERMANENT with the code. `internal_error` and `fatal_error` are
UNKNOWN, never sent again automatically: Slack's error list says of both "It's possible some
aspect of the operation succeeded before the error was raised", so the message may be in the
channel. `request_timeout` ("the POST data was either missing or truncated"), `rate_limited`
("posted too many messages") and `service_unavailable` posted nothing: RETRYABLE, as is an HTTP
5xx from Slack's edge (a page, not the JSON of a method). HTTP 429 (`ratelimited`) waits
`Retry-After`, which also blocks the account. The permalink is a second call: if it fails the
post is still PUBLISHED, with URL "".

Source of the error meanings: Slack's chat.postMessage reference, "Errors" (docs.slack.dev
reference/methods/chat.postMessage; the same texts in slack-ruby/slack-api-ref
methods/chat/chat.postMessage.json and SlackKit's priv/docs/common_errors.json).

Refresh: `POST /api/oauth.v2.access` (form: grant_type=refresh_token, refresh_token, client_id,
client_secret) returns a new access token and a new refresh token; the old one is revoked.
"""

from __future__ import annotations

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
    retry_after,
    send,
)

#: Most characters in one section block's text.
SECTION_LIMIT = 3000
AUTH_ERRORS = frozenset(
    {
        "not_authed",
        "invalid_auth",
        "token_revoked",
        "token_expired",
        "account_inactive",
        "missing_scope",
        "no_permission",
    }
)
#: Codes after which nothing was posted. `request_timeout`: "The method was called via a POST
#: request, but the POST data was either missing or truncated"; `rate_limited`: "Application has
#: posted too many messages"; `service_unavailable`: "The service is temporarily unavailable".
RETRYABLE_ERRORS = frozenset({"request_timeout", "service_unavailable", "rate_limited"})
#: Codes after which the message may exist. Slack's list says of both "It's possible some aspect
#: of the operation succeeded before the error was raised" (`internal_error`: "likely due to a
#: transient issue on our end"; `fatal_error`: "a catastrophic error"), so sending again could
#: post twice: UNKNOWN, which is never re-sent automatically.
MAYBE_POSTED = frozenset({"internal_error", "fatal_error"})


def blocks(request: PublishRequest) -> list[dict[str, Any]]:
    """The text as sections, then one image block per URL."""
    text = request.content
    found: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": text[i : i + SECTION_LIMIT]}}
        for i in range(0, len(text), SECTION_LIMIT)
    ]
    count = len(request.media_urls)
    for number, url in enumerate(request.media_urls, 1):
        alt = "Image" if count == 1 else f"Image {number} of {count}"
        found.append({"type": "image", "image_url": url, "alt_text": alt})
    return found


def answer(response: httpx.Response) -> dict[str, Any] | None:
    """The JSON object Slack answered, if it did."""
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def classify(response: httpx.Response, data: dict[str, Any] | None) -> PublishOutcome:
    """A call that did not post: by HTTP status (429, 5xx), else by Slack's `error` code."""
    status = response.status_code
    if status == 429:
        wait = retry_after(response)
        return PublishOutcome(
            Result.RETRYABLE,
            http_status=status,
            code=str((data or {}).get("error") or "ratelimited"),
            message=excerpt(response),
            retry_not_before=wait,
            blocked_until=wait,
        )
    if status != 200 or data is None:
        return classify_http(response)
    code = str(data.get("error") or "unknown_error")
    message = excerpt(response)
    if code in AUTH_ERRORS:
        result = Result.AUTH
    elif code in RETRYABLE_ERRORS:
        result = Result.RETRYABLE
    elif code in MAYBE_POSTED:
        result = Result.UNKNOWN
    else:
        result = Result.PERMANENT
    return PublishOutcome(result, http_status=status, code=code, message=message)


class SlackClient:
    """Posts each part to the account's channel, threading later parts under the first."""

    refresh_margin = timedelta(minutes=30)

    def __init__(self, context: PlatformContext) -> None:
        self.context = context
        self.http = context.http
        self.base = context.url("slack", "https://slack.com")

    async def publish(self, request: PublishRequest) -> PublishOutcome:
        if not request.chat_id:
            return PublishOutcome(Result.PERMANENT, code="no_channel", message="no channel id")
        root = request.reply_to.partition("/")[0]
        body: dict[str, Any] = {"channel": request.chat_id, "text": request.content}
        if request.media_urls:
            body["blocks"] = blocks(request)
        if root:
            body["thread_ts"] = root
        headers = {"authorization": f"Bearer {request.access_token}"}
        outgoing = self.http.build_request(
            "POST", f"{self.base}/api/chat.postMessage", json=body, headers=headers
        )
        response = await send(self.http, outgoing)
        if isinstance(response, PublishOutcome):
            return response
        data = answer(response)
        if response.status_code != 200 or data is None or data.get("ok") is not True:
            return classify(response, data)
        ts = str(data.get("ts") or "")
        if not ts:
            return PublishOutcome(
                Result.UNKNOWN,
                http_status=response.status_code,
                message=f"posted, but the answer has no ts: {excerpt(response)}",
            )
        channel = str(data.get("channel") or request.chat_id)
        return PublishOutcome(
            Result.PUBLISHED,
            platform_post_id=f"{root}/{ts}" if root else ts,
            url=await self.permalink(request.access_token, channel, ts),
            http_status=response.status_code,
        )

    async def permalink(self, token: str, channel: str, ts: str) -> str:
        """The message's URL, or "" if Slack will not say (the post exists either way)."""
        outgoing = self.http.build_request(
            "POST",
            f"{self.base}/api/chat.getPermalink",
            data={"channel": channel, "message_ts": ts},
            headers={"authorization": f"Bearer {token}"},
        )
        response = await send(self.http, outgoing)
        if isinstance(response, PublishOutcome):
            return ""
        data = answer(response)
        if response.status_code != 200 or data is None or data.get("ok") is not True:
            return ""
        return str(data.get("permalink") or "")

    async def refresh(self, request: PublishRequest) -> RefreshedTokens | str | PublishOutcome:
        """Trade the refresh token for new tokens (token rotation; the old one is revoked)."""
        if not request.refresh_token:
            return "no refresh token (the Slack app does not rotate tokens)"
        form = {
            "grant_type": "refresh_token",
            "refresh_token": request.refresh_token,
            "client_id": self.context.app_secret(request, "slack", "client_id"),
            "client_secret": self.context.app_secret(request, "slack", "client_secret"),
        }
        if not form["client_id"] or not form["client_secret"]:
            return "no Slack client_id/client_secret configured for refresh"
        outgoing = self.http.build_request("POST", f"{self.base}/api/oauth.v2.access", data=form)
        response = await send(self.http, outgoing)
        if isinstance(response, PublishOutcome):
            return response  # Slack could not be reached: the token may refresh later
        data = answer(response)
        if response.status_code != 200 or data is None or data.get("ok") is not True:
            refused = classify(response, data)
            if refused.result in (Result.RETRYABLE, Result.UNKNOWN):
                return refused  # rate-limited or a server error: not a reason to re-authorise
            return f"refresh refused (HTTP {response.status_code}): {excerpt(response, 200)}"
        try:
            expires_at = datetime.now(UTC) + timedelta(seconds=float(data["expires_in"]))
            return RefreshedTokens(
                str(data["access_token"]), str(data["refresh_token"]), expires_at
            )
        except (KeyError, TypeError, ValueError):
            return "refresh answer without tokens"


def create(context: PlatformContext) -> SlackClient:
    return SlackClient(context)
