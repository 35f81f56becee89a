"""Fixtures of the publisher's integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from nats.js import JetStreamContext

from kairos_common.streams import connect, ensure_streams
from support.nats_server import NatsServer


@pytest.fixture
async def js(own_nats: NatsServer) -> AsyncIterator[JetStreamContext]:
    """JetStream on the module's own broker, with the three streams declared."""
    client = await connect(own_nats.url, name="publisher-tests")
    stream = client.jetstream()
    await ensure_streams(stream)
    yield stream
    await client.close()
