"""A publishing post's status follows from its targets; one place derives and applies it."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select

from kairos_api.adapters.orm import Post, Target
from kairos_api.domain.model import TargetStatus, settled_status
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
        settled = settled_status(post.status, statuses[post_id])
        if settled is None:
            continue
        post.status = settled
        post.updated_at = now
        changed.append(post)
    return changed
