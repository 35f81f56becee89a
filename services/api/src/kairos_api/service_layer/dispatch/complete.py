"""Complete: record what the publisher reports of each attempt and move its target on.

One read locks the attempts' posts and targets (in id order, as every stage that settles posts
does) and returns their state; `domain.delivery.decide` says what each outcome does; one
statement then writes the attempts, the targets, the posts whose status settled and the
lifecycle events, and says whether a published post has a next part of its thread waiting (the
schedulers are then woken for it). A post with several targets has them re-read after the lock,
so two transactions completing targets of one post never settle it from a stale view.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update

from kairos_api.adapters.orm import Account, Attempt, Post, Target
from kairos_api.domain.delivery import IDEMPOTENT_PLATFORMS, RetryPolicy, decide, safe_to_retry
from kairos_api.domain.model import AccountStatus, PostStatus, TargetStatus
from kairos_api.service_layer.application import Application
from kairos_api.service_layer.dispatch.records import MAX_BATCH, Completion, Outcome
from kairos_api.service_layer.dispatch.writes import (
    AttemptDone,
    Writes,
    ids_text,
    settled_statuses,
    target_statuses,
)
from kairos_api.service_layer.unit_of_work import UnitOfWork
from kairos_common import errors

#: The attempts with their targets and posts, locked.
READ_SQL = """
SELECT x.id::text, x.finished_at IS NOT NULL, t.id::text, t.delivery_id::text, t.status,
       t.delivery_revision, t.next_attempt_at, t.attempt_count, t.stale_at, t.platform,
       t.account_id::text, t.post_id::text, p.tenant_id, p.status, p.revision,
       (SELECT count(*) FROM targets AS s WHERE s.post_id = p.id),
       CASE WHEN t.platform = ANY(string_to_array(%(idempotent)s, ','))
            THEN (SELECT min(y.started_at) FROM attempts AS y WHERE y.target_id = t.id) END
