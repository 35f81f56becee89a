"""How much memory media work takes, measured in a process of its own so that nothing else the
tests did counts: `measure_in_child(...)` runs this module and returns what it printed.

    python -m support.media_memory probe FILE
    python -m support.media_memory s3 ENDPOINT BUCKET MIB

Each prints one JSON object with the growth of the peak resident set, in MiB, above what the
process held before the measured step. The peak is Linux's VmHWM, reset through
/proc/self/clear_refs right before the step: getrusage's ru_maxrss would not do, since a child
inherits its parent's (the test process's) through fork and exec.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from kairos_media import S3Location, S3MediaStore, UnsupportedMedia, probe_file

MIB = 1024 * 1024
_TESTS = Path(__file__).resolve().parent.parent


def measure_in_child(*arguments: str) -> dict[str, Any]:
    """Run this module with `arguments` in a new interpreter; what it reported."""
    environ = {**os.environ, "PYTHONPATH": str(_TESTS)}
    finished = subprocess.run(
        [sys.executable, "-m", "support.media_memory", *arguments],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
        check=False,
    )
    if finished.returncode != 0:
        raise AssertionError(
            f"the measuring process ended with {finished.returncode}:\n{finished.stderr}"
        )
    report: dict[str, Any] = json.loads(finished.stdout)
    return report


def _status(field: str, pid: int | str = "self") -> int:
    found = re.search(rf"^{field}:\s+(\d+) kB$", Path(f"/proc/{pid}/status").read_text(), re.M)
    assert found is not None, field
    return int(found.group(1)) * 1024


def start_measuring(pid: int | str = "self") -> int:
    """Restart the peak of this process (or of process `pid`, one this user may write to) from
    its current RSS, and return that RSS (the baseline)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # the peak starts again from the current RSS
    return _status("VmRSS", pid)


def growth_mib(baseline: int, pid: int | str = "self") -> float:
    """How far, in MiB, the process's peak RSS rose above `baseline` since `start_measuring`."""
    return round((_status("VmHWM", pid) - baseline) / MIB, 1)


def _probe(path: Path) -> dict[str, Any]:
    # FFmpeg's libraries were loaded with kairos_media, before measuring.
    baseline = start_measuring()
    try:
        probe_file(path)
        refused = ""
    except UnsupportedMedia as error:
        refused = error.message
    return {"refused": refused, "growth_mib": growth_mib(baseline)}


async def _s3(endpoint_url: str, bucket: str, mebibytes: int) -> dict[str, Any]:
    store = S3MediaStore(
        S3Location(
            bucket=bucket, endpoint_url=endpoint_url, access_key_id="a", secret_access_key="b"
        )
    )
    chunk = os.urandom(MIB)

    async def upload(count: int) -> AsyncIterator[bytes]:
        for _ in range(count):
            yield bytes(chunk)  # a new 1 MiB object each time, as from a network

    # Warm up (the client's runtime, its connection pool, the allocator's arenas) with a small
    # multipart upload and read, so that what follows measures the transfer alone.
    await store.put("warm-up", upload(9))
    async for _ in store.read("warm-up"):
        pass

    baseline = start_measuring()
    stored = await store.put("big", upload(mebibytes))
    put_growth = growth_mib(baseline)
    baseline = start_measuring()
    read = 0
    async for piece in store.read("big"):
        read += len(piece)
    return {
        "stored": stored.size,
        "read": read,
        "put_growth_mib": put_growth,
        "read_growth_mib": growth_mib(baseline),
    }


def main(arguments: list[str]) -> None:
    if arguments[0] == "probe":
        report = _probe(Path(arguments[1]))
    else:
        report = asyncio.run(_s3(arguments[1], arguments[2], int(arguments[3])))
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1:])
