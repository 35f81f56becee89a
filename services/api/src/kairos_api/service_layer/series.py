"""Recurring series: a post template and an RFC 5545 rule whose occurrences become ordinary posts
a horizon ahead (`KAIROS_SERIES_HORIZON_DAYS`), so that dispatch, fences, retries and events
stay what they are for any post.

Materialising is idempotent. A series keeps `materialised_until`: every occurrence before it
exists as a post, or was removed on purpose. Whoever materialises (CreateSeries, ResumeSeries,
an edit, or any api copy's timer) locks the series row first (PostgreSQL: FOR UPDATE SKIP LOCKED,
so copies share the work; SQLite: its one writer), creates what lies between the mark and the
horizon and is not there yet, and moves the mark, all in one transaction. A crash or a restart
in between rolls the whole round back; the next round does it again. A unique index on the live
(series_id, occurrence_at) pairs is the last guard: no occurrence can exist twice.

Edits follow calendar apps. THIS changes one occurrence, as UpdatePost would (its instant stays
its RECURRENCE-ID); deleting it also adds an EXDATE, so no later edit brings it back. FOLLOWING
cuts the series before the occurrence (COUNT becomes UNTIL) and makes the rest a new series.
ALL replaces the series' template or rule and its unpublished occurrences from now on. An
occurrence that is publishing, published, failed, missed or unknown is never changed or
removed: an edit leaves it where it is, and the new part skips its instant. Pausing cancels the
unpublished future occurrences; resuming creates them again from the moment of resuming.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from kairos_api.adapters.orm import Post, Series
from kairos_api.domain.model import (
    EDITABLE_POST_STATUSES,
    TargetStatus,
)
from kairos_api.domain.recurrence import START_AFTER, Recurrence, parse_recurrence
from kairos_api.service_layer.application import Application
from kairos_api.service_layer.posts import commands
from kairos_api.service_layer.posts.create import (
    CreatePost,
    Draft,
    _insert,
    _new_post,
    _refuse_invalid,
    draft_of,
    fingerprint,
)
from kairos_api.service_layer.posts.page_tokens import Cursor, decode_token, encode_token
from kairos_api.service_layer.posts.records import POST_COLUMNS, POSTS, PostRecord, post_records
from kairos_api.service_layer.posts.rules import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    MAX_REQUEST_ID_LENGTH,
    TargetInput,
    accounts_of,
    parse_id,
    wake_if_due_soon,
)
from kairos_api.service_layer.unit_of_work import UnitOfWork
from kairos_common import errors
from kairos_common.errors import FieldViolation

log = logging.getLogger(__name__)

ACTIVE = "active"
PAUSED = "paused"
#: Most occurrences one series gets in one round; the rest come in the next rounds.
MAX_PER_ROUND = 500
#: `materialised_until` of a series whose rule has no occurrence left.
ENDED = datetime(9999, 1, 1, tzinfo=UTC)
#: Most series one materialising round visits, so a round ends.
MAX_SERIES_PER_ROUND = 10_000
#: The fields of a template UpdateSeries can change, and the recurrence.
TEMPLATE_FIELDS = frozenset(
    {
        "content",
        "media_urls",
        "media_ids",
        "targets",
        "campaign",
        "tags",
        "notes",
        "approval_required",
        "stale_after",
    }
)
SCOPES = ("this", "following", "all")
_LISTING = "series"


@dataclass(frozen=True)
class Template:
    """What each occurrence is made of (CreatePost's fields, without a schedule)."""

    content: str = ""
    targets: Sequence[TargetInput] = ()
    media_urls: Sequence[str] = ()
    media_ids: Sequence[str] = ()
    campaign: str = ""
    tags: Sequence[str] = ()
    notes: str = ""
    approval_required: bool = False
    stale_after: timedelta | None = None


@dataclass(frozen=True)
class RecurrenceInput:
    """A rule (RFC 5545 text) from a wall-clock start in an IANA zone."""

    rule: str
    start_local: str
    time_zone: str


@dataclass(frozen=True)
class UpdateSeries:
    series_id: str
    scope: str
    paths: Sequence[str]
    post_id: str = ""
    template: Template = Template()
    recurrence: RecurrenceInput | None = None


def _command(template: Template) -> CreatePost:
    return CreatePost(
        content=template.content,
        targets=template.targets,
        media_urls=template.media_urls,
        media_ids=template.media_ids,
        campaign=template.campaign,
        tags=template.tags,
        notes=template.notes,
        approval_required=template.approval_required,
        stale_after=template.stale_after,
    )


def template_of(series: Series) -> Template:
    return Template(
        content=series.content,
        targets=[
            TargetInput(
                account_id=t["account_id"],
                content_override=t.get("content_override"),
                settings=dict(t.get("settings") or {}),
            )
            for t in series.targets
        ],
        media_urls=list(series.media_urls),
        media_ids=list(series.media_ids),
        campaign=series.campaign,
        tags=list(series.tags),
        notes=series.notes,
        approval_required=series.approval_required,
        stale_after=(
            timedelta(seconds=series.stale_after_seconds)
            if series.stale_after_seconds is not None
            else None
        ),
    )


def recurrence_of(series: Series) -> Recurrence:
    return parse_recurrence(series.rule, series.start_local, series.time_zone, "recurrence")


def _set_template(series: Series, template: Template, draft: Draft) -> None:
    series.content = template.content
    series.targets = [
        {
            "account_id": str(account_id),
            "content_override": t.content_override,
            "settings": dict(t.settings),
        }
        for t, account_id in zip(template.targets, draft.account_ids, strict=True)
    ]
    series.media_urls = list(template.media_urls)
    series.media_ids = [str(i) for i in draft.media_ids]
    series.campaign = template.campaign
    series.tags = list(draft.tags)
    series.notes = template.notes
    series.approval_required = template.approval_required
    series.stale_after_seconds = (
        int(template.stale_after.total_seconds()) if template.stale_after is not None else None
    )


def _set_recurrence(series: Series, recurrence: Recurrence) -> None:
    series.rule = recurrence.text
    series.start_local = recurrence.start_local
    series.time_zone = recurrence.time_zone


def _prefixed(violations: Sequence[FieldViolation], prefix: str) -> list[FieldViolation]:
    return [FieldViolation(f"{prefix}.{v.field}", v.description) for v in violations]


def _parse(
    recurrence: RecurrenceInput, violations: list[FieldViolation], now: datetime
) -> Recurrence | None:
    try:
        return parse_recurrence(
            recurrence.rule, recurrence.start_local, recurrence.time_zone, "recurrence", now=now
        )
    except errors.InvalidArgument as error:
        violations.extend(error.violations)
        return None


async def _checked_template(
    app: Application,
    uow: UnitOfWork,
    tenant: str,
    template: Template,
    violations: list[FieldViolation],
) -> Draft:
    """The template checked as CreatePost checks a post; violations under `template.`."""
    draft = draft_of(app, tenant, _command(template))
    accounts = await accounts_of(uow, tenant, draft.account_ids)
    try:
        await _refuse_invalid(app, uow, draft, accounts)
    except errors.InvalidArgument as error:
        violations.extend(_prefixed(error.violations, "template"))
    return draft


def _not_all_past(recurrence: Recurrence, now: datetime, violations: list[FieldViolation]) -> None:
    if not recurrence.first(1, after=now):
        violations.append(
            FieldViolation("recurrence.rule", "every occurrence of the rule is in the past")
        )


# --- materialising --------------------------------------------------------------------------


async def _materialise(
    app: Application, uow: UnitOfWork, series: Series, now: datetime
) -> list[PostRecord]:
    """Create the occurrences of a locked series between its mark and the horizon."""
    end = now + app.settings.series_horizon
    if series.status != ACTIVE or series.deleted_at is not None:
        return []
    if series.materialised_until >= end:
        return []
    recurrence = recurrence_of(series)
    pairs = recurrence.between(series.materialised_until, end)
    until = end
    if len(pairs) > MAX_PER_ROUND:
        pairs = pairs[:MAX_PER_ROUND]
        until = pairs[-1][0] + timedelta(microseconds=1)
    elif not recurrence.first(1, after=end):
        until = ENDED  # the rule has no occurrence left: no round needs to look at it again
    connection = await uow.session.connection()
    taken = set(
        (
            await connection.execute(
                select(POSTS.c.occurrence_at).where(
                    POSTS.c.series_id == series.id,
                    POSTS.c.deleted_at.is_(None),
                    POSTS.c.occurrence_at >= series.materialised_until,
                )
            )
        ).scalars()
    )
    pairs = [(instant, wall) for instant, wall in pairs if instant not in taken]
    created: list[PostRecord] = []
    if pairs:
        draft = draft_of(app, series.tenant_id, _command(template_of(series)))
        accounts = await accounts_of(uow, series.tenant_id, draft.account_ids)
        try:
            await _refuse_invalid(app, uow, draft, accounts)
        except errors.InvalidArgument as error:
            # An account or a file went away since the series was saved: stop rather than
            # create posts that cannot publish, and say why.
            series.status = PAUSED
            series.status_reason = "paused by Kairos: " + "; ".join(
                f"{v.field}: {v.description}" for v in error.violations
            )
            log.warning("series %s paused: %s", series.id, series.status_reason)
            return []
        news = [
            _new_post(
                app, replace(draft, scheduled_at=instant, time_zone=series.time_zone), accounts
            )
            for instant, _ in pairs
        ]
        await _insert(uow, news)
        await connection.execute(
            update(POSTS)
            .where(POSTS.c.id == bindparam("b_id"))
            .values(series_id=bindparam("b_series"), occurrence_at=bindparam("b_at")),
            [
                {"b_id": new.record.id, "b_series": series.id, "b_at": instant}
                for new, (instant, _) in zip(news, pairs, strict=True)
            ],
        )
        created = [replace(new.record, series_id=series.id) for new in news]
    series.materialised_until = until
    series.updated_at = now
    return created


async def materialise_due(app: Application) -> int:
    """One round: every active series not materialised up to the horizon gets its occurrences,
    one series per transaction. Returns how many posts were created."""
    created = 0
    # Each series this round visits ends at least this far ahead, so none is visited twice
    # (but one cut at MAX_PER_ROUND, which goes on).
    reach = app.clock() + app.settings.series_horizon
    for _ in range(MAX_SERIES_PER_ROUND):
        records: list[PostRecord] = []
        async with app.uow() as uow:
            now = app.clock()
            query = (
                select(Series)
                .where(
                    Series.status == ACTIVE,
                    Series.deleted_at.is_(None),
                    Series.materialised_until < reach,
                )
                .order_by(Series.materialised_until)
                .limit(1)
            )
            if uow.on_postgresql:
                query = query.with_for_update(skip_locked=True)
            series = (await uow.session.execute(query)).scalar_one_or_none()
            if series is None:
                return created
            try:
                records = await _materialise(app, uow, series, now)
                await uow.commit()
            except IntegrityError:
                # Cannot happen while the series is locked; if it does, the next try sees
                # what the other writer made.
                log.warning("series %s: an occurrence existed already; trying again", series.id)
                continue
        created += len(records)
        for record in records:
            wake_if_due_soon(app, record, now)
    return created


async def materialise_until(app: Application, stopping: asyncio.Event) -> None:
    """Materialise every `series_every` until `stopping` is set (the api's timer)."""
    while not stopping.is_set():
        try:
            await materialise_due(app)
        except Exception as error:  # the database is away: the next round tries again
            log.warning("materialising series failed: %r", error)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), app.settings.series_every.total_seconds())


