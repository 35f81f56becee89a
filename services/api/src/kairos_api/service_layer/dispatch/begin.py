"""Begin: the fence. An attempt begins only for a delivery that is still its target's current
one, at the post's current revision, on an active account; its intent is recorded before the
publisher may call the platform.

One read locks the deliveries' posts and targets (in id order, as every stage that settles posts
does, so they never deadlock) and returns what the fence and the publisher need; the fence is
decided in Python (`domain.delivery.fence`); one statement then marks the targets PUBLISHING,
inserts the attempts and moves the posts to PUBLISHING. Refused deliveries that change their
target (stale, disconnected, rate-limited, paused) are written with their events and settle
their posts in the same transaction.

A begun attempt carries its post's uploaded files (`StoredMedia`), read by the same statement
only for posts that name any: what the publisher checks the bytes by and where they are kept,
and for a platform that pulls media by URL a presigned URL instead of the bytes.

A begin may carry a key the publisher drew for one handling of a due event, stored on the
attempt it began. When that answer is lost (the api died, PostgreSQL failed over) the publisher
asks again with the same key: a target that is PUBLISHING for the same delivery, whose open
attempt holds that key, is answered with that attempt again and nothing is written (refused
once its lease has run out, when the sweeper may settle it any moment, or when the post was
edited since). Without the
key the second begin would be refused (the target is no longer QUEUED), nobody would call the
platform, and the sweeper would settle the target UNKNOWN once its lease ran out.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, insert, or_, select, update
from sqlalchemy.orm import aliased

from kairos_api.adapters.crypto import CredentialDecryptError
from kairos_api.adapters.orm import Account, Attempt, Media, Post, PostMedia, Target, new_id
from kairos_api.domain.delivery import END_EVENTS, FenceVerdict, ended, fence
from kairos_api.domain.model import ErrorClass, PostStatus, TargetStatus
from kairos_api.service_layer.accounts import StoredCredentials, open_credentials
from kairos_api.service_layer.application import Application
from kairos_api.service_layer.dispatch.records import MAX_BATCH, Begun, Refused, StoredMedia
from kairos_api.service_layer.dispatch.writes import (
    ATTEMPTS,
    POSTS,
    TARGETS,
    Writes,
    ids_text,
    settled_statuses,
    target_statuses,
)
from kairos_api.service_layer.unit_of_work import UnitOfWork
from kairos_common import errors
from kairos_common.platforms import CATALOGUE, Platform

#: The deliveries' targets with their posts, accounts and attempt history, locked.
READ_SQL = """
SELECT t.delivery_id::text, t.id::text, t.post_id::text, t.account_id::text, t.platform,
       t.status, t.delivery_revision, t.stale_at, t.next_attempt_at, t.due_at,
       t.content_override, t.settings,
       p.tenant_id, p.status, p.revision, p.deleted_at IS NOT NULL, p.content, p.media_urls,
       a.status, a.blocked_until, a.handle, a.credentials,
       h.last_number, coalesce(h.lost, false),
       t.lease_until, o.id::text, o.number, o.begin_key::text, coalesce(o.lost_before, false),
       CASE WHEN p.parent_post_id IS NOT NULL THEN
           (SELECT parent.platform_post_id FROM targets AS parent
            WHERE parent.post_id = p.parent_post_id AND parent.account_id = t.account_id
              AND parent.status = 'published')
       END,
       CASE WHEN json_array_length(p.media_ids) > 0 THEN
           (SELECT json_agg(json_build_array(m.id::text, m.kind, m.content_type, m.size,
                                             m.sha256, m.storage_key, m.width, m.height,
                                             m.duration_seconds) ORDER BY pm.position)
            FROM post_media AS pm JOIN media AS m ON m.id = pm.media_id
            WHERE pm.post_id = p.id)
       END
