"""NATS authentication and TLS settings: read from KAIROS_NATS_* (secrets also from *_FILE),
and refused at start-up, by name and without the secret, when they cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from kairos_common.settings import CommonSettings, SettingsError
from support.nats_auth import operator_mode, tls_files, user_nkey

PASSWORD = "pa55-word-never-shown"


def test_nothing_set_means_no_credentials_and_no_tls_context() -> None:
    auth = CommonSettings.from_env({}).nats_auth
    assert auth.method == ""
    assert auth.tls_context() is None


def test_user_and_password_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "nats_password"
    secret.write_text(PASSWORD + "\n")
    auth = CommonSettings.from_env(
        {"KAIROS_NATS_USER": "kairos", "KAIROS_NATS_PASSWORD_FILE": str(secret)}
    ).nats_auth
    assert (auth.user, auth.password) == ("kairos", PASSWORD)
    assert auth.method == "KAIROS_NATS_USER and KAIROS_NATS_PASSWORD(_FILE)"
    assert PASSWORD not in repr(auth)


def test_token_nkey_seed_and_creds_are_secrets_read_from_files(tmp_path: Path) -> None:
    nkey = user_nkey()
    creds = operator_mode().creds
    (tmp_path / "token").write_text("tok-" + "x" * 20)
    (tmp_path / "seed").write_text(nkey.seed + "\n")
    (tmp_path / "user.creds").write_text(creds)

    token = CommonSettings.from_env({"KAIROS_NATS_TOKEN_FILE": str(tmp_path / "token")})
    seed = CommonSettings.from_env({"KAIROS_NATS_NKEY_SEED_FILE": str(tmp_path / "seed")})
    creds_file = CommonSettings.from_env({"KAIROS_NATS_CREDS_FILE": str(tmp_path / "user.creds")})

    assert token.nats_auth.token == "tok-" + "x" * 20
    assert seed.nats_auth.nkey_seed == nkey.seed
    assert creds_file.nats_auth.creds == creds.strip()
    for settings in (token, seed, creds_file):
        assert "x" * 20 not in repr(settings)
        assert nkey.seed not in repr(settings)


def test_tls_files_make_a_context_that_trusts_the_ca(tmp_path: Path) -> None:
    files = tls_files(tmp_path)
    auth = CommonSettings.from_env(
        {
            "KAIROS_NATS_CA_FILE": str(files.ca),
            "KAIROS_NATS_CERT_FILE": str(files.client_cert),
            "KAIROS_NATS_KEY_FILE": str(files.client_key),
            "KAIROS_NATS_TLS_HOSTNAME": "nats.internal",
        }
    ).nats_auth
    context = auth.tls_context()
    assert context is not None
    assert len(context.get_ca_certs()) == 1
    assert auth.tls_hostname == "nats.internal"


@pytest.mark.parametrize(
    ("environ", "said"),
    [
        (
            {"KAIROS_NATS_USER": "kairos"},
            "KAIROS_NATS_USER is set without KAIROS_NATS_PASSWORD (or KAIROS_NATS_PASSWORD_FILE)",
        ),
        (
            {"KAIROS_NATS_PASSWORD": PASSWORD},
            "KAIROS_NATS_PASSWORD is set without KAIROS_NATS_USER",
        ),
        (
            {"KAIROS_NATS_USER": "k", "KAIROS_NATS_PASSWORD": PASSWORD, "KAIROS_NATS_TOKEN": "t"},
            "NATS authentication is set more than one way (KAIROS_NATS_USER and "
            "KAIROS_NATS_PASSWORD(_FILE); KAIROS_NATS_TOKEN(_FILE)); set one",
        ),
        (
            {
                "KAIROS_NATS_URL": f"nats://kairos:{PASSWORD}@127.0.0.1:4222",
                "KAIROS_NATS_TOKEN": "t",
            },
            "more than one way (KAIROS_NATS_TOKEN(_FILE); the user in KAIROS_NATS_URL)",
        ),
        (
            {"KAIROS_NATS_NKEY_SEED": PASSWORD},
            "KAIROS_NATS_NKEY_SEED(_FILE) holds no NKey seed",
        ),
        (
            {"KAIROS_NATS_CREDS": PASSWORD},
            "KAIROS_NATS_CREDS(_FILE) is not a .creds file",
        ),
        (
            {"KAIROS_NATS_CA_FILE": "/nonexistent/ca.pem"},
            "KAIROS_NATS_CA_FILE='/nonexistent/ca.pem' cannot be read: No such file or directory",
        ),
        (
            {"KAIROS_NATS_TOKEN_FILE": "/nonexistent/token"},
            "KAIROS_NATS_TOKEN_FILE='/nonexistent/token' cannot be read",
        ),
    ],
    ids=[
        "user-only",
        "password-only",
        "two-methods",
        "url-user-and-token",
        "bad-seed",
        "bad-creds",
        "missing-ca",
        "missing-token-file",
    ],
)
def test_unusable_nats_auth_is_refused_naming_the_variables(
    environ: dict[str, str], said: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        CommonSettings.from_env(environ)
    assert said in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_a_user_in_the_url_alone_still_works() -> None:
    settings = CommonSettings.from_env({"KAIROS_NATS_URL": "nats://kairos:pw@127.0.0.1:4222"})
    assert settings.nats_auth.method == ""


def test_an_nkey_seed_that_is_not_a_users_is_refused() -> None:
    import nkeys  # type: ignore[import-untyped]

    from support.nats_auth import NKey

    account = NKey.new(nkeys.PREFIX_BYTE_ACCOUNT)
    with pytest.raises(SettingsError, match=r"a seed that is not a user's \(SU\.\.\.\)") as caught:
        CommonSettings.from_env({"KAIROS_NATS_NKEY_SEED": account.seed})
    assert account.seed not in str(caught.value)


def test_certificate_files_are_checked(tmp_path: Path) -> None:
    files = tls_files(tmp_path)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    key = serialization.load_pem_private_key(files.client_key.read_bytes(), password=None)
    locked = tmp_path / "locked.key"
    locked.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    cases = [
        ({"KAIROS_NATS_CERT_FILE": str(files.client_cert)}, "KAIROS_NATS_CERT_FILE is set without"),
        ({"KAIROS_NATS_KEY_FILE": str(files.client_key)}, "KAIROS_NATS_KEY_FILE is set without"),
        ({"KAIROS_NATS_CA_FILE": str(garbage)}, f"KAIROS_NATS_CA_FILE={str(garbage)!r} holds no"),
        (
            # A key that is not the certificate's.
            {
                "KAIROS_NATS_CERT_FILE": str(files.client_cert),
                "KAIROS_NATS_KEY_FILE": str(files.server_key),
            },
            "KAIROS_NATS_CA_FILE, KAIROS_NATS_CERT_FILE and KAIROS_NATS_KEY_FILE cannot be loaded",
        ),
        (
            # An encrypted key is refused, not asked a password for on a terminal.
            {"KAIROS_NATS_CERT_FILE": str(files.client_cert), "KAIROS_NATS_KEY_FILE": str(locked)},
            "is the key the certificate's, and not encrypted?",
        ),
    ]
    for environ, said in cases:
        with pytest.raises(SettingsError) as caught:
            CommonSettings.from_env(environ)
        assert said in str(caught.value), environ


def test_tls_is_wanted_with_a_tls_url_or_a_ca_or_client_certificate(tmp_path: Path) -> None:
    files = tls_files(tmp_path)
    plain = CommonSettings.from_env({}).nats_auth
    with_ca = CommonSettings.from_env({"KAIROS_NATS_CA_FILE": str(files.ca)}).nats_auth
    assert not plain.wants_tls("nats://a:4222,b:4222")
    assert plain.wants_tls("nats://a:4222,tls://b:4222")
    assert plain.wants_tls("wss://a:443")
    assert with_ca.wants_tls("nats://a:4222")
