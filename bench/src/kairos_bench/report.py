"""The benchmark report: one run's results as JSON, a markdown page and a lateness plot.

`write_report(results, out_dir)` writes `<stamp>.json`, `<stamp>.md` and `<stamp>-lateness.png`
(stamp: the run's start, e.g. `2026-11-25T1230Z`) and the same three as `latest.*`; a `--quick`
run writes `quick-<stamp>.*` and `quick-latest.*` so it never replaces a full run's latest.
Every file is written to a temporary name and renamed into place.

The results mapping the harness builds (any scenario may be absent or None; summaries may be
`ScenarioSummary` / `LatencySummary` instances or their `to_json()` dicts, so a saved JSON can be
rendered again with `python -m kairos_bench.report results.json [--out DIR]`)::

    {
      "meta": {"started_at": iso str, "finished_at": iso str, "quick": bool, "command": str,
               "machine": {"cpu": str, "cores": int, "memory_gib": float, "os": str},
               "versions": {"python": str, "postgresql": str, "nats_server": str, "redis": str,
                            "node": str, "bullmq": str, "kairos": str, "grpcio": str},
               "settings": {str: str | int | float}},
      "sink": {"requests": int, "per_s": float, "clients": int, "sink_cpu_seconds": float},
      "burst": {"n": int, "kairos": ScenarioSummary, "bullmq": ScenarioSummary | None,
                "seeds": ScenarioSummary | None,
                "<system>_detail": {..., "cpu": {"posts": int, "window_s": float,
                                                 "us_per_post": {process: float},
                                                 "total_us_per_post": float}}},
      "steady": {"rate_per_s": int, "seconds": float, "kairos": ScenarioSummary,
                 "bullmq": ScenarioSummary | None, "seeds": ScenarioSummary | None},
      "api": [{"rpc": str, "clients": int, "posts_in_db": int, "summary": LatencySummary}, ...],
      "probe": [{"rpc": "empty RPC", "clients": int, "summary": LatencySummary}, ...],
      "scale": {"stored_future_posts": int, "n": int, "kairos": ScenarioSummary,
                "claim_ms": {"p50": float, "p99": float, "max": float, "samples": int} | None,
                "claim_ms_empty": {...} | None,
                "publisher_rss_mib": {"start": float, "peak": float, "end": float} | None,
                "publisher_rss_mib_empty": {...} | None},
      "profile": {...},          # optional, shown as JSON
      "errors": [str, ...],      # scenarios that failed and why
    }

Lateness is "first arrival at the sink minus the post's due time"; see `kairos_bench.stats`.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from kairos_bench import bullmq
from kairos_bench.stats import ScenarioSummary

Status = Literal["met", "not met", "not measured"]

#: ListPosts and GetStats are judged only when the table held at least this many posts.
JUDGED_AT_POSTS = 1_000_000
#: Points drawn per CDF curve; longer lateness lists are sampled at evenly spaced ranks.
CURVE_POINTS = 2000

_DASH = "—"


@dataclass(frozen=True)
class ReportFiles:
    """Where `write_report` put the run's files."""

    json: Path
    markdown: Path
    plot: Path
    latest_json: Path
    latest_markdown: Path
    latest_plot: Path


@dataclass(frozen=True)
class Target:
    """One goal from the issue, judged from the numbers."""

    name: str
    status: Status
    #: The numbers behind the verdict.
    detail: str


# --- JSON -----------------------------------------------------------------------------------