# --- reading --------------------------------------------------------------------------------


async def _locked(uow: UnitOfWork, tenant: str, series_id: str) -> Series:
    ident = parse_id(series_id, "series_id")
    query = select(Series).where(Series.id == ident, Series.tenant_id == tenant).with_for_update()
    series = (await uow.session.execute(query)).scalar_one_or_none()
    if series is None or series.deleted_at is not None:
        raise errors.NotFound(f"series {series_id} not found")
    return series


async def get_series(app: Application, tenant: str, series_id: str) -> Series:
    async with app.uow() as uow:
        ident = parse_id(series_id, "series_id")
        series = await uow.session.get(Series, ident)
        if series is None or series.tenant_id != tenant or series.deleted_at is not None:
            raise errors.NotFound(f"series {series_id} not found")
        return series


async def list_series(
    app: Application, tenant: str, page_size: int, page_token: str
) -> tuple[list[Series], str]:
    """A page of the tenant's live series, newest first, and the next page's token."""
    if page_size < 0:
        raise errors.InvalidArgument.of("page_size", "must not be negative")
    size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    fingerprint = b"series\x00\x00"
    cursor = (
        decode_token(page_token, fingerprint, "created_newest", listing="ListSeries")
        if page_token
        else None
    )
    query = select(Series).where(Series.tenant_id == tenant, Series.deleted_at.is_(None))
    if cursor is not None and cursor.at is not None:
        query = query.where(
            (Series.created_at < cursor.at)
            | ((Series.created_at == cursor.at) & (Series.id < cursor.post_id))
        )
    query = query.order_by(Series.created_at.desc(), Series.id.desc()).limit(size + 1)
    async with app.uow() as uow:
        found = list((await uow.session.execute(query)).scalars())
    token = ""
    if len(found) > size:
        del found[size:]
        last = found[-1]
        token = encode_token(fingerprint, Cursor(last.created_at, last.id))
    return found, token


