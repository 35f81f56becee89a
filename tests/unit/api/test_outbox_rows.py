"""Outbox rows carry the lifecycle event as clients decode it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from kairos.events.v1 import events_pb2
from kairos.posts.v1 import posts_pb2
from kairos_api.adapters import outbox
from kairos_api.domain.model import PostStatus, TargetStatus


@pytest.mark.parametrize(
    "instant",
    [
        datetime(2026, 12, 6, 15, 40, 1, 123456, tzinfo=UTC),
        datetime(2026, 12, 6, 16, 40, 1, 999999, tzinfo=UTC) - timedelta(hours=1),
        datetime(1999, 12, 31, 23, 59, 59, 999999),  # naive: UTC
        datetime(1960, 5, 1, 1, 2, 3, 4, tzinfo=UTC),  # before the epoch
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ],
)
@pytest.mark.usefixtures("away_from_utc")
def test_the_event_records_the_instant_it_occurred(instant: datetime) -> None:
    row = outbox.lifecycle_row(
        "published",
        tenant_id="tenant-1",
        post_id="01a24bf3-dc62-7386-886b-b9b233182fee",
        post_status=PostStatus.PUBLISHED,
        revision=3,
        target_id="01a24bf3-dc62-750e-87ce-f2743ae741a1",
        target_status=TargetStatus.PUBLISHED,
        now=instant,
    )
    event = events_pb2.LifecycleEvent.FromString(row["payload"])
    expected = Timestamp()
    expected.FromDatetime(instant)
    assert event.occurred_at == expected
    assert event.occurred_at.ToDatetime(tzinfo=UTC) == (
        instant if instant.tzinfo else instant.replace(tzinfo=UTC)
    )
    assert event.type == events_pb2.LIFECYCLE_EVENT_TYPE_PUBLISHED
    assert event.post_status == posts_pb2.POST_STATUS_PUBLISHED
    assert event.target_status == posts_pb2.TARGET_STATUS_PUBLISHED
    assert (event.event_id, event.revision) == (str(row["event_id"]), 3)
