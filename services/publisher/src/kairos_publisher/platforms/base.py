"""The one interface every platform client implements, and the outcome it returns."""

from __future__ import annotations

import asyncio
import email.utils
import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from kairos_publisher.media import MediaError, MediaSource, StoredMedia

if TYPE_CHECKING:
    from kairos_publisher.media import MediaFetcher


#: The Graph API version the Facebook and Instagram clients call, unless
#: `KAIROS_GRAPH_API_VERSION` names another. v27.0 is the newest Meta has released (2026-11-04:
#: Meta's Graph API changelog, "Available Graph API Versions", and its blog post "Introducing
#: Graph API v27.0 and Marketing API v27.0"); Meta keeps each version at least two years, v21.0
#: (used before) until 2027-01-21. The changes v22.0 to v27.0 list touch none of the calls made
#: here (`feed`, `photos`, `comments`, `media`, `media_publish`, `permalink`). Threads has its own
#: versions (graph.threads.net/v1.0) and does not follow this one.
GRAPH_API_VERSION = "v27.0"
#: The `LinkedIn-Version` header sent unless `KAIROS_LINKEDIN_VERSION` (or a target's
#: `linkedin_version` setting) names another. 202609 is the newest version the evidence shows
#: released: Microsoft's versioning page listed it as the latest on 2026-09-18 (quoted in
#: n8n-io/n8n#39065); no source found says 202610 or later is out. LinkedIn keeps a version
#: about a year (202603 sunsets on 2027-03-16 by its migrations table), so 202609 should serve
#: until about September 2027; a retired one is refused with 426 `NONEXISTENT_VERSION`.
LINKEDIN_VERSION = "202609"


class Result(enum.StrEnum):
    """How a platform call ended."""

    PUBLISHED = "published"
    RETRYABLE = "retryable"
    AUTH = "auth"
    PERMANENT = "permanent"
    UNKNOWN = "unknown"


class AttemptStage(Protocol):
    """Where an attempt that uploads first stands, told to the api as it moves on.

    An attempt with an uploaded video is marked "uploading" when it begins: until the platform
    module calls `publishing()`, nothing public was made, so if the publisher dies the attempt
    is retried (the upload starts again), not left UNKNOWN. `publishing()` must be awaited just
    before the one call that makes the post public, and that call made only when it returns
    None; it returns an outcome to give instead when the api could not record it (then the post
    is not made public by this attempt). While the attempt runs, its lease is kept from running
    out. `pause(seconds)` waits for a platform's processing (a status to poll again) without
    holding a call slot meanwhile.
    """

    async def publishing(self) -> PublishOutcome | None: ...

    async def pause(self, seconds: float) -> None: ...