def preview(
    app: Application, recurrence: RecurrenceInput, count: int, after: datetime | None
) -> list[tuple[datetime, datetime]]:
    """The first `count` (instant, wall time) of a rule, at or after `after` when given."""
    violations: list[FieldViolation] = []
    now = app.clock()
    if not 0 <= count <= 100:
        violations.append(FieldViolation("count", "must be from 1 to 100 (0 means 10)"))
    if after is not None and after > now + START_AFTER:
        # Walking a rule that far would cost the api seconds of CPU.
        violations.append(FieldViolation("after", "must be at most ten years from now"))
    parsed = _parse(recurrence, violations, now)
    if violations or parsed is None:
        raise errors.InvalidArgument.collect(violations)
    return parsed.first(count or 10, after=after)


# --- changing -------------------------------------------------------------------------------


async def _by_request_id(
    uow: UnitOfWork, tenant: str, request_id: str
) -> tuple[Series, list[PostRecord]] | None:
    """The series an earlier CreateSeries with this request_id made, with its live occurrences."""
    query = select(Series).where(Series.tenant_id == tenant, Series.request_id == request_id)
    series = (await uow.session.execute(query)).scalar_one_or_none()
    if series is None:
        return None
    connection = await uow.session.connection()
    rows = (
        await connection.execute(
            select(*POST_COLUMNS)
            .where(POSTS.c.series_id == series.id, POSTS.c.deleted_at.is_(None))
            .order_by(POSTS.c.occurrence_at)
        )
    ).all()
    return series, await post_records(connection, rows)


