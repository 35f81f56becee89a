"""Reading `--at WHEN` and showing instants in the user's zone, daylight saving included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from kairos.posts.v1 import posts_pb2
from kairos_cli.when import (
    When,
    WhenError,
    local_zone_name,
    parse_instant,
    parse_when,
    show,
)

BERLIN = "Europe/Berlin"
NOW = datetime(2026, 11, 25, 13, 0, tzinfo=UTC)


def test_now_publishes_at_once_and_has_no_schedule() -> None:
    when = parse_when(" NOW ", BERLIN)

    assert when == When(now=True)
    with pytest.raises(ValueError, match="PublishNow"):
        when.schedule()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("in 10s", 10),
        ("in 5m", 300),
        ("in 2h", 7200),
        ("in 1d", 86400),
        ("+30s", 30),
        ("in 1h30m", 5400),
        ("IN 2 H", 7200),
    ],
)
def test_relative_times_are_sent_as_a_delay(text: str, seconds: int) -> None:
    when = parse_when(text, BERLIN)

    # The api adds the delay to its own clock, so repeating the command repeats the request.
    assert when == When(after=timedelta(seconds=seconds))
    assert when.schedule().WhichOneof("when") == "after"
    assert when.schedule().after.ToTimedelta() == timedelta(seconds=seconds)
    assert when.fixed(NOW).schedule().at.ToDatetime(tzinfo=UTC) == NOW + timedelta(seconds=seconds)


def test_relative_time_across_a_clock_change_is_elapsed_time() -> None:
    # 01:30 CET on the night clocks go forward; "in 2h" is two real hours, 04:30 CEST on the wall.
    before = datetime(2027, 3, 28, 0, 30, tzinfo=UTC)

    when = parse_when("in 2h", BERLIN).fixed(before)

    assert when.instant is not None
    assert when.instant.astimezone(ZoneInfo(BERLIN)).strftime("%H:%M %Z") == "04:30 CEST"


@pytest.mark.parametrize(
    ("text", "instant"),
    [
        ("2026-11-25T14:00:00Z", datetime(2026, 11, 25, 14, 0, tzinfo=UTC)),
        ("2026-11-25T14:00Z", datetime(2026, 11, 25, 14, 0, tzinfo=UTC)),
        ("2026-11-25T14:00:00+01:00", datetime(2026, 11, 25, 13, 0, tzinfo=UTC)),
        ("2026-11-25 14:00-05:00", datetime(2026, 11, 25, 19, 0, tzinfo=UTC)),
    ],
)
def test_an_instant_with_an_offset_is_sent_as_that_instant(text: str, instant: datetime) -> None:
    when = parse_when(text, BERLIN)

    assert when.instant == instant
    assert when.schedule().WhichOneof("when") == "at"


@pytest.mark.parametrize(
    ("text", "wall_time"),
    [
        ("2026-11-25 14:00", "2026-11-25T14:00:00"),
        ("2026-11-25T14:00", "2026-11-25T14:00:00"),
        ("2026-11-25T14:00:30", "2026-11-25T14:00:30"),
    ],
)
def test_a_local_time_is_sent_with_its_zone_for_the_server_to_resolve(
    text: str, wall_time: str
) -> None:
    when = parse_when(text, BERLIN)

    assert when.schedule() == posts_pb2.Schedule(
        local=posts_pb2.LocalDateTime(date_time=wall_time, time_zone=BERLIN)
    )


def test_a_local_time_inside_a_dst_gap_is_left_for_the_server_to_refuse() -> None:
    # 02:30 does not exist in Berlin on 2027-03-28; the server names the jump in its violation,
    # so the command line sends it as typed rather than moving it.
    when = parse_when("2027-03-28 02:30", BERLIN)

    assert when.schedule().local == posts_pb2.LocalDateTime(
        date_time="2027-03-28T02:30:00", time_zone=BERLIN
    )


@pytest.mark.parametrize(
    "text",
    ["tomorrow", "14:00", "2026-11-25", "2026-13-01 10:00", "2026-11-31 10:00", "in 5 weeks", ""],
)
def test_unreadable_times_say_which_formats_are_accepted(text: str) -> None:
    with pytest.raises(WhenError) as caught:
        parse_when(text, BERLIN)

    message = str(caught.value)
    assert repr(text) in message
    assert "in 10s" in message or "not a valid date" in message


def test_a_local_time_in_an_unknown_zone_is_refused() -> None:
    with pytest.raises(WhenError, match="unknown time zone 'Mars/Olympus'"):
        parse_when("2026-11-25 14:00", "Mars/Olympus")


def test_parse_instant_reads_local_times_in_the_zone_and_refuses_gaps() -> None:
    assert parse_instant("2026-11-25T14:00:00Z", BERLIN) == datetime(2026, 11, 25, 14, tzinfo=UTC)
    assert parse_instant("2026-11-25 14:00", BERLIN) == datetime(2026, 11, 25, 13, tzinfo=UTC)
    # The repeated hour when clocks go back: the earlier instant, still on summer time.
    assert parse_instant("2027-10-31 02:30", BERLIN) == datetime(2027, 10, 31, 0, 30, tzinfo=UTC)
    with pytest.raises(WhenError, match="does not exist in Europe/Berlin"):
        parse_instant("2027-03-28 02:30", BERLIN)
    with pytest.raises(WhenError, match="ISO 8601"):
        parse_instant("next week", BERLIN)


def test_times_show_in_the_zone_with_its_abbreviation_across_dst() -> None:
    zone = ZoneInfo(BERLIN)
    winter = datetime(2026, 11, 25, 13, 5, tzinfo=UTC)
    summer = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)

    assert show(winter, zone, now=NOW) == "Wed 25 Nov 14:05:00 CET"
    assert show(summer, zone, now=NOW) == "Wed 01 Jul 14:00:00 CEST"
    assert show(datetime(2027, 3, 28, 1, 0, tzinfo=UTC), zone, now=NOW) == (
        "Sun 28 Mar 2027 03:00:00 CEST"
    )
    assert show(winter, ZoneInfo("America/New_York"), now=NOW) == "Wed 25 Nov 08:05:00 EST"


def test_unset_timestamps_show_as_a_dash() -> None:
    stamp = Timestamp()
    assert show(stamp, ZoneInfo(BERLIN)) == "-"
    assert show(None, ZoneInfo(BERLIN)) == "-"
    stamp.FromDatetime(datetime(2026, 11, 25, 13, 5, tzinfo=UTC))
    assert show(stamp, ZoneInfo(BERLIN), now=NOW) == "Wed 25 Nov 14:05:00 CET"


def test_the_local_zone_comes_from_tz_when_it_names_a_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    assert local_zone_name() == "Asia/Tokyo"
    monkeypatch.setenv("TZ", ":America/Sao_Paulo")
    assert local_zone_name() == "America/Sao_Paulo"
    monkeypatch.setenv("TZ", "Not/AZone")
    ZoneInfo(local_zone_name())  # falls back to the machine's zone, or UTC; never fails
