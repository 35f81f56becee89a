"""BatchCreatePosts against CreatePost: how fast 1,000 posts get created each way.

    .venv/bin/python bench/batch_create.py [--posts 1000] [--runs 3] [--sqlite]

An api alone (a process of its own, as `make bench` runs it) on a fresh PostgreSQL database, or
a SQLite file with --sqlite. Each run creates `--posts` scheduled posts on one webhook account
three ways: CreatePost one after another (what an importer without batches does), CreatePost
with 64 calls in flight (the best the group commit can do for single creates), and
BatchCreatePosts in calls of 1,000 items. Prints one JSON line per way and run: posts, seconds,
posts per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc

from kairos.posts.v1 import posts_pb2, posts_pb2_grpc
from kairos_bench.kairos import DAY_NS, timestamp
from kairos_bench.stack import Stack, connect_webhook, running_stack
from kairos_common.runner import event_loop_runner

BATCH = 1_000
Items = list[posts_pb2.CreatePostRequest]
IN_FLIGHT = 64


def requests(account_id: str, count: int, label: str) -> list[posts_pb2.CreatePostRequest]:
    later = time.time_ns() + 30 * DAY_NS
    return [
        posts_pb2.CreatePostRequest(
            content=f"batch {label} {n}: a post with a link https://example.com/{n}",
            targets=[posts_pb2.TargetSpec(account_id=account_id)],
            schedule=posts_pb2.Schedule(at=timestamp(later + n * 10**9)),
            tags=["bench"],
            request_id=f"{label}-{n}",
        )
        for n in range(count)
    ]


async def one_by_one(
    stub: posts_pb2_grpc.PostsServiceAsyncStub, stack: Stack, items: Items
) -> None:
    for item in items:
        await stub.CreatePost(item, metadata=stack.metadata, timeout=30)


async def concurrent(
    stub: posts_pb2_grpc.PostsServiceAsyncStub, stack: Stack, items: Items
) -> None:
    queue = list(reversed(items))

    async def worker() -> None:
        while queue:
            await stub.CreatePost(queue.pop(), metadata=stack.metadata, timeout=30)

    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))


async def batched(stub: posts_pb2_grpc.PostsServiceAsyncStub, stack: Stack, items: Items) -> None:
    for start in range(0, len(items), BATCH):
        reply = await stub.BatchCreatePosts(
            posts_pb2.BatchCreatePostsRequest(items=items[start : start + BATCH]),
            metadata=stack.metadata,
            timeout=60,
        )
        refused = [r for r in reply.results if r.violations]
        assert not refused, refused[0]


WAYS: dict[str, Callable[..., Awaitable[None]]] = {
    "CreatePost, one at a time": one_by_one,
    f"CreatePost, {IN_FLIGHT} in flight": concurrent,
    f"BatchCreatePosts, {BATCH} a call": batched,
}


async def main(posts: int, runs: int, sqlite: bool) -> None:
    env: dict[str, str] = {}
    folder = Path(tempfile.mkdtemp(prefix="kairos-batch-bench-"))
    if sqlite:
        env["KAIROS_DATABASE_URL"] = f"sqlite:///{folder / 'kairos.db'}"
    async with running_stack(env, services=("api",)) as stack:
        account = await connect_webhook(stack, "http://127.0.0.1:9/hook")
        async with grpc.aio.insecure_channel(stack.api_target) as channel:
            stub: posts_pb2_grpc.PostsServiceAsyncStub = posts_pb2_grpc.PostsServiceStub(channel)
            # Warm up connections, caches and the planner.
            await batched(stub, stack, requests(account, 200, "warm-batch"))
            await concurrent(stub, stack, requests(account, 200, "warm-single"))
            for run in range(runs):
                for way, create in WAYS.items():
                    items = requests(account, posts, f"{run}-{way}")
                    started = time.perf_counter()
                    await create(stub, stack, items)
                    seconds = time.perf_counter() - started
                    line = {
                        "database": "sqlite" if sqlite else "postgresql",
                        "way": way,
                        "run": run,
                        "posts": posts,
                        "seconds": round(seconds, 3),
                        "posts_per_second": round(posts / seconds),
                    }
                    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sqlite", action="store_true")
    args = parser.parse_args()
    event_loop_runner(True)(main(args.posts, args.runs, args.sqlite))
