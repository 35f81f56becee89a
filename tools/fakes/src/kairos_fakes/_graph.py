"""What the Meta Graph fakes (Facebook, Instagram, Threads) share: routes under whatever
version prefix the publisher sends (`/v27.0/{node}/{edge}`), or none (`/{node}/{edge}`),
parameters from the query or a form body, token checks, the error envelope (HTTP 400 even for
throttling), usage headers, faults, and the media-container state machine.

Errors: `{"error": {message, type, code, error_subcode, fbtrace_id, is_transient}}`. Faults:
`rate_limit` answers `throttle_code` (4 by default; set 17, 32, 613, 80001) with a
`X-Business-Use-Case-Usage` whose `estimated_time_to_regain_access` is the fault's seconds in
whole minutes; `server_error` is HTTP 500 code 2 (transient); `reject` is the platform's
`reject_error`, or, when the fault's message names a subcode of Meta's Instagram error-code table
(`fail_next("create", "reject", message="2207008")`), that row's answer (`INSTAGRAM_ERRORS`);
`expire_token` is code 190/463; `hang` does the work, then never answers.
`usage` (percent) and `regain_minutes` put usage headers on every answer when set.

Containers go IN_PROGRESS → FINISHED (after `processing` seconds) → PUBLISHED, or ERROR (the
image could not be fetched or is of a type the platform refuses) or EXPIRED (older than
`container_lifetime`). A video container (`video_url`) is downloaded in the background, really
and whole, as the platforms fetch the URL themselves (`fetch_video`: size and SHA-256 kept,
never the bytes); it stays IN_PROGRESS for its first `video_polls` status reads and until the
download ends, then is FINISHED, or ERROR with the platform's words (`video_download_error`
when the URL could not be fetched, `video_format_error` when the bytes are no MP4 or MOV
movie). Publishing one that is not FINISHED gets 9007/2207027; a container is
single use, so publishing it again is refused and creates nothing. Publishing counts against
`quota_total` per 24 h (`<user>/<limit_edge>` reports `quota_usage` and `config`); past it the
answer is code 9/2207042, as in Meta's Instagram error-code table.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import aiohttp
from aiohttp import web

from kairos_fakes.base import FakeServer, Fault, Tokens, bearer, new_id

THROTTLE_MESSAGES = {
    4: "(#4) Application request limit reached",
    17: "(#17) User request limit reached",
    32: "(#32) Page request limit reached",
    613: "(#613) Calls to this api have exceeded the rate limit.",
    80001: "(#80001) There have been too many calls to this Page account. Wait a bit and try "
    "again.",
}
#: Meta's Instagram error-code table, "Error Codes Defined" (developers.facebook.com/docs/
#: instagram-platform/instagram-graph-api/reference/error-codes, updated 2026-06-02), by subcode:
#: (code, user message). Every row is HTTP 400. Answers carry them as the table's sample does:
#: `code`, `error_subcode`, `is_transient: false`, the user message in `error_user_msg`; the
#: table gives no `message` of its own, so that field repeats the user message.
INSTAGRAM_ERRORS: dict[int, tuple[int, str]] = {
    2207003: (-2, "It takes too long to download the media."),
    2207020: (-2, "The media you are trying to access has expired. Please try to upload again."),
    2207001: (-1, "Instagram server error. Try again."),
    2207032: (-1, "Create media fail, please try to re-create media"),
    2207053: (-1, "unknown upload error"),
    2207051: (
        4,
        "We restrict certain activity to protect our community. Tell us if you think we made a "
        "mistake.",
    ),
    2207042: (
        9,
        "You reached maximum number of posts that is allowed to be published by Content "
        "Publishing API.",
    ),
    2207006: (24, "The media with {id} cannot be found"),
    2207008: (24, "The media builder with creation id = {id} does not exist or has been expired."),
    2207050: (25, "The Instagram account is restricted."),
    2207028: (
        100,
        "Your post won't work as a carousel. Carousels need at least 2 photos/videos and no "
        "more than 10 photos/videos.",
    ),
    2207052: (9004, "The media could not be fetched from this uri: {uri}"),
    2207026: (352, "The video format is not supported. Please check spec for supported formats."),
    2207027: (9007, "The media is not ready for publishing, please wait for a moment"),
    2207004: (36000, "The image is too large to download. It should be less than 8 MiB."),
    2207005: (36001, "The image format is not supported. Supported formats are: JPEG."),
    2207010: (
        36004,
        "The submitted image's caption was too long. The maximum number of characters "
        "permitted for a caption is 2200. Please submit media with a shorter caption.",
    ),
}
DAY = 86400.0
#: What a token refresh grants: 60 days.
TOKEN_LIFETIME = 60 * DAY


def error(
    code: int,
    message: str,
    *,
    subcode: int = 0,
    status: int = 400,
    transient: bool | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """The Graph error envelope."""
    body: dict[str, Any] = {
        "message": message,
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": secrets.token_urlsafe(9),
    }
    if subcode:
        body["error_subcode"] = subcode
    if transient is not None:
        body["is_transient"] = transient
    return web.json_response({"error": body}, status=status, headers=headers)


def instagram_error(subcode: int) -> web.Response:
    """The answer of one row of Meta's Instagram error-code table."""
    code, user_message = INSTAGRAM_ERRORS[subcode]
    body = {
        "message": user_message,
        "type": "OAuthException",
        "code": code,
        "error_subcode": subcode,
        "is_transient": False,
        "error_user_msg": user_message,
        "fbtrace_id": secrets.token_urlsafe(9),
    }
    return web.json_response({"error": body}, status=400)


