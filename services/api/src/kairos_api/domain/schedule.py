"""When a post publishes: turning a wall-clock time in an IANA zone into one UTC instant, and the
rules a schedule must keep (not in the past, a sane `stale_after`).

Daylight-saving changes make some wall times impossible and others ambiguous. Kairos refuses the
impossible ones (a client should know its 02:30 does not exist) and settles the ambiguous ones by
one documented rule: the earlier instant. Pure Python and `zoneinfo`; the `tzdata` package makes
every zone available on every host.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from kairos_common.errors import InvalidArgument

DEFAULT_PAST_TOLERANCE = timedelta(seconds=60)
"""How far in the past a schedule may be and still be accepted (as "now"): covers a client clock a
little behind ours and the time a request spends in flight."""

MAX_STALE_AFTER = timedelta(days=7)
"""Longest `stale_after` accepted. A post that could not go out for a week is almost never still
wanted, and the bound keeps a forgotten post from publishing months late after an outage."""

# ISO 8601 calendar date and time, seconds optional, fraction optional, then an optional offset
# that is only captured so the error can say precisely what is wrong. A space instead of "T" is
# accepted because people type it and it cannot mean anything else.
_LOCAL_DATE_TIME = re.compile(
    r"(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})[T ]"
    r"(?P<hour>\d{2}):(?P<minute>\d{2})"
    r"(?::(?P<second>\d{2})(?:[.,](?P<fraction>\d{1,9}))?)?"
    r"(?P<offset>Z|z|[+-]\d{2}(?::?\d{2})?)?"
)

_EXAMPLE = "2026-03-29T09:30:00"


def resolve_local_time(
    date_time: str, time_zone: str, *, field: str = "schedule.local"
) -> datetime:
    """The UTC instant at which the wall clock in `time_zone` shows `date_time`.

    `date_time` is ISO 8601 without an offset: `YYYY-MM-DDTHH:MM`, optionally `:SS` and a fraction
    of a second (digits past microseconds are dropped). `time_zone` is an IANA name such as
    `Europe/Berlin`. Returns an aware datetime in UTC.

    Daylight saving:

    - A wall time that does not exist (the clocks jump over it, e.g. 2026-03-29T02:30 in
      Europe/Berlin) is rejected, with the jump in the message, rather than silently moved.
    - A wall time that happens twice (the clocks go back, e.g. 2026-10-25T02:30 in Europe/Berlin)
      resolves to the EARLIER instant, the first time the clock shows it (`fold=0`; usually still
      on summer time, so 00:30 UTC for that example). Publishing at the first occurrence means a
      post is never an hour later than the author could have meant.

    Raises `InvalidArgument` on `{field}.date_time` (empty, malformed, carries an offset, does not
    exist in the zone, out of range) or `{field}.time_zone` (empty or unknown zone).
    """
    date_field = f"{field}.date_time"
    zone_field = f"{field}.time_zone"
    wall = parse_wall_time(date_time, date_field)
    zone = _load_zone(time_zone, zone_field)

    local = wall.replace(tzinfo=zone, fold=0)
    try:
        instant = local.astimezone(UTC)
        # zoneinfo maps a wall time inside a gap to some instant anyway; only the round trip
        # shows that no instant actually reads as this wall time in the zone.
        round_trip = instant.astimezone(zone).replace(tzinfo=None)
    except OverflowError:
        raise InvalidArgument.of(
            date_field, f"{date_time!r} in {time_zone} is outside the supported range of dates"
        ) from None
    if round_trip != wall:
        raise InvalidArgument.of(date_field, _describe_gap(wall, zone, time_zone))
    return instant


def check_time_zone(time_zone: str, field: str) -> ZoneInfo:
    """The zone an IANA name names; `InvalidArgument` on `field` when empty or unknown."""
    return _load_zone(time_zone, field)


def check_not_in_past(
    at: datetime,
    now: datetime,
    *,
    tolerance: timedelta = DEFAULT_PAST_TOLERANCE,
    field: str,
) -> None:
    """Reject a schedule more than `tolerance` before `now`; exactly `tolerance` before is accepted.

    Both datetimes must be timezone-aware (a naive one is a programming error: `ValueError`).
    """
    if at.tzinfo is None or now.tzinfo is None:
        raise ValueError("check_not_in_past needs timezone-aware datetimes")
    if tolerance < timedelta(0):
        raise ValueError("tolerance must not be negative")
    behind = now - at
    if behind > tolerance:
        raise InvalidArgument.of(
            field,
            f"{at.astimezone(UTC).isoformat()} is {_describe_duration(behind)} in the past; "
            f"a schedule may be at most {_describe_duration(tolerance)} in the past",
        )


def check_stale_after(value: timedelta, field: str = "stale_after") -> None:
    """Require `0 < value <= MAX_STALE_AFTER` (7 days).

    `stale_after` is how late a post may still go out after its instant; past it the post is
    MISSED. Zero or negative would make every post missed at once; more than a week would let a
    post publish long after it stopped making sense.
    """
    if value <= timedelta(0):
        raise InvalidArgument.of(
            field, f"must be positive, got {_describe_duration(value, signed=True)}"
        )
    if value > MAX_STALE_AFTER:
        raise InvalidArgument.of(
            field,
            f"must be at most {_describe_duration(MAX_STALE_AFTER)}, "
            f"got {_describe_duration(value)}",
        )


def parse_wall_time(date_time: str, field: str) -> datetime:
    if not date_time.strip():
        raise InvalidArgument.of(field, f"a local date and time is required, e.g. {_EXAMPLE!r}")
    match = _LOCAL_DATE_TIME.fullmatch(date_time)
    if match is None:
        raise InvalidArgument.of(
            field,
            f"{date_time!r} is not an ISO 8601 local date and time; "
            f"expected YYYY-MM-DDTHH:MM[:SS[.ffffff]], e.g. {_EXAMPLE!r}",
        )
    if match["offset"] is not None:
        raise InvalidArgument.of(
            field,
            f"{date_time!r} carries a UTC offset ({match['offset']!r}); give the wall-clock time "
            "without one and name the zone in time_zone, or schedule an exact instant instead",
        )
    # Pad then cut to six digits: datetime holds microseconds, and a nanosecond is no scheduling
    # precision anyone relies on.
    microsecond = int((match["fraction"] or "0").ljust(6, "0")[:6])
    try:
        return datetime(
            int(match["year"]),
            int(match["month"]),
            int(match["day"]),
            int(match["hour"]),
            int(match["minute"]),
            int(match["second"] or 0),
            microsecond,
        )
    except ValueError as error:
        raise InvalidArgument.of(
            field, f"{date_time!r} is not a valid date and time: {error}"
        ) from None


def _load_zone(time_zone: str, field: str) -> ZoneInfo:
    if not time_zone.strip():
        raise InvalidArgument.of(
            field, "an IANA time zone is required, e.g. 'Europe/Berlin' or 'UTC'"
        )
    # "localtime" is a file on many hosts naming the server's own zone, not an IANA zone: a post
    # must not change instant because it was stored on a differently configured machine.
    if time_zone != "localtime":
        try:
            return ZoneInfo(time_zone)
        # ZoneInfo raises a KeyError subclass for a missing name, ValueError for a path-like or
        # malformed key, and OSError when the key names a directory such as "Europe".
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    message = f"unknown time zone {time_zone!r}; use an IANA name such as 'Europe/Berlin'"
    suggestion = _case_insensitive_match(time_zone)
    if suggestion is not None:
        message += f" (did you mean {suggestion!r}?)"
    raise InvalidArgument.of(field, message)


def _case_insensitive_match(time_zone: str) -> str | None:
    wanted = time_zone.strip().casefold()
    for name in available_timezones():
        if name.casefold() == wanted and name != "localtime":
            return name
    return None


def _describe_gap(wall: datetime, zone: ZoneInfo, zone_name: str) -> str:
    # With fold=0 and fold=1 zoneinfo puts the missing wall time on either side of the
    # transition; the transition instant lies between those two instants.
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    before, after = min(first, second), max(first, second)
    offset_before = before.astimezone(zone).utcoffset()
    offset_after = after.astimezone(zone).utcoffset()
    # Transitions fall on whole seconds, so bisecting to one second finds the exact jump.
    low, high = before, after
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).utcoffset() == offset_before:
            low = middle
        else:
            high = middle
    transition = high.replace(microsecond=0)
    jump_from = transition.astimezone(zone).replace(tzinfo=None) - (
        (offset_after or timedelta(0)) - (offset_before or timedelta(0))
    )
    jump_to = transition.astimezone(zone).replace(tzinfo=None)
    if jump_from.date() == jump_to.date():
        jump = (
            f"on {jump_to.date().isoformat()} the clocks jump from "
            f"{_clock(jump_from)} to {_clock(jump_to)}"
        )
    else:
        jump = (
            f"the clocks jump from {jump_from.date().isoformat()} {_clock(jump_from)} "
            f"to {jump_to.date().isoformat()} {_clock(jump_to)}"
        )
    return (
        f"{wall.isoformat()} does not exist in {zone_name}: {jump} "
        f"(UTC{_offset(offset_before)} to UTC{_offset(offset_after)}); "
        "choose a time outside that gap"
    )


def _clock(moment: datetime) -> str:
    return moment.strftime("%H:%M:%S" if moment.second else "%H:%M")


def _offset(offset: timedelta | None) -> str:
    seconds = int((offset or timedelta(0)).total_seconds())
    sign = "-" if seconds < 0 else "+"
    hours, rest = divmod(abs(seconds), 3600)
    minutes, seconds = divmod(rest, 60)
    text = f"{sign}{hours:02d}:{minutes:02d}"
    return f"{text}:{seconds:02d}" if seconds else text


def _describe_duration(value: timedelta, *, signed: bool = False) -> str:
    """Human wording such as "2 hours 5 minutes" or "1.5 seconds", for error messages."""
    sign = "-" if signed and value < timedelta(0) else ""
    remaining = abs(value)
    parts: list[str] = []
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        count, rest = divmod(remaining, timedelta(seconds=size))
        if count:
            parts.append(f"{count} {unit}{'s' if count != 1 else ''}")
        remaining = rest
    seconds = remaining.total_seconds()
    if seconds or not parts:
        # Six decimals: a timedelta holds microseconds, and rounding could print a value that
        # contradicts the limit it is compared with.
        number = f"{seconds:.6f}".rstrip("0").rstrip(".") or "0"
        parts.append(f"{number} second{'' if number == '1' else 's'}")
    return sign + " ".join(parts)
