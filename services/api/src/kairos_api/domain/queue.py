"""Posting queues: an account's weekly slots in an IANA zone, and the instants they fall on.

A slot is a weekday and a wall-clock time; it keeps that wall-clock time across daylight-saving
changes. On the night the clocks jump forward a slot inside the gap falls at the instant of the
jump, which reads as the time after the gap (02:30 becomes 03:30 in Europe/Berlin, as RFC 5545
moves such times); on the night they go back, a slot in the repeated hour falls at its earlier
instant, as `schedule.resolve_local_time` settles ambiguous times. Pure Python and `zoneinfo`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from kairos_api.domain import schedule
from kairos_common.errors import FieldViolation, InvalidArgument

MAX_SLOTS = 200
"""Most weekly slots an account may have (a slot every hour of a week is 168)."""

SEARCH_HORIZON = timedelta(days=366)
"""How far ahead a free slot is looked for before the queue is called full."""

_TIME = re.compile(r"(?P<hour>\d{2}):(?P<minute>\d{2})")


@dataclass(frozen=True, order=True)
class Slot:
    """A weekly slot: ISO weekday (1 Monday to 7 Sunday) and wall-clock minute of the day."""

    weekday: int
    minute: int

    @property
    def time_text(self) -> str:
        return f"{self.minute // 60:02d}:{self.minute % 60:02d}"


@dataclass(frozen=True)
class WeeklySlots:
    """An account's slots and the zone their times are in."""

    time_zone: str
    slots: tuple[Slot, ...]

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def instants(self, start: datetime, until: datetime) -> Iterator[datetime]:
        """The slots' UTC instants from `start` (included) to `until` (excluded), in order,
        each once."""
        zone = self.zone
        by_weekday: dict[int, list[int]] = {}
        for slot in self.slots:
            by_weekday.setdefault(slot.weekday, []).append(slot.minute)
        # A day before the start's local date: its late slots may still lie after the start.
        day = start.astimezone(zone).date() - timedelta(days=1)
        last_day = until.astimezone(zone).date() + timedelta(days=1)
        seen: set[datetime] = set()
        pending: list[datetime] = []
        while day <= last_day:
            today = sorted(
                {slot_instant(day, minute, zone) for minute in by_weekday.get(day.isoweekday(), [])}
            )
            if today:
                # Offsets change by hours at most, so a day's instants never come before the
                # day before's; the merge only keeps that true should a zone ever do otherwise.
                ready = [i for i in pending if i < today[0]]
                pending = sorted([i for i in pending if i >= today[0]] + today)
                for instant in ready:
                    if start <= instant < until and instant not in seen:
                        seen.add(instant)
                        yield instant
            day += timedelta(days=1)
        for instant in pending:
            if start <= instant < until and instant not in seen:
                seen.add(instant)
                yield instant

    def is_slot(self, instant: datetime) -> bool:
        """Whether `instant` is one of the slots' instants."""
        around = timedelta(days=2)
        return instant in set(self.instants(instant - around, instant + around))

    def local_text(self, instant: datetime) -> str:
        """The instant as the queue's wall clock shows it, ISO 8601 without offset."""
        return instant.astimezone(self.zone).replace(tzinfo=None).isoformat(timespec="minutes")


def slot_instant(day: date, minute: int, zone: ZoneInfo) -> datetime:
    """The UTC instant of a wall-clock minute on a local day.

    `fold=0` gives the earlier instant of a repeated time, and for a time inside a gap uses the
    offset from before the jump, which lands on the jump itself read after it (02:30 -> 03:30).
    """
    wall = datetime.combine(day, time(minute // 60, minute % 60), tzinfo=zone).replace(fold=0)
    return wall.astimezone(UTC)


def parse_slots(
    time_zone: str, slots: Sequence[tuple[int, str]], *, field: str = "slots"
) -> WeeklySlots:
    """Check a zone and (weekday, "HH:MM") pairs; every bad one is a field violation.

    Raises `InvalidArgument` naming `time_zone` or `slots[i].weekday` / `slots[i].time`.
    """
    violations: list[FieldViolation] = []
    zone_name = ""
    if slots or time_zone:
        try:
            schedule.check_time_zone(time_zone, "time_zone")
            zone_name = time_zone
        except InvalidArgument as error:
            violations.extend(error.violations)
    if len(slots) > MAX_SLOTS:
        violations.append(FieldViolation(field, f"at most {MAX_SLOTS} slots, got {len(slots)}"))
    parsed: list[Slot] = []
    seen: dict[Slot, int] = {}
    for index, (weekday, text) in enumerate(slots):
        ok = True
        if not 1 <= weekday <= 7:
            violations.append(
                FieldViolation(
                    f"{field}[{index}].weekday", "a day from Monday to Sunday is required"
                )
            )
            ok = False
        match = _TIME.fullmatch(text)
        minute = 0
        if match is None or int(match["hour"]) > 23 or int(match["minute"]) > 59:
            violations.append(
                FieldViolation(
                    f"{field}[{index}].time",
                    f"{text!r} is not a time of day as HH:MM, e.g. '09:00'",
                )
            )
            ok = False
        else:
            minute = int(match["hour"]) * 60 + int(match["minute"])
        if not ok:
            continue
        slot = Slot(weekday, minute)
        if slot in seen:
            violations.append(
                FieldViolation(f"{field}[{index}]", f"the same slot as {field}[{seen[slot]}]")
            )
            continue
        seen[slot] = index
        parsed.append(slot)
    if violations:
        raise InvalidArgument.collect(violations)
    return WeeklySlots(zone_name, tuple(sorted(parsed)))


def first_common_free(
    queues: Sequence[WeeklySlots],
    taken: Sequence[set[datetime]],
    start: datetime,
    *,
    horizon: timedelta = SEARCH_HORIZON,
) -> datetime | None:
    """The earliest instant from `start` that is a slot of every queue and not in its `taken`
    set, within `horizon`; None when there is none."""
    if not queues:
        return None
    until = start + horizon
    others = [set(q.instants(start, until)) for q in queues[1:]]
    for instant in queues[0].instants(start, until):
        if instant in taken[0]:
            continue
        if all(instant in slots for slots in others) and all(
            instant not in held for held in taken[1:]
        ):
            return instant
    return None
