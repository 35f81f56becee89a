"""bench/jetstream_publish_cpu.py runs and measures both ways of publishing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[3] / "bench" / "jetstream_publish_cpu.py"


def test_the_script_publishes_both_ways_and_prints_a_row_each() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--messages", "1000", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [row["way"] for row in rows] == ["publish_async", "AckedPublisher"]
    assert all(row["messages"] == 1000 and row["cpu_us_per_message"] > 0 for row in rows)
