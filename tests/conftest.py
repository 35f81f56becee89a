"""Fixtures shared by every test: a real NATS server and a throwaway PostgreSQL database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient

from kairos_common.streams import connect
from support.api import Client, RunningApi, api_settings, running_api
from support.nats_server import NatsServer
from support.postgres import TestDatabase
from support.processes import kill_leftovers, sigint_default_for_children


def pytest_configure(config: pytest.Config) -> None:
    # A run started with SIGINT ignored (`make test &` from a script) would pass the ignore on to
    # every child, and children that tests stop with SIGINT would run on.
    sigint_default_for_children()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    kill_leftovers()  # whatever a failed test left running


def _nats() -> Iterator[NatsServer]:
    server = NatsServer()
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    """One nats-server with JetStream for the session, on a free port, temporary storage."""
    yield from _nats()


@pytest.fixture(scope="module")
def own_nats() -> Iterator[NatsServer]:
    """A nats-server of the test module's own, for tests whose durable consumers or streams
    must see only their own events."""
    yield from _nats()


@pytest.fixture
def fresh_nats() -> Iterator[NatsServer]:
    """A nats-server of the test's own, for tests that count every delivery on the broker."""
    yield from _nats()


@pytest.fixture(scope="session")
def test_database() -> Iterator[TestDatabase]:
    """A fresh PostgreSQL database for the session, dropped afterwards."""
    database = TestDatabase()
    database.create()
    yield database
    database.drop()


@pytest.fixture
async def nats_client(nats_server: NatsServer) -> AsyncIterator[NatsClient]:
    """A NATS connection to the session's server."""
    client = await connect(nats_server.url, name="kairos-tests")
    yield client
    await client.close()


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    """Where subprocess services write their logs (kept by pytest for failed tests)."""
    folder = tmp_path / "logs"
    folder.mkdir()
    return folder


@pytest.fixture(scope="session", params=["postgresql", "sqlite"])
async def api(
    request: pytest.FixtureRequest,
    test_database: TestDatabase,
    nats_server: NatsServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[RunningApi]:
    """The api in-process on port 0: once on the session's PostgreSQL database, once on SQLite."""
    if request.param == "postgresql":
        url = test_database.url
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'kairos.db'}"
    async with running_api(api_settings(url, KAIROS_NATS_URL=nats_server.url)) as running:
        yield running


@pytest.fixture(scope="session")
async def pg_api(test_database: TestDatabase, nats_server: NatsServer) -> AsyncIterator[RunningApi]:
    """The api in-process on the session's PostgreSQL database only."""
    settings = api_settings(test_database.url, KAIROS_NATS_URL=nats_server.url)
    async with running_api(settings) as running:
        yield running


@pytest.fixture
async def client(api: RunningApi) -> AsyncIterator[Client]:
    """Stubs for a brand-new tenant with its own API key."""
    async with api.client() as tenant_client:
        yield tenant_client
