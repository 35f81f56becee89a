"""A fake of LinkedIn's Posts, Images, Comments and OAuth token APIs.

Routes (both hosts on one server: `api.linkedin.com` and `www.linkedin.com`):
- `POST /rest/posts`: 201 with an empty body and the new URN in `x-restli-id`. The same author
  posting the same commentary as any earlier post, a deleted one (`delete(urn)`) included, gets
  LinkedIn's 422 `DUPLICATE_POST` naming that post: the body recorded in Arisamiga/Linkedin-RSS#5
  ("...BadRequestResponseException: Content is a duplicate of urn:li:share:<id>"); that deleted
  posts count is ComposioHQ/composio#2710 (a repost after deleting got DUPLICATE_POST naming URNs
  that answer 404). Commentary over 3,000 characters, a missing field or an unknown image is a 422.
- `POST /rest/images?action=initializeUpload`: `{"value":{"uploadUrl","image",...}}`, the upload
  URL on this same server (`PUT /dms-uploads/...`, bearer token required).
- `POST /rest/videos?action=initializeUpload` (`owner`, `fileSizeBytes` within 75 KB to
  500 MB): the video URN, `uploadToken` and one instruction per 4 MB part (`uploadUrl`,
  `firstByte`, `lastByte`); `PUT /dms-uploads/sp/v2/{asset}/uploadedVideo/{n}` (pre-signed, no
  token) takes exactly a part's range and answers its id in `ETag`; `POST
  /rest/videos?action=finalizeUpload` (`video`, `uploadToken`, `uploadedPartIds` = the ETags in
  order; unsigned ids get 400 "All chunks IDs must be signed"); `GET /rest/videos/{url-encoded
  URN}` shows WAITING_UPLOAD, then PROCESSING for `processing_polls` GETs, then AVAILABLE (or
  PROCESSING_FAILED for a file that is not MP4, or after a "process" fault). A post's
  `content.media.id` may be such a video once it is AVAILABLE. `videos` keeps the joined bytes.
- `POST /rest/socialActions/{url-encoded URN}/comments`: a comment on a post, or a reply to a
  comment (`parentComment`, `object` = the post); 201 with the comment (`id`, `commentUrn`) and
  the id in `x-restli-id`. A URN left unencoded in the path is refused (400 "Syntax exception in
  path variables"), as LinkedIn does.
- `POST /oauth/v2/accessToken`: `grant_type=refresh_token` form; refresh tokens do not rotate.

Every `/rest` call needs `LinkedIn-Version` (400 `VERSION_MISSING` without it, 426
`NONEXISTENT_VERSION` for one outside `active_versions`), `X-Restli-Protocol-Version: 2.0.0`
(400 without it; that wording is this fake's own) and a bearer token (401 with LinkedIn's
`EXPIRED_ACCESS_TOKEN`/`REVOKED_ACCESS_TOKEN` bodies). There are no rate-limit headers: a 429
comes bare.

`posts` keeps each post with `text`, its commentary as LinkedIn would show it: escapes removed,
and cut at the first unescaped reserved character (LinkedIn may silently truncate there).

Fault operations: "create" (posts), "comment", "initialize_upload", "upload" (the PUT of the
bytes), "initialize_video", "upload_part", "finalize_video", "get_video" and "refresh"; any fault
queued for "process" makes the next finalized video fail processing. `rate_limit` answers a bare
429 (its `seconds` is unused: LinkedIn names no wait), `server_error` a 500, `reject` a 403
`ACCESS_DENIED`, `hang` creates the post or comment and never answers, `expire_token` expires
the presented token and answers 401; `hang` on a video part takes it and never answers. On
"refresh", `reject` and `expire_token` refuse the refresh token (400 `invalid_request`).
"""

from __future__ import annotations

import json
import re
import secrets
import time
from typing import Any, ClassVar
from urllib.parse import quote

from aiohttp import web

from kairos_fakes.base import FakeServer, Tokens, bearer, new_id

