"""A publishing post's status follows from its targets; one place derives and applies it."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime

from sqlalchemy import select

from kairos_api.adapters.orm import Post, Target
from kairos_api.domain.model import PostStatus, TargetStatus, derive_post_status
from kairos_api.service_layer.unit_of_work import UnitOfWork


async def settle_posts(uow: UnitOfWork, posts: Iterable[Post], now: datetime) -> list[Post]:
    """Give each post the status its targets derive (one query for all); the posts that changed.

    A post with targets still on their way keeps its status: SCHEDULED until an attempt begins.
    """
    by_id = {post.id: post for post in posts}
    if not by_id:
        return []
    await uow.session.flush()
    statuses: dict[uuid.UUID, list[TargetStatus]] = {post_id: [] for post_id in by_id}
    rows = await uow.session.execute(
        select(Target.post_id, Target.status).where(Target.post_id.in_(by_id))
    )
    for post_id, status in rows.all():
        statuses[post_id].append(TargetStatus(status))
    changed: list[Post] = []
    for post_id, post in by_id.items():
        derived = derive_post_status(statuses[post_id])
        if derived == PostStatus.PUBLISHING or post.status == derived:
            continue
        post.status = derived
        post.updated_at = now
        changed.append(post)
    return changed


async def settle_post_ids(
    uow: UnitOfWork, current: Mapping[uuid.UUID, str], now: datetime
) -> dict[uuid.UUID, PostStatus]:
    """`settle_posts` for posts known only by id and current status, written in one statement.

    For paths that change rows with bulk statements rather than loaded objects: the target
    statuses they wrote are already in the database. Returns the posts that changed.
    """
    if not current:
        return {}
    statuses: dict[uuid.UUID, list[TargetStatus]] = {post_id: [] for post_id in current}
    rows = await uow.session.execute(
        select(Target.post_id, Target.status).where(Target.post_id.in_(current))
    )
    for post_id, status in rows.all():
        statuses[post_id].append(TargetStatus(status))
    changed: dict[uuid.UUID, PostStatus] = {}
    for post_id, status in current.items():
        derived = derive_post_status(statuses[post_id])
        if derived != PostStatus.PUBLISHING and status != derived:
            changed[post_id] = derived
    if changed:
        await uow.update_rows(
            Post,
            [
                {"id": post_id, "status": status.value, "updated_at": now}
                for post_id, status in changed.items()
            ],
        )
    return changed
