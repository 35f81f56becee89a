"""How late recent deliveries were, for the dashboard's chart.

A delivery is one published target; its lateness is its `published_at` minus its post's
`scheduled_at` (negative if it went early, which a clock step could cause). The chart's bars are
laid out here, in the SVG's own units, so the template only draws rectangles and the numbers
can be tested without a browser.

Percentiles are nearest-rank: the p-th percentile is a lateness that actually happened, the
smallest one that at least p % of deliveries did not exceed. With the few dozen deliveries a
dashboard shows, an interpolated value would be a lateness nobody saw.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp

from kairos.posts.v1 import posts_pb2
from kairos_console.render import timestamp_set

#: The chart's drawing area, in SVG units (the page scales it to its width).
WIDTH = 720
HEIGHT = 200
#: Room above the tallest bar and below the baseline for their labels.
TOP = 20
BOTTOM = 4


@dataclass(frozen=True)
class Delivery:
    """One published target."""

    post_id: str
    content: str
    platform: int
    published_at: Timestamp
    lateness: float
    """Seconds after the post's scheduled instant; negative if earlier."""


def _seconds(stamp: Timestamp) -> float:
    return stamp.seconds + stamp.nanos / 1e9


def deliveries(posts: Iterable[posts_pb2.Post]) -> list[Delivery]:
    """The published targets of `posts` that have both instants, in the order they went out."""
    found = [
        Delivery(
            post_id=post.id,
            content=post.content,
            platform=target.platform,
            published_at=target.published_at,
            lateness=_seconds(target.published_at) - _seconds(post.scheduled_at),
        )
        for post in posts
        if timestamp_set(post.scheduled_at)
        for target in post.targets
        if target.status == posts_pb2.TARGET_STATUS_PUBLISHED and timestamp_set(target.published_at)
    ]
    return sorted(found, key=lambda d: (d.published_at.seconds, d.published_at.nanos))


def percentile(values: Sequence[float], percent: int) -> float:
    """The nearest-rank `percent`-th percentile of `values` (1 to 100); ValueError when empty."""
    if not values:
        raise ValueError("no values to take a percentile of")
    if not 1 <= percent <= 100:
        raise ValueError(f"percent must be from 1 to 100, not {percent}")
    ordered = sorted(values)
    # ceil(percent * n / 100) in integers: no float rounding decides the rank.
    rank = -(-percent * len(ordered) // 100)
    return ordered[rank - 1]


def said(seconds: float) -> str:
    """A lateness in words a person reads at a glance: "0.8 s", "3 min 4 s", "2 h 5 min"."""
    sign = "-" if seconds < 0 else ""
    left = abs(seconds)
    if left < 60:
        return f"{sign}{left:.1f} s"
    whole = round(left)
    if whole < 3600:
        return f"{sign}{whole // 60} min {whole % 60} s"
    return f"{sign}{whole // 3600} h {whole % 3600 // 60} min"


@dataclass(frozen=True)
class Summary:
    count: int
    p50: float
    p95: float
    max: float


@dataclass(frozen=True)
class Bar:
    """One delivery's rectangle, in SVG units."""

    delivery: Delivery
    x: float
    y: float
    width: float
    height: float
    early: bool


@dataclass(frozen=True)
class Chart:
    """What the dashboard draws: the summary, the bars, and the height of the p95 line."""

    posts: int
    """How many published posts were looked at."""
    summary: Summary | None
    """None when none of them has a delivery with both instants."""
    bars: list[Bar]
    p95_y: float
    width: int = WIDTH
    height: int = HEIGHT

    @staticmethod
    def said(seconds: float) -> str:
        return said(seconds)


def chart(posts: Sequence[posts_pb2.Post]) -> Chart:
    """The chart of `posts`' deliveries, oldest first from left to right, on a linear scale from
    zero to the latest one (a delivery that went early is a sliver at the baseline)."""
    found = deliveries(posts)
    if not found:
        return Chart(posts=len(posts), summary=None, bars=[], p95_y=HEIGHT - BOTTOM)
    values = [d.lateness for d in found]
    summary = Summary(
        count=len(found),
        p50=percentile(values, 50),
        p95=percentile(values, 95),
        max=max(values),
    )
    plot = HEIGHT - TOP - BOTTOM
    baseline = HEIGHT - BOTTOM
    scale = plot / summary.max if summary.max > 0 else 0.0
    slot = WIDTH / len(found)
    bars = []
    for index, delivery in enumerate(found):
        # At least one unit tall, so an on-time delivery is still seen (and can be hovered).
        height = max(1.0, delivery.lateness * scale)
        bars.append(
            Bar(
                delivery=delivery,
                x=round(index * slot + slot * 0.1, 2),
                y=round(baseline - height, 2),
                width=round(max(slot * 0.8, 0.5), 2),
                height=round(height, 2),
                early=delivery.lateness < 0,
            )
        )
    p95_y = round(baseline - max(0.0, summary.p95) * scale, 2)
    return Chart(posts=len(posts), summary=summary, bars=bars, p95_y=p95_y)
