"""Use cases of PostsService: create, edit, schedule, approve, delete and retry posts.

Each handler validates everything first and collects every violation, then makes its change and
the matching lifecycle events in one transaction, so a refused request writes nothing.

Rules worth knowing:
- Only changes that affect publishing (content, media, targets, schedule, stale_after, approval)
  bump `revision`; notes, tags and campaign do not, so they never fence out a delivery.
- A change that bumps the revision takes every QUEUED target back to PENDING and clears its
  delivery, so the old due event fails the fence and the target is claimed again with the new
  content or time. A PUBLISHING target cannot be changed: the call may already be under way.
- A target is claimable exactly when `next_attempt_at` is set; it is set only while the post is
  SCHEDULED (and approved, when approval is required).
- Changing the content, media or targets of an approved post withdraws the approval.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, exists, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from kairos_api.adapters.orm import Account, Post, PostTag, Target
from kairos_api.bootstrap import Application
from kairos_api.domain import limits, schedule
from kairos_api.domain.model import (
    EDITABLE_POST_STATUSES,
    RETRYABLE_TARGET_STATUSES,
    AccountStatus,
    PostStatus,
    TargetStatus,
    derive_post_status,
)
from kairos_api.service_layer.unit_of_work import UnitOfWork
from kairos_common import errors
from kairos_common.errors import FieldViolation
from kairos_common.platforms import Platform

MAX_TARGETS = 50
MAX_TAGS = 30
MAX_TAG_LENGTH = 100
MAX_CAMPAIGN_LENGTH = 200
MAX_NOTES_LENGTH = 10_000
MAX_REQUEST_ID_LENGTH = 128
MAX_REASON_LENGTH = 1_000
MAX_SETTINGS = 20
DEFAULT_PAGE_SIZE = 50
MAX_SCHEDULE_AHEAD = timedelta(days=3650)
#: A post due this soon after a change wakes the schedulers instead of waiting for their tick.
DUE_SOON = timedelta(seconds=60)
MAX_PAGE_SIZE = 100

UPDATABLE_FIELDS = frozenset(
    {
        "content",
        "media_urls",
        "campaign",
        "tags",
        "notes",
        "stale_after",
        "approval_required",
        "targets",
    }
)
#: Fields whose change affects what or when something is published.
PUBLISHING_FIELDS = frozenset(
    {"content", "media_urls", "stale_after", "approval_required", "targets"}
)
#: Fields whose change withdraws an approval.
APPROVAL_FIELDS = frozenset({"content", "media_urls", "targets"})


# --- commands -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetInput:
    """Where to publish: an account, with an optional content override and settings."""

    account_id: str
    content_override: str | None = None
    settings: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ScheduleInput:
    """Either a UTC instant or a local wall-clock time in an IANA zone."""

    at: datetime | None = None
    local_date_time: str | None = None
    time_zone: str | None = None


@dataclass(frozen=True)
class CreatePost:
    content: str
    targets: Sequence[TargetInput]
    media_urls: Sequence[str] = ()
    campaign: str = ""
    tags: Sequence[str] = ()
    notes: str = ""
    schedule: ScheduleInput | None = None
    approval_required: bool = False
    stale_after: timedelta | None = None
    request_id: str = ""
    parent_post_id: str = ""


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


@dataclass(frozen=True)
class ListPosts:
    statuses: Sequence[PostStatus] = ()
    platforms: Sequence[Platform] = ()
    account_id: str = ""
    campaign: str = ""
    tag: str = ""
    scheduled_from: datetime | None = None
    scheduled_to: datetime | None = None
    page_size: int = 0
    page_token: str = ""
    order: str = "created_newest"


@dataclass(frozen=True)
class Stats:
    by_status: dict[PostStatus, int]
    by_platform: dict[tuple[Platform, TargetStatus], int]
    due_next_hour: int
    oldest_overdue: Post | None


# --- validation helpers ---------------------------------------------------------------------


def parse_id(value: str, field_name: str) -> uuid.UUID:
    """A UUID from a request field, or INVALID_ARGUMENT naming the field."""
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        description = "is required" if not value else f"{value[:60]!r} is not a valid id"
        raise errors.InvalidArgument.of(field_name, description) from None


def _check_length(
    value: str, limit: int, field_name: str, violations: list[FieldViolation]
) -> None:
    if len(value) > limit:
        violations.append(
            FieldViolation(field_name, f"is {len(value)} characters long; at most {limit}")
        )


def _clean_tags(
    tags: Iterable[str], violations: list[FieldViolation], field_name: str = "tags"
) -> list[str]:
    cleaned: list[str] = []
    for index, tag in enumerate(tags):
        value = tag.strip()
        where = f"{field_name}[{index}]"
        if not value:
            violations.append(FieldViolation(where, "must not be empty"))
        elif len(value) > MAX_TAG_LENGTH:
            violations.append(FieldViolation(where, f"is longer than {MAX_TAG_LENGTH} characters"))
        elif value not in cleaned:
            cleaned.append(value)
    if len(cleaned) > MAX_TAGS:
        violations.append(
            FieldViolation(field_name, f"has {len(cleaned)} tags; at most {MAX_TAGS}")
        )
    return cleaned


def _check_stale_after(
    value: timedelta | None, violations: list[FieldViolation], field_name: str = "stale_after"
) -> None:
    if value is None:
        return
    try:
        schedule.check_stale_after(value, field_name)
    except errors.InvalidArgument as error:
        violations.extend(error.violations)
        return
    if value.total_seconds() != int(value.total_seconds()):
        # Stored in whole seconds: refuse what would be rounded rather than change it.
        violations.append(FieldViolation(field_name, "must be a whole number of seconds"))


def resolve_schedule(
    app: Application, value: ScheduleInput, field_name: str = "schedule"
) -> tuple[datetime, str]:
    """The instant and time zone of a schedule, refusing DST gaps and times in the past."""
    if value.at is not None:
        at, zone = value.at, ""
    elif value.local_date_time is not None or value.time_zone is not None:
        at = schedule.resolve_local_time(
            value.local_date_time or "", value.time_zone or "", field=f"{field_name}.local"
        )
        zone = value.time_zone or ""
    else:
        raise errors.InvalidArgument.of(field_name, "set either `at` or `local`")
    now = app.clock()
    schedule.check_not_in_past(at, now, tolerance=app.settings.past_tolerance, field=field_name)
    if at - now > MAX_SCHEDULE_AHEAD:
        raise errors.InvalidArgument.of(
            field_name, f"is more than {MAX_SCHEDULE_AHEAD.days // 365} years ahead"
        )
    return at, zone


def _target_violations(
    targets: Sequence[TargetInput], violations: list[FieldViolation]
) -> list[uuid.UUID | None]:
    """Parsed account ids (None where invalid), recording what is wrong with each target."""
    if not targets:
        violations.append(FieldViolation("targets", "at least one target is required"))
    if len(targets) > MAX_TARGETS:
        violations.append(
            FieldViolation("targets", f"has {len(targets)} targets; at most {MAX_TARGETS}")
        )
    ids: list[uuid.UUID | None] = []
    seen: set[uuid.UUID] = set()
    for index, target in enumerate(targets):
        prefix = f"targets[{index}]"
        try:
            account_id: uuid.UUID | None = parse_id(target.account_id, f"{prefix}.account_id")
        except errors.InvalidArgument as error:
            violations.extend(error.violations)
            account_id = None
        if account_id is not None and account_id in seen:
            violations.append(
                FieldViolation(f"{prefix}.account_id", "the same account is targeted twice")
            )
        if account_id is not None:
            seen.add(account_id)
        if len(target.settings) > MAX_SETTINGS:
            violations.append(
                FieldViolation(f"{prefix}.settings", f"at most {MAX_SETTINGS} settings")
            )
        for key, value in target.settings.items():
            if not key or len(key) > 64 or len(value) > 1000:
                violations.append(
                    FieldViolation(
                        f"{prefix}.settings",
                        "keys must be 1-64 characters and values at most 1,000",
                    )
                )
                break
        ids.append(account_id)
    return ids


async def _load_accounts(
    uow: UnitOfWork,
    tenant: str,
    ids: Sequence[uuid.UUID | None],
    violations: list[FieldViolation],
) -> dict[uuid.UUID, Account]:
    wanted = [i for i in ids if i is not None]
    found: dict[uuid.UUID, Account] = {}
    if wanted:
        rows = await uow.session.execute(
            select(Account).where(Account.tenant_id == tenant, Account.id.in_(wanted))
        )
        found = {a.id: a for a in rows.scalars()}
    for index, account_id in enumerate(ids):
        if account_id is None:
            continue
        account = found.get(account_id)
        if account is None:
            violations.append(
                FieldViolation(f"targets[{index}].account_id", f"account {account_id} not found")
            )
        elif account.status == AccountStatus.DISCONNECTED:
            violations.append(
                FieldViolation(
                    f"targets[{index}].account_id", f"account {account_id} is disconnected"
                )
            )
    return found


def _content_violations(
    app: Application,
    content: str,
    media_urls: Sequence[str],
    targets: Sequence[TargetInput],
    ids: Sequence[uuid.UUID | None],
    accounts: dict[uuid.UUID, Account],
) -> list[FieldViolation]:
    found: list[FieldViolation] = []
    for index, (target, account_id) in enumerate(zip(targets, ids, strict=True)):
        account = accounts.get(account_id) if account_id is not None else None
        if account is None:
            continue
        override = target.content_override is not None
        found.extend(
            limits.validate_content(
                Platform(account.platform),
                target.content_override if override else content,  # type: ignore[arg-type]
                list(media_urls),
                content_field=f"targets[{index}].content_override" if override else "content",
                media_field="media_urls",
                allow_http_media=app.settings.allow_http_media,
            )
        )
    return list(dict.fromkeys(found))


# --- state changes --------------------------------------------------------------------------


def stale_at(post: Post, due: datetime | None, default: timedelta) -> datetime | None:
    """When a target due at `due` stops being worth publishing (the post's stale_after)."""
    if due is None:
        return None
    window = (
        timedelta(seconds=post.stale_after_seconds)
        if post.stale_after_seconds is not None
        else default
    )
    return due + window


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
            target.next_attempt_at = post.scheduled_at if armed else None
            target.due_at = post.scheduled_at
            target.stale_at = stale_at(post, post.scheduled_at, default_stale_after)


def _scheduled_status(post: Post) -> PostStatus:
    if post.approval_required and post.approved_at is None:
        return PostStatus.PENDING_APPROVAL
    return PostStatus.SCHEDULED


def _wake_if_due_soon(app: Application, post: Post, now: datetime) -> None:
    if (
        post.status == PostStatus.SCHEDULED
        and post.scheduled_at is not None
        and post.scheduled_at - now <= DUE_SOON
    ):
        app.notifier.due_soon()


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
    uow: UnitOfWork,
    tenant: str,
    post_id: str,
    *,
    with_attempts: bool = False,
    include_deleted: bool = False,
    lock: bool = False,
) -> Post:
    ident = parse_id(post_id, "post_id")
    loader = selectinload(Post.targets)
    if with_attempts:
        loader = loader.selectinload(Target.attempts)
    query = select(Post).where(Post.id == ident, Post.tenant_id == tenant).options(loader)
    if lock:
        # Changes may rewrite the tags; async sessions cannot load them lazily.
        query = query.options(selectinload(Post.tag_rows)).with_for_update()
    post = (await uow.session.execute(query)).scalar_one_or_none()
    if post is None or (post.deleted_at is not None and not include_deleted):
        raise errors.NotFound(f"post {post_id} not found")
    return post


