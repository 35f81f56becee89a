"""A fake Threads API (`/v1.0/...` and `/refresh_access_token`).

- `POST /{user}/threads` (`media_type` TEXT, IMAGE with `image_url`, or CAROUSEL with
  `children`; `text` of at most 500 characters; `reply_to_id`; `is_carousel_item`) →
  `{"id": <container>}`; the fake downloads images, anything but JPEG or PNG turns the
  container ERROR.
- `POST /{user}/threads` with `media_type=VIDEO` + `video_url` (+ `text`, `reply_to_id`): the
  fake downloads the video whole in the background (`_graph.fetch_video`) and keeps its size
  and SHA-256 on the published post (`post["video"]`). A URL that cannot be fetched turns the
  container ERROR with `error_message` `FAILED_DOWNLOADING_VIDEO`, bytes that are no MP4/MOV
  movie with `FAILED_PROCESSING_VIDEO`: two of the values the Threads troubleshooting page
  lists for a container's `error_message`.
- `GET /{container}?fields=status,error_message`; `POST /{user}/threads_publish`
  (`creation_id`) → `{"id": <media>}`; `GET /{media}?fields=permalink`.
- `GET /{user}/threads_publishing_limit` → `quota_usage`, `config` (250 posts per 24 h),
  `reply_quota_usage`, `reply_config` (1,000 replies).
- `GET /refresh_access_token?grant_type=th_refresh_token&access_token=`.

Fault operations: "container", "status", "create" (threads_publish), "lookup", "limit",
"refresh". See `_graph` for the state machine and the fault answers.
"""

from __future__ import annotations

import secrets
import time
from typing import Any, ClassVar

from aiohttp import web

from kairos_fakes._graph import DAY, Container, ContainerFake, error, unknown_object

MAX_TEXT = 500
MAX_CAROUSEL = 20
REPLY_QUOTA = 1000


class ThreadsFake(ContainerFake):
    name = "threads"
    default_port: ClassVar[int] = 9107
    buc_type: ClassVar[str] = "threads"
    create_edge: ClassVar[str] = "threads"
    publish_edge: ClassVar[str] = "threads_publish"
    limit_edge: ClassVar[str] = "threads_publishing_limit"
    status_key: ClassVar[str] = "status"
    refresh_grant: ClassVar[str] = "th_refresh_token"
    default_quota: ClassVar[int] = 250
    image_types: ClassVar[frozenset[str]] = frozenset({"jpeg", "png"})
    download_error: ClassVar[str] = "UNKNOWN"
    video_download_error: ClassVar[str] = "FAILED_DOWNLOADING_VIDEO"
    video_format_error: ClassVar[str] = "FAILED_PROCESSING_VIDEO"

    def __init__(self) -> None:
        super().__init__()
        self.username = "kairos"

    def validate(self, user: str, params: dict[str, str]) -> web.Response | None:
        kind, text = params.get("media_type", ""), params.get("text", "")
        if len(text) > MAX_TEXT:
            return error(100, f"(#100) The parameter text must be at most {MAX_TEXT} characters")
        reply_to = params.get("reply_to_id", "")
        if reply_to and self.find_post(reply_to) is None:
            return unknown_object(reply_to)
        if kind == "TEXT":
            return None if text else error(100, "(#100) The parameter text is required")
        if kind == "IMAGE":
            if params.get("image_url"):
                return None
            return error(100, "(#100) The parameter image_url is required")
        if kind == "VIDEO":
            if params.get("video_url"):
                return None
            return error(100, "(#100) The parameter video_url is required")
        if kind == "CAROUSEL":
            count = len([c for c in params.get("children", "").split(",") if c])
            if 2 <= count <= MAX_CAROUSEL:
                return None
            return error(100, f"(#100) A carousel takes 2 to {MAX_CAROUSEL} children")
        return error(100, "(#100) The parameter media_type must be TEXT, IMAGE, VIDEO or CAROUSEL")

    def describe(self, container: Container) -> dict[str, Any]:
        state = self.status(container)
        described: dict[str, Any] = {"status": state}
        if container.error:
            described["error_message"] = container.error
        return described

    def post_fields(self, container: Container) -> dict[str, Any]:
        code = secrets.token_urlsafe(8)
        return {
            "text": container.fields.get("text", ""),
            "media_type": container.fields.get("media_type", ""),
            "reply_to": container.fields.get("reply_to_id", ""),
            "permalink": f"https://www.threads.net/@{self.username}/post/{code}",
        }

    def quota_used(self, user: str) -> int:
        """Posts count against the post quota, replies against their own."""
        since = time.time() - DAY
        return sum(
            1 for p in self.posts if p["owner"] == user and p["at"] > since and not p["reply_to"]
        )

    async def limit(
        self, request: web.Request, user: str, params: dict[str, str]
    ) -> web.StreamResponse:
        _, refused = self.check(request, params, "limit", user)
        if refused is not None:
            return refused
        since = time.time() - DAY
        replies = sum(1 for p in self.posts if p["owner"] == user and p["at"] > since)
        replies -= self.quota_used(user)
        usage = {
            "quota_usage": self.quota_used(user),
            "config": {"quota_total": self.quota_total, "quota_duration": int(DAY)},
            "reply_quota_usage": replies,
            "reply_config": {"quota_total": REPLY_QUOTA, "quota_duration": int(DAY)},
        }
        return self.answer({"data": [usage]}, user)

    async def edge(self, request: web.Request) -> web.StreamResponse:
        node, edge = request.match_info["node"], request.match_info["edge"]
        params = await self.params(request)
        routed = await self.route_edge(request, node, edge, params)
        if routed is not None:
            return routed
        return error(100, f"(#100) Unknown path components: /{edge}")


Fake = ThreadsFake
