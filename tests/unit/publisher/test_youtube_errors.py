"""How the YouTube client reads Google's answers the fake gives rarely or never: the quota's reset
across daylight-saving changes, reasons the fake does not send, `Retry-After`, bodies that are
not JSON, and a 308's `Range`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from kairos_publisher.platforms.base import Result
from kairos_publisher.platforms.youtube import failure, next_quota_reset, received


def google(status: int, reason: str, domain: str = "youtube.video") -> httpx.Response:
    item = {"message": f"{reason} words", "domain": domain, "reason": reason}
    return httpx.Response(
        status, json={"error": {"code": status, "message": f"{reason} words", "errors": [item]}}
    )


@pytest.mark.parametrize(
    ("now", "reset"),
    [
        # Winter, PST (UTC-8): midnight is 08:00 UTC.
        (datetime(2026, 12, 6, 21, 0, tzinfo=UTC), datetime(2026, 12, 7, 8, 0, tzinfo=UTC)),
        # Summer, PDT (UTC-7): midnight is 07:00 UTC.
        (datetime(2026, 7, 1, 6, 59, tzinfo=UTC), datetime(2026, 7, 1, 7, 0, tzinfo=UTC)),
        # Exactly midnight Pacific: the next one, a day later.
        (datetime(2026, 7, 1, 7, 0, tzinfo=UTC), datetime(2026, 7, 2, 7, 0, tzinfo=UTC)),
        # The night clocks go back (2026-11-01): a 25-hour day, the reset at 08:00 UTC.
        (datetime(2026, 11, 1, 7, 30, tzinfo=UTC), datetime(2026, 11, 2, 8, 0, tzinfo=UTC)),
        # The night clocks go forward (2026-03-08): from PST to the next midnight in PDT.
        (datetime(2026, 3, 8, 9, 0, tzinfo=UTC), datetime(2026, 3, 9, 7, 0, tzinfo=UTC)),
    ],
)
def test_the_quota_resets_at_the_next_midnight_pacific_time(now: datetime, reset: datetime) -> None:
    assert next_quota_reset(now) == reset


def test_quota_exceeded_is_retried_at_the_reset_and_blocks_the_account_until_then() -> None:
    now = datetime(2026, 12, 6, 21, 0, tzinfo=UTC)
    outcome = failure(google(403, "quotaExceeded", "youtube.quota"), now)

    assert (outcome.result, outcome.code) == (Result.RETRYABLE, "quotaExceeded")
    assert outcome.retry_not_before == outcome.blocked_until == datetime(2026, 12, 7, 8, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "reason", "result"),
    [
        (401, "authError", Result.AUTH),
        (403, "forbidden", Result.AUTH),
        (403, "forbiddenPrivacySetting", Result.PERMANENT),
        (400, "invalidTitle", Result.PERMANENT),
        (400, "uploadLimitExceeded", Result.RETRYABLE),
        (403, "rateLimitExceeded", Result.RETRYABLE),
        (403, "userRateLimitExceeded", Result.RETRYABLE),
        (503, "backendError", Result.RETRYABLE),
        (500, "internalError", Result.RETRYABLE),
        (429, "rateLimitExceeded", Result.RETRYABLE),
    ],
)
def test_googles_reason_decides(status: int, reason: str, result: Result) -> None:
    outcome = failure(google(status, reason))
    assert (outcome.result, outcome.code, outcome.http_status) == (result, reason, status)
    assert outcome.message == f"{reason} words"


def test_the_upload_limit_waits_a_day_as_youtube_says() -> None:
    now = datetime(2026, 12, 6, 21, 0, tzinfo=UTC)
    outcome = failure(google(400, "uploadLimitExceeded"), now)
    assert outcome.retry_not_before == outcome.blocked_until == now + timedelta(hours=24)


def test_a_429_with_retry_after_waits_that_long() -> None:
    now = datetime.now(UTC)
    outcome = failure(httpx.Response(429, headers={"retry-after": "30"}, text="slow down"))
    assert outcome.result == Result.RETRYABLE
    assert outcome.retry_not_before is not None
    assert outcome.retry_not_before - now >= timedelta(seconds=29)


@pytest.mark.parametrize(
    ("status", "result"), [(502, Result.RETRYABLE), (404, Result.PERMANENT), (401, Result.AUTH)]
)
def test_a_page_that_is_not_json_is_read_by_its_status(status: int, result: Result) -> None:
    outcome = failure(httpx.Response(status, text="<html>Bad Gateway</html>"))
    assert (outcome.result, outcome.code) == (result, str(status))
    assert "Bad Gateway" in outcome.message


@pytest.mark.parametrize(
    ("value", "count"),
    [("bytes=0-262143", 262144), ("bytes=0-0", 1), ("", 0), ("bytes=5-9", 0), ("junk", 0)],
)
def test_a_308s_range_says_how_many_bytes_the_session_has(value: str, count: int) -> None:
    headers = {"range": value} if value else {}
    assert received(httpx.Response(308, headers=headers)) == count
