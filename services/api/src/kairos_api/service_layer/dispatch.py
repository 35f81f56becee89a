"""Use cases of DispatchService: claim due targets, fence attempts, record outcomes, sweep.

The target row is the single source of truth. A delivery (a claim) gets a fresh `delivery_id`;
every later step names it, and a step whose delivery is no longer the target's current one, or
whose post changed revision since the claim, is refused: edits and deletes always win.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Interval,
    Uuid,
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.orm import aliased, selectinload

from kairos_api.adapters import outbox
from kairos_api.adapters.crypto import CredentialDecryptError
from kairos_api.adapters.orm import Account, Attempt, Post, Target, UTCDateTime, new_id
from kairos_api.domain.model import (
    CLAIMABLE_TARGET_STATUSES,
    AccountStatus,
    ErrorClass,
    PostStatus,
    TargetStatus,
)
from kairos_api.service_layer.accounts import (
    StoredCredentials,
    decrypt_credentials,
    encrypt_stored,
)
from kairos_api.service_layer.application import Application
from kairos_api.service_layer.settle import settle_post_ids, settle_posts
from kairos_api.service_layer.unit_of_work import UnitOfWork
from kairos_common import errors
from kairos_common.platforms import Platform

MAX_CLAIM = 2000
MAX_COMPLETIONS = 500
#: Platforms whose idempotency key makes a second try of an unsettled attempt safe, and for how
#: long after the first try the platform remembers the key.
IDEMPOTENT_PLATFORMS: dict[str, timedelta] = {Platform.MASTODON: timedelta(minutes=50)}


@dataclass(frozen=True)
class Delivery:
    delivery_id: uuid.UUID
    target_id: uuid.UUID
    post_id: uuid.UUID
    platform: Platform
    account_id: uuid.UUID
    due_at: datetime
    revision: int
    lease_until: datetime
    attempt_number: int


@dataclass(frozen=True)
class Begun:
    """A begun attempt: what the publisher needs to call the platform."""

    attempt_id: uuid.UUID
    attempt_number: int
    target_id: uuid.UUID
    post_id: uuid.UUID
    account_id: uuid.UUID
    account_handle: str
    platform: Platform
    due_at: datetime
    content: str
    media_urls: list[str]
    settings: dict[str, str]
    credentials: StoredCredentials
    reply_to_platform_id: str
    idempotency_key: str
    #: An earlier attempt at this target may have reached the platform without its outcome
    #: being learnt (see `_outcome_lost`): a "duplicate" answer may be this target's own post.
    earlier_outcome_lost: bool = False


@dataclass(frozen=True)
class Refused:
    """Why an attempt may not begin; the publisher drops the event."""

    rejection: str  # superseded | revision_changed | not_queued | account_inactive | stale
    reason: str


@dataclass(frozen=True)
class Outcome:
    attempt_id: uuid.UUID
    delivery_id: uuid.UUID
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


@dataclass(frozen=True)
class Completion:
    attempt_id: uuid.UUID
    target_status: TargetStatus
    redeliver_after: timedelta | None  # None: ack the message
    #: The post, when this completion is the one that published its target.
    published_post: uuid.UUID | None = None


@dataclass(frozen=True)
class SweepResult:
    redeliveries: list[Delivery]
    marked_unknown: int
    marked_missed: int
    requeued_idempotent: int


def _delivery(target: Target, revision: int) -> Delivery:
    assert target.delivery_id is not None
    assert target.lease_until is not None
    assert target.due_at is not None
    return Delivery(
        delivery_id=target.delivery_id,
        target_id=target.id,
        post_id=target.post_id,
        platform=Platform(target.platform),
        account_id=target.account_id,
        due_at=target.due_at,
        revision=revision,
        lease_until=target.lease_until,
        attempt_number=target.attempt_count + 1,
    )


# --- claim ----------------------------------------------------------------------------------


async def claim_due(
    app: Application, horizon: timedelta, limit: int, lease: timedelta
) -> list[Delivery]:
    """Move targets due before now + horizon to QUEUED under fresh deliveries, soonest first.

    Only targets of active, unblocked accounts are claimed, and none past its stale instant
    (the sweeper marks those MISSED). On PostgreSQL, concurrent schedulers skip each other's
    locked rows, so no target is claimed twice.
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
            deliveries = await _claim_in_one_statement(uow, now, horizon, limit, lease)
            await uow.commit()
            return deliveries
        query = (
            select(Target, Post.revision)
            .join(Post, Post.id == Target.post_id)
            .join(Account, Account.id == Target.account_id)
            .where(*_claimable(now, horizon))
            .order_by(Target.next_attempt_at)
            .limit(limit)
        )
        rows = (await uow.session.execute(query)).all()
        deliveries = []
        for target, revision in rows:
            assert target.next_attempt_at is not None
            target.status = TargetStatus.QUEUED
            target.delivery_id = new_id()
            target.delivery_revision = revision
            target.lease_until = max(target.next_attempt_at, now) + lease
            target.updated_at = now
            deliveries.append(_delivery(target, revision))
        await uow.commit()
    return deliveries


