"""How the TikTok client reads answers the fake never gives: a `Retry-After` on a 429, an error
envelope under HTTP 200 (as public clients' tests record TikTok sending), a code the tables do
not list, and bodies that are not JSON."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from kairos_publisher.platforms.base import Result
from kairos_publisher.platforms.tiktok import failure


def envelope(code: str, message: str = "words") -> dict[str, object]:
    return {"data": {}, "error": {"code": code, "message": message, "log_id": "2026120618"}}


def test_a_429_with_retry_after_waits_that_long_not_tiktoks_minute() -> None:
    now = datetime(2026, 12, 6, 19, 0, tzinfo=UTC)
    answer = httpx.Response(429, headers={"retry-after": "5"}, json=envelope("rate_limit_exceeded"))
    outcome = failure(answer, now)

    assert (outcome.result, outcome.code) == (Result.RETRYABLE, "rate_limit_exceeded")
    assert outcome.retry_not_before == now + timedelta(seconds=5)


@pytest.mark.parametrize(
    ("code", "result"),
    [
        ("rate_limit_exceeded", Result.RETRYABLE),
        ("access_token_invalid", Result.AUTH),
        ("privacy_level_option_mismatch", Result.PERMANENT),
        ("spam_risk_too_many_posts", Result.PERMANENT),
    ],
)
def test_the_error_code_decides_even_under_http_200(code: str, result: Result) -> None:
    outcome = failure(httpx.Response(200, json=envelope(code)))

    assert (outcome.result, outcome.http_status, outcome.code) == (result, 200, code)


def test_a_missing_scope_is_auth() -> None:
    outcome = failure(httpx.Response(401, json=envelope("scope_permission_missed")))

    assert (outcome.result, outcome.code) == (Result.AUTH, "scope_permission_missed")


def test_a_code_no_table_lists_is_permanent_with_tiktoks_message_and_log_id() -> None:
    answer = envelope("spam_risk_too_many_pending_share", "at most 5 pending shares")
    outcome = failure(httpx.Response(403, json=answer))

    assert (outcome.result, outcome.code) == (Result.PERMANENT, "spam_risk_too_many_pending_share")
    assert outcome.message == "at most 5 pending shares (log_id 2026120618)"
    assert outcome.retry_not_before is None


def test_a_gateway_page_is_retryable_with_its_text() -> None:
    outcome = failure(httpx.Response(502, text="<html>Bad Gateway</html>"))

    assert (outcome.result, outcome.code) == (Result.RETRYABLE, "502")
    assert outcome.message == "<html>Bad Gateway</html>"
