"""Changes to a post: update, schedule, unschedule, publish now, delete, retry, approve, reject.

Each locks the post, checks everything first, then makes its change and its lifecycle event in
one transaction, and answers with the post as it now is.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from kairos_api.adapters.orm import Post, PostMedia, PostTag, Target
from kairos_api.domain.model import (
    EDITABLE_POST_STATUSES,
    RETRYABLE_TARGET_STATUSES,
    AccountStatus,
    PostStatus,
    TargetStatus,
    derive_post_status,
)
from kairos_api.service_layer import queue_slots
from kairos_api.service_layer.application import Application
from kairos_api.service_layer.posts.rules import (
    APPROVAL_FIELDS,
    MAX_CAMPAIGN_LENGTH,
    MAX_NOTES_LENGTH,
    MAX_REASON_LENGTH,
    PUBLISHING_FIELDS,
    UPDATABLE_FIELDS,
    AccountRef,
    ScheduleInput,
    TargetInput,
    account_violations,
    accounts_of,
    check_length,
    check_stale_after,
    clean_tags,
    content_violations,
    media_id_violations,
    parse_id,
    queue_start,
    resolve_schedule,
    stale_at,
    target_platforms,
    target_violations,
    uploaded_media_violations,
    wake_if_due_soon,
)
from kairos_api.service_layer.unit_of_work import UnitOfWork
from kairos_common import errors
from kairos_common.errors import FieldViolation


@dataclass(frozen=True)
class UpdatePost:
    post_id: str
    paths: Sequence[str]
    content: str = ""
    media_urls: Sequence[str] = ()
    campaign: str = ""
    tags: Sequence[str] = ()
    notes: str = ""
    stale_after: timedelta | None = None
    approval_required: bool = False
    targets: Sequence[TargetInput] = ()
    expected_revision: int | None = None
    media_ids: Sequence[str] = ()


#: Targets a queued post holds slots for: those that will still be sent.
QUEUEABLE = frozenset({TargetStatus.PENDING, TargetStatus.QUEUED})


def _arm_targets(post: Post, default_stale_after: timedelta) -> None:
    """Make pending targets claimable when the post is scheduled, and not otherwise."""
    armed = post.status == PostStatus.SCHEDULED and post.scheduled_at is not None
    for target in post.targets:
        if target.status == TargetStatus.QUEUED:
            # Its delivery was claimed under an older revision: take it back so the old event
            # fails the fence and the target is claimed again as it is now.
            target.status = TargetStatus.PENDING
            target.delivery_id = None
            target.delivery_revision = None
            target.lease_until = None
        if target.status == TargetStatus.PENDING:
            # A post queued per target: each target is due at its own account's slot.
            due = target.queued_at or post.scheduled_at
            target.next_attempt_at = due if armed else None
            target.due_at = due
            target.stale_at = stale_at(post, due, default_stale_after)


def _forget_own_slots(post: Post) -> None:
    """The post is given one new instant (or none): its targets' own queue slots end."""
    for target in post.targets:
        target.queued_at = None


def _scheduled_status(post: Post) -> PostStatus:
    if post.approval_required and post.approved_at is None:
        return PostStatus.PENDING_APPROVAL
    return PostStatus.SCHEDULED


def _bump(post: Post, now: datetime) -> None:
    post.revision += 1
    post.updated_at = now


def _check_revision(post: Post, expected: int | None) -> None:
    if expected is not None and expected != post.revision:
        raise errors.Aborted(
            f"post {post.id} is at revision {post.revision}, not {expected}: "
            "read it again and reapply your change"
        )


def _require_editable(post: Post, action: str) -> None:
    in_flight = [t for t in post.targets if t.status == TargetStatus.PUBLISHING]
    if in_flight:
        raise errors.FailedPrecondition(
            f"cannot {action} post {post.id}: it is publishing now "
            f"({len(in_flight)} target(s) in flight)"
        )
    if post.status not in EDITABLE_POST_STATUSES:
        raise errors.FailedPrecondition(
            f"cannot {action} post {post.id}: it is {post.status}; "
            "only draft, scheduled, pending-approval or rejected posts can change"
        )


