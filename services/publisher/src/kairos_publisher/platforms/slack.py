"""Slack through the Web API: `POST /api/chat.postMessage`, then `chat.getPermalink` for the URL.

Credentials read: `access_token` (a bot `xoxb-` or user `xoxp-` token, sent as Bearer), `chat_id`
(the channel id), and, when the app has token rotation on, `refresh_token` and `expires_at`
(access tokens then last 12 hours). Refreshing also needs the app's `client_id` and
`client_secret` (`extra[...]` or `KAIROS_SLACK_CLIENT_ID` / `KAIROS_SLACK_CLIENT_SECRET`).

Body: `{"channel", "text"}`; with images, `blocks` carry the text as mrkdwn sections (3,000
characters each) and one `image` block per URL (Slack fetches them), while `text` stays as the
notification and accessibility fallback.

Video: the post's uploaded video is shared into the channel as a file, through Slack's external
upload (docs.slack.dev, files.getUploadURLExternal and files.completeUploadExternal):
1. `files.getUploadURLExternal` (form: `filename`, `length`) answers an `upload_url` and a
   `file_id`;
2. the bytes go to `upload_url` as multipart/form-data (field `filename`), streamed from the
   media store; Slack answers 200 when it has them;
3. `files.completeUploadExternal` (`files: [{"id", "title"}]`, `channel_id`, `initial_comment`
   with the text, `thread_ts` for a reply) shares the file in a message: the public call, so
   `request.stage.publishing()` is awaited just before it. Steps 1 and 2 are safe to redo: an
   error or a lost answer there is RETRYABLE (an internal_error too, since nothing is public).
Slack shares the file asynchronously, so the answer rarely names the message; its `ts` is read
from `files.info` (`shares.public|private[<channel>][0].ts`), polled after pauses of 1, 2, 4, 8
and 15 seconds (`SHARE_WAITS`, 30 s in all, each through `request.stage.pause`), as Slack's SDK
maintainers advise (slackapi/bolt-js#2115). Once `ts` is known the post is `<ts>` (or
`<root>/<ts>`) with its permalink. When the share is still not visible at the bound (or
`files.info` cannot be read, e.g. without the `files:read` scope), the post is PUBLISHED all the
same, since Slack accepted it, as the file's id `F…` with the file's permalink; a later part
replying to it looks the message up again then (`files.info`), and is RETRYABLE, with nothing
sent, while Slack still has not shared it.

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

from kairos_publisher.media import StoredMedia
from kairos_publisher.platforms.base import (
    PlatformContext,
    PublishOutcome,
    PublishRequest,
    RefreshedTokens,
    Result,
    classify_http,
    excerpt,
    nothing_posted,
    retry_after,
    send,
)
from kairos_publisher.upload import multipart, send_upload

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
#: Seconds to wait before each `files.info` look for a shared file's message (30 s in all).
SHARE_WAITS = (1.0, 2.0, 4.0, 8.0, 15.0)


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


def share_ts(file: dict[str, Any], channel: str) -> str:
    """The `ts` of the message a file object says it was shared in, in `channel`, or ""."""
    shares = file.get("shares")
    if not isinstance(shares, dict):
        return ""
    for visibility in ("public", "private"):
        entries = (shares.get(visibility) or {}).get(channel)
        if isinstance(entries, list) and entries and isinstance(entries[0], dict):
            return str(entries[0].get("ts") or "")
    return ""


class SlackClient:
    """Posts each part to the account's channel, threading later parts under the first."""

    refresh_margin = timedelta(minutes=30)

    def __init__(self, context: PlatformContext) -> None:
        self.context = context
        self.http = context.http
        self.media = context.media
        self.base = context.url("slack", "https://slack.com")

    async def publish(self, request: PublishRequest) -> PublishOutcome:
        if not request.chat_id:
            return PublishOutcome(Result.PERMANENT, code="no_channel", message="no channel id")
        root = request.reply_to.partition("/")[0]
        if root.startswith("F"):  # a video part whose message Slack had not shared yet
            found = await self.shared_ts(request, root)
            if not found:
                return PublishOutcome(
                    Result.RETRYABLE,
                    code="file_not_shared",
                    message=f"the part replied to (file {root}) is not shared in a message yet",
                )
            root = found
        video = request.video
        if video is not None:
            return await self.publish_video(request, video, root)
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

    def api(self, request: PublishRequest, method: str, **kwargs: Any) -> httpx.Request:
        """A Web API call with the account's token."""
        headers = {"authorization": f"Bearer {request.access_token}"}
        return self.http.build_request(
            "POST", f"{self.base}/api/{method}", headers=headers, **kwargs
        )

    async def publish_video(
        self, request: PublishRequest, video: StoredMedia, root: str
    ) -> PublishOutcome:
        """Upload the video, share it in the channel with the text, and find its message."""
        ticket = await send_upload(
            self.http,
            self.api(
                request,
                "files.getUploadURLExternal",
                data={"filename": video.filename, "length": str(video.size)},
            ),
        )
        if isinstance(ticket, PublishOutcome):
            return ticket
        data = answer(ticket)
        if ticket.status_code != 200 or data is None or data.get("ok") is not True:
            return nothing_posted(classify(ticket, data))
        upload_url, file_id = str(data.get("upload_url") or ""), str(data.get("file_id") or "")
        if not upload_url.startswith(("https://", "http://")) or not file_id:
            return PublishOutcome(
                Result.RETRYABLE,
                http_status=ticket.status_code,
                code="no_upload_url",
                message=f"files.getUploadURLExternal answered {excerpt(ticket)}",
            )
        body = multipart(self.media, video, "filename")
        uploaded = await send_upload(
            self.http,
            self.http.build_request(
                "POST", upload_url, headers=body.headers, content=body.content()
            ),
        )
        if isinstance(uploaded, PublishOutcome):
            return uploaded
        if uploaded.status_code != 200:
            return nothing_posted(classify_http(uploaded))
        shared: dict[str, Any] = {
            "files": [{"id": file_id, "title": video.filename}],
            "channel_id": request.chat_id,
            "initial_comment": request.content,
        }
        if root:
            shared["thread_ts"] = root
        outgoing = self.api(request, "files.completeUploadExternal", json=shared)
        refused = await request.stage.publishing()
        if refused is not None:
            return refused
        response = await send(self.http, outgoing)
        if isinstance(response, PublishOutcome):
            return response
        data = answer(response)
        if response.status_code != 200 or data is None or data.get("ok") is not True:
            return classify(response, data)
        files = data.get("files")
        first = files[0] if isinstance(files, list) and files else {}
        shared_file: dict[str, Any] = first if isinstance(first, dict) else {}
        ts = share_ts(shared_file, request.chat_id)
        for wait in SHARE_WAITS:
            if ts:
                break
            await request.stage.pause(wait)
            found = await self.file_info(request, file_id)
            if found is None:
                break
            ts = share_ts(found, request.chat_id)
        if not ts:
            return PublishOutcome(
                Result.PUBLISHED,
                platform_post_id=file_id,
                url=str(shared_file.get("permalink") or ""),
                http_status=response.status_code,
                message="shared; Slack had not said in which message yet",
            )
        return PublishOutcome(
            Result.PUBLISHED,
            platform_post_id=f"{root}/{ts}" if root else ts,
            url=await self.permalink(request.access_token, request.chat_id, ts),
            http_status=response.status_code,
        )

    async def file_info(self, request: PublishRequest, file_id: str) -> dict[str, Any] | None:
        """The file as `files.info` describes it, or None when Slack will not say."""
        response = await send(self.http, self.api(request, "files.info", data={"file": file_id}))
        if isinstance(response, PublishOutcome):
            return None
        data = answer(response)
        if response.status_code != 200 or data is None or data.get("ok") is not True:
            return None
        found = data.get("file")
        return found if isinstance(found, dict) else None

    async def shared_ts(self, request: PublishRequest, file_id: str) -> str:
        """The `ts` of the message a file was shared in, in the account's channel, or "" while
        Slack does not say."""
        found = await self.file_info(request, file_id)
        return share_ts(found, request.chat_id) if found is not None else ""

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