FROM targets AS t
JOIN posts AS p ON p.id = t.post_id
JOIN accounts AS a ON a.id = t.account_id
LEFT JOIN LATERAL (
    SELECT max(x.number) AS last_number,
           bool_or(x.finished_at IS NULL OR x.error_class = 'unknown') AS lost
    FROM attempts AS x
    WHERE x.target_id = t.id
) AS h ON true
LEFT JOIN LATERAL (
    SELECT y.id, y.number, y.begin_key,
           EXISTS (SELECT 1 FROM attempts AS z
                   WHERE z.target_id = t.id AND z.number < y.number
                     AND (z.finished_at IS NULL OR z.error_class = 'unknown')) AS lost_before
    FROM attempts AS y
    WHERE y.target_id = t.id AND y.finished_at IS NULL AND t.status = 'publishing'
    ORDER BY y.number DESC
    LIMIT 1
) AS o ON true
WHERE t.delivery_id = ANY(string_to_array(%(deliveries)s, ',')::uuid[])
ORDER BY p.id, t.id
FOR UPDATE OF t, p
"""

#: Begin the attempts that passed the fence.
BEGIN_SQL = """
WITH began AS (
    UPDATE targets
    SET status = 'publishing', attempt_count = attempt_count + 1,
        lease_until = %(lease_until)s, updated_at = %(now)s
    WHERE id = ANY(string_to_array(%(targets)s, ',')::uuid[])
), started AS (
    UPDATE posts
    SET status = 'publishing', updated_at = %(now)s
    WHERE id = ANY(string_to_array(%(posts)s, ',')::uuid[])
)
INSERT INTO attempts (id, target_id, number, delivery_id, started_at, published, http_status,
                      error_class, error_code, message, begin_key)
SELECT (v->>0)::uuid, (v->>1)::uuid, (v->>2)::int, (v->>3)::uuid, %(now)s, false, 0, '', '', '',
       (v->>4)::uuid
FROM json_array_elements(%(attempts)s::json) AS v
"""

#: Post statuses a first begun attempt moves to PUBLISHING. The fence read locked the posts, so
#: the statuses it read hold; the update then names its posts by key alone, leaving the planner
#: no status index to prefer while its statistics lag a burst.
STARTING = frozenset({PostStatus.SCHEDULED.value, PostStatus.PENDING_APPROVAL.value})

#: How long a presigned media URL outlives the attempt's lease: a platform may fetch the file
#: after it answered (a container processed later, an embed rendered when first shown).
PRESIGNED_MARGIN = timedelta(hours=1)

SUPERSEDED = Refused("superseded", "the delivery was replaced by a newer one or withdrawn")

#: The longest begin key taken (it is stored as a 16-byte digest: `_digest`); the publisher's
#: are 32 hex digits.
MAX_BEGIN_KEY = 64


async def begin_attempt(app: Application, delivery_id: str, begin_key: str = "") -> Begun | Refused:
    """The fence for one delivery; see `begin_attempts`. A malformed id is the caller's error."""
    if _canonical(delivery_id) is None:
        raise errors.InvalidArgument.of("delivery_id", "is not a valid id")
    _check_key(begin_key, "begin_key")
    return (await begin_attempts(app, [delivery_id], [begin_key]))[0]


async def begin_attempts(
    app: Application, delivery_ids: Sequence[str], begin_keys: Sequence[str] = ()
) -> list[Begun | Refused]:
    """The fence for many deliveries, in one transaction; one result per id, in order.
    `begin_keys` is empty or holds one key per id ('' for none).

    A malformed id, or one named a second time, is refused on its own: one bad event must not
    hold back the good ones batched with it. A malformed key is the caller's error: the
    publisher draws them, so one that is wrong is a bug there, not a bad event.
    """
    if len(delivery_ids) > MAX_BATCH:
        raise errors.InvalidArgument.of("delivery_ids", f"at most {MAX_BATCH} per call")
    if begin_keys and len(begin_keys) != len(delivery_ids):
        raise errors.InvalidArgument.of(
            "begin_keys", "must be empty or hold one key per delivery id"
        )
    for index, key in enumerate(begin_keys):
        _check_key(key, f"begin_keys[{index}]")
    results: list[Begun | Refused | None] = [None] * len(delivery_ids)
    positions: dict[str, int] = {}
    for index, value in enumerate(delivery_ids):
        canonical = _canonical(value)
        if canonical is None:
            results[index] = Refused("superseded", f"{value[:64]!r} is not a valid delivery id")
        elif canonical in positions:
            results[index] = Refused(
                "superseded", "the delivery was named twice in one call; only the first counts"
            )
        else:
            positions[canonical] = index
    if positions:
        keys = {
            d: _digest(begin_keys[i]) for d, i in positions.items() if begin_keys and begin_keys[i]
        }
        begun = await _begin(app, positions, keys)
        for canonical, index in positions.items():
            results[index] = begun.get(canonical, SUPERSEDED)
    return [result for result in results if result is not None]


def _check_key(key: str, field: str) -> None:
    """InvalidArgument on `field` unless the key is at most MAX_BEGIN_KEY printable ASCII
    characters (empty is none)."""
    if len(key) > MAX_BEGIN_KEY:
        raise errors.InvalidArgument.of(field, f"must be at most {MAX_BEGIN_KEY} characters")
    # str methods, not a loop over characters: this runs for every key of every batch.
    if not (key.isascii() and key.isprintable() and " " not in key):
        raise errors.InvalidArgument.of(field, "must be printable ASCII without spaces")


