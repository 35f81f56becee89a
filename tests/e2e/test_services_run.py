"""Each service as a real process: starts, answers SERVING, declares the streams, stops cleanly."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient

from kairos_common.streams import DEAD_STREAM, DUE_STREAM, EVENTS_STREAM
from support.api import TEST_SECRET
from support.nats_server import NatsServer
from support.postgres import TestDatabase
from support.services import ServiceProcess

pytestmark = pytest.mark.e2e

GRACE_SECONDS = 3.0


def service_env(nats_server: NatsServer, database_url: str = "") -> dict[str, str]:
    return {
        "KAIROS_DATABASE_URL": database_url,
        "KAIROS_SECRET_KEY": TEST_SECRET,
        "KAIROS_NATS_URL": nats_server.url,
        "KAIROS_GRACE_SECONDS": str(GRACE_SECONDS),
        "KAIROS_LOG_FORMAT": "json",
    }


@pytest.mark.parametrize("name", ["api", "scheduler", "publisher"])
async def test_service_serves_health_and_exits_zero_on_sigterm(
    name: str, nats_server: NatsServer, test_database: TestDatabase, log_dir: Path
) -> None:
    service = ServiceProcess(name, service_env(nats_server, test_database.url), log_dir)
    service.start()
    try:
        await service.wait_serving()
        started = time.monotonic()
        code = service.terminate(timeout=GRACE_SECONDS + 5)
        took = time.monotonic() - started
    finally:
        if service.running:
            service.kill()
    assert code == 0, service.logs()
    assert took < GRACE_SECONDS + 2, f"{name} took {took:.1f}s to stop"
    assert '"msg": "stopped"' in service.logs()


@pytest.mark.parametrize("name", ["scheduler", "publisher"])
async def test_streams_exist_after_a_service_starts(name: str, log_dir: Path) -> None:
    fresh = NatsServer()  # its own broker, so nothing else could have declared the streams
    fresh.start()
    service = ServiceProcess(name, service_env(fresh), log_dir)
    try:
        client = NatsClient()
        await client.connect(fresh.url)
        js = client.jetstream()
        assert await js.streams_info() == []
        service.start()
        await service.wait_serving()
        names = sorted(info.config.name or "" for info in await js.streams_info())
        await client.close()
        assert names == sorted([DUE_STREAM, EVENTS_STREAM, DEAD_STREAM])
        assert service.terminate() == 0, service.logs()
    finally:
        if service.process is not None and service.running:
            service.kill()
        fresh.close()


async def test_bad_settings_exit_with_a_message(nats_server: NatsServer, log_dir: Path) -> None:
    service = ServiceProcess("scheduler", service_env(nats_server), log_dir)
    service.env["KAIROS_GRACE_SECONDS"] = "soon"
    service.start()
    assert service.process is not None
    assert service.process.wait(timeout=20) == 2
    assert "KAIROS_GRACE_SECONDS='soon' is not a number of seconds" in service.logs()


async def run_probe(port: int) -> int:
    probe = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kairos_common.healthcheck",
        f"127.0.0.1:{port}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await probe.wait()


async def test_container_healthcheck_command_reports_serving(
    nats_server: NatsServer, log_dir: Path
) -> None:
    service = ServiceProcess("publisher", service_env(nats_server), log_dir)
    assert await run_probe(service.port) == 1  # nothing listens yet
    service.start()
    try:
        await service.wait_serving()
        assert await run_probe(service.port) == 0
    finally:
        service.terminate()