async def _get_post(
    uow: UnitOfWork, tenant: str, post_id: str, *, include_deleted: bool = False
) -> Post:
    """The post, locked for the change, with its targets and its tags (a change may rewrite the
    tags, and async sessions cannot load them lazily)."""
    ident = parse_id(post_id, "post_id")
    query = (
        select(Post)
        .where(Post.id == ident, Post.tenant_id == tenant)
        .options(selectinload(Post.targets), selectinload(Post.tag_rows))
        .with_for_update()
    )
    post = (await uow.session.execute(query)).scalar_one_or_none()
    if post is None or (post.deleted_at is not None and not include_deleted):
        raise errors.NotFound(f"post {post_id} not found")
    return post


async def _reload(uow: UnitOfWork, post_id: uuid.UUID) -> Post:
    query = (
        select(Post)
        .where(Post.id == post_id)
        .options(selectinload(Post.targets))
        .execution_options(populate_existing=True)
    )
    return (await uow.session.execute(query)).scalar_one()


async def _set_media_ids(
    uow: UnitOfWork, post: Post, media_ids: Sequence[uuid.UUID | None]
) -> None:
    """Name these uploaded files, in order (all parsed: the request was checked)."""
    await uow.session.refresh(post, ["media_rows"])
    post.media_ids = [str(i) for i in media_ids]
    post.media_rows = [
        PostMedia(position=position, media_id=media_id)
        for position, media_id in enumerate(media_ids)
    ]


def _set_tags(post: Post, tags: list[str]) -> None:
    post.tags = tags
    post.tag_rows = [PostTag(tag=t, tenant_id=post.tenant_id) for t in tags]


async def update_post(app: Application, tenant: str, command: UpdatePost) -> Post:
    """Change the fields named in the mask; see the module notes for what bumps the revision."""
    violations: list[FieldViolation] = []
    paths = list(dict.fromkeys(p.strip() for p in command.paths))
    if not paths:
        violations.append(FieldViolation("update_mask", "name at least one field to change"))
    for path in paths:
        if path not in UPDATABLE_FIELDS:
            violations.append(
                FieldViolation(
                    "update_mask",
                    f"{path!r} cannot be updated; updatable: {', '.join(sorted(UPDATABLE_FIELDS))}",
                )
            )
    if "campaign" in paths:
        check_length(command.campaign, MAX_CAMPAIGN_LENGTH, "post.campaign", violations)
    if "notes" in paths:
        check_length(command.notes, MAX_NOTES_LENGTH, "post.notes", violations)
    tags = clean_tags(command.tags, violations, "post.tags") if "tags" in paths else []
    if "stale_after" in paths:
        check_stale_after(command.stale_after, violations, "post.stale_after")
    new_media_ids = (
        media_id_violations(command.media_ids, violations, "post.media_ids")
        if "media_ids" in paths
        else []
    )
    if violations:
        raise errors.InvalidArgument.collect(violations)

    async with app.uow() as uow:
        post = await _get_post(uow, tenant, command.post_id)
        _check_revision(post, command.expected_revision)
        _require_editable(post, "update")

        new_targets: Sequence[TargetInput] = (
            command.targets
            if "targets" in paths
            else [
                TargetInput(str(t.account_id), t.content_override, dict(t.settings))
                for t in post.targets
            ]
        )
        ids = target_violations(new_targets, violations)
        if violations:
            raise errors.InvalidArgument.collect(violations)
        existing = {t.account_id: t for t in post.targets}
        if "targets" in paths:
            _refuse_removing_sent(post, ids)
        accounts = await accounts_of(uow, tenant, ids)
        # Only targets being added need an account that can publish: a kept target stays as it
        # is (an account disconnected since has already settled it SKIPPED), so an edit of the
        # tags or the text is never refused because of it.
        account_violations([i if i not in existing else None for i in ids], accounts, violations)
        if "targets" in paths and not violations:
            _require_a_live_target(ids, existing, accounts, violations)
        content = command.content if "content" in paths else post.content
        media = list(command.media_urls) if "media_urls" in paths else list(post.media_urls)
        media_ids: Sequence[uuid.UUID | None] = (
            new_media_ids if "media_ids" in paths else [uuid.UUID(i) for i in post.media_ids]
        )
        if {"content", "media_urls", "media_ids", "targets"} & set(paths):
            targets = target_platforms(new_targets, ids, accounts, content)
            violations.extend(content_violations(app, targets, media, uploads=len(media_ids)))
            # Files named before are checked again: one may have been deleted once the post had
            # settled, a new target's platform may pull media by URL or take no video, and a
            # video must stay the post's only media item.
            violations.extend(
                await uploaded_media_violations(
                    app, uow, tenant, media_ids, targets, media_urls=len(media)
                )
            )
        if violations:
            raise errors.InvalidArgument.collect([_prefix_post_field(v) for v in violations])

        now = app.clock()
        post.content = content
        post.media_urls = media
        if "media_ids" in paths:
            await _set_media_ids(uow, post, new_media_ids)
        if "campaign" in paths:
            post.campaign = command.campaign
        if "notes" in paths:
            post.notes = command.notes
        if "tags" in paths:
            _set_tags(post, tags)
        if "stale_after" in paths:
            post.stale_after_seconds = (
                int(command.stale_after.total_seconds()) if command.stale_after else None
            )
        was_required = post.approval_required
        if "approval_required" in paths:
            post.approval_required = command.approval_required
        if "targets" in paths:
            _replace_targets(post, new_targets, ids, accounts, now)
        if PUBLISHING_FIELDS & set(paths):
            if post.approval_required and (APPROVAL_FIELDS & set(paths) or not was_required):
                post.approved_at = None
            if post.status in (PostStatus.SCHEDULED, PostStatus.PENDING_APPROVAL):
                post.status = _scheduled_status(post)
            _bump(post, now)
            _arm_targets(post, app.settings.default_stale_after)
        post.updated_at = now
        uow.emit("updated", post)
        await uow.commit()
        return await _reload(uow, post.id)


