"""The slots queued posts hold: locking accounts' queues, telling held slots from stale rows,
and taking the next slot free on every account of a post.

Concurrency: whoever takes, moves or frees slots first locks the `account_queues` rows of the
accounts concerned (`SELECT ... FOR UPDATE` on PostgreSQL, in account order so two callers never
wait on each other crosswise; SQLite's `BEGIN IMMEDIATE` already lets one writer in at a time),
so concurrent adds on one account take its slots one after the other, each seeing the slots the
ones before it took. The primary key (account, instant) of `queued_slots` is the backstop: were
the lock ever skipped, a second holder of a slot would fail instead of being written.

A `queued_slots` row holds its slot only while its post is still there at that instant: not
deleted, not a draft (or cancelled, or rejected), `scheduled_at` equal to the slot, and with a
live target on the account. So unscheduling, rescheduling or deleting a post frees its slots
without the posts' handlers knowing of queues; the rows left behind are ignored by reads and
removed by the next change to that queue.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, delete, exists, func, not_, or_, select

from kairos_api.adapters.orm import AccountQueue, Post, QueuedSlot, Target
from kairos_api.domain.model import PostStatus, TargetStatus
from kairos_api.domain.queue import Slot, WeeklySlots, first_common_free
from kairos_api.service_layer.unit_of_work import UnitOfWork
from kairos_common import errors

#: How long rows of past slots are kept (then removed by the next change to their queue).
KEEP_PAST = timedelta(days=1)
#: Post states in which a post no longer holds any slot.
_NOT_HOLDING = (PostStatus.DRAFT, PostStatus.CANCELLED, PostStatus.REJECTED)


@dataclass(frozen=True)
class QueueInput:
    """Add to queue: the next slot free on every account of the post, not before `not_before`
    (None: from now)."""

    not_before: datetime | None = None
    #: Each target at its own account's next free slot, instead of one slot free on all.
    per_target: bool = False


def holds() -> ColumnElement[bool]:
    """True for a `queued_slots` row whose post still holds the slot: the post's target on the
    account is still due then (at its own slot when queued per target, else at the post's)."""
    return exists().where(
        Post.id == QueuedSlot.post_id,
        Post.deleted_at.is_(None),
        Post.status.not_in([str(s) for s in _NOT_HOLDING]),
        Target.post_id == Post.id,
        Target.account_id == QueuedSlot.account_id,
        Target.status != str(TargetStatus.CANCELLED),
        func.coalesce(Target.queued_at, Post.scheduled_at) == QueuedSlot.slot_at,
    )


def weekly_slots(row: AccountQueue) -> WeeklySlots:
    return WeeklySlots(row.time_zone, tuple(Slot(day, minute) for day, minute in row.slots))


async def lock_queues(
    uow: UnitOfWork, tenant: str, account_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, AccountQueue]:
    """The queues of these accounts that exist, locked until the transaction ends; the rows
    they hold that no longer hold anything are removed."""
    wanted = sorted(set(account_ids))
    if not wanted:
        return {}
    query = (
        select(AccountQueue)
        .where(AccountQueue.tenant_id == tenant, AccountQueue.account_id.in_(wanted))
        .order_by(AccountQueue.account_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    rows = {row.account_id: row for row in (await uow.session.execute(query)).scalars()}
    if rows:
        # Housekeeping as well: rows of slots long past matter to no queue any more, so an
        # account's rows stay as many as its upcoming slots.
        past = datetime.now(UTC) - KEEP_PAST
        await uow.session.execute(
            delete(QueuedSlot).where(
                QueuedSlot.account_id.in_(list(rows)),
                or_(QueuedSlot.slot_at < past, not_(holds())),
            )
        )
    return rows


async def held_slots(
    uow: UnitOfWork,
    account_ids: Iterable[uuid.UUID],
    since: datetime,
    *,
    except_posts: Sequence[uuid.UUID] = (),
) -> dict[uuid.UUID, dict[datetime, uuid.UUID]]:
    """Per account, the instants from `since` on that are held, and by which post (rows of
    `except_posts` left out)."""
    wanted = list(set(account_ids))
    held: dict[uuid.UUID, dict[datetime, uuid.UUID]] = {a: {} for a in wanted}
    if not wanted:
        return held
    query = select(QueuedSlot.account_id, QueuedSlot.slot_at, QueuedSlot.post_id).where(
        QueuedSlot.account_id.in_(wanted), QueuedSlot.slot_at >= since, holds()
    )
    if except_posts:
        query = query.where(QueuedSlot.post_id.not_in(list(except_posts)))
    for account_id, slot_at, post_id in (await uow.session.execute(query)).all():
        held[account_id][slot_at] = post_id
    return held


def require_queues(
    account_ids: Sequence[uuid.UUID], queues: dict[uuid.UUID, AccountQueue], field: str
) -> list[WeeklySlots]:
    """The weekly slots of every account, in the given order; INVALID_ARGUMENT on `field` when
    one has no queue."""
    missing = [a for a in account_ids if a not in queues or not queues[a].slots]
    if missing:
        raise errors.InvalidArgument.of(
            field,
            "account(s) " + ", ".join(str(a) for a in missing) + " have no queue slots; "
            "set them with SetQueueSlots first",
        )
    return [weekly_slots(queues[a]) for a in account_ids]


async def take_common_slot(
    uow: UnitOfWork,
    tenant: str,
    post_id: uuid.UUID,
    account_ids: Sequence[uuid.UUID],
    start: datetime,
    *,
    field: str = "schedule.queue",
) -> tuple[datetime, str]:
    """Hold for `post_id` the earliest instant from `start` that is a slot of every account and
    free on all of them; returns it and the zone of the first account's queue.

    The post's own former rows are dropped first: a queued post added again takes a new slot.
    """
    await release(uow, [post_id])
    at, zone = await find_common_slot(uow, tenant, account_ids, start, field=field)
    await hold(uow, tenant, post_id, account_ids, at)
    return at, zone


async def take_own_slots(
    uow: UnitOfWork,
    tenant: str,
    post_id: uuid.UUID,
    account_ids: Sequence[uuid.UUID],
    start: datetime,
    *,
    field: str = "schedule.queue",
) -> tuple[dict[uuid.UUID, datetime], str]:
    """Hold for `post_id`, on each account, that account's earliest free slot from `start`;
    returns them by account, and the zone of the first account's queue."""
    accounts = list(dict.fromkeys(account_ids))
    await lock_queues(uow, tenant, accounts)  # all at once, in order
    await release(uow, [post_id])
    own: dict[uuid.UUID, datetime] = {}
    zone = ""
    for account in accounts:
        own[account], found_zone = await find_common_slot(
            uow, tenant, [account], start, field=field
        )
        zone = zone or found_zone
        await hold(uow, tenant, post_id, [account], own[account])
    return own, zone


async def find_common_slot(
    uow: UnitOfWork,
    tenant: str,
    account_ids: Sequence[uuid.UUID],
    start: datetime,
    *,
    field: str = "schedule.queue",
    also_taken: dict[uuid.UUID, set[datetime]] | None = None,
) -> tuple[datetime, str]:
    """Lock the accounts' queues and find the earliest instant from `start` that is a slot of
    every one and free on all (`also_taken`: slots about to be held in this transaction).

    The caller holds it (`hold`) in the same transaction, once its post is written.
    """
    accounts = list(dict.fromkeys(account_ids))
    queues = await lock_queues(uow, tenant, accounts)
    weekly = require_queues(accounts, queues, field)
    held = await held_slots(uow, accounts, start)
    extra = also_taken or {}
    taken = [set(held[a]) | extra.get(a, set()) for a in accounts]
    found = first_common_free(weekly, taken, start)
    if found is None:
        raise errors.InvalidArgument.of(
            field,
            "no instant within a year is a free slot of every account the post targets; "
            "add slots to their queues, or queue it on fewer accounts",
        )
    return found, weekly[0].time_zone


async def hold(
    uow: UnitOfWork, tenant: str, post_id: uuid.UUID, account_ids: Sequence[uuid.UUID], at: datetime
) -> None:
    """Write the rows by which `post_id` holds instant `at` on each account."""
    uow.session.add_all(
        QueuedSlot(account_id=a, slot_at=at, post_id=post_id, tenant_id=tenant)
        for a in dict.fromkeys(account_ids)
    )
    await uow.session.flush()


async def release(uow: UnitOfWork, post_ids: Sequence[uuid.UUID]) -> None:
    """Drop every row of these posts."""
    await uow.session.execute(delete(QueuedSlot).where(QueuedSlot.post_id.in_(list(post_ids))))


def queued_start(now: datetime, not_before: datetime | None) -> datetime:
    """Slots are taken after now (a slot at this very instant would be due before it is read)
    and from `not_before` on."""
    after_now = now + timedelta(seconds=1)
    return after_now if not_before is None else max(after_now, not_before)