def _repeat_of(
    earlier: tuple[Series, list[PostRecord]], digest: str
) -> tuple[Series, list[PostRecord]]:
    """The earlier series when this create repeats its request; INVALID_ARGUMENT on
    `request_id` when the request differs (as CreatePost answers). A series made before hashes
    were kept has none: its request_id is honoured as it was."""
    series = earlier[0]
    if series.request_hash is not None and series.request_hash != digest:
        raise errors.InvalidArgument.of(
            "request_id",
            f"already used for a different request (series {series.id}); a retry must repeat "
            "the request unchanged, a new request needs a new request_id",
        )
    return earlier


async def create_series(
    app: Application,
    tenant: str,
    template: Template,
    recurrence: RecurrenceInput,
    request_id: str = "",
) -> tuple[Series, list[PostRecord]]:
    """Save a series and create its occurrences within the horizon, in one transaction. A
    repeated `request_id` returns the first series, with its occurrences as they are now."""
    violations: list[FieldViolation] = []
    if len(request_id) > MAX_REQUEST_ID_LENGTH:
        violations.append(
            FieldViolation("request_id", f"is longer than {MAX_REQUEST_ID_LENGTH} characters")
        )
    now = app.clock()
    parsed = _parse(recurrence, violations, now)
    if parsed is not None:
        _not_all_past(parsed, now, violations)
    digest = fingerprint({"template": template, "recurrence": recurrence})
    async with app.uow() as uow:
        if request_id and not violations:
            earlier = await _by_request_id(uow, tenant, request_id)
            if earlier is not None:
                return _repeat_of(earlier, digest)
        draft = await _checked_template(app, uow, tenant, template, violations)
        if violations or parsed is None:
            raise errors.InvalidArgument.collect(violations)
        series = Series(
            tenant_id=tenant,
            status=ACTIVE,
            status_reason="",
            materialised_until=now,
            request_id=request_id or None,
            request_hash=digest if request_id else None,
            created_at=now,
            updated_at=now,
        )
        _set_template(series, template, draft)
        _set_recurrence(series, parsed)
        uow.session.add(series)
        try:
            await uow.session.flush()
        except IntegrityError:
            # The same request_id raced with this create, and won.
            await uow.session.rollback()
            earlier = await _by_request_id(uow, tenant, request_id)
            if earlier is None:
                raise
            return _repeat_of(earlier, digest)
        records = await _materialise(app, uow, series, now)
        await uow.commit()
    for record in records:
        wake_if_due_soon(app, record, now)
    return series, records


