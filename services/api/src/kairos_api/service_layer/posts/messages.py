"""A post as GetPost and ListPosts answer it: a dict in the shape of kairos.posts.v1.Post.

Field names are the message's, enums the names of their values (`POST_STATUS_SCHEDULED`),
Timestamps and Durations dicts of seconds and nanos, and a field left unset is None. Protobuf
builds the message from such a dict in C (`posts_pb2.Post(**message)`), so a read costs no
Python per field. On PostgreSQL the database writes the dict itself, as JSON (`post_json`); on
SQLite `message_of` makes it from the records. The two say the same thing and are kept side by
side here; `convert.post_to_proto` says it too, for the ORM rows the other calls answer with.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kairos_api.domain.model import TargetStatus
from kairos_api.service_layer.posts.records import AttemptRecord, PostRecord, TargetRecord

#: A post in the shape of kairos.posts.v1.Post (see the module notes).
PostMessage = dict[str, Any]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _instant_sql(column: str) -> str:
    return (
        f"CASE WHEN {column} IS NOT NULL THEN json_build_object("
        f"'seconds', floor(extract(epoch FROM {column}))::bigint, "
        f"'nanos', mod(extract(microseconds FROM {column})::bigint, 1000000) * 1000) END"
    )


def _error_class_sql(column: str) -> str:
    return (
        f"CASE WHEN {column} = '' THEN 'ERROR_CLASS_UNSPECIFIED' "
        f"ELSE 'ERROR_CLASS_' || upper({column}) END"
    )


_ATTEMPTS_SQL = f"""(
    SELECT json_agg(json_build_object(
        'number', a.number,
        'started_at', {_instant_sql("a.started_at")},
        'finished_at', {_instant_sql("a.finished_at")},
        'error_class', {_error_class_sql("a.error_class")},
        'published', a.published,
        'http_status', a.http_status,
        'error_code', a.error_code,
        'message', a.message,
        'latency', CASE WHEN a.latency_ms IS NOT NULL THEN json_build_object(
            'seconds', a.latency_ms / 1000, 'nanos', mod(a.latency_ms, 1000) * 1000000) END
    ) ORDER BY a.number)
    FROM attempts AS a WHERE a.target_id = t.id
)"""


def _targets_sql(with_attempts: bool) -> str:
    attempts = f", 'attempts', {_ATTEMPTS_SQL}" if with_attempts else ""
    return f"""(
    SELECT json_agg(json_build_object(
        'id', t.id::text,
        'account_id', t.account_id::text,
        'platform', 'PLATFORM_' || upper(t.platform),
        'status', 'TARGET_STATUS_' || upper(t.status),
        'content_override', t.content_override,
        -- An empty map as None: protobuf fills a map through Python's MutableMapping.update.
        'settings', CASE WHEN t.settings::text <> '{{}}' THEN t.settings END,
        'attempt_count', t.attempt_count,
        'next_attempt_at', CASE WHEN t.status = 'retry_wait'
            THEN {_instant_sql("t.next_attempt_at")} END,
        'platform_post_id', t.platform_post_id,
        'platform_url', t.platform_url,
        'last_error', CASE WHEN t.last_error_class <> '' OR t.last_error_message <> ''
            THEN json_build_object(
                'error_class', {_error_class_sql("t.last_error_class")},
                'code', t.last_error_code,
                'message', t.last_error_message) END,
        'published_at', {_instant_sql("t.published_at")}{attempts}
    ) ORDER BY t.id)
    FROM targets AS t WHERE t.post_id = posts.id
)"""


def post_json(*, with_attempts: bool) -> str:
    """PostgreSQL: the message of the row of `posts` in the statement, as JSON."""
    return f"""json_build_object(
    'id', posts.id::text,
    'content', posts.content,
    'media_urls', posts.media_urls,
    'campaign', posts.campaign,
    'tags', posts.tags,
    'notes', posts.notes,
    'status', 'POST_STATUS_' || upper(posts.status),
    'scheduled_at', {_instant_sql("posts.scheduled_at")},
    'time_zone', posts.time_zone,
    'revision', posts.revision,
    'approval_required', posts.approval_required,
    'approved_at', {_instant_sql("posts.approved_at")},
    'rejection_reason', posts.rejection_reason,
    'stale_after', CASE WHEN posts.stale_after_seconds IS NOT NULL
        THEN json_build_object('seconds', posts.stale_after_seconds) END,
    'targets', {_targets_sql(with_attempts)},
    'created_at', {_instant_sql("posts.created_at")},
    'updated_at', {_instant_sql("posts.updated_at")},
    'parent_post_id', coalesce(posts.parent_post_id::text, '')
)"""


def _instant(value: datetime | None) -> dict[str, int] | None:
    if value is None:
        return None
    offset = value - _EPOCH
    return {"seconds": offset.days * 86_400 + offset.seconds, "nanos": offset.microseconds * 1000}


def instant_of(value: dict[str, int] | None) -> datetime | None:
    """The instant of a message's Timestamp (to the microsecond, as it was stored)."""
    if value is None:
        return None
    micros = value.get("seconds", 0) * 1_000_000 + value.get("nanos", 0) // 1000
    return _EPOCH + timedelta(microseconds=micros)


