"""`python -m kairos_common.healthcheck HOST:PORT [SERVICE] [TLS options]`: exit 0 when the
service is SERVING.

Used as the container health check, where no grpc_health_probe binary is installed. A service
that listens with TLS (KAIROS_TLS_CERT_FILE) is asked over TLS: `--ca-file` names the CA that
signed its certificate (`--tls` alone trusts the system's roots), and `--server-name` the name
in that certificate when it is not the host asked (127.0.0.1 inside a container). Health is
served on the listener without client certificates, so none is needed; `--cert-file` and
`--key-file` present one anyway, for a health check of the mutual-TLS listener.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kairos_common.grpc.channel import channel_credentials, tls_options
from kairos_common.settings import ClientTls

PLAINTEXT = ClientTls()


def check(
    target: str, service: str = "", timeout: float = 2.0, *, tls: ClientTls = PLAINTEXT
) -> bool:
    """Whether `target` reports `service` (or the whole server) SERVING; over TLS when `tls`
    is on."""
    if tls.enabled:
        channel = grpc.secure_channel(target, channel_credentials(tls), options=tls_options(tls))
    else:
        channel = grpc.insecure_channel(target)
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError as error:
            print(f"{target}: {error.code().name}", file=sys.stderr)
            return False
    serving: bool = reply.status == health_pb2.HealthCheckResponse.SERVING
    if not serving:
        print(f"{target}: {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}")
    return serving


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kairos_common.healthcheck",
        description="Exit 0 when the gRPC service at HOST:PORT reports SERVING, 1 otherwise.",
    )
    parser.add_argument("target", metavar="HOST:PORT")
    parser.add_argument("service", nargs="?", default="", metavar="SERVICE")
    parser.add_argument("--tls", action="store_true", help="use TLS (implied by --ca-file)")
    parser.add_argument("--ca-file", type=Path, help="CA of the service's certificate (PEM)")
    parser.add_argument("--cert-file", type=Path, help="client certificate (PEM)")
    parser.add_argument("--key-file", type=Path, help="its private key (PEM)")
    parser.add_argument("--server-name", default="", help="name to check the certificate for")
    return parser


class _Usage(Exception):
    """A mistake in the command line, printed as one line; exit 2."""


def _read(path: Path | None, option: str) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as error:
        raise _Usage(f"{option} {path}: {error.strerror}") from None


def _tls(parsed: argparse.Namespace) -> ClientTls:
    """The channel's TLS from the options; off (plaintext) when none asks for TLS."""
    ca = _read(parsed.ca_file, "--ca-file")
    cert = _read(parsed.cert_file, "--cert-file")
    key = _read(parsed.key_file, "--key-file")
    if (cert is None) != (key is None):
        raise _Usage("--cert-file and --key-file go together")
    enabled = bool(parsed.tls or ca is not None or cert is not None or parsed.server_name)
    return ClientTls(
        enabled=enabled, ca=ca, cert_chain=cert, private_key=key, server_name=parsed.server_name
    )


def main(argv: list[str]) -> int:
    try:
        parsed = parser().parse_args(argv)
    except SystemExit as exit:  # argparse's usage error (or --help), already printed
        return 2 if exit.code else 0
    try:
        tls = _tls(parsed)
    except _Usage as error:
        print(f"healthcheck: {error}", file=sys.stderr)
        return 2
    serving = check(parsed.target, parsed.service, tls=tls)
    return 0 if serving else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
