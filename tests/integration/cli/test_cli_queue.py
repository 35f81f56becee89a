"""`kairos queue ...`, `kairos posts queue` and `kairos calendar --queue` against the
in-process api (PostgreSQL and SQLite): slots set from specs and shown, posts queued into them,
listed, moved, swapped and removed, and the calendar's free slots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from integration.cli.conftest import Kairos

from kairos_cli.commands.queue import parse_slot_spec

#: Mondays of 2030 in Berlin (CET): 09:00 local is 08:00 UTC.
MONDAY = "2030-01-07T00:00:00Z"


def test_slot_specs_read_days_ranges_and_times() -> None:
    assert parse_slot_spec("mon-wed 09:00,13:30") == [
        (1, "09:00"),
        (1, "13:30"),
        (2, "09:00"),
        (2, "13:30"),
        (3, "09:00"),
        (3, "13:30"),
    ]
    assert parse_slot_spec("sat,sun 8:05") == [(6, "08:05"), (7, "08:05")]
    assert len(parse_slot_spec("daily 10:00")) == 7
    for bad in ("mon", "fri-mon 09:00", "xyz 09:00", "mon 9am"):
        with pytest.raises(ValueError, match="mon"):
            parse_slot_spec(bad)


async def test_queue_slots_posts_and_moves_from_the_command_line(kairos: Kairos) -> None:
    account = await kairos.connect_sandbox()
    set_ran = await kairos.ok("queue", "slots", "set", account, "--slot", "mon-fri 09:00")
    assert "Europe/Berlin" in set_ran.stdout
    assert "Mon 09:00" in set_ran.stdout
    shown = await kairos.ok("--json", "queue", "slots", "show", account)
    assert [(s["weekday"], s["time"]) for s in shown.json()["slots"]][:2] == [
        ("monday", "09:00"),
        ("tuesday", "09:00"),
    ]

    first = await kairos.create_post(account)
    await kairos.ok("posts", "queue", first, "--not-before", MONDAY)
    second = await kairos.create_post(account)
    await kairos.ok("posts", "queue", second, "--not-before", MONDAY)
    listed = (
        await kairos.ok("--json", "queue", "show", account, "--count", "3", "--from", MONDAY)
    ).json()
    assert [e.get("post_id", "") for e in listed["entries"]] == [first, second, ""]
    assert [e["local_time"] for e in listed["entries"]] == [
        "2030-01-07T09:00",
        "2030-01-08T09:00",
        "2030-01-09T09:00",
    ]

    swapped = await kairos.ok("queue", "swap", first, second)
    assert f"post {first} is now at Tue 08 Jan 2030 09:00:00 CET" in swapped.stdout
    moved = await kairos.ok("queue", "move", first, "2030-01-10 09:00")
    assert "Thu 10 Jan 2030 09:00:00 CET" in moved.stdout
    removed = await kairos.ok("queue", "remove", second, "--shift-up")
    assert f"moved up: {first}" in removed.stdout
    table = await kairos.ok("queue", "show", account, "--count", "2", "--from", MONDAY)
    assert first in table.stdout
    assert "free" in table.stdout

    refused = await kairos("queue", "move", first, "2030-01-10 10:00")
    assert refused.code == 2
    assert "slot_at" in refused.stderr


async def test_create_queued_and_see_free_slots_in_the_calendar(kairos: Kairos) -> None:
    account = await kairos.connect_sandbox()
    now = datetime.now(UTC).astimezone(ZoneInfo("Europe/Berlin"))
    today = now.date()
    # Two slots a day, both later than now on every day after today.
    await kairos.ok("queue", "slots", "set", account, "--slot", "daily 10:00,16:00")
    post = await kairos.create_post(account, "--queue")
    shown = (await kairos.ok("--json", "posts", "show", post)).json()
    assert shown["status"] == "scheduled"

    days = (await kairos.ok("--json", "calendar", "--days", "3", "--queue", account)).json()
    tomorrow = days["days"][1]
    assert tomorrow["date"] == (today + timedelta(days=1)).isoformat()
    free = [slot["at"] for slot in tomorrow["free_queue_slots"]]
    held_instant = shown["scheduled_at"]
    assert held_instant not in free
    assert (
        len(free)
        + sum(
            1
            for d in [tomorrow]
            for p in d["platforms"].values()
            for r in p
            if r["post_id"] == post
        )
        == 2
    )
    text = await kairos.ok("calendar", "--days", "2", "--queue", account)
    assert "free queue slots:" in text.stdout


async def test_per_target_is_a_queue_option(kairos: Kairos) -> None:
    first = await kairos.connect_sandbox()
    second = await kairos.connect_sandbox()
    await kairos.ok("queue", "slots", "set", first, "--slot", "mon 09:00", "--zone", "UTC")
    await kairos.ok("queue", "slots", "set", second, "--slot", "tue 09:00", "--zone", "UTC")
    alone = await kairos("posts", "create", "hi", "--account", first, "--per-target")
    assert alone.code == 2
    assert "--per-target goes with --queue" in alone.stderr
    # Mondays and Tuesdays never meet: only per target can the post be queued.
    common = await kairos(
        "posts", "create", "hi", "--account", first, "--account", second, "--queue"
    )
    assert common.code == 2
    assert "schedule.queue" in common.stderr
    post = await kairos.create_post(first, "--account", second, "--queue", "--per-target")
    first_queue = (await kairos.ok("--json", "queue", "show", first, "--count", "1")).json()
    second_queue = (await kairos.ok("--json", "queue", "show", second, "--count", "1")).json()
    assert first_queue["entries"][0]["post_id"] == post
    assert second_queue["entries"][0]["post_id"] == post
    assert first_queue["entries"][0]["at"] != second_queue["entries"][0]["at"]
