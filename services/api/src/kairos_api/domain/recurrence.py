"""Recurrence rules of series: RFC 5545 RRULE and EXDATE text, evaluated on the wall clock of an
IANA zone with python-dateutil's rrule, and each occurrence resolved to one UTC instant.

The rule runs on naive wall-clock times (DTSTART is a local time), so 09:00 in Europe/Berlin
stays 09:00 across both daylight-saving changes. A wall time is then resolved as RFC 5545
§3.3.5 says: one the clocks jump over takes the offset from before the jump (02:30 on the
spring-forward night happens at 03:30, as long after the jump as it was meant after 02:00), and
one that happens twice takes the earlier instant, as single posts do.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import cast
from zoneinfo import ZoneInfo

from dateutil import rrule

from kairos_api.domain.schedule import check_time_zone, parse_wall_time
from kairos_common.errors import FieldViolation, InvalidArgument

#: Closest two occurrences may be: a denser rule is almost always a mistake, and it would make
#: thousands of posts a horizon ahead.
MIN_GAP = timedelta(minutes=15)
#: How many occurrences the density check and the "yields nothing" check look at.
_CHECKED = 500
_REFUSED_FREQ = {"SECONDLY", "MINUTELY"}
_FREQS = {"YEARLY", "MONTHLY", "WEEKLY", "DAILY", "HOURLY"}
_WALL = re.compile(r"(\d{8})T(\d{6})")
_UNTIL_UTC = re.compile(r"(\d{8}T\d{6})Z")
_UNTIL = re.compile(r"\d{8}(T\d{6}Z?)?")
#: How far before the request a series may start, and how far after.
START_BEFORE = timedelta(days=366)
START_AFTER = timedelta(days=3650)
MAX_INTERVAL = 1000
MAX_COUNT = 100_000
#: The longest each month can be, for the cheap check of rules that never happen (dateutil
#: would walk every day up to year 9999 to find nothing).
_MONTH_DAYS = {
    1: 31,
    2: 29,
    3: 31,
    4: 30,
    5: 31,
    6: 30,
    7: 31,
    8: 31,
    9: 30,
    10: 31,
    11: 30,
    12: 31,
}
#: What evaluating a rule may raise for settings dateutil cannot follow.
_RULE_ERRORS = (ValueError, TypeError, IndexError, KeyError, OverflowError)


def wall_text(wall: datetime) -> str:
    """RFC 5545 DATE-TIME without offset: 20270315T090000."""
    return wall.strftime("%Y%m%dT%H%M%S")


def instant_of(wall: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant of a wall time in `zone` (RFC 5545 §3.3.5: the offset before a jump for
    a time that does not exist, the earlier instant for one that happens twice)."""
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)


