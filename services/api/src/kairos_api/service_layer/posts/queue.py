"""QueueService: accounts' weekly slots, their queues as lists, and moving, swapping and removing
queued posts. Adding to the queue is a schedule (`Schedule.queue`, in `create` and
`commands.schedule_post`); `queue_slots` keeps the slots posts hold.

Each change locks the posts it moves, then the queues of their accounts, checks everything,
and moves the posts (a new revision and a `scheduled` event each) in one transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import selectinload

from kairos_api.adapters.orm import Account, AccountQueue, Post, QueuedSlot
from kairos_api.domain import schedule
from kairos_api.domain.model import PostStatus
from kairos_api.domain.queue import (
    SEARCH_HORIZON,
    Slot,
    WeeklySlots,
    first_common_free,
    parse_slots,
)
from kairos_api.service_layer.application import Application
from kairos_api.service_layer.posts.commands import (
    QUEUEABLE,
    _arm_targets,
    _bump,
    _forget_own_slots,
    _get_post,
    _reload,
    _require_editable,
)
from kairos_api.service_layer.posts.rules import parse_id
from kairos_api.service_layer.queue_slots import (
    held_slots,
    hold,
    holds,
    lock_queues,
    queued_start,
    release,
    require_queues,
    weekly_slots,
)
from kairos_api.service_layer.unit_of_work import UnitOfWork
from kairos_common import errors
from kairos_common.errors import FieldViolation

DEFAULT_LIST_COUNT = 20
MAX_LIST_COUNT = 500


@dataclass(frozen=True)
class QueueView:
    """An account's weekly slots (none when it has no queue)."""

    account_id: uuid.UUID
    time_zone: str
    slots: tuple[Slot, ...]


@dataclass(frozen=True)
class QueueEntryView:
    """One upcoming slot: its instant, its wall-clock time, and the post holding it if any."""

    at: datetime
    local_time: str
    post_id: uuid.UUID | None


@dataclass(frozen=True)
class ListedQueue:
    time_zone: str
    entries: list[QueueEntryView]


async def _account(uow: UnitOfWork, tenant: str, account_id: uuid.UUID) -> Account:
    account = await uow.session.get(Account, account_id)
    if account is None or account.tenant_id != tenant:
        raise errors.NotFound(f"account {account_id} not found")
    return account


async def set_queue_slots(
    app: Application,
    tenant: str,
    account_id: str,
    time_zone: str,
    slots: Sequence[tuple[int, str]],
) -> QueueView:
    """Replace an account's weekly slots; none turns its queue off. Queued posts stay put."""
    violations: list[FieldViolation] = []
    ident: uuid.UUID | None = None
    weekly: WeeklySlots | None = None
    try:
        ident = parse_id(account_id, "account_id")
    except errors.InvalidArgument as error:
        violations.extend(error.violations)
    try:
        weekly = parse_slots(time_zone, slots)
    except errors.InvalidArgument as error:
        violations.extend(error.violations)
    if violations:
        raise errors.InvalidArgument.collect(violations)
    assert ident is not None
    assert weekly is not None
    async with app.uow() as uow:
        await _account(uow, tenant, ident)
        row = (await lock_queues(uow, tenant, [ident])).get(ident)
        if not weekly.slots:
            if row is not None:
                await uow.session.delete(row)
        elif row is None:
            uow.session.add(
                AccountQueue(
                    account_id=ident,
                    tenant_id=tenant,
                    time_zone=weekly.time_zone,
                    slots=[[s.weekday, s.minute] for s in weekly.slots],
                )
            )
        else:
            row.time_zone = weekly.time_zone
            row.slots = [[s.weekday, s.minute] for s in weekly.slots]
        await uow.commit()
    return QueueView(ident, weekly.time_zone, weekly.slots)


async def get_queue_slots(app: Application, tenant: str, account_id: str) -> QueueView:
    ident = parse_id(account_id, "account_id")
    async with app.uow() as uow:
        await _account(uow, tenant, ident)
        row = await uow.session.get(AccountQueue, ident)
        if row is None:
            return QueueView(ident, "", ())
        weekly = weekly_slots(row)
        return QueueView(ident, weekly.time_zone, weekly.slots)


