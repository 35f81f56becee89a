"""Claim: due targets become QUEUED under fresh deliveries, which the scheduler emits.

On PostgreSQL the selection, the row locks (SKIP LOCKED, so concurrent schedulers never claim
the same target) and the update are one statement, sent on the unit's own psycopg connection.
SQLite, one writer at a time, runs the same selection and update as two.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, exists, or_, select, update
from sqlalchemy.orm import aliased

from kairos_api.adapters.orm import Account, Post, Target, new_id
from kairos_api.domain.model import AccountStatus, TargetStatus
from kairos_api.service_layer.application import Application
from kairos_api.service_layer.dispatch.records import MAX_CLAIM, Delivery
from kairos_api.service_layer.dispatch.writes import TARGETS
from kairos_api.service_layer.unit_of_work import UnitOfWork
from kairos_common import errors

#: A fresh time-ordered id per row, laid out as `orm.new_id` lays it out: the first 48 bits are
#: the Unix time in milliseconds, then version 7 (set over gen_random_uuid's version 4), the
#: variant and random bits. `set_bit` numbers bits from the low end of each byte.
NEW_ID_SQL = (
    "encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) placing "
    "substring(int8send(floor(extract(epoch from clock_timestamp()) * 1000)::bigint) from 3) "
    "from 1 for 6), 52, 1), 53, 1), 'hex')::uuid"
)

#: The claim on PostgreSQL. The statuses are literals, so that the planner matches the partial
#: index of claimable targets even with the generic plan of a prepared statement. The selection
#: is a materialized CTE, so it runs exactly once and the update touches only the rows it locked.
#: It runs with sorting disabled (`NO_SORT_SQL`): the only plan left reads that index in due
#: order and stops at the limit. Statistics lag a burst of creates by up to a minute, and with
#: them the planner would rather collect every due target and sort them, once per claim: a burst
#: of N posts then cost O(N²) (60-200 ms a claim at 15,000 due).
CLAIM_SQL = f"""
WITH due AS MATERIALIZED (
    SELECT t.id, p.revision
    FROM targets AS t
    JOIN posts AS p ON p.id = t.post_id
    JOIN accounts AS a ON a.id = t.account_id
    WHERE t.status IN ('pending', 'retry_wait')
      AND t.next_attempt_at <= %(horizon_at)s
      AND (t.stale_at IS NULL OR t.stale_at > %(now)s)
      AND a.status = 'active'
      AND (a.blocked_until IS NULL OR a.blocked_until <= %(now)s)
      AND (p.parent_post_id IS NULL OR NOT EXISTS (
            SELECT 1 FROM targets AS parent
            WHERE parent.post_id = p.parent_post_id
              AND parent.account_id = t.account_id
              AND parent.status <> 'published'))
    ORDER BY t.next_attempt_at
    LIMIT %(limit)s
    FOR UPDATE OF t SKIP LOCKED
)
UPDATE targets AS t
SET status = 'queued',
    delivery_id = {NEW_ID_SQL},
    delivery_revision = due.revision,
    lease_until = greatest(t.next_attempt_at, %(now)s) + %(lease)s,
    updated_at = %(now)s
FROM due
WHERE t.id = due.id
RETURNING t.delivery_id::text, t.id::text, t.post_id::text, t.platform, t.account_id::text,
          t.due_at, due.revision, t.lease_until, t.attempt_count, t.next_attempt_at