def _digest(key: str) -> str:
    """What an attempt stores of its begin key: 128 bits of its SHA-256, as an id. The column
    stays as narrow as an id, because while a burst runs ahead of the statistics the planner
    guesses how many attempts there are from their width (tests/integration/api/
    test_claim_plan.py: a 64-character column turned the completion's update into a
    sequential scan); two keys that share a digest are not a risk worth a wider row."""
    return str(uuid.UUID(bytes=hashlib.sha256(key.encode()).digest()[:16]))


def _canonical(value: str) -> str | None:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


async def _begin(
    app: Application, deliveries: dict[str, int], keys: dict[str, str]
) -> dict[str, Begun | Refused]:
    """`begin_attempts` for well-formed, distinct delivery ids, with their begin keys where
    given: delivery id → its result (none for a delivery that no target has, which is
    superseded)."""
    now = app.clock()
    lease_until = now + app.settings.attempt_lease
    results: dict[str, Begun | Refused] = {}
    writes = Writes(now)
    touched: dict[str, str] = {}  # posts whose targets a refusal changed → their status
    credentials: dict[str, StoredCredentials | str] = {}
    began_targets: list[str] = []
    began_posts: set[str] = set()
    attempts: list[str] = []
    numbers: list[int] = []
    began_deliveries: list[str] = []
    began_keys: list[str | None] = []
    async with app.uow() as uow:
        for row in await _read(uow, list(deliveries)):
            (
                delivery_id,
                target_id,
                post_id,
                account_id,
                platform,
                target_status,
                delivery_revision,
                stale_at,
                next_attempt_at,
                due_at,
                content_override,
                settings,
                tenant_id,
                post_status,
                revision,
                deleted,
                content,
                media_urls,
                account_status,
                blocked_until,
                handle,
                sealed,
                last_number,
                lost,
                lease_held_until,
                open_attempt,
                open_number,
                open_key,
                lost_before,
                reply_to,
                stored,
            ) = row
            key = keys.get(delivery_id)
            # Asked again under the key of the attempt it began (its answer was lost): the same
            # attempt, nothing written.
            resumed = bool(
                key
                and open_key == key
                and target_status == TargetStatus.PUBLISHING
                and open_attempt is not None
            )
            refused: Refused | None = None
            verdict: FenceVerdict | None = None
            if resumed:
                if deleted or revision != delivery_revision:
                    refused = Refused(
                        "revision_changed",
                        f"the post is at revision {revision}, the attempt began for "
                        f"{delivery_revision}",
                    )
                elif lease_held_until is None or lease_held_until <= now:
                    refused = Refused("not_queued", "the attempt's lease has run out")
            else:
                verdict = fence(
                    target_id=target_id,
                    target_status=target_status,
                    delivery_revision=delivery_revision,
                    post_revision=revision,
                    post_deleted=deleted,
                    stale_at=stale_at,
                    next_attempt_at=next_attempt_at,
                    account_status=account_status,
                    blocked_until=blocked_until,
                    now=now,
                )
            if refused is None and verdict is None:
                if account_id not in credentials:
                    credentials[account_id] = _open(app, account_id, sealed)
                secret = credentials[account_id]
                if isinstance(secret, str) and resumed:
                    refused = Refused(
                        "account_inactive", "the account's credentials cannot be read"
                    )
                elif isinstance(secret, str):
                    verdict = FenceVerdict(
                        "account_inactive",
                        "the account's credentials cannot be read",
                        ended(target_id, TargetStatus.FAILED, secret),
                    )
            if refused is not None:
                results[delivery_id] = refused
                continue
            if verdict is not None:
                results[delivery_id] = Refused(verdict.rejection, verdict.reason)
                if verdict.change is not None:
                    writes.changes.append(verdict.change)
                    touched[post_id] = post_status
                    event = END_EVENTS.get(verdict.change.status)
                    if event is not None:
                        assert verdict.change.last_error is not None
                        writes.event(
                            event,
                            tenant_id=tenant_id,
                            post_id=post_id,
                            post_status=PostStatus(post_status),
                            revision=revision,
                            target_id=target_id,
                            target_status=verdict.change.status,
                            account_id=account_id,
                            detail=verdict.change.last_error[2][:1000],
                        )
                continue
            assert not isinstance(secret, str)
            if resumed:
                attempt_id, number = open_attempt, open_number
                held_until, lost_earlier = lease_held_until, lost_before
            else:
                attempt_id = str(new_id())
                number = (last_number or 0) + 1
                held_until, lost_earlier = lease_until, lost
                began_targets.append(target_id)
                if post_status in STARTING:
                    began_posts.add(post_id)
                attempts.append(attempt_id)
                numbers.append(number)
                began_deliveries.append(delivery_id)
                began_keys.append(key)
            results[delivery_id] = Begun(
                attempt_id=attempt_id,
                attempt_number=number,
                target_id=target_id,
                post_id=post_id,
                account_id=account_id,
                account_handle=handle,
                platform=platform,
                due_at=due_at or now,
                content=content if content_override is None else content_override,
                media_urls=list(media_urls),
                settings=dict(settings),
                credentials=secret,
                reply_to_platform_id=reply_to or "",
                idempotency_key=f"kairos-{target_id}",
                lease=held_until - now,
                earlier_outcome_lost=bool(lost_earlier),
                stored_media=await _stored_media(app, platform, stored) if stored else [],
            )
        if began_targets:
            await _write_begun(
                uow,
                now=now,
                lease_until=lease_until,
                targets=began_targets,
                posts=sorted(began_posts),
                attempts=attempts,
                numbers=numbers,
                deliveries=began_deliveries,
                keys=began_keys,
            )
        if writes.changes:
            siblings = await target_statuses(uow, touched)
            writes.posts = settled_statuses(touched, siblings, writes.changes)
            await writes.apply(uow)
        await uow.commit()
    return results


