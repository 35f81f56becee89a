"""Kairos on a three-node JetStream cluster, streams at three replicas: a node killed, leaders
stepped down and a node cut off mid-burst publish every post once, late by seconds at most."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import nats.errors
import pytest

from kairos_common.streams import DUE_STREAM
from support.nats_cluster import IsolatedHost, NatsCluster, isolated_host, nats_cluster
from support.stack import Stack, create_many, due, exactly_once, running_stack, wait_all_arrived

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

#: The production lease: a post recovered in seconds was re-emitted, not left to the sweeper.
PRODUCTION_LEASE = {"KAIROS_DELIVERY_LEASE_SECONDS": "60"}
#: The most a post may arrive after its due instant or the end of the last disruption before it
#: (the KAIROS_DUE stream and its consumers led again, the cut node back), whichever is later.
LATE_BOUND = 5.0


@pytest.fixture
def cluster() -> Iterator[NatsCluster]:
    with nats_cluster() as running:
        yield running


async def leaders_now(cluster: NatsCluster) -> tuple[str, dict[str, str]]:
    """KAIROS_DUE's leaders as cluster.leaders() gives them; none while JetStream does not
    answer (no leader to answer, a request lost in an election)."""
    try:
        return await asyncio.wait_for(cluster.leaders(DUE_STREAM), 3.0)
    except (TimeoutError, nats.errors.Error):
        return "", {}


async def led_again(cluster: NatsCluster, *, not_by: str = "", timeout: float = 30.0) -> float:
    """Wait until KAIROS_DUE and every consumer of it have a leader (other than `not_by`); the
    moment (Unix seconds) it was seen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            stream, consumers = await asyncio.wait_for(cluster.leaders(DUE_STREAM), 3.0)
        except Exception:
            stream, consumers = "", {}
        leaders = [stream, *consumers.values()]
        if consumers and all(leader and leader != not_by for leader in leaders):
            return time.time()
        await asyncio.sleep(0.1)
    raise AssertionError(f"KAIROS_DUE and its consumers not led again within {timeout} s")


def after_due(stack: Stack[NatsCluster], mark: str) -> float:
    """The most any post arrived after its due instant."""
    return max(float(p["arrived_at"]) - due(p["due_at"]) for p in stack.received(mark))


def worst_lateness(
    stack: Stack[NatsCluster], mark: str, disruptions: list[tuple[float, float]]
) -> float:
    """The most any post arrived after its due instant or the end of the last disruption (start,
    end) that began before it arrived, whichever is later."""
    worst = 0.0
    for post in stack.received(mark):
        arrived = post["arrived_at"]
        ends = [end for start, end in disruptions if start <= arrived]
        worst = max(worst, arrived - max([due(post["due_at"]), *ends]))
    return worst


async def test_a_leader_change_and_a_killed_leader_mid_burst_lose_and_double_nothing(
    cluster: NatsCluster, log_dir: Path
) -> None:
    """KAIROS_DUE's stream and consumer leaders step down, then the node that leads the stream
    is killed (SIGKILL), while 400 posts fall due over 8 s; the node rejoins at the end."""
    async with running_stack(cluster, log_dir, publishers=2, env=PRODUCTION_LEASE) as stack:
        stream_leader, consumers = await cluster.leaders(DUE_STREAM)
        assert stream_leader
        assert consumers
        info, consumer_infos = await cluster.describe(DUE_STREAM)
        assert info.config.num_replicas == 3
        # A consumer's replicas follow its stream's: a leader and two followers each.
        followers = [len(c.cluster.replicas or []) if c.cluster else 0 for c in consumer_infos]
        assert followers == [2] * len(consumers)
        mark = f"cluster-{uuid.uuid4().hex[:8]}"
        count = 400
        await create_many(stack, mark, count, first_due=2.0, spread=8.0)
        await asyncio.sleep(2.5)  # the first posts are going out
        stepped_at = time.time()
        answer = await cluster.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{DUE_STREAM}")
        assert answer.get("success"), answer
        for consumer in consumers:
            subject = f"$JS.API.CONSUMER.LEADER.STEPDOWN.{DUE_STREAM}.{consumer}"
            answer = await cluster.request(subject)
            assert answer.get("success"), answer
        stepped_back = await led_again(cluster)
        await asyncio.sleep(max(0.0, stepped_at + 2.5 - time.time()))
        victim = (await cluster.leaders(DUE_STREAM))[0]
        killed_at = time.time()
        cluster.kill(cluster.index_of(victim))
        back = await led_again(cluster, not_by=victim)
        await wait_all_arrived(stack, mark, count, timeout=60)
        late = worst_lateness(stack, mark, [(stepped_at, stepped_back), (killed_at, back)])
        await asyncio.to_thread(cluster.start, cluster.index_of(victim))  # rejoins, catches up
        await asyncio.sleep(2.0)  # anything sent twice, by the rejoined node too, is here now
        exactly_once(stack, mark, count)
        print(
            f"leaders back {stepped_back - stepped_at:.1f} s after the step-down and "
            f"{back - killed_at:.1f} s after the kill; worst lateness {late:.1f} s, "
            f"{after_due(stack, mark):.1f} s after the due instant"
        )
        assert late < LATE_BOUND, f"a post arrived {late:.1f} s late\n{stack.logs()}"


