"""States of posts, targets and accounts (DESIGN.md §3) and how one derives from another."""

from __future__ import annotations

import enum
from collections.abc import Iterable


class PostStatus(enum.StrEnum):
    """Lifecycle of a post; derived from its targets once publishing starts."""

    DRAFT = "draft"
    PENDING_APPROVAL = "pending_approval"
    SCHEDULED = "scheduled"
    PUBLISHING = "publishing"
    PUBLISHED = "published"
    PARTIALLY_PUBLISHED = "partially_published"
    FAILED = "failed"
    MISSED = "missed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    UNKNOWN = "unknown"


class TargetStatus(enum.StrEnum):
    """Lifecycle of one (post, account) pair."""

    PENDING = "pending"
    QUEUED = "queued"
    PUBLISHING = "publishing"
    PUBLISHED = "published"
    RETRY_WAIT = "retry_wait"
    FAILED = "failed"
    UNKNOWN = "unknown"
    MISSED = "missed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


class AccountStatus(enum.StrEnum):
    """State of a connected account."""

    ACTIVE = "active"
    NEEDS_REAUTH = "needs_reauth"
    PAUSED = "paused"
    DISCONNECTED = "disconnected"


class ErrorClass(enum.StrEnum):
    """How the outcome of one platform call is classified."""

    RETRYABLE = "retryable"
    AUTH = "auth"
    PERMANENT = "permanent"
    UNKNOWN = "unknown"


#: Targets that will still be sent unless something stops them.
LIVE_TARGET_STATUSES = frozenset(
    {TargetStatus.PENDING, TargetStatus.QUEUED, TargetStatus.PUBLISHING, TargetStatus.RETRY_WAIT}
)
#: Targets that RetryPost may send again.
RETRYABLE_TARGET_STATUSES = frozenset(
    {TargetStatus.FAILED, TargetStatus.UNKNOWN, TargetStatus.MISSED}
)
#: Targets whose platform call is (or may be) under way: the post can no longer be edited.
IN_FLIGHT_TARGET_STATUSES = frozenset({TargetStatus.PUBLISHING})

#: Post states in which content and schedule may still change.
EDITABLE_POST_STATUSES = frozenset(
    {
        PostStatus.DRAFT,
        PostStatus.PENDING_APPROVAL,
        PostStatus.SCHEDULED,
        PostStatus.REJECTED,
    }
)


def derive_post_status(targets: Iterable[TargetStatus]) -> PostStatus:
    """A publishing post's status from its targets' statuses.

    Any target still on its way keeps the post PUBLISHING. Once all are settled: all published
    is PUBLISHED; some published is PARTIALLY_PUBLISHED; otherwise an unsettled outcome
    (UNKNOWN) is reported before FAILED, and FAILED before MISSED, so the worst news shows first.
    """
    statuses = [TargetStatus(s) for s in targets]
    if not statuses:
        return PostStatus.CANCELLED
    if any(s in LIVE_TARGET_STATUSES for s in statuses):
        return PostStatus.PUBLISHING
    # A skipped target (paused account) counts as not published; a cancelled one not at all.
    counted = [s for s in statuses if s != TargetStatus.CANCELLED]
    if not counted:
        return PostStatus.CANCELLED
    published = sum(1 for s in counted if s == TargetStatus.PUBLISHED)
    if published == len(counted):
        return PostStatus.PUBLISHED
    if published:
        return PostStatus.PARTIALLY_PUBLISHED
    if TargetStatus.UNKNOWN in counted:
        return PostStatus.UNKNOWN
    if TargetStatus.FAILED in counted:
        return PostStatus.FAILED
    if TargetStatus.MISSED in counted:
        return PostStatus.MISSED
    return PostStatus.CANCELLED  # every counted target was skipped


def settled_status(current: PostStatus | str, targets: Iterable[TargetStatus]) -> PostStatus | None:
    """The status a post settles to from its targets' statuses, or None when it stays as it is:
    a post with a target still on its way keeps its status (PUBLISHING, or SCHEDULED until an
    attempt begins)."""
    derived = derive_post_status(targets)
    if derived == PostStatus.PUBLISHING or derived == current:
        return None
    return derived
