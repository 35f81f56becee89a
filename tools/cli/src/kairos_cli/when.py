"""Times on the command line: reading `--at WHEN`, finding the local zone, showing instants.

WHEN is one of:

- an instant with an offset or Z: "2026-11-25T14:00:00Z", "2026-11-25T14:00+01:00";
- a wall-clock time without offset: "2026-11-25 14:00", "2026-11-25T14:00:30", read in the
  given IANA zone and sent as such (`Schedule.local`), so that the server applies the zone's
  daylight-saving rules: it refuses a time inside a gap and takes the earlier of a repeated hour;
- a time from now: "in 10s", "in 5m", "in 2h", "in 1d", "+30s", "in 1h30m", sent as a delay
  (`Schedule.after`) that the api resolves by its own clock, so that a create repeated with the
  same --request-id is the same request (an instant computed here would differ each time);
- "now": publish at once.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from google.protobuf.timestamp_pb2 import Timestamp

from kairos.posts.v1 import posts_pb2

FORMATS = (
    'an instant with offset ("2026-11-25T14:00:00Z", "2026-11-25T14:00+01:00"), '
    'a local time ("2026-11-25 14:00", read in --tz), '
    'a time from now ("in 10s", "in 5m", "in 2h", "+30s") or "now"'
)

_LOCAL = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2}))?"
)
_RELATIVE = re.compile(r"(?:in\s+|\+)(?P<parts>(?:\d+\s*[smhd]\s*)+)", re.IGNORECASE)
_PART = re.compile(r"(\d+)\s*([smhd])", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class WhenError(ValueError):
    """WHEN (or a zone) is not something this command line understands."""


@dataclass(frozen=True)
class When:
    """A parsed WHEN: publish `now`, at an `instant`, at a `wall_time` in `zone`, or `after` a
    delay from when the api receives the request."""

    now: bool = False
    instant: datetime | None = None
    wall_time: str = ""
    zone: str = ""
    after: timedelta | None = None

    def fixed(self, now: datetime | None = None) -> When:
        """This WHEN with a delay made an instant from `now` (for several calls that must share
        one instant, such as the parts of a thread)."""
        if self.after is None:
            return self
        return When(instant=(now or datetime.now(UTC)) + self.after)

    def schedule(self) -> posts_pb2.Schedule:
        """The Schedule to send; "now" has none (it is a PublishNow)."""
        if self.instant is not None:
            stamp = Timestamp()
            stamp.FromDatetime(self.instant)
            return posts_pb2.Schedule(at=stamp)
        if self.after is not None:
            schedule = posts_pb2.Schedule()
            schedule.after.FromTimedelta(self.after)
            return schedule
        if self.wall_time:
            return posts_pb2.Schedule(
                local=posts_pb2.LocalDateTime(date_time=self.wall_time, time_zone=self.zone)
            )
        raise ValueError("'now' is published with PublishNow, not a schedule")


def parse_when(text: str, zone: str) -> When:
    """Read WHEN; `zone` (an IANA name) is the one a wall-clock time is in."""
    value = text.strip()
    if value.lower() == "now":
        return When(now=True)
    relative = _RELATIVE.fullmatch(value)
    if relative:
        seconds = sum(
            int(amount) * _UNITS[unit.lower()] for amount, unit in _PART.findall(relative["parts"])
        )
        return When(after=timedelta(seconds=seconds))
    local = _LOCAL.fullmatch(value)
    if local:
        load_zone(zone)
        second = local["second"] or "00"
        wall_time = f"{local['date']}T{local['hour']}:{local['minute']}:{second}"
        try:
            datetime.fromisoformat(wall_time)
        except ValueError:
            raise WhenError(f"{text!r} is not a valid date and time") from None
        return When(wall_time=wall_time, zone=zone)
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        instant = None
    if instant is not None and instant.tzinfo is not None and _LOCAL.match(value):
        return When(instant=instant.astimezone(UTC))
    raise WhenError(f"cannot read the time {text!r}; use {FORMATS}")


def parse_instant(text: str, zone: str) -> datetime:
    """An ISO 8601 instant; without an offset it is read as a wall time in `zone` (the earlier
    instant of a repeated hour; a time inside a gap is refused)."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise WhenError(
            f"cannot read the time {text!r}; use ISO 8601 such as 2026-11-25T14:00:00Z"
        ) from None
    if value.tzinfo is not None:
        return value.astimezone(UTC)
    tz = load_zone(zone)
    instant = value.replace(tzinfo=tz).astimezone(UTC)
    if instant.astimezone(tz).replace(tzinfo=None) != value:
        raise WhenError(f"{text!r} does not exist in {zone} (the clocks skip it)")
    return instant


def load_zone(name: str) -> ZoneInfo:
    """The IANA zone `name`, or WhenError."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise WhenError(
            f"unknown time zone {name!r}; use an IANA name such as Europe/Berlin or UTC"
        ) from None


def local_zone_name() -> str:
    """The IANA name of this machine's zone: $TZ, /etc/timezone or /etc/localtime, else UTC."""
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    with contextlib.suppress(OSError):
        candidates.append(Path("/etc/timezone").read_text().strip())
    try:
        target = str(Path("/etc/localtime").resolve())
    except OSError:
        target = ""
    if "zoneinfo/" in target:
        candidates.append(target.split("zoneinfo/", 1)[1])
    for name in candidates:
        if name and not name.startswith("/"):
            try:
                ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                continue
            return name
    return "UTC"


def to_datetime(stamp: Timestamp) -> datetime | None:
    """A Timestamp as an aware datetime; None when unset (all zeros)."""
    if stamp.seconds == 0 and stamp.nanos == 0:
        return None
    return stamp.ToDatetime(tzinfo=UTC)


def show(
    moment: Timestamp | datetime | None, zone: ZoneInfo, *, now: datetime | None = None
) -> str:
    """An instant as people read it in `zone`: "Wed 25 Nov 14:05:00 CET" (with the year when
    it is not this year's); "-" when unset."""
    value = to_datetime(moment) if isinstance(moment, Timestamp) else moment
    if value is None:
        return "-"
    local = value.astimezone(zone)
    this_year = (now or datetime.now(UTC)).astimezone(zone).year
    pattern = "%a %d %b %H:%M:%S %Z" if local.year == this_year else "%a %d %b %Y %H:%M:%S %Z"
    return local.strftime(pattern)
