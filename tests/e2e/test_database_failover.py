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

from support.nats_server import NatsServer
from support.pg_cluster import pg_bin, start_primary_standby
from support.stack import create_spread, exactly_once, running_stack, wait_all_arrived

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
            # Due from 2 s to 8 s from now: the failover lands in the middle of them.
            await create_spread(stack, mark, COUNT, first_due=2.0, spread=6.0)
            await asyncio.sleep(3.0)
            sent_before = len(stack.received(mark))
            await asyncio.to_thread(pair.stop_cluster, pair.primary, "immediate")
            await asyncio.sleep(1.0)
            await asyncio.to_thread(pair.promote)

            await wait_all_arrived(stack, mark, COUNT, timeout=60)
            await asyncio.sleep(2.0)  # anything sent twice would show up by now
            exactly_once(stack, mark, COUNT)
            assert 0 < sent_before < COUNT, "the failover did not land while posts went out"
            assert "Traceback" not in stack.api.logs(), stack.api.logs()[-6000:]
    finally:
        await asyncio.to_thread(pair.stop)
