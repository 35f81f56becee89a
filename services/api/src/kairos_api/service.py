"""The api process: migrations, the database, the gRPC services, and the outbox relay."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import ModuleType
from typing import TypeVar

import grpc
from nats.aio.client import Client as NatsClient

from kairos.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from kairos.dispatch.v1 import webhooks_pb2 as dispatch_webhooks_pb2
from kairos.posts.v1 import (
    events_pb2_grpc,
    media_pb2,
    media_pb2_grpc,
    posts_pb2,
    posts_pb2_grpc,
    queues_pb2,
    queues_pb2_grpc,
    series_pb2,
    series_pb2_grpc,
    webhooks_pb2,
    webhooks_pb2_grpc,
)
from kairos_api import metrics
from kairos_api.adapters import database
from kairos_api.bootstrap import bootstrap
from kairos_api.entrypoints.auth import Authenticator
from kairos_api.entrypoints.grpc_accounts import AccountsServicer
from kairos_api.entrypoints.grpc_dispatch import DispatchServicer
from kairos_api.entrypoints.grpc_events import EventsServicer
from kairos_api.entrypoints.grpc_media import MediaServicer
from kairos_api.entrypoints.grpc_posts import PostsServicer
from kairos_api.entrypoints.grpc_queues import QueueServicer
from kairos_api.entrypoints.grpc_series import SeriesServicer
from kairos_api.entrypoints.grpc_webhook_dispatch import WebhookDispatchServicer
from kairos_api.entrypoints.grpc_webhook_dispatch import add_to_server as add_webhook_dispatch
from kairos_api.entrypoints.grpc_webhooks import WebhooksServicer
from kairos_api.entrypoints.retries import with_retries
from kairos_api.service_layer import webhooks
from kairos_api.service_layer.application import Application, Notifier
from kairos_api.service_layer.posts import fold_stats_until
from kairos_api.service_layer.relay import OutboxRelay
from kairos_api.service_layer.series import materialise_until
from kairos_api.service_layer.watch import EventFeed
from kairos_api.settings import ApiSettings
from kairos_common.deadline import Deadline
from kairos_common.grpc.server import GrpcServer, create_server
from kairos_common.metrics import MetricsServer, refresh_until
from kairos_common.settings import CannotStart
from kairos_common.streams import (
    WAKE_SUBJECT,
    StreamLayout,
    connect,
    drain_and_close,
    ensure_streams,
)

S = TypeVar("S")
log = logging.getLogger(__name__)

#: Seconds between tries to declare the streams when NATS refuses them.
RETRY = 30.0

POSTS_SERVICE = "kairos.posts.v1.PostsService"
ACCOUNTS_SERVICE = "kairos.posts.v1.AccountsService"
DISPATCH_SERVICE = "kairos.dispatch.v1.DispatchService"
MEDIA_SERVICE = "kairos.posts.v1.MediaService"
QUEUE_SERVICE = "kairos.posts.v1.QueueService"
SERIES_SERVICE = "kairos.posts.v1.SeriesService"
EVENTS_SERVICE = "kairos.posts.v1.EventsService"
WEBHOOKS_SERVICE = "kairos.posts.v1.WebhooksService"
WEBHOOK_DISPATCH_SERVICE = "kairos.dispatch.v1.WebhookDispatchService"


class NatsNotifier(Notifier):
    """Pokes the relay after commits and wakes the schedulers for posts due right away."""

    def __init__(self, nc: NatsClient, relay: OutboxRelay) -> None:
        self.nc = nc
        self.relay = relay

    def outbox_written(self) -> None:
        self.relay.poke()

    def due_soon(self) -> None:
        if self.nc.is_connected:
            asyncio.get_running_loop().create_task(self.nc.publish(WAKE_SUBJECT, b""))


class ApiService:
    """Serves the api's gRPC services, relays the outbox and reports health."""

    def __init__(self, settings: ApiSettings) -> None:
        settings.common.require_service_token()
        self.settings = settings
        self.app: Application = bootstrap(settings)
        tls = settings.server.tls
        self.auth = Authenticator(
            self.app.keys,
            settings.common.service_token,
            require_client_certificate=tls is not None and tls.client_ca is not None,
        )
        self.stopping = asyncio.Event()
        self.grpc: GrpcServer | None = None
        self.nc: NatsClient | None = None
        self.relay: OutboxRelay | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.metrics = MetricsServer(settings.metrics)
        self.feed = EventFeed(lambda: self.nc, self.stopping)

    def register(self, server: grpc.aio.Server) -> None:
        app, auth = self.app, self.auth
        patience = self.settings.database_retry

        def retried(servicer: S, module: ModuleType, name: str) -> S:
            # Unary calls run again while the database is away (`entrypoints.retries`).
            return with_retries(servicer, module.DESCRIPTOR.services_by_name[name], patience)

        posts_pb2_grpc.add_PostsServiceServicer_to_server(
            retried(PostsServicer(app, auth), posts_pb2, "PostsService"), server
        )
        posts_pb2_grpc.add_AccountsServiceServicer_to_server(
            retried(AccountsServicer(app, auth), posts_pb2, "AccountsService"), server
        )
        media_pb2_grpc.add_MediaServiceServicer_to_server(
            retried(MediaServicer(app, auth), media_pb2, "MediaService"), server
        )
        dispatch_pb2_grpc.add_DispatchServiceServicer_to_server(
            retried(DispatchServicer(app, auth), dispatch_pb2, "DispatchService"), server
        )
        queues_pb2_grpc.add_QueueServiceServicer_to_server(
            retried(QueueServicer(app, auth), queues_pb2, "QueueService"), server
        )
        series_pb2_grpc.add_SeriesServiceServicer_to_server(
            retried(SeriesServicer(app, auth), series_pb2, "SeriesService"), server
        )
        events_pb2_grpc.add_EventsServiceServicer_to_server(EventsServicer(auth, self.feed), server)
        webhooks_pb2_grpc.add_WebhooksServiceServicer_to_server(
            retried(WebhooksServicer(app, auth), webhooks_pb2, "WebhooksService"), server
        )
        # Registered by hand: its tries are decoded with NUL characters replaced.
        add_webhook_dispatch(
            retried(
                WebhookDispatchServicer(app, auth), dispatch_webhooks_pb2, "WebhookDispatchService"
            ),
            server,
        )

    async def start(self) -> None:
        url = self.settings.common.database_url
        if self.settings.migrate_on_start:
            await asyncio.to_thread(database.migrate, url)
        elif (behind := await asyncio.to_thread(database.schema_behind, url)) is not None:
            # Serving on another schema would half-work; whoever owns the migrations runs them.
            raise CannotStart(f"{behind}: run `python -m kairos_api migrate` first")
        self.metrics.start()
        self.grpc = await create_server(
            self.settings.server,
            service_names=[
                POSTS_SERVICE,
                ACCOUNTS_SERVICE,
                MEDIA_SERVICE,
                DISPATCH_SERVICE,
                QUEUE_SERVICE,
                SERIES_SERVICE,
                EVENTS_SERVICE,
                WEBHOOKS_SERVICE,
                WEBHOOK_DISPATCH_SERVICE,
            ],
            register=self.register,
        )
        self.tasks.append(asyncio.create_task(self._relay_events(), name="outbox-relay"))
        self.tasks.append(
            asyncio.create_task(fold_stats_until(self.app, self.stopping), name="stats-fold")
        )
        # Occurrences of recurring series a horizon ahead; every api copy runs it (row locks).
        self.tasks.append(
            asyncio.create_task(materialise_until(self.app, self.stopping), name="series")
        )
        self.tasks.append(
            asyncio.create_task(
                webhooks.prune_log_until(self.app, self.stopping), name="webhook-log-prune"
            )
        )
        if self.settings.metrics.enabled:
            self.tasks.append(
                asyncio.create_task(
                    refresh_until(
                        self.settings.metrics.refresh,
                        lambda: metrics.refresh_gauges(self.app),
                        self.stopping,
                        "the targets and outbox gauges",
                    ),
                    name="metrics-gauges",
                )
            )
        await self.grpc.set_serving(True)
        log.info("api ready")

    async def _relay_events(self) -> None:
        """Connect to NATS (retrying while it is away) and relay the outbox until stopped.

        The api serves meanwhile: events wait in the outbox, and the schedulers claim on their
        own tick instead of being woken.
        """
        self.nc = await connect(
            self.settings.common.nats_url,
            name="kairos-api",
            auth=self.settings.common.nats_auth,
        )
        js = self.nc.jetstream()
        layout = StreamLayout(replicas=self.settings.common.nats_replicas)
        while not self.stopping.is_set():
            try:
                await ensure_streams(js, layout)
                break
            except CannotStart as error:
                log.error("%s; events wait in the outbox, trying again in %g s", error, RETRY)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), RETRY)
        if self.stopping.is_set():
            return  # asked to stop while connecting: the outbox keeps what is there
        self.relay = OutboxRelay(self.app.uow, self.nc, retention=self.settings.outbox_retention)
        self.app.notifier = NatsNotifier(self.nc, self.relay)
        await self.relay.run()

    async def stop(self) -> None:
        """Stop serving, let calls and the relay's round finish within the grace, close."""
        deadline = Deadline(self.settings.server.grace.total_seconds())
        self.stopping.set()
        if self.grpc is not None:
            await self.grpc.stop(deadline.remaining())
        if self.relay is not None:
            # Let the relay finish the round it is in, so committed events go out now.
            self.relay.stopping.set()
            self.relay.poke()
        # Still connecting to NATS, or past the grace: the outbox keeps what is left.
        relaying = deadline if self.relay is not None else Deadline(0)
        await relaying.finish(self.tasks)
        if self.nc is not None:
            await drain_and_close(self.nc, deadline)
        await self.metrics.stop()
        await self.app.close()
