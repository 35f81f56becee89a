"""The benchmark report: files written, tables and targets right, re-rendering from JSON."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from kairos_bench.report import judge_targets, main, markdown_table, to_jsonable, write_report
from kairos_bench.stats import ScenarioSummary, latency_summary, summarize

DUE = 1_800_000_000_000_000_000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def scenario(lateness_ms: list[float], *, lost: int = 0, duplicates: int = 0) -> ScenarioSummary:
    """A summary whose posts were all due at DUE and arrived the given ms late."""
    expected = {f"p{i}": DUE for i in range(len(lateness_ms) + lost)}
    arrivals = [(f"p{i}", DUE + round(late * 1e6)) for i, late in enumerate(lateness_ms)]
    arrivals += [("p0", DUE + 10**12)] * duplicates
    return summarize(expected, arrivals)


def spread(n: int, low: float, high: float, seed: int) -> list[float]:
    generator = random.Random(seed)
    return [generator.uniform(low, high) for _ in range(n)]


def meta(*, quick: bool = False) -> dict[str, Any]:
    return {
        "started_at": "2026-11-25T12:30:05+00:00",
        "finished_at": "2026-11-25T12:41:00+00:00",
        "quick": quick,
        "command": "make bench",
        "machine": {"cpu": "Test CPU", "cores": 2, "memory_gib": 7.8, "os": "Linux"},
        "versions": {"python": "3.11.7", "bullmq": "5.0.0"},
        "settings": {"KAIROS_SCHEDULER_BATCH": 500, "BULLMQ_CONCURRENCY": 50},
    }


def full_results() -> dict[str, Any]:
    api = [
        ("GetStats", 16, 10_000, [1.0] * 100, 0.08),  # 1,250/s
        ("CreatePost", 16, 10_000, [1.0] * 90 + [3.0] * 10, 0.04),  # 2,500/s
        ("CreatePost", 64, 10_000, [4.0] * 100, 0.1),  # 1,000/s
        ("GetPost", 16, 12_500, [1.0] * 99 + [4.0], 0.05),  # 2,000/s
        ("ListPosts", 16, 1_000_000, [10.0] * 98 + [25.0] * 2, 0.5),  # 200/s
        ("GetStats", 16, 1_000_000, [1.0] * 100, 0.09),  # 1,111/s
    ]
    return {
        "meta": meta(),
        "sink": {"requests": 50_000, "per_s": 30_000.0, "clients": 1, "sink_cpu_seconds": 0.5},
        "burst": {
            "n": 2000,
            "kairos": scenario(spread(2000, 5, 800, seed=1)),
            "bullmq": scenario(spread(2000, 10, 2000, seed=2)),
            "seeds": scenario(spread(2000, 10, 4000, seed=7)),
        },
        "steady": {
            "rate_per_s": 100,
            "seconds": 10.0,
            "kairos": scenario(spread(1000, 2, 30, seed=3)),
            "bullmq": scenario(spread(1000, 5, 80, seed=4)),
            "seeds": scenario(spread(1000, 5, 120, seed=8)),
        },
        "api": [
            {
                "rpc": rpc,
                "clients": clients,
                "posts_in_db": posts,
                "summary": latency_summary(samples, seconds),
            }
            for rpc, clients, posts, samples, seconds in api
        ],
        "probe": [
            {"rpc": "empty RPC", "clients": 16, "summary": latency_summary([1.0] * 100, 0.025)}
        ],
        "scale": {
            "stored_future_posts": 1_000_000,
            "n": 2000,
            "kairos": scenario(spread(2000, 5, 1100, seed=5)),
            "claim_ms": {"p50": 3.0, "p99": 9.0, "max": 12.0, "samples": 40},
            "claim_ms_empty": {"p50": 2.5, "p99": 8.0, "max": 10.0, "samples": 40},
            "publisher_rss_mib": {"start": 60.0, "peak": 90.5, "end": 70.0},
            "publisher_rss_mib_empty": {"start": 60.0, "peak": 88.0, "end": 69.0},
        },
        "errors": [],
    }


def summary_json(**values: Any) -> dict[str, Any]:
    """A scenario in its JSON form with only the numbers a test cares about."""
    base = {"posts": 10, "delivered": 10, "lost": 0, "duplicates": 0, "unexpected": 0}
    return base | values


def table_row(markdown: str, heading: str, label: str) -> list[str]:
    """The cells of the row starting with `label` in the table under `heading`."""
    section = markdown.split(heading, 1)[1].split("\n### ", 1)[0]
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[0] == label:
            return cells
    raise AssertionError(f"no row {label!r} under {heading!r}")


def statuses(results: dict[str, Any]) -> dict[str, str]:
    return {target.name: target.status for target in judge_targets(results)}


def test_writes_stamped_and_latest_files(tmp_path: Path) -> None:
    files = write_report(full_results(), tmp_path)

    assert files.json == tmp_path / "2026-11-25T1230Z.json"
    assert files.latest_plot == tmp_path / "latest-lateness.png"
    for stamped, latest in [
        (files.json, files.latest_json),
        (files.markdown, files.latest_markdown),
        (files.plot, files.latest_plot),
    ]:
        assert stamped.read_bytes() == latest.read_bytes()
    png = files.plot.read_bytes()
    assert png.startswith(PNG_SIGNATURE)
    assert len(png) > 30_000
    saved = json.loads(files.json.read_text())
    assert saved["burst"]["kairos"]["posts"] == 2000
    assert "lateness_ms" not in saved["burst"]["kairos"]
    assert len(saved["steady"]["bullmq"]["percentiles_ms"]) == 101
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        [
            "2026-11-25T1230Z.json",
            "2026-11-25T1230Z.md",
            "2026-11-25T1230Z-lateness.png",
            "latest.json",
            "latest.md",
            "latest-lateness.png",
        ]
    )
    markdown = files.markdown.read_text()
    for heading in ["## Machine and versions", "### Burst", "### Steady", "### API", "### Scale"]:
        assert heading in markdown
    assert "`KAIROS_SCHEDULER_BATCH`" in markdown


def test_a_quick_run_leaves_the_full_runs_latest_alone(tmp_path: Path) -> None:
    write_report(full_results(), tmp_path)
    full_latest = (tmp_path / "latest.md").read_text()
    quick = full_results() | {"meta": meta(quick=True)}

    files = write_report(quick, tmp_path)

    assert files.latest_markdown == tmp_path / "quick-latest.md"
    assert files.json.name == "quick-2026-11-25T1230Z.json"
    assert (tmp_path / "latest.md").read_text() == full_latest
    assert "(quick run)" in files.latest_markdown.read_text()


def test_a_partial_run_is_still_reported(tmp_path: Path) -> None:
    results = {
        "meta": meta(),
        "burst": {"n": 100, "kairos": scenario(spread(100, 1, 50, seed=6)), "bullmq": None},
        "steady": None,
        "errors": ["steady: kairos did not start (exit 1)"],
    }

    files = write_report(results, tmp_path)

    markdown = files.markdown.read_text()
    assert "## Errors\n\n- steady: kairos did not start (exit 1)" in markdown
    assert "Not run: BullMQ, seeds' design." in markdown
    assert "### Steady" not in markdown
    assert "### API" not in markdown
    assert "Kairos / BullMQ" not in markdown
    assert "Sink capacity not measured." in markdown
    assert files.plot.read_bytes().startswith(PNG_SIGNATURE)
    assert json.loads(files.json.read_text())["errors"] == results["errors"]
    assert statuses(results)["Burst drain ≤ 2.0× bare BullMQ's"] == "not measured"


def test_the_ratio_row_divides_kairos_by_bullmq() -> None:
    results = {
        "burst": {
            "n": 10,
            "kairos": summary_json(drain_s=1.5, p50_ms=10.0, p90_ms=30.0, p99_ms=45.0, max_ms=50.0),
            "bullmq": summary_json(drain_s=3.0, p50_ms=40.0, p90_ms=60.0, p99_ms=90.0, max_ms=0.0),
            "seeds": summary_json(drain_s=6.0, p50_ms=20.0, p90_ms=60.0, p99_ms=90.0, max_ms=25.0),
        },
        "steady": {
            "rate_per_s": 10,
            "seconds": 1.0,
            "kairos": summary_json(drain_s=1.1, p50_ms=3.0, p99_ms=12.0, max_ms=20.0),
            "bullmq": summary_json(drain_s=1.0, p50_ms=2.0, p99_ms=6.0, max_ms=10.0),
        },
    }

    markdown = markdown_table(results)

    burst = table_row(markdown, "### Burst", "Kairos / BullMQ")
    assert burst[2] == "0.50×"  # drain s
    assert burst[4:8] == ["0.25×", "0.50×", "0.50×", "—"]  # p50, p90, p99, max (÷ 0)
    steady = table_row(markdown, "### Steady", "Kairos / BullMQ")
    assert steady[2] == "1.10×"
    assert steady[4:7] == ["1.50×", "2.00×", "2.00×"]
    assert table_row(markdown, "### Burst", "BullMQ")[4] == "40.0"
    seeds = table_row(markdown, "### Burst", "Kairos / seeds' design")
    assert seeds[2] == "0.25×"
    assert seeds[4:8] == ["0.50×", "0.50×", "0.50×", "2.00×"]
    assert "Kairos / seeds' design" not in markdown.split("### Steady", 1)[1]
    assert "Not run: seeds' design." in markdown


def test_targets_are_judged_from_the_numbers() -> None:
    judged = {target.name: target for target in judge_targets(full_results())}

    assert {name: target.status for name, target in judged.items()} == {
        "Burst drain ≤ 0.5× the seeds' design's": "met",
        "Burst drain ≤ 2.0× bare BullMQ's": "met",
        "Burst p50 lateness ≤ 2× bare BullMQ's": "met",
        "Steady p99 lateness ≤ bare BullMQ's": "met",
        "Steady p99 lateness ≤ 50 ms": "met",
        "CreatePost ≥ 2,000/s": "met",
        "GetPost (16 clients) ≥ 0.5× the empty RPC": "met",
        "ListPosts at 1,000,000 posts ≥ 0.25× the empty RPC (every client count)": "not met",
        "GetStats at 1,000,000 posts ≥ 1,000/s (every client count)": "met",
        "GetStats at 1,000,000 posts ≥ 0.8× its rate at 10,000 (every client count)": "met",
        "Zero duplicates and zero lost posts in every Kairos scenario": "met",
    }
    get_post = judged["GetPost (16 clients) ≥ 0.5× the empty RPC"].detail
    assert get_post == "0.50× (2,000/s, empty RPC 4,000/s)"
    stats = judged["GetStats at 1,000,000 posts ≥ 0.8× its rate at 10,000 (every client count)"]
    assert stats.detail == "0.89× with 16 clients (1,111/s against 1,250/s with 10,000 posts)"
    markdown = markdown_table(full_results())
    assert table_row(markdown, "### API", "GetPost")[4] == "0.50×"
    assert table_row(markdown, "### Targets", "CreatePost ≥ 2,000/s")[1:] == [
        "✅ met",
        "2,500/s with 16 clients",
    ]


def test_targets_not_met_or_not_measured() -> None:
    def api(rpc: str, clients: int, posts: int, per_s: float) -> dict[str, Any]:
        return {"rpc": rpc, "clients": clients, "posts_in_db": posts, "summary": {"per_s": per_s}}

    results: dict[str, Any] = {
        "burst": {
            "n": 10,
            "kairos": summary_json(drain_s=2.1, p50_ms=30.0, duplicates=1),
            "bullmq": summary_json(drain_s=1.0, p50_ms=14.0),
            "seeds": summary_json(drain_s=4.0),
        },
        "steady": {"kairos": summary_json(p50_ms=1.0, p99_ms=50.1, lost=2), "bullmq": None},
        "api": [
            api("GetStats", 16, 10_000, 2000.0),
            api("GetStats", 64, 10_000, 1000.0),
            api("CreatePost", 16, 10_000, 1999.0),
            api("GetPost", 64, 10_000, 3000.0),
            api("GetStats", 16, 1_000_000, 1500.0),
            api("GetStats", 64, 1_000_000, 999.0),
            api("ListPosts", 16, 999_999, 1000.0),
        ],
        "probe": [{"rpc": "empty RPC", "clients": 16, "summary": {"per_s": 4000.0}}],
    }

    judged = {target.name: target for target in judge_targets(results)}

    drain_seeds = judged["Burst drain ≤ 0.5× the seeds' design's"]
    assert (drain_seeds.status, drain_seeds.detail) == (
        "not met",
        "0.53× (Kairos 2.10 s, seeds' design 4.00 s)",
    )
    assert judged["Burst drain ≤ 2.0× bare BullMQ's"].status == "not met"
    assert judged["Burst p50 lateness ≤ 2× bare BullMQ's"].status == "not met"
    assert judged["Steady p99 lateness ≤ bare BullMQ's"].status == "not measured"
    assert judged["Steady p99 lateness ≤ 50 ms"].status == "not met"
    assert judged["CreatePost ≥ 2,000/s"].status == "not met"
    # Only measured with 64 clients: the target names 16.
    assert judged["GetPost (16 clients) ≥ 0.5× the empty RPC"].status == "not measured"
    list_posts = judged["ListPosts at 1,000,000 posts ≥ 0.25× the empty RPC (every client count)"]
    assert (list_posts.status, list_posts.detail) == (
        "not measured",
        "not measured at 1,000,000 posts",
    )
    stats_rate = judged["GetStats at 1,000,000 posts ≥ 1,000/s (every client count)"]
    assert (stats_rate.status, stats_rate.detail) == ("not met", "999/s with 64 clients")
    stats_ratio = judged[
        "GetStats at 1,000,000 posts ≥ 0.8× its rate at 10,000 (every client count)"
    ]
    assert stats_ratio.status == "not met"
    assert stats_ratio.detail.startswith("0.75× with 16 clients")
    exactly_once = judged["Zero duplicates and zero lost posts in every Kairos scenario"]
    assert exactly_once.status == "not met"
    assert "burst: 1 duplicates" in exactly_once.detail
    assert "steady: 0 duplicates, 2 lost" in exactly_once.detail
    assert all(target.status == "not measured" for target in judge_targets({}))
    assert {target.detail for target in judge_targets({})} == {
        "not measured",
        "not measured at 1,000,000 posts",
    }


def test_the_sink_line_states_cpu_per_request_and_headroom() -> None:
    markdown = markdown_table(full_results())

    # 0.5 s CPU / 50,000 requests = 10 µs → 100,000/s on one core.
    assert "The sink answered 30,000 req/s (1 client process) using 10.0 µs" in markdown
    assert "one core's worth is ≈ 100,000 req/s" in markdown


def test_a_saved_json_renders_the_same_markdown_and_a_plot_from_the_sketch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = write_report(full_results(), tmp_path / "run")

    main([str(first.latest_json), "--out", str(tmp_path / "again")])

    again = tmp_path / "again"
    assert (again / "latest.md").read_text() == first.markdown.read_text()
    assert json.loads((again / "latest.json").read_text()) == json.loads(first.json.read_text())
    png = (again / "latest-lateness.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE)
    assert len(png) > 30_000
    assert str(again / "latest.md") in capsys.readouterr().out


def test_to_jsonable_drops_non_finite_numbers() -> None:
    assert to_jsonable({"a": float("nan"), "b": (1.0, float("inf")), "c": Path("/x")}) == {
        "a": None,
        "b": [1.0, None],
        "c": "/x",
    }


def test_the_cpu_table_has_a_column_per_system_and_a_row_per_process() -> None:
    def cpu(us: dict[str, float]) -> dict[str, Any]:
        return {
            "posts": 10,
            "window_s": 1.5,
            "us_per_post": us,
            "total_us_per_post": sum(us.values()),
        }

    results = {
        "burst": {
            "n": 10,
            "kairos": summary_json(drain_s=1.0),
            "kairos_detail": {"cpu": cpu({"api": 100.0, "PostgreSQL backends": 50.0})},
            "bullmq": summary_json(drain_s=1.0),
            "bullmq_detail": {"cpu": cpu({"Node workers": 40.0})},
        }
    }

    markdown = markdown_table(results)

    heading = "### CPU per post during the burst drain"
    assert table_row(markdown, heading, "µs of CPU per post") == [
        "µs of CPU per post",
        "Kairos",
        "BullMQ",
    ]
    assert table_row(markdown, heading, "api") == ["api", "100.0", "—"]
    assert table_row(markdown, heading, "Node workers") == ["Node workers", "—", "40.0"]
    assert table_row(markdown, heading, "total") == ["total", "150.0", "40.0"]
    assert "### CPU" not in markdown_table({"burst": {"n": 10, "kairos": summary_json()}})