def expired_token() -> web.Response:
    return error(
        190,
        "Error validating access token: Session has expired on Tuesday, 24-Nov-26 12:00:00 PST.",
        subcode=463,
    )


async def fetch_type(url: str) -> str:
    """The image type the bytes at `url` start with ("jpeg", "png", "gif", "webp", "other"), or ""
    if the URL cannot be fetched: the platforms download media themselves."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.0)) as session,
            session.get(url) as response,
        ):
            if response.status != 200:
                return ""
            head = await response.content.read(16)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return ""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG"):
        return "png"
    if head.startswith(b"GIF8"):
        return "gif"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    return "other"


#: How long a fake's download of a video may take, as a platform would give up on a slow host.
VIDEO_FETCH_TIMEOUT = 300.0


@dataclass(frozen=True)
class FetchedVideo:
    """What a fake downloaded from a video URL (never the bytes themselves)."""

    size: int = 0
    sha256: str = ""
    #: "mp4" or "mov" by the movie's `ftyp` brand; "" when the bytes are no ISO-BMFF movie.
    container: str = ""
    #: Why the download failed, or "" when it did not.
    failure: str = ""


def movie_container(head: bytes) -> str:
    """ "mov" (QuickTime brand), "mp4" (any other `ftyp` brand) or "" for the first 12 bytes."""
    if head[4:8] != b"ftyp":
        return ""
    return "mov" if head[8:12] == b"qt  " else "mp4"


async def fetch_video(url: str) -> FetchedVideo:
    """The video at `url` downloaded whole, as Facebook, Instagram and Threads fetch a
    `file_url` / `video_url`, counted and hashed as it streams."""
    digest = hashlib.sha256()
    size = 0
    head = b""
    try:
        async with (
            aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=VIDEO_FETCH_TIMEOUT)
            ) as session,
            session.get(url) as response,
        ):
            if response.status != 200:
                return FetchedVideo(failure=f"GET {url} answered {response.status}")
            async for chunk in response.content.iter_chunked(1 << 16):
                if len(head) < 12:
                    head += chunk[: 12 - len(head)]
                digest.update(chunk)
                size += len(chunk)
    except (aiohttp.ClientError, TimeoutError, ValueError) as failed:
        return FetchedVideo(failure=f"GET {url} failed: {failed!r}")
    return FetchedVideo(size, digest.hexdigest(), movie_container(head))


class GraphFake(FakeServer):
    """Routes `[/{version}]/{node}` and `[/{version}]/{node}/{edge}` to `node` and `edge`."""

    #: The permanent rejection the `reject` fault answers: code, subcode, message.
    reject_error: ClassVar[tuple[int, int, str]] = (100, 0, "(#100) Invalid parameter")
    #: The `type` of this platform's entries in `X-Business-Use-Case-Usage`.
    buc_type: ClassVar[str] = "pages"

    def __init__(self) -> None:
        super().__init__()
        self.tokens = Tokens(prefix=self.name, rotating=False)
        self.throttle_code = 4
        self.usage = 0
        self.regain_minutes = 0

    def routes(self, router: web.UrlDispatcher) -> None:
        for prefix in (r"/{version:v\d+\.\d+}", ""):
            router.add_route("*", prefix + "/{node}", self.node)
            router.add_route("*", prefix + "/{node}/{edge}", self.edge)

    async def node(self, request: web.Request) -> web.StreamResponse:
        """GET of one object by id."""
        raise NotImplementedError

    async def edge(self, request: web.Request) -> web.StreamResponse:
        """POST (or GET) of an object's edge, e.g. `/{page}/feed`."""
        raise NotImplementedError

    @staticmethod
    async def params(request: web.Request) -> dict[str, str]:
        """Query and form fields together, as the Graph API takes either."""
        fields = dict(request.query)
        if request.method == "POST":
            fields.update({k: str(v) for k, v in (await request.post()).items()})
        return fields

    def usage_headers(self, account: str, usage: int, regain: int) -> dict[str, str]:
        if not usage and not regain:
            return {}  # the real headers appear only once usage is above zero
        share = {"call_count": usage, "total_cputime": usage // 2, "total_time": usage // 2}
        business = [{"type": self.buc_type, **share, "estimated_time_to_regain_access": regain}]
        return {
            "x-app-usage": _json(share),
            "x-business-use-case-usage": _json({account or "0": business}),
        }

    def answer(self, data: dict[str, Any], account: str = "") -> web.Response:
        headers = self.usage_headers(account, self.usage, self.regain_minutes)
        return web.json_response(data, headers=headers)

    def check(
        self, request: web.Request, params: dict[str, str], operation: str, account: str = ""
    ) -> tuple[Fault | None, web.Response | None]:
        """The token and any queued fault: (a `hang` fault or None, None) to go on, or
        (None, the error to answer)."""
        token = params.get("access_token") or bearer(request)
        state = self.tokens.state(token)
        if state == "missing":
            return None, error(104, "An access token is required to request this resource.")
        if state == "expired":
            return None, expired_token()
        if state == "revoked":
            return None, error(
                190,
                "Error validating access token: The session has been invalidated because the "
                "user changed their password or Facebook has changed the session for security "
                "reasons.",
                subcode=460,
            )
        fault = self.fault(operation)
        if fault is None or fault.kind == "hang":
            return fault, None
        return None, self.fault_answer(fault, account)

    def fault_answer(self, fault: Fault, account: str) -> web.Response:
        if fault.kind == "rate_limit":
            code = self.throttle_code
            minutes = max(1, math.ceil(fault.seconds / 60))
            return error(
                code,
                fault.message or THROTTLE_MESSAGES.get(code, f"(#{code}) Rate limited"),
                transient=code == 4,
                headers=self.usage_headers(account, 100, minutes),
            )
        if fault.kind == "server_error":
            return error(
                2,
                "An unexpected error has occurred. Please retry your request later.",
                status=500,
                transient=True,
            )
        if fault.kind == "expire_token":
            return expired_token()
        if fault.message.isdigit() and int(fault.message) in INSTAGRAM_ERRORS:
            return instagram_error(int(fault.message))
        code, subcode, message = self.reject_error
        return error(code, fault.message or message, subcode=subcode)


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def unknown_object(node: str) -> web.Response:
    return error(
        100,
        f"Unsupported post request. Object with ID '{node}' does not exist, cannot be loaded "
        "due to missing permissions, or does not support this operation.",
        subcode=33,
    )


@dataclass
class Container:
    """A media container and where it is in its life."""

    id: str
    owner: str
    fields: dict[str, str]
    created: float
    ready_at: float
    error: str = ""
    media_id: str = ""
    children: list[str] = field(default_factory=list)
    #: The download of a video container's `video_url`, and its status reads so far.
    video: asyncio.Task[FetchedVideo] | None = None
    polls: int = 0


class ContainerFake(GraphFake):
    """Instagram and Threads: containers, publishing, the quota and token refresh.

    Operations for faults: "container" (create a container), "status" (read one), "create"
    (publish, or comment: what makes a post public), "refresh".
    """

    create_edge: ClassVar[str] = ""
    publish_edge: ClassVar[str] = ""
    limit_edge: ClassVar[str] = ""
    status_key: ClassVar[str] = ""
    refresh_grant: ClassVar[str] = ""
    #: Posts per 24 h the quota allows (`quota_total`, which tests may lower).
    default_quota: ClassVar[int] = 0
    #: The image types the platform takes (as `fetch_type` names them).
    image_types: ClassVar[frozenset[str]] = frozenset({"jpeg"})
    #: What an ERROR container says about a failed download.
    download_error: ClassVar[str] = "ERROR"
    #: What an ERROR video container says when its video could not be downloaded, and when
    #: the bytes are no MP4 or MOV movie.
    video_download_error: ClassVar[str] = "ERROR"
    video_format_error: ClassVar[str] = "ERROR"

    def __init__(self) -> None:
        super().__init__()
        self.containers: dict[str, Container] = {}
        #: Published posts: id, owner, container, text, media (urls), reply_to, permalink, at.
        self.posts: list[dict[str, Any]] = []
        #: Seconds a container stays IN_PROGRESS, and how long an unpublished one lives.
        self.processing = 0.0
        self.container_lifetime = DAY
        self.quota_total = self.default_quota
        #: Status reads a video container answers IN_PROGRESS before its processing ends.
        self.video_polls = 1

    async def stop(self) -> None:
        for container in self.containers.values():
            if container.video is not None and not container.video.done():
                container.video.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await container.video
        await super().stop()

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/refresh_access_token", self.refresh)
        super().routes(router)

    def status(self, container: Container) -> str:
        now = time.time()
        if container.media_id:
            return "PUBLISHED"
        if container.error:
            return "ERROR"
        if now - container.created > self.container_lifetime:
            return "EXPIRED"
        if container.video is not None:
            if container.polls <= self.video_polls or not container.video.done():
                return "IN_PROGRESS"
            fetched = container.video.result()
            if fetched.failure:
                container.error = self.video_download_error
            elif not fetched.container:
                container.error = self.video_format_error
            return "ERROR" if container.error else "FINISHED"
        return "IN_PROGRESS" if now < container.ready_at else "FINISHED"

    def fetched(self, container: Container) -> FetchedVideo | None:
        """What was downloaded for a video container, once it was."""
        if container.video is None or not container.video.done():
            return None
        return container.video.result()

    def validate(self, user: str, params: dict[str, str]) -> web.Response | None:
        """The platform's checks of a new container's fields."""
        raise NotImplementedError

    def describe(self, container: Container) -> dict[str, Any]:
        """The status fields of a container as the platform answers them."""
        raise NotImplementedError

    def post_fields(self, container: Container) -> dict[str, Any]:
        """What the published post keeps from its container (text, reply_to, ...)."""
        raise NotImplementedError

    def quota_used(self, user: str) -> int:
        since = time.time() - DAY
        return sum(1 for p in self.posts if p["owner"] == user and p["at"] > since)

    async def create_container(
        self, request: web.Request, user: str, params: dict[str, str]
    ) -> web.StreamResponse:
        fault, refused = self.check(request, params, "container", user)
        if refused is not None:
            return refused
        invalid = self.validate(user, params)
        if invalid is not None:
            return invalid
        now = time.time()
        container = Container(new_id(17), user, params, now, now + self.processing)
        if params.get("children"):
            children = [self.containers.get(c) for c in params["children"].split(",")]
            if any(c is None or c.owner != user for c in children):
                return error(100, "(#100) Invalid children: unknown container ids")
            container.children = [c.id for c in children if c is not None]
            failed = [c for c in children if c is not None and c.error]
            container.error = failed[0].error if failed else ""
            container.ready_at = max([container.ready_at, *(c.ready_at for c in children if c)])
        elif params.get("video_url"):
            container.video = asyncio.create_task(fetch_video(params["video_url"]))
        elif params.get("image_url"):
            kind = await fetch_type(params["image_url"])
            if kind not in self.image_types:
                container.error = self.download_error
        self.containers[container.id] = container
        if fault is not None:
            return await self.hang()
        return self.answer({"id": container.id}, user)

    async def publish_container(
        self, request: web.Request, user: str, params: dict[str, str]
    ) -> web.StreamResponse:
        fault, refused = self.check(request, params, "create", user)
        if refused is not None:
            return refused
        creation = params.get("creation_id", "")
        container = self.containers.get(creation)
        if container is None or container.owner != user or container.fields.get("is_carousel_item"):
            return unknown_object(creation)
        state = self.status(container)
        if state == "IN_PROGRESS":
            return error(9007, "Media ID is not available", subcode=2207027)
        if state == "ERROR":
            return error(9004, "Media download has failed.", subcode=2207052)
        if state == "EXPIRED":
            return error(100, "(#100) The media container has expired")
        if state == "PUBLISHED":
            return error(100, f"(#100) Container {creation} has already been published")
        if self.quota_used(user) >= self.quota_total:
            return instagram_error(2207042)
        media_id = new_id(17)
        container.media_id = media_id
        urls = [self.containers[c].fields.get("image_url", "") for c in container.children]
        own = container.fields.get("image_url") or container.fields.get("video_url", "")
        self.posts.append(
            {
                "id": media_id,
                "owner": user,
                "container": container.id,
                "media": urls or [own],
                "video": self.fetched(container),
                "at": time.time(),
                **self.post_fields(container),
            }
        )
        if fault is not None:
            return await self.hang()
        return self.answer({"id": media_id}, user)

    async def container_status(
        self, request: web.Request, container: Container, params: dict[str, str]
    ) -> web.StreamResponse:
        _, refused = self.check(request, params, "status", container.owner)
        if refused is not None:
            return refused
        container.polls += 1
        return self.answer({"id": container.id, **self.describe(container)}, container.owner)

    async def limit(
        self, request: web.Request, user: str, params: dict[str, str]
    ) -> web.StreamResponse:
        _, refused = self.check(request, params, "limit", user)
        if refused is not None:
            return refused
        usage = {
            "quota_usage": self.quota_used(user),
            "config": {"quota_total": self.quota_total, "quota_duration": int(DAY)},
        }
        return self.answer({"data": [usage]}, user)

    async def refresh(self, request: web.Request) -> web.StreamResponse:
        params = dict(request.query)
        if params.get("grant_type") != self.refresh_grant:
            return error(100, "(#100) Unsupported grant_type")
        _, refused = self.check(request, params, "refresh")
        if refused is not None:
            return refused
        access, _ = self.tokens.issue(TOKEN_LIFETIME)
        self.tokens.refreshes += 1
        return web.json_response(
            {"access_token": access, "token_type": "bearer", "expires_in": int(TOKEN_LIFETIME)}
        )

    def find_post(self, media_id: str) -> dict[str, Any] | None:
        return next((p for p in self.posts if p["id"] == media_id), None)

    async def node(self, request: web.Request) -> web.StreamResponse:
        node = request.match_info["node"]
        params = await self.params(request)
        container = self.containers.get(node)
        if container is not None:
            return await self.container_status(request, container, params)
        post = self.find_post(node)
        if post is None:
            return unknown_object(node)
        _, refused = self.check(request, params, "lookup", post["owner"])
        if refused is not None:
            return refused
        wanted = params.get("fields", "id").split(",")
        return self.answer({k: post[k] for k in ["id", *wanted] if k in post}, post["owner"])

    async def route_edge(
        self, request: web.Request, node: str, edge: str, params: dict[str, str]
    ) -> web.StreamResponse | None:
        """The container edges every container platform has, or None for the subclass."""
        if request.method == "POST" and edge == self.create_edge:
            return await self.create_container(request, node, params)
        if request.method == "POST" and edge == self.publish_edge:
            return await self.publish_container(request, node, params)
        if request.method == "GET" and edge == self.limit_edge:
            return await self.limit(request, node, params)
        return None
