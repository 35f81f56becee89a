"""`connect()` against real nats-servers that want credentials (user and password, token, NKey,
a .creds file in operator mode) and TLS (a server certificate from a test CA, and one that
verifies client certificates): it connects and messages go round; a refusal is told as one."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kairos_common.settings import CommonSettings
from kairos_common.streams import connect
from support.nats_auth import TlsFiles, operator_mode, tls_files, user_nkey
from support.nats_server import NatsServer

PASSWORD = "s3cret-pa55word"
TOKEN = "t0ken-" + "k" * 24

StartServer = Callable[..., NatsServer]


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    """Start nats-servers with a config of the test's (core NATS only); all closed at the end."""
    started: list[NatsServer] = []

    def start(config: str, *, scheme: str = "nats") -> NatsServer:
        server = NatsServer(config, scheme=scheme)
        started.append(server)
        server.start(jetstream=False)
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return tls_files(tmp_path_factory.mktemp("nats-tls"))


def settings(server: NatsServer, **environ: str) -> CommonSettings:
    return CommonSettings.from_env({"KAIROS_NATS_URL": server.url, **environ})


async def assert_round_trip(common: CommonSettings) -> None:
    """Connect as the services do, and see a message published come back on a subscription."""
    client = await asyncio.wait_for(
        connect(common.nats_url, name="kairos-tests-auth", auth=common.nats_auth), timeout=10
    )
    try:
        subscription = await client.subscribe("kairos.tests.auth")
        await client.publish("kairos.tests.auth", b"round trip")
        message = await subscription.next_msg(timeout=5)
        assert message.data == b"round trip"
    finally:
        await client.close()


async def refusal_lines(
    common: CommonSettings, caplog: pytest.LogCaptureFixture, wanted: str
) -> list[str]:
    """Try to connect until a warning containing `wanted` is logged (10 s at most), stop trying,
    and return every warning connect() logged meanwhile."""
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="kairos_common.streams"):
        trying = asyncio.create_task(
            connect(common.nats_url, name="kairos-tests-refused", auth=common.nats_auth)
        )
        try:
            for _ in range(100):
                if any(wanted in r.getMessage() for r in caplog.records) or trying.done():
                    break
                await asyncio.sleep(0.1)
        finally:
            # nats-py may take a cancellation that lands just after a refusal for that refusal
            # and try again: cancel until it ends.
            while not trying.done():
                trying.cancel()
                await asyncio.wait([trying], timeout=0.2)
    assert trying.cancelled(), "connected although the server should refuse"
    return [r.getMessage() for r in caplog.records if r.name == "kairos_common.streams"]


