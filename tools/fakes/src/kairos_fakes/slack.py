"""A fake Slack Web API: `chat.postMessage`, `chat.getPermalink`, `oauth.v2.access`, and the file
upload of `files.getUploadURLExternal`, the upload URL, `files.completeUploadExternal` and
`files.info`.

As Slack answers: HTTP 200 with `{"ok": true, ...}` or `{"ok": false, "error": "<code>"}`; rate
limits are HTTP 429 with `Retry-After` and `{"ok": false, "error": "ratelimited"}`. Methods take
JSON or form bodies (and the query string); the token comes as `Authorization: Bearer`.

- Tokens: `tokens` issues rotating pairs whose access tokens last 12 hours; an expired one gets
  `token_expired`, a revoked one `token_revoked`, none `not_authed`. Unknown tokens are accepted
  (for `make dev`). `oauth.v2.access` trades a refresh token once (`invalid_refresh_token` after),
  and wants a client id and secret (`client_id`/`client_secret` if set, else any).
- Channels: made up on first use; `archive(id)` gives `is_archived`, `leave(id)` `not_in_channel`,
  and ids in `absent` `channel_not_found`.
- Validation: `no_text` without text or blocks, `msg_too_long` above 40,000 characters,
  `invalid_blocks` for blocks other than valid sections (text up to 3,000) and images (http(s)
  `image_url` and `alt_text`), or more than 50.
- `ts` values are `"<seconds>.<6 digits>"`, unique and increasing. Slack threads a reply to a
  reply under that reply's root, and so does the fake: each record in `posts` has the
  `thread_ts` as sent and the `root` it really landed under ("" for a top-level message).

Files (docs.slack.dev reference of files.getUploadURLExternal and files.completeUploadExternal,
whose error codes are in slack-ruby/slack-api-ref methods/files/*.json):
- `files.getUploadURLExternal` takes `filename` and `length` as form fields or query (a JSON body
  is `invalid_arguments`, as reported of the real method in Octember/earshot#10); a length of 0
  is `missing_argument`, one over `file_limit` (1 GB unless set) `file_upload_size_restricted`.
  It answers `{"ok": true, "upload_url", "file_id"}`; the URL is this fake's `/upload/v1/<ticket>`.
- The upload URL takes the bytes raw or as multipart/form-data (any one file field): "Slack will
  return HTTP 200 if the upload is successful; a non-200 response indicates a failure". The
  200's body is `OK - <length>` (as recorded in slackapi/python-slack-sdk#1277). Bytes that are
  not the announced length get a 400 (the fake's own words). No token is needed: the ticket is
  the secret.
- `files.completeUploadExternal` takes `files` (a JSON array of `{"id", "title"}`, as a form field
  or in a JSON body), `channel_id`, `initial_comment` and `thread_ts`, and posts one message with
  the file(s) in the channel (it is then in `posts`, with `files`). A file id never uploaded, or
  already completed, is `file_not_found`; a missing channel `invalid_channel`, an archived one or
  one the app left `posting_to_channel_denied`. The answer lists the files with empty `shares`:
  Slack shares them asynchronously (slackapi/bolt-js#2115: "in many cases, the API response does
  not yet have complete shares in it ... consider polling the files.info API").
- `files.info` (`file`) answers `{"ok": true, "file": {...}}`; its `shares` stay empty for the
  first `share_after_polls` calls after the completion (1 unless set), then hold
  `{"public"|"private": {<channel>: [{"ts", "channel_name", "team_id", "reply_users",
  "reply_count", "thread_ts"?}]}}` (the file object's shape: docs.slack.dev file object; `C`
  channels are public, others private). An unknown id is `file_not_found`.
- `uploads` keeps each upload (ticket, file id, name, announced length, bytes, state).

Fault operations: "create" (postMessage), "permalink" and "refresh"; "upload_url"
(getUploadURLExternal), "upload" (the upload URL: server_error is a 500 and nothing kept, hang
keeps the bytes and never answers), "complete" (completeUploadExternal, as "create") and "info"
(files.info). rate_limit: the 429 with
`Retry-After` = seconds (rounded up); server_error: an HTTP 503 with an HTML page, as Slack's
edge answers when it is down (nothing posted; slack-ruby/slack-ruby-client#307 "with a 500 you
don't get JSON", jeremykenedy/slack#4 "Slack API sometimes responds with 503"; the page's words
are the fake's own); reject: `restricted_action`, or the fault's message as the code; hang: post,
then never answer; expire_token: `token_expired`.

A `reject` naming `internal_error` or `fatal_error` posts the message before answering the
error: Slack's error list says of both "It's possible some aspect of the operation succeeded
before the error was raised", and the fake plays the case where it did. `request_timeout` ("the
POST data was either missing or truncated") posts nothing. The error texts are from Slack's
chat.postMessage reference (slack-ruby/slack-api-ref methods/chat/chat.postMessage.json).
"""

