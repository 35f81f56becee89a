"""The chaos run past one machine: two apis, two schedulers and two publishers on a three-node
JetStream cluster and a PostgreSQL primary with a synchronous standby; mid-burst a NATS node is
killed, the database fails over and an api is killed. No publisher dies mid-call, so every post
is published, once: a begin whose answer an api's death or the failover lost is asked again under
its key."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.nats_cluster import NatsCluster, nats_cluster
from support.pg_cluster import pg_bin, start_primary_standby
from support.stack import create_spread, exactly_once, published_events, running_stack, settled

BINDIR = pg_bin()
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(180),
    pytest.mark.skipif(BINDIR is None, reason="no PostgreSQL binaries installed"),
]

COUNT = 200


@pytest.fixture
def cluster() -> Iterator[NatsCluster]:
    with nats_cluster() as running:
        yield running


async def test_a_nats_node_a_database_failover_and_an_api_lost_mid_burst_double_nothing(
    cluster: NatsCluster, log_dir: Path
) -> None:
    assert BINDIR is not None
    pair = await asyncio.to_thread(start_primary_standby, BINDIR)
    # The production delivery lease; an attempt left open would settle UNKNOWN within 10 s.
    env = {"KAIROS_DELIVERY_LEASE_SECONDS": "60"}
    api_env = {"KAIROS_ATTEMPT_LEASE_SECONDS": "10"}
    try:
        async with running_stack(
            cluster,
            log_dir,
            apis=2,
            schedulers=2,
            publishers=2,
            env=env,
            api_env=api_env,
            database_url=pair.url("kairos"),
        ) as stack:
            mark = f"chaos-{uuid.uuid4().hex[:8]}"
            post_ids = await create_spread(stack, mark, COUNT, first_due=3.0, spread=6.0)
            await asyncio.sleep(4.0)  # the first posts are going out
            sent_before = len(stack.received(mark))
            cluster.kill(0)
            await asyncio.to_thread(pair.stop_cluster, pair.primary, "immediate")
            stack.apis[1].kill()
            await asyncio.sleep(1.0)
            await asyncio.to_thread(pair.promote)
            stack.apis[1].start()
            await asyncio.sleep(2.0)
            cluster.start(0)

            found = await settled(stack, post_ids, timeout=120)
            await asyncio.sleep(2.0)  # anything sent twice would show up by now
            assert 0 < sent_before < COUNT, "the faults did not land while posts went out"
            assert found == Counter({"POST_STATUS_PUBLISHED": COUNT}), found
            exactly_once(stack, mark, COUNT)
            published = await published_events(stack, post_ids)
            assert len(published) == COUNT
            assert set(published.values()) == {1}
    finally:
        await asyncio.to_thread(pair.stop)
