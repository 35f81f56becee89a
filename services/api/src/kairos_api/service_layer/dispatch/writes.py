"""Writing what the stages decided: target changes, attempt outcomes, post statuses, events.

On PostgreSQL each kind of write is one `UPDATE ... FROM json_array_elements(<the rows as one
JSON text>)` (or `INSERT ... SELECT`) fragment, and a stage sends the fragments it needs as the
data-modifying CTEs of a single statement; on SQLite the same writes go through SQLAlchemy Core.
Either way one function decides the values.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update

from kairos_api.adapters import outbox
from kairos_api.adapters.orm import Attempt, OutboxEvent, Post, Target
from kairos_api.domain.delivery import TargetChange
from kairos_api.domain.model import PostStatus, TargetStatus, settled_status
from kairos_api.service_layer.unit_of_work import UnitOfWork

TARGETS = cast(Table, Target.__table__)
ATTEMPTS = cast(Table, Attempt.__table__)
POSTS = cast(Table, Post.__table__)
OUTBOX = cast(Table, OutboxEvent.__table__)

# Rows travel as one JSON text per table, each row an array: psycopg would quote the elements of
# a list parameter one by one in Python (about 14 µs a row for a target change), while the JSON
# encoder runs in C and PostgreSQL unpacks the rows itself (about 3 µs).
#
# Each UPDATE also names its rows' ids as an array. The planner guesses 100 rows for a JSON
# function and knows nothing of the rows written seconds ago (statistics lag a burst of creates),
# so joining on the JSON alone it may hash a scan of the whole table, once per batch; with the
# array it finds the rows through the primary key.

#: Target changes (`TargetChange`): a NULL error or publication keeps the current columns.
TARGETS_SQL = """
UPDATE targets AS t
SET status = g.status,
    next_attempt_at = g.next_attempt_at,
    delivery_id = g.delivery_id,
    delivery_revision = g.delivery_revision,
    lease_until = g.lease_until,
    last_error_class = coalesce(g.error_class, t.last_error_class),
    last_error_code = coalesce(g.error_code, t.last_error_code),
    last_error_message = coalesce(g.error_message, t.last_error_message),
    platform_post_id = coalesce(g.platform_post_id, t.platform_post_id),
    platform_url = coalesce(g.platform_url, t.platform_url),
    published_at = coalesce(g.published_at, t.published_at),
    updated_at = %(now)s
FROM (
    SELECT (v->>0)::uuid AS id, v->>1 AS status, (v->>2)::timestamptz AS next_attempt_at,
           (v->>3)::uuid AS delivery_id, (v->>4)::bigint AS delivery_revision,
           (v->>5)::timestamptz AS lease_until, v->>6 AS error_class, v->>7 AS error_code,
           v->>8 AS error_message, v->>9 AS platform_post_id, v->>10 AS platform_url,
           (v->>11)::timestamptz AS published_at
    FROM json_array_elements(%(targets)s::json) AS v
) AS g
WHERE t.id = g.id AND t.id = ANY(string_to_array(%(target_ids)s, ',')::uuid[])
"""

#: Post statuses that settled.
POSTS_SQL = """
UPDATE posts AS p
SET status = g.status, updated_at = %(now)s
FROM (
    SELECT (v->>0)::uuid AS id, v->>1 AS status FROM json_array_elements(%(posts)s::json) AS v
) AS g
WHERE p.id = g.id AND p.id = ANY(string_to_array(%(post_ids)s, ',')::uuid[])
"""

#: Lifecycle events (`outbox.lifecycle_row` values), relayed once committed.
OUTBOX_SQL = outbox.INSERT_SQL

#: Attempt outcomes (`AttemptDone`).
ATTEMPTS_SQL = """
UPDATE attempts AS x
SET finished_at = %(now)s,
    published = g.published,
    http_status = g.http_status,
    error_class = g.error_class,
    error_code = g.error_code,
    message = g.message,
    latency_ms = g.latency_ms
