"""A scheduler or publisher that would reach an api off this machine in plaintext says so once at
start, naming the settings; over TLS, or on loopback, it says nothing."""

from __future__ import annotations

import logging

import pytest

from support.nats_server import NatsServer
from support.services import running_publisher, running_scheduler
from support.tls import make_pki

#: An address of TEST-NET-1 (RFC 5737): off this machine, and nothing answers there.
REMOTE = "192.0.2.1:50051"


def warnings_about_plaintext(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "plaintext" in r.getMessage()
    ]


async def test_plaintext_off_this_machine_is_warned_about_once_at_start(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    environ = {
        "KAIROS_NATS_URL": nats_server.url,
        "KAIROS_API_TARGET": REMOTE,
        "KAIROS_PUBLISHER_PLATFORMS": "sandbox",
    }
    async with running_scheduler(environ):
        (scheduler,) = warnings_about_plaintext(caplog)
    caplog.clear()
    async with running_publisher(environ):
        (publisher,) = warnings_about_plaintext(caplog)
    for warning in (scheduler, publisher):
        assert warning.startswith(f"KAIROS_API_TARGET={REMOTE} is not on this machine")
        assert "KAIROS_API_TLS=true" in warning
        assert "KAIROS_API_CA_FILE" in warning


async def test_tls_or_loopback_is_not_warned_about(
    nats_server: NatsServer,
    caplog: pytest.LogCaptureFixture,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    caplog.set_level(logging.INFO)
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    base = {"KAIROS_NATS_URL": nats_server.url, "KAIROS_PUBLISHER_PLATFORMS": "sandbox"}
    async with running_scheduler({**base, "KAIROS_API_TARGET": REMOTE, **pki.client_env()}):
        pass
    async with running_publisher({**base, "KAIROS_API_TARGET": "localhost:50051"}):
        pass
    assert any("scheduler ready" in r.getMessage() for r in caplog.records)
    assert warnings_about_plaintext(caplog) == []
