"""CreatePost: validate a request on its own, then write its post, targets, tags and events.

Creates that arrive together share one transaction (`batcher.CreateBatcher`); each is still
validated and answered on its own, and a refused one writes nothing. A repeated `request_id` is
answered with the first post only when the request is the same (`request_hash`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, fields, is_dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import psycopg
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from kairos_api.adapters import outbox
from kairos_api.adapters.orm import Post, new_id
from kairos_api.domain.model import PostStatus, TargetStatus
from kairos_api.service_layer import queue_slots
from kairos_api.service_layer.application import Application
from kairos_api.service_layer.posts.records import (
    POST_COLUMNS,
    POST_MEDIA,
    POSTS,
    TAGS,
    TARGETS,
    PostRecord,
    TargetRecord,
    post_records,
)
from kairos_api.service_layer.posts.rules import (
    MAX_CAMPAIGN_LENGTH,
    MAX_NOTES_LENGTH,
    MAX_REQUEST_ID_LENGTH,
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
    target_platforms,
    target_violations,
    uploaded_media_violations,
    wake_if_due_soon,
)
from kairos_api.service_layer.unit_of_work import UnitOfWork
from kairos_common import errors
from kairos_common.errors import FieldViolation


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
    media_ids: Sequence[str] = ()


# The first requests' posts, as they are now (even if deleted since, as before): the request's
# id and hash, then `POST_COLUMNS`.
_POSTS_BY_REQUEST_IDS = select(POSTS.c.request_id, POSTS.c.request_hash, *POST_COLUMNS).where(
    POSTS.c.tenant_id == bindparam("tenant"),
    POSTS.c.request_id.in_(bindparam("request_ids", expanding=True)),
)


@dataclass(frozen=True)
class Draft:
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
    #: The parsed `media_ids` (None where one does not parse).
    media_ids: list[uuid.UUID | None]
    #: Add to queue: the slot is the next free one from this instant (`scheduled_at` is set
    #: once it is taken, in the transaction that writes the post).
    queue_start: datetime | None = None
    #: Queued per target: each account's own slot, once taken.
    own_slots: tuple[tuple[uuid.UUID, datetime], ...] = ()


@dataclass(frozen=True)
class _NewPost:
    """The rows of one post to insert, and the record the caller is answered with."""

    record: PostRecord
    post_row: dict[str, Any]
    target_rows: list[dict[str, Any]]
    tag_rows: list[dict[str, Any]]
    media_rows: list[dict[str, Any]]
    events: list[dict[str, Any]]
    #: Whether the post took a queue slot (held once the post is written).
    queued: bool = False
    #: Queued per target: each account's own slot (held, and its target due then, once the
    #: post is written).
    own_slots: tuple[tuple[uuid.UUID, datetime], ...] = ()


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


def fingerprint(value: Any) -> str:
    """SHA-256 (hex) of `value` in the canonical form `request_hash` uses (dataclasses without
    their default fields, instants in UTC), for other requests that keep a request_id."""
    text = json.dumps(_canonical(value), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _canonical(value: Any) -> Any:
    """`value` as plain JSON data: dataclasses become objects without their default fields."""
    if is_dataclass(value) and not isinstance(value, type):
        form: dict[str, Any] = {}
        for name, default in _canonical_defaults(type(value)):
            item = _canonical(getattr(value, name))
            if item != default:
                form[name] = item
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


@functools.cache
def _canonical_defaults(cls: type) -> tuple[tuple[str, Any], ...]:
    """A dataclass's fields, each with its default in canonical form (MISSING without one):
    worked out once per class, since `fields()` and the defaults were most of a hash's cost."""
    found: list[tuple[str, Any]] = []
    for spec in fields(cls):
        if spec.default_factory is not MISSING:
            default = _canonical(spec.default_factory())
        else:
            default = _canonical(spec.default) if spec.default is not MISSING else MISSING
        found.append((spec.name, default))
    return tuple(found)