FROM (
    SELECT (v->>0)::uuid AS id, (v->>1)::boolean AS published, (v->>2)::int AS http_status,
           v->>3 AS error_class, v->>4 AS error_code, v->>5 AS message,
           (v->>6)::int AS latency_ms
    FROM json_array_elements(%(attempts)s::json) AS v
) AS g
WHERE x.id = g.id AND x.id = ANY(string_to_array(%(attempt_ids)s, ',')::uuid[])
"""


def ids_text(ids: Iterable[str]) -> str:
    """Ids for `= ANY(string_to_array(%s, ',')::uuid[])`: UUIDs hold no comma, and one joined
    string costs a fraction of a list parameter."""
    return ",".join(ids)


_instant = outbox.instant_text


@dataclass(frozen=True, slots=True)
class AttemptDone:
    """What one attempt's row records when its outcome is reported."""

    attempt_id: str
    published: bool
    http_status: int
    error_class: str
    error_code: str
    message: str
    latency_ms: int | None


@dataclass
class Writes:
    """Everything one stage writes in one transaction."""

    now: datetime
    changes: list[TargetChange] = field(default_factory=list)
    attempts: list[AttemptDone] = field(default_factory=list)
    #: Post id → its settled status.
    posts: dict[str, PostStatus] = field(default_factory=dict)
    #: `outbox.lifecycle_row` values.
    events: list[dict[str, Any]] = field(default_factory=list)

    def event(self, event_type: str, **values: Any) -> None:
        self.events.append(outbox.lifecycle_row(event_type, now=self.now, **values))

    def postgresql_statement(
        self, final: str = "SELECT 1", **extra: Any
    ) -> tuple[str, dict[str, Any]]:
        """The writes as one statement of data-modifying CTEs ending in `final` (whose own
        parameters are `extra`), and its parameters; fragments with nothing to write are left
        out."""
        parts: list[str] = []
        parameters: dict[str, Any] = {"now": self.now, **extra}
        if self.attempts:
            parts.append(ATTEMPTS_SQL)
            parameters["attempt_ids"] = ids_text(done.attempt_id for done in self.attempts)
            parameters["attempts"] = json.dumps(
                [
                    (
                        done.attempt_id,
                        done.published,
                        done.http_status,
                        done.error_class,
                        done.error_code,
                        done.message,
                        done.latency_ms,
                    )
                    for done in self.attempts
                ]
            )
        if self.changes:
            parts.append(TARGETS_SQL)
            parameters["target_ids"] = ids_text(change.target_id for change in self.changes)
            parameters["targets"] = json.dumps([_target_row(change) for change in self.changes])
        if self.posts:
            parts.append(POSTS_SQL)
            parameters["post_ids"] = ids_text(self.posts)
            parameters["posts"] = json.dumps(
                [(post_id, status.value) for post_id, status in self.posts.items()]
            )
        if self.events:
            parts.append(OUTBOX_SQL)
            parameters["events"] = outbox.rows_json(self.events)
        if not parts:
            return final, parameters
        ctes = ",\n".join(f"w{number} AS ({part})" for number, part in enumerate(parts))
        return f"WITH {ctes}\n{final}", parameters

    async def apply(self, uow: UnitOfWork, final: str = "SELECT 1", **extra: Any) -> Any:
        """Write everything; on PostgreSQL in one statement, whose `final` query's first value
        is returned (None on SQLite, where the caller asks separately)."""
        if uow.on_postgresql:
            if self.events:
                uow.events_written()  # the statement writes the outbox rows itself
            statement, parameters = self.postgresql_statement(final, **extra)
            connection = await uow.psycopg()
            cursor = await connection.execute(statement, parameters)
            row = await cursor.fetchone()
            return None if row is None else row[0]
        await self._apply_with_core(uow)
        return None

    async def _apply_with_core(self, uow: UnitOfWork) -> None:
        connection = await uow.session.connection()
        if self.attempts:
            await connection.execute(
                update(ATTEMPTS)
                .where(ATTEMPTS.c.id == bindparam("b_id"))
                .values(
                    finished_at=self.now,
                    published=bindparam("b_published"),
                    http_status=bindparam("b_http"),
                    error_class=bindparam("b_class"),
                    error_code=bindparam("b_code"),
                    message=bindparam("b_message"),
                    latency_ms=bindparam("b_latency"),
                ),
                [
                    {
                        "b_id": uuid.UUID(done.attempt_id),
                        "b_published": done.published,
                        "b_http": done.http_status,
                        "b_class": done.error_class,
                        "b_code": done.error_code,
                        "b_message": done.message,
                        "b_latency": done.latency_ms,
                    }
                    for done in self.attempts
                ],
            )
        for change in self.changes:
            values: dict[str, Any] = {
                "status": change.status.value,
                "next_attempt_at": change.next_attempt_at,
                "delivery_id": uuid.UUID(change.delivery_id) if change.delivery_id else None,
                "delivery_revision": change.delivery_revision,
                "lease_until": change.lease_until,
                "updated_at": self.now,
            }
            if change.last_error is not None:
                klass, code, message = change.last_error
                values.update(
                    last_error_class=klass, last_error_code=code, last_error_message=message
                )
            if change.published is not None:
                platform_post_id, url, at = change.published
                values.update(platform_post_id=platform_post_id, platform_url=url, published_at=at)
            await connection.execute(
                update(TARGETS).where(TARGETS.c.id == uuid.UUID(change.target_id)).values(values)
            )
        for post_id, status in self.posts.items():
            await connection.execute(
                update(POSTS)
                .where(POSTS.c.id == uuid.UUID(post_id))
                .values(status=status.value, updated_at=self.now)
            )
        await uow.emit_rows(self.events)


