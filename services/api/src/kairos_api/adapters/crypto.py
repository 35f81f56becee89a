"""Encryption at rest for account credentials (access and refresh tokens, API secrets).

`KAIROS_SECRET_KEY` holds one or more secrets separated by commas. The first encrypts; every one
of them decrypts, so a key is rotated by putting the new secret first, re-encrypting the stored
credentials (`needs_rotation` finds them, `reencrypt` fixes them), then dropping the old secret.

A stored token is self-describing, so decryption picks its key without trying them all:

    version (1 byte, 0x01) | key id (8 bytes) | nonce (12 bytes) | AES-256-GCM ciphertext and tag

The associated data is the header plus the caller's `associated` string (for example the account
id), so a token copied onto another row, or with its header edited, fails to decrypt.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SETTING = "KAIROS_SECRET_KEY"
"""The environment variable the secrets come from; named in every configuration error."""

MIN_SECRET_LENGTH = 32
"""Shortest secret accepted, in characters. HKDF does not stretch a password, so the secret itself
must carry the strength: 32 random characters are comfortably above 128 bits."""

TOKEN_VERSION = 1
"""Leading byte of every token this module writes; a new layout or algorithm takes a new value."""

_HKDF_INFO = b"kairos credentials v1"
_KEY_ID_LENGTH = 8
_NONCE_LENGTH = 12  # 96 bits: the size GCM is designed for.
_TAG_LENGTH = 16
_HEADER_LENGTH = 1 + _KEY_ID_LENGTH + _NONCE_LENGTH


class CredentialDecryptError(Exception):
    """A stored credential could not be decrypted. The message never contains key material or
    plaintext; it says whether the key is missing from `KAIROS_SECRET_KEY` or the token is damaged.
    """

    def __init__(self, message: str, *, key_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.key_id = key_id
        """Hex id of the key the token names, when the header could be read."""


@dataclass(frozen=True, repr=False)
class _Key:
    key_id: bytes
    aead: AESGCM


def generate_secret() -> str:
    """A new random secret for `KAIROS_SECRET_KEY` (43 urlsafe characters, 256 bits)."""
    return secrets.token_urlsafe(32)


def _derive(secret: str) -> _Key:
    # HKDF turns any strong string (a passphrase or a Fernet key alike) into exactly 32 bytes, and
    # the fixed info string keeps these keys distinct from anything else derived from the secret.
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
        secret.encode("utf-8")
    )
    # The id is a hash of the derived key, not of the secret, so it reveals nothing usable.
    key_id = hashlib.sha256(raw).digest()[:_KEY_ID_LENGTH]
    return _Key(key_id=key_id, aead=AESGCM(raw))


class CredentialCipher:
    """Encrypts and decrypts credentials under the keys from `KAIROS_SECRET_KEY`."""

    __slots__ = ("_current", "_keys")

    def __init__(self, keys: Sequence[_Key]) -> None:
        """Use `from_secret`; this takes already derived keys, the first being current."""
        if not keys:
            raise ValueError(f"{SETTING} must hold at least one key")
        self._current = keys[0]
        # A secret listed twice derives the same id; the first occurrence is as good as any.
        self._keys: dict[bytes, _Key] = {}
        for key in keys:
            self._keys.setdefault(key.key_id, key)

    @classmethod
    def from_secret(cls, secret: str) -> CredentialCipher:
        """Build a cipher from the setting's value: comma-separated secrets, the current one first.

        Raises `ValueError` naming `KAIROS_SECRET_KEY` (never echoing a secret) when the value is
        empty, has an empty entry, or has a secret shorter than `MIN_SECRET_LENGTH` characters.
        """
        hint = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        if not secret.strip():
            raise ValueError(
                f"{SETTING} is empty; set it to a random secret of at least "
                f"{MIN_SECRET_LENGTH} characters ({hint})"
            )
        parts = [part.strip() for part in secret.split(",")]
        keys: list[_Key] = []
        for position, part in enumerate(parts, start=1):
            where = f"{SETTING} key {position} of {len(parts)}"
            if not part:
                raise ValueError(f"{where} is empty; separate keys with single commas")
            if len(part) < MIN_SECRET_LENGTH:
                raise ValueError(
                    f"{where} is {len(part)} characters long; each key needs at least "
                    f"{MIN_SECRET_LENGTH} random characters ({hint})"
                )
            keys.append(_derive(part))
        return cls(keys)

    @property
    def current_key_id(self) -> str:
        """Hex id of the key new tokens are encrypted under."""
        return self._current.key_id.hex()

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Hex ids of every key that can decrypt, the current one first."""
        return tuple(key_id.hex() for key_id in self._keys)

    def encrypt(self, plaintext: bytes, *, associated: str) -> bytes:
        """Encrypt under the current key, bound to `associated` (the row's id, for example)."""
        _require_associated(associated)
        # A random 96-bit nonce per token: with the volume of credentials Kairos stores, the chance
        # of a repeat under one key is negligible, and no counter has to be kept anywhere.
        nonce = os.urandom(_NONCE_LENGTH)
        header = bytes([TOKEN_VERSION]) + self._current.key_id + nonce
        ciphertext = self._current.aead.encrypt(nonce, plaintext, _aad(header, associated))
        return header + ciphertext

    def decrypt(self, token: bytes, *, associated: str) -> bytes:
        """Decrypt a token made by `encrypt` with the same `associated` string.

        Raises `CredentialDecryptError` when the token is malformed, names a key that is not in
        `KAIROS_SECRET_KEY`, or fails authentication (altered, or moved from another row).
        """
        _require_associated(associated)
        key_id, nonce, ciphertext = _split(token)
        key = self._keys.get(key_id)
        if key is None:
            raise CredentialDecryptError(
                f"credential was encrypted with key id {key_id.hex()}, which is not in {SETTING} "
                f"(known key ids: {', '.join(self.key_ids)}); add the old key back after the "
                "current one",
                key_id=key_id.hex(),
            )
        try:
            return key.aead.decrypt(nonce, ciphertext, _aad(token[:_HEADER_LENGTH], associated))
        except InvalidTag:
            raise CredentialDecryptError(
                f"credential failed authentication under key id {key_id.hex()}: it was altered or "
                "belongs to another record",
                key_id=key_id.hex(),
            ) from None

    def needs_rotation(self, token: bytes) -> bool:
        """True when the token is not encrypted under the current key (reads the header only).

        Raises `CredentialDecryptError` when the token is not one this module wrote.
        """
        key_id, _, _ = _split(token)
        return key_id != self._current.key_id

    def reencrypt(self, token: bytes, *, associated: str) -> bytes:
        """Decrypt under whichever known key the token names; encrypt afresh under the current one.

        Always re-encrypts, even a token already under the current key, so a damaged token is found
        during rotation rather than on the next publish.
        """
        return self.encrypt(self.decrypt(token, associated=associated), associated=associated)

    def __repr__(self) -> str:
        # Only ids: a cipher must never put key material into a log line or a traceback.
        return f"CredentialCipher(key_ids={list(self.key_ids)!r})"


def _require_associated(associated: str) -> None:
    # Without associated data a token could be swapped between rows unnoticed; refuse to make one.
    if not associated:
        raise ValueError("associated data must name the row the credential belongs to")


def _aad(header: bytes, associated: str) -> bytes:
    # The header has a fixed length, so header + associated cannot be confused with another split.
    return header + associated.encode("utf-8")


def _split(token: bytes) -> tuple[bytes, bytes, bytes]:
    if len(token) < _HEADER_LENGTH + _TAG_LENGTH:
        raise CredentialDecryptError(
            f"credential token is {len(token)} bytes, shorter than any token this version writes"
        )
    if token[0] != TOKEN_VERSION:
        raise CredentialDecryptError(
            f"credential token has version {token[0]}; only version {TOKEN_VERSION} is understood"
        )
    key_id = token[1 : 1 + _KEY_ID_LENGTH]
    nonce = token[1 + _KEY_ID_LENGTH : _HEADER_LENGTH]
    return key_id, nonce, token[_HEADER_LENGTH:]
