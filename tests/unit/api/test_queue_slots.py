"""Weekly queue slots: their instants keep the wall clock across DST, a slot in a gap falls at
the jump, one in the repeated hour at its earlier instant, and bad slots name their field."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kairos_api.domain.queue import Slot, WeeklySlots, first_common_free, parse_slots
from kairos_common.errors import InvalidArgument


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_weekday_slots_keep_their_wall_clock_time_across_both_dst_changes() -> None:
    weekly = parse_slots("Europe/London", [(d, t) for d in range(1, 6) for t in ("09:00", "13:00")])
    # Fri 27 Mar 2026 to Tue 31 Mar: BST starts on Sunday 29 March.
    spring = list(weekly.instants(utc("2026-03-27T00:00"), utc("2026-04-01T00:00")))
    assert spring == [
        utc("2026-03-27T09:00"),
        utc("2026-03-27T13:00"),
        utc("2026-03-30T08:00"),
        utc("2026-03-30T12:00"),
        utc("2026-03-31T08:00"),
        utc("2026-03-31T12:00"),
    ]
    # GMT again from Sunday 25 October 2026.
    autumn = list(weekly.instants(utc("2026-10-23T00:00"), utc("2026-10-27T00:00")))
    assert autumn == [
        utc("2026-10-23T08:00"),
        utc("2026-10-23T12:00"),
        utc("2026-10-26T09:00"),
        utc("2026-10-26T13:00"),
    ]
    assert {weekly.local_text(i)[11:] for i in spring + autumn} == {"09:00", "13:00"}


def test_a_slot_in_the_spring_gap_falls_at_the_jump_and_merges_with_a_slot_there() -> None:
    weekly = parse_slots("Europe/Berlin", [(7, "02:30"), (7, "03:30"), (7, "10:00")])
    # Sunday 29 March 2026: 02:00 CET becomes 03:00 CEST (01:00 UTC).
    day = list(weekly.instants(utc("2026-03-29T00:00"), utc("2026-03-30T00:00")))
    assert day == [utc("2026-03-29T01:30"), utc("2026-03-29T08:00")]
    assert weekly.local_text(day[0]) == "2026-03-29T03:30"
    # A week later both slots are there again.
    week_after = list(weekly.instants(utc("2026-04-05T00:00"), utc("2026-04-06T00:00")))
    assert week_after == [utc("2026-04-05T00:30"), utc("2026-04-05T01:30"), utc("2026-04-05T08:00")]


def test_a_slot_in_the_repeated_autumn_hour_is_taken_once_at_its_earlier_instant() -> None:
    weekly = parse_slots("Europe/Berlin", [(7, "02:30")])
    # Sunday 25 October 2026: 02:30 happens at 00:30 UTC (CEST) and again at 01:30 UTC (CET).
    day = list(weekly.instants(utc("2026-10-25T00:00"), utc("2026-10-26T00:00")))
    assert day == [utc("2026-10-25T00:30")]


def test_instants_start_inclusive_and_reach_late_slots_of_the_day_before() -> None:
    weekly = parse_slots("America/Los_Angeles", [(1, "23:30")])
    # Monday 23:30 in Los Angeles (PDT) is Tuesday 06:30 UTC.
    found = list(weekly.instants(utc("2026-06-02T06:30"), utc("2026-06-10T00:00")))
    assert found == [utc("2026-06-02T06:30"), utc("2026-06-09T06:30")]
    assert list(weekly.instants(utc("2026-06-02T06:31"), utc("2026-06-09T06:30"))) == []


def test_first_common_free_skips_taken_slots_and_slots_not_shared() -> None:
    london = parse_slots("Europe/London", [(1, "09:00"), (1, "10:00"), (1, "11:00")])
    berlin = parse_slots("Europe/Berlin", [(1, "11:00"), (1, "12:00")])  # 10:00, 11:00 London
    start = utc("2026-01-05T00:00")  # a Monday, GMT and CET
    assert first_common_free([london, berlin], [set(), set()], start) == utc("2026-01-05T10:00")
    taken = {utc("2026-01-05T10:00")}
    assert first_common_free([london, berlin], [set(), taken], start) == utc("2026-01-05T11:00")
    never = parse_slots("Asia/Tokyo", [(3, "09:00")])
    assert first_common_free([london, never], [set(), set()], start) is None


def test_parse_slots_reports_every_bad_field() -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_slots(
            "Europe/Londn", [(0, "09:00"), (1, "9:00"), (2, "24:00"), (3, "10:00"), (3, "10:00")]
        )
    fields = [v.field for v in caught.value.violations]
    assert fields == ["time_zone", "slots[0].weekday", "slots[1].time", "slots[2].time", "slots[4]"]


def test_no_slots_need_no_zone_and_slots_are_sorted() -> None:
    assert parse_slots("", []) == WeeklySlots("", ())
    parsed = parse_slots("UTC", [(2, "13:00"), (1, "09:05")])
    assert parsed.slots == (Slot(1, 545), Slot(2, 780))
    assert parsed.is_slot(utc("2026-01-05T09:05"))
    assert not parsed.is_slot(utc("2026-01-05T09:06"))
