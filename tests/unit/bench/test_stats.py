"""Lateness and latency statistics of the benchmark, checked against hand-computed values."""

from __future__ import annotations

import pytest

from kairos_bench.stats import (
    LatencySummary,
    ScenarioSummary,
    latency_summary,
    percentile,
    summarize,
)

DUE = 1_800_000_000_000_000_000
MS = 1_000_000


def test_lateness_percentiles_use_nearest_rank() -> None:
    expected = {f"k{i}": DUE for i in range(1, 11)}
    # Arrivals in scrambled order, k_i exactly i ms late.
    arrivals = [(f"k{i}", DUE + i * MS) for i in (3, 10, 1, 7, 2, 9, 4, 8, 6, 5)]

    summary = summarize(expected, arrivals)

    assert summary.lateness_ms == tuple(float(i) for i in range(1, 11))
    assert summary.p50_ms == 5.0  # rank ⌈0.5·10⌉ = 5
    assert summary.p90_ms == 9.0  # rank ⌈0.9·10⌉ = 9
    assert summary.p99_ms == 10.0  # rank ⌈0.99·10⌉ = 10
    assert (summary.min_ms, summary.max_ms, summary.mean_ms) == (1.0, 10.0, 5.5)
    assert summary.drain_s == pytest.approx(0.010)
    assert summary.rate_per_s == pytest.approx(10 / 0.009)
    assert (summary.posts, summary.delivered, summary.lost) == (10, 10, 0)
    assert (summary.duplicates, summary.unexpected) == (0, 0)


def test_duplicates_lost_and_unexpected_keys_are_counted_apart() -> None:
    expected = {"a": DUE, "b": DUE, "c": DUE, "d": DUE}
    arrivals = [
        ("a", DUE + 4 * MS),
        ("a", DUE + 9 * MS),
        ("b", DUE + 6 * MS),
        ("stranger", DUE + 1 * MS),
        ("a", DUE + 2 * MS),  # a repeat recorded out of order: the earliest arrival counts
        ("stranger", DUE + 3 * MS),
        ("c", DUE + 8 * MS),
    ]

    summary = summarize(expected, arrivals)

    assert (summary.posts, summary.delivered, summary.lost) == (4, 3, 1)
    assert summary.duplicates == 2
    assert summary.unexpected == 2
    assert summary.lateness_ms == (2.0, 6.0, 8.0)
    assert summary.drain_s == pytest.approx(0.008)


def test_early_arrivals_have_negative_lateness_and_drain_counts_from_the_earliest_due() -> None:
    expected = {"early": DUE + 10 * MS, "late": DUE + 20 * MS, "first": DUE}
    arrivals = [("first", DUE + 1 * MS), ("early", DUE + 5 * MS), ("late", DUE + 50 * MS)]

    summary = summarize(expected, arrivals)

    assert summary.lateness_ms == (-5.0, 1.0, 30.0)
    assert summary.min_ms == -5.0
    assert summary.p50_ms == 1.0
    assert summary.drain_s == pytest.approx(0.050)


def test_nothing_arrived() -> None:
    summary = summarize({"a": DUE, "b": DUE}, [("other", DUE)])

    assert (summary.posts, summary.delivered, summary.lost, summary.unexpected) == (2, 0, 2, 1)
    assert summary.lateness_ms == ()
    assert summary.percentiles_ms == ()
    for value in (summary.p50_ms, summary.p99_ms, summary.max_ms, summary.mean_ms):
        assert value is None
    assert summary.drain_s is None
    assert summary.rate_per_s is None
    assert summary.to_json()["percentiles_ms"] == []
    assert summarize({}, []).posts == 0


def test_a_single_delivery_has_no_rate() -> None:
    summary = summarize({"a": DUE}, [("a", DUE + 3 * MS)])

    assert summary.rate_per_s is None
    assert summary.drain_s == pytest.approx(0.003)
    assert summary.p50_ms == summary.p99_ms == 3.0


def test_json_keeps_a_percentile_sketch_instead_of_every_value() -> None:
    expected = {f"k{i}": DUE for i in range(1000)}
    arrivals = [(f"k{i}", DUE + i * MS // 10) for i in range(1000)]  # 0.0, 0.1, … 99.9 ms

    summary = summarize(expected, arrivals)
    data = summary.to_json()

    assert "lateness_ms" not in data
    assert len(data["percentiles_ms"]) == 101
    assert data["percentiles_ms"][0] == 0.0
    assert data["percentiles_ms"][50] == data["p50_ms"] == pytest.approx(49.9)
    assert data["percentiles_ms"][100] == data["max_ms"] == pytest.approx(99.9)
    rebuilt = ScenarioSummary.from_json(data)
    assert rebuilt.lateness_ms == ()
    assert rebuilt.p99_ms == pytest.approx(summary.p99_ms)
    assert rebuilt.to_json() == data


def test_percentile_rejects_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"within 0\.\.100"):
        percentile([1.0], 101)
    assert percentile([], 50) is None
    assert percentile([7.0, 8.0], 0) == 7.0


def test_latency_summary() -> None:
    summary = latency_summary([4.0, 1.0, 3.0, 2.0], seconds=2.0)

    assert summary.calls == 4
    assert summary.per_s == 2.0
    assert summary.p50_ms == 2.0  # rank 2 of 4
    assert summary.p99_ms == 4.0
    assert summary.max_ms == 4.0
    assert summary.mean_ms == 2.5
    assert LatencySummary.from_json(summary.to_json()) == summary


def test_latency_summary_of_nothing() -> None:
    summary = latency_summary([], seconds=0.0)

    assert summary.calls == 0
    assert summary.per_s is None
    assert summary.p99_ms is None
    assert summary.to_json()["p50_ms"] is None
