"""Credentials encrypted at rest: round trips, binding to their row, tampering and key rotation."""

from __future__ import annotations

import base64
import os

import pytest
from cryptography.fernet import Fernet

from kairos_api.adapters.crypto import (
    MIN_SECRET_LENGTH,
    CredentialCipher,
    CredentialDecryptError,
    generate_secret,
)

OLD_SECRET = "old-secret-" + "o" * 40
NEW_SECRET = "new-secret-" + "n" * 40
TOKEN = b"access-token-0123456789abcdef"
ACCOUNT = "acct_7f3c2a"


@pytest.fixture
def cipher() -> CredentialCipher:
    return CredentialCipher.from_secret(generate_secret())


def test_round_trip_returns_the_plaintext(cipher: CredentialCipher) -> None:
    token = cipher.encrypt(TOKEN, associated=ACCOUNT)

    assert cipher.decrypt(token, associated=ACCOUNT) == TOKEN


@pytest.mark.parametrize(
    "plaintext", [b"", b"\x00\xff" * 3, "ünïcødé 🔑".encode(), os.urandom(4096)]
)
def test_round_trip_any_bytes(cipher: CredentialCipher, plaintext: bytes) -> None:
    assert cipher.decrypt(cipher.encrypt(plaintext, associated=ACCOUNT), associated=ACCOUNT) == (
        plaintext
    )


def test_ciphertext_hides_the_plaintext_and_differs_each_time(cipher: CredentialCipher) -> None:
    first = cipher.encrypt(TOKEN, associated=ACCOUNT)
    second = cipher.encrypt(TOKEN, associated=ACCOUNT)

    assert TOKEN not in first
    assert b"access-token" not in first
    assert first != second
    # Same length: only the nonce and ciphertext change, the layout does not.
    assert len(first) == len(second)


def test_token_is_self_describing(cipher: CredentialCipher) -> None:
    token = cipher.encrypt(TOKEN, associated=ACCOUNT)

    assert token[0] == 1
    assert token[1:9].hex() == cipher.current_key_id
    # version + key id + nonce + plaintext + GCM tag
    assert len(token) == 1 + 8 + 12 + len(TOKEN) + 16


def test_token_copied_to_another_row_fails(cipher: CredentialCipher) -> None:
    token = cipher.encrypt(TOKEN, associated=ACCOUNT)

    with pytest.raises(CredentialDecryptError, match="failed authentication") as raised:
        cipher.decrypt(token, associated="acct_other")

    assert raised.value.key_id == cipher.current_key_id


@pytest.mark.parametrize(
    "position",
    [0, 1, 8, 9, 20, 21, -1],
    ids=[
        "version",
        "key-id-first",
        "key-id-last",
        "nonce-first",
        "nonce-last",
        "ciphertext",
        "tag",
    ],
)
def test_tampered_byte_fails(cipher: CredentialCipher, position: int) -> None:
    token = bytearray(cipher.encrypt(TOKEN, associated=ACCOUNT))
    token[position] ^= 0x01

    with pytest.raises(CredentialDecryptError):
        cipher.decrypt(bytes(token), associated=ACCOUNT)


def test_truncated_token_fails(cipher: CredentialCipher) -> None:
    token = cipher.encrypt(TOKEN, associated=ACCOUNT)

    with pytest.raises(CredentialDecryptError, match="failed authentication"):
        cipher.decrypt(token[:-1], associated=ACCOUNT)
    with pytest.raises(CredentialDecryptError, match="shorter than any token"):
        cipher.decrypt(token[:20], associated=ACCOUNT)
    with pytest.raises(CredentialDecryptError, match="shorter than any token"):
        cipher.decrypt(b"", associated=ACCOUNT)


def test_unknown_version_fails(cipher: CredentialCipher) -> None:
    token = cipher.encrypt(TOKEN, associated=ACCOUNT)

    with pytest.raises(CredentialDecryptError, match="version 2; only version 1"):
        cipher.decrypt(b"\x02" + token[1:], associated=ACCOUNT)
    with pytest.raises(CredentialDecryptError, match="version 2"):
        cipher.needs_rotation(b"\x02" + token[1:])


def test_error_messages_never_contain_the_plaintext(cipher: CredentialCipher) -> None:
    token = cipher.encrypt(TOKEN, associated=ACCOUNT)
    other = CredentialCipher.from_secret(generate_secret())

    with pytest.raises(CredentialDecryptError) as wrong_row:
        cipher.decrypt(token, associated="acct_other")
    with pytest.raises(CredentialDecryptError) as unknown_key:
        other.decrypt(token, associated=ACCOUNT)

    for raised in (wrong_row, unknown_key):
        assert TOKEN.decode() not in str(raised.value)
        assert "access-token" not in repr(raised.value)


def test_empty_associated_data_is_refused(cipher: CredentialCipher) -> None:
    with pytest.raises(ValueError, match="associated data"):
        cipher.encrypt(TOKEN, associated="")


