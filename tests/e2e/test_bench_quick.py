"""`make bench --quick`: the whole benchmark harness on small numbers, so it never rots.

It runs exactly what `make bench` runs (the real stack as processes, the sink, both Node peers
installed from npm into bench/bullmq: bare BullMQ and the seeds' design, the empty-RPC probe,
the CPU profile, every scenario and the report), with sizes that take about two minutes, and
checks the report it wrote. The numbers themselves are not judged here: timings on a shared
2-core machine are noisy; `make bench` is where they count.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]


def test_quick_bench_writes_a_complete_report(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kairos_bench", "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    results = json.loads((tmp_path / "quick-latest.json").read_text())
    assert results["errors"] == []
    assert results["meta"]["quick"] is True
    for scenario in ("burst", "steady"):
        for system in ("kairos", "bullmq", "seeds"):
            summary = results[scenario][system]
            assert summary["posts"] > 0, (scenario, system)
            assert summary["lost"] == 0, (scenario, system, summary)
            assert summary["duplicates"] == 0, (scenario, system, summary)
            assert summary["p50_ms"] is not None
    for system in ("kairos", "bullmq", "seeds"):
        cpu = results["burst"][f"{system}_detail"]["cpu"]
        assert cpu["posts"] == results["burst"]["n"]
        assert cpu["total_us_per_post"] > 0, (system, cpu)
    kairos_cpu = results["burst"]["kairos_detail"]["cpu"]["us_per_post"]
    for process in ("api", "scheduler", "publisher", "nats-server", "PostgreSQL backends"):
        assert process in kairos_cpu, process
    assert "PostgreSQL backends" in results["burst"]["seeds_detail"]["cpu"]["us_per_post"]
    rpcs = {(row["rpc"], row["clients"]) for row in results["api"]}
    for rpc in ("CreatePost", "GetPost", "ListPosts", "GetStats"):
        assert {(rpc, 16), (rpc, 64)} <= rpcs, rpc
    assert all(row["summary"]["calls"] > 0 for row in results["api"] + results["probe"])
    assert {row["clients"] for row in results["probe"]} == {16, 64}
    stats_stored = {row["posts_in_db"] for row in results["api"] if row["rpc"] == "GetStats"}
    assert len(stats_stored) == 2, stats_stored
    assert any(
        row["posts_in_db"] >= results["scale"]["stored_future_posts"] for row in results["api"]
    )
    scale = results["scale"]
    assert scale["kairos"]["lost"] == 0
    assert scale["kairos"]["duplicates"] == 0
    assert scale["claim_ms"]
    assert scale["claim_ms"]["samples"] > 0
    assert scale["publisher_rss_mib"]["peak"] > 0
    assert results["sink"]["per_s"] > 0
    markdown = (tmp_path / "quick-latest.md").read_text()
    for heading in ("Burst", "Steady", "CPU per post", "API", "Scale", "Targets"):
        assert heading in markdown
    assert "Kairos / seeds' design" in markdown
    assert "empty RPC" in markdown
    plot = (tmp_path / "quick-latest-lateness.png").read_bytes()
    assert plot.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(plot) > 10_000
