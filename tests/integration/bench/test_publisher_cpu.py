"""bench/publisher_cpu.py still runs: a tiny burst on each event loop, one JSON line per run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "bench" / "publisher_cpu.py"


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_it_reports_the_cpu_per_post_of_a_small_burst(loop: str) -> None:
    flags = ["--uvloop"] if loop == "uvloop" else []
    finished = subprocess.run(
        [sys.executable, str(SCRIPT), "--posts", "20", *flags],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    [line] = finished.stdout.splitlines()
    result = json.loads(line)
    assert (result["posts"], result["loop"]) == (20, loop)
    assert result["cpu_us_per_post"] > 0
    assert result["dispatch_calls"] >= 2  # at least one BeginAttempts and one CompleteAttempts