async def list_queue(
    app: Application, tenant: str, account_id: str, count: int, start: datetime | None
) -> ListedQueue:
    """The next `count` slots of an account from `start` (default now), free or held, in order;
    an instant held that is no slot any more (the slots changed since) is listed too."""
    violations: list[FieldViolation] = []
    ident: uuid.UUID | None = None
    try:
        ident = parse_id(account_id, "account_id")
    except errors.InvalidArgument as error:
        violations.extend(error.violations)
    if count < 0 or count > MAX_LIST_COUNT:
        violations.append(FieldViolation("count", f"must be from 1 to {MAX_LIST_COUNT}"))
    if violations:
        raise errors.InvalidArgument.collect(violations)
    assert ident is not None
    count = count or DEFAULT_LIST_COUNT
    start = start or app.clock()
    async with app.uow() as uow:
        await _account(uow, tenant, ident)
        row = await uow.session.get(AccountQueue, ident)
        query = (
            select(QueuedSlot.slot_at, QueuedSlot.post_id)
            .where(QueuedSlot.account_id == ident, QueuedSlot.slot_at >= start, holds())
            .order_by(QueuedSlot.slot_at)
            .limit(count)
        )
        held = {at: post for at, post in (await uow.session.execute(query)).all()}
    weekly = weekly_slots(row) if row is not None else WeeklySlots("UTC", ())
    instants = set(held)
    for instant in weekly.instants(start, start + SEARCH_HORIZON):
        if len(instants) >= count and instant > max(instants):
            break
        instants.add(instant)
    entries = [
        QueueEntryView(at, weekly.local_text(at), held.get(at)) for at in sorted(instants)[:count]
    ]
    return ListedQueue(weekly.time_zone if row is not None else "", entries)


async def _queued_at(uow: UnitOfWork, post: Post, field: str) -> datetime:
    """The instant a post holds in the queue; FAILED_PRECONDITION when it holds none."""
    query = select(QueuedSlot.slot_at).where(QueuedSlot.post_id == post.id, holds()).limit(1)
    at = (await uow.session.execute(query)).scalar_one_or_none()
    if at is None:
        raise errors.FailedPrecondition(
            f"post {post.id} is not queued ({field}): add it with a `queue` schedule first"
        )
    return at


def _accounts(post: Post) -> list[uuid.UUID]:
    return sorted({t.account_id for t in post.targets if t.status in QUEUEABLE})


async def _requeue(app: Application, uow: UnitOfWork, post: Post, at: datetime) -> None:
    """Move a queued post to `at` on every account it targets: a new revision, targets armed
    anew, a `scheduled` event, and the slots held."""
    post.scheduled_at = at
    _bump(post, app.clock())
    _forget_own_slots(post)
    _arm_targets(post, app.settings.default_stale_after)
    uow.emit("scheduled", post, detail="queue")
    await release(uow, [post.id])
    await hold(uow, post.tenant_id, post.id, _accounts(post), at)  # flushes the post too


async def _check_slot(
    uow: UnitOfWork,
    tenant: str,
    post: Post,
    at: datetime,
    field: str,
    *,
    besides: Sequence[uuid.UUID] = (),
) -> None:
    """`at` must be a slot of every account of the post and free there (but for `besides`)."""
    accounts = _accounts(post)
    queues = await lock_queues(uow, tenant, accounts)
    weekly = require_queues(accounts, queues, field)
    for account, slots in zip(accounts, weekly, strict=True):
        if not slots.is_slot(at):
            raise errors.InvalidArgument.of(
                field, f"{at.isoformat()} is not a slot of account {account}'s queue"
            )
    held = await held_slots(uow, accounts, at, except_posts=[post.id, *besides])
    for account in accounts:
        holder = held[account].get(at)
        if holder is not None:
            raise errors.FailedPrecondition(
                f"the slot {at.isoformat()} of account {account} is held by post {holder}"
            )


async def move_queued_post(app: Application, tenant: str, post_id: str, at: datetime) -> Post:
    """Move a queued post to another slot, free on every account it targets."""
    async with app.uow() as uow:
        post = await _get_post(uow, tenant, post_id)
        _require_editable(post, "move")
        await _queued_at(uow, post, "post_id")
        schedule.check_not_in_past(at, app.clock(), tolerance=timedelta(0), field="slot_at")
        await _check_slot(uow, tenant, post, at, "slot_at")
        await _requeue(app, uow, post, at)
        await uow.commit()
        return await _reload(uow, post.id)


async def swap_queued_posts(
    app: Application, tenant: str, first_id: str, second_id: str
) -> tuple[Post, Post]:
    """Each of two queued posts takes the other's slot."""
    violations: list[FieldViolation] = []
    idents: list[uuid.UUID] = []
    for value, field in ((first_id, "first_post_id"), (second_id, "second_post_id")):
        try:
            idents.append(parse_id(value, field))
        except errors.InvalidArgument as error:
            violations.extend(error.violations)
    if not violations and idents[0] == idents[1]:
        violations.append(FieldViolation("second_post_id", "must be another post than the first"))
    if violations:
        raise errors.InvalidArgument.collect(violations)
    async with app.uow() as uow:
        # Locked in id order, so two swaps of the same pair never wait on each other crosswise.
        locked = {i: await _get_post(uow, tenant, str(i)) for i in sorted(idents)}
        first, second = locked[idents[0]], locked[idents[1]]
        for post in (first, second):
            _require_editable(post, "swap")
            if any(t.queued_at is not None for t in post.targets):
                raise errors.FailedPrecondition(
                    f"post {post.id} is queued per target, at more than one instant: "
                    "move it to one slot first (MoveQueuedPost)"
                )
        first_at = await _queued_at(uow, first, "first_post_id")
        second_at = await _queued_at(uow, second, "second_post_id")
        pair = [first.id, second.id]
        await _check_slot(uow, tenant, first, second_at, "second_post_id", besides=pair)
        await _check_slot(uow, tenant, second, first_at, "first_post_id", besides=pair)
        await release(uow, pair)
        await _requeue(app, uow, first, second_at)
        await _requeue(app, uow, second, first_at)
        await uow.commit()
        return await _reload(uow, first.id), await _reload(uow, second.id)