def _prefix_post_field(violation: FieldViolation) -> FieldViolation:
    """Name content and media fields as they sit in UpdatePostRequest (`post.content`)."""
    for name in ("content", "media_urls", "media_ids"):
        if violation.field == name or violation.field.startswith(f"{name}["):
            return FieldViolation(f"post.{violation.field}", violation.description)
    return violation


#: Targets that cannot be taken off a post: published, being published, or perhaps published.
_SENT_TARGET_STATUSES: Final = {
    TargetStatus.PUBLISHED: "was published",
    TargetStatus.PUBLISHING: "is being published now",
    TargetStatus.UNKNOWN: "may have been published (its outcome is unknown)",
}
#: Targets that will still be sent once due.
_WAITING_TARGET_STATUSES: Final = frozenset(
    {TargetStatus.PENDING, TargetStatus.QUEUED, TargetStatus.RETRY_WAIT}
)


def _refuse_removing_sent(post: Post, ids: Sequence[uuid.UUID | None]) -> None:
    """FAILED_PRECONDITION when new targets leave out one that was (or may have been) sent: its
    record is what says where the post went."""
    kept = set(ids)
    for target in post.targets:
        reason = _SENT_TARGET_STATUSES.get(TargetStatus(target.status))
        if target.account_id not in kept and reason is not None:
            raise errors.FailedPrecondition(
                f"target {target.id} (account {target.account_id}) {reason}; "
                f"it cannot be removed from post {post.id}"
            )


def _require_a_live_target(
    ids: Sequence[uuid.UUID | None],
    existing: dict[uuid.UUID, Target],
    accounts: dict[uuid.UUID, AccountRef],
    violations: list[FieldViolation],
) -> None:
    """New targets must leave the post something to publish: a target still waiting to be sent,
    or one being added; otherwise a scheduled post would wait for ever."""
    for account_id in ids:
        kept = existing.get(account_id) if account_id is not None else None
        if kept is None or TargetStatus(kept.status) in _WAITING_TARGET_STATUSES:
            return
    settled = ", ".join(
        f"account {i} is {accounts[i].status}" if i in accounts else f"account {i} is gone"
        for i in ids
        if i is not None
    )
    violations.append(
        FieldViolation(
            "targets",
            f"no target is left that can still publish ({settled}); add a connected account",
        )
    )


def _replace_targets(
    post: Post,
    targets: Sequence[TargetInput],
    ids: Sequence[uuid.UUID | None],
    accounts: dict[uuid.UUID, AccountRef],
    now: datetime,
) -> None:
    existing = {t.account_id: t for t in post.targets}
    kept: list[Target] = []
    for target, account_id in zip(targets, ids, strict=True):
        assert account_id is not None
        row = existing.get(account_id)
        if row is None:
            row = Target(
                tenant_id=post.tenant_id,
                account_id=account_id,
                platform=accounts[account_id].platform,
                status=TargetStatus.PENDING,
                created_at=now,
            )
        row.content_override = target.content_override
        row.settings = dict(target.settings)
        row.updated_at = now
        kept.append(row)
    post.targets = kept


