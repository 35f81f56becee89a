"""The dashboard's lateness chart: nearest-rank percentiles, which targets count as deliveries,
the bars' layout, and the SVG and text summary the template draws from fake posts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from bs4 import BeautifulSoup
from google.protobuf.timestamp_pb2 import Timestamp

from kairos.posts.v1 import posts_pb2
from kairos_console import lateness
from kairos_console.render import environment

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def stamp(when: datetime) -> Timestamp:
    value = Timestamp()
    value.FromDatetime(when)
    return value


def post(
    post_id: str,
    scheduled: datetime | None,
    *late: float,
    status: posts_pb2.TargetStatus.ValueType = posts_pb2.TARGET_STATUS_PUBLISHED,
) -> posts_pb2.Post:
    """A published post scheduled at `scheduled` with one target per lateness (seconds)."""
    message = posts_pb2.Post(id=post_id, content=f"post {post_id}")
    if scheduled is not None:
        message.scheduled_at.CopyFrom(stamp(scheduled))
    base = scheduled or T0
    for seconds in late:
        target = message.targets.add(platform=posts_pb2.PLATFORM_MASTODON, status=status)
        target.published_at.CopyFrom(stamp(base + timedelta(seconds=seconds)))
    return message


@pytest.mark.parametrize(
    ("values", "percent", "expected"),
    [
        ([5.0], 50, 5.0),
        ([5.0], 95, 5.0),
        ([1.0, 2.0], 50, 1.0),
        ([1.0, 2.0], 51, 2.0),
        ([3.0, 1.0, 2.0], 50, 2.0),
        ([float(v) for v in range(1, 11)], 50, 5.0),
        ([float(v) for v in range(1, 11)], 95, 10.0),
        ([float(v) for v in range(1, 11)], 90, 9.0),
        ([float(v) for v in range(1, 101)], 95, 95.0),
        ([float(v) for v in range(1, 21)], 95, 19.0),
        ([float(v) for v in range(1, 21)], 100, 20.0),
        ([float(v) for v in range(1, 21)], 1, 1.0),
        ([-2.0, 0.5, 7.0], 50, 0.5),
    ],
)
def test_percentiles_are_nearest_rank(values: list[float], percent: int, expected: float) -> None:
    assert lateness.percentile(values, percent) == expected


def test_a_percentile_of_nothing_or_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="no values"):
        lateness.percentile([], 50)
    with pytest.raises(ValueError, match="from 1 to 100"):
        lateness.percentile([1.0], 0)
    with pytest.raises(ValueError, match="from 1 to 100"):
        lateness.percentile([1.0], 101)


def test_deliveries_are_published_targets_of_scheduled_posts_in_the_order_they_went_out() -> None:
    posts = [
        post("b", T0 + timedelta(hours=1), 2.5),
        post("a", T0, 30.0, 1.0),
        post("failed", T0, 4.0, status=posts_pb2.TARGET_STATUS_FAILED),
        post("unscheduled", None, 9.0),
    ]
    found = lateness.deliveries(posts)
    assert [(d.post_id, d.lateness) for d in found] == [("a", 1.0), ("a", 30.0), ("b", 2.5)]


def test_said_reads_at_a_glance() -> None:
    assert lateness.said(0.84) == "0.8 s"
    assert lateness.said(59.94) == "59.9 s"
    assert lateness.said(184) == "3 min 4 s"
    assert lateness.said(2 * 3600 + 5 * 60 + 10) == "2 h 5 min"
    assert lateness.said(-1.5) == "-1.5 s"


def test_the_chart_scales_bars_to_the_latest_delivery() -> None:
    chart = lateness.chart([post("a", T0, 10.0, 40.0, 0.0, -3.0)])
    assert chart.summary == lateness.Summary(count=4, p50=0.0, p95=40.0, max=40.0)
    by_lateness = {bar.delivery.lateness: bar for bar in chart.bars}
    baseline = lateness.HEIGHT - lateness.BOTTOM
    tallest = by_lateness[40.0]
    assert tallest.y == lateness.TOP
    assert tallest.y + tallest.height == baseline
    assert by_lateness[10.0].height == pytest.approx(tallest.height / 4, abs=0.01)
    # On time and early: a sliver at the baseline, the early one marked.
    assert by_lateness[0.0].height == by_lateness[-3.0].height == 1.0
    assert by_lateness[-3.0].early
    assert not by_lateness[0.0].early
    assert [bar.x for bar in chart.bars] == sorted(bar.x for bar in chart.bars)
    assert all(bar.x + bar.width <= lateness.WIDTH for bar in chart.bars)
    assert chart.p95_y == lateness.TOP


def render(posts: list[posts_pb2.Post]) -> BeautifulSoup:
    html = (
        environment()
        .get_template("lateness.html")
        .render(lateness=lateness.chart(posts), zone="Europe/Berlin")
    )
    return BeautifulSoup(html, "html.parser")


def test_the_template_draws_one_titled_bar_per_delivery_and_says_the_numbers() -> None:
    posts = [post(str(i), T0 + timedelta(minutes=i), float(i)) for i in range(1, 21)]
    page = render(posts)
    section = page.select_one("#lateness")
    assert section is not None
    assert section["data-count"] == "20"
    bars = page.select("svg.lateness-chart rect.lateness-bar")
    assert len(bars) == 20
    assert [bar["data-post-id"] for bar in bars] == [str(i) for i in range(1, 21)]
    first_title = bars[0].select_one("title")
    assert first_title is not None
    # Published 09:01:01 UTC, shown in Berlin.
    assert first_title.get_text().startswith("2026-12-07 10:01, mastodon: 1.0 s late.")
    summary = {dd["data-lateness"]: dd.get_text() for dd in page.select("#lateness-summary dd")}
    assert summary == {"count": "20", "p50": "10.0 s", "p95": "19.0 s", "max": "20.0 s"}
    text = " ".join(page.select_one("#lateness-text").get_text().split())  # type: ignore[union-attr]
    assert text.startswith("Of the last 20 published posts, 20 deliveries: half went out")
    svg = page.select_one("svg")
    assert svg is not None
    assert svg["role"] == "img"
    assert svg.select_one("title#lateness-chart-title") is not None
    # The console's CSP forbids inline styles: the chart uses attributes and classes only.
    assert not page.select("[style]")
    assert not page.select("style")


def test_without_deliveries_the_section_says_so_and_draws_nothing() -> None:
    page = render([post("x", None, 3.0)])
    assert page.select_one("#lateness")["data-count"] == "0"  # type: ignore[index]
    assert not page.select("svg")
    assert "No published deliveries yet" in page.get_text()