#: The versions this fake serves, a snapshot of 2026-12: 202511 was sunset on 2026-11-16 (the
#: migrations table's date), 202512 to 202609 are active, and nothing later is known to be out
#: (202609 was the newest listed on 2026-09-18, n8n-io/n8n#39065). Any other version gets
#: LinkedIn's 426 `NONEXISTENT_VERSION` ("Requested version 20250401 is not active" in
#: n8n-io/n8n#28660 and ComposioHQ/composio#3231). Tests may change `active_versions`.
ACTIVE_VERSIONS = frozenset(["202512"] + [f"2026{month:02d}" for month in range(1, 10)])
ACCESS_LIFETIME = 60 * 24 * 3600.0
REFRESH_LIFETIME = 365 * 24 * 3600
MAX_COMMENTARY = 3000
RESERVED = set("\\|{}@[]()<>#*_~")
AUTHOR = re.compile(r"^urn:li:(person|organization):[A-Za-z0-9_-]+$")
COMMENT = re.compile(r"^urn:li:comment:\((urn:li:[A-Za-z]+:[^,]+),([0-9]+)\)$")
#: Marks a call whose `hang` fault lets the work happen but the answer never come.
HANG = web.RequestKey("hang", bool)
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a")
#: The Videos API's part size: its upload instructions give byte ranges 0-4194303 (inclusive),
#: 4194304-..., i.e. 4 MB parts, the last one shorter (learn.microsoft.com LinkedIn Videos API,
#: "Upload the Video").
VIDEO_PART_BYTES = 4 * 1024 * 1024
#: The same page's "Video File Size Specifications": 75 KB to 500 MB (the MB of its 4 MB
#: parts, 2^20 bytes), MP4 only, 3 seconds to 30 minutes (the length this fake cannot see).
MIN_VIDEO_BYTES = 75 * 1024
MAX_VIDEO_BYTES = 500 * 1024 * 1024
VIDEO = re.compile(r"^urn:li:video:[A-Za-z0-9_-]+$")


def error(
    status: int, message: str, code: str = "", service_code: int | None = None
) -> web.Response:
    """LinkedIn's error body: `{"status","serviceErrorCode"?,"code"?,"message"}`."""
    body: dict[str, Any] = {"status": status, "message": message}
    if code:
        body["code"] = code
    if service_code is not None:
        body["serviceErrorCode"] = service_code
    return web.json_response(body, status=status)


def input_error(message: str, code: str, path: str) -> web.Response:
    """A 422 validation error with `errorDetails.inputErrors`, as LinkedIn sends them."""
    return web.json_response(
        {
            "errorDetailType": "com.linkedin.common.error.BadRequest",
            "message": message,
            "errorDetails": {
                "inputErrors": [
                    {
                        "description": message.rpartition(":: ")[2],
                        "input": {"inputPath": {"fieldPath": path}},
                        "code": code,
                    }
                ]
            },
            "status": 422,
        },
        status=422,
    )


def shown_text(commentary: str) -> str:
    """The commentary as LinkedIn renders it: escapes removed, cut at an unescaped reserved
    character (a real element such as a mention would render; this fake never expects one)."""
    shown: list[str] = []
    escaped = False
    for char in commentary:
        if escaped:
            shown.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in RESERVED:
            break
        else:
            shown.append(char)
    return "".join(shown)