async def _stored_media(
    app: Application, platform: str, rows: list[list[Any]]
) -> list[StoredMedia]:
    """The post's files as the publisher needs them; a presigned URL each for a platform that
    pulls media of that kind by URL, valid through the attempt's lease and `PRESIGNED_MARGIN`
    beyond it (a platform that takes a video's bytes gets none for the video)."""
    info = CATALOGUE[Platform(platform)]
    expires_in = app.settings.attempt_lease + PRESIGNED_MARGIN
    found: list[StoredMedia] = []
    for media_id, kind, content_type, size, sha256, key, width, height, duration in rows:
        url = ""
        if info.pulls_by_url(str(kind).lower()):
            url = await app.media.presigned_url(key, expires_in) or ""
        found.append(
            StoredMedia(
                media_id, kind, content_type, size, sha256, key, url, width, height, duration
            )
        )
    return found


def _open(app: Application, account_id: str, sealed: bytes | None) -> StoredCredentials | str:
    """The account's credentials in clear, or why they cannot be read (none stored, a key
    missing from KAIROS_SECRET_KEY, damage); the reason never holds any part of a secret."""
    try:
        return open_credentials(app, account_id, sealed)
    except (errors.FailedPrecondition, CredentialDecryptError) as error:
        return str(error)


async def _read(uow: UnitOfWork, deliveries: list[str]) -> Sequence[Sequence[Any]]:
    if uow.on_postgresql:
        connection = await uow.psycopg()
        cursor = await connection.execute(READ_SQL, {"deliveries": ids_text(deliveries)})
        return await cursor.fetchall()
    return await _read_on_sqlite(uow, deliveries)


_Parent = aliased(Target, name="parent")
_Open = aliased(Attempt, name="open_attempt")

#: Where the open attempt's id sits in a row of READ_SQL (as text, as PostgreSQL gives it).
OPEN_ATTEMPT = 25
#: And its begin key's digest.
OPEN_KEY = 27


def _of_open_attempt(column: Any) -> Any:
    """One column of a PUBLISHING target's open attempt (its latest unfinished one)."""
    return (
        select(column)
        .where(
            _Open.target_id == Target.id,
            _Open.finished_at.is_(None),
            Target.status == TargetStatus.PUBLISHING.value,
        )
        .order_by(_Open.number.desc())
        .limit(1)
        .scalar_subquery()
    )