def to_jsonable(value: Any) -> Any:
    """`value` as plain JSON types: summaries via `to_json()`, NaN and infinities as None."""
    to_json = getattr(value, "to_json", None)
    if callable(to_json):
        return to_jsonable(to_json())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def _section(data: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    section = data.get(name)
    return section if isinstance(section, dict) else None


def _summary(section: Mapping[str, Any] | None, name: str) -> dict[str, Any] | None:
    if section is None:
        return None
    summary = section.get(name)
    return summary if isinstance(summary, dict) else None


def _value(summary: Mapping[str, Any] | None, name: str) -> Any:
    return None if summary is None else summary.get(name)


# --- number formatting ----------------------------------------------------------------------


def _ms(value: Any) -> str:
    return _DASH if value is None else f"{value:,.1f}"


def _seconds(value: Any) -> str:
    return _DASH if value is None else f"{value:,.2f}"


def _count(value: Any) -> str:
    return _DASH if value is None else f"{round(value):,}"


def _ratio(numerator: Any, denominator: Any) -> str:
    if numerator is None or denominator is None or denominator <= 0:
        return _DASH
    return f"{numerator / denominator:.2f}×"


def _plural(count: Any, one: str, many: str) -> str:
    return f"{_count(count)} {one if count == 1 else many}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], *, numbers: bool = True) -> str:
    """A markdown table; the first column is left-aligned, the others right-aligned when they
    hold `numbers`."""
    other = "---:" if numbers else ":---"
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join([":---"] + [other] * (len(header) - 1)) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# --- targets --------------------------------------------------------------------------------


def _judge(
    name: str,
    value: float | None,
    detail: str,
    *,
    at_most: float | None = None,
    at_least: float | None = None,
) -> Target:
    """`value` (a ratio or a rate) against its limit; `detail` shows the numbers behind it."""
    if value is None:
        return Target(name, "not measured", detail or "not measured")
    met = (at_most is None or value <= at_most) and (at_least is None or value >= at_least)
    return Target(name, "met" if met else "not met", detail)


def _quotient(numerator: Any, denominator: Any) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return float(numerator) / float(denominator)


def judge_targets(results: Mapping[str, Any]) -> list[Target]:
    """Issue 13's targets, each met / not met / not measured, from ratios within the run."""
    data = to_jsonable(results)
    targets: list[Target] = []

    # (name, scenario, field, peer, at most this many times the peer's)
    versus_peers = [
        ("Burst drain ≤ 0.5× the seeds' design's", "burst", "drain_s", "seeds", 0.5),
        ("Burst drain ≤ 2.0× bare BullMQ's", "burst", "drain_s", "bullmq", 2.0),
        ("Burst p50 lateness ≤ 2× bare BullMQ's", "burst", "p50_ms", "bullmq", 2.0),
        ("Steady p99 lateness ≤ bare BullMQ's", "steady", "p99_ms", "bullmq", 1.0),
    ]
    for name, scenario, field, peer, limit in versus_peers:
        section = _section(data, scenario)
        mine, theirs = (
            _value(_summary(section, "kairos"), field),
            _value(_summary(section, peer), field),
        )
        ratio = _quotient(mine, theirs)
        show, unit = (_seconds, "s") if field == "drain_s" else (_ms, "ms")
        detail = "" if ratio is None else (
            f"{ratio:.2f}× (Kairos {show(mine)} {unit}, {PEERS[peer]} {show(theirs)} {unit})"
        )  # fmt: skip
        targets.append(_judge(name, ratio, detail, at_most=limit))

    steady_kairos = _summary(_section(data, "steady"), "kairos")
    steady_p99 = _value(steady_kairos, "p99_ms")
    targets.append(
        _judge(
            "Steady p99 lateness ≤ 50 ms",
            steady_p99,
            "" if steady_p99 is None else f"{_ms(steady_p99)} ms",
            at_most=50.0,
        )
    )

    api = _rows(data, "api")
    empty = empty_rpc_rates(data)

    def rows(rpc: str, posts: int = 0) -> list[dict[str, Any]]:
        found = [entry for entry in api if entry.get("rpc") == rpc]
        return [entry for entry in found if (entry.get("posts_in_db") or 0) >= posts]

    creates = [(rate, row) for row in rows("CreatePost") if (rate := _rate(row)) is not None]
    best = max(creates, key=lambda pair: pair[0], default=None)
    targets.append(
        _judge(
            "CreatePost ≥ 2,000/s",
            None if best is None else best[0],
            "" if best is None else f"{_count(best[0])}/s with {best[1].get('clients')} clients",
            at_least=2000,
        )
    )

    def fraction_of_empty(row: Mapping[str, Any]) -> tuple[float | None, str]:
        rate, reference = _rate(row), empty.get(row.get("clients") or 0)
        fraction = _quotient(rate, reference)
        detail = f"{_count(rate)}/s, empty RPC {_count(reference)}/s"
        return fraction, f"{fraction:.2f}× ({detail})" if fraction is not None else ""

    get_16 = [row for row in rows("GetPost") if row.get("clients") == 16]
    fraction, detail = fraction_of_empty(get_16[0]) if get_16 else (None, "")
    targets.append(
        _judge("GetPost (16 clients) ≥ 0.5× the empty RPC", fraction, detail, at_least=0.5)
    )

    at_1m = "not measured at 1,000,000 posts"
    fractions = [fraction_of_empty(row) for row in rows("ListPosts", JUDGED_AT_POSTS)]
    targets.append(
        _judge(
            "ListPosts at 1,000,000 posts ≥ 0.25× the empty RPC (every client count)",
            *_worst(fractions, at_1m),
            at_least=0.25,
        )
    )

    stats_big = rows("GetStats", JUDGED_AT_POSTS)
    rates = [(_rate(row), f"{_count(_rate(row))}/s with {row.get('clients')} clients")
             for row in stats_big]  # fmt: skip
    targets.append(
        _judge(
            "GetStats at 1,000,000 posts ≥ 1,000/s (every client count)",
            *_worst(rates, at_1m),
            at_least=1000,
        )
    )
    stats = rows("GetStats")
    fewest = min((row.get("posts_in_db") or 0 for row in stats), default=0)
    small = {row.get("clients"): _rate(row) for row in stats if row.get("posts_in_db") == fewest}
    ratios: list[tuple[float | None, str]] = []
    for row in stats_big:
        rate, reference = _rate(row), small.get(row.get("clients"))
        ratio = _quotient(rate, reference)
        if ratio is not None:
            detail = (
                f"{ratio:.2f}× with {row.get('clients')} clients ({_count(rate)}/s against"
                f" {_count(reference)}/s with {_count(fewest)} posts)"
            )
            ratios.append((ratio, detail))
    targets.append(
        _judge(
            "GetStats at 1,000,000 posts ≥ 0.8× its rate at 10,000 (every client count)",
            *_worst(ratios, at_1m),
            at_least=0.8,
        )
    )

    targets.append(_exactly_once(data))
    return targets


def _worst(
    measured: Sequence[tuple[float | None, str]], unmeasured: str
) -> tuple[float | None, str]:
    """The lowest value with its detail (a target judged at every client count), or None and
    `unmeasured`."""
    known = [(value, detail) for value, detail in measured if value is not None]
    return min(known, key=lambda pair: pair[0]) if known else (None, unmeasured)


def _exactly_once(data: Mapping[str, Any]) -> Target:
    name = "Zero duplicates and zero lost posts in every Kairos scenario"
    checked: list[str] = []
    faults: list[str] = []
    for scenario in ("burst", "steady", "scale"):
        summary = _summary(_section(data, scenario), "kairos")
        if summary is None:
            continue
        checked.append(scenario)
        duplicates, lost = summary.get("duplicates", 0), summary.get("lost", 0)
        if duplicates or lost:
            faults.append(f"{scenario}: {duplicates:,} duplicates, {lost:,} lost")
    if not checked:
        return Target(name, "not measured", "not measured")
    if faults:
        return Target(name, "not met", "; ".join(faults))
    return Target(name, "met", "checked " + ", ".join(checked))


# --- markdown -------------------------------------------------------------------------------


def _scenario_row(label: str, summary: Mapping[str, Any], percentiles: Sequence[str]) -> list[str]:
    return [
        label,
        _count(summary.get("posts")),
        _seconds(summary.get("drain_s")),
        _count(summary.get("rate_per_s")),
        *(_ms(summary.get(f"{name}_ms")) for name in percentiles),
        _count(summary.get("duplicates")),
        _count(summary.get("lost")),
    ]


#: The peers, by their key in a scenario's results, and their name in the report.
PEERS = {peer.key: peer.label for peer in bullmq.PEERS}


def _comparison(section: Mapping[str, Any], percentiles: Sequence[str]) -> list[str]:
    header = ["", "posts", "drain s", "rate/s"]
    header += [f"{name} ms" for name in percentiles] + ["duplicates", "lost"]
    kairos = _summary(section, "kairos")
    peers = {label: _summary(section, key) for key, label in PEERS.items()}
    rows: list[list[str]] = []
    if kairos is not None:
        rows.append(_scenario_row("Kairos", kairos, percentiles))
    for label, peer in peers.items():
        if peer is not None:
            rows.append(_scenario_row(label, peer, percentiles))
    for label, peer in peers.items():
        if kairos is not None and peer is not None:
            ratios = [
                _ratio(kairos.get(f"{name}_ms"), peer.get(f"{name}_ms")) for name in percentiles
            ]
            drain_ratio = _ratio(kairos.get("drain_s"), peer.get("drain_s"))
            rows.append([f"Kairos / {label}", "", drain_ratio, "", *ratios, "", ""])
    lines = [_table(header, rows)] if rows else ["No results."]
    missing = [label for label, peer in peers.items() if peer is None]
    if missing:
        lines.append(f"\nNot run: {', '.join(missing)}.")
    return lines


def _burst_markdown(data: Mapping[str, Any]) -> list[str]:
    burst = _section(data, "burst")
    if burst is None:
        return []
    lines = [f"### Burst: {_count(burst.get('n'))} posts due at the same instant", ""]
    lines += _comparison(burst, ("p50", "p90", "p99", "max"))
    return lines


def _steady_markdown(data: Mapping[str, Any]) -> list[str]:
    steady = _section(data, "steady")
    if steady is None:
        return []
    title = (
        f"### Steady: {_count(steady.get('rate_per_s'))} posts/s"
        f" for {_seconds(steady.get('seconds'))} s"
    )
    return [title, "", *_comparison(steady, ("p50", "p99", "max"))]


def _rows(data: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
    """The entries of a list section (api, probe) that have a summary."""
    return [
        entry
        for entry in data.get(name) or []
        if isinstance(entry, dict) and isinstance(entry.get("summary"), dict)
    ]


def _rate(entry: Mapping[str, Any]) -> float | None:
    rate = entry["summary"].get("per_s")
    return None if rate is None else float(rate)


def empty_rpc_rates(data: Mapping[str, Any]) -> dict[int, float]:
    """The empty-RPC probe's calls/s by client count."""
    return {
        int(entry["clients"]): rate
        for entry in _rows(data, "probe")
        if (rate := _rate(entry)) is not None and entry.get("clients") is not None
    }


def cpu_profiles(data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The burst's CPU profiles (`kairos_bench.cpu`) by system name: Kairos and each peer."""
    burst = _section(data, "burst") or {}
    profiles = {}
    for key, label in {"kairos": "Kairos", **PEERS}.items():
        detail = burst.get(f"{key}_detail")
        profile = detail.get("cpu") if isinstance(detail, dict) else None
        if isinstance(profile, dict) and isinstance(profile.get("us_per_post"), dict):
            profiles[label] = profile
    return profiles


def _cpu_markdown(data: Mapping[str, Any]) -> list[str]:
    profiles = cpu_profiles(data)
    if not profiles:
        return []
    processes: dict[str, None] = {}
    for profile in profiles.values():
        processes |= dict.fromkeys(profile["us_per_post"])
    rows = [
        [name, *(_ms(profile["us_per_post"].get(name)) for profile in profiles.values())]
        for name in processes
    ]
    rows.append(
        ["total", *(_ms(profile.get("total_us_per_post")) for profile in profiles.values())]
    )
    rows.append(["drain window s", *(_seconds(p.get("window_s")) for p in profiles.values())])
    lines = ["### CPU per post during the burst drain", ""]
    lines.append(_table(["µs of CPU per post", *profiles], rows))
    lines += [
        "",
        "User + system CPU time of each process (`/proc/<pid>/stat`) from the due instant until"
        " the last post reached the sink, divided by the posts; PostgreSQL backends are those"
        " connected to the run's own database.",
    ]
    return lines


def _api_markdown(data: Mapping[str, Any]) -> list[str]:
    probe, entries = _rows(data, "probe"), _rows(data, "api")
    if not entries and not probe:
        return []
    empty = empty_rpc_rates(data)
    rows = []
    for entry in probe + entries:
        summary = entry["summary"]
        rows.append(
            [
                str(entry.get("rpc", "?")),
                _count(entry.get("clients")),
                _count(entry.get("posts_in_db")) if entry in entries else "",
                _count(summary.get("per_s")),
                _ratio(summary.get("per_s"), empty.get(entry.get("clients") or 0)),
                _ms(summary.get("p50_ms")),
                _ms(summary.get("p99_ms")),
            ]
        )
    header = ["RPC", "clients", "posts in db", "calls/s", "÷ empty RPC", "p50 ms", "p99 ms"]
    lines = ["### API", "", _table(header, rows)]
    if probe:
        lines += [
            "",
            "The empty RPC is a no-op unary call served and called as Kairos serves and calls"
            " its own (`kairos_bench.probe`); each api rate is divided by its rate with as many"
            " clients.",
        ]
    else:
        lines += ["", "Empty-RPC probe not run."]
    return lines


def _scale_markdown(data: Mapping[str, Any]) -> list[str]:
    scale = _section(data, "scale")
    if scale is None:
        return []
    stored = _count(scale.get("stored_future_posts"))
    lines = [f"### Scale: {_count(scale.get('n'))} posts due at once, {stored} future posts stored"]
    lines.append("")
    claim = scale.get("claim_ms") or {}
    claim_empty = scale.get("claim_ms_empty") or {}
    rss = scale.get("publisher_rss_mib") or {}
    rss_empty = scale.get("publisher_rss_mib_empty") or {}
    rows = [
        [f"claim {name} ms", _ms(claim.get(name)), _ms(claim_empty.get(name))]
        for name in ("p50", "p99", "max")
    ]
    rows.append(["claim samples", _count(claim.get("samples")), _count(claim_empty.get("samples"))])
    rows += [
        [f"publisher RSS {name} MiB", _ms(rss.get(name)), _ms(rss_empty.get(name))]
        for name in ("start", "peak", "end")
    ]
    lines += [_table(["", f"{stored} stored", "empty table"], rows), ""]
    kairos = _summary(scale, "kairos")
    if kairos is not None:
        percentiles = ("p50", "p90", "p99", "max")
        header = ["", "posts", "drain s", "rate/s"]
        header += [f"{name} ms" for name in percentiles] + ["duplicates", "lost"]
        lines.append(_table(header, [_scenario_row("Kairos", kairos, percentiles)]))
    return lines


def _fastest_rate(data: Mapping[str, Any]) -> float | None:
    rates = []
    for scenario in ("burst", "steady", "scale"):
        for system in ("kairos", *PEERS):
            summary = _summary(_section(data, scenario), system)
            if summary is not None and summary.get("rate_per_s") is not None:
                rates.append(float(summary["rate_per_s"]))
    return max(rates) if rates else None


def _sink_markdown(data: Mapping[str, Any]) -> list[str]:
    sink = _section(data, "sink")
    if sink is None or not sink.get("requests"):
        return ["### Sink", "", "Sink capacity not measured."]
    cpu_us = sink.get("sink_cpu_seconds", 0.0) / sink["requests"] * 1e6
    line = (
        f"The sink answered {_count(sink.get('per_s'))} req/s"
        f" ({_plural(sink.get('clients'), 'client process', 'client processes')})"
        f" using {cpu_us:,.1f} µs of its CPU per request"
    )
    fastest = _fastest_rate(data)
    if cpu_us > 0:
        one_core = 1e6 / cpu_us
        line += f"; one core's worth is ≈ {_count(one_core)} req/s"
        if fastest:
            line += (
                f", i.e. {one_core / fastest:,.1f}× the fastest delivery rate measured"
                f" ({_count(fastest)}/s)"
            )
    return ["### Sink", "", line + "."]


def _targets_markdown(data: Mapping[str, Any]) -> list[str]:
    marks = {"met": "✅ met", "not met": "❌ not met", "not measured": "— not measured"}
    rows = [[target.name, marks[target.status], target.detail] for target in judge_targets(data)]
    return ["### Targets", "", _table(["target", "result", "measured"], rows, numbers=False)]


def markdown_table(results: Mapping[str, Any]) -> str:
    """The results sections (burst, steady, API, scale, sink, targets) as markdown."""
    data = to_jsonable(results)
    parts = [
        _burst_markdown(data),
        _steady_markdown(data),
        _cpu_markdown(data),
        _api_markdown(data),
        _scale_markdown(data),
        _sink_markdown(data),
        _targets_markdown(data),
    ]
    return "\n\n".join("\n".join(part) for part in parts if part) + "\n"


def _started(meta: Mapping[str, Any]) -> datetime:
    raw = meta.get("started_at")
    try:
        started = datetime.fromisoformat(str(raw))
    except ValueError:
        return datetime.now(UTC)
    return started.replace(tzinfo=UTC) if started.tzinfo is None else started.astimezone(UTC)


def render_markdown(results: Mapping[str, Any]) -> str:
    """The whole report page."""
    data = to_jsonable(results)
    meta = data.get("meta") or {}
    started = _started(meta)
    title = f"# Kairos benchmark, {started:%Y-%m-%d %H:%M} UTC"
    if meta.get("quick"):
        title += " (quick run)"
    lines = [title, ""]
    if meta.get("command"):
        lines.append(f"Command: `{meta['command']}`")
    lines.append(
        f"Started {meta.get('started_at', _DASH)}, finished {meta.get('finished_at', _DASH)}."
    )
    machine = meta.get("machine") or {}
    lines += ["", "## Machine and versions", ""]
    memory = machine.get("memory_gib")
    lines.append(
        f"{machine.get('cpu', 'unknown CPU')}, {machine.get('cores', '?')} cores,"
        f" {_DASH if memory is None else f'{memory:,.1f}'} GiB memory,"
        f" {machine.get('os', 'unknown OS')}."
    )
    versions = meta.get("versions") or {}
    if versions:
        rows = [[name, str(version)] for name, version in versions.items()]
        lines += ["", _table(["component", "version"], rows, numbers=False)]
    errors = [str(error) for error in data.get("errors") or []]
    if errors:
        lines += ["", "## Errors", ""] + [f"- {error}" for error in errors]
    lines += ["", "## Results", "", markdown_table(data).rstrip()]
    settings = meta.get("settings") or {}
    if settings:
        settings_rows = [[f"`{key}`", f"`{value}`"] for key, value in sorted(settings.items())]
        lines += ["", "## Settings", "", _table(["setting", "value"], settings_rows, numbers=False)]
    if data.get("profile"):
        profile = json.dumps(data["profile"], indent=2)
        lines += ["", "## Profile", "", "```json", profile, "```"]
    return "\n".join(lines) + "\n"


# --- plot -----------------------------------------------------------------------------------

_KAIROS_COLOUR = "#1f6fb4"
_BULLMQ_COLOUR = "#d0412b"
_SEEDS_COLOUR = "#8e44ad"
_SCALE_COLOUR = "#2b9348"


@dataclass(frozen=True)
class _Curve:
    label: str
    colour: str
    dashed: bool
    lateness_ms: list[float]
    fraction: list[float]
    p50_ms: float | None
    p99_ms: float | None
    #: Fraction delivered at the p50 and p99 markers.
    delivered: float


def _curve(label: str, summary: Any, colour: str, *, dashed: bool = False) -> _Curve | None:
    """An empirical CDF: the full lateness list when there is one, else the percentile sketch."""
    if summary is None:
        return None
    if isinstance(summary, ScenarioSummary):
        full = summary
    elif isinstance(summary, Mapping):
        full = ScenarioSummary.from_json(summary)
    else:
        return None
    if not full.delivered or not full.posts:
        return None
    delivered = full.delivered / full.posts
    if full.lateness_ms:
        count = len(full.lateness_ms)
        points = min(count, CURVE_POINTS)
        ranks = sorted({round(i * (count - 1) / max(points - 1, 1)) for i in range(points)})
        xs = [full.lateness_ms[rank] for rank in ranks]
        ys = [(rank + 1) / full.posts for rank in ranks]
    elif full.percentiles_ms:
        xs = list(full.percentiles_ms)
        ys = [p / (len(xs) - 1) * delivered for p in range(len(xs))]
    else:
        return None
    return _Curve(label, colour, dashed, xs, ys, full.p50_ms, full.p99_ms, delivered)


def _draw_panel(axes: Axes, title: str, curves: list[_Curve]) -> None:
    axes.set_title(title)
    if not curves:
        axes.text(0.5, 0.5, "not measured", ha="center", va="center", transform=axes.transAxes)
        axes.set_axis_off()
        return
    smallest = min(min(curve.lateness_ms) for curve in curves)
    if smallest > 0:
        axes.set_xscale("log")
        scale = "log"
    else:
        # Early or on-the-millisecond arrivals: linear around zero, logarithmic beyond 1 ms.
        axes.set_xscale("symlog", linthresh=1.0)
        scale = "symlog"
    for curve in curves:
        colour = curve.colour
        style = "--" if curve.dashed else "-"
        label = f"{curve.label}: p50 {_ms(curve.p50_ms)} ms, p99 {_ms(curve.p99_ms)} ms"
        axes.plot(
            curve.lateness_ms,
            curve.fraction,
            drawstyle="steps-post",
            color=colour,
            linestyle=style,
            linewidth=1.8,
            label=label,
        )
        for value, share, marker in ((curve.p50_ms, 0.5, "o"), (curve.p99_ms, 0.99, "D")):
            if value is not None:
                axes.plot([value], [share * curve.delivered], marker=marker, color=colour, ms=7)
    # Plain numbers (5, 20, 1000) read better than 2×10⁰; minor ticks stay unlabelled.
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.6g}"))
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.set_xlabel(f"lateness at the sink (ms, {scale} scale)")
    axes.set_ylabel("fraction of posts delivered")
    axes.set_ylim(0, 1.02)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="upper left", fontsize=9, title="● p50   ◆ p99", title_fontsize=9)


def render_plot(results: Mapping[str, Any]) -> bytes:
    """Lateness CDFs, Kairos vs BullMQ, for the burst and steady scenarios, as PNG bytes."""
    burst = results.get("burst") or {}
    steady = results.get("steady") or {}
    scale = results.get("scale") or {}
    figure = Figure(figsize=(14, 6), dpi=100)
    FigureCanvasAgg(figure)
    burst_axes, steady_axes = figure.subplots(1, 2)
    stored = _count(scale.get("stored_future_posts"))
    burst_curves = [
        _curve("Kairos", burst.get("kairos"), _KAIROS_COLOUR),
        _curve("BullMQ", burst.get("bullmq"), _BULLMQ_COLOUR),
        _curve("seeds' design", burst.get("seeds"), _SEEDS_COLOUR),
        _curve(f"Kairos, {stored} stored", scale.get("kairos"), _SCALE_COLOUR, dashed=True),
    ]
    steady_curves = [
        _curve("Kairos", steady.get("kairos"), _KAIROS_COLOUR),
        _curve("BullMQ", steady.get("bullmq"), _BULLMQ_COLOUR),
        _curve("seeds' design", steady.get("seeds"), _SEEDS_COLOUR),
    ]
    burst_title = f"Burst: {_count(burst.get('n'))} posts due at once" if burst else "Burst"
    if scale.get("kairos") is not None:
        burst_title += f" (dashed: {_count(scale.get('n'))} with {stored} future posts stored)"
    steady_title = "Steady"
    if steady:
        steady_title += f": {_count(steady.get('rate_per_s'))} posts/s"
        steady_title += f" for {_seconds(steady.get('seconds'))} s"
    _draw_panel(burst_axes, burst_title, [curve for curve in burst_curves if curve])
    _draw_panel(steady_axes, steady_title, [curve for curve in steady_curves if curve])
    started = _started(results.get("meta") or {})
    figure.suptitle(f"Kairos and its peers: how late posts reach the platform ({started:%Y-%m-%d})")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


# --- files ----------------------------------------------------------------------------------


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_report(results: Mapping[str, Any], out_dir: Path) -> ReportFiles:
    """Write the run's JSON, markdown and plot, stamped and as (quick-)latest."""
    data = to_jsonable(results)
    meta = data.get("meta") or {}
    prefix = "quick-" if meta.get("quick") else ""
    stamp = f"{prefix}{_started(meta):%Y-%m-%dT%H%MZ}"
    latest = f"{prefix}latest"
    out_dir.mkdir(parents=True, exist_ok=True)
    contents = {
        ".json": (json.dumps(data, indent=2, allow_nan=False) + "\n").encode(),
        ".md": render_markdown(data).encode(),
        "-lateness.png": render_plot(_plot_source(results, data)),
    }
    for name in (stamp, latest):
        for suffix, content in contents.items():
            _write_atomically(out_dir / f"{name}{suffix}", content)
    return ReportFiles(
        json=out_dir / f"{stamp}.json",
        markdown=out_dir / f"{stamp}.md",
        plot=out_dir / f"{stamp}-lateness.png",
        latest_json=out_dir / f"{latest}.json",
        latest_markdown=out_dir / f"{latest}.md",
        latest_plot=out_dir / f"{latest}-lateness.png",
    )


def _plot_source(results: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON form, except that summaries keep their full lateness lists when they have them."""
    source = dict(data)
    for scenario in ("burst", "steady", "scale"):
        original = results.get(scenario)
        if not isinstance(original, Mapping) or not isinstance(data.get(scenario), dict):
            continue
        section = dict(data[scenario])
        for system in ("kairos", *PEERS):
            if isinstance(original.get(system), ScenarioSummary):
                section[system] = original[system]
        source[scenario] = section
    return source


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m kairos_bench.report results.json [--out DIR]`: render a saved run again."""
    parser = argparse.ArgumentParser(prog="python -m kairos_bench.report", description=main.__doc__)
    parser.add_argument("results", type=Path, help="a results JSON written by `make bench`")
    parser.add_argument("--out", type=Path, help="output folder (default: the JSON's folder)")
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text())
    files = write_report(results, args.out or args.results.parent)
    for path in dataclasses.astuple(files):
        print(path)


if __name__ == "__main__":
    main()
