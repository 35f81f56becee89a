"""A fake Instagram Graph API (Instagram Login: `/vNN.N/...`, any version, and
`/refresh_access_token`).

- `POST /{ig-user}/media` (`image_url` + `caption`, `is_carousel_item=true`, or
  `media_type=CAROUSEL` + `children` + `caption`) → `{"id": <container>}`; the fake downloads
  the image, and anything but a JPEG turns the container ERROR.
- `POST /{ig-user}/media` with `media_type=REELS` + `video_url` (+ `caption`, `share_to_feed`)
  or `media_type=STORIES` + `video_url` or `image_url` → `{"id": <container>}`; the fake
  downloads the video whole in the background (`_graph.fetch_video`) and keeps its size and
  SHA-256 on the published post (`post["video"]`). A URL that cannot be fetched, or bytes that
  are no MP4/MOV movie, turn the container ERROR with `status` "Error: Media upload has failed
  with error code 2207052" / "... 2207026": the sentence as Instagram answers it in the
  exchanges client test suites record (e.g. a status of "Error: Media upload has failed with
  error code 2207026"), the subcodes those of Meta's error-code table (2207052 media could not
  be fetched, 2207026 unsupported video format). `media_type=VIDEO` outside a carousel is
  refused: the IG User Media reference says single videos are published as REELS since
  2023-11-09.
- `GET /{container}?fields=status_code,status`; `POST /{ig-user}/media_publish` (`creation_id`)
  → `{"id": <media>}`; `GET /{media}?fields=permalink`.
- `GET /{ig-user}/content_publishing_limit` → `{"data": [{"quota_usage", "config"}]}` (50
  per 24 h).
- `POST /{media}/comments` and `POST /{comment}/replies` (`message`; replies only to top-level
  comments) → `{"id"}`.
- `GET /refresh_access_token?grant_type=ig_refresh_token&access_token=` → `{access_token,
  token_type, expires_in}` for an unexpired token, 190 for an expired one.

Fault operations: "container", "status", "create" (media_publish, comments, replies),
"lookup", "limit", "refresh". See `_graph` for the state machine and the fault answers.
"""

from __future__ import annotations

import secrets
import time
from typing import Any, ClassVar

from aiohttp import web

from kairos_fakes._graph import Container, ContainerFake, error, unknown_object
from kairos_fakes.base import new_id

MAX_CAPTION = 2200
MAX_CAROUSEL = 10


class InstagramFake(ContainerFake):
    name = "instagram"
    default_port: ClassVar[int] = 9106
    buc_type: ClassVar[str] = "instagram"
    create_edge: ClassVar[str] = "media"
    publish_edge: ClassVar[str] = "media_publish"
    limit_edge: ClassVar[str] = "content_publishing_limit"
    status_key: ClassVar[str] = "status_code"
    refresh_grant: ClassVar[str] = "ig_refresh_token"
    default_quota: ClassVar[int] = 50
    download_error: ClassVar[str] = "Error: Media download has failed. (2207052)"
    video_download_error: ClassVar[str] = "Error: Media upload has failed with error code 2207052"
    video_format_error: ClassVar[str] = "Error: Media upload has failed with error code 2207026"

    def __init__(self) -> None:
        super().__init__()
        #: Comments and replies: id, media, parent (top-level comment id or ""), message, at.
        self.comments: list[dict[str, Any]] = []

    def validate(self, user: str, params: dict[str, str]) -> web.Response | None:
        if len(params.get("caption", "")) > MAX_CAPTION:
            return error(100, f"(#100) The caption must be at most {MAX_CAPTION} characters")
        kind = params.get("media_type", "")
        if kind == "CAROUSEL":
            count = len([c for c in params.get("children", "").split(",") if c])
            if not 2 <= count <= MAX_CAROUSEL:
                return error(100, f"(#100) A carousel takes 2 to {MAX_CAROUSEL} children")
            return None
        if kind == "REELS":
            if not params.get("video_url"):
                return error(100, "(#100) The parameter video_url is required")
            return None
        if kind == "STORIES":
            if bool(params.get("video_url")) == bool(params.get("image_url")):
                return error(100, "(#100) A story takes either image_url or video_url")
            return None
        if kind == "VIDEO":
            if params.get("is_carousel_item") != "true":
                return error(
                    100,
                    "(#100) The VIDEO media type is no longer supported for single posts; "
                    "use REELS",
                )
            if not params.get("video_url"):
                return error(100, "(#100) The parameter video_url is required")
            return None
        if kind:
            return error(100, "(#100) media_type must be CAROUSEL, REELS, STORIES or VIDEO")
        if not params.get("image_url"):
            return error(100, "(#100) The parameter image_url is required")
        return None

    def describe(self, container: Container) -> dict[str, Any]:
        state = self.status(container)
        return {"status_code": state, "status": container.error or state}

    def post_fields(self, container: Container) -> dict[str, Any]:
        code = secrets.token_urlsafe(8)
        kind = container.fields.get("media_type", "")
        if container.children:
            media_type, product = "CAROUSEL_ALBUM", "FEED"
        else:
            media_type = "VIDEO" if container.fields.get("video_url") else "IMAGE"
            product = {"REELS": "REELS", "STORIES": "STORY"}.get(kind, "FEED")
        where = "reel" if product == "REELS" else "p"
        return {
            "caption": container.fields.get("caption", ""),
            "media_type": media_type,
            "media_product_type": product,
            "permalink": f"https://www.instagram.com/{where}/{code}/",
        }

    async def edge(self, request: web.Request) -> web.StreamResponse:
        node, edge = request.match_info["node"], request.match_info["edge"]
        params = await self.params(request)
        routed = await self.route_edge(request, node, edge, params)
        if routed is not None:
            return routed
        if request.method == "POST" and edge in ("comments", "replies"):
            return await self.comment(request, node, edge, params)
        return error(100, f"(#100) Unknown path components: /{edge}")

    async def comment(
        self, request: web.Request, node: str, edge: str, params: dict[str, str]
    ) -> web.StreamResponse:
        if edge == "comments":
            post, parent = self.find_post(node), ""
        else:
            top = next((c for c in self.comments if c["id"] == node and not c["parent"]), None)
            post = self.find_post(top["media"]) if top else None
            parent = node
        if post is None:
            return unknown_object(node)
        fault, refused = self.check(request, params, "create", post["owner"])
        if refused is not None:
            return refused
        if not params.get("message"):
            return error(100, "(#100) The parameter message is required")
        comment_id = new_id(17)
        self.comments.append(
            {
                "id": comment_id,
                "media": post["id"],
                "parent": parent,
                "message": params["message"],
                "at": time.time(),
            }
        )
        if fault is not None:
            return await self.hang()
        return self.answer({"id": comment_id}, post["owner"])


Fake = InstagramFake
