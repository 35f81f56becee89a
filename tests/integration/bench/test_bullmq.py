"""The Node baselines (bare BullMQ, the seeds' design) against the real local Redis and
PostgreSQL and a real HTTP sink.

The sink here is a small asyncio HTTP/1.1 server in the test's own loop that records the
idempotency key and arrival time of every POST, and can refuse chosen keys once. Redis comes from
KAIROS_BENCH_REDIS_URL (default 127.0.0.1:6379); every run uses a queue of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from kairos_bench.bullmq import (
    KEY_PREFIX,
    BullmqBaseline,
    BullmqUnavailable,
    SeedsBaseline,
    ensure_installed,
    redis_info,
    redis_keys,
)

REDIS_URL = os.environ.get("KAIROS_BENCH_REDIS_URL", "redis://127.0.0.1:6379")
# Due times are rounded up to the millisecond and BullMQ promotes a job once its time has come,
# so nothing may arrive early; the tolerance only absorbs clock reads in two processes.
EARLY_TOLERANCE_NS = 5_000_000
# How far apart in due time two posts of a steady stream may be and still arrive swapped.
ORDER_TOLERANCE_NS = 250_000_000


@pytest.fixture(scope="module", autouse=True)
def bullmq_ready() -> None:
    try:
        redis_info(REDIS_URL)
    except OSError as error:
        pytest.skip(f"no Redis at {REDIS_URL}: {error}")
    ensure_installed()


@dataclass
class Arrival:
    key: str
    arrived_ns: int
    status: int


@dataclass
class Sink:
    """Records every POST; answers 500 to the first POST of each key in `refuse_once`."""

    refuse_once: set[str] = field(default_factory=set)
    arrivals: list[Arrival] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    def accepted(self) -> list[Arrival]:
        return [arrival for arrival in self.arrivals if arrival.status == 200]

    async def wait_for_accepted(self, count: int, timeout: float) -> list[Arrival]:
        """The accepted arrivals once there are `count` of them, or after `timeout` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while len(self.accepted()) < count:
                    self.arrived.clear()
                    await self.arrived.wait()
        return self.accepted()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers = dict(
                    line.split(": ", 1) for line in head.decode().lower().split("\r\n")[1:-2]
                )
                await reader.readexactly(int(headers.get("content-length", "0")))
                key = headers.get("idempotency-key", "")
                status = 200
                if key in self.refuse_once:
                    self.refuse_once.discard(key)
                    status = 500
                self.arrivals.append(Arrival(key, time.time_ns(), status))
                self.arrived.set()
                writer.write(b"HTTP/1.1 %d X\r\ncontent-length: 2\r\n\r\nok" % status)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    recorder = Sink()
    connections: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connections.add(task)
        try:
            await recorder.serve(reader, writer)
        finally:
            connections.discard(task)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    recorder.url = f"http://127.0.0.1:{port}/hook"
    yield recorder
    server.close()
    for task in list(connections):
        task.cancel()
    await asyncio.gather(*connections, return_exceptions=True)
    await server.wait_closed()


def due_in(seconds: float) -> int:
    return time.time_ns() + int(seconds * 1e9)


def assert_on_time(
    arrivals: list[Arrival], due: dict[str, int], enqueued_ns: int, within_s: float
) -> None:
    """None early; none later than `within_s` after its due time, or after enqueueing ended
    if a loaded machine made that later."""
    for arrival in arrivals:
        early_ns = due[arrival.key] - arrival.arrived_ns
        assert early_ns <= EARLY_TOLERANCE_NS, f"{arrival.key} came {early_ns} ns early"
        late_ns = arrival.arrived_ns - max(due[arrival.key], enqueued_ns)
        assert late_ns <= within_s * 1e9, f"{arrival.key} came {late_ns / 1e9:.2f} s late"


async def test_a_burst_arrives_once_each_at_its_due_time(sink: Sink) -> None:
    async with BullmqBaseline(
        sink_url=sink.url, redis_url=REDIS_URL, workers=2, concurrency=20
    ) as bull:
        assert len(bull.pids) == 2
        burst_at = due_in(2.0)
        due = {f"burst-{index}": burst_at for index in range(300)}
        await bull.enqueue(list(due.items()))
        enqueued_ns = time.time_ns()
        arrivals = await sink.wait_for_accepted(len(due), timeout=10)

    assert Counter(arrival.key for arrival in sink.arrivals) == Counter(dict.fromkeys(due, 1))
    assert_on_time(arrivals, due, enqueued_ns, within_s=5.0)
    assert (bull.completed, bull.failed) == (300, 0)