async def _reload(uow: UnitOfWork, post_id: uuid.UUID, *, with_attempts: bool = False) -> Post:
    loader = selectinload(Post.targets)
    if with_attempts:
        loader = loader.selectinload(Target.attempts)
    query = (
        select(Post)
        .where(Post.id == post_id)
        .options(loader)
        .execution_options(populate_existing=True)
    )
    return (await uow.session.execute(query)).scalar_one()


def _set_tags(post: Post, tags: list[str]) -> None:
    post.tags = tags
    post.tag_rows = [PostTag(tag=t, tenant_id=post.tenant_id) for t in tags]


# --- handlers -------------------------------------------------------------------------------


async def create_post(app: Application, tenant: str, command: CreatePost) -> Post:
    """Create a draft, or a scheduled post when a schedule is given.

    A repeated `request_id` returns the post the first request created, unchanged.
    """
    violations: list[FieldViolation] = []
    _check_length(command.request_id, MAX_REQUEST_ID_LENGTH, "request_id", violations)
    _check_length(command.campaign, MAX_CAMPAIGN_LENGTH, "campaign", violations)
    _check_length(command.notes, MAX_NOTES_LENGTH, "notes", violations)
    tags = _clean_tags(command.tags, violations)
    _check_stale_after(command.stale_after, violations)
    ids = _target_violations(command.targets, violations)
    scheduled_at: datetime | None = None
    zone = ""
    if command.schedule is not None:
        try:
            scheduled_at, zone = resolve_schedule(app, command.schedule)
        except errors.InvalidArgument as error:
            violations.extend(error.violations)
    parent_id: uuid.UUID | None = None
    if command.parent_post_id:
        try:
            parent_id = parse_id(command.parent_post_id, "parent_post_id")
        except errors.InvalidArgument as error:
            violations.extend(error.violations)

    async with app.uow() as uow:
        if command.request_id:
            existing = await _by_request_id(uow, tenant, command.request_id)
            if existing is not None:
                return existing
        accounts = await _load_accounts(uow, tenant, ids, violations)
        violations.extend(
            _content_violations(
                app, command.content, command.media_urls, command.targets, ids, accounts
            )
        )
        if parent_id is not None:
            parent = await uow.session.get(Post, parent_id)
            if parent is None or parent.tenant_id != tenant or parent.deleted_at is not None:
                violations.append(FieldViolation("parent_post_id", f"post {parent_id} not found"))
        if violations:
            raise errors.InvalidArgument.collect(violations)

        now = app.clock()
        post = Post(
            tenant_id=tenant,
            content=command.content,
            media_urls=list(command.media_urls),
            campaign=command.campaign,
            notes=command.notes,
            scheduled_at=scheduled_at,
            time_zone=zone,
            revision=1,
            approval_required=command.approval_required,
            stale_after_seconds=(
                int(command.stale_after.total_seconds()) if command.stale_after else None
            ),
            parent_post_id=parent_id,
            request_id=command.request_id or None,
            created_at=now,
            updated_at=now,
        )
        _set_tags(post, tags)
        post.status = PostStatus.DRAFT if scheduled_at is None else _scheduled_status(post)
        for target, account_id in zip(command.targets, ids, strict=True):
            assert account_id is not None
            post.targets.append(
                Target(
                    tenant_id=tenant,
                    account_id=account_id,
                    platform=accounts[account_id].platform,
                    content_override=target.content_override,
                    settings=dict(target.settings),
                    status=TargetStatus.PENDING,
                    created_at=now,
                    updated_at=now,
                )
            )
        _arm_targets(post, app.settings.default_stale_after)
        uow.session.add(post)
        try:
            await uow.session.flush()
            uow.emit("created", post)
            if scheduled_at is not None:
                uow.emit("scheduled", post)
            await uow.commit()
        except IntegrityError:
            # Two creates with the same request_id raced; the other one won.
            await uow.session.rollback()
            existing = await _by_request_id(uow, tenant, command.request_id)
            if existing is None:
                raise
            return existing
        _wake_if_due_soon(app, post, now)
        # Everything the answer shows was set here and is still loaded: no need to read it back.
        return post


