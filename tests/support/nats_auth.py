"""What a NATS server that wants TLS and credentials is set up with, made on the fly for tests:
certificates from a trustme CA, NKey pairs, and the JWTs of operator mode (.creds files).

A NATS JWT is `base64url(header).base64url(claims).base64url(signature)` with the header
{"typ":"JWT","alg":"ed25519-nkey"}, the signature an Ed25519 one over the first two parts by
the issuer's NKey; `iss` is the issuer's public key and `sub` the subject's.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nkeys  # type: ignore[import-untyped]
import trustme


@dataclass(frozen=True)
class NKey:
    """An NKey pair: its seed (secret, S...) and public key (U..., A..., O...)."""

    seed: str
    public: str

    @classmethod
    def new(cls, prefix: int) -> NKey:
        seed = nkeys.encode_seed(os.urandom(32), prefix)
        pair = nkeys.from_seed(bytearray(seed))
        return cls(seed=seed.decode(), public=pair.public_key.decode())

    def sign(self, data: bytes) -> bytes:
        return bytes(nkeys.from_seed(bytearray(self.seed.encode())).sign(data))


def user_nkey() -> NKey:
    return NKey.new(nkeys.PREFIX_BYTE_USER)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def jwt(issuer: NKey, subject: str, name: str, nats: dict[str, Any]) -> str:
    """A NATS JWT about `subject`, signed by `issuer`."""
    claims: dict[str, Any] = {
        "iat": int(time.time()),
        "iss": issuer.public,
        "name": name,
        "sub": subject,
        "nats": {**nats, "version": 2},
    }
    # A unique id: the hash of the claims without it (what the NATS JWT library puts there).
    digest = hashlib.sha256(json.dumps(claims, sort_keys=True).encode()).digest()
    claims["jti"] = base64.b32encode(digest).decode().rstrip("=")
    header = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    body = _b64(json.dumps(claims).encode())
    signature = issuer.sign(f"{header}.{body}".encode())
    return f"{header}.{body}.{_b64(signature)}"


_NO_LIMITS = {"subs": -1, "data": -1, "payload": -1}


@dataclass(frozen=True)
class OperatorMode:
    """An operator, one account it signed and one user that account signed: the server config
    that trusts the operator (memory resolver preloaded with the account) and the user's
    .creds file contents."""

    server_config: str
    creds: str


def operator_mode() -> OperatorMode:
    operator = NKey.new(nkeys.PREFIX_BYTE_OPERATOR)
    account = NKey.new(nkeys.PREFIX_BYTE_ACCOUNT)
    user = user_nkey()
    operator_jwt = jwt(operator, operator.public, "kairos-test-operator", {"type": "operator"})
    account_jwt = jwt(
        operator,
        account.public,
        "kairos-test-account",
        {
            "type": "account",
            "limits": {
                **_NO_LIMITS,
                "imports": -1,
                "exports": -1,
                "wildcards": True,
                "conn": -1,
                "leaf": -1,
            },
        },
    )
    user_jwt = jwt(account, user.public, "kairos", {"type": "user", **_NO_LIMITS})
    config = (
        f'operator: "{operator_jwt}"\n'
        "resolver: MEMORY\n"
        f'resolver_preload: {{ {account.public}: "{account_jwt}" }}\n'
    )
    creds = (
        "-----BEGIN NATS USER JWT-----\n"
        f"{user_jwt}\n"
        "------END NATS USER JWT------\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{user.seed}\n"
        "------END USER NKEY SEED------\n"
    )
    return OperatorMode(server_config=config, creds=creds)


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a test CA, a server certificate for 127.0.0.1 and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def server_config(self, *, verify: bool = False) -> str:
        """The nats-server `tls` block: serve this certificate; with `verify`, ask clients for
        one signed by the CA."""
        return (
            "tls {\n"
            f'  cert_file: "{self.server_cert}"\n'
            f'  key_file: "{self.server_key}"\n'
            f'  ca_file: "{self.ca}"\n'
            f"  verify: {'true' if verify else 'false'}\n"
            "}\n"
        )


def tls_files(folder: Path, ca: trustme.CA | None = None) -> TlsFiles:
    """Write a CA (a new one unless given), a server and a client certificate into `folder`."""
    ca = ca or trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("kairos-client@example.org")
    files = TlsFiles(
        ca=folder / "ca.pem",
        server_cert=folder / "server.pem",
        server_key=folder / "server.key",
        client_cert=folder / "client.pem",
        client_key=folder / "client.key",
    )
    ca.cert_pem.write_to_path(str(files.ca))
    server.private_key_pem.write_to_path(str(files.server_key))
    client.private_key_pem.write_to_path(str(files.client_key))
    for cert, path in ((server, files.server_cert), (client, files.client_cert)):
        path.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    return files