def draft_of(app: Application, tenant: str, command: CreatePost) -> Draft:
    violations: list[FieldViolation] = []
    check_length(command.request_id, MAX_REQUEST_ID_LENGTH, "request_id", violations)
    check_length(command.campaign, MAX_CAMPAIGN_LENGTH, "campaign", violations)
    check_length(command.notes, MAX_NOTES_LENGTH, "notes", violations)
    tags = clean_tags(command.tags, violations)
    check_stale_after(command.stale_after, violations)
    ids = target_violations(command.targets, violations)
    media_ids = media_id_violations(command.media_ids, violations)
    scheduled_at: datetime | None = None
    zone = ""
    start: datetime | None = None
    if command.schedule is not None:
        try:
            if command.schedule.queue is not None:
                start = queue_start(app, command.schedule.queue)
            else:
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
    return Draft(
        tenant,
        command,
        violations,
        tags,
        ids,
        scheduled_at,
        zone,
        parent_id,
        digest,
        media_ids,
        start,
    )


async def _refuse_invalid(
    app: Application, uow: UnitOfWork, draft: Draft, accounts: dict[uuid.UUID, AccountRef]
) -> None:
    """Raise InvalidArgument with every violation of the draft, once the database is consulted."""
    command = draft.command
    violations = list(draft.violations)
    account_violations(draft.account_ids, accounts, violations)
    targets = target_platforms(command.targets, draft.account_ids, accounts, command.content)
    violations.extend(
        content_violations(app, targets, command.media_urls, uploads=len(command.media_ids))
    )
    violations.extend(
        await uploaded_media_violations(
            app, uow, draft.tenant, draft.media_ids, targets, media_urls=len(command.media_urls)
        )
    )
    if draft.parent_id is not None:
        parent = await uow.session.get(Post, draft.parent_id)
        if parent is None or parent.tenant_id != draft.tenant or parent.deleted_at is not None:
            violations.append(FieldViolation("parent_post_id", f"post {draft.parent_id} not found"))
    if violations:
        raise errors.InvalidArgument.collect(violations)


def _new_post(app: Application, draft: Draft, accounts: dict[uuid.UUID, AccountRef]) -> _NewPost:
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
        media_ids=[str(i) for i in draft.media_ids],
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
        "media_ids": record.media_ids,
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
    media_rows = [
        {"post_id": post_id, "position": position, "media_id": media_id}
        for position, media_id in enumerate(draft.media_ids)
    ]
    return _NewPost(
        record,
        post_row,
        target_rows,
        tag_rows,
        media_rows,
        events,
        draft.queue_start is not None,
        draft.own_slots,
    )


#: The rows of a batch of creates on PostgreSQL, in one statement. Each table's rows travel as
#: one JSON text of arrays, as the outbox's do (`outbox.rows_json`).
INSERT_SQL = f"""
WITH new_posts AS (
    INSERT INTO posts (id, tenant_id, content, media_urls, campaign, tags, notes, status,
                       scheduled_at, time_zone, revision, approval_required, rejection_reason,
                       stale_after_seconds, parent_post_id, request_id, request_hash,
                       created_at, updated_at, media_ids)
    SELECT (v->>0)::uuid, v->>1, v->>2, v->3, v->>4, v->5, v->>6, v->>7,
           (v->>8)::timestamptz, v->>9, 1, (v->>10)::boolean, '',
           (v->>11)::integer, (v->>12)::uuid, v->>13, v->>14,
           (v->>15)::timestamptz, (v->>15)::timestamptz, v->16
    FROM json_array_elements(%(posts)s::json) AS v
), new_targets AS (
    INSERT INTO targets (id, post_id, tenant_id, account_id, platform, content_override,
                         settings, status, attempt_count, next_attempt_at, due_at, stale_at,
                         platform_post_id, platform_url, last_error_class, last_error_code,
                         last_error_message, created_at, updated_at)
    SELECT (v->>0)::uuid, (v->>1)::uuid, v->>2, (v->>3)::uuid, v->>4, v->>5, v->6, 'pending', 0,
           (v->>7)::timestamptz, (v->>8)::timestamptz, (v->>9)::timestamptz,
           '', '', '', '', '', (v->>10)::timestamptz, (v->>10)::timestamptz
    FROM json_array_elements(%(targets)s::json) AS v
), new_tags AS (
    INSERT INTO post_tags (post_id, tag, tenant_id)
    SELECT (v->>0)::uuid, v->>1, v->>2 FROM json_array_elements(%(tags)s::json) AS v
), new_post_media AS (
    INSERT INTO post_media (post_id, position, media_id)
    SELECT (v->>0)::uuid, (v->>1)::integer, (v->>2)::uuid
    FROM json_array_elements(%(post_media)s::json) AS v
){outbox.INSERT_SQL}"""