async def test_a_node_cut_off_mid_burst_loses_and_doubles_nothing(log_dir: Path) -> None:
    """The node that leads KAIROS_DUE runs on a host of its own (a network namespace), with the
    scheduler and the publishers connected to it, and is cut off from the other two and from
    the services (nothing closes) while 300 posts fall due; it is joined again at the end."""
    with isolated_host() as host, partitionable_cluster(host) as cluster:
        async with running_stack(
            cluster, log_dir, schedulers=0, publishers=0, env=PRODUCTION_LEASE
        ) as stack:
            isolated = cluster.nodes[2]
            # Given the isolated node alone, they learn of the others from it (cluster gossip).
            services = [stack.add("scheduler", KAIROS_NATS_URL=isolated.url)]
            services += [stack.add("publisher", KAIROS_NATS_URL=isolated.url) for _ in range(2)]
            for service in services:
                await service.wait_serving()
            await lead_from(cluster, isolated.name)
            mark = f"partition-{uuid.uuid4().hex[:8]}"
            count = 300
            await create_many(stack, mark, count, first_due=2.0, spread=8.0)
            await asyncio.sleep(3.0)  # the first posts are going out
            connections = (isolated.monitor("/connz") or {}).get("connections", [])
            names = sorted(str(c.get("name")) for c in connections)
            assert names.count("kairos-publisher") == 2, names
            assert "kairos-scheduler" in names, names
            cut_at = time.time()
            host.cut()
            led = await led_again(cluster, not_by=isolated.name)
            # The partition lasts until every post is out: nothing waits for it to heal.
            await wait_all_arrived(stack, mark, count, timeout=60)
            late = worst_lateness(stack, mark, [(cut_at, led)])
            print(
                f"leaders elected {led - cut_at:.1f} s after the cut; worst lateness {late:.1f} s, "
                f"{after_due(stack, mark):.1f} s after the due instant"
            )
            host.heal()
            await asyncio.to_thread(cluster.wait_ready)
            await asyncio.sleep(3.0)  # anything sent twice, by the healed node too, is here now
            exactly_once(stack, mark, count)
            assert late < LATE_BOUND, f"a post arrived {late:.1f} s late\n{stack.logs()}"


def partitionable_cluster(host: IsolatedHost) -> contextlib.AbstractContextManager[NatsCluster]:
    """Two nodes on this host, the third on `host`, all on the veth pair's addresses."""
    return nats_cluster(
        hosts=[host.host_address, host.host_address, host.address],
        namespaces=[None, None, host.namespace],
    )


async def lead_from(cluster: NatsCluster, name: str, timeout: float = 20.0) -> None:
    """Have node `name` lead KAIROS_DUE and its consumers, stepping leaders down in its favour."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stream, consumers = await leaders_now(cluster)
        if stream == name and all(leader == name for leader in consumers.values()):
            return
        preferred = {"placement": {"preferred": name}}
        if stream and stream != name:
            await cluster.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{DUE_STREAM}", preferred)
        for consumer, leader in consumers.items():
            if leader and leader != name:
                subject = f"$JS.API.CONSUMER.LEADER.STEPDOWN.{DUE_STREAM}.{consumer}"
                await cluster.request(subject, preferred)
        await asyncio.sleep(0.5)
    raise AssertionError(f"{name} did not come to lead KAIROS_DUE within {timeout} s")