def _claimable(now: datetime, horizon: timedelta) -> list[ColumnElement[bool]]:
    """What makes a target claimable now, for both ways of claiming."""
    return [
        # Rendered as literals, so that PostgreSQL can match the partial index on the due
        # column even with a generic plan for a prepared statement.
        Target.status.in_(
            bindparam(
                "claimable_statuses",
                sorted(s.value for s in CLAIMABLE_TARGET_STATUSES),
                expanding=True,
                literal_execute=True,
            )
        ),
        Target.next_attempt_at <= now + horizon,
        or_(Target.stale_at.is_(None), Target.stale_at > now),
        Account.status == AccountStatus.ACTIVE.value,
        # A rate-limited account's targets wait until its block has passed (not a lead window
        # early: the publisher would only have to hold them again).
        or_(Account.blocked_until.is_(None), Account.blocked_until <= now),
        # A part of a thread goes out only after the part it replies to was published on the
        # same account (or when the parent does not go to this account at all).
        or_(
            Post.parent_post_id.is_(None),
            ~exists().where(
                _Parent.post_id == Post.parent_post_id,
                _Parent.account_id == Target.account_id,
                _Parent.status != TargetStatus.PUBLISHED.value,
            ),
        ),
    ]


_Parent = aliased(Target, name="parent_target")


#: A fresh time-ordered id per row, laid out as `orm.new_id` lays it out: the first 48 bits
#: are the Unix time in milliseconds, then version 7 (set over gen_random_uuid's version 4),
#: the variant and random bits. `set_bit` numbers bits from the low end of each byte.
_NEW_ID_SQL = literal_column(
    "encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) placing "
    "substring(int8send(floor(extract(epoch from clock_timestamp()) * 1000)::bigint) from 3) "
    "from 1 for 6), 52, 1), 53, 1), 'hex')::uuid",
    Uuid(),
)


async def _claim_in_one_statement(
    uow: UnitOfWork, now: datetime, horizon: timedelta, limit: int, lease: timedelta
) -> list[Delivery]:
    """`claim_due` on PostgreSQL: select, lock and update the due targets in one statement.

    The selection is a materialized CTE, so it runs exactly once: concurrent schedulers skip
    each other's locked rows and the update touches only the rows it locked. Its columns and
    conditions are those of the SQLite path; so are the deliveries, soonest first.
    """
    due = (
        select(Target.id, Post.revision)
        .join(Post, Post.id == Target.post_id)
        .join(Account, Account.id == Target.account_id)
        .where(*_claimable(now, horizon))
        .order_by(Target.next_attempt_at)
        .limit(limit)
        .with_for_update(of=Target, skip_locked=True)
        .cte("due")
        .prefix_with("MATERIALIZED")
    )
    at_now = literal(now, UTCDateTime())
    statement = (
        update(Target)
        .where(Target.id == due.c.id)
        .values(
            status=TargetStatus.QUEUED.value,
            delivery_id=_NEW_ID_SQL,
            delivery_revision=due.c.revision,
            lease_until=func.greatest(Target.next_attempt_at, at_now) + literal(lease, Interval()),
            updated_at=at_now,
        )
        .returning(
            Target.delivery_id,
            Target.id,
            Target.post_id,
            Target.platform,
            Target.account_id,
            Target.due_at,
            due.c.revision,
            Target.lease_until,
            Target.attempt_count,
            Target.next_attempt_at,
        )
        .execution_options(synchronize_session=False)
    )
    # RETURNING keeps no order; the claim hands out the soonest first.
    rows = sorted((await uow.session.execute(statement)).all(), key=lambda r: r.next_attempt_at)
    return [
        Delivery(
            delivery_id=row.delivery_id,
            target_id=row.id,
            post_id=row.post_id,
            platform=Platform(row.platform),
            account_id=row.account_id,
            due_at=row.due_at,
            revision=row.revision,
            lease_until=row.lease_until,
            attempt_number=row.attempt_count + 1,
        )
        for row in rows
    ]


# --- begin ----------------------------------------------------------------------------------


async def begin_attempt(app: Application, delivery_id: str) -> Begun | Refused:
    """The fence for one delivery; see `begin_attempts`. A malformed id is the caller's error."""
    if _delivery_ident(delivery_id) is None:
        raise errors.InvalidArgument.of("delivery_id", "is not a valid id")
    return (await begin_attempts(app, [delivery_id]))[0]


async def begin_attempts(app: Application, delivery_ids: Sequence[str]) -> list[Begun | Refused]:
    """The fence: begin attempts only for deliveries that are still their target's current one.

    All in one transaction: each target's attempt intent is recorded before the publisher may
    call the platform. Refused deliveries say why; the publisher drops their events. A malformed
    id, or one named a second time, is refused on its own: one bad event must not hold back
    the good ones batched with it.
    """
    if len(delivery_ids) > MAX_COMPLETIONS:
        raise errors.InvalidArgument.of("delivery_ids", f"at most {MAX_COMPLETIONS} per call")
    results: list[Begun | Refused | None] = [None] * len(delivery_ids)
    positions: dict[uuid.UUID, int] = {}
    for index, value in enumerate(delivery_ids):
        ident = _delivery_ident(value)
        if ident is None:
            results[index] = Refused("superseded", f"{value[:64]!r} is not a valid delivery id")
        elif ident in positions:
            results[index] = Refused(
                "superseded", "the delivery was named twice in one call; only the first counts"
            )
        else:
            positions[ident] = index
    if positions:
        begun = await _begin_valid(app, list(positions))
        for index, result in zip(positions.values(), begun, strict=True):
            results[index] = result
    return [result for result in results if result is not None]


