"""Fixtures of the api's integration tests that need an api of their own."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from support.api import Client, RunningApi, api_settings, running_api
from support.nats_server import NatsServer
from support.postgres import fresh_database


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
async def own_api(
    request: pytest.FixtureRequest,
    nats_server: NatsServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[RunningApi]:
    """An api on a database of the test module's own, so that claiming, sweeping and relaying
    see only that module's rows; a module sets more of its environment in `OWN_API_ENV`."""
    environ: dict[str, str] = getattr(request.module, "OWN_API_ENV", {})
    folder = tmp_path_factory.mktemp("own-api")
    async with fresh_database(request.param, folder) as url:
        settings = api_settings(url, KAIROS_NATS_URL=nats_server.url, **environ)
        async with running_api(settings) as running:
            yield running


@pytest.fixture
async def tenant(own_api: RunningApi) -> AsyncIterator[Client]:
    """A new tenant's client of the module's own api."""
    async with own_api.client() as client:
        yield client
