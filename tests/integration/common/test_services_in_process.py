"""The three services in this process on port 0: health per service name, and the streams."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as NatsClient

from kairos_common.streams import DEAD_STREAM, DUE_STREAM, EVENTS_STREAM
from support.api import SERVICE_TOKEN, api_settings, running_api
from support.nats_server import NatsServer
from support.postgres import TestDatabase
from support.services import health_status, running_publisher, running_scheduler

#: The names each service reports health under, as probes and load balancers ask for them.
API_NAMES = [
    "",
    "kairos.posts.v1.PostsService",
    "kairos.posts.v1.AccountsService",
    "kairos.dispatch.v1.DispatchService",
]
SCHEDULER_NAMES = ["", "kairos.scheduler"]
PUBLISHER_NAMES = ["", "kairos.publisher"]


@pytest.fixture
async def fresh_nats() -> AsyncIterator[NatsServer]:
    """A broker of its own, so nothing but the services under test declared its streams."""
    server = NatsServer()
    server.start()
    yield server
    server.close()


async def stream_names(
    js_client: NatsClient, wanted: list[str], timeout: float = 10.0
) -> list[str]:
    """The streams on the server, polled until they are `wanted` or `timeout` passes."""
    js = js_client.jetstream()
    deadline = time.monotonic() + timeout
    while True:
        names = sorted(info.config.name or "" for info in await js.streams_info())
        if names == wanted or time.monotonic() > deadline:
            return names
        await asyncio.sleep(0.05)


async def statuses(port: int, names: list[str]) -> dict[str, str]:
    return {name: await health_status(port, name) for name in names}


async def test_each_service_serves_its_health_names_and_the_streams_exist(
    fresh_nats: NatsServer, test_database: TestDatabase
) -> None:
    client = NatsClient()
    await client.connect(fresh_nats.url)
    try:
        assert await client.jetstream().streams_info() == []
        settings = api_settings(test_database.url, KAIROS_NATS_URL=fresh_nats.url)
        async with running_api(settings) as api:
            environ = {
                "KAIROS_NATS_URL": fresh_nats.url,
                "KAIROS_API_TARGET": api.target,
                "KAIROS_SERVICE_TOKEN": SERVICE_TOKEN,
                "KAIROS_PUBLISHER_PLATFORMS": "sandbox",
            }
            async with running_scheduler(environ) as scheduler, running_publisher(environ) as pub:
                assert await statuses(api.port, API_NAMES) == dict.fromkeys(API_NAMES, "SERVING")
                assert await statuses(scheduler.port, SCHEDULER_NAMES) == dict.fromkeys(
                    SCHEDULER_NAMES, "SERVING"
                )
                assert await statuses(pub.port, PUBLISHER_NAMES) == dict.fromkeys(
                    PUBLISHER_NAMES, "SERVING"
                )
                expected = sorted([DUE_STREAM, EVENTS_STREAM, DEAD_STREAM])
                assert await stream_names(client, expected) == expected
    finally:
        await client.close()
