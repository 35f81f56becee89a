"""convert.from_timestamp and convert.from_duration hold request values to protobuf's rules
(google/protobuf/timestamp.proto and duration.proto), which Python's conversions do not check
for a Duration at all."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from kairos_api.adapters import convert
from kairos_common.errors import InvalidArgument

MIN_SECONDS = -62_135_596_800  # 0001-01-01T00:00:00Z
MAX_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z
DURATION_SECONDS = 315_576_000_000  # 10,000 years


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        (Timestamp(seconds=MIN_SECONDS), datetime(1, 1, 1, tzinfo=UTC)),
        (
            Timestamp(seconds=MAX_SECONDS, nanos=999_999_999),
            datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        ),
        (
            Timestamp(seconds=-1, nanos=500_000_000),
            datetime(1969, 12, 31, 23, 59, 59, 500_000, UTC),
        ),
    ],
)
def test_timestamps_within_the_rules_are_read(stamp: Timestamp, expected: datetime) -> None:
    assert convert.from_timestamp(stamp, "at") == expected


@pytest.mark.parametrize(
    "stamp",
    [
        Timestamp(nanos=-1),
        Timestamp(nanos=10**9),
        Timestamp(seconds=MIN_SECONDS - 1),
        Timestamp(seconds=MAX_SECONDS + 1),
        Timestamp(seconds=-(2**63)),
    ],
    ids=["nanos -1", "nanos 10^9", "before year 1", "after year 9999", "least int64"],
)
def test_timestamps_breaking_the_rules_are_refused_on_their_field(stamp: Timestamp) -> None:
    with pytest.raises(InvalidArgument) as refused:
        convert.from_timestamp(stamp, "schedule.at")
    assert [v.field for v in refused.value.violations] == ["schedule.at"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Duration(seconds=60, nanos=999_999_999), timedelta(seconds=60, microseconds=999_999)),
        (Duration(seconds=-60, nanos=-999_999_999), -timedelta(seconds=60, microseconds=999_999)),
        (Duration(nanos=-1), timedelta(0)),  # toward zero, as protobuf converts
        (Duration(seconds=DURATION_SECONDS), timedelta(seconds=DURATION_SECONDS)),
        (Duration(seconds=-DURATION_SECONDS), timedelta(seconds=-DURATION_SECONDS)),
    ],
)
def test_durations_within_the_rules_are_read(value: Duration, expected: timedelta) -> None:
    assert convert.from_duration(value, "stale_after") == expected


@pytest.mark.parametrize(
    "value",
    [
        Duration(seconds=60, nanos=-1),
        Duration(seconds=-60, nanos=1),
        Duration(nanos=10**9),
        Duration(nanos=-(10**9)),
        Duration(seconds=DURATION_SECONDS + 1),
        Duration(seconds=-DURATION_SECONDS - 1),
        Duration(seconds=2**63 - 1),
    ],
    ids=[
        "nanos -1, seconds positive",
        "nanos 1, seconds negative",
        "nanos 10^9",
        "nanos -10^9",
        "over 10,000 years",
        "under -10,000 years",
        "greatest int64",
    ],
)
def test_durations_breaking_the_rules_are_refused_on_their_field(value: Duration) -> None:
    with pytest.raises(InvalidArgument) as refused:
        convert.from_duration(value, "post.stale_after")
    assert [v.field for v in refused.value.violations] == ["post.stale_after"]