async def test_user_and_password_with_the_password_from_a_file(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server(f'authorization {{ user: "kairos", password: "{PASSWORD}" }}')
    (tmp_path / "nats_password").write_text(PASSWORD + "\n")
    await assert_round_trip(
        settings(
            server,
            KAIROS_NATS_USER="kairos",
            KAIROS_NATS_PASSWORD_FILE=str(tmp_path / "nats_password"),
        )
    )


async def test_a_user_in_the_url_keeps_working(start_server: StartServer) -> None:
    server = start_server(f'authorization {{ user: "kairos", password: "{PASSWORD}" }}')
    url = f"nats://kairos:{PASSWORD}@127.0.0.1:{server.port}"
    await assert_round_trip(CommonSettings.from_env({"KAIROS_NATS_URL": url}))


async def test_token(start_server: StartServer) -> None:
    server = start_server(f'authorization {{ token: "{TOKEN}" }}')
    await assert_round_trip(settings(server, KAIROS_NATS_TOKEN=TOKEN))


async def test_nkey_seed_from_a_file(start_server: StartServer, tmp_path: Path) -> None:
    nkey = user_nkey()
    server = start_server(f'authorization {{ users = [ {{ nkey: "{nkey.public}" }} ] }}')
    (tmp_path / "user.nk").write_text(nkey.seed + "\n")
    await assert_round_trip(settings(server, KAIROS_NATS_NKEY_SEED_FILE=str(tmp_path / "user.nk")))


async def test_a_creds_file_on_a_server_in_operator_mode(
    start_server: StartServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    trusted, stranger = operator_mode(), operator_mode()
    server = start_server(trusted.server_config)
    (tmp_path / "kairos.creds").write_text(trusted.creds)
    (tmp_path / "stranger.creds").write_text(stranger.creds)

    await assert_round_trip(settings(server, KAIROS_NATS_CREDS_FILE=str(tmp_path / "kairos.creds")))

    # A user of an account this operator never signed is refused: the server does check.
    common = settings(server, KAIROS_NATS_CREDS_FILE=str(tmp_path / "stranger.creds"))
    lines = await refusal_lines(common, caplog, "refused authentication")
    assert any("check KAIROS_NATS_CREDS(_FILE)" in line for line in lines), lines


async def test_tls_with_a_server_certificate_from_a_private_ca(
    start_server: StartServer, tls: TlsFiles
) -> None:
    config = f'authorization {{ user: "kairos", password: "{PASSWORD}" }}\n' + tls.server_config()
    server = start_server(config, scheme="tls")
    await assert_round_trip(
        settings(
            server,
            KAIROS_NATS_USER="kairos",
            KAIROS_NATS_PASSWORD=PASSWORD,
            KAIROS_NATS_CA_FILE=str(tls.ca),
        )
    )


async def test_tls_with_a_client_certificate_on_a_server_that_verifies_clients(
    start_server: StartServer, tls: TlsFiles
) -> None:
    server = start_server(tls.server_config(verify=True), scheme="tls")
    await assert_round_trip(
        settings(
            server,
            KAIROS_NATS_CA_FILE=str(tls.ca),
            KAIROS_NATS_CERT_FILE=str(tls.client_cert),
            KAIROS_NATS_KEY_FILE=str(tls.client_key),
        )
    )


async def test_a_server_that_verifies_clients_refuses_one_without_a_certificate(
    start_server: StartServer, tls: TlsFiles, caplog: pytest.LogCaptureFixture
) -> None:
    server = start_server(tls.server_config(verify=True), scheme="tls")
    common = settings(server, KAIROS_NATS_CA_FILE=str(tls.ca))
    lines = await refusal_lines(common, caplog, "TLS with NATS")
    assert any(
        "certificate required" in line
        and "KAIROS_NATS_CERT_FILE and KAIROS_NATS_KEY_FILE if the server verifies clients" in line
        for line in lines
    ), lines


async def test_a_certificate_from_another_ca_is_told_as_a_tls_failure(
    start_server: StartServer, tls: TlsFiles, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = start_server(tls.server_config(), scheme="tls")
    other = tls_files(tmp_path)
    lines = await refusal_lines(
        settings(server, KAIROS_NATS_CA_FILE=str(other.ca)), caplog, "TLS with NATS"
    )
    assert any(
        line.startswith(f"TLS with NATS at KAIROS_NATS_URL={server.url} failed")
        and "check KAIROS_NATS_CA_FILE" in line
        for line in lines
    ), lines


async def test_a_wrong_password_is_told_as_refused_authentication_not_unreachable(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = start_server(f'authorization {{ user: "kairos", password: "{PASSWORD}" }}')
    wrong = "wr0ng-pa55word"
    common = settings(server, KAIROS_NATS_USER="kairos", KAIROS_NATS_PASSWORD=wrong)

    lines = await refusal_lines(common, caplog, "refused authentication")

    assert any(
        line.startswith(f"NATS at KAIROS_NATS_URL={server.url} refused authentication")
        and "check KAIROS_NATS_USER and KAIROS_NATS_PASSWORD(_FILE)" in line
        for line in lines
    ), lines
    assert not any("cannot reach" in line for line in lines), lines
    assert not any(wrong in line or PASSWORD in line for line in lines), lines


async def test_no_credentials_for_a_server_that_wants_them_names_every_way(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = start_server(f'authorization {{ token: "{TOKEN}" }}')
    lines = await refusal_lines(settings(server), caplog, "refused authentication")
    assert any(
        "the server wants credentials: set one of KAIROS_NATS_USER and "
        "KAIROS_NATS_PASSWORD(_FILE), KAIROS_NATS_TOKEN(_FILE)" in line
        for line in lines
    ), lines


@pytest.mark.parametrize(
    ("environ", "scheme"),
    [
        ({"KAIROS_NATS_USER": "kairos", "KAIROS_NATS_PASSWORD": PASSWORD}, "tls"),
        ({"KAIROS_NATS_TOKEN": TOKEN}, "nats"),
    ],
    ids=["password-tls-url", "token-ca-file"],
)
async def test_a_password_or_token_is_not_sent_to_a_server_that_does_not_ask_for_tls(
    start_server: StartServer,
    tls: TlsFiles,
    caplog: pytest.LogCaptureFixture,
    environ: dict[str, str],
    scheme: str,
) -> None:
    """TLS is wanted (a tls:// URL, or a CA file), but the server offers none: nats-py would go on
    unencrypted, so connect() keeps the credentials and says why."""
    config = f'authorization {{ user: "kairos", password: "{PASSWORD}" }}'
    if "KAIROS_NATS_TOKEN" in environ:
        config = f'authorization {{ token: "{TOKEN}" }}'
    server = start_server(config, scheme=scheme)
    common = settings(server, KAIROS_NATS_CA_FILE=str(tls.ca), **environ)

    lines = await refusal_lines(common, caplog, "did not ask for TLS")

    assert any(
        line.startswith(f"NATS at KAIROS_NATS_URL={server.url} did not ask for TLS")
        and "the credentials were not sent" in line
        for line in lines
    ), lines