def _insert_parameters(new_posts: Sequence[_NewPost]) -> dict[str, Any]:
    """The parameters of INSERT_SQL."""
    posts: list[tuple[Any, ...]] = []
    targets: list[tuple[Any, ...]] = []
    tags: list[tuple[str, str, str]] = []
    post_media: list[tuple[str, int, str]] = []
    events: list[dict[str, Any]] = []
    for new in new_posts:
        row = new.post_row
        parent = row["parent_post_id"]
        posts.append(
            (
                str(row["id"]),
                row["tenant_id"],
                row["content"],
                row["media_urls"],
                row["campaign"],
                row["tags"],
                row["notes"],
                row["status"],
                outbox.instant_text(row["scheduled_at"]),
                row["time_zone"],
                row["approval_required"],
                row["stale_after_seconds"],
                str(parent) if parent is not None else None,
                row["request_id"],
                row["request_hash"],
                outbox.instant_text(row["created_at"]),
                row["media_ids"],
            )
        )
        targets.extend(
            (
                str(t["id"]),
                str(t["post_id"]),
                t["tenant_id"],
                str(t["account_id"]),
                t["platform"],
                t["content_override"],
                t["settings"],
                outbox.instant_text(t["next_attempt_at"]),
                outbox.instant_text(t["due_at"]),
                outbox.instant_text(t["stale_at"]),
                outbox.instant_text(t["created_at"]),
            )
            for t in new.target_rows
        )
        tags.extend((str(t["post_id"]), t["tag"], t["tenant_id"]) for t in new.tag_rows)
        post_media.extend(
            (str(m["post_id"]), m["position"], str(m["media_id"])) for m in new.media_rows
        )
        events.extend(new.events)
    return {
        "posts": json.dumps(posts),
        "targets": json.dumps(targets),
        "tags": json.dumps(tags),
        "post_media": json.dumps(post_media),
        "events": outbox.rows_json(events),
    }


async def _insert(uow: UnitOfWork, new_posts: Sequence[_NewPost]) -> None:
    """Insert the posts, their targets, tags and events: one statement on PostgreSQL, one
    executemany per table on SQLite. A request_id taken meanwhile raises IntegrityError."""
    if not new_posts:
        return
    if uow.on_postgresql:
        raw = await uow.psycopg()
        try:
            await raw.execute(INSERT_SQL, _insert_parameters(new_posts))
        except psycopg.IntegrityError as error:
            raise IntegrityError(INSERT_SQL, None, error) from error
        uow.events_written()
        return
    connection = await uow.session.connection()
    await connection.execute(insert(POSTS), [p.post_row for p in new_posts])
    await connection.execute(insert(TARGETS), [r for p in new_posts for r in p.target_rows])
    tag_rows = [r for p in new_posts for r in p.tag_rows]
    if tag_rows:
        await connection.execute(insert(TAGS), tag_rows)
    media_rows = [r for p in new_posts for r in p.media_rows]
    if media_rows:
        await connection.execute(insert(POST_MEDIA), media_rows)
    await uow.emit_rows([e for p in new_posts for e in p.events])


async def create_post(app: Application, tenant: str, command: CreatePost) -> PostRecord:
    """Create a draft, or a scheduled post when a schedule is given.

    A repeated `request_id` returns the post the first request created, unchanged, when the
    request is the same; with a different request it is refused (INVALID_ARGUMENT on request_id).
    """
    return (await create_one(app, draft_of(app, tenant, command))).record


class Created(NamedTuple):
    """The answer to one create: its post, and whether an earlier request made it."""

    record: PostRecord
    #: True when a create with the same request_id made the post before (a retry).
    repeated: bool = False


