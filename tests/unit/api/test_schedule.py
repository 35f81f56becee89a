"""Schedule times: wall-clock times across daylight-saving changes, bad input, and time limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kairos_api.domain.schedule import (
    DEFAULT_PAST_TOLERANCE,
    MAX_STALE_AFTER,
    check_not_in_past,
    check_stale_after,
    resolve_local_time,
)
from kairos_common.errors import FieldViolation, InvalidArgument

# --- resolve_local_time: ordinary times ----------------------------------------------------------


@pytest.mark.parametrize(
    ("date_time", "time_zone", "expected"),
    [
        ("2026-06-01T09:00:00", "Asia/Tokyo", datetime(2026, 6, 1, 0, 0, tzinfo=UTC)),
        ("2026-01-15T12:00:00", "UTC", datetime(2026, 1, 15, 12, 0, tzinfo=UTC)),
        ("2026-01-15T12:00:00", "Etc/UTC", datetime(2026, 1, 15, 12, 0, tzinfo=UTC)),
        ("2026-01-15T09:30:00", "Europe/Berlin", datetime(2026, 1, 15, 8, 30, tzinfo=UTC)),
        ("2026-07-15T09:30:00", "Europe/Berlin", datetime(2026, 7, 15, 7, 30, tzinfo=UTC)),
        ("2026-07-04T12:00:00", "America/New_York", datetime(2026, 7, 4, 16, 0, tzinfo=UTC)),
        ("2026-01-04T12:00:00", "America/New_York", datetime(2026, 1, 4, 17, 0, tzinfo=UTC)),
        ("2026-06-01T12:00:00", "Asia/Kolkata", datetime(2026, 6, 1, 6, 30, tzinfo=UTC)),
        ("2026-06-01T12:00:00", "Asia/Kathmandu", datetime(2026, 6, 1, 6, 15, tzinfo=UTC)),
        # Lord Howe moves by only 30 minutes: +10:30 in winter, +11:00 in summer.
        ("2026-07-01T12:00:00", "Australia/Lord_Howe", datetime(2026, 7, 1, 1, 30, tzinfo=UTC)),
        ("2026-01-01T12:00:00", "Australia/Lord_Howe", datetime(2026, 1, 1, 1, 0, tzinfo=UTC)),
        # Crossing the date line backwards: local morning is the previous UTC evening.
        ("2026-01-01T00:30:00", "Pacific/Kiritimati", datetime(2025, 12, 31, 10, 30, tzinfo=UTC)),
    ],
)
def test_normal_wall_time_resolves_to_its_utc_instant(
    date_time: str, time_zone: str, expected: datetime
) -> None:
    resolved = resolve_local_time(date_time, time_zone)

    assert resolved == expected
    assert resolved.tzinfo is UTC


@pytest.mark.parametrize(
    ("date_time", "expected"),
    [
        ("2026-06-01T09:00", datetime(2026, 6, 1, 0, 0, tzinfo=UTC)),
        ("2026-06-01T09:00:07", datetime(2026, 6, 1, 0, 0, 7, tzinfo=UTC)),
        ("2026-06-01T09:00:07.5", datetime(2026, 6, 1, 0, 0, 7, 500000, tzinfo=UTC)),
        ("2026-06-01T09:00:07,25", datetime(2026, 6, 1, 0, 0, 7, 250000, tzinfo=UTC)),
        ("2026-06-01T09:00:07.123456", datetime(2026, 6, 1, 0, 0, 7, 123456, tzinfo=UTC)),
        # Nanoseconds are accepted and cut to microseconds, not rounded up into the next one.
        ("2026-06-01T09:00:07.123456999", datetime(2026, 6, 1, 0, 0, 7, 123456, tzinfo=UTC)),
        ("2026-06-01 09:00", datetime(2026, 6, 1, 0, 0, tzinfo=UTC)),
    ],
)
def test_seconds_and_fractions_are_optional(date_time: str, expected: datetime) -> None:
    assert resolve_local_time(date_time, "Asia/Tokyo") == expected


# --- resolve_local_time: daylight-saving gaps ----------------------------------------------------


@pytest.mark.parametrize(
    ("date_time", "time_zone", "jump"),
    [
        (
            "2026-03-29T02:30:00",
            "Europe/Berlin",
            "on 2026-03-29 the clocks jump from 02:00 to 03:00 (UTC+01:00 to UTC+02:00)",
        ),
        (
            "2026-03-29T02:00:00",
            "Europe/Berlin",
            "on 2026-03-29 the clocks jump from 02:00 to 03:00 (UTC+01:00 to UTC+02:00)",
        ),
        (
            "2026-03-29T02:59:59.999999",
            "Europe/Berlin",
            "on 2026-03-29 the clocks jump from 02:00 to 03:00 (UTC+01:00 to UTC+02:00)",
        ),
        (
            "2026-03-08T02:30:00",
            "America/New_York",
            "on 2026-03-08 the clocks jump from 02:00 to 03:00 (UTC-05:00 to UTC-04:00)",
        ),
        (
            "2026-10-04T02:15:00",
            "Australia/Lord_Howe",
            "on 2026-10-04 the clocks jump from 02:00 to 02:30 (UTC+10:30 to UTC+11:00)",
        ),
        # Samoa skipped a whole calendar day when it moved across the date line.
        (
            "2011-12-30T12:00:00",
            "Pacific/Apia",
            "the clocks jump from 2011-12-30 00:00 to 2011-12-31 00:00 (UTC-10:00 to UTC+14:00)",
        ),
        # Berlin left local mean time for CET by a jump of 6 minutes 32 seconds.
        (
            "1893-04-01T00:03:00",
            "Europe/Berlin",
            "on 1893-04-01 the clocks jump from 00:00 to 00:06:32 (UTC+00:53:28 to UTC+01:00)",
        ),
    ],
)
def test_wall_time_in_a_gap_is_rejected_with_the_jump(
    date_time: str, time_zone: str, jump: str
) -> None:
    with pytest.raises(InvalidArgument) as raised:
        resolve_local_time(date_time, time_zone)

    (violation,) = raised.value.violations
    assert violation.field == "schedule.local.date_time"
    assert "does not exist in " + time_zone in violation.description
    assert jump in violation.description


@pytest.mark.parametrize(
    ("date_time", "time_zone", "expected"),
    [
        ("2026-03-29T01:59:59", "Europe/Berlin", datetime(2026, 3, 29, 0, 59, 59, tzinfo=UTC)),
        ("2026-03-29T03:00:00", "Europe/Berlin", datetime(2026, 3, 29, 1, 0, tzinfo=UTC)),
        ("2026-03-08T01:59:00", "America/New_York", datetime(2026, 3, 8, 6, 59, tzinfo=UTC)),
        ("2026-03-08T03:00:00", "America/New_York", datetime(2026, 3, 8, 7, 0, tzinfo=UTC)),
        ("2026-10-04T02:30:00", "Australia/Lord_Howe", datetime(2026, 10, 3, 15, 30, tzinfo=UTC)),
    ],
)
def test_wall_times_either_side_of_a_gap_are_accepted(
    date_time: str, time_zone: str, expected: datetime
) -> None:
    assert resolve_local_time(date_time, time_zone) == expected


# --- resolve_local_time: daylight-saving folds ---------------------------------------------------


@pytest.mark.parametrize(
    ("date_time", "time_zone", "earlier", "later"),
    [
        # 02:30 happens on CEST (+02:00) first, then on CET (+01:00).
        (
            "2026-10-25T02:30:00",
            "Europe/Berlin",
            datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
            datetime(2026, 10, 25, 1, 30, tzinfo=UTC),
        ),
        # 01:30 happens on EDT (-04:00) first, then on EST (-05:00).
        (
            "2026-11-01T01:30:00",
            "America/New_York",
            datetime(2026, 11, 1, 5, 30, tzinfo=UTC),
            datetime(2026, 11, 1, 6, 30, tzinfo=UTC),
        ),
        # A 30-minute fold: 01:45 happens at +11:00 first, then at +10:30.
        (
            "2026-04-05T01:45:00",
            "Australia/Lord_Howe",
            datetime(2026, 4, 4, 14, 45, tzinfo=UTC),
            datetime(2026, 4, 4, 15, 15, tzinfo=UTC),
        ),
    ],
)
def test_ambiguous_wall_time_takes_the_earlier_instant(
    date_time: str, time_zone: str, earlier: datetime, later: datetime
) -> None:
    resolved = resolve_local_time(date_time, time_zone)

    assert resolved == earlier
    assert resolved != later


# --- resolve_local_time: bad input ---------------------------------------------------------------


@pytest.mark.parametrize("date_time", ["", "   "])
def test_empty_date_time_is_rejected(date_time: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        resolve_local_time(date_time, "Europe/Berlin")

    assert raised.value.violations == (
        FieldViolation(
            "schedule.local.date_time",
            "a local date and time is required, e.g. '2026-03-29T09:30:00'",
        ),
    )


@pytest.mark.parametrize(
    "date_time",
    [
        "tomorrow at nine",
        "2026-03-29",
        "2026-03-29T",
        "2026-03-29T9:30",
        "2026-3-29T09:30",
        "29/03/2026 09:30",
        "20260329T093000",
        "2026-03-29T09:30:00.",
        "2026-03-29T09:30:00.1234567890",
        "2026-03-29T09",
        " 2026-03-29T09:30",
        "2026-03-29T09:30 Europe/Berlin",
        "2026-W13-7T09:30",
    ],
)
def test_malformed_date_time_is_rejected(date_time: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        resolve_local_time(date_time, "Europe/Berlin")

    (violation,) = raised.value.violations
    assert violation.field == "schedule.local.date_time"
    assert "is not an ISO 8601 local date and time" in violation.description
    assert repr(date_time) in violation.description


@pytest.mark.parametrize(
    ("date_time", "reason"),
    [
        ("2026-02-30T09:30", "day is out of range for month"),
        ("2026-13-01T09:30", "month must be in 1..12"),
        ("2026-03-29T24:00", "hour must be in 0..23"),
        ("2026-03-29T09:60", "minute must be in 0..59"),
        ("2026-03-29T09:30:61", "second must be in 0..59"),
        ("0000-01-01T00:00", "year 0 is out of range"),
    ],
)
def test_impossible_calendar_values_are_rejected(date_time: str, reason: str) -> None:
    with pytest.raises(InvalidArgument, match="is not a valid date and time") as raised:
        resolve_local_time(date_time, "UTC")

    assert reason in raised.value.violations[0].description


@pytest.mark.parametrize(
    ("date_time", "time_zone"),
    [("9999-12-31T23:00", "America/New_York"), ("0001-01-01T00:00", "Asia/Tokyo")],
)
def test_dates_that_leave_the_supported_range_are_rejected(date_time: str, time_zone: str) -> None:
    with pytest.raises(InvalidArgument, match="outside the supported range") as raised:
        resolve_local_time(date_time, time_zone)

    assert raised.value.violations[0].field == "schedule.local.date_time"


@pytest.mark.parametrize(
    ("date_time", "offset"),
    [
        ("2026-03-29T09:30:00Z", "Z"),
        ("2026-03-29T09:30:00z", "z"),
        ("2026-03-29T09:30:00+02:00", "+02:00"),
        ("2026-03-29T09:30-05:00", "-05:00"),
        ("2026-03-29T09:30:00.5+0200", "+0200"),
        ("2026-03-29T09:30:00+02", "+02"),
    ],
)
def test_date_time_with_an_offset_is_rejected(date_time: str, offset: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        resolve_local_time(date_time, "Europe/Berlin")

    (violation,) = raised.value.violations
    assert violation.field == "schedule.local.date_time"
    assert f"carries a UTC offset ({offset!r})" in violation.description


@pytest.mark.parametrize("time_zone", ["", "  "])
def test_empty_time_zone_is_rejected(time_zone: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        resolve_local_time("2026-03-29T09:30", time_zone)

    (violation,) = raised.value.violations
    assert violation.field == "schedule.local.time_zone"
    assert "an IANA time zone is required" in violation.description


@pytest.mark.parametrize(
    "time_zone",
    [
        "Mars/Olympus_Mons",
        "Europe",
        "Europe/",
        "../etc/passwd",
        "/etc/localtime",
        "Europe/Berlin ",
        "CEST",
        "+02:00",
        "localtime",
        "Europe/Berlin\x00",
    ],
)
def test_unknown_time_zone_is_rejected_and_named(time_zone: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        resolve_local_time("2026-03-29T09:30", time_zone)

    (violation,) = raised.value.violations
    assert violation.field == "schedule.local.time_zone"
    assert f"unknown time zone {time_zone!r}" in violation.description


def test_wrongly_cased_time_zone_gets_a_suggestion() -> None:
    with pytest.raises(InvalidArgument, match=r"did you mean 'America/New_York'\?"):
        resolve_local_time("2026-03-29T09:30", "america/new_york")


def test_field_prefix_names_the_request_field() -> None:
    with pytest.raises(InvalidArgument) as raised:
        resolve_local_time("2026-03-29T02:30", "Europe/Berlin", field="posts[2].schedule.local")

    assert raised.value.violations[0].field == "posts[2].schedule.local.date_time"
    assert raised.value.message.startswith("posts[2].schedule.local.date_time: ")


# --- check_not_in_past ---------------------------------------------------------------------------

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "at",
    [
        NOW + timedelta(days=30),
        NOW,
        NOW - timedelta(seconds=59),
        NOW - DEFAULT_PAST_TOLERANCE,
    ],
)
def test_now_future_and_slightly_past_are_accepted(at: datetime) -> None:
    check_not_in_past(at, NOW, field="schedule.at")


def test_just_past_the_tolerance_is_rejected_with_how_far() -> None:
    with pytest.raises(InvalidArgument) as raised:
        check_not_in_past(NOW - timedelta(seconds=60, milliseconds=500), NOW, field="schedule.at")

    assert raised.value.violations == (
        FieldViolation(
            "schedule.at",
            "2026-05-01T11:58:59.500000+00:00 is 1 minute 0.5 seconds in the past; "
            "a schedule may be at most 1 minute in the past",
        ),
    )


def test_far_past_names_the_distance() -> None:
    at = NOW - timedelta(days=2, hours=3, minutes=4, seconds=5)

    with pytest.raises(InvalidArgument, match="is 2 days 3 hours 4 minutes 5 seconds in the past"):
        check_not_in_past(at, NOW, field="schedule.at")


def test_custom_tolerance_is_used_and_reported() -> None:
    check_not_in_past(NOW - timedelta(minutes=5), NOW, tolerance=timedelta(minutes=5), field="at")

    with pytest.raises(InvalidArgument, match="at most 5 minutes in the past"):
        check_not_in_past(
            NOW - timedelta(minutes=5, seconds=1), NOW, tolerance=timedelta(minutes=5), field="at"
        )


def test_zero_tolerance_rejects_one_microsecond_past() -> None:
    check_not_in_past(NOW, NOW, tolerance=timedelta(0), field="at")

    with pytest.raises(InvalidArgument, match="at most 0 seconds in the past"):
        check_not_in_past(NOW - timedelta(microseconds=1), NOW, tolerance=timedelta(0), field="at")


def test_instants_in_other_zones_compare_as_instants() -> None:
    berlin = resolve_local_time("2026-05-01T13:59:30", "Europe/Berlin")  # 11:59:30 UTC

    check_not_in_past(berlin, NOW, field="schedule.local")
    with pytest.raises(InvalidArgument, match="2026-05-01T11:58:00"):
        check_not_in_past(berlin - timedelta(seconds=90), NOW, field="schedule.local")


def test_naive_datetimes_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        check_not_in_past(datetime(2026, 5, 1, 12, 0), NOW, field="at")


def test_negative_tolerance_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="tolerance"):
        check_not_in_past(NOW, NOW, tolerance=timedelta(seconds=-1), field="at")


# --- check_stale_after ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", [timedelta(microseconds=1), timedelta(minutes=15), timedelta(days=1), MAX_STALE_AFTER]
)
def test_stale_after_within_bounds_is_accepted(value: timedelta) -> None:
    check_stale_after(value)


def test_stale_after_bound_is_seven_days() -> None:
    assert timedelta(days=7) == MAX_STALE_AFTER


@pytest.mark.parametrize(
    ("value", "description"),
    [
        (timedelta(0), "must be positive, got 0 seconds"),
        (timedelta(minutes=-5), "must be positive, got -5 minutes"),
        (timedelta(days=7, microseconds=1), "must be at most 7 days, got 7 days 0.000001 seconds"),
        (timedelta(days=30), "must be at most 7 days, got 30 days"),
    ],
)
def test_stale_after_out_of_bounds_is_rejected(value: timedelta, description: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        check_stale_after(value)

    assert raised.value.violations == (FieldViolation("stale_after", description),)


def test_stale_after_names_the_given_field() -> None:
    with pytest.raises(InvalidArgument, match=r"^posts\[0\]\.stale_after: must be positive"):
        check_stale_after(timedelta(0), field="posts[0].stale_after")
