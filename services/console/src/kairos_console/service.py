"""The console as a service: one channel to the api, an HTTP server, a graceful stop."""

from __future__ import annotations

import logging

from aiohttp import web

from kairos_client import KairosClient
from kairos_common.grpc.channel import CHANNEL_OPTIONS, channel_credentials, tls_options
from kairos_common.settings import CannotStart
from kairos_console.app import create_app
from kairos_console.settings import ConsoleSettings

log = logging.getLogger(__name__)

#: Seconds that requests in flight (a page being rendered) get when the console stops; the live
#: streams of open dashboards end at once and their pages reconnect to another copy.
GRACE = 5.0


class ConsoleService:
    def __init__(self, settings: ConsoleSettings) -> None:
        self.settings = settings
        tls = settings.api_tls
        self.client = KairosClient(
            settings.api_target,
            "",
            timeout=settings.api_timeout,
            channel_options=[*CHANNEL_OPTIONS, *(tls_options(tls) if tls.enabled else [])],
            credentials=channel_credentials(tls) if tls.enabled else None,
        )
        self.runner: web.AppRunner | None = None
        #: The port it listens on (the chosen one when the settings said 0).
        self.port = 0

    async def start(self) -> None:
        await self.client.__aenter__()
        app = create_app(self.settings, self.client)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=GRACE)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.settings.host, self.settings.port)
        try:
            await site.start()
        except OSError as error:
            raise CannotStart(
                f"cannot listen on {self.settings.host}:{self.settings.port} "
                f"(KAIROS_CONSOLE_ADDR): {error.strerror}"
            ) from None
        self.port = self.runner.addresses[0][1]
        log.info(
            "console ready",
            extra={
                "url": f"http://{self.settings.host}:{self.port}/",
                "api": self.settings.api_target,
            },
        )

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        await self.client.close()