async def schedule_post(
    app: Application,
    tenant: str,
    post_id: str,
    when: ScheduleInput,
    expected_revision: int | None = None,
) -> Post:
    """Set or move the publishing instant; the post waits for approval if it needs one.

    A queued schedule takes the next slot free on every account the post targets.
    """
    start = queue_start(app, when.queue) if when.queue is not None else None
    at, zone = resolve_schedule(app, when) if start is None else (start, "")
    async with app.uow() as uow:
        post = await _get_post(uow, tenant, post_id)
        _check_revision(post, expected_revision)
        _require_editable(post, "schedule")
        _forget_own_slots(post)
        if when.queue is not None:
            accounts = [t.account_id for t in post.targets if t.status in QUEUEABLE]
            if when.queue.per_target:
                own, zone = await queue_slots.take_own_slots(uow, tenant, post.id, accounts, at)
                for target in post.targets:
                    target.queued_at = own.get(target.account_id)
                at = min(own.values())
            else:
                at, zone = await queue_slots.take_common_slot(uow, tenant, post.id, accounts, at)
        if post.status == PostStatus.REJECTED:
            post.approved_at = None
            post.rejection_reason = ""
        post.scheduled_at = at
        post.time_zone = zone
        post.status = _scheduled_status(post)
        now = app.clock()
        _bump(post, now)
        _arm_targets(post, app.settings.default_stale_after)
        uow.emit("scheduled", post)
        await uow.commit()
        wake_if_due_soon(app, post, now)
        return await _reload(uow, post.id)


async def unschedule_post(app: Application, tenant: str, post_id: str) -> Post:
    """Take a scheduled post back to draft; nothing of it will be sent."""
    async with app.uow() as uow:
        post = await _get_post(uow, tenant, post_id)
        _require_editable(post, "unschedule")
        if post.status == PostStatus.DRAFT:
            return post
        post.scheduled_at = None
        post.time_zone = ""
        post.status = PostStatus.DRAFT
        _bump(post, app.clock())
        _forget_own_slots(post)
        _arm_targets(post, app.settings.default_stale_after)
        uow.emit("unscheduled", post)
        await uow.commit()
        return await _reload(uow, post.id)


async def publish_now(app: Application, tenant: str, post_id: str) -> Post:
    """Schedule the post for this instant."""
    async with app.uow() as uow:
        post = await _get_post(uow, tenant, post_id)
        _require_editable(post, "publish")
        if post.approval_required and post.approved_at is None:
            raise errors.FailedPrecondition(
                f"post {post.id} requires approval before it can be published"
            )
        now = app.clock()
        post.scheduled_at = now
        post.time_zone = ""
        post.status = PostStatus.SCHEDULED
        _bump(post, now)
        _forget_own_slots(post)
        _arm_targets(post, app.settings.default_stale_after)
        uow.emit("scheduled", post, detail="publish now")
        await uow.commit()
        app.notifier.due_soon()
        return await _reload(uow, post.id)


async def delete_post(app: Application, tenant: str, post_id: str) -> Post:
    """Soft-delete a post; what is not yet published is cancelled. Deleting twice is harmless.

    A target whose platform call is already under way cannot be called back; it finishes and
    its outcome is still recorded.
    """
    async with app.uow() as uow:
        post = await _get_post(uow, tenant, post_id, include_deleted=True)
        if post.deleted_at is not None:
            return await _reload(uow, post.id)
        cancel_post(uow, post, app.clock())
        await uow.commit()
        return await _reload(uow, post.id)


def cancel_post(uow: UnitOfWork, post: Post, now: datetime) -> None:
    """Soft-delete a loaded post (with its targets) at `now`: every target not yet under way is
    cancelled, the post's status follows, and `deleted` is emitted. DeletePost's change, and a
    series' when it cancels an occurrence."""
    for target in post.targets:
        if target.status in (TargetStatus.PENDING, TargetStatus.QUEUED, TargetStatus.RETRY_WAIT):
            target.status = TargetStatus.CANCELLED
            target.next_attempt_at = None
            target.delivery_id = None
            target.delivery_revision = None
            target.lease_until = None
            target.updated_at = now
    post.deleted_at = now
    if post.status in EDITABLE_POST_STATUSES or post.status == PostStatus.PUBLISHING:
        derived = derive_post_status(TargetStatus(t.status) for t in post.targets)
        post.status = (
            PostStatus.CANCELLED
            if all(t.status == TargetStatus.CANCELLED for t in post.targets)
            else derived
        )
    _bump(post, now)
    uow.emit("deleted", post)