class LinkedInFake(FakeServer):
    name = "linkedin"
    default_port: ClassVar[int] = 9104

    def __init__(self) -> None:
        super().__init__()
        self.tokens = Tokens(prefix="li", rotating=False)
        self.posts: list[dict[str, Any]] = []
        #: Posts deleted by their author; LinkedIn still counts them as duplicates.
        self.deleted: list[dict[str, Any]] = []
        self.comments: list[dict[str, Any]] = []
        #: Images by URN: owner, and the uploaded bytes (None until the PUT).
        self.images: dict[str, dict[str, Any]] = {}
        #: Videos by URN: "owner", "size", "status" (WAITING_UPLOAD, PROCESSING, AVAILABLE,
        #: PROCESSING_FAILED), "instructions", "upload_token", "ut", "parts" and "etags" per
        #: part (None until its PUT), "content" (the parts joined at finalizeUpload),
        #: "polls_left" and "fails".
        self.videos: dict[str, dict[str, Any]] = {}
        #: The part size initializeUpload cuts a video into (tests may make it smaller).
        self.video_part_bytes = VIDEO_PART_BYTES
        #: How many GETs of a finalized video see it PROCESSING before it is AVAILABLE.
        self.processing_polls = 1
        #: The `LinkedIn-Version` values answered; any other gets 426.
        self.active_versions = set(ACTIVE_VERSIONS)
        #: When set, the refresh endpoint checks the app's credentials against these.
        self.client_id = ""
        self.client_secret = ""

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/rest/posts", self.create)
        router.add_post("/rest/images", self.initialize_upload)
        router.add_put("/dms-uploads/sp/v2/{image}/uploaded-image/0", self.upload)
        router.add_post("/rest/videos", self.video_action)
        router.add_put("/dms-uploads/sp/v2/{video}/uploadedVideo/{part}", self.upload_video_part)
        router.add_get("/rest/videos/{urn}", self.get_video)
        router.add_post("/rest/socialActions/{target}/comments", self.comment)
        router.add_post("/oauth/v2/accessToken", self.refresh)

    def delete(self, urn: str) -> None:
        """The author deletes a post: gone from the feed, still remembered for duplicates."""
        post = next(p for p in self.posts if p["urn"] == urn)
        self.posts.remove(post)
        self.deleted.append(post)

    def issue(self) -> tuple[str, str]:
        """A new (access, refresh) pair as LinkedIn's OAuth would grant it."""
        return self.tokens.issue(ACCESS_LIFETIME)

    def refusal(self, request: web.Request) -> web.Response | None:
        """LinkedIn's answer to a `/rest` call missing a header or with a bad token, if any."""
        version = request.headers.get("linkedin-version", "")
        if not version:
            return error(
                400,
                "A version must be present. Please specify a version by adding the "
                "LinkedIn-Version header.",
                "VERSION_MISSING",
            )
        if version not in self.active_versions:
            return error(426, f"Requested version {version} is not active", "NONEXISTENT_VERSION")
        if request.headers.get("x-restli-protocol-version") != "2.0.0":
            return error(400, "X-Restli-Protocol-Version 2.0.0 is required", "PROTOCOL_MISSING")
        return self.auth_refusal(request)

    def auth_refusal(self, request: web.Request) -> web.Response | None:
        state = self.tokens.state(bearer(request))
        if state == "missing":
            return error(401, "Empty oauth2_access_token", service_code=401)
        if state == "expired":
            return self.expired()
        if state == "revoked":
            return error(
                401,
                "The token used in the request has been revoked by the user",
                "REVOKED_ACCESS_TOKEN",
                65601,
            )
        return None

    @staticmethod
    def expired() -> web.Response:
        return error(
            401, "The token used in the request has expired", "EXPIRED_ACCESS_TOKEN", 65602
        )

    def fault_answer(self, request: web.Request, operation: str) -> web.Response | None:
        """The queued fault's answer for this call; None for none or for `hang` (the handler
        does the work, then hangs)."""
        fault = self.fault(operation)
        if fault is None:
            return None
        if fault.kind == "hang":
            request[HANG] = True
            return None
        if fault.kind == "rate_limit":
            return error(
                429,
                "Resource level throttle APPLICATION DAY limit for calls to this resource is "
                "reached.",
                "TOO_MANY_REQUESTS",
                101,
            )
        if fault.kind == "server_error":
            return error(500, "Internal Server Error")
        if fault.kind == "expire_token":
            self.tokens.expire(bearer(request))
            return self.expired()
        return error(
            403,
            fault.message or "Not enough permissions to access: partnerApiPostsExternal.CREATE",
            "ACCESS_DENIED",
            100,
        )

    async def body(self, request: web.Request) -> dict[str, Any] | web.Response:
        try:
            data = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            return error(400, "Unable to parse the request body as JSON")
        if not isinstance(data, dict):
            return error(400, "The request body must be a JSON object")
        return data

    async def answer(self, request: web.Request, response: web.Response) -> web.Response:
        """`response`, unless a `hang` fault asked for no answer at all."""
        if request.get(HANG):
            return await self.hang()
        return response

    async def create(self, request: web.Request) -> web.Response:
        refused = self.refusal(request) or self.fault_answer(request, "create")
        if refused is not None:
            return refused
        data = await self.body(request)
        if isinstance(data, web.Response):
            return data
        for field in ("author", "visibility", "distribution", "lifecycleState"):
            if field not in data:
                return input_error(
                    f"ERROR :: /{field} :: field is required but not found and has no default "
                    "value",
                    "MISSING_FIELD",
                    f"/{field}",
                )
        author = str(data["author"])
        if not AUTHOR.match(author):
            return input_error(
                f"ERROR :: /author :: {author} is not a valid author URN", "INVALID_URN", "/author"
            )
        commentary = str(data.get("commentary", ""))
        if len(commentary) > MAX_COMMENTARY:
            return input_error(
                f"ERROR :: /commentary :: length {len(commentary)} exceeds the maximum allowed "
                f"length of {MAX_COMMENTARY}",
                "FIELD_LENGTH_TOO_LONG",
                "/commentary",
            )
        invalid = self.invalid_content(data.get("content"), author)
        if invalid is not None:
            return invalid
        for post in [*self.posts, *self.deleted]:
            if post["author"] == author and post["commentary"] == commentary:
                return self.duplicate(post["urn"])
        urn = f"urn:li:share:{new_id()}"
        self.posts.append(
            {
                "urn": urn,
                "author": author,
                "commentary": commentary,
                "text": shown_text(commentary),
                "content": data.get("content"),
                "body": data,
                "at": time.time(),
            }
        )
        return await self.answer(request, web.Response(status=201, headers={"x-restli-id": urn}))

    @staticmethod
    def duplicate(urn: str) -> web.Response:
        return web.json_response(
            {
                "errorDetailType": "com.linkedin.common.error.BadRequest",
                "message": "com.linkedin.content.common.exception.BadRequestResponseException: "
                f"Content is a duplicate of {urn}",
                "errorDetails": {
                    "inputErrors": [
                        {
                            "description": "Duplicate post is detected",
                            "input": {},
                            "code": "DUPLICATE_POST",
                        }
                    ]
                },
                "status": 422,
            },
            status=422,
        )

    def invalid_content(self, content: Any, author: str) -> web.Response | None:
        """A 422 for images that are unknown, not uploaded, or not 2-20 in a multiImage."""
        if content is None:
            return None
        if not isinstance(content, dict):
            return input_error("ERROR :: /content :: not a record", "INVALID_VALUE", "/content")
        if "media" in content:
            ids = [str((content["media"] or {}).get("id", ""))]
        elif "multiImage" in content:
            images = (content["multiImage"] or {}).get("images") or []
            if not 2 <= len(images) <= 20:
                return input_error(
                    "ERROR :: /content/multiImage/images :: must have between 2 and 20 images",
                    "INVALID_VALUE",
                    "/content/multiImage/images",
                )
            ids = [str(image.get("id", "")) for image in images]
        else:
            return input_error(
                "ERROR :: /content :: unsupported content type", "INVALID_VALUE", "/content"
            )
        for urn in ids:
            if VIDEO.match(urn):
                if "media" not in content:
                    return input_error(
                        "ERROR :: /content/multiImage :: videos cannot be in a multiImage",
                        "INVALID_VALUE",
                        "/content/multiImage/images",
                    )
                video = self.videos.get(urn)
                if video is None or video["status"] != "AVAILABLE" or video["owner"] != author:
                    return input_error(
                        f"ERROR :: /content :: video {urn} is not available to {author}",
                        "INVALID_MEDIA",
                        "/content",
                    )
                continue
            image = self.images.get(urn)
            if image is None or image["content"] is None or image["owner"] != author:
                return input_error(
                    f"ERROR :: /content :: image {urn} is not available to {author}",
                    "INVALID_MEDIA",
                    "/content",
                )
        return None

    async def initialize_upload(self, request: web.Request) -> web.Response:
        if request.query.get("action") != "initializeUpload":
            return error(400, "Unsupported action", "ILLEGAL_ARGUMENT")
        refused = self.refusal(request) or self.fault_answer(request, "initialize_upload")
        if refused is not None:
            return refused
        data = await self.body(request)
        if isinstance(data, web.Response):
            return data
        owner = str((data.get("initializeUploadRequest") or {}).get("owner", ""))
        if not AUTHOR.match(owner):
            return input_error(
                "ERROR :: /initializeUploadRequest/owner :: field is required but not found "
                "and has no default value",
                "MISSING_FIELD",
                "/initializeUploadRequest/owner",
            )
        asset = "D4E10AQ" + "".join(
            secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZabcdefgh") for _ in range(9)
        )
        urn = f"urn:li:image:{asset}"
        self.images[urn] = {"owner": owner, "content": None, "content_type": ""}
        upload_url = (
            f"{request.scheme}://{request.host}/dms-uploads/sp/v2/{asset}/uploaded-image/0"
            f"?ca=vector_feedshare&cn=uploads&sync=0&v=beta&ut={secrets.token_urlsafe(8)}"
        )
        value = {
            "uploadUrlExpiresAt": int((time.time() + 3600) * 1000),
            "uploadUrl": upload_url,
            "image": urn,
        }
        return await self.answer(request, web.json_response({"value": value}))

    async def upload(self, request: web.Request) -> web.Response:
        refused = self.auth_refusal(request) or self.fault_answer(request, "upload")
        if refused is not None:
            return refused
        image = self.images.get(f"urn:li:image:{request.match_info['image']}")
        if image is None:
            return error(404, "Upload URL not found")
        content = await request.read()
        if not content.startswith(IMAGE_MAGIC):
            return error(400, "Unsupported media type: only JPG, PNG and GIF images")
        image["content"] = content
        image["content_type"] = request.headers.get("content-type", "")
        return await self.answer(request, web.Response(status=201))

    # Videos API (learn.microsoft.com LinkedIn "Videos API"): initializeUpload, a PUT per part
    # to its pre-signed URL, finalizeUpload with the parts' ETags, then GET until AVAILABLE.

    async def video_action(self, request: web.Request) -> web.Response:
        action = request.query.get("action")
        if action == "initializeUpload":
            return await self.initialize_video(request)
        if action == "finalizeUpload":
            return await self.finalize_video(request)
        return error(400, "Unsupported action", "ILLEGAL_ARGUMENT")

    async def initialize_video(self, request: web.Request) -> web.Response:
        """Register an upload of `fileSizeBytes`: the video's URN and one instruction per
        4 MB part (`uploadUrl`, `firstByte`, `lastByte`, inclusive), all on this server. The
        `uploadToken` is "" for a single part, as recorded exchanges show it, and a token to
        hand back otherwise. A size outside 75 KB to 500 MB is refused (this fake's wording)."""
        refused = self.refusal(request) or self.fault_answer(request, "initialize_video")
        if refused is not None:
            return refused
        data = await self.body(request)
        if isinstance(data, web.Response):
            return data
        asked = data.get("initializeUploadRequest") or {}
        owner = str(asked.get("owner", ""))
        if not AUTHOR.match(owner):
            return input_error(
                "ERROR :: /initializeUploadRequest/owner :: field is required but not found "
                "and has no default value",
                "MISSING_FIELD",
                "/initializeUploadRequest/owner",
            )
        size = asked.get("fileSizeBytes")
        if not isinstance(size, int) or isinstance(size, bool):
            return input_error(
                "ERROR :: /initializeUploadRequest/fileSizeBytes :: field is required but not "
                "found and has no default value",
                "MISSING_FIELD",
                "/initializeUploadRequest/fileSizeBytes",
            )
        if not MIN_VIDEO_BYTES <= size <= MAX_VIDEO_BYTES:
            return input_error(
                f"ERROR :: /initializeUploadRequest/fileSizeBytes :: {size} is outside the "
                f"allowed {MIN_VIDEO_BYTES} to {MAX_VIDEO_BYTES} bytes",
                "INVALID_VALUE",
                "/initializeUploadRequest/fileSizeBytes",
            )
        asset = "C5F10AQ" + "".join(
            secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZabcdefgh") for _ in range(9)
        )
        urn = f"urn:li:video:{asset}"
        ut = secrets.token_urlsafe(8)
        step = self.video_part_bytes
        instructions = [
            {
                "uploadUrl": (
                    f"{request.scheme}://{request.host}/dms-uploads/sp/v2/{asset}/uploadedVideo/"
                    f"{index}?ca=vector_feedshare&cn=uploads&sync=0&v=beta&ut={ut}"
                ),
                "firstByte": first,
                "lastByte": min(first + step, size) - 1,
            }
            for index, first in enumerate(range(0, size, step))
        ]
        token = "" if len(instructions) == 1 else secrets.token_urlsafe(24)
        self.videos[urn] = {
            "owner": owner,
            "size": size,
            "status": "WAITING_UPLOAD",
            "instructions": instructions,
            "upload_token": token,
            "ut": ut,
            "parts": [None] * len(instructions),
            "etags": [None] * len(instructions),
            "content": None,
            "polls_left": 0,
            "fails": False,
        }
        value: dict[str, Any] = {
            "uploadUrlsExpireAt": int((time.time() + 24 * 3600) * 1000),
            "video": urn,
            "uploadInstructions": instructions,
            "uploadToken": token,
        }
        return await self.answer(request, web.json_response({"value": value}))

    async def upload_video_part(self, request: web.Request) -> web.Response:
        """One part's bytes to its pre-signed URL (no token needed: the URL is the credential),
        answered 200 with the part's id in `ETag`, unquoted, `/ambry-video/signedId/….bin` as
        LinkedIn's samples show it. The part must be exactly its byte range."""
        failed = self.fault_answer(request, "upload_part")
        if failed is not None:
            return failed
        urn = f"urn:li:video:{request.match_info['video']}"
        video = self.videos.get(urn)
        try:
            index = int(request.match_info["part"])
        except ValueError:
            index = -1
        if video is None or not 0 <= index < len(video["parts"]):
            return error(404, "Upload URL not found")
        if request.query.get("ut") != video["ut"]:
            return error(403, "The upload URL's signature does not match")
        content = await request.read()
        part = video["instructions"][index]
        expected = part["lastByte"] - part["firstByte"] + 1
        if len(content) != expected:
            return error(400, f"Part {index} is {len(content)} bytes; its range holds {expected}")
        video["parts"][index] = content
        etag = f"/ambry-video/signedId/{secrets.token_urlsafe(48)}.bin"
        video["etags"][index] = etag
        return await self.answer(request, web.Response(status=200, headers={"ETag": etag}))

    async def finalize_video(self, request: web.Request) -> web.Response:
        """Join the parts named by `uploadedPartIds` (their ETags, in order) and start
        processing. Ids this fake did not sign get LinkedIn's 400 "All chunks IDs must be
        signed" (seen live with version 202606); missing parts or a wrong upload token are
        refused in this fake's words. 200 with an empty body."""
        refused = self.refusal(request) or self.fault_answer(request, "finalize_video")
        if refused is not None:
            return refused
        data = await self.body(request)
        if isinstance(data, web.Response):
            return data
        asked = data.get("finalizeUploadRequest") or {}
        urn = str(asked.get("video", ""))
        video = self.videos.get(urn)
        if video is None:
            return error(404, f"Not Found: {urn}", "NOT_FOUND")
        if asked.get("uploadToken", "") != video["upload_token"]:
            return error(400, "The upload token does not match the upload", "ILLEGAL_ARGUMENT")
        ids = asked.get("uploadedPartIds")
        if not isinstance(ids, list) or any(i not in video["etags"] for i in ids):
            return error(400, "All chunks IDs must be signed", "ILLEGAL_ARGUMENT")
        if ids != video["etags"]:
            return error(
                400,
                f"uploadedPartIds must name all {len(video['etags'])} uploaded parts in order",
                "ILLEGAL_ARGUMENT",
            )
        content = b"".join(video["parts"])
        video.update(
            status="PROCESSING",
            content=content,
            polls_left=self.processing_polls,
            # A "process" fault fails the processing, as a file LinkedIn cannot decode does.
            fails=self.fault("process") is not None or content[4:8] != b"ftyp",
        )
        return await self.answer(request, web.Response(status=200))

    async def get_video(self, request: web.Request) -> web.Response:
        """`{"owner", "id", "status"}`; a finalized video is PROCESSING for `processing_polls`
        GETs, then AVAILABLE or PROCESSING_FAILED. The URN must be URL-encoded in the path."""
        refused = self.refusal(request)
        if refused is not None:
            return refused
        urn = request.match_info["urn"]
        raw = request.raw_path.split("?")[0].split("/")[3]
        if raw != quote(urn, safe=""):
            return error(400, "Syntax exception in path variables")
        failed = self.fault_answer(request, "get_video")
        if failed is not None:
            return failed
        video = self.videos.get(urn)
        if video is None:
            return error(404, f"Not Found: {urn}", "NOT_FOUND")
        if video["status"] == "PROCESSING":
            if video["polls_left"] > 0:
                video["polls_left"] -= 1
            else:
                video["status"] = "PROCESSING_FAILED" if video["fails"] else "AVAILABLE"
        body = {"owner": video["owner"], "id": urn, "status": video["status"]}
        return await self.answer(request, web.json_response(body))

    async def comment(self, request: web.Request) -> web.Response:
        refused = self.refusal(request)
        if refused is not None:
            return refused
        target = request.match_info["target"]
        raw = request.raw_path.split("?")[0].split("/")[3]
        if raw != quote(target, safe=""):
            return error(400, "Syntax exception in path variables")
        failed = self.fault_answer(request, "comment")
        if failed is not None:
            return failed
        data = await self.body(request)
        if isinstance(data, web.Response):
            return data
        actor = str(data.get("actor", ""))
        text = str((data.get("message") or {}).get("text", ""))
        if not AUTHOR.match(actor) or not text:
            return input_error(
                "ERROR :: /actor, /message/text :: fields are required", "MISSING_FIELD", "/"
            )
        on_comment = COMMENT.match(target)
        post = on_comment.group(1) if on_comment else target
        if (
            data.get("object") != post
            or data.get("parentComment", target) != target
            or (on_comment is None and "parentComment" in data)
        ):
            return error(
                400,
                f"object must be {post}" + (f" and parentComment {target}" if on_comment else ""),
                "ILLEGAL_ARGUMENT",
            )
        known = {p["urn"] for p in self.posts} | {c["commentUrn"] for c in self.comments}
        if target not in known:
            return error(404, f"Not Found: {target}", "NOT_FOUND")
        comment_id = new_id()
        urn = f"urn:li:comment:({post},{comment_id})"
        now = int(time.time() * 1000)
        comment: dict[str, Any] = {
            "actor": actor,
            "commentUrn": urn,
            "$URN": urn,
            "id": comment_id,
            "object": post,
            "message": {"text": text, "attributes": []},
            "created": {"actor": actor, "time": now},
            "lastModified": {"actor": actor, "time": now},
        }
        if on_comment:
            comment["parentComment"] = target
        self.comments.append(comment)
        return await self.answer(
            request,
            web.json_response(comment, status=201, headers={"x-restli-id": comment_id}),
        )

    async def refresh(self, request: web.Request) -> web.Response:
        form = await request.post()
        fault = self.fault("refresh")
        if fault is not None and fault.kind == "hang":
            return await self.hang()
        if fault is not None and fault.kind in ("rate_limit", "server_error"):
            return web.json_response(
                {"error": "temporarily_unavailable", "error_description": "Try again later"},
                status=429 if fault.kind == "rate_limit" else 500,
            )
        if form.get("grant_type") != "refresh_token":
            return web.json_response(
                {"error": "unsupported_grant_type", "error_description": "Invalid grant_type"},
                status=400,
            )
        client = (str(form.get("client_id", "")), str(form.get("client_secret", "")))
        if not all(client) or (self.client_id and client != (self.client_id, self.client_secret)):
            return web.json_response(
                {"error": "invalid_client", "error_description": "Client authentication failed"},
                status=401,
            )
        pair = None
        if fault is None:  # any other fault refuses the token
            pair = self.tokens.use_refresh(str(form.get("refresh_token", "")), ACCESS_LIFETIME)
        if pair is None:
            return web.json_response(
                {
                    "error": "invalid_request",
                    "error_description": "The provided authorization grant or refresh token is "
                    "invalid, expired or revoked",
                },
                status=400,
            )
        access, refresh = pair
        return web.json_response(
            {
                "access_token": access,
                "expires_in": int(ACCESS_LIFETIME),
                "refresh_token": refresh,
                "refresh_token_expires_in": REFRESH_LIFETIME,
                "scope": "w_member_social",
            }
        )


Fake = LinkedInFake