async def test_a_steady_stream_keeps_its_pace_and_order(sink: Sink) -> None:
    rate = 50
    async with BullmqBaseline(
        sink_url=sink.url, redis_url=REDIS_URL, workers=2, concurrency=20
    ) as bull:
        start = due_in(1.5)
        due = {f"steady-{index:03d}": start + index * 1_000_000_000 // rate for index in range(100)}
        await bull.enqueue(list(due.items()))
        enqueued_ns = time.time_ns()
        arrivals = await sink.wait_for_accepted(len(due), timeout=10)

    assert sorted(arrival.key for arrival in arrivals) == sorted(due)
    assert_on_time(arrivals, due, enqueued_ns, within_s=1.0)
    # Roughly in order: a post may overtake one due shortly before it (another worker was
    # faster), never one due well before it.
    latest_due_so_far = 0
    for arrival in arrivals:
        latest_due_so_far = max(latest_due_so_far, due[arrival.key])
        assert latest_due_so_far - due[arrival.key] <= ORDER_TOLERANCE_NS, arrival.key


async def test_a_refused_post_is_retried_with_backoff(sink: Sink) -> None:
    async with BullmqBaseline(
        sink_url=sink.url, redis_url=REDIS_URL, workers=1, concurrency=10
    ) as bull:
        now = due_in(1.0)
        due = {f"retry-{index}": now for index in range(20)}
        sink.refuse_once = {"retry-3", "retry-7"}
        await bull.enqueue(list(due.items()))
        accepted = await sink.wait_for_accepted(len(due), timeout=10)

    assert sorted(arrival.key for arrival in accepted) == sorted(due)
    refused = {each.key: each.arrived_ns for each in sink.arrivals if each.status != 200}
    assert set(refused) == {"retry-3", "retry-7"}
    for arrival in accepted:
        if arrival.key in refused:
            # The first backoff is one second.
            assert arrival.arrived_ns - refused[arrival.key] >= 0.95e9
    assert (bull.completed, bull.failed) == (20, 2)


async def test_the_queue_leaves_no_keys_in_redis(sink: Sink) -> None:
    async with BullmqBaseline(
        sink_url=sink.url, redis_url=REDIS_URL, workers=1, concurrency=10
    ) as bull:
        # Still delayed when the run ends: obliterating must remove pending jobs too.
        await bull.enqueue([(f"later-{index}", due_in(600)) for index in range(50)])
        pattern = bull.key_pattern
        assert pattern.startswith(f"{KEY_PREFIX}:")
        assert await asyncio.to_thread(redis_keys, REDIS_URL, pattern)
    assert await asyncio.to_thread(redis_keys, REDIS_URL, pattern) == []
    assert sink.arrivals == []


async def test_a_missing_node_is_reported_clearly(
    sink: Sink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BullmqUnavailable, match="`node` not found on PATH"):
        ensure_installed()
    with pytest.raises(BullmqUnavailable, match=r"Node\.js 20"):
        async with BullmqBaseline(sink_url=sink.url, redis_url=REDIS_URL):
            pass


async def test_the_seeds_design_publishes_each_row_once_and_drops_its_database(
    sink: Sink,
) -> None:
    async with SeedsBaseline(
        sink_url=sink.url, redis_url=REDIS_URL, workers=2, concurrency=20, pool=4
    ) as seeds:
        burst_at = due_in(2.0)
        due = {f"seeds-{index}": burst_at for index in range(200)}
        await seeds.enqueue(list(due.items()))
        enqueued_ns = time.time_ns()
        arrivals = await sink.wait_for_accepted(len(due), timeout=10)
        await asyncio.sleep(0.5)  # the last rows are marked after their POST is answered
        published = await asyncio.to_thread(seeds.published)
        database = seeds.database

    assert Counter(arrival.key for arrival in sink.arrivals) == Counter(dict.fromkeys(due, 1))
    assert_on_time(arrivals, due, enqueued_ns, within_s=5.0)
    assert published == 200
    assert (seeds.completed, seeds.failed) == (200, 0)
    with psycopg.connect(seeds.admin_url) as conn:
        left = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
        assert left.fetchone() is None


async def test_the_seeds_worker_skips_a_row_already_published(sink: Sink) -> None:
    async with SeedsBaseline(
        sink_url=sink.url, redis_url=REDIS_URL, workers=1, concurrency=10, pool=2
    ) as seeds:
        now = due_in(1.5)
        due = {f"once-{index}": now for index in range(10)}
        await seeds.enqueue(list(due.items()))
        # Published already (by an attempt that died before its job completed, say).
        with psycopg.connect(seeds.database_url) as conn:
            conn.execute("UPDATE posts SET status = 'published' WHERE key = 'once-0'")
        await sink.wait_for_accepted(len(due) - 1, timeout=10)
        await asyncio.sleep(0.5)

    assert sorted(arrival.key for arrival in sink.arrivals) == sorted(set(due) - {"once-0"})
    assert (seeds.completed, seeds.failed) == (10, 0)