class NoStage:
    """The stage of an attempt nobody tracks (tests, attempts without uploads): `publishing`
    goes ahead, `pause` sleeps."""

    async def publishing(self) -> PublishOutcome | None:
        return None

    async def pause(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


NO_STAGE = NoStage()


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
    #: When the access token expires, if the platform says.
    expires_at: datetime | None = None
    #: The account's handle as connected (for public URLs such as x.com/<handle>/status/<id>).
    handle: str = ""
    #: An earlier attempt at this target may have reached the platform without Kairos learning
    #: the outcome (it ended UNKNOWN, or never reported back): a "duplicate" answer may then be
    #: this target's own earlier post. False on a first attempt.
    earlier_outcome_lost: bool = False
    #: Uploaded files to send as bytes, which come before `media_urls`. Empty for a platform
    #: that pulls media by URL: its uploaded files arrive presigned, in `media_urls`.
    #: A video (the post's only media item when it has one) is always here, with its presigned
    #: `url` for a platform that pulls media by URL.
    stored_media: list[StoredMedia] = field(default_factory=list)
    #: The attempt's stage, to mark the call that makes the post public (`AttemptStage`).
    stage: AttemptStage = field(default=NO_STAGE, repr=False, compare=False)

    @property
    def media(self) -> list[MediaSource]:
        """Every media item in order, for `MediaFetcher.fetch`: the uploaded files, then the
        URLs. (A video is not among them: see `video`.)"""
        return [*(m for m in self.stored_media if not m.is_video), *self.media_urls]

    @property
    def video(self) -> StoredMedia | None:
        """The post's uploaded video, if it has one (then it is its only media item)."""
        for item in self.stored_media:
            if item.is_video:
                return item
        return None


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
    #: The account may make no further calls before this instant (a rate limit that is used up,
    #: read from the platform's headers); set on any result, published ones included.
    blocked_until: datetime | None = None


@dataclass(frozen=True)
class RefreshedTokens:
    """New tokens from a refresh; the refresh token may rotate (single use)."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: datetime | None = None
    #: Values to merge into the account's `extra` credentials (e.g. Bluesky's did and handle).
    extra: dict[str, str] = field(default_factory=dict, repr=False)


class PlatformClient(Protocol):
    """publish(request) → outcome; never raises for anything the platform or network does."""

    async def publish(self, request: PublishRequest) -> PublishOutcome: ...


class RefreshingClient(PlatformClient, Protocol):
    """A platform whose access tokens can be refreshed.

    The publisher refreshes when the token expires within `refresh_margin`, and once after an
    AUTH outcome; one refresh at a time per account, the new tokens saved before they are used.
    """

    refresh_margin: timedelta

    async def refresh(self, request: PublishRequest) -> RefreshedTokens | str | PublishOutcome:
        """New tokens; or the reason the refresh failed for good (the account then needs
        re-authorising); or, when the token endpoint could not answer now (5xx, timeout, 429),
        the outcome to report instead: the account stays as it is and the post is retried."""
        ...


@dataclass(frozen=True)
class PlatformContext:
    """What every platform client is built with: shared HTTP, media fetching, base URLs."""

    http: httpx.AsyncClient
    media: MediaFetcher
    #: Base URL overrides by key (`KAIROS_PLATFORM_URLS`, e.g. `x=http://127.0.0.1:9001`): a
    #: platform's API, or `<platform>.<part>` for a second host (`linkedin.oauth`).
    urls: Mapping[str, str] = field(default_factory=dict)
    #: Where app-level secrets come from (client ids and secrets for token refresh).
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ), repr=False)
    #: The Graph API version in Facebook's and Instagram's paths (`vNN.N`).
    graph_version: str = GRAPH_API_VERSION
    #: The `LinkedIn-Version` header (`YYYYMM`).
    linkedin_version: str = LINKEDIN_VERSION

    def url(self, key: str, default: str) -> str:
        """The base URL for `key` (no trailing slash): its override, else the override of its
        platform (the part before the dot), else `default`."""
        found = self.urls.get(key) or self.urls.get(key.partition(".")[0]) or default
        return found.rstrip("/")

    def app_secret(self, request: PublishRequest, platform: str, name: str) -> str:
        """An app credential such as `client_id`: the account's own (`extra[name]`) if it was
        connected with one, else `KAIROS_<PLATFORM>_<NAME>` from the environment."""
        own = request.extra.get(name, "")
        if own:
            return own
        return self.environ.get(f"KAIROS_{platform.upper()}_{name.upper()}", "")


def parse_platform_urls(value: str) -> dict[str, str]:
    """`x=http://a,linkedin.oauth=http://b` → a mapping; raises ValueError naming a bad item."""
    urls: dict[str, str] = {}
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, url = item.partition("=")
        key, url = key.strip(), url.strip()
        if not sep or not key or not url.startswith(("http://", "https://")):
            raise ValueError(f"{item!r} is not <platform>=<http(s) url>")
        urls[key] = url
    return urls


def epoch(value: str | None) -> datetime | None:
    """A unix-seconds header value (possibly fractional) as an instant."""
    if not value:
        return None
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except (ValueError, OverflowError, OSError):
        return None


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


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The answer's JSON object, or {} when it is not one."""
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


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


def utf16_length(text: str) -> int:
    """Length in UTF-16 code units, as Telegram and TikTok count text (astral characters count
    two; a lone surrogate counts one, as it would be sent)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def nothing_posted(outcome: PublishOutcome) -> PublishOutcome:
    """The outcome of a call made before the one that makes the post public (an upload, a
    processing poll): whatever happened, nothing was published, so what would mean "maybe
    posted" (UNKNOWN) is only RETRYABLE."""
    if outcome.result == Result.UNKNOWN:
        return replace(outcome, result=Result.RETRYABLE)
    return outcome


def media_failed(error: MediaError) -> PublishOutcome:
    """A media file that could not be had: retryable when the host failed, else permanent."""
    return PublishOutcome(
        Result.RETRYABLE if error.retryable else Result.PERMANENT,
        code="media",
        message=str(error)[:500],
    )


def token_answer(
    response: httpx.Response | PublishOutcome, platform: str, kept_refresh_token: str
) -> RefreshedTokens | str | PublishOutcome:
    """An OAuth 2 token endpoint's answer to a refresh (RFC 6749 §5.1 and §5.2), read as
    `RefreshingClient.refresh` returns it: the new tokens (the refresh token kept when the
    answer carries none, as Google's does); the reason a refusal gives (the account then needs
    re-authorising); or, when the endpoint could not answer now (unreachable, 429, 5xx), the
    outcome to report instead."""
    if isinstance(response, PublishOutcome):
        return response  # the token endpoint could not be reached: try again later
    if response.status_code == 429 or response.status_code >= 500:
        return classify_http(response)
    data = json_object(response)
    access = data.get("access_token")
    if not response.is_success or not isinstance(access, str) or not access:
        reason = data.get("error_description") or data.get("error") or excerpt(response, 200)
        return f"{platform} refused the refresh with HTTP {response.status_code}: {reason}"
    lifetime = data.get("expires_in")
    expires_at = None
    if isinstance(lifetime, int | float) and not isinstance(lifetime, bool):
        expires_at = datetime.now(UTC) + timedelta(seconds=float(lifetime))
    fresh = data.get("refresh_token")
    return RefreshedTokens(
        access, fresh if isinstance(fresh, str) and fresh else kept_refresh_token, expires_at
    )
