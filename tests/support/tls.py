"""Certificates for TLS tests, made on the fly with trustme and written to files, as services read
them: a CA, the servers' certificate (for localhost and 127.0.0.1), a client certificate signed
by the same CA, and a second CA nobody trusts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc
import trustme


@dataclass(frozen=True)
class Pki:
    """PEM files under one folder, and the environments that point services at them."""

    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def server_cert(self) -> Path:
        return self.folder / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.folder / "server.key"

    @property
    def client_cert(self) -> Path:
        return self.folder / "client.pem"

    @property
    def client_key(self) -> Path:
        return self.folder / "client.key"

    @property
    def other_ca(self) -> Path:
        """A CA that signed none of these certificates."""
        return self.folder / "other-ca.pem"

    @property
    def other_client_cert(self) -> Path:
        """A client certificate signed by the other CA."""
        return self.folder / "other-client.pem"

    @property
    def other_client_key(self) -> Path:
        return self.folder / "other-client.key"

    def server_env(self, *, mutual_addr: str = "") -> dict[str, str]:
        """A server's TLS variables; with `mutual_addr`, the api's mutual-TLS listener too."""
        env = {
            "KAIROS_TLS_CERT_FILE": str(self.server_cert),
            "KAIROS_TLS_KEY_FILE": str(self.server_key),
        }
        if mutual_addr:
            env["KAIROS_TLS_CLIENT_CA_FILE"] = str(self.ca)
            env["KAIROS_API_MTLS_ADDR"] = mutual_addr
        return env

    def client_env(self, *, with_certificate: bool = True) -> dict[str, str]:
        """The scheduler's and publisher's variables for a TLS channel to the api."""
        env = {"KAIROS_API_CA_FILE": str(self.ca)}
        if with_certificate:
            env["KAIROS_API_CLIENT_CERT_FILE"] = str(self.client_cert)
            env["KAIROS_API_CLIENT_KEY_FILE"] = str(self.client_key)
        return env

    def credentials(
        self, *, with_certificate: bool = False, trusting: Path | None = None
    ) -> grpc.ChannelCredentials:
        """Channel credentials trusting the CA (or `trusting`), with the client certificate if
        asked."""
        root = (trusting or self.ca).read_bytes()
        if not with_certificate:
            return grpc.ssl_channel_credentials(root)
        return grpc.ssl_channel_credentials(
            root, self.client_key.read_bytes(), self.client_cert.read_bytes()
        )


def make_pki(folder: Path) -> Pki:
    """Write a fresh CA and its certificates to `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    pki = Pki(folder)
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(pki.ca))
    server = ca.issue_cert("localhost", "127.0.0.1", "::1")
    server.private_key_pem.write_to_path(str(pki.server_key))
    _write_chain(server, pki.server_cert)
    client = ca.issue_cert("kairos-scheduler.internal")
    client.private_key_pem.write_to_path(str(pki.client_key))
    _write_chain(client, pki.client_cert)
    other = trustme.CA()
    other.cert_pem.write_to_path(str(pki.other_ca))
    stranger = other.issue_cert("kairos-scheduler.internal")
    stranger.private_key_pem.write_to_path(str(pki.other_client_key))
    _write_chain(stranger, pki.other_client_cert)
    return pki


def _write_chain(cert: trustme.LeafCert, path: Path) -> None:
    path.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
