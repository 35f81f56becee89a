"""py-spy on the services while a burst drains: where the CPU goes, per service.

`make bench ARGS=--profile` records each service (api, scheduler, publisher) from two seconds
before the burst's due instant for `seconds`, keeps py-spy's collapsed stacks under
`bench/results/profile/<service>.txt` (feed them to any flame-graph tool) and puts each
service's busiest functions, by inclusive share of its samples, in the results.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from kairos_bench.stack import Stack

SERVICES = ("api", "scheduler", "publisher")
FRAME = re.compile(r"(?P<function>.*?) \((?P<file>.*?)(?::\d+)?\)$")
#: Frames that every sample shares (the interpreter and event loop), left out of the top list.
PLUMBING = ("runpy", "asyncio/", "runner.py", "__main__.py", "threading.py", "<frozen")


def py_spy() -> str:
    return str(Path(sys.executable).parent / "py-spy")


def frame_name(frame: str) -> str:
    """`function (package/module.py)` from py-spy's `function (path/to/module.py:line)`."""
    match = FRAME.match(frame)
    if match is None:
        return frame
    path = match["file"]
    for marker in ("site-packages/", "/src/"):
        if marker in path:
            path = path.split(marker)[-1]
    return f"{match['function']} ({path})"


def top_functions(collapsed: str, count: int = 15) -> list[dict[str, Any]]:
    """The functions present in the most samples (inclusive), with their share."""
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack or not samples.isdigit():
            continue
        weight = int(samples)
        total += weight
        for name in {frame_name(frame) for frame in stack.split(";")}:
            inclusive[name] += weight
    ranked = [
        (name, weight)
        for name, weight in inclusive.most_common()
        if not any(part in name for part in PLUMBING)
    ]
    return [
        {"function": name, "share": round(weight / total, 3)} for name, weight in ranked[:count]
    ]


class Profiler:
    """Records the services with py-spy around one moment of a run."""

    def __init__(self, out: Path, seconds: float = 10.0, rate: int = 200) -> None:
        self.out = out
        self.seconds = seconds
        self.rate = rate
        self.pids: dict[str, int] = {}

    def attach(self, stack: Stack) -> None:
        self.pids = {name: stack.pid(name) for name in SERVICES if name in stack.processes}

    @asynccontextmanager
    async def around(self, due_ns: int) -> AsyncIterator[None]:
        self.out.mkdir(parents=True, exist_ok=True)
        await asyncio.sleep(max(0.0, (due_ns - time.time_ns()) / 1e9 - 2.0))
        spies = await asyncio.to_thread(self._start)
        try:
            yield
        finally:
            for spy in spies:
                await asyncio.to_thread(spy.wait)

    def _start(self) -> list[subprocess.Popen[bytes]]:
        return [
            subprocess.Popen(
                [
                    py_spy(), "record", "--pid", str(pid),
                    "--duration", str(int(self.seconds)), "--rate", str(self.rate),
                    "--format", "raw", "--output", str(self.out / f"{name}.txt"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for name, pid in self.pids.items()
        ]  # fmt: skip

    def summary(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for name in self.pids:
            path = self.out / f"{name}.txt"
            if path.exists():
                found[name] = top_functions(path.read_text())
        return found