async def remove_from_queue(
    app: Application, tenant: str, post_id: str, *, shift_up: bool
) -> tuple[Post, list[uuid.UUID]]:
    """Take a queued post back to draft, freeing its slots. With `shift_up`, each later post
    queued on one of its accounts moves, in order, to the earliest slot free (on all its
    accounts; on that one alone for a post queued per target) from the freed one on, never
    later than it was; without, the others stay where they are."""
    async with app.uow() as uow:
        post = await _get_post(uow, tenant, post_id)
        _require_editable(post, "remove from the queue")
        await _queued_at(uow, post, "post_id")
        freed = {
            t.account_id: t.queued_at or post.scheduled_at
            for t in post.targets
            if t.status in QUEUEABLE and (t.queued_at or post.scheduled_at) is not None
        }
        await lock_queues(uow, tenant, freed)
        await release(uow, [post.id])
        post.scheduled_at = None
        post.time_zone = ""
        post.status = PostStatus.DRAFT
        _bump(post, app.clock())
        _forget_own_slots(post)
        _arm_targets(post, app.settings.default_stale_after)
        uow.emit("unscheduled", post, detail="removed from the queue")
        await uow.session.flush()
        moved: list[uuid.UUID] = []
        if shift_up:
            for account in sorted(freed):
                instant = freed[account]
                assert instant is not None
                for moved_id in await _shift_up(app, uow, tenant, account, instant):
                    if moved_id not in moved:
                        moved.append(moved_id)
        await uow.commit()
        return await _reload(uow, post.id), moved


async def _shift_up(
    app: Application, uow: UnitOfWork, tenant: str, account: uuid.UUID, freed: datetime
) -> list[uuid.UUID]:
    """Move the posts queued on `account` after `freed` up, in order; the ones that moved."""
    later = (
        await uow.session.execute(
            select(QueuedSlot.post_id)
            .where(QueuedSlot.account_id == account, QueuedSlot.slot_at > freed, holds())
            .order_by(QueuedSlot.slot_at, QueuedSlot.post_id)
        )
    ).scalars()
    start = max(freed, queued_start(app.clock(), None))
    moved: list[uuid.UUID] = []
    for post_id in list(later):
        # A later post being changed right now (its row locked) stays where it is: waiting for
        # it while holding its queues could deadlock with a re-queue of that very post.
        post = (
            await uow.session.execute(
                select(Post)
                .where(Post.id == post_id)
                .options(selectinload(Post.targets))
                .with_for_update(skip_locked=True)
                .execution_options(populate_existing=True)
            )
        ).scalar_one_or_none()
        if post is None or post.status not in (PostStatus.SCHEDULED, PostStatus.PENDING_APPROVAL):
            continue
        target = next(t for t in post.targets if t.account_id == account)
        per_target = target.queued_at is not None
        own = [account] if per_target else _accounts(post)
        current = target.queued_at or post.scheduled_at
        assert current is not None
        queues = await lock_queues(uow, tenant, own)
        if any(a not in queues or not queues[a].slots for a in own):
            continue  # an account's queue was turned off: the post stays where it is
        weekly = [weekly_slots(queues[a]) for a in own]
        held = await held_slots(uow, own, start, except_posts=[post.id])
        found = first_common_free(
            weekly, [set(held[a]) for a in own], start, horizon=current - start
        )
        if found is None or found >= current:
            continue
        if per_target:
            await _requeue_target(app, uow, post, account, found)
        else:
            await _requeue(app, uow, post, found)
        moved.append(post.id)
    return moved


async def _requeue_target(
    app: Application, uow: UnitOfWork, post: Post, account: uuid.UUID, at: datetime
) -> None:
    """Move the target on `account` of a post queued per target to its slot `at`."""
    for target in post.targets:
        if target.account_id == account:
            target.queued_at = at
    post.scheduled_at = min(t.queued_at for t in post.targets if t.queued_at is not None)
    _bump(post, app.clock())
    _arm_targets(post, app.settings.default_stale_after)
    uow.emit("scheduled", post, detail="queue")
    await uow.session.execute(
        delete(QueuedSlot).where(QueuedSlot.post_id == post.id, QueuedSlot.account_id == account)
    )
    await hold(uow, post.tenant_id, post.id, [account], at)  # flushes the post too
