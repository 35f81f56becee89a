"""`kairos` reaches an api that listens with TLS once KAIROS_API_CA_FILE names its CA; bad TLS
settings are refused as a usage error naming the variable."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from integration.cli.conftest import ZONE, run_in_process

from support.api import RunningApi, api_settings, running_api
from support.nats_server import NatsServer
from support.tls import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
async def tls_api(
    pki: Pki, nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningApi]:
    url = f"sqlite:///{tmp_path_factory.mktemp('cli-tls') / 'kairos.db'}"
    settings = api_settings(url, KAIROS_NATS_URL=nats_server.url, **pki.server_env())
    async with running_api(settings) as running:
        yield running


async def test_the_cli_lists_over_tls_with_the_ca(tls_api: RunningApi, pki: Pki) -> None:
    _, key = await tls_api.new_key()
    args = (
        "--target",
        tls_api.target,
        "--tz",
        ZONE,
        "--api-key",
        key,
        "--json",
        "accounts",
        "list",
    )
    ran = await run_in_process(*args, env={"KAIROS_API_CA_FILE": str(pki.ca)})
    assert (ran.code, ran.json()) == (0, {"accounts": []}), str(ran)
    named = {"KAIROS_API_CA_FILE": str(pki.ca), "KAIROS_API_TLS_SERVER_NAME": "localhost"}
    assert (await run_in_process(*args, env=named)).code == 0
    plaintext = await run_in_process(*args)
    assert plaintext.code == 6, str(plaintext)  # the api cannot be reached
    untrusted = await run_in_process(*args, env={"KAIROS_API_CA_FILE": str(pki.other_ca)})
    assert untrusted.code == 6, str(untrusted)


async def test_bad_tls_settings_are_a_usage_error_naming_the_variable(pki: Pki) -> None:
    ran = await run_in_process(
        "--target", "127.0.0.1:1", "accounts", "list", env={"KAIROS_API_CA_FILE": "/nowhere.pem"}
    )
    assert ran.code == 2, str(ran)
    assert "KAIROS_API_CA_FILE='/nowhere.pem' cannot be read" in ran.stderr
    ran = await run_in_process(
        "accounts", "list", env={"KAIROS_API_CLIENT_KEY_FILE": str(pki.client_key)}
    )
    assert ran.code == 2, str(ran)
    assert "KAIROS_API_CLIENT_KEY_FILE is set but KAIROS_API_CLIENT_CERT_FILE is not" in ran.stderr