async def _by_request_id(uow: UnitOfWork, tenant: str, request_id: str) -> Post | None:
    query = (
        select(Post)
        .where(Post.tenant_id == tenant, Post.request_id == request_id)
        .options(selectinload(Post.targets))
    )
    return (await uow.session.execute(query)).scalar_one_or_none()


async def get_post(app: Application, tenant: str, post_id: str) -> Post:
    """One post with its targets and every attempt."""
    async with app.uow() as uow:
        return await _get_post(uow, tenant, post_id, with_attempts=True)


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
        _check_length(command.campaign, MAX_CAMPAIGN_LENGTH, "post.campaign", violations)
    if "notes" in paths:
        _check_length(command.notes, MAX_NOTES_LENGTH, "post.notes", violations)
    tags = _clean_tags(command.tags, violations, "post.tags") if "tags" in paths else []
    if "stale_after" in paths:
        _check_stale_after(command.stale_after, violations, "post.stale_after")
    if violations:
        raise errors.InvalidArgument.collect(violations)

    async with app.uow() as uow:
        post = await _get_post(uow, tenant, command.post_id, lock=True)
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
        ids = _target_violations(new_targets, violations)
        accounts = await _load_accounts(uow, tenant, ids, violations)
        content = command.content if "content" in paths else post.content
        media = list(command.media_urls) if "media_urls" in paths else list(post.media_urls)
        if {"content", "media_urls", "targets"} & set(paths):
            violations.extend(_content_violations(app, content, media, new_targets, ids, accounts))
        if violations:
            raise errors.InvalidArgument.collect([_prefix_post_field(v) for v in violations])

        now = app.clock()
        post.content = content
        post.media_urls = media
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
    for name in ("content", "media_urls"):
        if violation.field == name or violation.field.startswith(f"{name}["):
            return FieldViolation(f"post.{violation.field}", violation.description)
    return violation


