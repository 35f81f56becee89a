"""Client channels to Kairos services, with keep-alives and the calls' metadata."""

from __future__ import annotations

import grpc

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
]


def insecure_channel(target: str) -> grpc.aio.Channel:
    """An asyncio channel to `target` (host:port) with the project's options."""
    return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata presenting `token` as a bearer credential."""
    return (("authorization", f"Bearer {token}"),)
