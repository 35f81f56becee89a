"""Statistics of a benchmark run: how late posts arrived, how fast RPCs answered. No I/O.

Percentiles use the nearest-rank definition throughout: the p-th percentile of n sorted values
is the value at rank ⌈p/100 · n⌉ (1-based), and the 0th is the smallest. Every reported
percentile is therefore a value that was actually measured. Statistics of nothing are `None`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: The percentiles kept in the JSON sketch: 0, 1, …, 100.
SKETCH_PERCENTILES = tuple(range(101))


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """The nearest-rank `p`-th percentile (0 ≤ p ≤ 100) of already sorted values."""
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be within 0..100, not {p}")
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class ScenarioSummary:
    """How a scheduled set of posts arrived at the sink."""

    #: Posts scheduled (the keys the sink should see).
    posts: int
    #: Distinct scheduled keys that arrived at least once.
    delivered: int
    #: Scheduled keys that never arrived.
    lost: int
    #: Arrivals of a scheduled key beyond its first.
    duplicates: int
    #: Arrivals whose key was not scheduled in this scenario (not used in any statistic).
    unexpected: int
    #: First arrival minus due time per delivered post, in ms, ascending; negative if early.
    #: Empty when rebuilt from JSON, which keeps only `percentiles_ms`.
    lateness_ms: tuple[float, ...]
    #: Nearest-rank lateness percentiles 0, 1, …, 100 in ms (empty if nothing arrived).
    percentiles_ms: tuple[float, ...]
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    min_ms: float | None
    mean_ms: float | None
    #: Last first-arrival minus the earliest due time, in seconds.
    drain_s: float | None
    #: Delivered posts over the span from first to last first-arrival, per second.
    rate_per_s: float | None

    def to_json(self) -> dict[str, Any]:
        """A small JSON-ready dict: every field but the full lateness list."""
        return {
            "posts": self.posts,
            "delivered": self.delivered,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "unexpected": self.unexpected,
            "p50_ms": _rounded(self.p50_ms),
            "p90_ms": _rounded(self.p90_ms),
            "p99_ms": _rounded(self.p99_ms),
            "max_ms": _rounded(self.max_ms),
            "min_ms": _rounded(self.min_ms),
            "mean_ms": _rounded(self.mean_ms),
            "drain_s": _rounded(self.drain_s, 4),
            "rate_per_s": _rounded(self.rate_per_s, 1),
            "percentiles_ms": [round(value, 3) for value in self.percentiles_ms],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ScenarioSummary:
        """Rebuild a summary written by `to_json` (without the full lateness list)."""
        return cls(
            posts=int(data["posts"]),
            delivered=int(data["delivered"]),
            lost=int(data["lost"]),
            duplicates=int(data["duplicates"]),
            unexpected=int(data.get("unexpected", 0)),
            lateness_ms=(),
            percentiles_ms=tuple(float(value) for value in data.get("percentiles_ms", [])),
            p50_ms=_optional_float(data.get("p50_ms")),
            p90_ms=_optional_float(data.get("p90_ms")),
            p99_ms=_optional_float(data.get("p99_ms")),
            max_ms=_optional_float(data.get("max_ms")),
            min_ms=_optional_float(data.get("min_ms")),
            mean_ms=_optional_float(data.get("mean_ms")),
            drain_s=_optional_float(data.get("drain_s")),
            rate_per_s=_optional_float(data.get("rate_per_s")),
        )


def summarize(expected: Mapping[str, int], arrivals: Sequence[tuple[str, int]]) -> ScenarioSummary:
    """Compare what was scheduled (key → due ns since the epoch) with what the sink recorded
    (`(key, arrival ns)` pairs); a post's lateness is its earliest arrival minus its due time."""
    first_arrival: dict[str, int] = {}
    duplicates = 0
    unexpected = 0
    for key, arrived_ns in arrivals:
        if key not in expected:
            unexpected += 1
            continue
        earlier = first_arrival.get(key)
        if earlier is None:
            first_arrival[key] = arrived_ns
            continue
        duplicates += 1
        if arrived_ns < earlier:
            first_arrival[key] = arrived_ns
    lateness = tuple(
        sorted((arrived_ns - expected[key]) / 1e6 for key, arrived_ns in first_arrival.items())
    )
    delivered = len(first_arrival)
    drain_s: float | None = None
    rate_per_s: float | None = None
    if first_arrival:
        first_ns = min(first_arrival.values())
        last_ns = max(first_arrival.values())
        drain_s = (last_ns - min(expected.values())) / 1e9
        if last_ns > first_ns:
            rate_per_s = delivered / ((last_ns - first_ns) / 1e9)
    return ScenarioSummary(
        posts=len(expected),
        delivered=delivered,
        lost=len(expected) - delivered,
        duplicates=duplicates,
        unexpected=unexpected,
        lateness_ms=lateness,
        percentiles_ms=tuple(
            value
            for value in (percentile(lateness, p) for p in SKETCH_PERCENTILES)
            if value is not None
        ),
        p50_ms=percentile(lateness, 50),
        p90_ms=percentile(lateness, 90),
        p99_ms=percentile(lateness, 99),
        max_ms=lateness[-1] if lateness else None,
        min_ms=lateness[0] if lateness else None,
        mean_ms=math.fsum(lateness) / len(lateness) if lateness else None,
        drain_s=drain_s,
        rate_per_s=rate_per_s,
    )


@dataclass(frozen=True)
class LatencySummary:
    """How an RPC benchmark went: calls made and how long they took."""

    #: Calls that completed.
    calls: int
    #: Wall-clock seconds the calls took, all clients together.
    seconds: float
    #: Calls per second (None when no time elapsed).
    per_s: float | None
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    mean_ms: float | None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return {
            "calls": self.calls,
            "seconds": round(self.seconds, 4),
            "per_s": _rounded(self.per_s, 1),
            "p50_ms": _rounded(self.p50_ms),
            "p90_ms": _rounded(self.p90_ms),
            "p99_ms": _rounded(self.p99_ms),
            "max_ms": _rounded(self.max_ms),
            "mean_ms": _rounded(self.mean_ms),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LatencySummary:
        """Rebuild a summary written by `to_json`."""
        return cls(
            calls=int(data["calls"]),
            seconds=float(data.get("seconds", 0.0)),
            per_s=_optional_float(data.get("per_s")),
            p50_ms=_optional_float(data.get("p50_ms")),
            p90_ms=_optional_float(data.get("p90_ms")),
            p99_ms=_optional_float(data.get("p99_ms")),
            max_ms=_optional_float(data.get("max_ms")),
            mean_ms=_optional_float(data.get("mean_ms")),
        )


def latency_summary(samples_ms: Sequence[float], seconds: float) -> LatencySummary:
    """Summarize per-call latencies (ms) of calls that together took `seconds` of wall time."""
    ordered = sorted(samples_ms)
    return LatencySummary(
        calls=len(ordered),
        seconds=seconds,
        per_s=len(ordered) / seconds if seconds > 0 else None,
        p50_ms=percentile(ordered, 50),
        p90_ms=percentile(ordered, 90),
        p99_ms=percentile(ordered, 99),
        max_ms=ordered[-1] if ordered else None,
        mean_ms=math.fsum(ordered) / len(ordered) if ordered else None,
    )
