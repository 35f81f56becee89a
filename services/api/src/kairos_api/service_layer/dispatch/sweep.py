"""Sweep: what leases and staleness say once time has passed, and dead-lettered deliveries.

Not on the hot path: a sweep finds a handful of rows a second at most, so it works on loaded
rows, applying the same rules (`domain.delivery`) as the batched stages. Rows are locked with
their posts, in id order and skipping rows another transaction holds, so a sweep never waits
on (or deadlocks with) a stage at work.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update

from kairos_api.adapters.orm import Attempt, Post, Target, new_id
from kairos_api.domain.delivery import END_EVENTS, TargetChange, ended, safe_to_retry
from kairos_api.domain.model import ErrorClass, TargetStatus
from kairos_api.service_layer.application import Application
from kairos_api.service_layer.dispatch.records import MAX_CLAIM, Delivery, SweepResult
from kairos_api.service_layer.dispatch.stage import UPLOADING
from kairos_api.service_layer.settle import settle_posts
from kairos_api.service_layer.unit_of_work import UnitOfWork
from kairos_common import errors


def apply_change(
    uow: UnitOfWork, post: Post, target: Target, change: TargetChange, now: datetime
) -> None:
    """Set a loaded target's columns as `change` says at `now`, with the event its ending
    emits."""
    target.status = change.status
    target.next_attempt_at = change.next_attempt_at
    target.delivery_id = uuid.UUID(change.delivery_id) if change.delivery_id else None
    target.delivery_revision = change.delivery_revision
    target.lease_until = change.lease_until
    if change.last_error is not None:
        klass, code, message = change.last_error
        target.last_error_class, target.last_error_code = klass, code
        target.last_error_message = message
    if change.published is not None:
        target.platform_post_id, target.platform_url, target.published_at = change.published
    target.updated_at = now
    event = END_EVENTS.get(change.status)
    if event is not None:
        detail = change.last_error[2] if change.last_error is not None else ""
        uow.emit(event, post, target=target, detail=detail[:1000])


def _delivery(target: Target, revision: int) -> Delivery:
    assert target.delivery_id is not None
    assert target.lease_until is not None
    assert target.due_at is not None
    return Delivery(
        delivery_id=str(target.delivery_id),
        target_id=str(target.id),
        post_id=str(target.post_id),
        platform=target.platform,
        account_id=str(target.account_id),
        due_at=target.due_at,
        revision=revision,
        lease_until=target.lease_until,
        attempt_number=target.attempt_count + 1,
    )


async def sweep_expired(
    app: Application, limit: int, lease: timedelta, reemit_claimed_before: datetime | None = None
) -> SweepResult:
    """Re-emit lost deliveries, settle abandoned attempts, mark stale targets MISSED.

    With `reemit_claimed_before`, deliveries claimed (or re-emitted) before that instant and not
    begun are re-emitted too, lease or not: a broker restart may have lost their events, and
    waiting out the lease would make them that late. A stale event that does arrive later is
    refused by the fence, its delivery being superseded. Re-emitted ones are changed now, at or
    after the instant, so a caller paging through them never gets one twice.
    """
    if limit <= 0 or limit > MAX_CLAIM:
        raise errors.InvalidArgument.of("limit", f"must be 1-{MAX_CLAIM}")
    now = app.clock()
    lost_conditions: list[Any] = [Target.lease_until < now]
    if reemit_claimed_before is not None:
        lost_conditions.append(Target.updated_at < min(reemit_claimed_before, now))
    redeliveries: list[Delivery] = []
    unknown = missed = requeued = 0
    async with app.uow() as uow:

        async def expired(*conditions: Any) -> list[Target]:
            query = (
                select(Target)
                .join(Post, Post.id == Target.post_id)
                .where(*conditions)
                .order_by(Post.id, Target.id)
                .limit(limit)
            )
            if uow.on_postgresql:
                query = query.with_for_update(of=(Target, Post), skip_locked=True)
            return list((await uow.session.execute(query)).scalars())

        def redeliver(target: Target, post: Post) -> None:
            """A new delivery for the target; the scheduler emits it."""
            target.status = TargetStatus.QUEUED
            target.delivery_id = new_id()
            target.delivery_revision = post.revision
            target.lease_until = now + lease
            target.updated_at = now
            redeliveries.append(_delivery(target, post.revision))

        stale = await expired(
            Target.status.in_([TargetStatus.PENDING, TargetStatus.RETRY_WAIT, TargetStatus.QUEUED]),
            # Claimable or claimed; a post still waiting for approval is not missed by the sweep.
            or_(Target.next_attempt_at.is_not(None), Target.status == TargetStatus.QUEUED),
            Target.stale_at <= now,
        )
        lost = await expired(Target.status == TargetStatus.QUEUED, or_(*lost_conditions))
        abandoned = await expired(
            Target.status == TargetStatus.PUBLISHING, Target.lease_until < now
        )
        posts = await _posts_of(uow, [*stale, *lost, *abandoned])
        for target in stale:
            change = ended(
                str(target.id),
                TargetStatus.MISSED,
                "past its stale_after before it could be published",
            )
            apply_change(uow, posts[target.post_id], target, change, now)
            missed += 1
        for target in lost:
            if target.status == TargetStatus.QUEUED:  # not just marked missed
                redeliver(target, posts[target.post_id])
        uploading = await _still_uploading(uow, [t.id for t in abandoned])
        for target in abandoned:
            post = posts[target.post_id]
            if target.id in uploading:
                # Lost while sending media: nothing public was made, so it is tried again,
                # within the attempts allowed (a file that kills its publisher each time ends).
                await _close_open_attempts(uow, target.id, now, uploading=True)
                if target.attempt_count < app.settings.max_attempts:
                    redeliver(target, post)
                    requeued += 1
                else:
                    change = ended(
                        str(target.id),
                        TargetStatus.FAILED,
                        f"the publisher was lost while it sent media, {target.attempt_count} "
                        "times; nothing was published",
                        error_class=ErrorClass.RETRYABLE.value,
                        code="upload_lost",
                    )
                    apply_change(uow, post, target, change, now)
            elif await _safe_to_retry(uow, target, now):
                # The platform dedups on the idempotency key: a second call cannot double-post.
                redeliver(target, post)
                requeued += 1
            else:
                await _close_open_attempts(uow, target.id, now)
                change = ended(
                    str(target.id),
                    TargetStatus.UNKNOWN,
                    "the attempt never reported back; the post may or may not be published",
                    error_class=ErrorClass.UNKNOWN.value,
                )
                apply_change(uow, post, target, change, now)
                unknown += 1
        await settle_posts(uow, posts.values(), now)
        await uow.commit()
    return SweepResult(redeliveries, unknown, missed, requeued)


async def fail_delivery(app: Application, delivery_id: str, reason: str) -> TargetStatus | None:
    """End a dead-lettered delivery: FAILED, or UNKNOWN when an attempt had already begun.

    None when the delivery is no longer the target's current one (nothing changes).
    """
    try:
        ident = uuid.UUID(delivery_id)
    except ValueError:
        raise errors.InvalidArgument.of("delivery_id", "is not a valid id") from None
    now = app.clock()
    async with app.uow() as uow:
        query = (
            select(Target, Post)
            .join(Post, Post.id == Target.post_id)
            .where(Target.delivery_id == ident)
        )
        if uow.on_postgresql:
            query = query.with_for_update(of=(Target, Post))
        found = (await uow.session.execute(query)).one_or_none()
        if found is None:
            return None
        target, post = found
        if target.status not in (TargetStatus.QUEUED, TargetStatus.PUBLISHING):
            return None
        message = f"dead-lettered: {reason}"
        # Only a PUBLISHING target has an open attempt that may have been uploading.
        uploading = target.status == TargetStatus.PUBLISHING and target.id in (
            await _still_uploading(uow, [target.id])
        )
        if target.status == TargetStatus.PUBLISHING and not uploading:
            await _close_open_attempts(uow, target.id, now)
            change = ended(
                str(target.id), TargetStatus.UNKNOWN, message, error_class=ErrorClass.UNKNOWN.value
            )
        else:
            if uploading:  # nothing public was made: it failed, with no doubt about it
                await _close_open_attempts(uow, target.id, now, uploading=True)
            change = ended(
                str(target.id),
                TargetStatus.FAILED,
                message,
                error_class=ErrorClass.PERMANENT.value,
                code="dead_letter",
            )
        apply_change(uow, post, target, change, now)
        await settle_posts(uow, [post], now)
        await uow.commit()
        return TargetStatus(target.status)


async def _safe_to_retry(uow: UnitOfWork, target: Target, now: datetime) -> bool:
    first_started = (
        await uow.session.execute(
            select(func.min(Attempt.started_at)).where(Attempt.target_id == target.id)
        )
    ).scalar_one()
    return safe_to_retry(target.platform, first_started, now)


async def _posts_of(uow: UnitOfWork, targets: Iterable[Target]) -> dict[uuid.UUID, Post]:
    ids = {t.post_id for t in targets}
    if not ids:
        return {}
    rows = (await uow.session.execute(select(Post).where(Post.id.in_(ids)))).scalars()
    return {p.id: p for p in rows}


async def _still_uploading(uow: UnitOfWork, targets: list[uuid.UUID]) -> set[uuid.UUID]:
    """The targets whose open attempt was last marked `uploading`: lost before the call that
    makes the post public, so nothing was published."""
    if not targets:
        return set()
    rows = await uow.session.execute(
        select(Attempt.target_id).where(
            Attempt.target_id.in_(targets),
            Attempt.finished_at.is_(None),
            Attempt.stage == UPLOADING,
        )
    )
    return set(rows.scalars())


async def _close_open_attempts(
    uow: UnitOfWork, target_id: uuid.UUID, now: datetime, *, uploading: bool = False
) -> None:
    """Finish the target's open attempt: UNKNOWN, or, when it was lost while still sending
    media, RETRYABLE (nothing public was made)."""
    await uow.session.execute(
        update(Attempt)
        .where(and_(Attempt.target_id == target_id, Attempt.finished_at.is_(None)))
        .values(
            finished_at=now,
            error_class=(ErrorClass.RETRYABLE if uploading else ErrorClass.UNKNOWN).value,
            message=(
                "the publisher was lost while it sent media, before anything was published"
                if uploading
                else "no outcome was reported before the lease ran out"
            ),
        )
    )
