"""Client channels to Kairos services, with keep-alives, TLS when set, and the calls' metadata."""

from __future__ import annotations

import ipaddress

import grpc

from kairos_common.settings import ClientTls

CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 32 * 1024 * 1024),
    ("grpc.enable_retries", 1),
    # Try to reconnect to a service that went away at least every second: gRPC's waits grow to
    # two minutes by default, and the scheduler's claims and the publisher's outcomes would
    # wait that long after an api restart.
    ("grpc.max_reconnect_backoff_ms", 1000),
    # Calls spread over every address the target resolves to (several api copies behind one
    # DNS name, or an `ipv4:` list), not all to the first that answers.
    ("grpc.lb_policy_name", "round_robin"),
]


def insecure_channel(target: str) -> grpc.aio.Channel:
    """An asyncio channel to `target` (host:port) with the project's options."""
    return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)


def channel_credentials(tls: ClientTls) -> grpc.ChannelCredentials:
    """TLS credentials from `tls`: its CA (the system's roots without one), and its client
    certificate for mutual TLS when it has one."""
    return grpc.ssl_channel_credentials(
        root_certificates=tls.ca, private_key=tls.private_key, certificate_chain=tls.cert_chain
    )


def tls_options(tls: ClientTls) -> list[tuple[str, str]]:
    """Channel options of `tls`: the name to check the server's certificate against, if set."""
    return [("grpc.ssl_target_name_override", tls.server_name)] if tls.server_name else []


def open_channel(target: str, tls: ClientTls) -> grpc.aio.Channel:
    """An asyncio channel to `target` with the project's options, over TLS when `tls` is on."""
    if not tls.enabled:
        return insecure_channel(target)
    return grpc.aio.secure_channel(
        target, channel_credentials(tls), options=[*CHANNEL_OPTIONS, *tls_options(tls)]
    )


def _target_host(target: str) -> str:
    """The host a gRPC target names ("" for a Unix socket), as in `dns:///host:port`,
    `ipv4:host:port,...`, `[::1]:port` or `host:port`."""
    if target.startswith(("unix:", "unix-abstract:")):
        return ""
    for prefix in ("ipv4:", "ipv6:"):
        if target.startswith(prefix):
            target = target.removeprefix(prefix).split(",")[0]
    if target.startswith("dns:"):
        target = target.removeprefix("dns:").removeprefix("//").partition("/")[2] or target
    if target.startswith("["):
        return target[1:].partition("]")[0]
    host, sep, port = target.rpartition(":")
    return host if sep and port.isdigit() else target


def is_loopback_target(target: str) -> bool:
    """Whether `target` stays on this machine: a Unix socket, localhost, 127.0.0.0/8 or ::1."""
    host = _target_host(target).lower()
    if host == "" and target.startswith(("unix:", "unix-abstract:")):
        return True
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def plaintext_warning(target: str, tls: ClientTls, variable: str = "KAIROS_API_TARGET") -> str:
    """The warning a service logs at start when its channel to `target` would cross the network
    in plaintext; "" when it stays on this machine or uses TLS."""
    if tls.enabled or is_loopback_target(target):
        return ""
    return (
        f"{variable}={target} is not on this machine and the channel to it is plaintext: the "
        "service token and the platform credentials DispatchService hands out cross the "
        "network unencrypted; set KAIROS_API_TLS=true (with KAIROS_API_CA_FILE for a private CA)"
    )


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata presenting `token` as a bearer credential."""
    return (("authorization", f"Bearer {token}"),)