def _changeable(post: Post) -> bool:
    """Whether an occurrence may still be edited or cancelled: nothing of it is under way or
    done (a publishing, published, failed, missed or unknown occurrence stays as it is)."""
    return post.status in EDITABLE_POST_STATUSES and not any(
        t.status == TargetStatus.PUBLISHING for t in post.targets
    )


async def _occurrences(
    uow: UnitOfWork, series: Series, *, from_instant: datetime | None = None
) -> list[Post]:
    """The live occurrences of a series (at or after `from_instant`), locked, with targets."""
    query = (
        select(Post)
        .where(Post.series_id == series.id, Post.deleted_at.is_(None))
        .options(selectinload(Post.targets))
        .order_by(Post.occurrence_at)
        .with_for_update()
    )
    if from_instant is not None:
        query = query.where(Post.occurrence_at >= from_instant)
    return list((await uow.session.execute(query)).scalars())


def _cancel_changeable(uow: UnitOfWork, posts: Sequence[Post], now: datetime) -> list[Post]:
    """Cancel what can be; return the occurrences that stay (published, under way ...)."""
    kept = []
    for post in posts:
        if _changeable(post):
            commands.cancel_post(uow, post, now)
        else:
            kept.append(post)
    return kept


async def _occurrence(uow: UnitOfWork, series: Series, post_id: str) -> Post:
    ident = parse_id(post_id, "post_id")
    query = (
        select(Post)
        .where(Post.id == ident, Post.tenant_id == series.tenant_id, Post.deleted_at.is_(None))
        .options(selectinload(Post.targets))
        .with_for_update()
    )
    post = (await uow.session.execute(query)).scalar_one_or_none()
    if post is None:
        raise errors.NotFound(f"post {post_id} not found")
    if post.series_id != series.id or post.occurrence_at is None:
        raise errors.InvalidArgument.of(
            "post_id", f"post {post_id} is not an occurrence of series {series.id}"
        )
    return post


def _wall_of(recurrence: Recurrence, instant: datetime) -> datetime:
    """The wall time the rule gave the occurrence at `instant`."""
    for found, wall in recurrence.between(instant, instant + timedelta(microseconds=1)):
        if found == instant:
            return wall
    return instant.astimezone(recurrence.zone).replace(tzinfo=None)


