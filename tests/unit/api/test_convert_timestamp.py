"""convert.timestamp builds Timestamps itself: they must equal what FromDatetime makes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from kairos_api.adapters import convert


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 11, 25, 13, 5, 7, 123456, tzinfo=UTC),
        datetime(1960, 5, 3, 1, 2, 3, 456789, tzinfo=UTC),  # before the epoch
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
        datetime(2026, 1, 1, 12, 0),  # naive: taken as UTC, as FromDatetime does
    ],
)
@pytest.mark.usefixtures("away_from_utc")
def test_timestamp_matches_protobuf(value: datetime) -> None:
    expected = Timestamp()
    expected.FromDatetime(value)
    assert convert.timestamp(value) == expected


def test_no_instant_is_no_timestamp() -> None:
    assert convert.timestamp(None) is None
