"""A fake Telegram Bot API: `POST /bot<token>/sendMessage`, `/sendPhoto`, `/sendMediaGroup`,
`/sendVideo`.

As Telegram answers: `{"ok":true,"result":<Message or [Message]>}`; errors as
`{"ok":false,"error_code":N,"description":"...","parameters"?:{...}}` with HTTP status N.
Parameters may come as JSON, form fields or the query string (nested objects JSON-encoded).

- The token is the path's `bot<token>`; a revoked one (`fake.tokens.revoke`) gets 401
  "Unauthorized". Tokens the fake never issued are accepted (for `make dev`).
- Chats: ids added with `add_chat`, else made up on first use (positive ids are private chats,
  `-100…` supergroups, other negative ids groups, `@name` public channels); ids in `absent` get
  "Bad Request: chat not found".
- Validation: text 1-4,096 and captions up to 1,024 UTF-16 code units, albums of 2-10 photos,
  photos given as http(s) URLs (not fetched), replies to messages that exist in the chat.
- Message ids count up per chat; `posts` keeps one record per message (an album is several).
- No rate-limit headers (Telegram sends none); a 429 carries `parameters.retry_after` only.
- `sendVideo` takes the video as a multipart/form-data upload (field `video`) with `chat_id`,
  `caption`, `supports_streaming`, `width`, `height`, `duration` as form fields, and answers the
  Message with a `video` object (Bot API "sendVideo" and "Video"). A body over `upload_limit`
  (50 MB, the Bot API's "Bots can currently send video files of up to 50 MB in size") is answered
  413 `{"ok":false,"error_code":413,"description":"Request Entity Too Large"}`, as recorded in
  tdlib/telegram-bot-api#720. No upload: "Bad Request: there is no video in the request". A
  video given by URL or file_id is not faked (400 saying so): Kairos always uploads the bytes.
  There is no processing state to poll: Telegram answers once the video is stored.
  `videos` keeps each stored upload (bytes, file name, type, the fields sent).

Fault operations: "create" (every send method). rate_limit: 429 with `retry_after` (whole
seconds, rounded up); server_error: 500; reject: 403 "Forbidden: bot was blocked by the user" (or
the fault's message); hang: send, then never answer; expire_token: 401 "Unauthorized" (bot tokens
do not expire; a dead token looks like this).
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import time
from collections import defaultdict
from typing import Any, ClassVar

from aiohttp import web

from kairos_fakes._multipart import Part, parts
from kairos_fakes.base import FakeServer, Token, Tokens

TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
#: The largest request body the Bot API takes from a bot: "up to 50 MB" (read as 50,000,000).
UPLOAD_LIMIT = 50_000_000
#: Parameters whose form-encoded value is JSON.
NESTED = ("reply_parameters", "media", "link_preview_options")
BOT = {"id": 7000000001, "is_bot": True, "first_name": "Kairos", "username": "kairos_bot"}


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def failure(code: int, description: str, **parameters: Any) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return web.json_response(body, status=code)


class BadRequest(Exception):
    """A 400 with Telegram's description."""


