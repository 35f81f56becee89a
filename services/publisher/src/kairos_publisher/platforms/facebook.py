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

platform_post_id: the `<page-id>_<post-id>` of a post, or the comment id; URL
`https://www.facebook.com/<post-id>`, or a comment's `permalink_url`.
"""

from __future__ import annotations

import json

import httpx

from kairos_publisher.platforms._graph import Graph, created_id
from kairos_publisher.platforms.base import (
    PlatformContext,
    PublishOutcome,
    PublishRequest,
    Result,
)

PUBLIC = "https://www.facebook.com"


class FacebookClient:
    """Publishes to one Page with its Page token."""

    def __init__(self, http: httpx.AsyncClient, base: str) -> None:
        self.http = http
        self.base = base

    async def publish(self, request: PublishRequest) -> PublishOutcome:
        graph = Graph(self.http, self.base, request.access_token)
        return graph.finish(await self._publish(graph, request))

    async def _publish(self, graph: Graph, request: PublishRequest) -> PublishOutcome:
        page, images = request.page_id, request.media_urls
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
