"""The publisher process: one consumer per platform, the platform clients, health."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import grpc
import httpx
from nats.aio.client import Client as NatsClient

from kairos.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from kairos_common.deadline import Deadline
from kairos_common.grpc.channel import bearer, insecure_channel
from kairos_common.grpc.server import GrpcServer, create_server
from kairos_common.streams import StreamLayout, connect, drain_and_close, ensure_streams
from kairos_publisher.batching import Batcher
from kairos_publisher.consumer import PlatformConsumer, account_semaphores
from kairos_publisher.media import MediaFetcher
from kairos_publisher.platforms import registry
from kairos_publisher.platforms.base import PlatformContext
from kairos_publisher.settings import PublisherSettings
from kairos_publisher.transport import http_client

log = logging.getLogger(__name__)

HEALTH_NAME = "kairos.publisher"


class PublisherService:
    """Consumes due events for the configured platforms until stopped."""

    def __init__(self, settings: PublisherSettings) -> None:
        settings.common.require_service_token()
        self.settings = settings
        #: Started and not yet stopping: health then follows the NATS connection.
        self.ready = False
        self.stopping = False
        self.grpc: GrpcServer | None = None
        self.nc: NatsClient | None = None
        self.channel: grpc.aio.Channel | None = None
        self.http: httpx.AsyncClient | None = None
        self.media: MediaFetcher | None = None
        self.batchers: list[Batcher[Any, Any]] = []
        self.consumers: list[PlatformConsumer] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self.grpc = await create_server(
            self.settings.server, service_names=[HEALTH_NAME], register=lambda _: None
        )
        self.nc = await connect(
            self.settings.common.nats_url, name="kairos-publisher", on_change=self._nats_changed
        )
        js = self.nc.jetstream()
        await ensure_streams(js, StreamLayout(replicas=self.settings.common.nats_replicas))
        self.channel = insecure_channel(self.settings.common.api_target)
        dispatch = dispatch_pb2_grpc.DispatchServiceStub(self.channel)
        metadata = bearer(self.settings.common.service_token)

        async def begin(ids: Sequence[str]) -> Sequence[dispatch_pb2.BeginAttemptResponse]:
            reply = await dispatch.BeginAttempts(
                dispatch_pb2.BeginAttemptsRequest(delivery_ids=ids),
                metadata=metadata,
                timeout=RPC_TIMEOUT,
            )
            return list(reply.results)

        async def complete(
            outcomes: Sequence[dispatch_pb2.AttemptOutcome],
        ) -> Sequence[dispatch_pb2.CompletionResult]:
            reply = await dispatch.CompleteAttempts(
                dispatch_pb2.CompleteAttemptsRequest(outcomes=outcomes),
                metadata=metadata,
                timeout=RPC_TIMEOUT,
            )
            return list(reply.results)

        # Begins are not retried inside the batcher: a begin that timed out may have begun.
        begins: Batcher[str, dispatch_pb2.BeginAttemptResponse] = Batcher(
            "BeginAttempts", begin, attempts=1
        )
        completions: Batcher[dispatch_pb2.AttemptOutcome, dispatch_pb2.CompletionResult] = Batcher(
            "CompleteAttempts", complete, attempts=5
        )
        self.batchers = [begins, completions]
        for batcher in self.batchers:
            batcher.start()
        timeout = self.settings.http_timeout.total_seconds()
        self.http = http_client(timeout, max_connections=self.settings.platform_concurrency * 4)
        self.media = MediaFetcher(
            timeout=timeout, allowed_networks=self.settings.media_allowed_networks
        )
        clients = registry(
            PlatformContext(
                self.http,
                self.media,
                urls=self.settings.platform_urls,
                graph_version=self.settings.graph_api_version,
                linkedin_version=self.settings.linkedin_version,
            )
        )
        accounts = account_semaphores(self.settings.account_concurrency)
        for platform in self.settings.platforms:
            client = clients.get(platform)
            if client is None:
                continue  # no client for it in this build yet
            self.consumers.append(
                PlatformConsumer(
                    platform, client, self.settings, js, dispatch, begins, completions, accounts
                )
            )
        self.tasks = [
            asyncio.create_task(c.run(), name=f"consume-{c.platform}") for c in self.consumers
        ]
        self.ready = True
        await self.grpc.set_serving(self.nc.is_connected)
        log.info(
            "publisher ready",
            extra={"platforms": ",".join(c.platform.value for c in self.consumers)},
        )

    async def _nats_changed(self, connected: bool) -> None:
        # Without NATS nothing can be consumed: say so to whoever routes by health.
        if self.ready and not self.stopping and self.grpc is not None:
            await self.grpc.set_serving(connected)

    async def stop(self) -> None:
        """Stop fetching, finish in-flight calls and report them, ack, then close.

        All of it shares one grace period: work still in flight when it runs out is cancelled,
        and JetStream redelivers its unacked events to another copy.
        """
        deadline = Deadline(self.settings.server.grace.total_seconds())
        self.stopping = True
        if self.grpc is not None:
            await self.grpc.set_serving(False)
        await asyncio.gather(*(c.drain(deadline.remaining()) for c in self.consumers))
        # The fetch loops end as soon as their current short fetch returns.
        await deadline.finish(self.tasks)
        for batcher in self.batchers:
            await deadline.run(batcher.close())
        if self.http is not None:
            await self.http.aclose()
        if self.media is not None:
            await self.media.aclose()
        if self.nc is not None:
            await drain_and_close(self.nc, deadline)
        if self.channel is not None:
            await self.channel.close(None)
        if self.grpc is not None:
            await self.grpc.stop(deadline.remaining())


RPC_TIMEOUT = 15.0
