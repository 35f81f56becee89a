"""Fixtures shared by every test: a real NATS server and a throwaway PostgreSQL database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient

from kairos_common.streams import connect
from support.nats_server import NatsServer
from support.postgres import TestDatabase


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    """One nats-server with JetStream for the session, on a free port, temporary storage."""
    server = NatsServer()
    server.start()
    yield server
    server.close()


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