async def retry_post(
    app: Application, tenant: str, post_id: str, target_ids: Sequence[str] = ()
) -> Post:
    """Send failed, unknown or missed targets again; published targets are never re-sent."""
    wanted = [parse_id(value, f"target_ids[{i}]") for i, value in enumerate(target_ids)]
    async with app.uow() as uow:
        post = await _get_post(uow, tenant, post_id)
        by_id = {t.id: t for t in post.targets}
        violations = [
            FieldViolation(f"target_ids[{i}]", f"post {post.id} has no target {ident}")
            for i, ident in enumerate(wanted)
            if ident not in by_id
        ]
        if violations:
            raise errors.InvalidArgument.collect(violations)
        chosen = [by_id[i] for i in wanted] if wanted else list(post.targets)
        if wanted:
            for target in chosen:
                if target.status not in RETRYABLE_TARGET_STATUSES:
                    raise errors.FailedPrecondition(
                        f"target {target.id} is {target.status}; only failed, unknown or "
                        "missed targets can be retried"
                        + (
                            " (a published target is never sent again)"
                            if target.status == TargetStatus.PUBLISHED
                            else ""
                        )
                    )
        retried = [t for t in chosen if t.status in RETRYABLE_TARGET_STATUSES]
        if not retried:
            raise errors.FailedPrecondition(
                f"post {post.id} has no failed, unknown or missed target to retry"
            )
        accounts = await accounts_of(uow, tenant, [t.account_id for t in retried])
        for target in retried:
            # A target's account is its post's tenant's, and accounts are never deleted.
            account = accounts[target.account_id]
            if account.status != AccountStatus.ACTIVE:
                raise errors.FailedPrecondition(
                    f"account {target.account_id} of target {target.id} is {account.status}; "
                    "resume or reconnect it first"
                )
        now = app.clock()
        for target in retried:
            target.status = TargetStatus.PENDING
            target.next_attempt_at = now
            target.due_at = now
            target.attempt_count = 0  # a new round gets the full retry budget
            target.stale_at = stale_at(post, now, app.settings.default_stale_after)
            target.lease_until = None
            target.delivery_id = None
            target.delivery_revision = None
            target.updated_at = now
        post.status = PostStatus.PUBLISHING
        _bump(post, now)
        uow.emit("retried", post, detail=f"{len(retried)} target(s)")
        await uow.commit()
        app.notifier.due_soon()
        return await _reload(uow, post.id)


async def approve_post(app: Application, tenant: str, post_id: str) -> Post:
    """Approve a post that requires it; a scheduled one becomes claimable."""
    async with app.uow() as uow:
        post = await _get_post(uow, tenant, post_id)
        if not post.approval_required:
            raise errors.FailedPrecondition(f"post {post.id} does not require approval")
        if post.approved_at is not None and post.status != PostStatus.REJECTED:
            return post
        _require_editable(post, "approve")
        now = app.clock()
        post.approved_at = now
        post.rejection_reason = ""
        if post.status in (PostStatus.PENDING_APPROVAL, PostStatus.REJECTED):
            post.status = PostStatus.SCHEDULED if post.scheduled_at else PostStatus.DRAFT
        _bump(post, now)
        _arm_targets(post, app.settings.default_stale_after)
        uow.emit("approved", post)
        await uow.commit()
        wake_if_due_soon(app, post, now)
        return await _reload(uow, post.id)


async def reject_post(app: Application, tenant: str, post_id: str, reason: str) -> Post:
    """Reject a post that requires approval; it will not publish until edited and approved."""
    reason = reason.strip()
    if not reason:
        raise errors.InvalidArgument.of("reason", "say why the post is rejected")
    if len(reason) > MAX_REASON_LENGTH:
        raise errors.InvalidArgument.of("reason", f"at most {MAX_REASON_LENGTH} characters")
    async with app.uow() as uow:
        post = await _get_post(uow, tenant, post_id)
        if not post.approval_required:
            raise errors.FailedPrecondition(f"post {post.id} does not require approval")
        _require_editable(post, "reject")
        now = app.clock()
        post.status = PostStatus.REJECTED
        post.approved_at = None
        post.rejection_reason = reason
        _bump(post, now)
        _arm_targets(post, app.settings.default_stale_after)
        uow.emit("rejected", post, detail=reason)
        await uow.commit()
        return await _reload(uow, post.id)