def _target_row(change: TargetChange) -> tuple[Any, ...]:
    klass, code, message = change.last_error or (None, None, None)
    platform_post_id, url, at = change.published or (None, None, None)
    return (
        change.target_id,
        change.status.value,
        _instant(change.next_attempt_at),
        change.delivery_id,
        change.delivery_revision,
        _instant(change.lease_until),
        klass,
        code,
        message,
        platform_post_id,
        url,
        _instant(at),
    )


# --- settling posts -------------------------------------------------------------------------

SIBLINGS_SQL = """
SELECT post_id::text, id::text, status FROM targets
WHERE post_id = ANY(string_to_array(%(posts)s, ',')::uuid[])
"""


async def target_statuses(uow: UnitOfWork, post_ids: Iterable[str]) -> dict[str, dict[str, str]]:
    """Post id → {target id: status} of every target of these posts, as committed now (read
    after the posts were locked, so no other transaction changes them meanwhile)."""
    wanted = list(post_ids)
    found: dict[str, dict[str, str]] = {post_id: {} for post_id in wanted}
    if not wanted:
        return found
    if uow.on_postgresql:
        connection = await uow.psycopg()
        cursor = await connection.execute(SIBLINGS_SQL, {"posts": ids_text(wanted)})
        rows: Iterable[tuple[Any, ...]] = await cursor.fetchall()
    else:
        result = await uow.session.execute(
            select(Target.post_id, Target.id, Target.status).where(
                Target.post_id.in_([uuid.UUID(post_id) for post_id in wanted])
            )
        )
        rows = [(str(post_id), str(target_id), status) for post_id, target_id, status in result]
    for post_id, target_id, status in rows:
        found[post_id][target_id] = status
    return found


def settled_statuses(
    current: Mapping[str, str],
    targets: Mapping[str, Mapping[str, str]],
    changes: Iterable[TargetChange],
) -> dict[str, PostStatus]:
    """The posts whose status changes once `changes` are written: post id → its new status.

    `current` is each touched post's status, `targets` each one's targets with their statuses
    before the changes. A post with a target still on its way stays as it is (PUBLISHING or
    SCHEDULED, until an attempt begins).
    """
    after = {change.target_id: change.status.value for change in changes}
    settled: dict[str, PostStatus] = {}
    for post_id, status in current.items():
        statuses = [
            TargetStatus(after.get(target_id, target_status))
            for target_id, target_status in targets.get(post_id, {}).items()
        ]
        new = settled_status(status, statuses)
        if new is not None:
            settled[post_id] = new
    return settled
