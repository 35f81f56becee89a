"""Kairos's side of the burst and steady scenarios.

Posts are created through the public gRPC API, as a client would, each with one webhook target
pointing at the sink; the sink identifies an arrival by its `Idempotency-Key`, which is
`kairos-<target id>`. All due instants must lie after the last create, so `create_due_posts`
first times a warm-up of creates (posts scheduled a day ahead, which stay stored) and then picks
the first due instant far enough ahead for the real ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp

from kairos.posts.v1 import posts_pb2
from kairos_bench.cpu import CpuMeter
from kairos_bench.load import Client, close_clients, drive, open_clients
from kairos_bench.sink import SinkProcess
from kairos_bench.stack import Stack

CREATE_CLIENTS = 32
WARM_UP = 300
DAY_NS = 86_400 * 10**9


def timestamp(ns: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(ns)
    return stamp


@dataclass(frozen=True)
class Created:
    """Posts created for a scenario: key → due (ns), and how fast the creates went."""

    expected: dict[str, int]
    seconds: float
    errors: dict[str, int]
    #: Creates that finished after the first due instant (their lateness includes creation).
    overran: int

    @property
    def per_s(self) -> float:
        return len(self.expected) / self.seconds if self.seconds else 0.0


async def _create(
    clients: list[Client],
    stack: Stack,
    account_id: str,
    dues: Callable[[int], int],
    total: int,
    label: str,
) -> tuple[dict[str, int], float, dict[str, int], list[int]]:
    finished: list[int] = []

    async def call(client: Client, number: int) -> posts_pb2.CreatePostResponse:
        reply: posts_pb2.CreatePostResponse = await client.posts.CreatePost(
            posts_pb2.CreatePostRequest(
                content=f"{label} post {number}: on time, exactly once.",
                targets=[posts_pb2.TargetSpec(account_id=account_id)],
                schedule=posts_pb2.Schedule(at=timestamp(dues(number))),
                request_id=f"{label}-{number}",
            ),
            metadata=stack.metadata,
            timeout=60,
        )
        finished.append(time.time_ns())
        return reply

    result = await drive(clients, call, total=total, keep_answers=True)
    expected = {
        f"kairos-{answer.post.targets[0].id}": dues(number)
        for number, answer in result.answers.items()
    }
    return expected, result.seconds, result.errors, finished


async def create_due_posts(
    stack: Stack,
    account_id: str,
    total: int,
    due_at: Callable[[int, int], int],
    *,
    label: str,
    margin_s: float = 5.0,
) -> Created:
    """Create `total` posts; post i is due at `due_at(first_due_ns, i)`."""
    clients = open_clients(stack.api_target, CREATE_CLIENTS)
    try:
        far = time.time_ns() + DAY_NS
        _, warm_seconds, _, _ = await _create(
            clients, stack, account_id, lambda i: far + i, min(WARM_UP, total), f"{label}-warm"
        )
        rate = min(WARM_UP, total) / warm_seconds
        # Creates slow down once the drain of an earlier batch or a big table competes for the
        # same cores, so leave twice the warm-up's estimate: a create that still finishes
        # after the due instant is counted and reported, since its lateness includes creation.
        first_due = time.time_ns() + int((total / rate * 2.0 + margin_s) * 1e9)
        expected, seconds, errors, finished = await _create(
            clients, stack, account_id, lambda i: due_at(first_due, i), total, label
        )
    finally:
        await close_clients(clients)
    overran = sum(1 for at in finished if at > first_due)
    return Created(expected, seconds, errors, overran)


async def collect(
    sink: SinkProcess,
    expected: Mapping[str, int],
    *,
    settle_s: float = 3.0,
    timeout_s: float,
    meter: CpuMeter | None = None,
) -> list[tuple[str, int]]:
    """Wait until every expected post arrived (and a little longer, to catch duplicates);
    `meter` measures from the last due instant until the last post arrived."""
    last_due = max(expected.values())
    wait = max(0.0, (last_due - time.time_ns()) / 1e9)
    await asyncio.sleep(wait)
    async with meter.window() if meter else contextlib.nullcontext():
        await sink.wait_for(len(expected), timeout=timeout_s, idle=max(settle_s, 10.0))
    await asyncio.sleep(settle_s)
    return await sink.arrivals()
