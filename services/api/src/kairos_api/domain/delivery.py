"""The rules of delivering a target, as pure functions of its state.

The dispatch stages read rows, ask these functions what happens, and write the answers back in
as few statements as the database allows; the sweeper applies the same answers to loaded rows.
So each rule is written once, whatever the stage or the database.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType

from kairos_api.domain.model import AccountStatus, ErrorClass, TargetStatus
from kairos_common.platforms import CATALOGUE

#: Platforms whose idempotency key makes a second try of an unsettled attempt safe, by name, and
#: for how long after the first try the platform remembers the key (the catalogue's window).
IDEMPOTENT_PLATFORMS: Mapping[str, timedelta] = MappingProxyType(
    {
        platform.value: info.idempotency_window
        for platform, info in CATALOGUE.items()
        if info.idempotency_window is not None
    }
)


def safe_to_retry(platform: str, first_started: datetime | None, now: datetime) -> bool:
    """Whether the platform still remembers the target's idempotency key (its first attempt
    began within the window), so that trying again after an attempt that may have published
    cannot publish twice."""
    window = IDEMPOTENT_PLATFORMS.get(platform)
    return window is not None and first_started is not None and now - first_started < window


#: Error columns of a target left as they are.
KEEP = None


@dataclass(frozen=True, slots=True)
class TargetChange:
    """Every column a stage sets on one target row.

    `last_error` and `published` are None when the stage leaves those columns alone; the rest
    are set to exactly these values (None writes NULL).
    """

    target_id: str
    status: TargetStatus
    next_attempt_at: datetime | None
    delivery_id: str | None
    delivery_revision: int | None
    lease_until: datetime | None
    #: (class, code, message), or None to keep the current error.
    last_error: tuple[str, str, str] | None = KEEP
    #: (platform post id, url, published at), or None to keep.
    published: tuple[str, str, datetime] | None = KEEP


#: What each ending emits as its lifecycle event.
END_EVENTS = {
    TargetStatus.PUBLISHED: "published",
    TargetStatus.FAILED: "failed",
    TargetStatus.UNKNOWN: "unknown",
    TargetStatus.MISSED: "missed",
}


def ended(
    target_id: str,
    status: TargetStatus,
    message: str,
    *,
    error_class: str = "",
    code: str = "",
) -> TargetChange:
    """The target reaches an end (FAILED, UNKNOWN, MISSED, SKIPPED, CANCELLED): no delivery,
    no lease, nothing more to claim, and the reason kept as its last error."""
    return TargetChange(
        target_id,
        status,
        next_attempt_at=None,
        delivery_id=None,
        delivery_revision=None,
        lease_until=None,
        last_error=(error_class, code[:100], message[:2000]),
    )


def published(target_id: str, platform_post_id: str, url: str, now: datetime) -> TargetChange:
    """The platform took the post: PUBLISHED, with its id and URL, and no error."""
    return TargetChange(
        target_id,
        TargetStatus.PUBLISHED,
        next_attempt_at=None,
        delivery_id=None,
        delivery_revision=None,
        lease_until=None,
        last_error=("", "", ""),
        published=(platform_post_id[:200], url[:2048], now),
    )


def released(
    target_id: str,
    next_attempt_at: datetime | None,
    last_error: tuple[str, str, str] | None = KEEP,
) -> TargetChange:
    """Back to PENDING without a delivery: claimable again from `next_attempt_at` once its
    account allows."""
    return TargetChange(
        target_id,
        TargetStatus.PENDING,
        next_attempt_at=next_attempt_at,
        delivery_id=None,
        delivery_revision=None,
        lease_until=None,
        last_error=last_error,
    )


# --- the fence ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FenceVerdict:
    """Why a delivery may not begin (`rejection`, `reason`) and what that does to its target."""

    rejection: str
    reason: str
    #: The target's change, or None when it stays as it is.
    change: TargetChange | None = None


def fence(
    *,
    target_id: str,
    target_status: str,
    delivery_revision: int | None,
    post_revision: int,
    post_deleted: bool,
    stale_at: datetime | None,
    next_attempt_at: datetime | None,
    account_status: str,
    blocked_until: datetime | None,
    now: datetime,
) -> FenceVerdict | None:
    """Why this delivery may not go out now, or None when it may. Edits always win: a delivery
    claimed at an older revision of its post, or of a deleted post, never begins."""
    if target_status != TargetStatus.QUEUED:
        return FenceVerdict("not_queued", f"the target is {target_status}")
    if post_deleted or post_revision != delivery_revision:
        return FenceVerdict(
            "revision_changed",
            f"the post is at revision {post_revision}, the delivery was for {delivery_revision}",
        )
    if stale_at is not None and stale_at <= now:
        return FenceVerdict(
            "stale",
            "the target is past its stale_after and was marked missed",
            ended(target_id, TargetStatus.MISSED, "past its stale_after"),
        )
    if blocked_until is not None and blocked_until > now:
        return FenceVerdict(
            "account_inactive",
            f"the account is rate-limited until {blocked_until.isoformat()}",
            # Claimed again once the block has passed.
            released(target_id, next_attempt_at),
        )
    if account_status != AccountStatus.ACTIVE:
        if account_status == AccountStatus.DISCONNECTED:
            change = ended(target_id, TargetStatus.SKIPPED, "account disconnected")
        else:
            change = released(target_id, next_attempt_at)  # claimed again once active
        return FenceVerdict("account_inactive", f"the account is {account_status}", change)
    return None


# --- outcomes -------------------------------------------------------------------------------


def backoff(base: timedelta, cap: timedelta, attempt_count: int) -> timedelta:
    """Exponential backoff (base, 2×base, 4×base ... up to cap), jittered over its upper half."""
    ceiling = min(cap.total_seconds(), base.total_seconds() * 2 ** max(0, attempt_count - 1))
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How failed attempts are tried again (the api's settings)."""

    max_attempts: int
    base: timedelta
    cap: timedelta
    #: Retries sooner than this wait in JetStream (nak with delay), later ones in the database.
    redeliver_max: timedelta
    #: How long a begun attempt may go unreported.
    attempt_lease: timedelta