@dataclass(frozen=True)
class Recurrence:
    """A validated rule: RRULE parts in order, EXDATEs, DTSTART on the wall clock, the zone."""

    parts: tuple[tuple[str, str], ...]
    exdates: tuple[datetime, ...]
    start: datetime
    time_zone: str

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    @property
    def text(self) -> str:
        """The rule as stored and shown: an RRULE line, then an EXDATE line if any."""
        line = "RRULE:" + ";".join(f"{key}={value}" for key, value in self.parts)
        if self.exdates:
            line += "\nEXDATE:" + ",".join(wall_text(d) for d in sorted(self.exdates))
        return line

    @property
    def start_local(self) -> str:
        return self.start.isoformat()

    def _set(self) -> rrule.rruleset:
        rules = rrule.rruleset()
        line = self.text.splitlines()[0]
        rules.rrule(cast(rrule.rrule, rrule.rrulestr(line, dtstart=self.start)))
        for day in self.exdates:
            rules.exdate(day)
        return rules

    def walls(self) -> Iterator[datetime]:
        """Every occurrence's wall time, in order (possibly without end)."""
        return iter(self._set())

    def between(self, after: datetime, before: datetime) -> list[tuple[datetime, datetime]]:
        """(instant, wall time) of the occurrences with `after <= instant < before` (UTC)."""
        zone = self.zone
        # A day of slack either side: wall times and instants differ by less than that.
        low = after.astimezone(zone).replace(tzinfo=None) - timedelta(days=1)
        high = before.astimezone(zone).replace(tzinfo=None) + timedelta(days=1)
        found = []
        for wall in self._set().between(low, high, inc=True):
            instant = instant_of(wall, zone)
            if after <= instant < before:
                found.append((instant, wall))
        return found

    def first(self, count: int, after: datetime | None = None) -> list[tuple[datetime, datetime]]:
        """The first `count` (instant, wall time) at or after `after` (UTC), if given."""
        zone = self.zone
        pairs = ((instant_of(w, zone), w) for w in self.walls())
        if after is not None:
            pairs = (p for p in pairs if p[0] >= after)
        return list(itertools.islice(pairs, count))

    def without(self, wall: datetime) -> Recurrence:
        """This rule with one more EXDATE."""
        return replace(self, exdates=tuple(sorted({*self.exdates, wall})))

    def ending_before(self, wall: datetime) -> Recurrence:
        """This rule cut so that its last occurrence is before `wall` (COUNT becomes UNTIL)."""
        parts = [(k, v) for k, v in self.parts if k not in ("COUNT", "UNTIL")]
        parts.append(("UNTIL", wall_text(wall - timedelta(seconds=1))))
        return replace(self, parts=tuple(parts))

    def starting_at(self, wall: datetime) -> Recurrence:
        """The part of this rule from the occurrence at `wall` on, as a rule of its own."""
        parts = []
        for key, value in self.parts:
            if key == "COUNT":
                before = sum(1 for _ in itertools.takewhile(lambda w: w < wall, self.walls()))
                value = str(max(int(value) - before, 1))
            parts.append((key, value))
        return replace(
            self,
            parts=tuple(parts),
            start=wall,
            exdates=tuple(d for d in self.exdates if d >= wall),
        )


def parse_recurrence(
    rule_text: str, start: str, time_zone: str, field: str, *, now: datetime | None = None
) -> Recurrence:
    """Validate `rule_text` (RFC 5545, see the module notes) from `start` (a wall-clock time) in
    `time_zone`; every mistake is a field violation under `field` (`.rule`, `.start.date_time`,
    `.start.time_zone`). With `now`, the start must be at most a year before it and ten years
    after it (stored rules are read again without)."""
    violations: list[FieldViolation] = []
    wall: datetime | None = None
    zone_name = time_zone
    try:
        wall = parse_wall_time(start, f"{field}.start.date_time")
    except InvalidArgument as error:
        violations.extend(error.violations)
    zone: ZoneInfo | None = None
    try:
        zone = check_time_zone(time_zone, f"{field}.start.time_zone")
    except InvalidArgument as error:
        violations.extend(error.violations)
    rule_field = f"{field}.rule"
    parts: list[tuple[str, str]] = []
    exdates: list[datetime] = []
    try:
        parts, exdates = _parse_lines(rule_text, zone)
    except ValueError as error:
        violations.append(FieldViolation(rule_field, str(error)))
    if wall is not None and zone is not None and now is not None:
        # Compared on the wall clock: near year 9999 the UTC instant may not exist.
        local_now = now.astimezone(zone).replace(tzinfo=None)
        if not local_now - START_BEFORE <= wall <= local_now + START_AFTER:
            violations.append(
                FieldViolation(
                    f"{field}.start.date_time",
                    f"{start!r} is more than a year before now or ten years after it",
                )
            )
    if violations or wall is None or zone is None:
        raise InvalidArgument.collect(violations)
    recurrence = Recurrence(tuple(parts), tuple(sorted(set(exdates))), wall, zone_name)
    try:
        walls = list(itertools.islice(recurrence.walls(), _CHECKED))
    except _RULE_ERRORS as error:
        raise InvalidArgument.of(rule_field, f"is not a valid RRULE: {error}") from None
    if not walls:
        raise InvalidArgument.of(rule_field, f"yields no occurrence from {wall.isoformat()} on")
    for earlier, later in itertools.pairwise(walls):
        if later - earlier < MIN_GAP:
            raise InvalidArgument.of(
                rule_field,
                f"repeats too often: {earlier.isoformat()} and {later.isoformat()} are less "
                f"than {int(MIN_GAP.total_seconds() // 60)} minutes apart",
            )
    return recurrence


