"""Instagram content publishing (Instagram API with Instagram Login, graph.instagram.com).

Credentials read: `access_token` (the long-lived IG user token), `page_id` (the IG user id),
`expires_at` (for refreshing ahead of expiry). A post needs an image: one JPEG URL makes an
image container (`image_url`, `caption`), 2-10 make a carousel (items with
`is_carousel_item=true`, then a `CAROUSEL` parent with `children`); the container is polled
until FINISHED, then published with `media_publish`, and the permalink read.

Instagram has no threads, so a reply is a comment: on a post `POST /{media}/comments`, on a
comment `POST /{comment}/replies` (comments nest one level, so a reply to a reply goes to its
top-level comment). platform_post_id: `<media-id>` for a post, `<media-id>/<comment-id>` for a
comment, `<media-id>/<comment-id>/<reply-id>` for a reply; the URL of a comment is its post's.

Tokens last 60 days and are refreshed while still valid (`refresh_access_token` with
`ig_refresh_token`), a week ahead.
"""

from __future__ import annotations

from datetime import timedelta

from kairos_publisher.platforms._graph import ContainerClient, Graph, created_id
from kairos_publisher.platforms.base import (
    PlatformContext,
    PublishOutcome,
    PublishRequest,
    Result,
)

MAX_CAROUSEL = 10


class InstagramClient(ContainerClient):
    """Publishes image posts, carousels and comments for one IG professional account."""

    refresh_margin = timedelta(days=7)
    create_edge = "media"
    publish_edge = "media_publish"
    status_fields = "status_code"
    status_key = "status_code"
    refresh_grant = "ig_refresh_token"

    async def publish(self, request: PublishRequest) -> PublishOutcome:
        graph = Graph(self.http, self.base, request.access_token)
        if request.reply_to:
            return graph.finish(await self.comment(graph, request))
        images = request.media_urls
        if not images:
            return PublishOutcome(
                Result.PERMANENT,
                code="media_required",
                message="instagram needs an image: text-only posts are not supported",
            )
        if len(images) > MAX_CAROUSEL:
            return PublishOutcome(
                Result.PERMANENT,
                code="too_many_media",
                message=f"instagram takes at most {MAX_CAROUSEL} images, not {len(images)}",
            )
        if len(images) == 1:
            children: list[dict[str, str]] = []
            parent = {"image_url": images[0], "caption": request.content}
        else:
            children = [{"image_url": url, "is_carousel_item": "true"} for url in images]
            parent = {"media_type": "CAROUSEL", "caption": request.content}
        outcome = await self.publish_containers(graph, request.page_id, children, parent)
        return graph.finish(outcome)

    async def comment(self, graph: Graph, request: PublishRequest) -> PublishOutcome:
        media, _, rest = request.reply_to.partition("/")
        top = rest.partition("/")[0]
        path = f"{top}/replies" if top else f"{media}/comments"
        data = await graph.call("POST", path, {"message": request.content}, publishes=True)
        if isinstance(data, PublishOutcome):
            return data
        comment = created_id(data, path, publishes=True)
        if isinstance(comment, PublishOutcome):
            return comment
        own = "/".join(part for part in (media, top, comment) if part)
        return PublishOutcome(
            Result.PUBLISHED, platform_post_id=own, url=await graph.field(media, "permalink")
        )


def create(context: PlatformContext) -> InstagramClient:
    return InstagramClient(
        context.http,
        f"{context.url('instagram', 'https://graph.instagram.com')}/{context.graph_version}",
        context.url("instagram.oauth", "https://graph.instagram.com"),
    )