@dataclass(frozen=True, slots=True)
class Decision:
    """What one reported outcome does: the target's change, the lifecycle event it emits (with
    its detail), and whether the same delivery comes back through JetStream after a delay."""

    change: TargetChange
    event: str | None
    detail: str
    redeliver_after: timedelta | None = None
    #: The account needs re-authorisation (an auth error), with this reason.
    needs_reauth: str | None = None


def decide(
    *,
    target_id: str,
    delivery_id: str | None,
    delivery_revision: int | None,
    next_attempt_at: datetime | None,
    attempt_count: int,
    stale_at: datetime | None,
    outcome_published: bool,
    platform_post_id: str,
    url: str,
    error_class: ErrorClass | None,
    code: str,
    message: str,
    retry_not_before: datetime | None,
    safe_to_retry: bool,
    policy: RetryPolicy,
    now: datetime,
) -> Decision:
    """The target's next state after one reported attempt.

    Published ends it PUBLISHED; a rejection FAILED; an unknown outcome UNKNOWN, unless the
    platform's idempotency key makes another try safe (`safe_to_retry`), which then goes on as a
    retryable error; a refused token holds it PENDING for the account's re-authorisation; a
    retryable error backs off, never sooner than the platform asked, within `max_attempts` and
    before `stale_at`, in JetStream when the wait is short and in the database when long.
    """
    if outcome_published:
        return Decision(published(target_id, platform_post_id, url, now), "published", "published")
    klass = error_class or ErrorClass.UNKNOWN
    error = (klass.value, code[:100], message[:2000])

    def end(status: TargetStatus, text: str, error_code: str = code) -> Decision:
        change = ended(target_id, status, text, error_class=klass.value, code=error_code)
        return Decision(change, END_EVENTS[status], text[:1000])

    if klass == ErrorClass.PERMANENT:
        return end(TargetStatus.FAILED, message)
    if klass == ErrorClass.UNKNOWN and not safe_to_retry:
        return end(TargetStatus.UNKNOWN, message)
    if klass == ErrorClass.AUTH:
        # Waits, claimable again once the account is reconnected (or missed past stale_after).
        return Decision(released(target_id, now, error), None, "", needs_reauth=message)
    # Retryable (or an unknown outcome that is safe to try again).
    if attempt_count >= policy.max_attempts:
        return end(TargetStatus.FAILED, f"gave up after {attempt_count} attempts: {message}")
    delay = backoff(policy.base, policy.cap, attempt_count)
    if retry_not_before is not None:
        delay = max(delay, retry_not_before - now)
    if stale_at is not None and now + delay >= stale_at:
        return end(TargetStatus.MISSED, f"the next try would be past stale_after: {message}")
    if delay <= policy.redeliver_max:
        # Short wait: the same delivery comes back through JetStream after the delay.
        change = TargetChange(
            target_id,
            TargetStatus.QUEUED,
            next_attempt_at=next_attempt_at,
            delivery_id=delivery_id,
            delivery_revision=delivery_revision,
            lease_until=now + delay + policy.attempt_lease,
            last_error=error,
        )
        return Decision(change, "retry_scheduled", message[:1000], redeliver_after=delay)
    change = TargetChange(
        target_id,
        TargetStatus.RETRY_WAIT,
        next_attempt_at=now + delay,
        delivery_id=None,
        delivery_revision=None,
        lease_until=None,
        last_error=error,
    )
    return Decision(change, "retry_scheduled", message[:1000])
