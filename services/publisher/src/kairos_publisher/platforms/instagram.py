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

A post with an uploaded video is a reel: a `REELS` container (`video_url` = the video's
presigned URL, which Instagram downloads; `caption`; `share_to_feed=true`, so that it shows in
the feed as well as the Reels tab, as a post would). With the target setting
`media_type=STORIES` it is a story instead (`STORIES` container with `video_url` and no
caption: Meta's story containers take none, so the text is not published). The container is
polled through the attempt's stage every minute (the interval Meta's content-publishing guide
recommends) for at most 15 minutes (Kairos's bound: the guide's 5 minutes is too short for a
300 MB reel), then published with `media_publish` once `stage.publishing()` allows it.
Specifications and limits: IG User Media reference, "Reel Specifications" and "Story Video
Specifications" (checked by the api from the catalogue). A single image with
`media_type=STORIES` becomes an image story the same way.

Tokens last 60 days and are refreshed while still valid (`refresh_access_token` with
`ig_refresh_token`), a week ahead.
"""

from __future__ import annotations

from datetime import timedelta

import httpx

from kairos_publisher.platforms._graph import (
    ContainerClient,
    Graph,
    created_id,
    pulled_video_url,
)
from kairos_publisher.platforms.base import (
    PlatformContext,
    PublishOutcome,
    PublishRequest,
    Result,
)

MAX_CAROUSEL = 10
#: The target setting that makes a post's video (or single image) a story.
STORIES = "STORIES"


class InstagramClient(ContainerClient):
    """Publishes image posts, carousels and comments for one IG professional account."""

    refresh_margin = timedelta(days=7)
    create_edge = "media"
    publish_edge = "media_publish"
    status_fields = "status_code"
    status_key = "status_code"
    refresh_grant = "ig_refresh_token"

    def __init__(self, http: httpx.AsyncClient, base: str, oauth_base: str) -> None:
        super().__init__(http, base, oauth_base)
        self.video_poll_interval = 60.0
        self.video_max_wait = 15 * 60.0

    async def publish(self, request: PublishRequest) -> PublishOutcome:
        graph = Graph(self.http, self.base, request.access_token)
        story = request.settings.get("media_type") == STORIES
        video = request.video
        if request.reply_to:
            if video is not None:
                return PublishOutcome(
                    Result.PERMANENT,
                    code="video_in_comment",
                    message="an instagram comment takes no video",
                )
            return graph.finish(await self.comment(graph, request))
        if video is not None:
            url = pulled_video_url(video, "instagram")
            if isinstance(url, PublishOutcome):
                return url
            if story:
                parent = {"media_type": STORIES, "video_url": url}
            else:
                parent = {
                    "media_type": "REELS",
                    "video_url": url,
                    "caption": request.content,
                    "share_to_feed": "true",
                }
            outcome = await self.publish_containers(
                graph, request.page_id, [], parent, stage=request.stage
            )
            return graph.finish(outcome)
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
        if story:
            if len(images) > 1:
                return PublishOutcome(
                    Result.PERMANENT,
                    code="too_many_media",
                    message=f"an instagram story holds one image, not {len(images)}",
                )
            children: list[dict[str, str]] = []
            parent = {"media_type": STORIES, "image_url": images[0]}
        elif len(images) == 1:
            children = []
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
