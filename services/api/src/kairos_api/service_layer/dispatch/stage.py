"""MarkAttempt: where an attempt that sends media before it publishes stands.

An upload is not a publish. A publisher lost while it sends a video has made nothing public,
so its attempt can be tried again; only the call that makes the post public is the point after
which an attempt that never reports back is UNKNOWN. The publisher marks an attempt
`uploading` before it sends media and `publishing` just before that call; the sweeper retries
an expired attempt still `uploading` (see `sweep`). Each mark also extends the lease, so a long
upload or a platform's processing does not outlive it while the publisher is alive.

A mark is refused when the attempt is no longer its target's current one (completed, or its
lease ran out and the sweeper settled it): a `publishing` mark refused means the publisher must
not make the post public, since another attempt may do so.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select

from kairos_api.adapters.orm import Attempt, Target
from kairos_api.domain.model import TargetStatus
from kairos_api.service_layer.application import Application
from kairos_common import errors

UPLOADING = "uploading"
PUBLISHING = "publishing"
STAGES = (UPLOADING, PUBLISHING)


@dataclass(frozen=True, slots=True)
class Marked:
    """The answer to a mark: whether it holds, the lease from now, why not."""

    ok: bool
    lease: timedelta = timedelta(0)
    reason: str = ""


async def mark_attempt(app: Application, attempt_id: str, stage: str) -> Marked:
    """Record `stage` for the attempt and extend its lease; `uploading` never takes an attempt
    back from `publishing`."""
    if stage not in STAGES:
        raise errors.InvalidArgument.of("stage", f"must be one of {', '.join(STAGES)}")
    try:
        ident = uuid.UUID(attempt_id)
    except ValueError:
        raise errors.InvalidArgument.of("attempt_id", "is not a valid id") from None
    now = app.clock()
    lease = app.settings.attempt_lease
    async with app.uow() as uow:
        query = (
            select(Attempt, Target)
            .join(Target, Target.id == Attempt.target_id)
            .where(Attempt.id == ident)
        )
        if uow.on_postgresql:
            query = query.with_for_update(of=(Target, Attempt))
        found = (await uow.session.execute(query)).one_or_none()
        if found is None:
            raise errors.NotFound(f"attempt {attempt_id} not found")
        attempt, target = found
        if attempt.finished_at is not None:
            return Marked(False, reason="the attempt was already settled")
        if target.status != TargetStatus.PUBLISHING or target.delivery_id != attempt.delivery_id:
            return Marked(False, reason="the attempt is no longer its target's current one")
        if stage == PUBLISHING or attempt.stage != PUBLISHING:
            attempt.stage = stage
        target.lease_until = now + lease
        await uow.commit()
    return Marked(True, lease)