def _require_changeable(post: Post, action: str) -> None:
    if not _changeable(post):
        raise errors.FailedPrecondition(
            f"cannot {action} occurrence {post.id}: it is {post.status}; a published or "
            "publishing occurrence is never changed"
        )


def _scope(scope: str, post_id: str, violations: list[FieldViolation]) -> None:
    if scope not in SCOPES:
        violations.append(FieldViolation("scope", "set THIS, FOLLOWING or ALL"))
    elif scope != "all" and not post_id:
        violations.append(
            FieldViolation("post_id", f"names the occurrence a {scope.upper()} change starts at")
        )


def _merged(template: Template, changes: Template, paths: Sequence[str]) -> Template:
    return replace(template, **{path: getattr(changes, path) for path in paths})


async def update_series(
    app: Application, tenant: str, command: UpdateSeries
) -> tuple[Series | None, Post | None]:
    """Change one occurrence (THIS: the post), this and the following ones (FOLLOWING: the new
    series that holds them), or the whole series (ALL: the series)."""
    violations: list[FieldViolation] = []
    _scope(command.scope, command.post_id, violations)
    paths = list(dict.fromkeys(command.paths))
    if not paths:
        violations.append(FieldViolation("update_mask", "name at least one field to change"))
    for path in paths:
        if path not in TEMPLATE_FIELDS and path != "recurrence":
            violations.append(FieldViolation("update_mask", f"unknown field {path!r}"))
    template_paths = [p for p in paths if p in TEMPLATE_FIELDS]
    parsed: Recurrence | None = None
    if "recurrence" in paths:
        if command.scope == "this":
            violations.append(
                FieldViolation(
                    "recurrence",
                    "a rule belongs to the series, not one occurrence: use FOLLOWING or ALL "
                    "(SchedulePost moves one occurrence)",
                )
            )
        elif command.recurrence is None:
            violations.append(FieldViolation("recurrence", "is in update_mask but not given"))
        else:
            parsed = _parse(command.recurrence, violations, app.clock())
    if violations:
        raise errors.InvalidArgument.collect(violations)
    if command.scope == "this":
        return None, await _update_this(app, tenant, command, template_paths)
    now = app.clock()
    async with app.uow() as uow:
        series = await _locked(uow, tenant, command.series_id)
        template = _merged(template_of(series), command.template, template_paths)
        draft = await _checked_template(app, uow, tenant, template, violations)
        current = recurrence_of(series)
        if command.scope == "all":
            recurrence = parsed or current
            if parsed is not None:
                _not_all_past(parsed, now, violations)
            if violations:
                raise errors.InvalidArgument.collect(violations)
            _cancel_changeable(uow, await _occurrences(uow, series, from_instant=now), now)
            target = series
            target.materialised_until = now
        else:
            # Splitting at a published occurrence is fine: it stays, the later ones change.
            post = await _occurrence(uow, series, command.post_id)
            assert post.occurrence_at is not None
            at = post.occurrence_at
            wall = _wall_of(current, at)
            recurrence = parsed or current.starting_at(wall)
            if violations:
                raise errors.InvalidArgument.collect(violations)
            kept = _cancel_changeable(uow, await _occurrences(uow, series, from_instant=at), now)
            for other in kept:
                assert other.occurrence_at is not None
                recurrence = recurrence.without(_wall_of(current, other.occurrence_at))
            _set_recurrence(series, current.ending_before(wall))
            series.updated_at = now
            target = Series(
                tenant_id=tenant,
                status=ACTIVE,
                status_reason="",
                materialised_until=at,
                split_from=series.id,
                created_at=now,
                updated_at=now,
            )
            uow.session.add(target)
        _set_template(target, template, draft)
        _set_recurrence(target, recurrence)
        target.status = ACTIVE if series.status == ACTIVE else PAUSED
        target.updated_at = now
        await uow.session.flush()
        records = await _materialise(app, uow, target, now)
        await uow.commit()
    for record in records:
        wake_if_due_soon(app, record, now)
    return target, None


