"""The one interface every platform client implements, and the outcome it returns."""

from __future__ import annotations

import email.utils
import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

import httpx


class Result(enum.StrEnum):
    """How a platform call ended."""

    PUBLISHED = "published"
    RETRYABLE = "retryable"
    AUTH = "auth"
    PERMANENT = "permanent"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class PublishRequest:
    """Everything one platform call needs; credentials live in memory only."""

    post_id: str
    target_id: str
    content: str
    media_urls: list[str]
    settings: dict[str, str]
    reply_to: str
    idempotency_key: str
    due_at: datetime
    access_token: str = field(repr=False)
    refresh_token: str = field(default="", repr=False)
    instance_url: str = ""
    page_id: str = ""
    chat_id: str = ""
    extra: dict[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class PublishOutcome:
    """What happened: published (id and URL) or an error class with the platform's words."""

    result: Result
    platform_post_id: str = ""
    url: str = ""
    http_status: int = 0
    code: str = ""
    message: str = ""
    #: For retryable errors: the platform's own earliest retry time (Retry-After, reset).
    retry_not_before: datetime | None = None


@dataclass(frozen=True)
class RefreshedTokens:
    """New tokens from a refresh; the refresh token may rotate (single use)."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: datetime | None = None


class PlatformClient(Protocol):
    """publish(request) → outcome; never raises for anything the platform or network does."""

    async def publish(self, request: PublishRequest) -> PublishOutcome: ...


class RefreshingClient(PlatformClient, Protocol):
    """A platform whose access tokens can be refreshed."""

    async def refresh(self, request: PublishRequest) -> RefreshedTokens | str:
        """New tokens, or the reason the refresh failed for good."""
        ...


def retry_after(response: httpx.Response, now: datetime | None = None) -> datetime | None:
    """The instant a Retry-After header (seconds or HTTP date) points at, if any."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    now = now or datetime.now(UTC)
    try:
        return now + timedelta(seconds=max(0.0, float(value)))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def excerpt(response: httpx.Response, limit: int = 500) -> str:
    """The start of a response body, for the attempt record."""
    try:
        text = response.text
    except UnicodeDecodeError:
        text = repr(response.content[:limit])
    return text[:limit]


def classify_http(response: httpx.Response) -> PublishOutcome:
    """The generic reading of an unsuccessful HTTP answer, for platforms without special rules."""
    status = response.status_code
    message = excerpt(response)
    if status == 429 or status >= 500 or status == 408:
        return PublishOutcome(
            Result.RETRYABLE,
            http_status=status,
            code=str(status),
            message=message,
            retry_not_before=retry_after(response),
        )
    if status in (401, 403):
        return PublishOutcome(Result.AUTH, http_status=status, code=str(status), message=message)
    return PublishOutcome(Result.PERMANENT, http_status=status, code=str(status), message=message)


async def send(http: httpx.AsyncClient, request: httpx.Request) -> httpx.Response | PublishOutcome:
    """Send a request, turning transport failures into outcomes.

    A failure before the request left (connect errors) is safe to retry; a timeout after it was
    sent may have published, so it is UNKNOWN.
    """
    try:
        return await http.send(request)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
        return PublishOutcome(
            Result.RETRYABLE, code="connect", message=str(error) or "connect failed"
        )
    except (
        httpx.ReadTimeout,
        httpx.WriteTimeout,
        httpx.RemoteProtocolError,
        httpx.ReadError,
    ) as error:
        return PublishOutcome(
            Result.UNKNOWN, code="timeout", message=f"no answer after sending: {error!r}"[:500]
        )
    except httpx.HTTPError as error:
        return PublishOutcome(Result.RETRYABLE, code="http", message=repr(error)[:500])
