"""The publisher process: one consumer per platform, the platform clients, tenants' webhooks,
health."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import nats.errors
from nats.aio.client import Client as NatsClient

from kairos_common.deadline import Deadline
from kairos_common.grpc.channel import plaintext_warning
from kairos_common.grpc.server import GrpcServer, create_server
from kairos_common.metrics import MetricsServer, refresh_until
from kairos_common.streams import (
    DUE_STREAM,
    EVENTS_STREAM,
    REEMIT_SUBJECT,
    StreamLayout,
    connect,
    drain_and_close,
    ensure_streams,
)
from kairos_publisher import metrics, webhooks
from kairos_publisher.bootstrap import Publisher, bootstrap
from kairos_publisher.consumer import durable_name
from kairos_publisher.settings import PublisherSettings

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
        self.publisher: Publisher | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.metrics = MetricsServer(settings.metrics)
        #: Set when stopping: ends the metrics refresh task.
        self.metrics_stopping = asyncio.Event()

    async def start(self) -> None:
        if warning := plaintext_warning(
            self.settings.common.api_target, self.settings.common.api_tls
        ):
            log.warning(warning)
        self.metrics.start()
        self.grpc = await create_server(
            self.settings.server, service_names=[HEALTH_NAME], register=lambda _: None
        )
        self.nc = await connect(
            self.settings.common.nats_url,
            name="kairos-publisher",
            on_change=self._nats_changed,
            auth=self.settings.common.nats_auth,
        )
        js = self.nc.jetstream()
        await ensure_streams(js, StreamLayout(replicas=self.settings.common.nats_replicas))
        self.publisher = bootstrap(self.settings, js)
        consumers = self.publisher.consumers
        self.tasks = [asyncio.create_task(c.run(), name=f"consume-{c.platform}") for c in consumers]
        if self.publisher.webhooks is not None:
            await self.publisher.webhooks.start()
        if self.settings.metrics.enabled:
            names = [(DUE_STREAM, durable_name(c.platform)) for c in consumers]
            if self.publisher.webhooks is not None:
                names.append((EVENTS_STREAM, webhooks.DURABLE))
            self.tasks.append(
                asyncio.create_task(
                    refresh_until(
                        self.settings.metrics.refresh,
                        lambda: metrics.refresh_consumer_gauges(js, names),
                        self.metrics_stopping,
                        "the JetStream consumer gauges",
                    ),
                    name="consumer-gauges",
                )
            )
        self.ready = True
        await self.grpc.set_serving(self.nc.is_connected)
        log.info(
            "publisher ready",
            extra={"platforms": ",".join(c.platform.value for c in consumers)},
        )

    async def _nats_changed(self, connected: bool) -> None:
        # Without NATS nothing can be consumed: say so to whoever routes by health.
        if self.ready and not self.stopping and self.grpc is not None:
            await self.grpc.set_serving(connected)
        if connected and self.nc is not None and not self.stopping:
            # Events on their way to this copy when the link dropped wait out their AckWait;
            # a scheduler re-emits them at once instead (the fence refuses the stale ones).
            with contextlib.suppress(nats.errors.Error):
                await self.nc.publish(REEMIT_SUBJECT, b"")

    async def stop(self) -> None:
        """Stop fetching, finish in-flight calls and report them, ack, then close.

        All of it shares one grace period: work still in flight when it runs out is cancelled,
        and JetStream redelivers its unacked events to another copy.
        """
        deadline = Deadline(self.settings.server.grace.total_seconds())
        self.stopping = True
        self.metrics_stopping.set()
        if self.grpc is not None:
            await self.grpc.set_serving(False)
        if self.publisher is not None:
            steps = [c.drain(deadline.remaining()) for c in self.publisher.consumers]
            if self.publisher.webhooks is not None:
                steps.append(self.publisher.webhooks.stop(deadline))
            await asyncio.gather(*steps)
        # The fetch loops end as soon as their current short fetch returns.
        await deadline.finish(self.tasks)
        if self.publisher is not None:
            await self.publisher.close(deadline)
        if self.nc is not None:
            await drain_and_close(self.nc, deadline)
        if self.grpc is not None:
            await self.grpc.stop(deadline.remaining())
        await self.metrics.stop()
