"""CpuMeter against real processes and real PostgreSQL backends."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest

from kairos_bench.cpu import POSTGRES, CpuMeter, cpu_seconds
from kairos_bench.stack import ADMIN_URL, create_database, drop_database

SPIN = "import time\nend = time.process_time() + {seconds}\nwhile time.process_time() < end: pass"


@pytest.fixture
def database() -> Iterator[str]:
    name = f"kairos_bench_cpu_{secrets.token_hex(4)}"
    create_database(name)
    yield name
    drop_database(name)


@pytest.fixture
def idle_child() -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield child
    child.kill()
    child.wait()


async def test_a_process_is_charged_only_the_cpu_it_used_in_the_window(
    idle_child: subprocess.Popen[bytes],
) -> None:
    # Busy before the window opens, and again inside it; alive until the window has closed.
    busy = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "\ninput()\n".join([SPIN.format(seconds=0.4)] * 2) + "\ninput()",
        stdin=subprocess.PIPE,
    )  # fmt: skip
    assert busy.stdin is not None
    await asyncio.sleep(0.8)
    meter = CpuMeter({"busy": [busy.pid], "idle": [idle_child.pid]})
    async with meter.window():
        busy.stdin.write(b"\n")
        await busy.stdin.drain()
        await asyncio.sleep(0.8)
    busy.stdin.close()
    await busy.wait()
    assert 0.3 <= meter.used["busy"] <= 0.55
    assert meter.used["idle"] <= 0.05
    profile = meter.profile(1000)
    assert profile["us_per_post"]["busy"] == pytest.approx(meter.used["busy"] * 1000, abs=0.1)
    assert POSTGRES not in profile["us_per_post"]


async def test_the_backends_of_the_database_are_summed_even_when_they_connect_late(
    database: str,
) -> None:
    base, _, _ = ADMIN_URL.rpartition("/")
    url = f"{base}/{database}"
    heavy = "SELECT count(*) FROM generate_series(1, 3000000)"
    with psycopg.connect(url, autocommit=True) as early:
        row = early.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        before = cpu_seconds(row[0])
        early.execute(heavy)  # before the window: not counted
        after = cpu_seconds(row[0])
        assert before is not None
        assert after is not None
        one_query_s = after - before
        meter = CpuMeter({}, admin_url=ADMIN_URL, database=database)
        async with meter.window():
            await asyncio.to_thread(early.execute, heavy)
            await asyncio.sleep(0.6)  # the meter sees the late backend while it lives

            def late() -> None:
                with psycopg.connect(url) as conn:
                    conn.execute(heavy)
                    conn.execute("SELECT pg_sleep(0.7)")

            await asyncio.to_thread(late)
    # Two heavy queries in the window, one before it.
    assert 1.5 * one_query_s <= meter.used[POSTGRES] <= 2.5 * one_query_s + 0.05
