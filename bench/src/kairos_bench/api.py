"""The api scenario: CreatePost, GetPost, ListPosts and GetStats throughput and latency.

Each measurement runs `clients` concurrent clients (each its own connection) for a fixed time
against the api alone (no scheduler or publisher competing for the CPU), after a short warm-up
that is not counted.
"""

from __future__ import annotations

import random
import time
from typing import Any

from kairos.posts.v1 import posts_pb2
from kairos_bench.kairos import DAY_NS, timestamp
from kairos_bench.load import Call, Client, close_clients, drive, open_clients
from kairos_bench.stack import Stack
from kairos_bench.stats import latency_summary


async def measure(
    stack: Stack,
    rpc: str,
    call: Call,
    clients: int,
    seconds: float,
    posts_in_db: int,
    *,
    target: str | None = None,
) -> dict[str, Any]:
    """One row of the api table (of the probe's, with its `target`)."""
    opened = open_clients(target or stack.api_target, clients)
    try:
        await drive(opened, call, seconds=min(1.0, seconds / 4))
        result = await drive(opened, call, seconds=seconds)
    finally:
        await close_clients(opened)
    summary = latency_summary(result.latencies_ms, result.seconds)
    return {
        "rpc": rpc,
        "clients": clients,
        "posts_in_db": posts_in_db,
        "summary": summary,
        "errors": result.errors,
    }


def create_call(stack: Stack, account_id: str, label: str) -> Call:
    later = time.time_ns() + 30 * DAY_NS

    async def call(client: Client, number: int) -> Any:
        return await client.posts.CreatePost(
            posts_pb2.CreatePostRequest(
                content=f"api {label} {number}: a post with a link https://example.com/{number}",
                targets=[posts_pb2.TargetSpec(account_id=account_id)],
                schedule=posts_pb2.Schedule(at=timestamp(later + number * 10**9)),
                tags=["bench"],
            ),
            metadata=stack.metadata,
            timeout=30,
        )

    return call


def get_call(stack: Stack, post_ids: list[str]) -> Call:
    async def call(client: Client, number: int) -> Any:
        return await client.posts.GetPost(
            posts_pb2.GetPostRequest(post_id=random.choice(post_ids)),
            metadata=stack.metadata,
            timeout=30,
        )

    return call


def list_call(stack: Stack) -> Call:
    """The first page of the calendar view: scheduled posts, soonest first, 50 a page."""

    async def call(client: Client, number: int) -> Any:
        return await client.posts.ListPosts(
            posts_pb2.ListPostsRequest(
                page_size=50,
                statuses=[posts_pb2.POST_STATUS_SCHEDULED],
                order=posts_pb2.POST_ORDER_SCHEDULED_SOONEST,
            ),
            metadata=stack.metadata,
            timeout=30,
        )

    return call


def stats_call(stack: Stack) -> Call:
    async def call(client: Client, number: int) -> Any:
        return await client.posts.GetStats(
            posts_pb2.GetStatsRequest(), metadata=stack.metadata, timeout=30
        )

    return call


async def post_ids(stack: Stack, count: int) -> list[str]:
    """Ids of up to `count` stored posts, newest first (for GetPost)."""
    opened = open_clients(stack.api_target, 1)
    ids: list[str] = []
    token = ""
    try:
        while len(ids) < count:
            reply = await opened[0].posts.ListPosts(
                posts_pb2.ListPostsRequest(page_size=100, page_token=token),
                metadata=stack.metadata,
                timeout=30,
            )
            ids.extend(post.id for post in reply.posts)
            token = reply.next_page_token
            if not token:
                break
    finally:
        await close_clients(opened)
    return ids[:count]