async def _read_on_sqlite(uow: UnitOfWork, deliveries: list[str]) -> list[list[Any]]:
    """READ_SQL for SQLite, whose one writer at a time needs no row locks; the same row shape."""
    last_number = (
        select(func.max(Attempt.number)).where(Attempt.target_id == Target.id).scalar_subquery()
    )
    lost = exists().where(
        Attempt.target_id == Target.id,
        or_(Attempt.finished_at.is_(None), Attempt.error_class == ErrorClass.UNKNOWN.value),
    )
    open_number = _of_open_attempt(_Open.number)
    lost_before = exists().where(
        Attempt.target_id == Target.id,
        Attempt.number < open_number,
        or_(Attempt.finished_at.is_(None), Attempt.error_class == ErrorClass.UNKNOWN.value),
    )
    reply = (
        select(_Parent.platform_post_id)
        .where(
            _Parent.post_id == Post.parent_post_id,
            _Parent.account_id == Target.account_id,
            _Parent.status == TargetStatus.PUBLISHED.value,
        )
        .scalar_subquery()
    )
    result = await uow.session.execute(
        select(
            Target.delivery_id,
            Target.id,
            Target.post_id,
            Target.account_id,
            Target.platform,
            Target.status,
            Target.delivery_revision,
            Target.stale_at,
            Target.next_attempt_at,
            Target.due_at,
            Target.content_override,
            Target.settings,
            Post.tenant_id,
            Post.status,
            Post.revision,
            Post.deleted_at.is_not(None),
            Post.content,
            Post.media_urls,
            Account.status,
            Account.blocked_until,
            Account.handle,
            Account.credentials,
            last_number,
            lost,
            Target.lease_until,
            _of_open_attempt(_Open.id),
            open_number,
            _of_open_attempt(_Open.begin_key),
            lost_before,
            reply,
            Post.media_ids,
        )
        .join(Post, Post.id == Target.post_id)
        .join(Account, Account.id == Target.account_id)
        .where(Target.delivery_id.in_([uuid.UUID(d) for d in deliveries]))
        .order_by(Post.id, Target.id)
    )
    rows = []
    for row in result.all():
        values = list(row)
        for index in (0, 1, 2, 3):
            values[index] = str(values[index])
        for index in (OPEN_ATTEMPT, OPEN_KEY):
            if values[index] is not None:
                values[index] = str(values[index])
        rows.append(values)
    with_media = {row[2] for row in rows if row[-1]}
    stored: dict[str, list[list[Any]]] = {}
    if with_media:
        files = await uow.session.execute(
            select(
                PostMedia.post_id,
                Media.id,
                Media.kind,
                Media.content_type,
                Media.size,
                Media.sha256,
                Media.storage_key,
                Media.width,
                Media.height,
                Media.duration_seconds,
            )
            .join(Media, Media.id == PostMedia.media_id)
            .where(PostMedia.post_id.in_([uuid.UUID(p) for p in with_media]))
            .order_by(PostMedia.post_id, PostMedia.position)
        )
        for post_id, media_id, *rest in files.all():
            stored.setdefault(str(post_id), []).append([str(media_id), *rest])
    for values in rows:
        values[-1] = stored.get(values[2])
    return rows


async def _write_begun(
    uow: UnitOfWork,
    *,
    now: datetime,
    lease_until: datetime,
    targets: list[str],
    posts: list[str],
    attempts: list[str],
    numbers: list[int],
    deliveries: list[str],
    keys: list[str | None],
) -> None:
    """Mark the targets PUBLISHING, record the attempts' intent (with their begin keys), move
    the posts to PUBLISHING."""
    if uow.on_postgresql:
        driver = await uow.psycopg()
        await driver.execute(
            BEGIN_SQL,
            {
                "now": now,
                "lease_until": lease_until,
                "targets": ids_text(targets),
                "posts": ids_text(posts),
                "attempts": json.dumps(
                    list(zip(attempts, targets, numbers, deliveries, keys, strict=True))
                ),
            },
        )
        return
    connection = await uow.session.connection()
    await connection.execute(
        update(TARGETS)
        .where(TARGETS.c.id.in_([uuid.UUID(t) for t in targets]))
        .values(
            status=TargetStatus.PUBLISHING.value,
            attempt_count=TARGETS.c.attempt_count + 1,
            lease_until=lease_until,
            updated_at=now,
        )
    )
    await connection.execute(
        update(POSTS)
        .where(POSTS.c.id.in_([uuid.UUID(p) for p in posts]))
        .values(status=PostStatus.PUBLISHING.value, updated_at=now)
    )
    await connection.execute(
        insert(ATTEMPTS),
        [
            {
                "id": uuid.UUID(attempt),
                "target_id": uuid.UUID(target),
                "number": number,
                "delivery_id": uuid.UUID(delivery),
                "started_at": now,
                "published": False,
                "http_status": 0,
                "error_class": "",
                "error_code": "",
                "message": "",
                "begin_key": None if key is None else uuid.UUID(key),
            }
            for attempt, target, number, delivery, key in zip(
                attempts, targets, numbers, deliveries, keys, strict=True
            )
        ],
    )