async def _update_this(
    app: Application, tenant: str, command: UpdateSeries, paths: Sequence[str]
) -> Post:
    async with app.uow() as uow:
        series = await _locked(uow, tenant, command.series_id)
        post = await _occurrence(uow, series, command.post_id)
        _require_changeable(post, "change")
    changes = command.template
    try:
        return await _update_post(app, tenant, command.post_id, changes, paths)
    except errors.InvalidArgument as error:
        # Named as they sit in UpdateSeriesRequest: `template.content`, `template.targets[0]...`.
        raise errors.InvalidArgument.collect(
            [
                FieldViolation("template." + v.field.removeprefix("post."), v.description)
                for v in error.violations
            ]
        ) from None


async def _update_post(
    app: Application, tenant: str, post_id: str, changes: Template, paths: Sequence[str]
) -> Post:
    return await commands.update_post(
        app,
        tenant,
        commands.UpdatePost(
            post_id=post_id,
            paths=paths,
            content=changes.content,
            media_urls=changes.media_urls,
            media_ids=changes.media_ids,
            campaign=changes.campaign,
            tags=changes.tags,
            notes=changes.notes,
            stale_after=changes.stale_after,
            approval_required=changes.approval_required,
            targets=changes.targets,
        ),
    )


async def delete_series(
    app: Application, tenant: str, series_id: str, scope: str, post_id: str
) -> int:
    """Delete one occurrence, this and the following ones, or the whole series; returns how
    many unpublished occurrences were cancelled."""
    violations: list[FieldViolation] = []
    _scope(scope, post_id, violations)
    if violations:
        raise errors.InvalidArgument.collect(violations)
    now = app.clock()
    async with app.uow() as uow:
        series = await _locked(uow, tenant, series_id)
        current = recurrence_of(series)
        cancelled = 0
        if scope == "all":
            occurrences = await _occurrences(uow, series)
            kept = _cancel_changeable(uow, occurrences, now)
            cancelled = len(occurrences) - len(kept)
            series.deleted_at = now
        else:
            post = await _occurrence(uow, series, post_id)
            assert post.occurrence_at is not None
            wall = _wall_of(current, post.occurrence_at)
            if scope == "this":
                _require_changeable(post, "delete")
                commands.cancel_post(uow, post, now)
                cancelled = 1
                _set_recurrence(series, current.without(wall))
            else:
                occurrences = await _occurrences(uow, series, from_instant=post.occurrence_at)
                kept = _cancel_changeable(uow, occurrences, now)
                cancelled = len(occurrences) - len(kept)
                cut = current.ending_before(wall)
                _set_recurrence(series, cut)
                if not cut.first(1):
                    series.deleted_at = now  # from its first occurrence on: the whole series
        series.updated_at = now
        await uow.commit()
    return cancelled


async def pause_series(app: Application, tenant: str, series_id: str) -> Series:
    """No new occurrences; the unpublished future ones are cancelled."""
    now = app.clock()
    async with app.uow() as uow:
        series = await _locked(uow, tenant, series_id)
        if series.status != PAUSED:
            _cancel_changeable(uow, await _occurrences(uow, series, from_instant=now), now)
            series.status = PAUSED
            series.updated_at = now
            await uow.commit()
        return series


async def resume_series(app: Application, tenant: str, series_id: str) -> Series:
    """Occurrences again, from now on (those that fell while paused are not made up)."""
    now = app.clock()
    async with app.uow() as uow:
        series = await _locked(uow, tenant, series_id)
        records: list[PostRecord] = []
        if series.status != ACTIVE:
            violations: list[FieldViolation] = []
            await _checked_template(app, uow, tenant, template_of(series), violations)
            if violations:
                raise errors.FailedPrecondition(
                    "cannot resume: " + "; ".join(f"{v.field}: {v.description}" for v in violations)
                )
            series.status = ACTIVE
            series.status_reason = ""
            # From now: what pausing cancelled comes back, what fell meanwhile does not.
            series.materialised_until = now
            series.updated_at = now
            records = await _materialise(app, uow, series, now)
            await uow.commit()
    for record in records:
        wake_if_due_soon(app, record, now)
    return series
