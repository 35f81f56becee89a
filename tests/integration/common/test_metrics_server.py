"""The metrics endpoint over real sockets: it serves the Prometheus text format, stops
listening when stopped, names its setting when the port is taken, and is absent when off."""

from __future__ import annotations

import socket

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from kairos_common.metrics import METRICS_OFF, MetricsServer, MetricsSettings
from kairos_common.settings import CannotStart
from support.ports import free_port


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


async def test_it_serves_the_registry_and_stops_listening_when_stopped() -> None:
    registry = CollectorRegistry()
    Counter("kairos_test_things", "Things.", ["kind"], registry=registry).labels("a").inc(3)
    port = free_port()
    server = MetricsServer(MetricsSettings(port=port), registry)
    server.start()
    try:
        assert server.port == port
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{port}/metrics")
        assert response.status_code == 200
        samples = {
            (s.name, tuple(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples
        }
        assert samples[("kairos_test_things_total", (("kind", "a"),))] == 3
    finally:
        await server.stop()
    assert server.port == 0
    assert not listening(port)
    await server.stop()  # a second stop is harmless


async def test_a_taken_port_is_named_with_its_setting() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = MetricsServer(MetricsSettings(port=port), CollectorRegistry())
        with pytest.raises(CannotStart) as error:
            server.start()
    assert str(error.value).startswith(
        f"cannot serve metrics on 127.0.0.1:{port} (KAIROS_METRICS_HOST, KAIROS_METRICS_PORT): "
    )
    assert str(error.value).endswith("choose another port, or 0 to switch metrics off")


async def test_off_means_no_endpoint() -> None:
    server = MetricsServer(METRICS_OFF)
    server.start()
    assert server.port == 0
    await server.stop()
