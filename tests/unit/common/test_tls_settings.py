"""TLS settings: the servers' certificate and key, the api's mutual-TLS listener, the channel to
the api; each refusal names the variable. And the warning for a plaintext channel off this
machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from kairos_api.settings import ApiSettings
from kairos_common.grpc.channel import is_loopback_target, plaintext_warning
from kairos_common.settings import ClientTls, CommonSettings, SettingsError
from kairos_publisher.settings import PublisherSettings
from kairos_scheduler.settings import SchedulerSettings
from support.tls import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_without_tls_variables_everything_is_plaintext() -> None:
    assert ApiSettings.from_env({}).server.tls is None
    assert SchedulerSettings.from_env({}).server.tls is None
    assert CommonSettings.from_env({}).api_tls == ClientTls(enabled=False)


def test_a_certificate_and_its_key_are_read_for_every_service(pki: Pki) -> None:
    env = pki.server_env()
    for settings in (
        ApiSettings.from_env(env),
        SchedulerSettings.from_env(env),
        PublisherSettings.from_env(env),
    ):
        tls = settings.server.tls
        assert tls is not None
        assert tls.cert_chain == pki.server_cert.read_bytes()
        assert tls.private_key == pki.server_key.read_bytes()
        assert tls.client_ca is None
        assert "PRIVATE KEY" not in repr(settings)


def test_the_api_reads_the_client_ca_and_the_mutual_tls_address(pki: Pki) -> None:
    tls = ApiSettings.from_env(pki.server_env(mutual_addr="0.0.0.0:50054")).server.tls
    assert tls is not None
    assert tls.client_ca == pki.ca.read_bytes()
    assert (tls.mutual_addr, tls.mutual_addr_variable) == ("0.0.0.0:50054", "KAIROS_API_MTLS_ADDR")


def test_the_scheduler_and_publisher_have_no_mutual_tls_listener(pki: Pki) -> None:
    # A client CA in an environment shared by every service is the api's alone.
    env = pki.server_env(mutual_addr="0.0.0.0:50054")
    for settings in (SchedulerSettings.from_env(env), PublisherSettings.from_env(env)):
        assert settings.server.tls is not None
        assert settings.server.tls.client_ca is None


def refused(environ: dict[str, str]) -> str:
    with pytest.raises(SettingsError) as caught:
        ApiSettings.from_env(environ)
    return str(caught.value)


def test_a_certificate_without_its_key_and_the_reverse_are_refused(pki: Pki) -> None:
    message = refused({"KAIROS_TLS_CERT_FILE": str(pki.server_cert)})
    assert (
        message == "KAIROS_TLS_CERT_FILE is set but KAIROS_TLS_KEY_FILE is not; set both or neither"
    )
    message = refused({"KAIROS_TLS_KEY_FILE": str(pki.server_key)})
    assert "KAIROS_TLS_KEY_FILE is set but KAIROS_TLS_CERT_FILE is not" in message


def test_unreadable_and_malformed_files_are_refused_by_name(pki: Pki, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pem"
    message = refused({**pki.server_env(), "KAIROS_TLS_CERT_FILE": str(missing)})
    assert (
        message
        == f"KAIROS_TLS_CERT_FILE={str(missing)!r} cannot be read: No such file or directory"
    )
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"not a certificate\n")
    message = refused({**pki.server_env(), "KAIROS_TLS_CERT_FILE": str(junk)})
    assert message == f"KAIROS_TLS_CERT_FILE={str(junk)!r} holds no PEM certificate"
    message = refused({**pki.server_env(), "KAIROS_TLS_KEY_FILE": str(junk)})
    assert message == f"KAIROS_TLS_KEY_FILE={str(junk)!r} holds no unencrypted PEM private key"


def test_a_key_that_is_not_the_certificates_is_refused(pki: Pki) -> None:
    message = refused({**pki.server_env(), "KAIROS_TLS_KEY_FILE": str(pki.client_key)})
    assert message.startswith(f"KAIROS_TLS_KEY_FILE={str(pki.client_key)!r} is not the private key")
    assert "KAIROS_TLS_CERT_FILE" in message


def test_mutual_tls_needs_its_address_the_server_certificate_and_a_ca(
    pki: Pki, tmp_path: Path
) -> None:
    ca = {"KAIROS_TLS_CLIENT_CA_FILE": str(pki.ca)}
    message = refused({**pki.server_env(), **ca})
    assert "KAIROS_TLS_CLIENT_CA_FILE is set but KAIROS_API_MTLS_ADDR is not" in message
    message = refused({**pki.server_env(), "KAIROS_API_MTLS_ADDR": "127.0.0.1:50054"})
    assert message == "KAIROS_API_MTLS_ADDR is set but KAIROS_TLS_CLIENT_CA_FILE is not; set both"
    message = refused({**ca, "KAIROS_API_MTLS_ADDR": "127.0.0.1:50054"})
    assert "KAIROS_TLS_CLIENT_CA_FILE is set but KAIROS_TLS_CERT_FILE and KAIROS_TLS_KEY_FILE" in (
        message
    )
    message = refused(pki.server_env(mutual_addr="no-port"))
    assert message == "KAIROS_API_MTLS_ADDR='no-port' is not host:port (e.g. 127.0.0.1:50051)"
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    environ = {**pki.server_env(mutual_addr="127.0.0.1:0"), "KAIROS_TLS_CLIENT_CA_FILE": str(junk)}
    assert refused(environ) == f"KAIROS_TLS_CLIENT_CA_FILE={str(junk)!r} holds no PEM certificate"


def test_the_channel_to_the_api_uses_tls_once_a_ca_is_given(pki: Pki) -> None:
    tls = CommonSettings.from_env(pki.client_env()).api_tls
    assert tls.enabled
    assert tls.ca == pki.ca.read_bytes()
    assert tls.cert_chain == pki.client_cert.read_bytes()
    assert tls.private_key == pki.client_key.read_bytes()
    assert "PRIVATE KEY" not in repr(tls)
    system_roots = CommonSettings.from_env({"KAIROS_API_TLS": "true"}).api_tls
    assert system_roots == ClientTls(enabled=True)
    named = CommonSettings.from_env(
        {**pki.client_env(with_certificate=False), "KAIROS_API_TLS_SERVER_NAME": "api.internal"}
    ).api_tls
    assert (named.server_name, named.cert_chain) == ("api.internal", None)


def test_bad_channel_settings_are_refused_by_name(pki: Pki, tmp_path: Path) -> None:
    def refused_common(environ: dict[str, str]) -> str:
        with pytest.raises(SettingsError) as caught:
            CommonSettings.from_env(environ)
        return str(caught.value)

    message = refused_common({**pki.client_env(), "KAIROS_API_TLS": "false"})
    assert message.startswith("KAIROS_API_TLS is off but KAIROS_API_CA_FILE, KAIROS_API_CLIENT")
    message = refused_common({"KAIROS_API_CLIENT_CERT_FILE": str(pki.client_cert)})
    assert "KAIROS_API_CLIENT_CERT_FILE is set but KAIROS_API_CLIENT_KEY_FILE is not" in message
    message = refused_common(
        {**pki.client_env(), "KAIROS_API_CLIENT_KEY_FILE": str(pki.server_key)}
    )
    assert "is not the private key of the certificate in KAIROS_API_CLIENT_CERT_FILE" in message
    missing = tmp_path / "ca.pem"
    message = refused_common({"KAIROS_API_CA_FILE": str(missing)})
    assert (
        message == f"KAIROS_API_CA_FILE={str(missing)!r} cannot be read: No such file or directory"
    )
    assert "KAIROS_API_TLS=" in refused_common({"KAIROS_API_TLS": "perhaps"})


@pytest.mark.parametrize(
    "target",
    [
        "127.0.0.1:50051",
        "127.9.8.7:50051",
        "localhost:50051",
        "[::1]:50051",
        "unix:/run/kairos/api.sock",
        "unix-abstract:kairos",
        "dns:///localhost:50051",
        "ipv4:127.0.0.1:50051,127.0.0.2:50051",
        "ipv6:[::1]:50051",
    ],
)
def test_loopback_targets(target: str) -> None:
    assert is_loopback_target(target)
    assert plaintext_warning(target, ClientTls()) == ""


@pytest.mark.parametrize(
    "target",
    ["api:50051", "10.0.0.5:50051", "[2001:db8::1]:50051", "dns:///api.internal:50051"],
)
def test_a_plaintext_channel_off_this_machine_is_warned_about(target: str) -> None:
    assert not is_loopback_target(target)
    warning = plaintext_warning(target, ClientTls())
    assert warning.startswith(f"KAIROS_API_TARGET={target} is not on this machine")
    assert "KAIROS_API_TLS=true" in warning
    assert "KAIROS_API_CA_FILE" in warning
    assert plaintext_warning(target, ClientTls(enabled=True)) == ""
