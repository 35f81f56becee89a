"""Concurrent gRPC clients: each its own connection, as separate services calling Kairos would be.

`drive` runs `clients` workers that take request numbers from a shared counter until `total` are
done (or `seconds` pass), each timing its own calls. Errors are counted, never hidden.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from kairos.posts.v1 import posts_pb2_grpc

#: A separate subchannel pool per channel, so each client has its own HTTP/2 connection.
CHANNEL_OPTIONS = [("grpc.use_local_subchannel_pool", 1)]


@dataclass(eq=False)
class Client:
    """One client: a channel and the public stubs on it (compared and hashed by identity)."""

    channel: grpc.aio.Channel
    posts: posts_pb2_grpc.PostsServiceAsyncStub
    accounts: posts_pb2_grpc.AccountsServiceAsyncStub


@dataclass
class LoadResult:
    """What a run did: per-call latencies (ms), wall time, answers and errors."""

    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    answers: dict[int, Any] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def calls(self) -> int:
        return len(self.latencies_ms)


def open_clients(target: str, count: int) -> list[Client]:
    clients = []
    for _ in range(count):
        channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        clients.append(
            Client(
                channel,
                posts_pb2_grpc.PostsServiceStub(channel),
                posts_pb2_grpc.AccountsServiceStub(channel),
            )
        )
    return clients


async def close_clients(clients: list[Client]) -> None:
    await asyncio.gather(*(client.channel.close(None) for client in clients))


Call = Callable[[Client, int], Awaitable[Any]]


async def drive(
    clients: list[Client],
    call: Call,
    *,
    total: int | None = None,
    seconds: float | None = None,
    keep_answers: bool = False,
) -> LoadResult:
    """Run `call(client, i)` for i = 0, 1, ... on every client concurrently, timing each call."""
    assert total is not None or seconds is not None, "give a total or a duration"
    result = LoadResult()
    numbers = itertools.count()
    started = time.perf_counter()
    deadline = started + seconds if seconds is not None else float("inf")

    async def worker(client: Client) -> None:
        while True:
            number = next(numbers)
            if (total is not None and number >= total) or time.perf_counter() >= deadline:
                return
            begun = time.perf_counter()
            try:
                answer = await call(client, number)
            except grpc.aio.AioRpcError as error:
                key = f"{error.code().name}: {error.details()}"[:200]
                result.errors[key] = result.errors.get(key, 0) + 1
                continue
            result.latencies_ms.append((time.perf_counter() - begun) * 1000)
            if keep_answers:
                result.answers[number] = answer

    await asyncio.gather(*(worker(client) for client in clients))
    result.seconds = time.perf_counter() - started
    return result
