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
- New targets (UpdatePost with "targets") keep the row, state and attempts of every target
  whose account stays; only added targets need a connected account, so a post whose account
  was disconnected since can still be edited. A target that was, is being or may have been
  published cannot be left out, and at least one target must still be able to publish.
- Creates that arrive together share one transaction (`CreateBatcher`, group commit); each is
  still validated and answered on its own, and a refused one writes nothing.
- A repeated `request_id` is answered with the first post only when the request is the same
  (`request_hash`); with a different request it is refused, so a mistaken reuse is not
  mistaken for a retry.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NamedTuple, cast

from sqlalchemy import Select, Table, and_, bindparam, exists, func, insert, or_, select, union_all
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import selectinload

from kairos_api.adapters import outbox
from kairos_api.adapters.orm import Account, Attempt, Post, PostTag, Target, new_id
from kairos_api.domain import limits, schedule
from kairos_api.domain.model import (
    EDITABLE_POST_STATUSES,
    RETRYABLE_TARGET_STATUSES,
    AccountStatus,
    PostStatus,
    TargetStatus,
    derive_post_status,
)
from kairos_api.service_layer.application import Application
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
    """A UTC instant, a local wall-clock time in an IANA zone, or a delay from now.

    A delay is resolved against the api's clock when the request arrives; a create's
    `request_hash` covers the delay itself, so that a repeated "in 2h" is the same request.
    """

    at: datetime | None = None
    local_date_time: str | None = None
    time_zone: str | None = None
    after: timedelta | None = None


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


# --- read records ---------------------------------------------------------------------------
#
# Reads and creates go through SQLAlchemy Core: loading ORM objects costs several times more CPU
# than the rows themselves, and these are the calls clients make most. The records carry what
# `convert.post_to_proto` shows, with the same field names as the ORM rows.

