"""A fake Facebook Pages Graph API (`/vNN.N/...`, any version).

- `POST /{page}/feed` (`message`, `link`, `attached_media[n]={"media_fbid": ...}`) → `{"id":
  "<page>_<post>"}`; the same message twice without attachments is `(#506) Duplicate status
  message`.
- `POST /{page}/photos` (`url`, `message`, `published`) → `{"id", "post_id"}`, or only `{"id"}`
  for an unpublished photo; the fake fetches the URL like Facebook (`(#324)` if it is not an
  image).
- `POST /{id}/comments` (`message`) on a post or a comment → `{"id"}`.
- `GET /{id}?fields=permalink_url` for posts and comments.
- `POST /{page}/videos` (`file_url`, `description`, `published`) → `{"id": <video>}`. The fake
  downloads `file_url` whole before answering (`_graph.fetch_video`: size and SHA-256 kept in
  `videos[id]["video"]`, never the bytes), and a URL it cannot fetch is `(#389) Unable to
  fetch video file from URL.`, code and words from the error table of Meta's Page videos
  reference. The video then processes: `GET /{video}?fields=status` answers `video_status`
  `processing` for its first `video_polls` reads, then `ready`, or `error` with a failed
  processing phase whose error carries code 352's words from the same table ("The video file
  you selected is in a format that we don't support.") when the bytes are no MP4/MOV movie.
  The `status` object (`video_status`, `uploading_phase`, `processing_phase`,
  `publishing_phase`, each with a `status` and a failed one with `errors`) has the fields of
  Meta's Video Status reference, in the shape client test suites record.

Fault operations: "create" (a feed post, a published photo, a comment, a published video),
"upload" (an unpublished photo or video), "lookup" (GET, a video's status too). See `_graph`
for the fault answers and usage headers.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any, ClassVar

from aiohttp import web

from kairos_fakes._graph import (
    FetchedVideo,
    GraphFake,
    error,
    fetch_type,
    fetch_video,
    unknown_object,
)
from kairos_fakes.base import new_id

ATTACHED = re.compile(r"attached_media\[(\d+)\]")


class FacebookFake(GraphFake):
    name = "facebook"
    default_port: ClassVar[int] = 9105
    reject_error: ClassVar[tuple[int, int, str]] = (
        368,
        1390008,
        "It looks like you were misusing this feature by going too fast. You've been "
        "temporarily blocked from using it.",
    )

    def __init__(self) -> None:
        super().__init__()
        #: Page posts: id, page, message, photos (urls), at.
        self.posts: list[dict[str, Any]] = []
        #: Photos by id: page, url, published, post_id.
        self.photos: dict[str, dict[str, Any]] = {}
        #: Comments: id, parent (post or comment id), post, message, at.
        self.comments: list[dict[str, Any]] = []
        #: Videos by id: page, description, file_url, published, video (FetchedVideo), polls, at.
        self.videos: dict[str, dict[str, Any]] = {}
        #: Status reads a video answers `processing` before its processing ends.
        self.video_polls = 1

    def find(self, node: str) -> dict[str, Any] | None:
        return next((item for item in [*self.posts, *self.comments] if item["id"] == node), None)

    async def node(self, request: web.Request) -> web.StreamResponse:
        node = request.match_info["node"]
        params = await self.params(request)
        if node in self.videos:
            return await self.video_node(request, node, params)
        item = self.find(node)
        if item is None:
            return unknown_object(node)
        _, refused = self.check(request, params, "lookup", item.get("page", ""))
        if refused is not None:
            return refused
        if "post" in item:
            post_number = item["post"].partition("_")[2]
            comment_number = node.partition("_")[2]
            link = f"https://www.facebook.com/{post_number}?comment_id={comment_number}"
        else:
            page, _, number = node.partition("_")
            link = f"https://www.facebook.com/{page}/posts/{number}"
        wanted = params.get("fields", "id").split(",")
        found = {"id": node, "message": item["message"], "permalink_url": link}
        return self.answer({k: v for k, v in found.items() if k in ["id", *wanted]})

    async def edge(self, request: web.Request) -> web.StreamResponse:
        node, edge = request.match_info["node"], request.match_info["edge"]
        params = await self.params(request)
        if request.method == "POST" and edge == "feed":
            return await self.feed(request, node, params)
        if request.method == "POST" and edge == "photos":
            return await self.photo(request, node, params)
        if request.method == "POST" and edge == "videos":
            return await self.video(request, node, params)
        if request.method == "POST" and edge == "comments":
            return await self.comment(request, node, params)
        return error(100, f"(#100) Unknown path components: /{edge}")

    def new_post(self, page: str, message: str, photos: list[str]) -> str:
        post_id = f"{page}_{new_id(16)}"
        self.posts.append(
            {"id": post_id, "page": page, "message": message, "photos": photos, "at": time.time()}
        )
        return post_id

    async def feed(
        self, request: web.Request, page: str, params: dict[str, str]
    ) -> web.StreamResponse:
        fault, refused = self.check(request, params, "create", page)
        if refused is not None:
            return refused
        message = params.get("message", "")
        attached: list[str] = []
        for key, value in sorted(params.items()):
            if ATTACHED.fullmatch(key):
                try:
                    fbid = str(json.loads(value)["media_fbid"])
                except (ValueError, KeyError, TypeError):
                    return error(100, f"(#100) Invalid {key}")
                photo = self.photos.get(fbid)
                if photo is None or photo["page"] != page or photo["published"]:
                    return error(100, f"(#100) {key} is not an unpublished photo of this Page")
                attached.append(fbid)
        if not message and not attached and not params.get("link"):
            return error(100, "(#100) Missing message or attachment")
        if not attached and any(p["page"] == page and p["message"] == message for p in self.posts):
            return error(506, "(#506) Duplicate status message")
        post_id = self.new_post(page, message, [self.photos[f]["url"] for f in attached])
        for fbid in attached:
            self.photos[fbid].update(published=True, post_id=post_id)
        if fault is not None:
            return await self.hang()
        return self.answer({"id": post_id}, page)

    async def photo(
        self, request: web.Request, page: str, params: dict[str, str]
    ) -> web.StreamResponse:
        published = params.get("published", "true").lower() != "false"
        fault, refused = self.check(request, params, "create" if published else "upload", page)
        if refused is not None:
            return refused
        url = params.get("url", "")
        if await fetch_type(url) not in ("jpeg", "png", "gif"):
            return error(324, "(#324) Missing or invalid image file")
        photo_id = new_id(16)
        self.photos[photo_id] = {"page": page, "url": url, "published": published, "post_id": ""}
        answer = {"id": photo_id}
        if published:
            post_id = self.new_post(page, params.get("message", ""), [url])
            self.photos[photo_id]["post_id"] = answer["post_id"] = post_id
        if fault is not None:
            return await self.hang()
        return self.answer(answer, page)

    async def comment(
        self, request: web.Request, parent: str, params: dict[str, str]
    ) -> web.StreamResponse:
        target = self.find(parent)
        if target is None:
            return unknown_object(parent)
        page = target.get("page", "")
        fault, refused = self.check(request, params, "create", page)
        if refused is not None:
            return refused
        if not params.get("message"):
            return error(100, "(#100) Missing message")
        post = target.get("post", parent)
        comment_id = f"{post.partition('_')[2]}_{new_id(16)}"
        self.comments.append(
            {
                "id": comment_id,
                "parent": parent,
                "post": post,
                "page": page,
                "message": params["message"],
                "at": time.time(),
            }
        )
        if fault is not None:
            return await self.hang()
        return self.answer({"id": comment_id}, page)

    async def video(
        self, request: web.Request, page: str, params: dict[str, str]
    ) -> web.StreamResponse:
        published = params.get("published", "true").lower() != "false"
        fault, refused = self.check(request, params, "create" if published else "upload", page)
        if refused is not None:
            return refused
        url = params.get("file_url", "")
        if not url:
            return error(100, "(#100) file_url or source is required")
        fetched = await fetch_video(url)
        if fetched.failure:
            return error(389, "Unable to fetch video file from URL.")
        video_id = new_id(16)
        self.videos[video_id] = {
            "page": page,
            "description": params.get("description", ""),
            "file_url": url,
            "published": published,
            "video": fetched,
            "polls": 0,
            "at": time.time(),
        }
        if fault is not None:
            return await self.hang()
        return self.answer({"id": video_id}, page)

    def video_status(self, video: dict[str, Any]) -> dict[str, Any]:
        """A video's `status` as Facebook reports it while and after it processes."""
        fetched: FetchedVideo = video["video"]
        done = {"status": "complete"}
        if video["polls"] <= self.video_polls:
            return {
                "video_status": "processing",
                "uploading_phase": done,
                "processing_phase": {"status": "in_progress"},
                "publishing_phase": {"status": "not_started"},
            }
        if not fetched.container:
            failure = {
                "code": 352,
                "message": "The video file you selected is in a format that we don't support.",
            }
            return {
                "video_status": "error",
                "uploading_phase": done,
                "processing_phase": {"status": "error", "errors": [failure]},
                "publishing_phase": {"status": "not_started"},
            }
        publishing = {"status": "complete", "publish_status": "published"}
        return {
            "video_status": "ready",
            "uploading_phase": done,
            "processing_phase": done,
            "publishing_phase": publishing if video["published"] else {"status": "not_started"},
        }

    async def video_node(
        self, request: web.Request, video_id: str, params: dict[str, str]
    ) -> web.StreamResponse:
        video = self.videos[video_id]
        _, refused = self.check(request, params, "lookup", video["page"])
        if refused is not None:
            return refused
        video["polls"] += 1
        found = {
            "id": video_id,
            "description": video["description"],
            "status": self.video_status(video),
            "permalink_url": f"/{video['page']}/videos/{video_id}/",
        }
        wanted = params.get("fields", "id").split(",")
        return self.answer({k: v for k, v in found.items() if k in ["id", *wanted]}, video["page"])


Fake = FacebookFake
