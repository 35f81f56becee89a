"""The server skeleton with TLS, real handshakes: health over TLS as the container health check
asks it, and the mutual-TLS listener's port named when it cannot listen."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from kairos_common import healthcheck
from kairos_common.grpc.server import GrpcServer, create_server
from kairos_common.settings import CannotStart, Env, ServerSettings, server_settings
from support.tls import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_settings(environ: dict[str, str], mutual: bool = False) -> ServerSettings:
    env = Env({"KAIROS_TEST_ADDR": "127.0.0.1:0", **environ})
    settings = server_settings(
        env,
        "KAIROS_TEST_ADDR",
        "127.0.0.1:0",
        mutual_tls_addr_variable="KAIROS_API_MTLS_ADDR" if mutual else "",
    )
    assert settings.tls is not None
    return settings


@pytest.fixture
async def serving(pki: Pki) -> AsyncIterator[GrpcServer]:
    server = await create_server(
        tls_settings(pki.server_env()), service_names=["kairos.test"], register=lambda _: None
    )
    await server.set_serving(True)
    try:
        yield server
    finally:
        await server.stop(0)


async def probe(*argv: str) -> int:
    return await asyncio.to_thread(healthcheck.main, list(argv))


async def test_the_health_check_asks_over_tls_with_the_ca(serving: GrpcServer, pki: Pki) -> None:
    target = f"127.0.0.1:{serving.port}"
    assert await probe(target, "--ca-file", str(pki.ca)) == 0
    assert await probe(target, "kairos.test", "--ca-file", str(pki.ca)) == 0
    named = ("--ca-file", str(pki.ca), "--server-name", "localhost")
    assert await probe(f"localhost:{serving.port}", *named) == 0
    with_certificate = ("--cert-file", str(pki.client_cert), "--key-file", str(pki.client_key))
    assert await probe(target, "--ca-file", str(pki.ca), *with_certificate) == 0


async def test_the_health_check_fails_in_plaintext_or_with_another_ca(
    serving: GrpcServer, pki: Pki
) -> None:
    target = f"127.0.0.1:{serving.port}"
    assert await probe(target) == 1
    assert await probe(target, "--ca-file", str(pki.other_ca)) == 1
    # The certificate names localhost and 127.0.0.1, not this.
    assert await probe(target, "--ca-file", str(pki.ca), "--server-name", "api.internal") == 1


async def test_health_check_usage_mistakes_exit_2(pki: Pki) -> None:
    assert await probe("127.0.0.1:1", "--cert-file", str(pki.client_cert)) == 2
    assert await probe("127.0.0.1:1", "--ca-file", "/nowhere/ca.pem") == 2


async def test_a_taken_mutual_tls_port_is_named(pki: Pki) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        addr = f"127.0.0.1:{taken.getsockname()[1]}"
        settings = tls_settings(pki.server_env(mutual_addr=addr), mutual=True)
        settings = ServerSettings(addr=settings.addr, grace=timedelta(seconds=0), tls=settings.tls)
        with pytest.raises(
            CannotStart, match=f"cannot listen on {addr} \\(KAIROS_API_MTLS_ADDR\\)"
        ):
            await create_server(settings, service_names=[], register=lambda _: None)
