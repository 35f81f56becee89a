"""What clients see of a post, as records read with SQLAlchemy Core rather than the ORM.

CreatePost answers with the record of what it wrote, and SQLite reads them for GetPost and
ListPosts (PostgreSQL writes those answers itself, see `convert.post_json`). Loading ORM objects
costs several times more CPU than the rows themselves. The records carry what
`convert.post_message` shows, with the same field names as the ORM rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from kairos_api.adapters.orm import Attempt, Post, PostMedia, PostTag, Target

POSTS = cast(Table, Post.__table__)
TARGETS = cast(Table, Target.__table__)
TAGS = cast(Table, PostTag.__table__)
ATTEMPTS = cast(Table, Attempt.__table__)
POST_MEDIA = cast(Table, PostMedia.__table__)


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
    media_ids: list[str]
    series_id: uuid.UUID | None = None
    targets: list[TargetRecord] = field(default_factory=list)


POST_COLUMNS = [POSTS.c[name] for name in PostRecord.__dataclass_fields__ if name != "targets"]
_TARGET_COLUMNS = [
    TARGETS.c[name] for name in TargetRecord.__dataclass_fields__ if name != "attempts"
]
_ATTEMPT_COLUMNS = [ATTEMPTS.c[name] for name in AttemptRecord.__dataclass_fields__]
# One shape each, so SQLAlchemy compiles them once; the ids go in an expanding parameter.
_TARGETS_OF_POSTS = (
    select(TARGETS.c.post_id, *_TARGET_COLUMNS)
    .where(TARGETS.c.post_id.in_(bindparam("post_ids", expanding=True)))
    .order_by(TARGETS.c.post_id, TARGETS.c.id)
)
# GetPost in one round trip: the post's columns repeat on each of its target's attempt rows.
LIVE_POST_WITH_ATTEMPTS = (
    select(*POST_COLUMNS, *_TARGET_COLUMNS, *_ATTEMPT_COLUMNS)
    .select_from(POSTS)
    .outerjoin(TARGETS, TARGETS.c.post_id == POSTS.c.id)
    .outerjoin(ATTEMPTS, ATTEMPTS.c.target_id == TARGETS.c.id)
    .where(
        POSTS.c.id == bindparam("post_id"),
        POSTS.c.tenant_id == bindparam("tenant"),
        POSTS.c.deleted_at.is_(None),
    )
    .order_by(TARGETS.c.id, ATTEMPTS.c.number)
)


# Rows are built positionally from the columns above, which mypy cannot follow through `*row`.
_attempt_record = cast("Callable[..., AttemptRecord]", AttemptRecord)
_target_record = cast("Callable[..., TargetRecord]", TargetRecord)
_post_record = cast("Callable[..., PostRecord]", PostRecord)


async def post_records(
    connection: AsyncConnection, post_rows: Sequence[Sequence[Any]]
) -> list[PostRecord]:
    """Records of the posts in `post_rows` (the values of `POST_COLUMNS`, the id first), in the
    same order."""
    if not post_rows:
        return []
    targets: dict[uuid.UUID, list[TargetRecord]] = {row[0]: [] for row in post_rows}
    result = await connection.execute(_TARGETS_OF_POSTS, {"post_ids": list(targets)})
    for row in result:
        targets[row[0]].append(_target_record(*row[1:], []))
    return [_post_record(*row, targets[row[0]]) for row in post_rows]


def post_with_attempts(rows: Sequence[Row[Any]]) -> PostRecord:
    """The record of one post from the rows of `LIVE_POST_WITH_ATTEMPTS`."""
    target_at = len(POST_COLUMNS)
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