"""


NO_SORT_SQL = "SET LOCAL enable_sort = off"


def claim_parameters(
    now: datetime, horizon: timedelta, limit: int, lease: timedelta
) -> dict[str, Any]:
    return {"now": now, "horizon_at": now + horizon, "limit": limit, "lease": lease}


async def claim_due(
    app: Application, horizon: timedelta, limit: int, lease: timedelta
) -> list[Delivery]:
    """Move targets due before now + horizon to QUEUED under fresh deliveries, soonest first.

    Only targets of active, unblocked accounts are claimed, none past its stale instant (the
    sweeper marks those MISSED), and a part of a thread only once the part it replies to was
    published on the same account.
    """
    if limit <= 0 or limit > MAX_CLAIM:
        raise errors.InvalidArgument.of("limit", f"must be 1-{MAX_CLAIM}")
    if horizon < timedelta(0) or horizon > timedelta(hours=1):
        raise errors.InvalidArgument.of("horizon", "must be between 0 and 1 hour")
    if lease <= timedelta(0) or lease > timedelta(hours=1):
        raise errors.InvalidArgument.of("lease", "must be between 0 and 1 hour")
    now = app.clock()
    async with app.uow() as uow:
        if uow.on_postgresql:
            connection = await uow.psycopg()
            await connection.execute(NO_SORT_SQL)
            cursor = await connection.execute(
                CLAIM_SQL, claim_parameters(now, horizon, limit, lease)
            )
            rows = await cursor.fetchall()
        else:
            rows = await _claim_on_sqlite(uow, now, horizon, limit, lease)
        await uow.commit()
    # RETURNING keeps no order; the claim hands out the soonest first.
    rows.sort(key=lambda row: row[9])
    return [
        Delivery(
            delivery_id=row[0],
            target_id=row[1],
            post_id=row[2],
            platform=row[3],
            account_id=row[4],
            due_at=row[5],
            revision=row[6],
            lease_until=row[7],
            attempt_number=row[8] + 1,
        )
        for row in rows
    ]


_Parent = aliased(Target, name="parent")


async def _claim_on_sqlite(
    uow: UnitOfWork, now: datetime, horizon: timedelta, limit: int, lease: timedelta
) -> list[Any]:
    """`CLAIM_SQL` for SQLite, whose one writer at a time needs no row locks: the same
    selection, then one update per claimed row. Rows as CLAIM_SQL returns them."""
    due = (
        await uow.session.execute(
            select(
                Target.id,
                Post.revision,
                Target.next_attempt_at,
                Target.post_id,
                Target.platform,
                Target.account_id,
                Target.due_at,
                Target.attempt_count,
            )
            .join(Post, Post.id == Target.post_id)
            .join(Account, Account.id == Target.account_id)
            .where(
                Target.status.in_([TargetStatus.PENDING.value, TargetStatus.RETRY_WAIT.value]),
                Target.next_attempt_at <= now + horizon,
                or_(Target.stale_at.is_(None), Target.stale_at > now),
                Account.status == AccountStatus.ACTIVE.value,
                or_(Account.blocked_until.is_(None), Account.blocked_until <= now),
                or_(
                    Post.parent_post_id.is_(None),
                    ~exists().where(
                        _Parent.post_id == Post.parent_post_id,
                        _Parent.account_id == Target.account_id,
                        _Parent.status != TargetStatus.PUBLISHED.value,
                    ),
                ),
            )
            .order_by(Target.next_attempt_at)
            .limit(limit)
        )
    ).all()
    if not due:
        return []
    changes: list[dict[str, Any]] = [
        {
            "target": row.id,
            "delivery": new_id(),
            "revision": row.revision,
            # Claimable rows always have their next instant.
            "lease": max(row.next_attempt_at or now, now) + lease,
        }
        for row in due
    ]
    table = TARGETS
    connection = await uow.session.connection()
    await connection.execute(
        update(table)
        .where(table.c.id == bindparam("target"))
        .values(
            status=TargetStatus.QUEUED.value,
            delivery_id=bindparam("delivery"),
            delivery_revision=bindparam("revision"),
            lease_until=bindparam("lease"),
            updated_at=now,
        ),
        changes,
    )
    # The rows as CLAIM_SQL returns them, from what was selected: one writer at a time, so
    # nothing changed them in between.
    return [
        [
            str(change["delivery"]),
            str(row.id),
            str(row.post_id),
            row.platform,
            str(row.account_id),
            row.due_at,
            change["revision"],
            change["lease"],
            row.attempt_count,
            row.next_attempt_at,
        ]
        for row, change in zip(due, changes, strict=True)
    ]
