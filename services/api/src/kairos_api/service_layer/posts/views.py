"""What clients read of posts: one post (GetPost), a page of them (ListPosts).

Both answer with messages (`convert.PostMessage`) that protobuf builds in C. On PostgreSQL each
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
from typing import Any, Final

from sqlalchemy import Select, and_, exists, or_, select

from kairos_api.adapters.convert import PostMessage, instant_of, post_json, post_message
from kairos_api.adapters.orm import Post, PostTag, Target
from kairos_api.domain.model import PostStatus
from kairos_api.service_layer.application import Application
from kairos_api.service_layer.posts.page_tokens import Cursor, decode_token, encode_token
from kairos_api.service_layer.posts.records import (
    LIVE_POST_WITH_ATTEMPTS,
    POST_COLUMNS,
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
    #: Only the occurrences of this series.
    series_id: str = ""


#: GetPost on PostgreSQL: the post, its targets and their attempts, as one JSON value.
GET_POST_SQL = f"""
SELECT {post_json(with_attempts=True)}
FROM posts
WHERE posts.id = %(post_id)s AND posts.tenant_id = %(tenant)s AND posts.deleted_at IS NULL
"""
#: A post of a ListPosts page on PostgreSQL, with its targets, as one JSON value. Being costly,
#: it is computed after the sort and the limit, for the page's posts only.
_LISTED_POST_SQL = post_json(with_attempts=False)


async def get_post(app: Application, tenant: str, post_id: str) -> PostMessage:
    """One post with its targets and every attempt."""
    ident = parse_id(post_id, "post_id")
    found: PostMessage | None = None
    values = {"post_id": ident, "tenant": tenant}
    if app.reads is not None:
        for (message,) in await app.reads.fetchall(GET_POST_SQL, values, plan_once=True):
            found = message
    else:
        async with app.uow() as uow:
            connection = await uow.session.connection()
            query = LIVE_POST_WITH_ATTEMPTS
            rows = (await connection.execute(query, values)).all()
        if rows:
            found = post_message(post_with_attempts(rows), with_attempts=True)
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
        command.series_id,
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
    series_id: uuid.UUID | None = None
    if command.series_id:
        try:
            series_id = parse_id(command.series_id, "series_id")
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

    cursor = (
        decode_token(command.page_token, fingerprint, command.order) if command.page_token else None
    )
    if app.reads is not None:
        query, values = _page_sql(tenant, command, account_id, cursor, size + 1, series_id)
        ((found,),) = await app.reads.fetchall(query, values)
        page: list[PostMessage] = found or []
    else:
        async with app.uow() as uow:
            connection = await uow.session.connection()
            select_page = _page_query(tenant, command, account_id, cursor, size + 1, series_id)
            rows = (await connection.execute(select_page)).all()
            records = await post_records(connection, rows)
        page = [post_message(record, with_attempts=False) for record in records]
    token = ""
    if len(page) > size:
        del page[size:]
        last = page[-1]
        at = last.get("scheduled_at" if command.order == "scheduled_soonest" else "created_at")
        token = encode_token(fingerprint, Cursor(instant_of(at), uuid.UUID(last["id"])))
    return page, token


#: The order of each listing, and where the page after (created_at or scheduled_at, id) starts.
_ORDER_SQL: Final = {
    "created_newest": "posts.created_at DESC, posts.id DESC",
    "created_oldest": "posts.created_at, posts.id",
    "scheduled_soonest": "posts.scheduled_at NULLS LAST, posts.id",
}
_SEEK_SQL: Final = {
    "created_newest": "(posts.created_at, posts.id) < (%(at)s, %(after)s)",
    "created_oldest": "(posts.created_at, posts.id) > (%(at)s, %(after)s)",
    # Unscheduled posts come last, in id order.
    "scheduled_soonest": (
        "((posts.scheduled_at, posts.id) > (%(at)s, %(after)s) OR posts.scheduled_at IS NULL)"
    ),
}


def _page_sql(
    tenant: str,
    command: ListPosts,
    account_id: uuid.UUID | None,
    cursor: Cursor | None,
    limit: int,
    series_id: uuid.UUID | None = None,
) -> tuple[str, dict[str, Any]]:
    """PostgreSQL: the statement of one page, each post's sort keys before its message."""
    where = ["posts.tenant_id = %(tenant)s", "posts.deleted_at IS NULL"]
    values: dict[str, Any] = {"tenant": tenant, "limit": limit}
    if command.statuses:
        where.append("posts.status = ANY(%(statuses)s)")
        values["statuses"] = [s.value for s in command.statuses]
    if command.platforms:
        # The (tenant_id, platform, status) index finds a seldom used platform's few posts.
        where.append(
            "EXISTS (SELECT 1 FROM targets AS t WHERE t.post_id = posts.id"
            " AND t.tenant_id = %(tenant)s AND t.platform = ANY(%(platforms)s))"
        )
        values["platforms"] = [p.value for p in command.platforms]
    if account_id is not None:
        where.append(
            "EXISTS (SELECT 1 FROM targets AS t WHERE t.post_id = posts.id"
            " AND t.account_id = %(account_id)s)"
        )
        values["account_id"] = account_id
    if series_id is not None:
        where.append("posts.series_id = %(series_id)s")
        values["series_id"] = series_id
    if command.campaign:
        where.append("posts.campaign = %(campaign)s")
        values["campaign"] = command.campaign
    if command.tag:
        where.append(
            "EXISTS (SELECT 1 FROM post_tags AS g WHERE g.post_id = posts.id"
            " AND g.tag = %(tag)s AND g.tenant_id = %(tenant)s)"
        )
        values["tag"] = command.tag
    if command.scheduled_from is not None:
        where.append("posts.scheduled_at >= %(scheduled_from)s")
        values["scheduled_from"] = command.scheduled_from
    if command.scheduled_to is not None:
        where.append("posts.scheduled_at < %(scheduled_to)s")
        values["scheduled_to"] = command.scheduled_to
    if cursor is not None:
        if cursor.at is not None:
            where.append(_SEEK_SQL[command.order])
        else:  # past the scheduled posts, among the unscheduled ones
            where.append("posts.scheduled_at IS NULL AND posts.id > %(after)s")
        values["at"] = cursor.at
        values["after"] = cursor.post_id
    order = _ORDER_SQL[command.order]
    query = (
        f"SELECT json_agg(posts.message ORDER BY {order}) FROM ("
        f"SELECT posts.id, posts.created_at, posts.scheduled_at, {_LISTED_POST_SQL} AS message"
        f" FROM posts WHERE {' AND '.join(where)} ORDER BY {order} LIMIT %(limit)s) AS posts"
    )
    return query, values


def _page_query(
    tenant: str,
    command: ListPosts,
    account_id: uuid.UUID | None,
    cursor: Cursor | None,
    limit: int,
    series_id: uuid.UUID | None = None,
) -> Select[Any]:
    """SQLite: what `_page_sql` selects, the posts' columns after their sort keys."""
    query: Select[Any] = select(*POST_COLUMNS).where(
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
    if series_id is not None:
        query = query.where(Post.series_id == series_id)
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
    return _order_and_seek(query, command.order, cursor).limit(limit)


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
