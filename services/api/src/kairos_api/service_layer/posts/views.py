"""What clients read of posts: one post (GetPost), a page of them (ListPosts).

Both answer with messages (`messages.PostMessage`) that protobuf builds in C. On PostgreSQL each
is one statement that writes the messages as JSON; on SQLite the records are read with
SQLAlchemy Core and made into messages in Python.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Select, and_, exists, literal_column, or_, select

from kairos_api.adapters.orm import Post, PostTag, Target
from kairos_api.domain.model import PostStatus
from kairos_api.service_layer.application import Application
from kairos_api.service_layer.posts.messages import PostMessage, message_of, post_json
from kairos_api.service_layer.posts.page_tokens import Cursor, decode_token, encode_token
from kairos_api.service_layer.posts.records import (
    LIVE_POST_WITH_ATTEMPTS,
    POST_COLUMNS,
    POSTS,
    post_records,
    post_with_attempts,
)
from kairos_api.service_layer.posts.rules import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, parse_id
from kairos_common import errors
from kairos_common.errors import FieldViolation
from kairos_common.platforms import Platform


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


#: GetPost on PostgreSQL: the post, its targets and their attempts, as one JSON value.
GET_POST_SQL = f"""
SELECT {post_json(with_attempts=True)}
FROM posts
WHERE posts.id = %(post_id)s AND posts.tenant_id = %(tenant)s AND posts.deleted_at IS NULL
"""
#: A page of ListPosts on PostgreSQL: each post with its targets, as one JSON value. Being
#: costly, it is computed after the sort and the limit, for the page's posts only.
_LISTED_POST = literal_column(post_json(with_attempts=False), JSON)
#: What a page's next token is made of, ahead of each post.
_PAGE_KEYS = [POSTS.c.id, POSTS.c.created_at, POSTS.c.scheduled_at]


async def get_post(app: Application, tenant: str, post_id: str) -> PostMessage:
    """One post with its targets and every attempt."""
    ident = parse_id(post_id, "post_id")
    found: PostMessage | None = None
    values = {"post_id": ident, "tenant": tenant}
    if app.reads is not None:
        for (message,) in await app.reads.fetchall(GET_POST_SQL, values):
            found = message
    else:
        async with app.uow() as uow:
            connection = await uow.session.connection()
            query = LIVE_POST_WITH_ATTEMPTS
            rows = (await connection.execute(query, values)).all()
        if rows:
            found = message_of(post_with_attempts(rows), with_attempts=True)
    if found is None:
        raise errors.NotFound(f"post {post_id} not found")
    return found


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


async def list_posts(
    app: Application, tenant: str, command: ListPosts
) -> tuple[list[PostMessage], str]:
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

    query: Select[Any] = select(*_PAGE_KEYS).where(
        Post.tenant_id == tenant, Post.deleted_at.is_(None)
    )
    if command.statuses:
        query = query.where(Post.status.in_([s.value for s in command.statuses]))
    if command.platforms:
        query = query.where(
            exists().where(
                Target.post_id == Post.id,
                # The (tenant_id, platform, status) index finds a seldom used platform's few.
                Target.tenant_id == tenant,
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
        decode_token(command.page_token, fingerprint, command.order) if command.page_token else None
    )
    query = _order_and_seek(query, command.order, cursor).limit(size + 1)
    async with app.uow() as uow:
        connection = await uow.session.connection()
        if uow.on_postgresql:
            rows = (await connection.execute(query.add_columns(_LISTED_POST))).all()
            page = [row[3] for row in rows[:size]]
        else:
            rows = (await connection.execute(query.add_columns(*POST_COLUMNS))).all()
            records = await post_records(connection, [row[3:] for row in rows[:size]])
            page = [message_of(record, with_attempts=False) for record in records]
    token = ""
    if len(rows) > size:
        last_id, created_at, scheduled_at = rows[size - 1][:3]
        at = scheduled_at if command.order == "scheduled_soonest" else created_at
        token = encode_token(fingerprint, Cursor(at, last_id))
    return page, token


def _order_and_seek(query: Select[Any], order: str, cursor: Cursor | None) -> Select[Any]:
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