def _replace_targets(
    post: Post,
    targets: Sequence[TargetInput],
    ids: Sequence[uuid.UUID | None],
    accounts: dict[uuid.UUID, Account],
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
    """Set or move the publishing instant; the post waits for approval if it needs one."""
    at, zone = resolve_schedule(app, when)
    async with app.uow() as uow:
        post = await _get_post(uow, tenant, post_id, lock=True)
        _check_revision(post, expected_revision)
        _require_editable(post, "schedule")
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
        _wake_if_due_soon(app, post, now)
        return await _reload(uow, post.id)


async def unschedule_post(app: Application, tenant: str, post_id: str) -> Post:
    """Take a scheduled post back to draft; nothing of it will be sent."""
    async with app.uow() as uow:
        post = await _get_post(uow, tenant, post_id, lock=True)
        _require_editable(post, "unschedule")
        if post.status == PostStatus.DRAFT:
            return post
        post.scheduled_at = None
        post.time_zone = ""
        post.status = PostStatus.DRAFT
        _bump(post, app.clock())
        _arm_targets(post, app.settings.default_stale_after)
        uow.emit("unscheduled", post)
        await uow.commit()
        return await _reload(uow, post.id)


async def publish_now(app: Application, tenant: str, post_id: str) -> Post:
    """Schedule the post for this instant."""
    async with app.uow() as uow:
        post = await _get_post(uow, tenant, post_id, lock=True)
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
        post = await _get_post(uow, tenant, post_id, include_deleted=True, lock=True)
        if post.deleted_at is not None:
            return await _reload(uow, post.id)
        now = app.clock()
        for target in post.targets:
            if target.status in (
                TargetStatus.PENDING,
                TargetStatus.QUEUED,
                TargetStatus.RETRY_WAIT,
            ):
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
        await uow.commit()
        return await _reload(uow, post.id)


async def retry_post(
    app: Application, tenant: str, post_id: str, target_ids: Sequence[str] = ()
) -> Post:
    """Send failed, unknown or missed targets again; published targets are never re-sent."""
    wanted = [parse_id(value, f"target_ids[{i}]") for i, value in enumerate(target_ids)]
    async with app.uow() as uow:
        post = await _get_post(uow, tenant, post_id, lock=True)
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
        accounts = {
            a.id: a
            for a in (
                await uow.session.execute(
                    select(Account).where(Account.id.in_([t.account_id for t in retried]))
                )
            ).scalars()
        }
        for target in retried:
            account = accounts[target.account_id]
            if account.status != AccountStatus.ACTIVE:
                raise errors.FailedPrecondition(
                    f"account {account.id} of target {target.id} is {account.status}; "
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
        post = await _get_post(uow, tenant, post_id, lock=True)
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
        _wake_if_due_soon(app, post, now)
        return await _reload(uow, post.id)


async def reject_post(app: Application, tenant: str, post_id: str, reason: str) -> Post:
    """Reject a post that requires approval; it will not publish until edited and approved."""
    reason = reason.strip()
    if not reason:
        raise errors.InvalidArgument.of("reason", "say why the post is rejected")
    if len(reason) > MAX_REASON_LENGTH:
        raise errors.InvalidArgument.of("reason", f"at most {MAX_REASON_LENGTH} characters")
    async with app.uow() as uow:
        post = await _get_post(uow, tenant, post_id, lock=True)
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


# --- listing --------------------------------------------------------------------------------

ORDERS = ("created_newest", "created_oldest", "scheduled_soonest")


def _filter_fingerprint(command: ListPosts) -> str:
    parts = [
        sorted(s.value for s in command.statuses),
        sorted(p.value for p in command.platforms),
        command.account_id,
        command.campaign,
        command.tag,
        command.scheduled_from.isoformat() if command.scheduled_from else "",
        command.scheduled_to.isoformat() if command.scheduled_to else "",
        command.order,
    ]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def _encode_token(fingerprint: str, key: list[Any]) -> str:
    raw = json.dumps({"f": fingerprint, "k": key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str, fingerprint: str) -> list[Any]:
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        key = data["k"]
        if not isinstance(key, list) or len(key) != 2:
            raise ValueError
        uuid.UUID(key[1])
        if key[0] is not None:
            at = datetime.fromisoformat(key[0])
            if at.tzinfo is None or not datetime(1971, 1, 1, tzinfo=UTC) <= at:
                raise ValueError
        found = data["f"]
    except (
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        OverflowError,
        binascii.Error,
        UnicodeDecodeError,
    ):
        raise errors.InvalidArgument.of(
            "page_token", "is not a token returned by ListPosts"
        ) from None
    if found != fingerprint:
        raise errors.InvalidArgument.of(
            "page_token", "belongs to a request with other filters or order; start again"
        )
    return key


async def list_posts(app: Application, tenant: str, command: ListPosts) -> tuple[list[Post], str]:
    """One page of posts, and the token of the next page ('' on the last)."""
    violations: list[FieldViolation] = []
    if command.page_size < 0:
        violations.append(FieldViolation("page_size", "must not be negative"))
    if command.order not in ORDERS:
        violations.append(FieldViolation("order", f"must be one of {', '.join(ORDERS)}"))
    account_id: uuid.UUID | None = None
    if command.account_id:
        try:
            account_id = parse_id(command.account_id, "account_id")
        except errors.InvalidArgument as error:
            violations.extend(error.violations)
    if (
        command.scheduled_from is not None
        and command.scheduled_to is not None
        and command.scheduled_from >= command.scheduled_to
    ):
        violations.append(FieldViolation("scheduled_to", "must be after scheduled_from"))
    if violations:
        raise errors.InvalidArgument.collect(violations)
    size = min(command.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    fingerprint = _filter_fingerprint(command)

    query: Select[Post] = select(Post).where(Post.tenant_id == tenant, Post.deleted_at.is_(None))
    if command.statuses:
        query = query.where(Post.status.in_([s.value for s in command.statuses]))
    if command.platforms:
        query = query.where(
            exists().where(
                Target.post_id == Post.id,
                Target.platform.in_([p.value for p in command.platforms]),
            )
        )
    if account_id is not None:
        query = query.where(
            exists().where(Target.post_id == Post.id, Target.account_id == account_id)
        )
    if command.campaign:
        query = query.where(Post.campaign == command.campaign)
    if command.tag:
        query = query.where(
            exists().where(
                PostTag.post_id == Post.id,
                PostTag.tag == command.tag,
                PostTag.tenant_id == tenant,
            )
        )
    if command.scheduled_from is not None:
        query = query.where(Post.scheduled_at >= command.scheduled_from)
    if command.scheduled_to is not None:
        query = query.where(Post.scheduled_at < command.scheduled_to)

    key = _decode_token(command.page_token, fingerprint) if command.page_token else None
    query = _order_and_seek(query, command.order, key)
    query = query.limit(size + 1).options(selectinload(Post.targets))
    async with app.uow() as uow:
        rows = list((await uow.session.execute(query)).scalars())
    page, more = rows[:size], len(rows) > size
    token = ""
    if more:
        last = page[-1]
        if command.order == "scheduled_soonest":
            value = last.scheduled_at.isoformat() if last.scheduled_at else None
        else:
            value = last.created_at.isoformat()
        token = _encode_token(fingerprint, [value, str(last.id)])
    return page, token


def _order_and_seek(query: Select[Post], order: str, key: list[Any] | None) -> Select[Post]:
    def cursor_time(value: Any) -> datetime:
        try:
            return datetime.fromisoformat(str(value))
        except ValueError:
            raise errors.InvalidArgument.of(
                "page_token", "is not a token returned by ListPosts"
            ) from None

    last_id = uuid.UUID(key[1]) if key is not None else None
    if order == "scheduled_soonest":
        query = query.order_by(Post.scheduled_at.is_(None), Post.scheduled_at, Post.id)
        if key is not None and key[0] is not None:
            at = cursor_time(key[0])
            query = query.where(
                or_(
                    Post.scheduled_at > at,
                    and_(Post.scheduled_at == at, Post.id > last_id),
                    Post.scheduled_at.is_(None),
                )
            )
        elif key is not None:
            query = query.where(Post.scheduled_at.is_(None), Post.id > last_id)
        return query
    if order == "created_oldest":
        query = query.order_by(Post.created_at, Post.id)
        if key is not None:
            at = cursor_time(key[0])
            query = query.where(
                or_(Post.created_at > at, and_(Post.created_at == at, Post.id > last_id))
            )
        return query
    query = query.order_by(Post.created_at.desc(), Post.id.desc())
    if key is not None:
        at = cursor_time(key[0])
        query = query.where(
            or_(Post.created_at < at, and_(Post.created_at == at, Post.id < last_id))
        )
    return query


async def get_stats(app: Application, tenant: str) -> Stats:
    """Counts by status and platform, what is due within the hour, the oldest overdue post."""
    now = app.clock()
    live = and_(Post.tenant_id == tenant, Post.deleted_at.is_(None))
    async with app.uow() as uow:
        session = uow.session
        by_status = {
            PostStatus(status): count
            for status, count in (
                await session.execute(
                    select(Post.status, func.count()).where(live).group_by(Post.status)
                )
            ).all()
        }
        by_platform = {
            (Platform(platform), TargetStatus(status)): count
            for platform, status, count in (
                await session.execute(
                    select(Target.platform, Target.status, func.count())
                    .join(Post, Post.id == Target.post_id)
                    .where(live)
                    .group_by(Target.platform, Target.status)
                )
            ).all()
        }
        due_next_hour = (
            await session.execute(
                select(func.count()).where(
                    live,
                    Post.status == PostStatus.SCHEDULED,
                    Post.scheduled_at >= now,
                    Post.scheduled_at < now + timedelta(hours=1),
                )
            )
        ).scalar_one()
        oldest = (
            await session.execute(
                select(Post)
                .where(live, Post.status == PostStatus.SCHEDULED, Post.scheduled_at < now)
                .order_by(Post.scheduled_at)
                .limit(1)
            )
        ).scalar_one_or_none()
    return Stats(by_status, by_platform, int(due_next_hour), oldest)
