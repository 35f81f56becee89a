"""How the Pinterest client reads answers the fake never gives: a `Retry-After` on a 429 (which
Pinterest does not document, but HTTP allows), a scope refusal, and bodies that are not JSON."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from kairos_publisher.platforms.base import Result
from kairos_publisher.platforms.pinterest import failure

RATE_LIMITED = {"code": 8, "message": "This request exceeded a rate limit."}


def test_a_429_with_retry_after_waits_that_long() -> None:
    before = datetime.now(UTC)
    outcome = failure(httpx.Response(429, headers={"retry-after": "120"}, json=RATE_LIMITED))

    assert (outcome.result, outcome.code) == (Result.RETRYABLE, "8")
    assert outcome.retry_not_before is not None
    assert before + timedelta(seconds=119) <= outcome.retry_not_before
    assert outcome.retry_not_before <= datetime.now(UTC) + timedelta(seconds=120)


def test_a_token_without_the_scopes_is_auth() -> None:
    body = {"code": 3, "message": "Your token does not have sufficient permissions."}
    outcome = failure(httpx.Response(401, json=body))

    assert (outcome.result, outcome.http_status, outcome.code) == (Result.AUTH, 401, "3")
    assert outcome.retry_not_before is None


def test_a_gateway_page_is_retryable_with_its_text() -> None:
    outcome = failure(httpx.Response(502, text="<html>Bad Gateway</html>"))

    assert (outcome.result, outcome.code) == (Result.RETRYABLE, "502")
    assert outcome.message == "<html>Bad Gateway</html>"


def test_a_permanent_refusal_ignores_retry_after() -> None:
    body = {"code": 1, "message": "Invalid request: 'title' is too long"}
    outcome = failure(httpx.Response(400, headers={"retry-after": "60"}, json=body))

    assert (outcome.result, outcome.code, outcome.retry_not_before) == (
        Result.PERMANENT,
        "1",
        None,
    )
