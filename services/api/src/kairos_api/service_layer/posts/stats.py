"""GetStats: a tenant's posts by status and targets by platform and status, what is due within
the hour, and the oldest overdue post.

The counts are totals that triggers keep in the same transactions as the changes they count
(migration 0005), so GetStats reads a handful of rows whatever the size of the tables. On
PostgreSQL each writing statement appends its changes to `stats_deltas` rather than updating a
shared total, so that concurrent writers never wait for each other; `fold_stats` moves the
deltas into the totals now and then, and a read adds those not yet folded, in one statement
(one snapshot: a fold is one transaction, so a delta is seen either pending or folded, never
both). What is due soon and overdue is read from the (tenant, status, scheduled_at) index of
live posts, and grows only with what is due within the hour.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import and_, bindparam, func, select, union_all

from kairos_api.adapters.orm import Post, StatsDelta, StatsTotal
from kairos_api.domain.model import PostStatus, TargetStatus
from kairos_api.service_layer.application import Application
from kairos_common.platforms import Platform

log = logging.getLogger(__name__)

#: Seconds between folds of the pending deltas into the totals.
FOLD_EVERY = 1.0


@dataclass(frozen=True)
class Stats:
    by_status: dict[PostStatus, int]
    by_platform: dict[tuple[Platform, TargetStatus], int]
    due_next_hour: int
    #: The earliest SCHEDULED or PENDING_APPROVAL post whose instant has passed, and its instant.
    oldest_overdue_id: uuid.UUID | None
    oldest_overdue_at: datetime | None


_pending = union_all(
    select(StatsTotal.platform, StatsTotal.status, StatsTotal.total.label("n")).where(
        StatsTotal.tenant_id == bindparam("tenant")
    ),
    select(StatsDelta.platform, StatsDelta.status, StatsDelta.delta).where(
        StatsDelta.tenant_id == bindparam("tenant")
    ),
).subquery()
#: Every total of the tenant with its pending deltas; platform '' holds the posts by status.
_TOTALS = (
    select(_pending.c.platform, _pending.c.status, func.sum(_pending.c.n))
    .group_by(_pending.c.platform, _pending.c.status)
    .having(func.sum(_pending.c.n) != 0)
)
_LIVE = and_(Post.tenant_id == bindparam("tenant"), Post.deleted_at.is_(None))
_DUE_NEXT_HOUR = select(func.count()).where(
    _LIVE,
    Post.status == PostStatus.SCHEDULED,
    Post.scheduled_at >= bindparam("now"),
    Post.scheduled_at < bindparam("hour_later"),
)
#: Posts whose publishing has not begun. Past their instant, both are overdue: a post still
#: waiting for approval is late from its author's view even though no claim would take it yet.
_WAITING_TO_START: Final = (PostStatus.SCHEDULED.value, PostStatus.PENDING_APPROVAL.value)
_OLDEST_OVERDUE = (
    select(Post.id, Post.scheduled_at)
    .where(_LIVE, Post.status.in_(_WAITING_TO_START), Post.scheduled_at < bindparam("now"))
    .order_by(Post.scheduled_at)
    .limit(1)
)


#: GetStats on PostgreSQL, in one statement (one snapshot): the totals with their pending deltas,
#: then a row '#due' with the count due within the hour, and a row '#oldest' with the oldest
#: overdue post when there is one.
STATS_SQL = """
SELECT platform, status, sum(n)::bigint, NULL::uuid, NULL::timestamptz FROM (
    SELECT platform, status, total AS n FROM stats_totals WHERE tenant_id = %(tenant)s
    UNION ALL
    SELECT platform, status, delta FROM stats_deltas WHERE tenant_id = %(tenant)s
) AS pending
GROUP BY platform, status HAVING sum(n) <> 0
UNION ALL
SELECT '#due', '', count(*), NULL, NULL FROM posts
WHERE tenant_id = %(tenant)s AND deleted_at IS NULL AND status = 'scheduled'
  AND scheduled_at >= %(now)s AND scheduled_at < %(hour_later)s