from __future__ import annotations

import json
import math
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from aiohttp import web

from kairos_fakes._multipart import parts
from kairos_fakes.base import FakeServer, Tokens, bearer

TEXT_LIMIT = 40000
SECTION_LIMIT = 3000
BLOCK_LIMIT = 50
#: Access tokens last 12 hours with token rotation.
LIFETIME = 12 * 3600.0
#: Error codes after which, as Slack warns, the message may have been posted all the same.
POSTED_ANYWAY = frozenset({"internal_error", "fatal_error"})
#: What the fake's 503 page says (Slack's own outage page is not recorded).
UNAVAILABLE_PAGE = (
    "<html><head><title>Slack is temporarily unavailable</title></head>"
    "<body><h1>503 Service Unavailable</h1></body></html>"
)


#: The largest file Slack takes: 1 GB (Slack's help centre, "File upload limits").
FILE_LIMIT = 1_000_000_000


@dataclass
class Channel:
    id: str
    archived: bool = False
    member: bool = True


@dataclass
class Upload:
    """One file's way through the external upload."""

    ticket: str
    file_id: str
    filename: str
    length: int
    token: str
    content: bytes | None = field(default=None, repr=False)
    content_type: str = ""
    title: str = ""
    #: "ticketed", "uploaded", then "completed".
    state: str = "ticketed"
    #: Where the completion shared it: (channel, message ts, thread root or "").
    share: tuple[str, str, str] | None = None
    #: `files.info` calls since the completion.
    polls: int = 0


def ok(**fields: Any) -> web.Response:
    return web.json_response({"ok": True, **fields})


def refuse(code: str, **fields: Any) -> web.Response:
    return web.json_response({"ok": False, "error": code, **fields})


