"""The scheduler process: NATS, the due-event streams, the claim loop and the sweeper."""

from __future__ import annotations

import asyncio
import logging

import grpc
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from kairos.dispatch.v1 import dispatch_pb2_grpc
from kairos_common.deadline import Deadline
from kairos_common.grpc.channel import open_channel, plaintext_warning
from kairos_common.grpc.server import GrpcServer, create_server
from kairos_common.metrics import MetricsServer
from kairos_common.publishing import AckedPublisher
from kairos_common.streams import (
    DUE_STREAM,
    REEMIT_QUEUE,
    REEMIT_SUBJECT,
    WAKE_SUBJECT,
    StreamLayout,
    connect,
    drain_and_close,
    ensure_streams,
    leader_elected_subjects,
)
from kairos_scheduler.loop import ClaimLoop
from kairos_scheduler.settings import SchedulerSettings

log = logging.getLogger(__name__)

HEALTH_NAME = "kairos.scheduler"


class SchedulerService:
    """Connects to NATS and the api, then claims and sweeps until stopped."""

    def __init__(self, settings: SchedulerSettings) -> None:
        settings.common.require_service_token()
        self.settings = settings
        #: Started and not yet stopping: health then follows the NATS connection.
        self.ready = False
        self.stopping = False
        self.grpc: GrpcServer | None = None
        self.nc: NatsClient | None = None
        self.channel: grpc.aio.Channel | None = None
        self.loop: ClaimLoop | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.metrics = MetricsServer(settings.metrics)

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
            name="kairos-scheduler",
            on_change=self._nats_changed,
            auth=self.settings.common.nats_auth,
        )
        js = self.nc.jetstream()
        await ensure_streams(js, StreamLayout(replicas=self.settings.common.nats_replicas))
        common = self.settings.common
        self.channel = open_channel(common.api_target, common.api_tls)
        self.loop = ClaimLoop(
            self.settings,
            dispatch_pb2_grpc.DispatchServiceStub(self.channel),
            AckedPublisher(self.nc),
        )
        loop = self.loop

        async def on_wake(_: Msg) -> None:
            loop.wake.set()

        async def on_reemit(_: Msg) -> None:
            loop.reemit("a publisher's NATS connection came back")

        async def on_leader(message: Msg) -> None:
            loop.reemit(f"a new leader: {message.subject.removeprefix('$JS.EVENT.ADVISORY.')}")

        await self.nc.subscribe(WAKE_SUBJECT, cb=on_wake)
        await self.nc.subscribe(REEMIT_SUBJECT, queue=REEMIT_QUEUE, cb=on_reemit)
        for subject in leader_elected_subjects(DUE_STREAM):
            await self.nc.subscribe(subject, cb=on_leader)
        self.tasks = [
            asyncio.create_task(loop.run_claims(), name="claims"),
            asyncio.create_task(loop.run_sweeps(), name="sweeps"),
        ]
        self.ready = True
        await self.grpc.set_serving(self.nc.is_connected)
        log.info("scheduler ready", extra={"api": self.settings.common.api_target})

    async def _nats_changed(self, connected: bool) -> None:
        # Without NATS nothing can be claimed and emitted: say so to whoever routes by health.
        if self.ready and not self.stopping and self.grpc is not None:
            await self.grpc.set_serving(connected)
        if connected and self.loop is not None and not self.stopping:
            self.loop.reemit("NATS connection came back")

    async def stop(self) -> None:
        """Stop claiming, let a claim in flight finish within the grace, close."""
        deadline = Deadline(self.settings.server.grace.total_seconds())
        self.stopping = True
        if self.grpc is not None:
            await self.grpc.set_serving(False)
        if self.loop is not None:
            self.loop.stopping.set()
        # A claim in flight finishes and its events are published before we leave.
        await deadline.finish(self.tasks)
        if self.nc is not None:
            await drain_and_close(self.nc, deadline)
        if self.channel is not None:
            await self.channel.close(None)
        if self.grpc is not None:
            await self.grpc.stop(deadline.remaining())
        await self.metrics.stop()
