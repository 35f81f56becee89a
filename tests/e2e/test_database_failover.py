"""Published once across a PostgreSQL failover: the whole system as processes on a primary and a
synchronous standby; the primary crashes while posts are going out and the standby is promoted.

The api's side alone (creates, reads, the retry decision) is tested in-process by
tests/integration/api/test_database_failover.py; this test adds the scheduler's claims and the
publisher's begin and complete calls, whose fences must keep every post to one publication.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from kairos.posts.v1 import posts_pb2
from support.nats_server import NatsServer
from support.pg_cluster import pg_bin, start_primary_standby
from support.stack import at, running_stack

BINDIR = pg_bin()
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(120),
    pytest.mark.skipif(BINDIR is None, reason="no PostgreSQL binaries installed"),
]

COUNT = 150


async def test_every_post_is_published_once_across_a_failover(
    fresh_nats: NatsServer, log_dir: Path
) -> None:
    assert BINDIR is not None
    pair = await asyncio.to_thread(start_primary_standby, BINDIR)
    try:
        async with running_stack(fresh_nats, log_dir, database_url=pair.url("kairos")) as stack:
            mark = f"failover-{uuid.uuid4().hex[:8]}"
            semaphore = asyncio.Semaphore(16)

            async def create(index: int) -> None:
                # Due from 2 s to 8 s from now: the failover lands in the middle of them.
                request = posts_pb2.CreatePostRequest(
                    content=f"{mark} #{index}",
                    targets=[posts_pb2.TargetSpec(account_id=stack.account_id)],
                    request_id=f"{mark}-{index}",
                    schedule=posts_pb2.Schedule(at=at(2.0 + 6.0 * index / COUNT)),
                )
                async with semaphore:
                    await stack.posts.CreatePost(request, metadata=stack.metadata, timeout=30)

            await asyncio.gather(*(create(i) for i in range(COUNT)))
            await asyncio.sleep(3.0)
            sent_before = len(stack.received(mark))
            await asyncio.to_thread(pair.stop_cluster, pair.primary, "immediate")
            await asyncio.sleep(1.0)
            await asyncio.to_thread(pair.promote)

            deadline = asyncio.get_running_loop().time() + 60
            while len({p["content"] for p in stack.received(mark)}) < COUNT:
                if asyncio.get_running_loop().time() > deadline:
                    arrived = len({p["content"] for p in stack.received(mark)})
                    raise AssertionError(f"{arrived} of {COUNT} arrived\n{stack.logs()}")
                await asyncio.sleep(0.2)
            await asyncio.sleep(2.0)  # anything sent twice would show up by now
            contents = [p["content"] for p in stack.received(mark)]
            doubled = sorted({c for c in contents if contents.count(c) > 1})
            assert not doubled, f"published more than once: {doubled[:5]}"
            assert len(contents) == COUNT
            assert 0 < sent_before < COUNT, "the failover did not land while posts went out"
            assert "Traceback" not in stack.api.logs(), stack.api.logs()[-6000:]
    finally:
        await asyncio.to_thread(pair.stop)
