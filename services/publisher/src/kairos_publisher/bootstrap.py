"""The composition root: builds the publisher's parts once (its DispatchService client, the HTTP
client, media fetching from URLs and from the media store, the platform clients and one consumer
per platform, and the webhook sender when it is on); the process
(`kairos_publisher.service`) adds health, NATS and the order things start and stop in."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from nats.js import JetStreamContext

from kairos_common.deadline import Deadline
from kairos_media.settings import open_store
from kairos_publisher.consumer import PlatformConsumer, account_semaphores
from kairos_publisher.dispatch import DispatchClient
from kairos_publisher.media import MediaFetcher
from kairos_publisher.platforms import registry
from kairos_publisher.platforms.base import PlatformContext
from kairos_publisher.settings import PublisherSettings
from kairos_publisher.transport import http_client
from kairos_publisher.webhooks import Webhooks


@dataclass
class Publisher:
    """What the publisher works with; `dispatch` is started and the consumers not yet run."""

    dispatch: DispatchClient
    http: httpx.AsyncClient
    media: MediaFetcher
    consumers: list[PlatformConsumer]
    #: Tenants' webhooks; None when KAIROS_WEBHOOKS_ENABLED is off.
    webhooks: Webhooks | None = None

    async def close(self, deadline: Deadline) -> None:
        """Report what is pending while the deadline allows, then close the connections (the
        consumers have stopped)."""
        await deadline.run(self.dispatch.close())
        await self.http.aclose()
        await self.media.aclose()


def bootstrap(settings: PublisherSettings, js: JetStreamContext) -> Publisher:
    """Build the publisher, with a client of the api at KAIROS_API_TARGET."""
    dispatch = DispatchClient.connect(settings.common)
    dispatch.start()
    timeout = settings.http_timeout.total_seconds()
    http = http_client(timeout, max_connections=settings.platform_concurrency * 4)
    media = MediaFetcher(
        timeout=timeout,
        allowed_networks=settings.media_allowed_networks,
        store=open_store(settings.media),
    )
    clients = registry(
        PlatformContext(
            http,
            media,
            urls=settings.platform_urls,
            graph_version=settings.graph_api_version,
            linkedin_version=settings.linkedin_version,
        )
    )
    accounts = account_semaphores(settings.account_concurrency)
    consumers = [
        PlatformConsumer(platform, clients[platform], settings, js, dispatch, accounts)
        for platform in settings.platforms
        if platform in clients  # no client for it in this build yet
    ]
    webhooks = None
    if settings.webhooks.enabled:
        webhooks = Webhooks.build(settings.webhooks, settings.common, js)
    return Publisher(dispatch, http, media, consumers, webhooks)