UNION ALL
(SELECT '#oldest', '', 0, id, scheduled_at FROM posts
 WHERE tenant_id = %(tenant)s AND deleted_at IS NULL
   AND status IN ('scheduled', 'pending_approval') AND scheduled_at < %(now)s
 ORDER BY scheduled_at LIMIT 1)
"""


async def get_stats(app: Application, tenant: str) -> Stats:
    """Counts by status and platform, what is due within the hour, the oldest overdue post.

    Due within the hour counts SCHEDULED posts only (what will go out unless changed); the
    oldest overdue is the earliest SCHEDULED or PENDING_APPROVAL post whose instant has passed.
    """
    now = app.clock()
    values = {"tenant": tenant, "now": now, "hour_later": now + timedelta(hours=1)}
    if app.reads is not None:
        rows = await app.reads.fetchall(STATS_SQL, values, plan_once=True)
        due_next_hour = next(total for platform, _, total, _, _ in rows if platform == "#due")
        totals = [row[:3] for row in rows if not row[0].startswith("#")]
        oldest = next(((row[3], row[4]) for row in rows if row[0] == "#oldest"), None)
    else:
        async with app.uow() as uow:
            connection = await uow.session.connection()
            totals = list(await connection.execute(_TOTALS, values))
            due_next_hour = (await connection.execute(_DUE_NEXT_HOUR, values)).scalar_one()
            found = (await connection.execute(_OLDEST_OVERDUE, values)).first()
            oldest = (found[0], found[1]) if found is not None else None
    by_status: dict[PostStatus, int] = {}
    by_platform: dict[tuple[Platform, TargetStatus], int] = {}
    for platform, status, total in totals:
        if platform:
            by_platform[(Platform(platform), TargetStatus(status))] = int(total)
        else:
            by_status[PostStatus(status)] = int(total)
    return Stats(
        by_status,
        by_platform,
        int(due_next_hour),
        oldest[0] if oldest is not None else None,
        oldest[1] if oldest is not None else None,
    )


#: One folder at a time: copies of the api folding at the same moment would wait for each other
#: on the totals, in any order (a deadlock); the one that finds the lock taken skips its turn.
FOLD_LOCK_SQL = "SELECT pg_try_advisory_xact_lock(hashtext('kairos_stats_fold'))"
#: Moves every committed delta into its total, in one statement.
FOLD_SQL = """
WITH folded AS (DELETE FROM stats_deltas RETURNING tenant_id, platform, status, delta)
INSERT INTO stats_totals (tenant_id, platform, status, total)
SELECT tenant_id, platform, status, sum(delta) FROM folded
GROUP BY tenant_id, platform, status
ON CONFLICT (tenant_id, platform, status)
DO UPDATE SET total = stats_totals.total + excluded.total
"""


async def fold_stats(app: Application) -> int:
    """Fold the pending deltas into the totals (PostgreSQL; SQLite has none); how many totals
    changed."""
    async with app.uow() as uow:
        if not uow.on_postgresql:
            return 0
        connection = await uow.psycopg()
        locked = await (await connection.execute(FOLD_LOCK_SQL)).fetchone()
        if locked is None or not locked[0]:
            return 0
        cursor = await connection.execute(FOLD_SQL)
        await uow.commit()
        return max(cursor.rowcount, 0)


async def fold_stats_until(app: Application, stopping: asyncio.Event) -> None:
    """Fold every FOLD_EVERY seconds until `stopping` is set, so that few deltas wait."""
    if app.engine.dialect.name != "postgresql":
        return  # SQLite's triggers change the totals themselves
    while not stopping.is_set():
        try:
            await fold_stats(app)
        except Exception as error:  # the database is away: the next round tries again
            log.warning("folding the stats deltas failed: %r", error)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), FOLD_EVERY)
