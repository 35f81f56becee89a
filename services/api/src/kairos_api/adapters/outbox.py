"""Outbox rows: lifecycle events serialized as kairos.events.v1.LifecycleEvent.

The relay publishes each row to `kairos.events.<tenant>.post.<event>` (`relay.subject_of`) with
`Nats-Msg-Id` = event id, so a re-published row is dropped by JetStream's de-duplication.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from kairos.events.v1 import events_pb2
from kairos.posts.v1 import posts_pb2
from kairos_api.adapters import convert
from kairos_api.adapters.orm import new_id, utcnow
from kairos_api.domain.model import PostStatus, TargetStatus

#: Event names as they appear in subjects, with their protobuf type.
EVENT_TYPES: dict[str, events_pb2.LifecycleEventType.ValueType] = {
    "created": events_pb2.LIFECYCLE_EVENT_TYPE_CREATED,
    "updated": events_pb2.LIFECYCLE_EVENT_TYPE_UPDATED,
    "scheduled": events_pb2.LIFECYCLE_EVENT_TYPE_SCHEDULED,
    "unscheduled": events_pb2.LIFECYCLE_EVENT_TYPE_UNSCHEDULED,
    "deleted": events_pb2.LIFECYCLE_EVENT_TYPE_DELETED,
    "approved": events_pb2.LIFECYCLE_EVENT_TYPE_APPROVED,
    "rejected": events_pb2.LIFECYCLE_EVENT_TYPE_REJECTED,
    "published": events_pb2.LIFECYCLE_EVENT_TYPE_PUBLISHED,
    "failed": events_pb2.LIFECYCLE_EVENT_TYPE_FAILED,
    "unknown": events_pb2.LIFECYCLE_EVENT_TYPE_UNKNOWN,
    "missed": events_pb2.LIFECYCLE_EVENT_TYPE_MISSED,
    "retry_scheduled": events_pb2.LIFECYCLE_EVENT_TYPE_RETRY_SCHEDULED,
    "needs_reauth": events_pb2.LIFECYCLE_EVENT_TYPE_NEEDS_REAUTH,
    "retried": events_pb2.LIFECYCLE_EVENT_TYPE_RETRIED,
    "webhook_disabled": events_pb2.LIFECYCLE_EVENT_TYPE_WEBHOOK_DISABLED,
}


def lifecycle_row(
    event_type: str,
    *,
    tenant_id: str,
    post_id: uuid.UUID | str | None = None,
    post_status: PostStatus | None = None,
    revision: int = 0,
    target_id: uuid.UUID | str | None = None,
    target_status: TargetStatus | None = None,
    account_id: uuid.UUID | str | None = None,
    detail: str = "",
    now: datetime | None = None,
    webhook_id: uuid.UUID | str | None = None,
) -> dict[str, Any]:
    """The column values of one outbox row; KeyError for an unknown event type (a coding error).

    Ids may be given as UUIDs or as their text; `now` (default: the current instant) is when
    the event occurred.

    Insert one as `OutboxEvent(**row)`, or many in one statement (`UnitOfWork.emit_rows`).
    """
    event_id = new_id()
    if now is None:
        now = utcnow()
    message = events_pb2.LifecycleEvent(
        event_id=str(event_id),
        type=EVENT_TYPES[event_type],
        occurred_at=convert.timestamp(now),
        tenant_id=tenant_id,
        post_id=str(post_id) if post_id else "",
        target_id=str(target_id) if target_id else "",
        account_id=str(account_id) if account_id else "",
        post_status=(
            convert.post_status_to_proto(post_status)
            if post_status
            else posts_pb2.POST_STATUS_UNSPECIFIED
        ),
        target_status=(
            convert.target_status_to_proto(target_status)
            if target_status
            else posts_pb2.TARGET_STATUS_UNSPECIFIED
        ),
        revision=revision,
        detail=detail[:1000],
        webhook_id=str(webhook_id) if webhook_id else "",
    )
    return {
        "event_id": event_id,
        "tenant_id": tenant_id,
        "event_type": event_type,
        "payload": message.SerializeToString(),
        "created_at": now,
    }


#: PostgreSQL: inserts the rows `rows_json` wrote into the parameter `events`, as a statement or
#: as a data-modifying part of a WITH.
INSERT_SQL = """
INSERT INTO outbox (event_id, tenant_id, event_type, payload, created_at)
SELECT (v->>0)::uuid, v->>1, v->>2, decode(v->>3, 'hex'), (v->>4)::timestamptz
FROM json_array_elements(%(events)s::json) AS v
"""


def instant_text(value: datetime | None) -> str | None:
    """An instant as the JSON rows carry it, for PostgreSQL's `::timestamptz`."""
    return None if value is None else value.isoformat()


def rows_json(rows: Iterable[Mapping[str, Any]]) -> str:
    """`lifecycle_row` values as the parameter `events` of INSERT_SQL: one JSON text of arrays,
    which the encoder writes in C and PostgreSQL unpacks, where an executemany would send, plan
    and trigger one INSERT per row."""
    encoded = []
    texts: dict[datetime, str] = {}  # the events of a dispatch stage share one instant
    for row in rows:
        at: datetime = row["created_at"]
        text = texts.get(at)
        if text is None:
            text = texts[at] = at.isoformat()
        encoded.append(
            (str(row["event_id"]), row["tenant_id"], row["event_type"], row["payload"].hex(), text)
        )
    return json.dumps(encoded)