_POSTS = cast(Table, Post.__table__)
_TARGETS = cast(Table, Target.__table__)
_TAGS = cast(Table, PostTag.__table__)
_ATTEMPTS = cast(Table, Attempt.__table__)


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One attempt as clients see it."""

    number: int
    started_at: datetime
    finished_at: datetime | None
    published: bool
    http_status: int
    error_class: str
    error_code: str
    message: str
    latency_ms: int | None


@dataclass(frozen=True, slots=True)
class TargetRecord:
    """One target as clients see it; `attempts` only when they were asked for."""

    id: uuid.UUID
    account_id: uuid.UUID
    platform: str
    status: str
    content_override: str | None
    settings: dict[str, str]
    attempt_count: int
    next_attempt_at: datetime | None
    platform_post_id: str
    platform_url: str
    last_error_class: str
    last_error_code: str
    last_error_message: str
    published_at: datetime | None
    attempts: list[AttemptRecord] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PostRecord:
    """One post as clients see it, with its targets in id order."""

    id: uuid.UUID
    content: str
    media_urls: list[str]
    campaign: str
    tags: list[str]
    notes: str
    status: str
    scheduled_at: datetime | None
    time_zone: str
    revision: int
    approval_required: bool
    approved_at: datetime | None
    rejection_reason: str
    stale_after_seconds: int | None
    created_at: datetime
    updated_at: datetime
    parent_post_id: uuid.UUID | None
    targets: list[TargetRecord] = field(default_factory=list)


_POST_COLUMNS = [_POSTS.c[name] for name in PostRecord.__dataclass_fields__ if name != "targets"]
_TARGET_COLUMNS = [
    _TARGETS.c[name] for name in TargetRecord.__dataclass_fields__ if name != "attempts"
]
_ATTEMPT_COLUMNS = [_ATTEMPTS.c[name] for name in AttemptRecord.__dataclass_fields__]
# One shape each, so SQLAlchemy compiles them once; the ids go in an expanding parameter.
_TARGETS_OF_POSTS = (
    select(_TARGETS.c.post_id, *_TARGET_COLUMNS)
    .where(_TARGETS.c.post_id.in_(bindparam("post_ids", expanding=True)))
    .order_by(_TARGETS.c.post_id, _TARGETS.c.id)
)
# GetPost in one round trip: the post's columns repeat on each of its target's attempt rows.
_LIVE_POST_WITH_ATTEMPTS = (
    select(*_POST_COLUMNS, *_TARGET_COLUMNS, *_ATTEMPT_COLUMNS)
    .select_from(_POSTS)
    .outerjoin(_TARGETS, _TARGETS.c.post_id == _POSTS.c.id)
    .outerjoin(_ATTEMPTS, _ATTEMPTS.c.target_id == _TARGETS.c.id)
    .where(
        _POSTS.c.id == bindparam("post_id"),
        _POSTS.c.tenant_id == bindparam("tenant"),
        _POSTS.c.deleted_at.is_(None),
    )
    .order_by(_TARGETS.c.id, _ATTEMPTS.c.number)
)
_POST_BY_REQUEST_ID = select(_POSTS.c.id, _POSTS.c.request_hash).where(
    _POSTS.c.tenant_id == bindparam("tenant"), _POSTS.c.request_id == bindparam("request_id")
)
_ACCOUNTS_OF_TENANT = select(Account.id, Account.platform, Account.status).where(
    Account.tenant_id == bindparam("tenant"),
    Account.id.in_(bindparam("account_ids", expanding=True)),
)


# Rows are built positionally from the columns above, which mypy cannot follow through `*row`.
_attempt_record = cast("Callable[..., AttemptRecord]", AttemptRecord)
_target_record = cast("Callable[..., TargetRecord]", TargetRecord)
_post_record = cast("Callable[..., PostRecord]", PostRecord)


async def _post_records(
    connection: AsyncConnection, post_rows: Sequence[Row[Any]]
) -> list[PostRecord]:
    """Records of the posts in `post_rows` (selected with `_POST_COLUMNS`), in the same order."""
    if not post_rows:
        return []
    targets: dict[uuid.UUID, list[TargetRecord]] = {row.id: [] for row in post_rows}
    result = await connection.execute(_TARGETS_OF_POSTS, {"post_ids": list(targets)})
    for row in result:
        targets[row[0]].append(_target_record(*row[1:], []))
    return [_post_record(*row, targets[row.id]) for row in post_rows]


def _post_with_attempts(rows: Sequence[Row[Any]]) -> PostRecord:
    """The record of one post from the rows of `_LIVE_POST_WITH_ATTEMPTS`."""
    target_at = len(_POST_COLUMNS)
    attempt_at = target_at + len(_TARGET_COLUMNS)
    post = _post_record(*rows[0][:target_at], [])
    target: TargetRecord | None = None
    for row in rows:
        if row[target_at] is None:
            break  # a post without targets: its one row has no target columns
        if target is None or target.id != row[target_at]:
            target = _target_record(*row[target_at:attempt_at], [])
            post.targets.append(target)
        if row[attempt_at] is not None:
            target.attempts.append(_attempt_record(*row[attempt_at:]))
    return post


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
    now = app.clock()
    if value.at is not None:
        at, zone = value.at, ""
    elif value.local_date_time is not None or value.time_zone is not None:
        at = schedule.resolve_local_time(
            value.local_date_time or "", value.time_zone or "", field=f"{field_name}.local"
        )
        zone = value.time_zone or ""
    elif value.after is not None:
        if value.after < timedelta(0):
            raise errors.InvalidArgument.of(f"{field_name}.after", "must not be negative")
        if value.after > MAX_SCHEDULE_AHEAD:  # checked before adding: years past 9999 overflow
            raise errors.InvalidArgument.of(
                f"{field_name}.after", f"is more than {MAX_SCHEDULE_AHEAD.days // 365} years"
            )
        at, zone = now + value.after, ""
    else:
        raise errors.InvalidArgument.of(field_name, "set one of `at`, `local` or `after`")
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


class AccountRef(NamedTuple):
    """What creating or editing a post needs of a targeted account."""

    platform: str
    status: str


async def _accounts_of(
    uow: UnitOfWork, tenant: str, ids: Iterable[uuid.UUID | None]
) -> dict[uuid.UUID, AccountRef]:
    """The tenant's accounts among `ids` (one query); others are missing from the answer."""
    wanted = list(dict.fromkeys(i for i in ids if i is not None))
    if not wanted:
        return {}
    connection = await uow.session.connection()
    rows = await connection.execute(_ACCOUNTS_OF_TENANT, {"tenant": tenant, "account_ids": wanted})
    return {row[0]: AccountRef(row[1], row[2]) for row in rows}


