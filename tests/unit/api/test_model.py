"""How a post's status follows from its targets' statuses."""

from __future__ import annotations

from datetime import timedelta

import pytest

from kairos_api.domain.model import PostStatus, TargetStatus, derive_post_status
from kairos_api.service_layer.dispatch import backoff

T = TargetStatus


@pytest.mark.parametrize(
    ("targets", "post"),
    [
        ([T.PUBLISHED, T.PUBLISHED], PostStatus.PUBLISHED),
        ([T.PUBLISHED, T.FAILED], PostStatus.PARTIALLY_PUBLISHED),
        ([T.PUBLISHED, T.SKIPPED], PostStatus.PARTIALLY_PUBLISHED),
        ([T.PUBLISHED, T.CANCELLED], PostStatus.PUBLISHED),
        ([T.FAILED, T.UNKNOWN], PostStatus.UNKNOWN),
        ([T.FAILED, T.MISSED], PostStatus.FAILED),
        ([T.MISSED, T.MISSED], PostStatus.MISSED),
        ([T.SKIPPED], PostStatus.CANCELLED),
        ([T.CANCELLED], PostStatus.CANCELLED),
        ([], PostStatus.CANCELLED),
        ([T.PUBLISHED, T.RETRY_WAIT], PostStatus.PUBLISHING),
        ([T.FAILED, T.QUEUED], PostStatus.PUBLISHING),
        ([T.PUBLISHING], PostStatus.PUBLISHING),
    ],
)
def test_post_status_is_derived_from_targets(targets: list[TargetStatus], post: PostStatus) -> None:
    assert derive_post_status(targets) == post


def test_backoff_doubles_within_jitter_and_is_capped() -> None:
    base, cap = timedelta(seconds=2), timedelta(seconds=10)
    for attempt, ceiling in [(1, 2.0), (2, 4.0), (3, 8.0), (4, 10.0), (9, 10.0)]:
        delays = [backoff(base, cap, attempt).total_seconds() for _ in range(200)]
        assert min(delays) >= ceiling / 2
        assert max(delays) <= ceiling
        assert max(delays) - min(delays) > ceiling / 10  # jittered, not fixed