async def create_one(app: Application, draft: Draft) -> Created:
    request_id = draft.command.request_id
    async with app.uow() as uow:
        if request_id:
            earlier = await _by_request_id(uow, draft.tenant, request_id)
            if earlier is not None:
                return Created(_repeat_of(draft, earlier), repeated=True)
        accounts = await accounts_of(uow, draft.tenant, draft.account_ids)
        await _refuse_invalid(app, uow, draft, accounts)
        draft = await _take_queue_slot(uow, draft)
        new = _new_post(app, draft, accounts)
        try:
            await _insert(uow, [new])
            await _hold_queue_slots(uow, [new])
            await uow.commit()
        except IntegrityError:
            # Two creates with the same request_id raced; the other one won.
            await uow.session.rollback()
            earlier = await _by_request_id(uow, draft.tenant, request_id)
            if earlier is None:
                raise
            return Created(_repeat_of(draft, earlier), repeated=True)
    wake_if_due_soon(app, new.record, new.record.created_at)
    # Everything the answer shows was written here: no need to read it back.
    return Created(new.record)


async def create_many(
    app: Application, drafts: Sequence[Draft]
) -> list[Created | errors.InvalidArgument]:
    """Create many posts in one transaction; each refused draft gets its own error.

    Raises IntegrityError when a request_id raced with another transaction: then nothing was
    written, and the caller goes through the drafts one by one.
    """
    async with app.uow() as uow:
        results, new_posts, _ = await _plan(app, uow, drafts)
        await _insert(uow, new_posts)
        await _hold_queue_slots(uow, new_posts)
        await uow.commit()
    for new in new_posts:
        wake_if_due_soon(app, new.record, new.record.created_at)
    return results


async def validate_many(
    app: Application, drafts: Sequence[Draft]
) -> list[Created | errors.InvalidArgument]:
    """What `create_many` would answer, with every check it makes, writing nothing: each valid
    draft's answer is the post it would create (or the one its request_id already made)."""
    async with app.uow() as uow:
        return (await _plan(app, uow, drafts))[0]


async def validate_one(
    app: Application, draft: Draft
) -> tuple[Created | errors.InvalidArgument, dict[uuid.UUID, AccountRef]]:
    """`validate_many` of one draft (ValidatePost), with the draft's accounts as the same
    transaction found them: the caller counts each target's text on its account's platform."""
    async with app.uow() as uow:
        results, _, accounts = await _plan(app, uow, [draft])
    return results[0], accounts.get(draft.tenant, {})


async def _plan(
    app: Application, uow: UnitOfWork, drafts: Sequence[Draft]
) -> tuple[
    list[Created | errors.InvalidArgument],
    list[_NewPost],
    dict[str, dict[uuid.UUID, AccountRef]],
]:
    """Each draft's answer, the posts to insert for the valid new ones (queued drafts with
    their slots taken: the queues stay locked until the transaction ends), and the accounts
    the drafts name, by tenant, as this transaction found them."""
    results: list[Created | errors.InvalidArgument | None] = [None] * len(drafts)
    by_tenant: dict[str, list[Draft]] = {}
    for draft in drafts:
        by_tenant.setdefault(draft.tenant, []).append(draft)
    accounts: dict[str, dict[uuid.UUID, AccountRef]] = {}
    existing: dict[tuple[str, str], _Earlier] = {}
    for tenant, group in by_tenant.items():
        ids = [i for d in group for i in d.account_ids]
        accounts[tenant] = await accounts_of(uow, tenant, ids)
        wanted = list(dict.fromkeys(d.command.request_id for d in group if d.command.request_id))
        for request_id, found in (await _by_request_ids(uow, tenant, wanted)).items():
            existing[(tenant, request_id)] = found
    # Every queue the batch's queued drafts take from, locked up front in one order
    # (tenant, then account), so two batches never wait on each other crosswise.
    for tenant in sorted(by_tenant):
        queued = [a for d in by_tenant[tenant] if d.queue_start is not None for a in d.account_ids]
        await queue_slots.lock_queues(uow, tenant, [a for a in queued if a is not None])
    new_posts: list[_NewPost] = []
    # Slots taken by queued drafts earlier in the batch, held once their posts are written.
    also_taken: dict[str, dict[uuid.UUID, set[datetime]]] = {}
    for index, draft in enumerate(drafts):
        key = (draft.tenant, draft.command.request_id)
        if key in existing:
            # Created earlier, or by a valid draft earlier in this batch.
            try:
                results[index] = Created(_repeat_of(draft, existing[key]), repeated=True)
            except errors.InvalidArgument as error:
                results[index] = error
            continue
        try:
            await _refuse_invalid(app, uow, draft, accounts[draft.tenant])
            draft = await _take_queue_slot(uow, draft, also_taken.setdefault(draft.tenant, {}))
        except errors.InvalidArgument as error:
            results[index] = error
            continue
        new = _new_post(app, draft, accounts[draft.tenant])
        new_posts.append(new)
        results[index] = Created(new.record)
        if draft.command.request_id:
            existing[key] = _Earlier(new.record, draft.request_hash)
    return [r for r in results if r is not None], new_posts, accounts