def _parse_lines(text: str, zone: ZoneInfo | None) -> tuple[list[tuple[str, str]], list[datetime]]:
    # RFC 5545 folds long lines with CRLF and one space or tab; unfold before reading.
    unfolded = re.sub(r"\r?\n[ \t]", "", text.strip())
    if not unfolded:
        raise ValueError("a rule is required, e.g. 'FREQ=WEEKLY;BYDAY=MO'")
    rules: list[str] = []
    exdates: list[datetime] = []
    for line in unfolded.splitlines():
        line = line.strip()
        if not line:
            continue
        name, colon, value = line.partition(":")
        name = name.upper()
        if not colon and "=" in line:
            rules.append(line)
        elif name == "RRULE":
            rules.append(value)
        elif name.split(";")[0] == "EXDATE":
            if ";" in name and name.split(";", 1)[1] != "VALUE=DATE-TIME":
                raise ValueError(
                    "EXDATE takes wall-clock times in the series' zone, without TZID or VALUE"
                )
            exdates.extend(_exdate(item.strip()) for item in value.split(","))
        else:
            raise ValueError(f"only RRULE and EXDATE lines are accepted, not {name!r}")
    if len(rules) != 1:
        raise ValueError(f"needs exactly one RRULE, found {len(rules)}")
    return _rule_parts(rules[0], zone), exdates


def _exdate(value: str) -> datetime:
    match = _WALL.fullmatch(value)
    if match is None:
        raise ValueError(
            f"EXDATE {value!r} is not a wall-clock time such as 20270315T090000 (no Z: it is "
            "read in the series' zone)"
        )
    try:
        return datetime.strptime(value, "%Y%m%dT%H%M%S")
    except ValueError:
        raise ValueError(f"EXDATE {value!r} is not a valid date and time") from None