def _account_violations(
    ids: Sequence[uuid.UUID | None],
    found: dict[uuid.UUID, AccountRef],
    violations: list[FieldViolation],
) -> None:
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


def _content_violations(
    app: Application,
    content: str,
    media_urls: Sequence[str],
    targets: Sequence[TargetInput],
    ids: Sequence[uuid.UUID | None],
    accounts: dict[uuid.UUID, AccountRef],
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


def _wake_if_due_soon(app: Application, post: Post | PostRecord, now: datetime) -> None:
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


@dataclass(frozen=True)
class _Draft:
    """A create request checked as far as it can be without the database."""

    tenant: str
    command: CreatePost
    violations: list[FieldViolation]
    tags: list[str]
    account_ids: list[uuid.UUID | None]
    scheduled_at: datetime | None
    time_zone: str
    parent_id: uuid.UUID | None
    #: `request_hash` of the command when it has a request_id, else None.
    request_hash: str | None


@dataclass(frozen=True)
class _NewPost:
    """The rows of one post to insert, and the record the caller is answered with."""

    record: PostRecord
    post_row: dict[str, Any]
    target_rows: list[dict[str, Any]]
    tag_rows: list[dict[str, Any]]
    events: list[dict[str, Any]]


def request_hash(command: CreatePost) -> str:
    """SHA-256 (hex) of everything a create asks for except its request_id.

    The canonical form is JSON with sorted keys, instants in ISO 8601 UTC and durations in
    microseconds; lists keep their order (the order of targets, tags and media is part of the
    request). Fields left at their default are left out, so a field added to the command later
    does not change the hash of a request that does not use it (a retry across an upgrade).
    """
    form = _canonical(command)
    form.pop("request_id", None)
    text = json.dumps(form, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _canonical(value: Any) -> Any:
    """`value` as plain JSON data: dataclasses become objects without their default fields."""
    if is_dataclass(value) and not isinstance(value, type):
        form: dict[str, Any] = {}
        for spec in fields(value):
            item = _canonical(getattr(value, spec.name))
            if spec.default_factory is not MISSING:
                default = _canonical(spec.default_factory())
            else:
                default = _canonical(spec.default) if spec.default is not MISSING else MISSING
            if item != default:
                form[spec.name] = item
        return form
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, timedelta):
        return value // timedelta(microseconds=1)
    if isinstance(value, dict):
        return {key: _canonical(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(item) for item in value]
    return value


def _draft(app: Application, tenant: str, command: CreatePost) -> _Draft:
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
    digest = request_hash(command) if command.request_id else None
    return _Draft(tenant, command, violations, tags, ids, scheduled_at, zone, parent_id, digest)


async def _refuse_invalid(
    app: Application, uow: UnitOfWork, draft: _Draft, accounts: dict[uuid.UUID, AccountRef]
) -> None:
    """Raise InvalidArgument with every violation of the draft, once the database is consulted."""
    command = draft.command
    violations = list(draft.violations)
    _account_violations(draft.account_ids, accounts, violations)
    violations.extend(
        _content_violations(
            app, command.content, command.media_urls, command.targets, draft.account_ids, accounts
        )
    )
    if draft.parent_id is not None:
        parent = await uow.session.get(Post, draft.parent_id)
        if parent is None or parent.tenant_id != draft.tenant or parent.deleted_at is not None:
            violations.append(FieldViolation("parent_post_id", f"post {draft.parent_id} not found"))
    if violations:
        raise errors.InvalidArgument.collect(violations)


def _new_post(app: Application, draft: _Draft, accounts: dict[uuid.UUID, AccountRef]) -> _NewPost:
    """The rows a valid draft becomes: what `_arm_targets` and the ORM defaults would make."""
    command, tenant, scheduled_at = draft.command, draft.tenant, draft.scheduled_at
    now = app.clock()
    post_id = new_id()
    status = (
        PostStatus.DRAFT
        if scheduled_at is None
        else PostStatus.PENDING_APPROVAL
        if command.approval_required
        else PostStatus.SCHEDULED
    )
    stale_after_seconds = int(command.stale_after.total_seconds()) if command.stale_after else None
    target_stale_at = (
        scheduled_at
        + (
            timedelta(seconds=stale_after_seconds)
            if stale_after_seconds is not None
            else app.settings.default_stale_after
        )
        if scheduled_at is not None
        else None
    )
    record = PostRecord(
        id=post_id,
        content=command.content,
        media_urls=list(command.media_urls),
        campaign=command.campaign,
        tags=draft.tags,
        notes=command.notes,
        status=status,
        scheduled_at=scheduled_at,
        time_zone=draft.time_zone,
        revision=1,
        approval_required=command.approval_required,
        approved_at=None,
        rejection_reason="",
        stale_after_seconds=stale_after_seconds,
        created_at=now,
        updated_at=now,
        parent_post_id=draft.parent_id,
    )
    target_rows: list[dict[str, Any]] = []
    for target, account_id in zip(command.targets, draft.account_ids, strict=True):
        assert account_id is not None
        armed = TargetRecord(
            id=new_id(),
            account_id=account_id,
            platform=accounts[account_id].platform,
            status=TargetStatus.PENDING,
            content_override=target.content_override,
            settings=dict(target.settings),
            attempt_count=0,
            next_attempt_at=scheduled_at if status == PostStatus.SCHEDULED else None,
            platform_post_id="",
            platform_url="",
            last_error_class="",
            last_error_code="",
            last_error_message="",
            published_at=None,
        )
        record.targets.append(armed)
        target_rows.append(
            {
                "id": armed.id,
                "post_id": post_id,
                "tenant_id": tenant,
                "account_id": account_id,
                "platform": armed.platform,
                "content_override": armed.content_override,
                "settings": armed.settings,
                "status": armed.status,
                "attempt_count": 0,
                "next_attempt_at": armed.next_attempt_at,
                "due_at": scheduled_at,
                "stale_at": target_stale_at,
                "created_at": now,
                "updated_at": now,
            }
        )
    post_row = {
        "id": post_id,
        "tenant_id": tenant,
        "content": record.content,
        "media_urls": record.media_urls,
        "campaign": record.campaign,
        "tags": record.tags,
        "notes": record.notes,
        "status": status,
        "scheduled_at": scheduled_at,
        "time_zone": record.time_zone,
        "revision": 1,
        "approval_required": record.approval_required,
        "rejection_reason": "",
        "stale_after_seconds": stale_after_seconds,
        "parent_post_id": draft.parent_id,
        "request_id": command.request_id or None,
        "request_hash": draft.request_hash,
        "created_at": now,
        "updated_at": now,
    }
    events = [
        outbox.lifecycle_row(
            kind, tenant_id=tenant, post_id=post_id, post_status=status, revision=1
        )
        for kind in (("created",) if scheduled_at is None else ("created", "scheduled"))
    ]
    tag_rows = [{"post_id": post_id, "tag": tag, "tenant_id": tenant} for tag in draft.tags]
    return _NewPost(record, post_row, target_rows, tag_rows, events)


async def _insert(uow: UnitOfWork, new_posts: Sequence[_NewPost]) -> None:
    """Insert the posts with one statement per table (one executemany each)."""
    if not new_posts:
        return
    connection = await uow.session.connection()
    await connection.execute(insert(_POSTS), [p.post_row for p in new_posts])
    await connection.execute(insert(_TARGETS), [r for p in new_posts for r in p.target_rows])
    tag_rows = [r for p in new_posts for r in p.tag_rows]
    if tag_rows:
        await connection.execute(insert(_TAGS), tag_rows)
    await uow.emit_rows([e for p in new_posts for e in p.events])


async def create_post(app: Application, tenant: str, command: CreatePost) -> PostRecord:
    """Create a draft, or a scheduled post when a schedule is given.

    A repeated `request_id` returns the post the first request created, unchanged, when the
    request is the same; with a different request it is refused (INVALID_ARGUMENT on request_id).
    """
    return await _create_one(app, _draft(app, tenant, command))


async def _create_one(app: Application, draft: _Draft) -> PostRecord:
    request_id = draft.command.request_id
    async with app.uow() as uow:
        if request_id:
            earlier = await _by_request_id(uow, draft.tenant, request_id)
            if earlier is not None:
                return _repeat_of(draft, earlier)
        accounts = await _accounts_of(uow, draft.tenant, draft.account_ids)
        await _refuse_invalid(app, uow, draft, accounts)
        new = _new_post(app, draft, accounts)
        try:
            await _insert(uow, [new])
            await uow.commit()
        except IntegrityError:
            # Two creates with the same request_id raced; the other one won.
            await uow.session.rollback()
            earlier = await _by_request_id(uow, draft.tenant, request_id)
            if earlier is None:
                raise
            return _repeat_of(draft, earlier)
    _wake_if_due_soon(app, new.record, new.record.created_at)
    # Everything the answer shows was written here: no need to read it back.
    return new.record


async def _create_many(
    app: Application, drafts: Sequence[_Draft]
) -> list[PostRecord | errors.InvalidArgument]:
    """Create many posts in one transaction; each refused draft gets its own error.

    Raises IntegrityError when a request_id raced with another transaction: then nothing was
    written, and the caller goes through the drafts one by one.
    """
    results: list[PostRecord | errors.InvalidArgument | None] = [None] * len(drafts)
    async with app.uow() as uow:
        by_tenant: dict[str, list[_Draft]] = {}
        for draft in drafts:
            by_tenant.setdefault(draft.tenant, []).append(draft)
        accounts: dict[str, dict[uuid.UUID, AccountRef]] = {}
        existing: dict[tuple[str, str], _Earlier] = {}
        for tenant, group in by_tenant.items():
            ids = [i for d in group for i in d.account_ids]
            accounts[tenant] = await _accounts_of(uow, tenant, ids)
            for request_id in dict.fromkeys(d.command.request_id for d in group):
                if request_id:
                    found = await _by_request_id(uow, tenant, request_id)
                    if found is not None:
                        existing[(tenant, request_id)] = found
        new_posts: list[_NewPost] = []
        for index, draft in enumerate(drafts):
            key = (draft.tenant, draft.command.request_id)
            if key in existing:
                # Created earlier, or by a valid draft earlier in this batch.
                try:
                    results[index] = _repeat_of(draft, existing[key])
                except errors.InvalidArgument as error:
                    results[index] = error
                continue
            try:
                await _refuse_invalid(app, uow, draft, accounts[draft.tenant])
            except errors.InvalidArgument as error:
                results[index] = error
                continue
            new = _new_post(app, draft, accounts[draft.tenant])
            new_posts.append(new)
            results[index] = new.record
            if draft.command.request_id:
                existing[key] = _Earlier(new.record, draft.request_hash)
        await _insert(uow, new_posts)
        await uow.commit()
    for new in new_posts:
        _wake_if_due_soon(app, new.record, new.record.created_at)
    return [r for r in results if r is not None]


class CreateBatcher:
    """Group commit for CreatePost: concurrent creates share one transaction.

    A create waits at most `max_wait` seconds for others (or until `max_batch` are waiting), or
    for as long as `max_writers` batches are already being written. Each create is validated on
    its own and a refused one fails alone; a batch that hits a request_id race (IntegrityError)
    is written again one create per transaction, as if it had never been batched.
    """

    def __init__(
        self,
        app: Application,
        *,
        max_batch: int = 64,
        max_wait: float = 0.001,
        max_writers: int = 2,
    ) -> None:
        self._app = app
        self._max_batch = max_batch
        self._max_wait = max_wait
        self._max_writers = max_writers
        self._waiting: list[tuple[_Draft, asyncio.Future[PostRecord]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._writers: set[asyncio.Task[None]] = set()

    async def create(self, tenant: str, command: CreatePost) -> PostRecord:
        """What `create_post` does, in a transaction shared with concurrent creates."""
        future: asyncio.Future[PostRecord] = asyncio.get_running_loop().create_future()
        self._waiting.append((_draft(self._app, tenant, command), future))
        if len(self._waiting) >= self._max_batch:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._max_wait, self._flush)
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._waiting or len(self._writers) >= self._max_writers:
            return  # a writer that finishes flushes what waits
        batch = self._waiting[: self._max_batch]
        del self._waiting[: self._max_batch]
        writer = asyncio.create_task(self._write(batch))
        self._writers.add(writer)
        writer.add_done_callback(self._finished)

    def _finished(self, writer: asyncio.Task[None]) -> None:
        self._writers.discard(writer)
        if self._waiting:
            self._flush()

    async def _write(self, batch: list[tuple[_Draft, asyncio.Future[PostRecord]]]) -> None:
        try:
            try:
                results = await _create_many(self._app, [draft for draft, _ in batch])
            except IntegrityError:
                for draft, future in batch:
                    try:
                        _settle(future, await _create_one(self._app, draft))
                    except Exception as error:
                        _settle(future, error)
                return
            for (_, future), result in zip(batch, results, strict=True):
                _settle(future, result)
        except Exception as error:
            for _, future in batch:
                _settle(future, error)


def _settle(future: asyncio.Future[PostRecord], outcome: PostRecord | Exception) -> None:
    if future.done():  # the caller went away
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class _Earlier(NamedTuple):
    """The post an earlier create with the same request_id made, and that create's hash."""

    record: PostRecord
    request_hash: str | None


def _repeat_of(draft: _Draft, earlier: _Earlier) -> PostRecord:
    """The earlier post when `draft` repeats its request; INVALID_ARGUMENT when it does not.

    A post created before hashes were kept has none: its request_id is honoured as it was.
    """
    if earlier.request_hash is not None and earlier.request_hash != draft.request_hash:
        raise errors.InvalidArgument.of(
            "request_id",
            f"already used for a different request (post {earlier.record.id}); a retry must"
            " repeat the request unchanged, a new request needs a new request_id",
        )
    return earlier.record


async def _by_request_id(uow: UnitOfWork, tenant: str, request_id: str) -> _Earlier | None:
    connection = await uow.session.connection()
    found = (
        await connection.execute(_POST_BY_REQUEST_ID, {"tenant": tenant, "request_id": request_id})
    ).first()
    if found is None:
        return None
    # The first request's post, as it is now (even if deleted since, as before).
    rows = (await connection.execute(select(*_POST_COLUMNS).where(_POSTS.c.id == found.id))).all()
    (record,) = await _post_records(connection, rows)
    return _Earlier(record, found.request_hash)


async def get_post(app: Application, tenant: str, post_id: str) -> PostRecord:
    """One post with its targets and every attempt."""
    ident = parse_id(post_id, "post_id")
    async with app.uow() as uow:
        connection = await uow.session.connection()
        query = _LIVE_POST_WITH_ATTEMPTS
        rows = (await connection.execute(query, {"post_id": ident, "tenant": tenant})).all()
    if not rows:
        raise errors.NotFound(f"post {post_id} not found")
    return _post_with_attempts(rows)


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
        if violations:
            raise errors.InvalidArgument.collect(violations)
        existing = {t.account_id: t for t in post.targets}
        if "targets" in paths:
            _refuse_removing_sent(post, ids)
        accounts = await _accounts_of(uow, tenant, ids)
        # Only targets being added need an account that can publish: a kept target stays as it
        # is (an account disconnected since has already settled it SKIPPED), so an edit of the
        # tags or the text is never refused because of it.
        _account_violations([i if i not in existing else None for i in ids], accounts, violations)
        if "targets" in paths and not violations:
            _require_a_live_target(ids, existing, accounts, violations)
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


def _filter_fingerprint(command: ListPosts) -> bytes:
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
    return hashlib.sha256(json.dumps(parts).encode()).digest()[:8]


# A page token is a keyset cursor: the fingerprint of the request's filters and order, and the sort
# key of the page's last post. It is one fixed-size record, sent as unpadded base64url:
#
#     version (1 byte) | fingerprint (8) | has instant (1) | instant, microseconds since the
#     epoch (8, signed) | post id (16)
#
# Bounded and flat rather than signed. A token of any other length is refused before anything is
# decoded, and the fields are read with one struct.unpack, so no token, whatever its size or shape,
# costs more than a few microseconds or nests anything. Signing would stop clients from crafting
# cursors, but a crafted cursor gains them nothing: the tenant and the filters never come from the
# token, so a cursor only chooses where in the caller's own list the page starts (as
# `scheduled_from` can), and every field is checked before it reaches the query. Signing would
# also tie tokens to KAIROS_SECRET_KEY, so that rotating it broke every listing in progress.
# Tokens of the earlier JSON format are refused like any stranger: tokens are short-lived, and a
# client holding one across the upgrade lists again from the first page.
_TOKEN_VERSION: Final = 1
_TOKEN_LAYOUT: Final = struct.Struct(">B8sBq16s")
_TOKEN_LENGTH: Final = (_TOKEN_LAYOUT.size * 4 + 2) // 3  # base64 characters, unpadded
_TOKEN_PADDING: Final = "=" * (-_TOKEN_LENGTH % 4)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
#: The instants a cursor may hold: no post was created or scheduled before 1971, and Python's
#: datetimes end with year 9999.
_CURSOR_MICROS: Final = range(
    (datetime(1971, 1, 1, tzinfo=UTC) - _EPOCH) // _MICROSECOND,
    (datetime.max.replace(tzinfo=UTC) - _EPOCH) // _MICROSECOND + 1,
)


class _Cursor(NamedTuple):
    """Where the next page starts: after the post `post_id`, whose sort key is `at`."""

    at: datetime | None
    post_id: uuid.UUID


def _encode_raw(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _encode_token(fingerprint: bytes, cursor: _Cursor) -> str:
    micros = (cursor.at - _EPOCH) // _MICROSECOND if cursor.at is not None else 0
    raw = _TOKEN_LAYOUT.pack(
        _TOKEN_VERSION, fingerprint, cursor.at is not None, micros, cursor.post_id.bytes
    )
    return _encode_raw(raw)


def _decode_token(token: str, fingerprint: bytes, order: str) -> _Cursor:
    """The cursor of a token ListPosts wrote for these filters and this order; anything else is
    refused on `page_token`."""
    if len(token) != _TOKEN_LENGTH:
        raise _not_a_token()
    try:
        raw = base64.urlsafe_b64decode(token + _TOKEN_PADDING)
    except ValueError:  # non-ASCII text, or base64 that does not decode
        raise _not_a_token() from None
    # Decoding skips characters outside the alphabet and ignores the unused low bits of the last
    # one: encoding again is the one check that each token has exactly one spelling.
    if len(raw) != _TOKEN_LAYOUT.size or _encode_raw(raw) != token:
        raise _not_a_token()
    version, found, timed, micros, post_id = _TOKEN_LAYOUT.unpack(raw)
    if version != _TOKEN_VERSION or timed not in (0, 1):
        raise _not_a_token()
    at: datetime | None = None
    if timed:
        if micros not in _CURSOR_MICROS:
            raise _not_a_token()
        at = _EPOCH + micros * _MICROSECOND
    elif micros != 0 or order != "scheduled_soonest":  # only unscheduled posts lack an instant
        raise _not_a_token()
    if found != fingerprint:
        raise errors.InvalidArgument.of(
            "page_token", "belongs to a request with other filters or order; start again"
        )
    return _Cursor(at, uuid.UUID(bytes=post_id))


def _not_a_token() -> errors.InvalidArgument:
    return errors.InvalidArgument.of("page_token", "is not a token returned by ListPosts")


async def list_posts(
    app: Application, tenant: str, command: ListPosts
) -> tuple[list[PostRecord], str]:
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

    query: Select[Any] = select(*_POST_COLUMNS).where(
        Post.tenant_id == tenant, Post.deleted_at.is_(None)
    )
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

    cursor = (
        _decode_token(command.page_token, fingerprint, command.order)
        if command.page_token
        else None
    )
    query = _order_and_seek(query, command.order, cursor)
    query = query.limit(size + 1)
    async with app.uow() as uow:
        connection = await uow.session.connection()
        rows = (await connection.execute(query)).all()
        more = len(rows) > size
        page = await _post_records(connection, rows[:size])
    token = ""
    if more:
        last = page[-1]
        at = last.scheduled_at if command.order == "scheduled_soonest" else last.created_at
        token = _encode_token(fingerprint, _Cursor(at, last.id))
    return page, token


def _order_and_seek(query: Select[Any], order: str, cursor: _Cursor | None) -> Select[Any]:
    if order == "scheduled_soonest":
        # Unscheduled posts last, as the (tenant_id, scheduled_at, id) index keeps them on
        # PostgreSQL, so it serves the order without sorting the tenant's posts.
        query = query.order_by(Post.scheduled_at.asc().nulls_last(), Post.id)
        if cursor is not None and cursor.at is not None:
            query = query.where(
                or_(
                    Post.scheduled_at > cursor.at,
                    and_(Post.scheduled_at == cursor.at, Post.id > cursor.post_id),
                    Post.scheduled_at.is_(None),
                )
            )
        elif cursor is not None:
            query = query.where(Post.scheduled_at.is_(None), Post.id > cursor.post_id)
        return query
    if order == "created_oldest":
        query = query.order_by(Post.created_at, Post.id)
        if cursor is not None:
            query = query.where(
                or_(
                    Post.created_at > cursor.at,
                    and_(Post.created_at == cursor.at, Post.id > cursor.post_id),
                )
            )
        return query
    query = query.order_by(Post.created_at.desc(), Post.id.desc())
    if cursor is not None:
        query = query.where(
            or_(
                Post.created_at < cursor.at,
                and_(Post.created_at == cursor.at, Post.id < cursor.post_id),
            )
        )
    return query


def _live_targets_by_platform(tenant: str) -> Select[tuple[str, str, Any]]:
    """Count the targets of the tenant's live posts by platform and status, in one statement.

    Joining every target to its post to see whether the post is deleted costs a pass over both
    tables. Targets carry their post's tenant, so this counts all of the tenant's targets from
    the (tenant_id, platform, status) index and takes away those of soft-deleted posts, which
    are few: a partial index lists them and (post_id, platform, status) counts their targets,
    both without reading the tables. A deleted post's targets keep whatever status they had
    reached (only the unstarted ones are cancelled), so status alone cannot tell them apart.
    Being one statement, both halves read one snapshot: a post deleted meanwhile is not counted
    in one status and taken away in another.
    """
    every = (
        select(Target.platform, Target.status, func.count().label("n"))
        .where(Target.tenant_id == tenant)
        .group_by(Target.platform, Target.status)
    )
    of_deleted = (
        select(Target.platform, Target.status, (-func.count()).label("n"))
        .join(Post, Post.id == Target.post_id)
        .where(Post.tenant_id == tenant, Post.deleted_at.is_not(None))
        .group_by(Target.platform, Target.status)
    )
    counts = union_all(every, of_deleted).subquery()
    total = func.sum(counts.c.n)
    return (
        select(counts.c.platform, counts.c.status, total)
        .group_by(counts.c.platform, counts.c.status)
        .having(total != 0)
    )


#: Posts whose publishing has not begun. Past their instant, both are overdue: a post still
#: waiting for approval is late from its author's view even though no claim would take it yet.
_WAITING_TO_START: Final = (PostStatus.SCHEDULED.value, PostStatus.PENDING_APPROVAL.value)


async def get_stats(app: Application, tenant: str) -> Stats:
    """Counts by status and platform, what is due within the hour, the oldest overdue post.

    Due within the hour counts SCHEDULED posts only (what will go out unless changed); the
    oldest overdue is the earliest SCHEDULED or PENDING_APPROVAL post whose instant has passed.
    """
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
            (Platform(platform), TargetStatus(status)): int(count)
            for platform, status, count in (
                await session.execute(_live_targets_by_platform(tenant))
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
                .where(live, Post.status.in_(_WAITING_TO_START), Post.scheduled_at < now)
                .order_by(Post.scheduled_at)
                .limit(1)
            )
        ).scalar_one_or_none()
    return Stats(by_status, by_platform, int(due_next_hour), oldest)