class SlackFake(FakeServer):
    name = "slack"
    default_port: ClassVar[int] = 9110

    def __init__(self) -> None:
        self.tokens = Tokens(prefix="xoxe.xoxb-1", rotating=True)
        self.channels: dict[str, Channel] = {}
        self.absent: set[str] = set()
        self.posts: list[dict[str, Any]] = []
        self.client_id = ""
        self.client_secret = ""
        self.last_ts = 0.0
        self.uploads: list[Upload] = []
        #: The largest file taken (a workspace may restrict it below Slack's 1 GB).
        self.file_limit = FILE_LIMIT
        #: `files.info` calls after a completion that still show no shares.
        self.share_after_polls = 1
        super().__init__()

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/api/chat.postMessage", self.post_message)
        router.add_route("*", "/api/chat.getPermalink", self.get_permalink)
        router.add_post("/api/oauth.v2.access", self.oauth_access)
        router.add_post("/api/files.getUploadURLExternal", self.get_upload_url)
        router.add_post("/upload/v1/{ticket}", self.upload)
        router.add_post("/api/files.completeUploadExternal", self.complete_upload)
        router.add_route("*", "/api/files.info", self.file_info)

    def archive(self, channel_id: str) -> None:
        self.channels.setdefault(channel_id, Channel(channel_id)).archived = True

    def leave(self, channel_id: str) -> None:
        self.channels.setdefault(channel_id, Channel(channel_id)).member = False

    async def arguments(self, request: web.Request) -> dict[str, Any]:
        args: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                body = None
            if isinstance(body, dict):
                args.update(body)
        else:  # form fields (the recording middleware already read the body)
            args.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        if isinstance(args.get("blocks"), str):
            try:
                args["blocks"] = json.loads(args["blocks"])
            except ValueError:
                args["blocks"] = None
        return args

    def authorize(self, request: web.Request) -> web.Response | None:
        """Slack's answer to a missing or dead token, or None for a good one."""
        state = self.tokens.state(bearer(request))
        if state == "missing":
            return refuse("not_authed")
        if state == "expired":
            return refuse("token_expired")
        if state == "revoked":
            return refuse("token_revoked")
        return None

    def channel(self, channel_id: str) -> Channel | web.Response:
        if not channel_id or channel_id in self.absent:
            return refuse("channel_not_found")
        found = self.channels.setdefault(channel_id, Channel(channel_id))
        if found.archived:
            return refuse("is_archived")
        if not found.member:
            return refuse("not_in_channel")
        return found

    def new_ts(self) -> str:
        """A message timestamp: microseconds since the epoch, unique and increasing."""
        self.last_ts = max(round(time.time(), 6), round(self.last_ts + 0.000001, 6))
        return f"{self.last_ts:.6f}"

    def faulted(self, kind: str, seconds: float, message: str) -> web.Response:
        if kind == "rate_limit":
            return web.json_response(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": str(max(1, math.ceil(seconds)))},
            )
        if kind == "server_error":
            return web.Response(status=503, text=UNAVAILABLE_PAGE, content_type="text/html")
        if kind == "expire_token":
            return refuse("token_expired")
        return refuse(message or "restricted_action")

    @staticmethod
    def invalid(args: dict[str, Any]) -> str:
        """The error code of a message Slack would not post, or ""."""
        text = args.get("text")
        found = args.get("blocks")
        if not text and not found:
            return "no_text"
        if isinstance(text, str) and len(text) > TEXT_LIMIT:
            return "msg_too_long"
        if found is None:
            return ""
        if not isinstance(found, list) or len(found) > BLOCK_LIMIT:
            return "invalid_blocks"
        for block in found:
            if not isinstance(block, dict):
                return "invalid_blocks"
            if block.get("type") == "section":
                inner = block.get("text")
                if not isinstance(inner, dict) or inner.get("type") not in ("mrkdwn", "plain_text"):
                    return "invalid_blocks"
                if not 0 < len(str(inner.get("text") or "")) <= SECTION_LIMIT:
                    return "invalid_blocks"
            elif block.get("type") == "image":
                url = block.get("image_url")
                if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                    return "invalid_blocks"
                if not block.get("alt_text"):
                    return "invalid_blocks"
            else:
                return "invalid_blocks"
        return ""

    def root_of(self, channel_id: str, thread_ts: str) -> str:
        """The thread a reply to `thread_ts` lands in: a reply's own root, else `thread_ts`."""
        for post in self.posts:
            if post["channel"] == channel_id and post["ts"] == thread_ts:
                return str(post["root"] or post["ts"])
        return thread_ts

    async def post_message(self, request: web.Request) -> web.Response:
        refused = self.authorize(request)
        if refused is not None:
            return refused
        args = await self.arguments(request)
        channel = self.channel(str(args.get("channel") or ""))
        if isinstance(channel, web.Response):
            return channel
        fault = self.fault("create")
        posted_anyway = (
            fault is not None and fault.kind == "reject" and (fault.message in POSTED_ANYWAY)
        )
        if fault is not None and fault.kind != "hang" and not posted_anyway:
            return self.faulted(fault.kind, fault.seconds, fault.message)
        code = self.invalid(args)
        if code:
            return refuse(code)
        thread_ts = str(args.get("thread_ts") or "")
        post = {
            "channel": channel.id,
            "ts": self.new_ts(),
            "text": args.get("text") or "",
            "blocks": args.get("blocks"),
            "thread_ts": thread_ts,
            "root": self.root_of(channel.id, thread_ts) if thread_ts else "",
        }
        self.posts.append(post)
        if fault is not None and posted_anyway:
            return refuse(fault.message)
        if fault is not None:
            return await self.hang()
        message: dict[str, Any] = {
            "type": "message",
            "subtype": "bot_message",
            "text": post["text"],
            "ts": post["ts"],
            "bot_id": "B0KAIROS",
        }
        if post["blocks"]:
            message["blocks"] = post["blocks"]
        if post["root"]:
            message["thread_ts"] = post["root"]
        return ok(channel=channel.id, ts=post["ts"], message=message)

    async def get_permalink(self, request: web.Request) -> web.Response:
        refused = self.authorize(request)
        if refused is not None:
            return refused
        fault = self.fault("permalink")
        if fault is not None:
            return (
                await self.hang()
                if fault.kind == "hang"
                else self.faulted(fault.kind, fault.seconds, fault.message)
            )
        args = await self.arguments(request)
        channel, ts = str(args.get("channel") or ""), str(args.get("message_ts") or "")
        if channel in self.absent or channel not in self.channels:
            return refuse("channel_not_found")
        post = next((p for p in self.posts if p["channel"] == channel and p["ts"] == ts), None)
        if post is None:
            return refuse("message_not_found")
        link = f"https://kairos-fake.slack.com/archives/{channel}/p{ts.replace('.', '')}"
        if post["root"]:
            link += f"?thread_ts={post['root']}&cid={channel}"
        return ok(channel=channel, permalink=link)

    async def oauth_access(self, request: web.Request) -> web.Response:
        args = await self.arguments(request)
        fault = self.fault("refresh")
        if fault is not None:
            return (
                await self.hang()
                if fault.kind == "hang"
                else self.faulted(fault.kind, fault.seconds, fault.message)
            )
        client_id, secret = str(args.get("client_id") or ""), str(args.get("client_secret") or "")
        if not client_id or (self.client_id and client_id != self.client_id):
            return refuse("invalid_client_id")
        if not secret or (self.client_secret and secret != self.client_secret):
            return refuse("bad_client_secret")
        if args.get("grant_type") != "refresh_token":
            return refuse("invalid_grant_type")
        pair = self.tokens.use_refresh(str(args.get("refresh_token") or ""), LIFETIME)
        if pair is None:
            return refuse("invalid_refresh_token")
        access, refresh = pair
        return ok(
            app_id="A0KAIROS",
            scope="chat:write",
            token_type="bot",
            access_token=access,
            refresh_token=refresh,
            expires_in=int(LIFETIME),
            bot_user_id="U0KAIROS",
            team={"id": "T0KAIROS", "name": "Kairos"},
            enterprise=None,
            is_enterprise_install=False,
        )

    def faulted_call(self, operation: str) -> web.Response | None:
        """The answer a queued fault gives instead of the call, or None (a hang is handled by
        the caller, after doing the work)."""
        fault = self.fault(operation)
        if fault is None:
            return None
        if fault.kind == "hang":
            self.faults[operation].appendleft(fault)  # the caller takes it after the work
            return None
        return self.faulted(fault.kind, fault.seconds, fault.message)

    async def get_upload_url(self, request: web.Request) -> web.Response:
        refused = self.authorize(request)
        if refused is not None:
            return refused
        if request.content_type == "application/json":
            return refuse("invalid_arguments")
        faulted = self.faulted_call("upload_url")
        if faulted is not None:
            return faulted
        args = await self.arguments(request)
        filename, length = str(args.get("filename") or ""), str(args.get("length") or "")
        if not filename or not length.isdigit():
            return refuse("invalid_arguments")
        if int(length) == 0:
            return refuse("missing_argument")
        if int(length) > self.file_limit:
            return refuse("file_upload_size_restricted")
        upload = Upload(
            ticket=secrets.token_urlsafe(24),
            file_id="F" + secrets.token_hex(5).upper(),
            filename=filename,
            length=int(length),
            token=bearer(request),
        )
        self.uploads.append(upload)
        if self.fault("upload_url") is not None:
            return await self.hang()
        return ok(upload_url=f"{self.url}/upload/v1/{upload.ticket}", file_id=upload.file_id)

    async def upload(self, request: web.Request) -> web.Response:
        ticket = request.match_info["ticket"]
        upload = next((u for u in self.uploads if u.ticket == ticket), None)
        if upload is None or upload.state == "completed":
            return web.Response(status=404, text="Not Found")
        fault = self.fault("upload")
        if fault is not None and fault.kind != "hang":
            return web.Response(status=500, text="Internal Server Error")
        body = await request.read()
        content, content_type = body, request.content_type
        form = parts(request.headers.get("content-type", ""), body)
        if form is not None:
            files = [part for part in form.values() if part.is_file]
            if len(files) != 1:
                return web.Response(status=400, text="expected one file")
            content, content_type = files[0].content, files[0].content_type
        if len(content) != upload.length:
            return web.Response(
                status=400, text=f"received {len(content)} bytes, not the {upload.length} announced"
            )
        upload.content, upload.content_type, upload.state = content, content_type, "uploaded"
        if fault is not None:
            return await self.hang()
        return web.Response(text=f"OK - {len(content)}", content_type="text/plain")

    async def complete_upload(self, request: web.Request) -> web.Response:
        refused = self.authorize(request)
        if refused is not None:
            return refused
        args = await self.arguments(request)
        listed = args.get("files")
        if isinstance(listed, str):
            try:
                listed = json.loads(listed)
            except ValueError:
                return refuse("invalid_arguments")
        if not isinstance(listed, list) or not listed:
            return refuse("invalid_arguments")
        chosen: list[Upload] = []
        for item in listed:
            wanted = item.get("id") if isinstance(item, dict) else None
            found = next((u for u in self.uploads if u.file_id == wanted), None)
            if found is None or found.state != "uploaded":
                return refuse("file_not_found")
            chosen.append(found)
            found.title = str(item.get("title") or found.filename)
        channel_id = str(args.get("channel_id") or "")
        if not channel_id or channel_id in self.absent:
            return refuse("invalid_channel")
        channel = self.channels.setdefault(channel_id, Channel(channel_id))
        if channel.archived or not channel.member:
            return refuse("posting_to_channel_denied")
        fault = self.fault("complete")
        posted_anyway = (
            fault is not None and fault.kind == "reject" and (fault.message in POSTED_ANYWAY)
        )
        if fault is not None and fault.kind != "hang" and not posted_anyway:
            return self.faulted(fault.kind, fault.seconds, fault.message)
        thread_ts = str(args.get("thread_ts") or "")
        post = {
            "channel": channel.id,
            "ts": self.new_ts(),
            "text": str(args.get("initial_comment") or ""),
            "blocks": None,
            "thread_ts": thread_ts,
            "root": self.root_of(channel.id, thread_ts) if thread_ts else "",
            "files": [u.file_id for u in chosen],
        }
        self.posts.append(post)
        for upload in chosen:
            upload.state = "completed"
            upload.share = (channel.id, str(post["ts"]), str(post["root"]))
        if fault is not None and posted_anyway:
            return refuse(fault.message)
        if fault is not None:
            return await self.hang()
        return ok(files=[self.file_object(u, shared=False) for u in chosen])

    async def file_info(self, request: web.Request) -> web.Response:
        refused = self.authorize(request)
        if refused is not None:
            return refused
        faulted = self.faulted_call("info")
        if faulted is not None:
            return faulted
        args = await self.arguments(request)
        wanted = str(args.get("file") or "")
        upload = next((u for u in self.uploads if u.file_id == wanted), None)
        if upload is None or upload.state == "ticketed":
            return refuse("file_not_found")
        if upload.share is not None:
            upload.polls += 1
        shared = upload.share is not None and upload.polls > self.share_after_polls
        if self.fault("info") is not None:
            return await self.hang()
        return ok(file=self.file_object(upload, shared=shared))

    def file_object(self, upload: Upload, *, shared: bool) -> dict[str, Any]:
        """The file as Slack describes it; `shares` only once it is shared."""
        content = upload.content or b""
        kind = upload.filename.rpartition(".")[2].lower()
        found: dict[str, Any] = {
            "id": upload.file_id,
            "created": int(time.time()),
            "timestamp": int(time.time()),
            "name": upload.filename,
            "title": upload.title or upload.filename,
            "mimetype": upload.content_type,
            "filetype": kind,
            "pretty_type": kind.upper(),
            "user": "U0KAIROS",
            "mode": "hosted",
            "editable": False,
            "is_external": False,
            "external_type": "",
            "size": len(content),
            "url_private": f"https://files.slack.com/files-pri/T0KAIROS-{upload.file_id}/"
            f"{upload.filename}",
            "permalink": f"https://kairos-fake.slack.com/files/U0KAIROS/{upload.file_id}/"
            f"{upload.filename}",
            "shares": {},
            "channels": [],
            "groups": [],
            "ims": [],
            "comments_count": 0,
        }
        if shared and upload.share is not None:
            channel, ts, root = upload.share
            entry: dict[str, Any] = {
                "reply_users": [],
                "reply_users_count": 0,
                "reply_count": 0,
                "ts": ts,
                "channel_name": channel.lower(),
                "team_id": "T0KAIROS",
                "share_user_id": "U0KAIROS",
            }
            if root:
                entry["thread_ts"] = root
            visibility = "public" if channel.startswith("C") else "private"
            found["shares"] = {visibility: {channel: [entry]}}
            found["channels" if visibility == "public" else "groups"] = [channel]
        return found


Fake = SlackFake