def _rule_parts(value: str, zone: ZoneInfo | None) -> list[tuple[str, str]]:
    parts: list[tuple[str, str]] = []
    for item in value.strip().strip(";").split(";"):
        key, equals, setting = item.partition("=")
        key = key.strip().upper()
        if not equals or not key or not setting.strip():
            raise ValueError(f"{item!r} is not NAME=VALUE")
        setting = setting.strip().upper()
        if key == "DTSTART":
            raise ValueError("DTSTART is not part of the rule: give it as `start`")
        if key in (k for k, _ in parts):
            raise ValueError(f"{key} is given twice")
        if key == "INTERVAL":
            _bounded_number(key, setting, MAX_INTERVAL)
        if key == "COUNT":
            _bounded_number(key, setting, MAX_COUNT)
        if key == "UNTIL" and (
            _UNTIL.fullmatch(setting) is None or not "1900" <= setting[:4] <= "9000"
        ):
            raise ValueError(
                f"UNTIL={setting} is not a date-time such as 20270630T090000 "
                "(local) or 20270630T070000Z (UTC) in years 1900-9000"
            )
        if key == "UNTIL" and zone is not None:
            until = _UNTIL_UTC.fullmatch(setting)
            if until is not None:
                # A UTC UNTIL becomes the wall time it is in the zone: the rule is evaluated
                # on the wall clock.
                moment = datetime.strptime(until[1], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
                setting = wall_text(moment.astimezone(zone).replace(tzinfo=None))
        parts.append((key, setting))
    names = [k for k, _ in parts]
    freq = dict(parts).get("FREQ")
    if freq is None:
        raise ValueError("FREQ is required, e.g. 'FREQ=WEEKLY;BYDAY=MO'")
    if freq in _REFUSED_FREQ:
        raise ValueError(f"FREQ={freq} is not accepted: posts repeat at most every 15 minutes")
    if freq not in _FREQS:
        raise ValueError(f"FREQ={freq} is unknown; use YEARLY, MONTHLY, WEEKLY, DAILY or HOURLY")
    if "BYSECOND" in names:
        raise ValueError("BYSECOND is not accepted")
    for key, setting in parts:
        _check_by_list(key, setting, freq)
    if {"BYYEARDAY", "BYWEEKNO"} & set(names) and {"BYMONTH", "BYMONTHDAY"} & set(names):
        # Mostly combinations that never happen, which dateutil only finds out at year 9999.
        raise ValueError("BYYEARDAY and BYWEEKNO do not combine with BYMONTH or BYMONTHDAY")
    if "COUNT" in names and "UNTIL" in names:
        raise ValueError("COUNT and UNTIL cannot both be given")
    _refuse_impossible_days(dict(parts))
    return parts


#: RFC 5545's ranges of the numeric BYxxx lists: (lowest, highest, whether negatives count
#: from the end). dateutil does not check them all, and walks to year 9999 looking for a
#: February 30th or a 400th hour of an hour.
_BY_RANGES = {
    "BYMONTH": (1, 12, False),
    "BYMONTHDAY": (1, 31, True),
    "BYYEARDAY": (1, 366, True),
    "BYWEEKNO": (1, 53, True),
    "BYHOUR": (0, 23, False),
    "BYMINUTE": (0, 59, False),
}
#: The most candidates a period can offer BYSETPOS to pick from, by FREQ.
_SETPOS_MOST = {"YEARLY": 366, "MONTHLY": 31, "WEEKLY": 7}
_BYDAY = re.compile(r"([+-]?)(\d{1,2})?(MO|TU|WE|TH|FR|SA|SU)")


def _check_by_list(key: str, value: str, freq: str) -> None:
    if key in _BY_RANGES:
        lowest, highest, signed = _BY_RANGES[key]
        for item in value.split(","):
            number = _integer(key, item)
            if not (lowest <= number <= highest or (signed and -highest <= number <= -lowest)):
                span = f"{lowest} to {highest}" + (f" or -{highest} to -{lowest}" if signed else "")
                raise ValueError(f"{key} takes {span}, not {item}")
    elif key == "BYSETPOS":
        most = _SETPOS_MOST.get(freq)
        if most is None:
            raise ValueError("BYSETPOS goes with FREQ=YEARLY, MONTHLY or WEEKLY")
        for item in value.split(","):
            if not 1 <= abs(_integer(key, item)) <= most:
                raise ValueError(f"BYSETPOS with FREQ={freq} takes 1 to {most} or -{most} to -1")
    elif key == "BYDAY":
        for item in value.split(","):
            match = _BYDAY.fullmatch(item)
            if match is None:
                raise ValueError(f"BYDAY takes days such as MO, 1MO or -1FR, not {item!r}")
            if match[2] is not None:
                most = 5 if freq == "MONTHLY" else 53
                if freq not in ("MONTHLY", "YEARLY") or not 1 <= int(match[2]) <= most:
                    raise ValueError(
                        f"BYDAY {item}: a numbered day goes with FREQ=MONTHLY (1-5) or YEARLY "
                        "(1-53)"
                    )


def _integer(key: str, item: str) -> int:
    try:
        return int(item)
    except ValueError:
        raise ValueError(f"{key} takes whole numbers, not {item!r}") from None


def _bounded_number(key: str, value: str, most: int) -> None:
    if not value.isdigit() or not 1 <= int(value) <= most:
        raise ValueError(f"{key} must be a whole number from 1 to {most}, got {value!r}")


def _numbers(value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(item) for item in value.split(",")]
    except ValueError:
        return None  # dateutil says what is wrong with it


def _refuse_impossible_days(parts: dict[str, str]) -> None:
    """BYMONTH with BYMONTHDAY days none of those months has (February 30th) never happens."""
    months = _numbers(parts.get("BYMONTH"))
    days = _numbers(parts.get("BYMONTHDAY"))
    if months is None or days is None or not all(1 <= m <= 12 for m in months):
        return
    if all(abs(day) > _MONTH_DAYS[month] for month in months for day in days):
        raise ValueError("never happens: none of those months has those days")
