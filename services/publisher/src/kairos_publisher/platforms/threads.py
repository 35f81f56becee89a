"""Threads (graph.threads.net).

Credentials read: `access_token` (the long-lived Threads user token), `page_id` (the Threads
user id), `expires_at` (for refreshing ahead of expiry). A post is a container: `TEXT`, `IMAGE`
(`image_url`) or, for 2-20 images, a `CAROUSEL` of `is_carousel_item` images, with `text` and,
for a reply, `reply_to_id`; it is polled until FINISHED, published with `threads_publish`, and
its permalink read. A thread is a chain of replies to one's own previous post.

platform_post_id: the Threads media id, which is all a reply needs. Text is limited to 500
characters by the platform (it answers code 100, PERMANENT).

A post with an uploaded video is a `VIDEO` container (`video_url` = the video's presigned URL,
which Threads downloads; `text`; `reply_to_id` for a reply). Threads processes it on its own
time: the container is polled through the attempt's stage every 30 seconds (the posts guide
says to wait "on average 30 seconds" before publishing) for at most 10 minutes (Kairos's
bound; the troubleshooting page suggests once a minute for 5 minutes), and published once
`stage.publishing()` allows it. ERROR comes with Threads' `error_message`
(`FAILED_DOWNLOADING_VIDEO`, `FAILED_PROCESSING_VIDEO`, `INVALID_DURATION`, ...): PERMANENT.
Limits: the Threads overview's "Video Specifications" (checked by the api from the catalogue).

Tokens last 60 days and are refreshed while still valid (`refresh_access_token` with
`th_refresh_token`), a week ahead.
"""

from __future__ import annotations

from datetime import timedelta

import httpx

from kairos_publisher.platforms._graph import ContainerClient, Graph, pulled_video_url
from kairos_publisher.platforms.base import (
    PlatformContext,
    PublishOutcome,
    PublishRequest,
    Result,
)

MAX_CAROUSEL = 20


class ThreadsClient(ContainerClient):
    """Publishes posts, carousels and replies for one Threads account."""

    refresh_margin = timedelta(days=7)
    create_edge = "threads"
    publish_edge = "threads_publish"
    status_fields = "status,error_message"
    status_key = "status"
    refresh_grant = "th_refresh_token"

    def __init__(self, http: httpx.AsyncClient, base: str, oauth_base: str) -> None:
        super().__init__(http, base, oauth_base)
        self.video_poll_interval = 30.0
        self.video_max_wait = 10 * 60.0

    async def publish(self, request: PublishRequest) -> PublishOutcome:
        video = request.video
        if video is not None:
            url = pulled_video_url(video, "threads")
            if isinstance(url, PublishOutcome):
                return url
            parent = {"media_type": "VIDEO", "video_url": url, "text": request.content}
            if request.reply_to:
                parent["reply_to_id"] = request.reply_to
            graph = Graph(self.http, self.base, request.access_token)
            outcome = await self.publish_containers(
                graph, request.page_id, [], parent, stage=request.stage
            )
            return graph.finish(outcome)
        images = request.media_urls
        if len(images) > MAX_CAROUSEL:
            return PublishOutcome(
                Result.PERMANENT,
                code="too_many_media",
                message=f"threads takes at most {MAX_CAROUSEL} images, not {len(images)}",
            )
        parent = {"text": request.content}
        if request.reply_to:
            parent["reply_to_id"] = request.reply_to
        children: list[dict[str, str]] = []
        if not images:
            parent["media_type"] = "TEXT"
        elif len(images) == 1:
            parent.update(media_type="IMAGE", image_url=images[0])
        else:
            parent["media_type"] = "CAROUSEL"
            children = [
                {"media_type": "IMAGE", "image_url": url, "is_carousel_item": "true"}
                for url in images
            ]
        graph = Graph(self.http, self.base, request.access_token)
        outcome = await self.publish_containers(graph, request.page_id, children, parent)
        return graph.finish(outcome)


#: The Threads API's own version (graph.threads.net/v1.0, the only one its docs name); it does not
#: follow the Graph API's (`KAIROS_GRAPH_API_VERSION`).
THREADS_VERSION = "v1.0"


def create(context: PlatformContext) -> ThreadsClient:
    return ThreadsClient(
        context.http,
        f"{context.url('threads', 'https://graph.threads.net')}/{THREADS_VERSION}",
        context.url("threads.oauth", "https://graph.threads.net"),
    )
