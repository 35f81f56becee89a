"""`kairos calendar`, `kairos stats` and `kairos watch --once` against the in-process api."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from integration.cli.conftest import ZONE, Kairos


def local_day(days_from_today: int) -> str:
    """A date in the tests' zone, as YYYY-MM-DD."""
    today = datetime.now(UTC).astimezone(ZoneInfo(ZONE)).date()
    return (today + timedelta(days=days_from_today)).isoformat()


async def test_calendar_groups_the_coming_days_by_local_day_and_platform(
    kairos: Kairos, account_id: str
) -> None:
    x_account = (
        await kairos.ok("accounts", "connect", "x", "--handle", "@cal", "--access-token", "t")
    ).stdout.strip()
    tomorrow, in_three_days = local_day(1), local_day(3)
    both = await kairos.create_post(
        account_id, "--account", x_account, "--at", f"{tomorrow} 10:00", content="Both"
    )
    early = await kairos.create_post(account_id, "--at", f"{tomorrow} 08:15", content="Early")
    later = await kairos.create_post(x_account, "--at", f"{in_three_days} 23:30", content="Late")
    beyond = await kairos.create_post(account_id, "--at", f"{local_day(9)} 10:00")
    await kairos.create_post(account_id, content="A draft is not on the calendar")

    data = (await kairos.ok("--json", "calendar")).json()
    table = await kairos.ok("calendar", "--days", "4")

    assert data["time_zone"] == ZONE
    assert [day["date"] for day in data["days"]] == [local_day(n) for n in range(7)]
    days = {day["date"]: day["platforms"] for day in data["days"]}
    assert {p: [row["post_id"] for row in rows] for p, rows in days[tomorrow].items()} == {
        "sandbox": [early, both],
        "x": [both],
    }
    assert [row["post_id"] for row in days[in_three_days]["x"]] == [later]
    # 23:30 in Berlin is the same local day, whatever the UTC date.
    assert days[in_three_days]["x"][0]["local_time"].startswith(f"{in_three_days}T23:30:00")
    assert beyond not in str(data)
    assert sum(len(rows) for day in days.values() for rows in day.values()) == 4

    out = table.stdout
    assert f"{datetime.fromisoformat(tomorrow):%a %d %b %Y} — 2 posts" in out
    assert "nothing scheduled" in out  # today, and the day after tomorrow
    assert out.index("08:15:00 CE") < out.index("10:00:00 CE")  # sandbox rows, by time
    assert later in out
    assert beyond not in out


async def test_calendar_mistakes(kairos: Kairos) -> None:
    too_long = await kairos("calendar", "--days", "0")

    assert too_long.code == 2


async def test_stats_counts_posts_by_status_and_platform(kairos: Kairos, account_id: str) -> None:
    await kairos.create_post(account_id, "--at", "in 30m")
    await kairos.create_post(account_id, "--at", "in 3h")
    await kairos.create_post(account_id)

    data = (await kairos.ok("--json", "stats")).json()
    table = await kairos.ok("stats")

    by_status = {row["status"]: row["count"] for row in data["by_status"]}
    assert by_status == {"draft": 1, "scheduled": 2}
    assert data["due_next_hour"] == 1
    assert "Posts by status" in table.stdout
    assert "Targets by platform" in table.stdout
    assert "due in the next hour" in table.stdout


async def test_watch_once_shows_upcoming_and_recently_settled_posts(
    kairos: Kairos, account_id: str
) -> None:
    soon = await kairos.create_post(account_id, "--at", "in 10m", content="Soon")
    later = await kairos.create_post(account_id, "--at", "in 2h", content="Later")
    failed = await kairos.create_post(account_id, "--at", "in 1h", content="Failed one")
    await kairos.settle_as_failed(failed)
    draft = await kairos.create_post(account_id)

    data = (await kairos.ok("--json", "watch", "--once")).json()
    table = await kairos.ok("watch", "--once")

    assert [p["id"] for p in data["upcoming"]] == [soon, later]
    assert [p["id"] for p in data["recent"]] == [failed]
    out = table.stdout
    assert "Upcoming" in out
    assert "Recently published or failed" in out
    assert out.index(soon) < out.index(later) < out.index(failed)
    assert "content refused by the platform" in out
    assert draft not in out
