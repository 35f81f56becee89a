"""CPU time per process while a burst drains: the profile table's numbers.

`CpuMeter` reads each process's user + system CPU time (`/proc/<pid>/stat` utime + stime, through
psutil) when the window opens and when it closes, and reports the difference per post, in
microseconds, by the name the caller gave the process. PostgreSQL serves each connection from a
backend process of its own, so the meter finds the backends of one database (`pg_stat_activity`,
read from the admin database so that its own backend is not counted) at the start, again every
half second, and at the end, and sums them; a backend that appears during the window counts
from zero, one that ends in it counts up to its last reading.

The window is the drain: from the posts' due instant until the last of them reached the sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import psutil
import psycopg

POSTGRES = "PostgreSQL backends"
POLL_SECONDS = 0.5


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds the process has used, or None once it is gone."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return float(times.user + times.system)


class CpuMeter:
    """CPU time of named processes (and of one database's backends) over a window."""

    def __init__(
        self,
        processes: Mapping[str, Iterable[int]],
        *,
        admin_url: str | None = None,
        database: str | None = None,
    ) -> None:
        self.processes = {name: list(pids) for name, pids in processes.items()}
        self.admin_url = admin_url
        self.database = database
        #: pid → (CPU seconds when first seen in the window, when last seen).
        self._readings: dict[int, tuple[float, float]] = {}
        self._backends: set[int] = set()
        self._admin: psycopg.AsyncConnection[Any] | None = None
        self.seconds = 0.0
        self.used: dict[str, float] = {}
        """CPU seconds used in the window, by process name (known once it has closed)."""

    def _read(self, pids: Iterable[int], *, new_from_zero: bool) -> None:
        for pid in pids:
            now = cpu_seconds(pid)
            if now is None:
                continue
            first = self._readings.get(pid, (0.0 if new_from_zero else now, now))[0]
            self._readings[pid] = (first, now)

    async def _poll_backends(self, *, new_from_zero: bool) -> None:
        if self._admin is None:
            return
        with contextlib.suppress(psycopg.Error):
            cursor = await self._admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.database,)
            )
            self._backends |= {int(row[0]) for row in await cursor.fetchall()}
        self._read(self._backends, new_from_zero=new_from_zero)

    async def _follow_backends(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            await self._poll_backends(new_from_zero=True)

    @asynccontextmanager
    async def window(self) -> AsyncIterator[None]:
        """Measure from entering to leaving."""
        if self.admin_url is not None and self.database is not None:
            self._admin = await psycopg.AsyncConnection.connect(self.admin_url, autocommit=True)
        await self._poll_backends(new_from_zero=False)
        for pids in self.processes.values():
            self._read(pids, new_from_zero=False)
        started = time.perf_counter()
        follow = asyncio.create_task(self._follow_backends())
        try:
            yield
        finally:
            follow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follow
            self.seconds = time.perf_counter() - started
            for pids in self.processes.values():
                self._read(pids, new_from_zero=False)
            await self._poll_backends(new_from_zero=True)
            if self._admin is not None:
                await self._admin.close()
                self._admin = None
            self.used = {name: self._used(pids) for name, pids in self.processes.items()}
            if self.database is not None:
                self.used[POSTGRES] = self._used(self._backends)

    def _used(self, pids: Iterable[int]) -> float:
        readings = [self._readings[pid] for pid in pids if pid in self._readings]
        return sum(last - first for first, last in readings)

    def profile(self, posts: int) -> dict[str, Any]:
        """The window's CPU microseconds per post by process, their total, and the window."""
        per_post = {name: round(seconds / posts * 1e6, 1) for name, seconds in self.used.items()}
        return {
            "posts": posts,
            "window_s": round(self.seconds, 3),
            "us_per_post": per_post,
            "total_us_per_post": round(sum(self.used.values()) / posts * 1e6, 1),
        }
