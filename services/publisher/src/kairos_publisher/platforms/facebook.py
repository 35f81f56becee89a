"""Facebook Pages (Graph API).

Credentials read: `access_token` (a Page access token) and `page_id`. Page tokens obtained
through a long-lived user token do not expire, so there is no refresh: an AUTH outcome means
the Page must be connected again.

- Text: `POST /{page}/feed` with `message`.
- One image: `POST /{page}/photos` with `url` (Facebook fetches it) and `message`; the answer's
  `post_id` is the post.
- Several: each image `POST /{page}/photos` with `published=false`, then `POST /{page}/feed`
  with `attached_media[n]={"media_fbid": ...}`. Unpublished photos are invisible, so a failure
  before the feed call leaves nothing public.
- Reply: `POST /{id}/comments` with `message` on the previous part (a post or a comment; a
  thread's later parts each comment on the part before, which Facebook shows nested under the
  first comment).

- Video: `POST /{page}/videos` with `file_url` (the video's presigned URL, which Facebook
  downloads) and `description`; the answer's `id` is the video. That one call both takes the
  video and publishes it (`published` defaults to true: Page videos reference), so
  `stage.publishing()` comes right before it and a lost answer is UNKNOWN. Facebook then
  processes the video: `GET /{video}?fields=status` is read through the stage every 30
  seconds, for at most 30 minutes (Kairos's own figures: Meta publishes no cadence).
  `video_status` `ready`: PUBLISHED. `error` (or `upload_failed`, `expired`): PERMANENT with
  the processing phase's words; the video never showed. Still processing at the bound, or
  unreadable: UNKNOWN with the video's id and URL (the call that publishes was made, so
  trying again could post it twice). A comment takes no video.

platform_post_id: the `<page-id>_<post-id>` of a post, the comment id, or a video's id; URL
`https://www.facebook.com/<post-id>`, a comment's `permalink_url`, or
`https://www.facebook.com/<page-id>/videos/<video-id>/`.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from kairos_publisher.media import StoredMedia
from kairos_publisher.platforms._graph import Graph, created_id, pulled_video_url
from kairos_publisher.platforms.base import (
    PlatformContext,
    PublishOutcome,
    PublishRequest,
    Result,
)

PUBLIC = "https://www.facebook.com"
#: `video_status` values after which the video will never show.
VIDEO_FAILED = frozenset({"error", "upload_failed", "expired"})


class FacebookClient:
    """Publishes to one Page with its Page token."""

    def __init__(self, http: httpx.AsyncClient, base: str) -> None:
        self.http = http
        self.base = base
        #: Seconds between reads of a published video's processing status, and the most
        #: waiting in all before the outcome is left UNKNOWN.
        self.video_poll_interval = 30.0
        self.video_max_wait = 30 * 60.0

    async def publish(self, request: PublishRequest) -> PublishOutcome:
        graph = Graph(self.http, self.base, request.access_token)
        return graph.finish(await self._publish(graph, request))

    async def _publish(self, graph: Graph, request: PublishRequest) -> PublishOutcome:
        page, images = request.page_id, request.media_urls
        video = request.video
        if video is not None:
            return await self.publish_video(graph, request, video)
        if request.reply_to:
            return await self.create(graph, f"{request.reply_to}/comments", request.content, {})
        if len(images) == 1:
            path = f"{page}/photos"
            data = await graph.call(
                "POST", path, {"url": images[0], "message": request.content}, publishes=True
            )
            if isinstance(data, PublishOutcome):
                return data
            post = str(data.get("post_id") or "")
            if not post:
                return PublishOutcome(
                    Result.UNKNOWN, code="bad_answer", message=f"{path}: no post_id"
                )
            return PublishOutcome(Result.PUBLISHED, platform_post_id=post, url=f"{PUBLIC}/{post}")
        attached: dict[str, str] = {}
        for index, url in enumerate(images):
            path = f"{page}/photos"
            data = await graph.call("POST", path, {"url": url, "published": "false"})
            if isinstance(data, PublishOutcome):
                return data
            photo = created_id(data, path, publishes=False)
            if isinstance(photo, PublishOutcome):
                return photo
            attached[f"attached_media[{index}]"] = json.dumps({"media_fbid": photo})
        return await self.create(graph, f"{page}/feed", request.content, attached)

    async def publish_video(
        self, graph: Graph, request: PublishRequest, video: StoredMedia
    ) -> PublishOutcome:
        """The Page video: the one call that publishes it, then its processing."""
        if request.reply_to:
            return PublishOutcome(
                Result.PERMANENT,
                code="video_in_comment",
                message="a facebook comment takes no video",
            )
        url = pulled_video_url(video, "facebook")
        if isinstance(url, PublishOutcome):
            return url
        refused = await request.stage.publishing()
        if refused is not None:
            return refused
        path = f"{request.page_id}/videos"
        fields = {"file_url": url, "description": request.content}
        data = await graph.call("POST", path, fields, publishes=True)
        if isinstance(data, PublishOutcome):
            return data
        made = created_id(data, path, publishes=True)
        if isinstance(made, PublishOutcome):
            return made
        return await self.processed(graph, request, made)

    async def processed(
        self, graph: Graph, request: PublishRequest, video_id: str
    ) -> PublishOutcome:
        """How Facebook's processing of a published video ends (see the module docstring)."""
        link = f"{PUBLIC}/{request.page_id}/videos/{video_id}/"
        paused = 0.0
        last = "no status read"
        while True:
            data = await graph.call("GET", video_id, {"fields": "status"})
            if isinstance(data, PublishOutcome):
                last = f"status read failed: {data.code} {data.message}"
            else:
                status = data.get("status")
                state = str(status.get("video_status", "")) if isinstance(status, dict) else ""
                if state == "ready":
                    return PublishOutcome(Result.PUBLISHED, platform_post_id=video_id, url=link)
                if state in VIDEO_FAILED:
                    words = _phase_errors(status) or state
                    return PublishOutcome(
                        Result.PERMANENT,
                        code=f"video_{state}",
                        message=f"video {video_id} {state}: {words}"[:500],
                    )
                last = f"video_status {state or 'missing'}"
            if paused + self.video_poll_interval > self.video_max_wait:
                return PublishOutcome(
                    Result.UNKNOWN,
                    platform_post_id=video_id,
                    url=link,
                    code="video_processing",
                    message=f"video {video_id} published, not ready after "
                    f"{self.video_max_wait:g} s ({last})"[:500],
                )
            paused += self.video_poll_interval
            await request.stage.pause(self.video_poll_interval)

    async def create(
        self, graph: Graph, path: str, message: str, extra: dict[str, str]
    ) -> PublishOutcome:
        """A feed post or a comment: the call that makes it public."""
        data = await graph.call("POST", path, {"message": message, **extra}, publishes=True)
        if isinstance(data, PublishOutcome):
            return data
        made = created_id(data, path, publishes=True)
        if isinstance(made, PublishOutcome):
            return made
        if path.endswith("/comments"):
            url = await graph.field(made, "permalink_url")
        else:
            url = f"{PUBLIC}/{made}"
        return PublishOutcome(Result.PUBLISHED, platform_post_id=made, url=url)


def create(context: PlatformContext) -> FacebookClient:
    host = context.url("facebook", "https://graph.facebook.com")
    return FacebookClient(context.http, f"{host}/{context.graph_version}")


def _phase_errors(status: Any) -> str:
    """The messages of the failed phases of a video's `status`, as Facebook words them."""
    words: list[str] = []
    for phase in ("uploading_phase", "processing_phase", "publishing_phase"):
        found = status.get(phase) if isinstance(status, dict) else None
        errors = found.get("errors") if isinstance(found, dict) else None
        for error in errors if isinstance(errors, list) else []:
            if isinstance(error, dict):
                code = error.get("code")
                text = str(error.get("message", ""))
                words.append(f"{code}: {text}" if code else text)
            else:
                words.append(str(error))
    return "; ".join(w for w in words if w)