def _error_class(value: str) -> str:
    return f"ERROR_CLASS_{value.upper()}" if value else "ERROR_CLASS_UNSPECIFIED"


def _duration_of_millis(millis: int | None) -> dict[str, int] | None:
    if millis is None:
        return None
    seconds = int(millis / 1000)  # toward zero, as PostgreSQL divides, nanos of the same sign
    return {"seconds": seconds, "nanos": (millis - seconds * 1000) * 1_000_000}


def _attempt(attempt: AttemptRecord) -> dict[str, Any]:
    return {
        "number": attempt.number,
        "started_at": _instant(attempt.started_at),
        "finished_at": _instant(attempt.finished_at),
        "error_class": _error_class(attempt.error_class),
        "published": attempt.published,
        "http_status": attempt.http_status,
        "error_code": attempt.error_code,
        "message": attempt.message,
        "latency": _duration_of_millis(attempt.latency_ms),
    }


def _target(target: TargetRecord, with_attempts: bool) -> dict[str, Any]:
    message: dict[str, Any] = {
        "id": str(target.id),
        "account_id": str(target.account_id),
        "platform": f"PLATFORM_{target.platform.upper()}",
        "status": f"TARGET_STATUS_{target.status.upper()}",
        "content_override": target.content_override,
        "settings": target.settings or None,
        "attempt_count": target.attempt_count,
        "next_attempt_at": (
            _instant(target.next_attempt_at) if target.status == TargetStatus.RETRY_WAIT else None
        ),
        "platform_post_id": target.platform_post_id,
        "platform_url": target.platform_url,
        "published_at": _instant(target.published_at),
    }
    if target.last_error_class or target.last_error_message:
        message["last_error"] = {
            "error_class": _error_class(target.last_error_class),
            "code": target.last_error_code,
            "message": target.last_error_message,
        }
    if with_attempts:
        message["attempts"] = [_attempt(a) for a in target.attempts]
    return message


def message_of(post: PostRecord, *, with_attempts: bool) -> PostMessage:
    """The message of a record: what `post_json` writes on PostgreSQL."""
    return {
        "id": str(post.id),
        "content": post.content,
        "media_urls": post.media_urls,
        "campaign": post.campaign,
        "tags": post.tags,
        "notes": post.notes,
        "status": f"POST_STATUS_{post.status.upper()}",
        "scheduled_at": _instant(post.scheduled_at),
        "time_zone": post.time_zone,
        "revision": post.revision,
        "approval_required": post.approval_required,
        "approved_at": _instant(post.approved_at),
        "rejection_reason": post.rejection_reason,
        "stale_after": (
            {"seconds": post.stale_after_seconds} if post.stale_after_seconds is not None else None
        ),
        "targets": [_target(t, with_attempts) for t in post.targets],
        "created_at": _instant(post.created_at),
        "updated_at": _instant(post.updated_at),
        "parent_post_id": str(post.parent_post_id) if post.parent_post_id else "",
    }
