"""Client channels to Kairos services, with keep-alives and the calls' metadata."""

from __future__ import annotations

import grpc

CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 32 * 1024 * 1024),
    ("grpc.enable_retries", 1),
]


def insecure_channel(target: str) -> grpc.aio.Channel:
    """An asyncio channel to `target` (host:port) with the project's options."""
    return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata presenting `token` as a bearer credential."""
    return (("authorization", f"Bearer {token}"),)