def _delivery_ident(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


async def _begin_valid(app: Application, idents: Sequence[uuid.UUID]) -> list[Begun | Refused]:
    """`begin_attempts` for well-formed, distinct delivery ids."""
    now = app.clock()
    async with app.uow() as uow:
        begun = await _begin_all_in_bulk(app, uow, idents, now)
        if begun is not None:
            await uow.commit()
            return begun
        query = select(Target).where(Target.delivery_id.in_(idents))
        if uow.on_postgresql:
            query = query.with_for_update(of=Target)
        targets = {t.delivery_id: t for t in (await uow.session.execute(query)).scalars()}
        posts = await _posts_of(uow, targets.values())
        account_ids = {t.account_id for t in targets.values()}
        accounts = (
            {
                a.id: a
                for a in (
                    await uow.session.execute(select(Account).where(Account.id.in_(account_ids)))
                ).scalars()
            }
            if account_ids
            else {}
        )
        history = await _attempt_history(uow, [t.id for t in targets.values()])
        credentials: dict[uuid.UUID, StoredCredentials | Exception] = {}
        results: list[Begun | Refused] = []
        for ident in idents:
            target = targets.get(ident)
            if target is None:
                results.append(
                    Refused("superseded", "the delivery was replaced by a newer one or withdrawn")
                )
                continue
            post, account = posts[target.post_id], accounts[target.account_id]
            refused = _fence(uow, post, target, account, now)
            if refused is None and account.id not in credentials:
                try:
                    credentials[account.id] = decrypt_credentials(app, account)
                except (CredentialDecryptError, errors.FailedPrecondition) as error:
                    credentials[account.id] = error
            secret = credentials.get(account.id)
            if refused is None and isinstance(secret, Exception):
                _end_target(uow, post, target, TargetStatus.FAILED, now, str(secret))
                refused = Refused("account_inactive", "the account's credentials cannot be read")
            if refused is not None:
                results.append(refused)
                continue
            assert secret is not None
            assert not isinstance(secret, Exception)
            last, lost = history.get(target.id, (0, False))
            number = last + 1
            history[target.id] = (number, lost)
            attempt = Attempt(
                id=new_id(), target_id=target.id, number=number, delivery_id=ident, started_at=now
            )
            uow.session.add(attempt)
            target.status = TargetStatus.PUBLISHING
            target.attempt_count += 1
            target.lease_until = now + app.settings.attempt_lease
            target.updated_at = now
            if post.status in (PostStatus.SCHEDULED, PostStatus.PENDING_APPROVAL):
                post.status = PostStatus.PUBLISHING
            reply_to = await _reply_to(uow, post, target)
            results.append(
                _begun(attempt.id, number, target, post, account, secret, reply_to, now, lost)
            )
        await settle_posts(
            uow,
            {
                t.post_id: posts[t.post_id]
                for t in targets.values()
                if posts[t.post_id].status != PostStatus.PUBLISHING
            }.values(),
            now,
        )
        await uow.commit()
    return results


async def _begin_all_in_bulk(
    app: Application, uow: UnitOfWork, idents: Sequence[uuid.UUID], now: datetime
) -> list[Begun | Refused] | None:
    """The common case of `begin_attempts`: every delivery passes the fence.

    Reads only the columns it needs and writes with one statement per table, instead of loading
    and flushing objects row by row. None, having changed nothing, as soon as any delivery would
    be refused or its credentials cannot be read: the caller then takes the general path, in
    the same transaction and under the same row locks.
    """
    # One round trip for the targets, their posts and what their earlier attempts say.
    last_number = (
        select(func.max(Attempt.number))
        .where(Attempt.target_id == Target.id)
        .correlate(Target)
        .scalar_subquery()
    )
    outcome_lost = exists().where(Attempt.target_id == Target.id, _outcome_lost()).correlate(Target)
    query = (
        select(
            Target.id,
            Target.post_id,
            Target.account_id,
            Target.platform,
            Target.status,
            Target.delivery_id,
            Target.delivery_revision,
            Target.stale_at,
            Target.due_at,
            Target.content_override,
            Target.settings,
            last_number.label("last_number"),
            outcome_lost.label("outcome_lost"),
            Post.status.label("post_status"),
            Post.revision,
            Post.deleted_at,
            Post.content,
            Post.media_urls,
            Post.parent_post_id,
        )
        .join(Post, Post.id == Target.post_id)
        .where(Target.delivery_id.in_(idents))
    )
    if uow.on_postgresql:
        query = query.with_for_update(of=Target)
    targets = {row.delivery_id: row for row in (await uow.session.execute(query)).all()}
    if len(targets) != len(idents):
        return None
    accounts = {
        a.id: a
        for a in (
            await uow.session.execute(
                select(Account).where(Account.id.in_({t.account_id for t in targets.values()}))
            )
        ).scalars()
    }
    for target in targets.values():
        account = accounts[target.account_id]
        if (
            target.status != TargetStatus.QUEUED
            or target.deleted_at is not None
            or target.revision != target.delivery_revision
            or (target.stale_at is not None and target.stale_at <= now)
            or account.status != AccountStatus.ACTIVE
            or _blocked_until(account, now) is not None
        ):
            return None
    credentials: dict[uuid.UUID, StoredCredentials] = {}
    for account in accounts.values():
        try:
            credentials[account.id] = decrypt_credentials(app, account)
        except (CredentialDecryptError, errors.FailedPrecondition):
            return None
    replies = await _replies_to(uow, targets.values())
    lease_until = now + app.settings.attempt_lease
    attempts: list[dict[str, Any]] = []
    results: list[Begun | Refused] = []
    for ident in idents:
        target = targets[ident]
        account = accounts[target.account_id]
        attempt_id = new_id()
        number = (target.last_number or 0) + 1
        attempts.append(
            {
                "id": attempt_id,
                "target_id": target.id,
                "number": number,
                "delivery_id": ident,
                "started_at": now,
            }
        )
        reply_to = replies.get((target.parent_post_id, target.account_id), "")
        secret = credentials[account.id]
        # The row carries the post's content and media next to the target's columns.
        results.append(
            _begun(
                attempt_id,
                number,
                target,
                target,
                account,
                secret,
                reply_to,
                now,
                bool(target.outcome_lost),
            )
        )
    await uow.session.execute(insert(Attempt), attempts)
    # The same change for every target: one statement, not one per row.
    await uow.session.execute(
        update(Target)
        .where(Target.id.in_([t.id for t in targets.values()]))
        .values(
            status=TargetStatus.PUBLISHING.value,
            attempt_count=Target.attempt_count + 1,
            lease_until=lease_until,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    starting = {
        t.post_id
        for t in targets.values()
        if t.post_status in (PostStatus.SCHEDULED, PostStatus.PENDING_APPROVAL)
    }
    if starting:
        await uow.session.execute(
            update(Post)
            .where(Post.id.in_(starting))
            .values(status=PostStatus.PUBLISHING.value)
            .execution_options(synchronize_session=False)
        )
    # No settling: each of these posts now has a PUBLISHING target, so it derives PUBLISHING,
    # which `settle_posts` never writes.
    return results


async def _replies_to(
    uow: UnitOfWork, posts: Iterable[Any]
) -> dict[tuple[uuid.UUID, uuid.UUID], str]:
    """`_reply_to` for many posts at once, by (parent post, account)."""
    parents = {p.parent_post_id for p in posts if p.parent_post_id is not None}
    if not parents:
        return {}
    rows = await uow.session.execute(
        select(Target.post_id, Target.account_id, Target.platform_post_id).where(
            Target.post_id.in_(parents), Target.status == TargetStatus.PUBLISHED
        )
    )
    return {(post_id, account_id): found or "" for post_id, account_id, found in rows.all()}


def _begun(
    attempt_id: uuid.UUID,
    number: int,
    target: Any,
    post: Any,
    account: Account,
    credentials: StoredCredentials,
    reply_to: str,
    now: datetime,
    earlier_outcome_lost: bool,
) -> Begun:
    """What the publisher needs for one begun attempt. `target` and `post` are ORM objects or
    rows with the same column names."""
    return Begun(
        attempt_id=attempt_id,
        attempt_number=number,
        target_id=target.id,
        post_id=target.post_id,
        account_id=account.id,
        account_handle=account.handle,
        platform=Platform(target.platform),
        due_at=target.due_at or now,
        content=post.content if target.content_override is None else target.content_override,
        media_urls=list(post.media_urls),
        settings=dict(target.settings),
        credentials=credentials,
        reply_to_platform_id=reply_to,
        idempotency_key=f"kairos-{target.id}",
        earlier_outcome_lost=earlier_outcome_lost,
    )


def _blocked_until(account: Account, now: datetime) -> datetime | None:
    """The later instant before which the platform asked this account to make no call."""
    until = account.blocked_until
    return until if until is not None and until > now else None


def _fence(
    uow: UnitOfWork, post: Post, target: Target, account: Account, now: datetime
) -> Refused | None:
    """Why this delivery may not go out now, or None when it may."""
    if target.status != TargetStatus.QUEUED:
        return Refused("not_queued", f"the target is {target.status}")
    if post.deleted_at is not None or post.revision != target.delivery_revision:
        return Refused(
            "revision_changed",
            f"the post is at revision {post.revision}, the delivery was for "
            f"{target.delivery_revision}",
        )
    if target.stale_at is not None and target.stale_at <= now:
        _end_target(uow, post, target, TargetStatus.MISSED, now, "past its stale_after")
        return Refused("stale", "the target is past its stale_after and was marked missed")
    until = _blocked_until(account, now)
    if until is not None:
        _release(target, now)  # claimed again once the block has passed
        return Refused("account_inactive", f"the account is rate-limited until {until.isoformat()}")
    if account.status != AccountStatus.ACTIVE:
        if account.status == AccountStatus.DISCONNECTED:
            _end_target(uow, post, target, TargetStatus.SKIPPED, now, "account disconnected")
        else:
            _release(target, now)  # claimed again once the account is active
        return Refused("account_inactive", f"the account is {account.status}")
    return None


def _outcome_lost() -> ColumnElement[bool]:
    """An attempt whose outcome Kairos never learnt: it ended UNKNOWN (reported so, or settled
    by the sweeper or a dead letter, which close it as UNKNOWN) or is still open, begun and
    never reported back. Its call may have reached the platform."""
    return or_(Attempt.finished_at.is_(None), Attempt.error_class == ErrorClass.UNKNOWN.value)


async def _attempt_history(
    uow: UnitOfWork, target_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[int, bool]]:
    """Per target: the last attempt number and whether an attempt's outcome was lost."""
    if not target_ids:
        return {}
    rows = await uow.session.execute(
        select(
            Attempt.target_id,
            func.max(Attempt.number),
            func.max(case((_outcome_lost(), 1), else_=0)),
        )
        .where(Attempt.target_id.in_(target_ids))
        .group_by(Attempt.target_id)
    )
    return {target_id: (int(number), bool(lost)) for target_id, number, lost in rows.all()}


async def _reply_to(uow: UnitOfWork, post: Post, target: Target) -> str:
    """The platform id of the parent post on the same account, for threads."""
    if post.parent_post_id is None:
        return ""
    parent = (
        await uow.session.execute(
            select(Target.platform_post_id).where(
                Target.post_id == post.parent_post_id,
                Target.account_id == target.account_id,
                Target.status == TargetStatus.PUBLISHED,
            )
        )
    ).scalar_one_or_none()
    return parent or ""


def _release(target: Target, now: datetime) -> None:
    """Back to PENDING, claimable again as soon as its account allows."""
    target.status = TargetStatus.PENDING
    target.delivery_id = None
    target.delivery_revision = None
    target.lease_until = None
    target.updated_at = now


def _end_target(
    uow: UnitOfWork,
    post: Post,
    target: Target,
    status: TargetStatus,
    now: datetime,
    message: str,
    *,
    error_class: str = "",
    code: str = "",
) -> None:
    target.status = status
    target.next_attempt_at = None
    target.delivery_id = None
    target.delivery_revision = None
    target.lease_until = None
    target.updated_at = now
    if status != TargetStatus.PUBLISHED:
        target.last_error_class = error_class
        target.last_error_code = code
        target.last_error_message = message[:2000]
    event = {
        TargetStatus.PUBLISHED: "published",
        TargetStatus.FAILED: "failed",
        TargetStatus.UNKNOWN: "unknown",
        TargetStatus.MISSED: "missed",
    }.get(status)
    if event is not None:
        uow.emit(event, post, target=target, detail=message[:1000])


# --- complete -------------------------------------------------------------------------------


def backoff(base: timedelta, cap: timedelta, attempt_count: int) -> timedelta:
    """Exponential backoff (base, 2×base, 4×base ... up to cap), jittered over its upper half."""
    ceiling = min(cap.total_seconds(), base.total_seconds() * 2 ** max(0, attempt_count - 1))
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))


async def complete_attempts(app: Application, outcomes: Sequence[Outcome]) -> list[Completion]:
    """Record outcomes in one transaction and say what the publisher should do with each."""
    if len(outcomes) > MAX_COMPLETIONS:
        raise errors.InvalidArgument.of("outcomes", f"at most {MAX_COMPLETIONS} per call")
    now = app.clock()
    results: list[Completion] = []
    async with app.uow() as uow:
        await _block_accounts(uow, outcomes, now)
        published = await _complete_published_in_bulk(uow, outcomes, now)
        if published is not None:
            wake = await _next_parts_waiting(uow, published)
            await uow.commit()
            if wake:
                app.notifier.due_soon()
            return published
        ids = [o.attempt_id for o in outcomes]
        attempts = {
            a.id: a
            for a in (
                await uow.session.execute(
                    select(Attempt)
                    .where(Attempt.id.in_(ids))
                    .options(selectinload(Attempt.target).selectinload(Target.post))
                )
            ).scalars()
        }
        touched: dict[uuid.UUID, Post] = {}
        for outcome in outcomes:
            attempt = attempts.get(outcome.attempt_id)
            if attempt is None:
                raise errors.NotFound(f"attempt {outcome.attempt_id} not found")
            target = attempt.target
            post = target.post
            if (
                attempt.finished_at is not None
                or target.delivery_id != outcome.delivery_id
                or (target.status != TargetStatus.PUBLISHING)
            ):
                # Already recorded (a retried call), or settled by the sweeper meanwhile.
                results.append(Completion(attempt.id, TargetStatus(target.status), None))
                continue
            attempt.finished_at = now
            attempt.published = outcome.published
            attempt.http_status = outcome.http_status
            attempt.error_class = outcome.error_class.value if outcome.error_class else ""
            attempt.error_code = outcome.error_code[:100]
            attempt.message = outcome.message[:2000]
            attempt.latency_ms = outcome.latency_ms
            results.append(await _apply(app, uow, post, target, outcome, now))
            touched[post.id] = post
        await settle_posts(uow, touched.values(), now)
        wake = await _next_parts_waiting(uow, results)
        await uow.commit()
    if wake:
        app.notifier.due_soon()
    return results


async def _next_parts_waiting(uow: UnitOfWork, completions: Sequence[Completion]) -> bool:
    """Whether a post whose target was just published has a next part of its thread (a
    scheduled reply): the schedulers are woken for it rather than left to their next tick."""
    parents = {c.published_post for c in completions if c.published_post is not None}
    if not parents:
        return False
    found = await uow.session.execute(
        select(Post.id)
        .where(
            Post.parent_post_id.in_(parents),
            Post.deleted_at.is_(None),
            Post.status.in_([PostStatus.SCHEDULED.value, PostStatus.PUBLISHING.value]),
        )
        .limit(1)
    )
    return found.first() is not None


async def _block_accounts(uow: UnitOfWork, outcomes: Sequence[Outcome], now: datetime) -> None:
    """Hold the accounts whose rate limits the platform said are used up: no claim and no begin
    for them before `blocked_until` (a later instant never gets shortened)."""
    blocks = {
        o.attempt_id: o.account_blocked_until
        for o in outcomes
        if o.account_blocked_until is not None and o.account_blocked_until > now
    }
    if not blocks:
        return
    rows = await uow.session.execute(
        select(Attempt.id, Target.account_id)
        .join(Target, Target.id == Attempt.target_id)
        .where(Attempt.id.in_(blocks))
    )
    until: dict[uuid.UUID, datetime] = {}
    for attempt_id, account_id in rows.all():
        until[account_id] = max(blocks[attempt_id], until.get(account_id, blocks[attempt_id]))
    for account_id, instant in until.items():
        await uow.session.execute(
            update(Account)
            .where(
                Account.id == account_id,
                or_(Account.blocked_until.is_(None), Account.blocked_until < instant),
            )
            .values(blocked_until=instant)
            .execution_options(synchronize_session=False)
        )


async def _complete_published_in_bulk(
    uow: UnitOfWork, outcomes: Sequence[Outcome], now: datetime
) -> list[Completion] | None:
    """The common case of `complete_attempts`: every outcome is a first report of a publication.

    Same effects as `_apply` for a published outcome, written with one statement per table.
    None, having changed nothing, when any outcome is of another kind, repeated, already
    recorded, no longer current or unknown: the caller then takes the general path.
    """
    if not outcomes or not all(o.published for o in outcomes):
        return None
    ids = [o.attempt_id for o in outcomes]
    if len(set(ids)) != len(ids):
        return None
    rows = {
        row.id: row
        for row in (
            await uow.session.execute(
                select(
                    Attempt.id,
                    Attempt.finished_at,
                    Attempt.target_id,
                    Target.delivery_id,
                    Target.status,
                    Target.account_id,
                    Target.post_id,
                    Post.tenant_id,
                    Post.status.label("post_status"),
                    Post.revision,
                )
                .join(Target, Target.id == Attempt.target_id)
                .join(Post, Post.id == Target.post_id)
                .where(Attempt.id.in_(ids))
            )
        ).all()
    }
    for outcome in outcomes:
        row = rows.get(outcome.attempt_id)
        if (
            row is None
            or row.finished_at is not None
            or row.delivery_id != outcome.delivery_id
            or row.status != TargetStatus.PUBLISHING
        ):
            return None
    attempts: list[dict[str, Any]] = []
    changes: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for outcome in outcomes:
        row = rows[outcome.attempt_id]
        attempts.append(
            {
                "id": outcome.attempt_id,
                "finished_at": now,
                "published": True,
                "http_status": outcome.http_status,
                "error_class": outcome.error_class.value if outcome.error_class else "",
                "error_code": outcome.error_code[:100],
                "message": outcome.message[:2000],
                "latency_ms": outcome.latency_ms,
            }
        )
        changes.append(
            {
                "id": row.target_id,
                "status": TargetStatus.PUBLISHED.value,
                "platform_post_id": outcome.platform_post_id[:200],
                "platform_url": outcome.url[:2048],
                "published_at": now,
                "last_error_class": "",
                "last_error_code": "",
                "last_error_message": "",
                "next_attempt_at": None,
                "delivery_id": None,
                "delivery_revision": None,
                "lease_until": None,
                "updated_at": now,
            }
        )
        # As `_end_target` emits it: the post's status before settling.
        events.append(
            outbox.lifecycle_row(
                "published",
                tenant_id=row.tenant_id,
                post_id=row.post_id,
                post_status=PostStatus(row.post_status),
                revision=row.revision,
                target_id=row.target_id,
                target_status=TargetStatus.PUBLISHED,
                account_id=row.account_id,
                detail="published",
            )
        )
    await uow.update_rows(Attempt, attempts)
    await uow.update_rows(Target, changes)
    await uow.emit_rows(events)
    await settle_post_ids(uow, {row.post_id: row.post_status for row in rows.values()}, now)
    return [
        Completion(o.attempt_id, TargetStatus.PUBLISHED, None, rows[o.attempt_id].post_id)
        for o in outcomes
    ]


async def _apply(
    app: Application,
    uow: UnitOfWork,
    post: Post,
    target: Target,
    outcome: Outcome,
    now: datetime,
) -> Completion:
    if outcome.published:
        target.platform_post_id = outcome.platform_post_id[:200]
        target.platform_url = outcome.url[:2048]
        target.published_at = now
        target.last_error_class = target.last_error_code = target.last_error_message = ""
        _end_target(uow, post, target, TargetStatus.PUBLISHED, now, "published")
        return Completion(outcome.attempt_id, TargetStatus.PUBLISHED, None, post.id)
    error_class = outcome.error_class or ErrorClass.UNKNOWN
    klass, code, message = error_class.value, outcome.error_code, outcome.message
    if error_class == ErrorClass.PERMANENT:
        _end_target(
            uow, post, target, TargetStatus.FAILED, now, message, error_class=klass, code=code
        )
        return Completion(outcome.attempt_id, TargetStatus.FAILED, None)
    if error_class == ErrorClass.UNKNOWN and not await _safe_to_retry(uow, target, now):
        _end_target(
            uow, post, target, TargetStatus.UNKNOWN, now, message, error_class=klass, code=code
        )
        return Completion(outcome.attempt_id, TargetStatus.UNKNOWN, None)
    # An UNKNOWN that is safe to retry goes on as a retryable error below.
    if error_class == ErrorClass.AUTH:
        account = await uow.session.get(Account, target.account_id)
        assert account is not None
        if account.status == AccountStatus.ACTIVE:
            account.status = AccountStatus.NEEDS_REAUTH
            account.status_reason = message[:1000]
            account.updated_at = now
            uow.emit_account("needs_reauth", account, detail=message)
        # Waits, claimable again once the account is reconnected (or missed past stale_after).
        target.last_error_class, target.last_error_code = klass, code
        target.last_error_message = message[:2000]
        target.next_attempt_at = now
        _release(target, now)
        return Completion(outcome.attempt_id, TargetStatus.PENDING, None)
    # Retryable.
    if target.attempt_count >= app.settings.max_attempts:
        _end_target(
            uow,
            post,
            target,
            TargetStatus.FAILED,
            now,
            f"gave up after {target.attempt_count} attempts: {message}",
            error_class=klass,
            code=code,
        )
        return Completion(outcome.attempt_id, TargetStatus.FAILED, None)
    delay = backoff(app.settings.retry_base, app.settings.retry_cap, target.attempt_count)
    if outcome.retry_not_before is not None:
        delay = max(delay, outcome.retry_not_before - now)
    target.last_error_class, target.last_error_code = klass, code
    target.last_error_message = message[:2000]
    target.updated_at = now
    if target.stale_at is not None and now + delay >= target.stale_at:
        _end_target(
            uow,
            post,
            target,
            TargetStatus.MISSED,
            now,
            f"the next try would be past stale_after: {message}",
            error_class=klass,
            code=code,
        )
        return Completion(outcome.attempt_id, TargetStatus.MISSED, None)
    uow.emit("retry_scheduled", post, target=target, detail=message[:1000])
    if delay <= app.settings.redeliver_max:
        # Short wait: the same delivery comes back through JetStream after the delay.
        target.status = TargetStatus.QUEUED
        target.lease_until = now + delay + app.settings.attempt_lease
        return Completion(outcome.attempt_id, TargetStatus.QUEUED, delay)
    target.status = TargetStatus.RETRY_WAIT
    target.next_attempt_at = now + delay
    target.delivery_id = None
    target.delivery_revision = None
    target.lease_until = None
    return Completion(outcome.attempt_id, TargetStatus.RETRY_WAIT, None)


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
        query = select(Target).where(Target.delivery_id == ident)
        if uow.on_postgresql:
            query = query.with_for_update()
        target = (await uow.session.execute(query)).scalar_one_or_none()
        if target is None or target.status not in (TargetStatus.QUEUED, TargetStatus.PUBLISHING):
            return None
        post = await uow.session.get(Post, target.post_id)
        assert post is not None
        message = f"dead-lettered: {reason}"[:2000]
        if target.status == TargetStatus.PUBLISHING:
            await _close_open_attempts(uow, target.id, now)
            _end_target(
                uow,
                post,
                target,
                TargetStatus.UNKNOWN,
                now,
                message,
                error_class=ErrorClass.UNKNOWN.value,
            )
        else:
            _end_target(
                uow,
                post,
                target,
                TargetStatus.FAILED,
                now,
                message,
                error_class=ErrorClass.PERMANENT.value,
                code="dead_letter",
            )
        await settle_posts(uow, [post], now)
        await uow.commit()
        return TargetStatus(target.status)


# --- sweep ----------------------------------------------------------------------------------


async def sweep_expired(app: Application, limit: int, lease: timedelta) -> SweepResult:
    """Re-emit lost deliveries, settle abandoned attempts, mark stale targets MISSED."""
    if limit <= 0 or limit > MAX_CLAIM:
        raise errors.InvalidArgument.of("limit", f"must be 1-{MAX_CLAIM}")
    now = app.clock()
    redeliveries: list[Delivery] = []
    unknown = missed = requeued = 0
    async with app.uow() as uow:

        async def expired(*conditions: Any) -> list[Target]:
            query = select(Target).where(*conditions).limit(limit)
            if uow.on_postgresql:
                query = query.with_for_update(of=Target, skip_locked=True)
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
        lost = await expired(Target.status == TargetStatus.QUEUED, Target.lease_until < now)
        abandoned = await expired(
            Target.status == TargetStatus.PUBLISHING, Target.lease_until < now
        )
        posts = await _posts_of(uow, [*stale, *lost, *abandoned])
        for target in stale:
            _end_target(
                uow,
                posts[target.post_id],
                target,
                TargetStatus.MISSED,
                now,
                "past its stale_after before it could be published",
            )
            missed += 1
        for target in lost:
            if target.status == TargetStatus.QUEUED:  # not just marked missed
                redeliver(target, posts[target.post_id])
        for target in abandoned:
            post = posts[target.post_id]
            if await _safe_to_retry(uow, target, now):
                # The platform dedups on the idempotency key: a second call cannot double-post.
                redeliver(target, post)
                requeued += 1
            else:
                await _close_open_attempts(uow, target.id, now)
                _end_target(
                    uow,
                    post,
                    target,
                    TargetStatus.UNKNOWN,
                    now,
                    "the attempt never reported back; the post may or may not be published",
                    error_class=ErrorClass.UNKNOWN.value,
                )
                unknown += 1
        await settle_posts(uow, posts.values(), now)
        await uow.commit()
    return SweepResult(redeliveries, unknown, missed, requeued)


async def _safe_to_retry(uow: UnitOfWork, target: Target, now: datetime) -> bool:
    """Whether the platform still remembers this target's idempotency key, so that trying again
    after an attempt that may have published cannot publish twice."""
    window = IDEMPOTENT_PLATFORMS.get(target.platform)
    if window is None:
        return False
    first = await _first_attempt_start(uow, target.id)
    return first is not None and now - first < window


async def _posts_of(uow: UnitOfWork, targets: Iterable[Target]) -> dict[uuid.UUID, Post]:
    ids = {t.post_id for t in targets}
    if not ids:
        return {}
    rows = (await uow.session.execute(select(Post).where(Post.id.in_(ids)))).scalars()
    return {p.id: p for p in rows}


async def _first_attempt_start(uow: UnitOfWork, target_id: uuid.UUID) -> datetime | None:
    rows = (
        await uow.session.execute(select(Attempt.started_at).where(Attempt.target_id == target_id))
    ).scalars()
    return min(rows, default=None)


async def _close_open_attempts(uow: UnitOfWork, target_id: uuid.UUID, now: datetime) -> None:
    await uow.session.execute(
        update(Attempt)
        .where(and_(Attempt.target_id == target_id, Attempt.finished_at.is_(None)))
        .values(
            finished_at=now,
            error_class=ErrorClass.UNKNOWN.value,
            message="no outcome was reported before the lease ran out",
        )
    )


# --- credentials ----------------------------------------------------------------------------


async def save_refreshed_credentials(
    app: Application,
    account_id: str,
    credentials: StoredCredentials | None,
    *,
    needs_reauth: bool,
    reason: str,
    failed_refresh_token: str = "",
) -> tuple[AccountStatus, StoredCredentials | None]:
    """Store tokens a publisher refreshed, or mark the account NEEDS_REAUTH when refresh failed.

    A refresh can fail because another publisher copy used the same single-use refresh token a
    moment earlier; then the stored refresh token is no longer `failed_refresh_token`, the
    account is left alone, and its current credentials are returned for the caller to use.
    """
    try:
        ident = uuid.UUID(account_id)
    except ValueError:
        raise errors.InvalidArgument.of("account_id", "is not a valid id") from None
    now = app.clock()
    async with app.uow() as uow:
        account = await uow.session.get(Account, ident, with_for_update=True)
        if account is None:
            raise errors.NotFound(f"account {account_id} not found")
        if account.status == AccountStatus.DISCONNECTED:
            raise errors.FailedPrecondition(f"account {account_id} is disconnected")
        if needs_reauth and failed_refresh_token:
            try:
                stored = decrypt_credentials(app, account)
            except CredentialDecryptError:
                stored = None
            if stored is not None and stored["refresh_token"] != failed_refresh_token:
                return AccountStatus(account.status), stored
        if needs_reauth:
            if account.status != AccountStatus.NEEDS_REAUTH:
                account.status = AccountStatus.NEEDS_REAUTH
                account.status_reason = reason[:1000]
                uow.emit_account("needs_reauth", account, detail=reason)
        else:
            assert credentials is not None
            account.credentials = encrypt_stored(app, account.id, credentials)
            expires = credentials.get("expires_at")
            account.token_expires_at = datetime.fromisoformat(expires) if expires else None
            if account.status == AccountStatus.NEEDS_REAUTH:
                account.status = AccountStatus.ACTIVE
        account.updated_at = now
        await uow.commit()
        return AccountStatus(account.status), None
