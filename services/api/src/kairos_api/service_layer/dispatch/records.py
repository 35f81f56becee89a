"""What the dispatch stages take and give: deliveries, begun attempts, outcomes, completions.

Ids are the canonical text of their UUIDs: that is what the database hands back cheapest
(`::text`) and what the protobuf messages carry, so no stage converts them back and forth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from kairos_api.domain.model import ErrorClass, TargetStatus
from kairos_api.service_layer.accounts import StoredCredentials

#: Most deliveries one ClaimDue or SweepExpired hands out.
MAX_CLAIM = 2000
#: Most deliveries one BeginAttempts begins, and outcomes one CompleteAttempts records.
MAX_BATCH = 500


@dataclass(frozen=True, slots=True)
class Delivery:
    """One claimed delivery of one target: what its due event carries."""

    delivery_id: str
    target_id: str
    post_id: str
    platform: str
    account_id: str
    due_at: datetime
    revision: int
    lease_until: datetime
    attempt_number: int


@dataclass(frozen=True, slots=True)
class StoredMedia:
    """An uploaded file of a begun attempt's post: what the publisher checks it by, where it is
    kept, and, for a platform that pulls media by URL, the presigned URL to give it."""

    media_id: str
    kind: str
    content_type: str
    size: int
    sha256: str
    storage_key: str
    url: str = ""
    #: The picture's size as shown, in pixels.
    width: int = 0
    height: int = 0
    #: Videos only: the length in seconds.
    duration_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class Begun:
    """A begun attempt: what the publisher needs to call the platform."""

    attempt_id: str
    attempt_number: int
    target_id: str
    post_id: str
    account_id: str
    account_handle: str
    platform: str
    due_at: datetime
    content: str
    media_urls: list[str]
    settings: dict[str, str]
    credentials: StoredCredentials
    reply_to_platform_id: str
    idempotency_key: str
    #: How long the attempt's lease runs from the begin.
    lease: timedelta
    #: An earlier attempt at this target may have reached the platform without its outcome
    #: being learnt: a "duplicate" answer may be this target's own post.
    earlier_outcome_lost: bool = False
    #: The post's uploaded files, in order (before `media_urls`).
    stored_media: list[StoredMedia] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Refused:
    """Why an attempt may not begin; the publisher drops the event."""

    rejection: str  # superseded | revision_changed | not_queued | account_inactive | stale
    reason: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the publisher reports of one attempt."""

    attempt_id: str
    delivery_id: str
    published: bool
    platform_post_id: str = ""
    url: str = ""
    error_class: ErrorClass | None = None
    error_code: str = ""
    message: str = ""
    http_status: int = 0
    retry_not_before: datetime | None = None
    latency_ms: int | None = None
    #: The account's rate limit is used up until then (any outcome may carry it).
    account_blocked_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Completion:
    """What became of one reported attempt, and what the publisher does with its message."""

    attempt_id: str
    #: The target's status afterwards; None for an attempt Kairos does not know.
    target_status: TargetStatus | None
    #: Redeliver the same event after this long; None: ack it.
    redeliver_after: timedelta | None = None


@dataclass(frozen=True, slots=True)
class SweepResult:
    redeliveries: list[Delivery]
    marked_unknown: int
    marked_missed: int
    requeued_idempotent: int
