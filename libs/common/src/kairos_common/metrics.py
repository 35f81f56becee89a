"""Prometheus metrics: the endpoint every service serves, its settings, and what the services'
own metric modules share.

Each service declares its metrics in its own `metrics` module, on the official client's default
registry, which also carries the client's process and Python collectors. Names follow the
Prometheus conventions: a `kairos_` prefix, base units (seconds), and `_total` on counters (the
client adds it).

The endpoint is the client's `start_http_server`: a small HTTP server on a daemon thread. A
scrape then never waits for the service's event loop nor holds it up, and no web framework is
added to the services for one GET. Gauges that need a query (JetStream consumer info, the api's
totals) are refreshed by a task every `refresh` seconds, never read at scrape time, so a scrape
costs the same however busy the service or large the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

from kairos_common.settings import CannotStart, Env, SettingsError

log = logging.getLogger(__name__)

#: Default metrics ports, one per service so that all three can run on one machine (`make dev`
#: uses them): clear of the gRPC ports (5005x), NATS (4222, 14222), the sandbox (8090), the
#: platform fakes (9100-91xx), Prometheus (9090) and Grafana (3000).
API_METRICS_PORT = 9461
SCHEDULER_METRICS_PORT = 9462
PUBLISHER_METRICS_PORT = 9463

#: Buckets for delays and durations that are usually short but may run to minutes (seconds).
SECONDS_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)
#: Buckets for batch sizes (items per call); DispatchService takes at most 2,000 a call.
BATCH_BUCKETS = (0, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2000)


@dataclass(frozen=True)
class MetricsSettings:
    """Where a service serves its Prometheus metrics."""

    #: Address the endpoint listens on (KAIROS_METRICS_HOST); 0.0.0.0 in containers, so that
    #: Prometheus can reach it.
    host: str = "127.0.0.1"
    #: Its port (KAIROS_METRICS_PORT); 0 switches metrics off: no endpoint, no refresh tasks.
    port: int = 0
    #: Seconds between refreshes of the gauges that need a query (KAIROS_METRICS_REFRESH_SECONDS).
    refresh: timedelta = timedelta(seconds=5)

    @property
    def enabled(self) -> bool:
        return self.port != 0

    @property
    def url(self) -> str:
        """Where Prometheus scrapes it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"


#: Metrics switched off (tests that run services in-process, several at once).
METRICS_OFF = MetricsSettings(port=0)


def metrics_settings(env: Env, default_port: int) -> MetricsSettings:
    """The metrics settings of one service, whose own port is `default_port` unless
    KAIROS_METRICS_PORT says otherwise."""
    host = env.text("KAIROS_METRICS_HOST", "127.0.0.1")
    if any(c.isspace() or c in "/@" for c in host):
        raise SettingsError(f"KAIROS_METRICS_HOST={host[:80]!r} is not a host name or address")
    return MetricsSettings(
        host=host,
        port=env.integer("KAIROS_METRICS_PORT", default_port, minimum=0, maximum=65535),
        refresh=env.seconds("KAIROS_METRICS_REFRESH_SECONDS", 5.0, minimum=0.1, maximum=3600.0),
    )


class MetricsServer:
    """The metrics endpoint of one service: started with the service, stopped with it."""

    def __init__(self, settings: MetricsSettings, registry: CollectorRegistry = REGISTRY) -> None:
        self.settings = settings
        self.registry = registry
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port it listens on; 0 when it does not."""
        return int(self._server.server_port) if self._server is not None else 0

    def start(self) -> None:
        """Listen, unless metrics are off; CannotStart naming the setting when the port is
        taken or the host is not an address of this machine."""
        if not self.settings.enabled:
            return
        host, port = self.settings.host, self.settings.port
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as error:
            raise CannotStart(
                f"cannot serve metrics on {host}:{port} (KAIROS_METRICS_HOST, "
                f"KAIROS_METRICS_PORT): {error.strerror or error}; choose another port, or 0 "
                "to switch metrics off"
            ) from None
        log.info("metrics listening", extra={"url": self.settings.url})

    async def stop(self) -> None:
        """Stop listening; `shutdown` waits for the server's loop, so it runs off the event loop."""
        server, self._server = self._server, None
        if server is None:
            return
        await asyncio.to_thread(server.shutdown)
        server.server_close()


async def refresh_until(
    every: timedelta, refresh: Callable[[], Awaitable[None]], stopping: asyncio.Event, what: str
) -> None:
    """Run `refresh` now and then every `every` until `stopping` is set. A failed round is
    logged (once while failures last, not every round) and the next one tries again; the gauges
    keep their last values meanwhile."""
    failing = False
    while not stopping.is_set():
        try:
            await refresh()
        except Exception as error:
            if not failing:
                log.warning("refreshing %s failed: %r; trying again every %s", what, error, every)
            failing = True
        else:
            if failing:
                log.info("refreshing %s works again", what)
            failing = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), every.total_seconds())