class TelegramFake(FakeServer):
    name = "telegram"
    default_port: ClassVar[int] = 9108

    def __init__(self) -> None:
        self.tokens = Tokens(prefix="tg", rotating=False)
        self.chats: dict[str, dict[str, Any]] = {}
        self.absent: set[str] = set()
        self.posts: list[dict[str, Any]] = []
        self.last_id: dict[int, int] = defaultdict(int)
        #: The largest body taken; a test may lower it to see the 413 without 50 MB.
        self.upload_limit = UPLOAD_LIMIT
        #: Each video stored by `sendVideo`, in order.
        self.videos: list[dict[str, Any]] = []
        super().__init__()

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/bot{token}/{method}", self.method)

    def new_token(self) -> str:
        """A bot token in Telegram's shape (`<bot id>:<secret>`), known to the fake."""
        token = f"{BOT['id']}:{secrets.token_urlsafe(26)}"
        self.tokens.access[token] = Token(token, None)
        return token

    def add_chat(self, chat_id: str, kind: str, username: str = "") -> dict[str, Any]:
        """Make a chat known, e.g. `add_chat("-1001234", "channel", "kairosnews")`."""
        chat: dict[str, Any] = {"id": int(chat_id) if chat_id.lstrip("-").isdigit() else 0}
        chat["type"] = kind
        if kind == "private":
            chat["first_name"] = "Reader"
        else:
            chat["title"] = username or f"Chat {chat_id}"
        if username:
            chat["username"] = username
        if not chat["id"]:
            chat["id"] = -1000000000000 - secrets.randbelow(10**9)
        self.chats[chat_id] = chat
        return chat

    def chat(self, chat_id: str) -> dict[str, Any]:
        if chat_id in self.absent or not chat_id:
            raise BadRequest("Bad Request: chat not found")
        known = self.chats.get(chat_id)
        if known is not None:
            return known
        if chat_id.startswith("@"):
            return self.add_chat(chat_id, "channel", chat_id[1:])
        if not chat_id.lstrip("-").isdigit():
            raise BadRequest("Bad Request: chat not found")
        if not chat_id.startswith("-"):
            return self.add_chat(chat_id, "private")
        return self.add_chat(chat_id, "supergroup" if chat_id.startswith("-100") else "group")

    async def parameters(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.content_type == "multipart/form-data":
            form = parts(request.headers.get("content-type", ""), await request.read())
            if form is None:
                raise BadRequest("Bad Request: can't parse multipart/form-data")
            params.update({n: p.text for n, p in form.items() if not p.is_file})
            params.update({n: p for n, p in form.items() if p.is_file})
        elif request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError as error:
                raise BadRequest("Bad Request: can't parse JSON") from error
            if isinstance(body, dict):
                params.update(body)
        else:  # form fields (the recording middleware already read the body)
            params.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        for key in NESTED:
            if isinstance(params.get(key), str):
                try:
                    params[key] = json.loads(params[key])
                except ValueError as error:
                    raise BadRequest(f"Bad Request: can't parse {key} JSON object") from error
        return params

    async def method(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        if self.tokens.state(token) != "ok":
            return failure(401, "Unauthorized")
        name = request.match_info["method"]
        if name not in ("sendMessage", "sendPhoto", "sendMediaGroup", "sendVideo"):
            return failure(404, "Not Found")
        if len(await request.read()) > self.upload_limit:
            return failure(413, "Request Entity Too Large")
        try:
            params = await self.parameters(request)
            chat = self.chat(str(params.get("chat_id", "")))
            reply_to = self.replied(chat, params)
            fault = self.fault("create")
            if fault is not None and fault.kind != "hang":
                return self.faulted(fault.kind, fault.seconds, fault.message)
            if name == "sendMessage":
                result: Any = self.send_message(chat, params, reply_to)
            elif name == "sendPhoto":
                result = self.send_photo(chat, params, reply_to)
            elif name == "sendVideo":
                result = self.send_video(chat, params, reply_to)
            else:
                result = self.send_media_group(chat, params, reply_to)
        except BadRequest as error:
            return failure(400, str(error))
        if fault is not None:
            return await self.hang()
        return web.json_response({"ok": True, "result": result})

    def faulted(self, kind: str, seconds: float, message: str) -> web.Response:
        if kind == "rate_limit":
            wait = max(1, math.ceil(seconds))
            return failure(429, f"Too Many Requests: retry after {wait}", retry_after=wait)
        if kind == "server_error":
            return failure(500, "Internal Server Error")
        if kind == "expire_token":
            return failure(401, "Unauthorized")
        return failure(403, message or "Forbidden: bot was blocked by the user")

    def replied(self, chat: dict[str, Any], params: dict[str, Any]) -> int | None:
        """The message this one replies to; it must exist in the chat."""
        reply = params.get("reply_parameters")
        if reply is None:
            return None
        if not isinstance(reply, dict) or not isinstance(reply.get("message_id"), int):
            raise BadRequest("Bad Request: invalid reply parameters specified")
        wanted = reply["message_id"]
        if any(p["chat_id"] == chat["id"] and p["message_id"] == wanted for p in self.posts):
            return int(wanted)
        if reply.get("allow_sending_without_reply"):
            return None
        raise BadRequest("Bad Request: message to be replied not found")

    def message(self, chat: dict[str, Any], reply_to: int | None, **fields: Any) -> dict[str, Any]:
        """Record a new message and return it as the API shows it."""
        self.last_id[chat["id"]] += 1
        message_id = self.last_id[chat["id"]]
        self.posts.append({"chat_id": chat["id"], "message_id": message_id, "reply_to": reply_to})
        self.posts[-1].update(fields)
        shown: dict[str, Any] = {"message_id": message_id, "date": int(time.time()), "chat": chat}
        if chat["type"] != "channel":
            shown["from"] = BOT
        if reply_to is not None:
            shown["reply_to_message"] = {"message_id": reply_to, "chat": chat}
        for key in ("text", "caption", "media_group_id", "video"):
            if fields.get(key):
                shown[key] = fields[key]
        if fields.get("photo"):
            shown["photo"] = [{"file_id": secrets.token_urlsafe(16), "width": 2, "height": 2}]
        return shown

    def send_message(
        self, chat: dict[str, Any], params: dict[str, Any], reply_to: int | None
    ) -> dict[str, Any]:
        text = str(params.get("text") or "")
        if not text.strip():
            raise BadRequest("Bad Request: message text is empty")
        if utf16_length(text) > TEXT_LIMIT:
            raise BadRequest("Bad Request: message is too long")
        preview = params.get("link_preview_options")
        return self.message(
            chat, reply_to, method="sendMessage", text=text, link_preview_options=preview
        )

    def send_photo(
        self, chat: dict[str, Any], params: dict[str, Any], reply_to: int | None
    ) -> dict[str, Any]:
        photo = self.photo(params.get("photo"))
        caption = self.caption(params.get("caption"))
        return self.message(chat, reply_to, method="sendPhoto", photo=photo, caption=caption)

    def send_media_group(
        self, chat: dict[str, Any], params: dict[str, Any], reply_to: int | None
    ) -> list[dict[str, Any]]:
        media = params.get("media")
        if not isinstance(media, list) or not media:
            raise BadRequest("Bad Request: media to send are not specified")
        if len(media) > 10:
            raise BadRequest("Bad Request: too much messages to send as an album")
        if len(media) < 2:
            raise BadRequest("Bad Request: media group must include 2-10 items")
        items = []
        for item in media:
            if not isinstance(item, dict) or item.get("type") != "photo":
                raise BadRequest("Bad Request: wrong media type in the album")
            items.append((self.photo(item.get("media")), self.caption(item.get("caption"))))
        group = str(secrets.randbelow(10**17))
        return [
            self.message(
                chat,
                reply_to,
                method="sendMediaGroup",
                photo=photo,
                caption=caption,
                media_group_id=group,
            )
            for photo, caption in items
        ]

    def send_video(
        self, chat: dict[str, Any], params: dict[str, Any], reply_to: int | None
    ) -> dict[str, Any]:
        upload = params.get("video")
        if isinstance(upload, str) and upload:
            raise BadRequest("Bad Request: the fake takes a video only as a multipart upload")
        if not isinstance(upload, Part) or not upload.content:
            raise BadRequest("Bad Request: there is no video in the request")
        caption = self.caption(params.get("caption"))
        numbers = {}
        for key in ("width", "height", "duration"):
            value = str(params.get(key) or "0")
            if not value.isdigit():
                raise BadRequest(f'Bad Request: field "{key}" must be a valid Number')
            numbers[key] = int(value)
        content: bytes = upload.content
        unique = secrets.token_urlsafe(12)
        video = {
            "duration": numbers["duration"],
            "width": numbers["width"],
            "height": numbers["height"],
            "file_name": upload.filename,
            "mime_type": upload.content_type,
            "file_id": f"BAACAgIAAxkBAA{secrets.token_urlsafe(40)}",
            "file_unique_id": unique,
            "file_size": len(content),
        }
        self.videos.append(
            {
                "chat_id": chat["id"],
                "content": content,
                "sha256": hashlib.sha256(content).hexdigest(),
                "file_name": upload.filename,
                "mime_type": upload.content_type,
                "supports_streaming": params.get("supports_streaming") in ("true", True),
                **numbers,
            }
        )
        return self.message(chat, reply_to, method="sendVideo", video=video, caption=caption)

    @staticmethod
    def photo(value: object) -> str:
        if not isinstance(value, str) or not value.startswith(("http://", "https://")):
            raise BadRequest("Bad Request: wrong file identifier/HTTP URL specified")
        return value

    @staticmethod
    def caption(value: object) -> str:
        caption = "" if value is None else str(value)
        if utf16_length(caption) > CAPTION_LIMIT:
            raise BadRequest("Bad Request: message caption is too long")
        return caption


Fake = TelegramFake