FROM attempts AS x
JOIN targets AS t ON t.id = x.target_id
JOIN posts AS p ON p.id = t.post_id
WHERE x.id = ANY(string_to_array(%(attempts)s, ',')::uuid[])
ORDER BY p.id, t.id
FOR UPDATE OF t, p
"""

#: Whether a post that was just published has a next part of its thread waiting: one probe of
#: the partial index of thread parts per parent. The subquery's only conditions are on the
#: parent, and OFFSET 0 keeps the planner from merging it with the rest: whatever its statistics
#: say, no status index can look cheaper. (Asked as one filter, a planner whose statistics lag
#: a burst walked every live post and compared each with the whole array: 66 ms a batch at
#: 15,000 posts.)
NEXT_PART_SQL = """
SELECT coalesce(bool_or(waiting.live), false)
FROM unnest(string_to_array(%(parents)s, ',')::uuid[]) AS parent(id)
CROSS JOIN LATERAL (
    SELECT child.deleted_at IS NULL AND child.status IN ('scheduled', 'publishing') AS live
    FROM posts AS child
    WHERE child.parent_post_id IS NOT NULL AND child.parent_post_id = parent.id
    OFFSET 0
) AS waiting
"""


def policy_of(app: Application) -> RetryPolicy:
    settings = app.settings
    return RetryPolicy(
        max_attempts=settings.max_attempts,
        base=settings.retry_base,
        cap=settings.retry_cap,
        redeliver_max=settings.redeliver_max,
        attempt_lease=settings.attempt_lease,
    )


async def complete_attempts(app: Application, outcomes: Sequence[Outcome]) -> list[Completion]:
    """Record outcomes in one transaction and say what the publisher should do with each.

    An outcome already recorded (a retried call), or of an attempt the sweeper settled meanwhile,
    changes nothing and reports the target's status; one of an attempt Kairos does not know
    reports none. Neither holds back the others.
    """
    if len(outcomes) > MAX_BATCH:
        raise errors.InvalidArgument.of("outcomes", f"at most {MAX_BATCH} per call")
    now = app.clock()
    policy = policy_of(app)
    writes = Writes(now)
    async with app.uow() as uow:
        rows = {row[0]: row for row in await _read(uow, [o.attempt_id for o in outcomes])}
        await _block_accounts(uow, outcomes, rows, now)
        done: dict[str, TargetStatus] = {}  # attempt id → its target's new status
        results: list[Completion] = []
        touched: dict[str, str] = {}  # post id → its status before this call
        siblings: dict[str, dict[str, str]] = {}  # single-target posts: their one target
        shared: set[str] = set()  # posts with several targets, to read again once locked
        reauth: dict[str, str] = {}  # account id → why it needs re-authorisation
        parents: list[str] = []
        for outcome in outcomes:
            row = rows.get(outcome.attempt_id)
            if row is None:
                results.append(Completion(outcome.attempt_id, None))
                continue
            (
                attempt_id,
                finished,
                target_id,
                delivery_id,
                target_status,
                delivery_revision,
                next_attempt_at,
                attempt_count,
                stale_at,
                platform,
                account_id,
                post_id,
                tenant_id,
                post_status,
                revision,
                target_count,
                first_started,
            ) = row
            if attempt_id in done:
                results.append(Completion(attempt_id, done[attempt_id]))
                continue
            if (
                finished
                or delivery_id != outcome.delivery_id
                or target_status != TargetStatus.PUBLISHING
            ):
                # Already recorded (a retried call), or settled by the sweeper meanwhile.
                results.append(Completion(attempt_id, TargetStatus(target_status)))
                continue
            decision = decide(
                target_id=target_id,
                delivery_id=delivery_id,
                delivery_revision=delivery_revision,
                next_attempt_at=next_attempt_at,
                attempt_count=attempt_count,
                stale_at=stale_at,
                outcome_published=outcome.published,
                platform_post_id=outcome.platform_post_id,
                url=outcome.url,
                error_class=outcome.error_class,
                code=outcome.error_code,
                message=outcome.message,
                retry_not_before=outcome.retry_not_before,
                safe_to_retry=safe_to_retry(platform, first_started, now),
                policy=policy,
                now=now,
            )
            change = decision.change
            writes.attempts.append(
                AttemptDone(
                    attempt_id=attempt_id,
                    published=outcome.published,
                    http_status=outcome.http_status,
                    error_class=outcome.error_class.value if outcome.error_class else "",
                    error_code=outcome.error_code[:100],
                    message=outcome.message[:2000],
                    latency_ms=outcome.latency_ms,
                )
            )
            writes.changes.append(change)
            if decision.event is not None:
                writes.event(
                    decision.event,
                    tenant_id=tenant_id,
                    post_id=post_id,
                    post_status=PostStatus(post_status),
                    revision=revision,
                    target_id=target_id,
                    target_status=change.status,
                    account_id=account_id,
                    detail=decision.detail,
                )
            if decision.needs_reauth is not None:
                reauth.setdefault(account_id, decision.needs_reauth)
            if change.status == TargetStatus.PUBLISHED:
                parents.append(post_id)
            touched[post_id] = post_status
            if target_count > 1:
                shared.add(post_id)
            else:
                siblings[post_id] = {target_id: target_status}
            done[attempt_id] = change.status
            results.append(Completion(attempt_id, change.status, decision.redeliver_after))
        if reauth:
            await _needs_reauth(uow, writes, reauth)
        if shared:
            siblings.update(await target_statuses(uow, shared))
        writes.posts = settled_statuses(touched, siblings, writes.changes)
        wake = await writes.apply(uow, NEXT_PART_SQL, parents=ids_text(sorted(set(parents))))
        if wake is None and parents:  # SQLite: asked on its own
            wake = await _next_part_waiting(uow, parents)
        await uow.commit()
    if wake:
        app.notifier.due_soon()
    return results


async def _read(uow: UnitOfWork, attempts: list[str]) -> Sequence[Sequence[Any]]:
    wanted = [attempt for attempt in attempts if _is_id(attempt)]
    if not wanted:
        return []
    if uow.on_postgresql:
        connection = await uow.psycopg()
        cursor = await connection.execute(
            READ_SQL,
            {"attempts": ids_text(wanted), "idempotent": ",".join(IDEMPOTENT_PLATFORMS)},
        )
        return await cursor.fetchall()
    target_count = (
        select(func.count()).where(Target.post_id == Post.id).correlate(Post).scalar_subquery()
    )
    first_started = (
        select(func.min(Attempt.started_at))
        .where(Attempt.target_id == Target.id)
        .correlate(Target)
        .scalar_subquery()
    )
    result = await uow.session.execute(
        select(
            Attempt.id,
            Attempt.finished_at.is_not(None),
            Target.id,
            Target.delivery_id,
            Target.status,
            Target.delivery_revision,
            Target.next_attempt_at,
            Target.attempt_count,
            Target.stale_at,
            Target.platform,
            Target.account_id,
            Target.post_id,
            Post.tenant_id,
            Post.status,
            Post.revision,
            target_count,
            first_started,
        )
        .join(Target, Target.id == Attempt.target_id)
        .join(Post, Post.id == Target.post_id)
        .where(Attempt.id.in_([uuid.UUID(attempt) for attempt in wanted]))
        .order_by(Post.id, Target.id)
    )
    rows = []
    for row in result.all():
        values = list(row)
        for index in (0, 2, 3, 10, 11):
            values[index] = None if values[index] is None else str(values[index])
        rows.append(values)
    return rows


def _is_id(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


async def _block_accounts(
    uow: UnitOfWork,
    outcomes: Sequence[Outcome],
    rows: dict[str, Sequence[Any]],
    now: datetime,
) -> None:
    """Hold the accounts whose rate limits the platform said are used up: no claim and no begin
    for them before `blocked_until` (a later instant never gets shortened)."""
    until: dict[str, datetime] = {}
    for outcome in outcomes:
        instant = outcome.account_blocked_until
        row = rows.get(outcome.attempt_id)
        if instant is None or instant <= now or row is None:
            continue
        account_id = row[10]
        until[account_id] = max(instant, until.get(account_id, instant))
    for account_id, instant in until.items():
        await uow.session.execute(
            update(Account)
            .where(
                Account.id == uuid.UUID(account_id),
                (Account.blocked_until.is_(None)) | (Account.blocked_until < instant),
            )
            .values(blocked_until=instant)
            .execution_options(synchronize_session=False)
        )


async def _needs_reauth(uow: UnitOfWork, writes: Writes, reasons: dict[str, str]) -> None:
    """Mark the active accounts whose token the platform refused, with an event each."""
    for account_id, reason in reasons.items():
        changed = await uow.session.execute(
            update(Account)
            .where(
                Account.id == uuid.UUID(account_id),
                Account.status == AccountStatus.ACTIVE.value,
            )
            .values(
                status=AccountStatus.NEEDS_REAUTH.value,
                status_reason=reason[:1000],
                updated_at=writes.now,
            )
            .returning(Account.tenant_id)
            .execution_options(synchronize_session=False)
        )
        tenant = changed.scalar_one_or_none()
        if tenant is not None:
            writes.event("needs_reauth", tenant_id=tenant, account_id=account_id, detail=reason)


async def _next_part_waiting(uow: UnitOfWork, parents: list[str]) -> bool:
    found = await uow.session.execute(
        select(Post.id)
        .where(
            Post.parent_post_id.in_([uuid.UUID(parent) for parent in parents]),
            Post.deleted_at.is_(None),
            Post.status.in_([PostStatus.SCHEDULED.value, PostStatus.PUBLISHING.value]),
        )
        .limit(1)
    )
    return found.first() is not None
