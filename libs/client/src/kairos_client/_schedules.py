"""Building `Schedule` messages: at a UTC instant, at a wall-clock time in an IANA zone, a
delay after the api receives the request, or the next free slot of the accounts' queues."""

from __future__ import annotations

from datetime import datetime, timedelta

from kairos.posts.v1 import posts_pb2


def schedule_at(instant: datetime) -> posts_pb2.Schedule:
    """A schedule at an exact instant; `instant` must be timezone-aware."""
    if instant.tzinfo is None:
        raise ValueError("schedule_at needs a timezone-aware datetime")
    schedule = posts_pb2.Schedule()
    schedule.at.FromDatetime(instant)
    return schedule


def schedule_local(date_time: str, time_zone: str) -> posts_pb2.Schedule:
    """A schedule at a wall-clock time ("2026-11-25T14:00:00") in an IANA zone; the server
    applies the zone's daylight-saving rules (and refuses a time inside a gap)."""
    return posts_pb2.Schedule(
        local=posts_pb2.LocalDateTime(date_time=date_time, time_zone=time_zone)
    )


def schedule_after(delay: timedelta) -> posts_pb2.Schedule:
    """A schedule `delay` after the api receives the request, by the api's clock. A create
    repeated with the same request_id is compared by the delay, so a retry of "in 2h" returns
    the first post."""
    if delay < timedelta(0):
        raise ValueError("schedule_after needs a delay that is not negative")
    schedule = posts_pb2.Schedule()
    schedule.after.FromTimedelta(delay)
    return schedule


def schedule_queue(
    not_before: datetime | None = None, *, per_target: bool = False
) -> posts_pb2.Schedule:
    """Add to queue: the next slot free on every account the post targets (their weekly slots,
    QueueService), from `not_before` (timezone-aware) or from now; `per_target`: each target at
    its own account's next free slot."""
    schedule = posts_pb2.Schedule(queue=posts_pb2.QueueSchedule(per_target=per_target))
    if not_before is not None:
        if not_before.tzinfo is None:
            raise ValueError("schedule_queue needs a timezone-aware datetime")
        schedule.queue.not_before.FromDatetime(not_before)
    return schedule