async def _take_queue_slot(
    uow: UnitOfWork, draft: Draft, also_taken: dict[uuid.UUID, set[datetime]] | None = None
) -> Draft:
    """A queued draft with its slot found (the accounts' queues stay locked until commit);
    others as they are. `also_taken` gains the slot, for the drafts after it in a batch."""
    schedule = draft.command.schedule
    if draft.queue_start is None or schedule is None or schedule.queue is None:
        return draft
    accounts = [a for a in draft.account_ids if a is not None]
    taken = also_taken if also_taken is not None else {}
    if schedule.queue.per_target:
        own: list[tuple[uuid.UUID, datetime]] = []
        zone = ""
        for account in accounts:
            at, found_zone = await queue_slots.find_common_slot(
                uow, draft.tenant, [account], draft.queue_start, also_taken=taken
            )
            taken.setdefault(account, set()).add(at)
            own.append((account, at))
            zone = zone or found_zone
        first = min(at for _, at in own)
        return replace(draft, scheduled_at=first, time_zone=zone, own_slots=tuple(own))
    at, zone = await queue_slots.find_common_slot(
        uow, draft.tenant, accounts, draft.queue_start, also_taken=taken
    )
    for account in accounts:
        taken.setdefault(account, set()).add(at)
    return replace(draft, scheduled_at=at, time_zone=zone)


async def _hold_queue_slots(uow: UnitOfWork, new_posts: Sequence[_NewPost]) -> None:
    """Hold the slots queued posts took, now that the posts are written; a post queued per
    target has each target due at its own slot."""
    for new in new_posts:
        if not new.queued:
            continue
        record, tenant = new.record, new.post_row["tenant_id"]
        if not new.own_slots:
            accounts = [t.account_id for t in record.targets]
            assert record.scheduled_at is not None
            await queue_slots.hold(uow, tenant, record.id, accounts, record.scheduled_at)
            continue
        own = dict(new.own_slots)
        for account, at in new.own_slots:
            await queue_slots.hold(uow, tenant, record.id, [account], at)
        for index, (target, row) in enumerate(zip(record.targets, new.target_rows, strict=True)):
            at = own[target.account_id]
            armed = target.next_attempt_at is not None
            await uow.session.execute(
                update(TARGETS)
                .where(TARGETS.c.id == target.id)
                .values(
                    queued_at=at,
                    due_at=at,
                    next_attempt_at=at if armed else None,
                    # The post's stale window, measured from the target's own instant.
                    stale_at=at + (row["stale_at"] - row["due_at"]),
                )
            )
            if armed:
                record.targets[index] = replace(target, next_attempt_at=at)


class _Earlier(NamedTuple):
    """The post an earlier create with the same request_id made, and that create's hash."""

    record: PostRecord
    request_hash: str | None


def _repeat_of(draft: Draft, earlier: _Earlier) -> PostRecord:
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
    return (await _by_request_ids(uow, tenant, [request_id])).get(request_id)


async def _by_request_ids(
    uow: UnitOfWork, tenant: str, request_ids: Sequence[str]
) -> dict[str, _Earlier]:
    """The posts earlier creates of this tenant made with these request_ids, by request_id: two
    statements for a whole batch, the posts and their targets (one a request had made a batch
    of creates wait on round trips in turn)."""
    if not request_ids:
        return {}
    connection = await uow.session.connection()
    found = (
        await connection.execute(
            _POSTS_BY_REQUEST_IDS, {"tenant": tenant, "request_ids": list(request_ids)}
        )
    ).all()
    records = await post_records(connection, [row[2:] for row in found])
    return {
        row.request_id: _Earlier(record, row.request_hash)
        for row, record in zip(found, records, strict=True)
    }
