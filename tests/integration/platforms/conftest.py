"""Fixtures for the platform clients' tests: the publisher's real HTTP client, a media host and
a context pointing a platform at its fake."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator

import httpx
import pytest

from kairos_fakes.media import MediaHost
from kairos_publisher.media import MediaFetcher
from kairos_publisher.transport import http_client

#: Short, so that a fake that hangs after receiving a post times the client out quickly.
HTTP_TIMEOUT = 1.5


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """The client the publisher really uses (httpx over aiohttp)."""
    async with http_client(timeout=HTTP_TIMEOUT) as client:
        yield client


@pytest.fixture
async def media() -> AsyncIterator[MediaFetcher]:
    """Downloads media, allowing this machine's loopback (where the media host runs)."""
    fetcher = MediaFetcher(
        timeout=HTTP_TIMEOUT, allowed_networks=[ipaddress.ip_network("127.0.0.0/8")]
    )
    yield fetcher
    await fetcher.aclose()


@pytest.fixture
async def media_host() -> AsyncIterator[MediaHost]:
    host = MediaHost()
    await host.start()
    yield host
    await host.stop()
