"""`kairos posts create --repeat`, `kairos series ...` and the calendar's series marks, against
the in-process api."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from integration.cli.conftest import ZONE, Kairos


async def test_a_repeating_post_is_a_series_on_the_calendar_that_can_be_edited_and_deleted(
    kairos: Kairos, account_id: str
) -> None:
    tomorrow = (datetime.now(UTC).astimezone(ZoneInfo(ZONE)) + timedelta(days=1)).date()
    series_id = (
        await kairos.ok(
            "posts",
            "create",
            "Daily tip",
            "--account",
            account_id,
            "--at",
            f"{tomorrow} 09:00",
            "--repeat",
            "FREQ=DAILY;COUNT=3",
        )
    ).stdout.strip()

    calendar = (await kairos.ok("--json", "calendar", "--days", "5")).json()
    rows = [
        row
        for day in calendar["days"]
        for platform_rows in day["platforms"].values()
        for row in platform_rows
        if row["series_id"] == series_id
    ]
    assert [row["local_time"][:16] for row in rows] == [
        f"{tomorrow + timedelta(days=n)}T09:00" for n in range(3)
    ]
    assert "↻ Daily tip" in (await kairos.ok("calendar", "--days", "5")).stdout

    shown = (await kairos.ok("series", "show", series_id)).stdout
    assert "FREQ=DAILY;COUNT=3" in shown
    assert f"{tomorrow}T09:00:00 {ZONE}" in shown
    assert series_id in (await kairos.ok("series", "list")).stdout

    second = rows[1]["post_id"]
    edited = await kairos.ok(
        "series", "edit", series_id, "--scope", "this", "--post", second, "--content", "Once"
    )
    assert f"post {second} changed" in edited.stdout
    assert "paused" in (await kairos.ok("series", "pause", series_id)).stdout
    assert "active" in (await kairos.ok("series", "resume", series_id)).stdout
    deleted = await kairos.ok("series", "delete", series_id)
    assert "3 unpublished occurrence(s) cancelled" in deleted.stdout
    assert (await kairos("series", "show", series_id)).code != 0


async def test_preview_and_mistakes(kairos: Kairos, account_id: str) -> None:
    preview = await kairos.ok(
        "series", "preview", "FREQ=WEEKLY;BYDAY=MO;COUNT=2", "--start", "2030-01-07T09:00"
    )
    assert preview.stdout.splitlines()[0].startswith("2030-01-07T09:00:00  (2030-01-07T08:00")
    no_start = await kairos(
        "posts", "create", "x", "--account", account_id, "--repeat", "FREQ=DAILY"
    )
    assert no_start.code == 2
    assert "--repeat needs --at" in no_start.stderr
    too_often = await kairos(
        "posts",
        "create",
        "x",
        "--account",
        account_id,
        "--at",
        "in 2h",
        "--repeat",
        "FREQ=MINUTELY",
    )
    assert too_often.code != 0
    assert "recurrence.rule" in too_often.stderr
