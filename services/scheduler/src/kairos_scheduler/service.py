"""The scheduler process: NATS, streams and health; the claim loop plugs in here."""

from __future__ import annotations

import logging

from nats.aio.client import Client as NatsClient

from kairos_common.grpc.server import GrpcServer, create_server
from kairos_common.streams import StreamLayout, connect, ensure_streams
from kairos_scheduler.settings import SchedulerSettings

log = logging.getLogger(__name__)

HEALTH_NAME = "kairos.scheduler"


class SchedulerService:
    """Connects to NATS, declares the streams and reports health."""

    def __init__(self, settings: SchedulerSettings) -> None:
        self.settings = settings
        self.grpc: GrpcServer | None = None
        self.nc: NatsClient | None = None

    async def start(self) -> None:
        self.grpc = await create_server(
            self.settings.server, service_names=[HEALTH_NAME], register=lambda _: None
        )
        self.nc = await connect(self.settings.common.nats_url, name="kairos-scheduler")
        await ensure_streams(
            self.nc.jetstream(), StreamLayout(replicas=self.settings.common.nats_replicas)
        )
        await self.grpc.set_serving(True)
        log.info("scheduler ready")

    async def stop(self) -> None:
        grace = self.settings.server.grace.total_seconds()
        if self.grpc is not None:
            await self.grpc.set_serving(False)
        if self.nc is not None:
            await self.nc.drain()
        if self.grpc is not None:
            await self.grpc.stop(grace)
