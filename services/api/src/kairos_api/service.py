"""The api process: the gRPC server and everything it serves."""

from __future__ import annotations

import logging

from kairos_api.settings import ApiSettings
from kairos_common.grpc.server import GrpcServer, create_server

log = logging.getLogger(__name__)

HEALTH_NAME = "kairos.api"


class ApiService:
    """Serves the api's gRPC services and reports their health."""

    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        self.grpc: GrpcServer | None = None

    async def start(self) -> None:
        self.grpc = await create_server(
            self.settings.server, service_names=[HEALTH_NAME], register=lambda _: None
        )
        await self.grpc.set_serving(True)
        log.info("api ready")

    async def stop(self) -> None:
        if self.grpc is not None:
            await self.grpc.stop(self.settings.server.grace.total_seconds())