def test_same_secret_gives_same_key_in_another_process() -> None:
    secret = generate_secret()
    token = CredentialCipher.from_secret(secret).encrypt(TOKEN, associated=ACCOUNT)

    # A fresh cipher from the same setting stands for a restart: the derivation is deterministic.
    assert CredentialCipher.from_secret(secret).decrypt(token, associated=ACCOUNT) == TOKEN


def test_rotation_to_a_new_key() -> None:
    old = CredentialCipher.from_secret(OLD_SECRET)
    rotating = CredentialCipher.from_secret(f"{NEW_SECRET},{OLD_SECRET}")
    new_only = CredentialCipher.from_secret(NEW_SECRET)
    old_token = old.encrypt(TOKEN, associated=ACCOUNT)

    assert rotating.decrypt(old_token, associated=ACCOUNT) == TOKEN
    assert rotating.needs_rotation(old_token)
    assert not old.needs_rotation(old_token)

    new_token = rotating.reencrypt(old_token, associated=ACCOUNT)

    assert not rotating.needs_rotation(new_token)
    assert rotating.decrypt(new_token, associated=ACCOUNT) == TOKEN
    assert new_only.decrypt(new_token, associated=ACCOUNT) == TOKEN
    with pytest.raises(CredentialDecryptError, match="not in KAIROS_SECRET_KEY") as raised:
        new_only.decrypt(old_token, associated=ACCOUNT)
    assert raised.value.key_id == old.current_key_id
    assert old.current_key_id in str(raised.value)


def test_rotation_keeps_the_row_binding() -> None:
    old_token = CredentialCipher.from_secret(OLD_SECRET).encrypt(TOKEN, associated=ACCOUNT)
    rotating = CredentialCipher.from_secret(f"{NEW_SECRET},{OLD_SECRET}")

    with pytest.raises(CredentialDecryptError, match="failed authentication"):
        rotating.reencrypt(old_token, associated="acct_other")


def test_key_ids_list_current_first() -> None:
    rotating = CredentialCipher.from_secret(f" {NEW_SECRET} , {OLD_SECRET} ,{NEW_SECRET}")

    assert rotating.current_key_id == CredentialCipher.from_secret(NEW_SECRET).current_key_id
    assert rotating.key_ids == (
        CredentialCipher.from_secret(NEW_SECRET).current_key_id,
        CredentialCipher.from_secret(OLD_SECRET).current_key_id,
    )
    assert len(rotating.current_key_id) == 16


def test_different_secrets_give_different_key_ids() -> None:
    assert (
        CredentialCipher.from_secret(OLD_SECRET).current_key_id
        != CredentialCipher.from_secret(NEW_SECRET).current_key_id
    )


def test_fernet_key_is_accepted_as_a_secret() -> None:
    fernet_key = Fernet.generate_key().decode()
    cipher = CredentialCipher.from_secret(fernet_key)

    assert cipher.decrypt(cipher.encrypt(TOKEN, associated=ACCOUNT), associated=ACCOUNT) == TOKEN


def test_repr_shows_key_ids_only() -> None:
    cipher = CredentialCipher.from_secret(OLD_SECRET)

    assert OLD_SECRET not in repr(cipher)
    assert cipher.current_key_id in repr(cipher)


def test_generate_secret_is_random_and_long_enough() -> None:
    first, second = generate_secret(), generate_secret()

    assert first != second
    assert len(first) >= MIN_SECRET_LENGTH
    assert len(base64.urlsafe_b64decode(first + "=")) == 32
    CredentialCipher.from_secret(first)


@pytest.mark.parametrize("secret", ["", "   "])
def test_empty_secret_is_rejected(secret: str) -> None:
    with pytest.raises(ValueError, match="KAIROS_SECRET_KEY is empty"):
        CredentialCipher.from_secret(secret)


def test_short_secret_is_rejected_without_echoing_it() -> None:
    with pytest.raises(ValueError, match="KAIROS_SECRET_KEY key 1 of 1 is 9 characters") as raised:
        CredentialCipher.from_secret("too-short")

    assert "at least 32" in str(raised.value)
    assert "too-short" not in str(raised.value)


def test_short_old_key_is_rejected_by_position() -> None:
    with pytest.raises(ValueError, match="KAIROS_SECRET_KEY key 2 of 2 is 31 characters"):
        CredentialCipher.from_secret(f"{NEW_SECRET},{'x' * 31}")


def test_secret_of_exactly_the_minimum_length_is_accepted() -> None:
    CredentialCipher.from_secret("x" * MIN_SECRET_LENGTH)


@pytest.mark.parametrize(
    "secret", [f"{NEW_SECRET},", f"{NEW_SECRET},,{OLD_SECRET}", f",{NEW_SECRET}"]
)
def test_empty_entry_is_rejected(secret: str) -> None:
    with pytest.raises(ValueError, match=r"KAIROS_SECRET_KEY key \d of \d is empty"):
        CredentialCipher.from_secret(secret)
