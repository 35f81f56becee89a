"""Translation between the service's own types and the kairos.*.v1 protobuf messages.

Protobuf stays at the edge: handlers work with ORM rows (or the read records of the posts
handlers, which have the same fields) and domain enums, and only the gRPC servicers, the outbox
and the post reads call these functions. A post has one conversion, `post_message`, a dict that
protobuf builds the message from (`post_to_proto`); GetPost and ListPosts answer with the dicts
themselves, which PostgreSQL writes as JSON (`post_json`).

Every Timestamp and Duration read from a request goes through `from_timestamp` and
`from_duration`, which hold it to protobuf's rules and refuse it on its field otherwise.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from kairos.posts.v1 import posts_pb2
from kairos_api.adapters.orm import Account
from kairos_api.domain.model import AccountStatus, ErrorClass, PostStatus, TargetStatus
from kairos_common.errors import InvalidArgument
from kairos_common.platforms import Platform

# Each domain enum maps to its wire enum by name (Platform.MASTODON <-> PLATFORM_MASTODON), so a
# domain value the proto lacks fails at import rather than at the first request that uses it.
_PLATFORMS: dict[Platform, posts_pb2.Platform.ValueType] = {
    p: posts_pb2.Platform.Value(f"PLATFORM_{p.name}") for p in Platform
}
_PLATFORMS_BACK = {v: k for k, v in _PLATFORMS.items()}

_POST_STATUSES: dict[PostStatus, posts_pb2.PostStatus.ValueType] = {
    s: posts_pb2.PostStatus.Value(f"POST_STATUS_{s.name}") for s in PostStatus
}
_POST_STATUSES_BACK = {v: k for k, v in _POST_STATUSES.items()}
_TARGET_STATUSES: dict[TargetStatus, posts_pb2.TargetStatus.ValueType] = {
    s: posts_pb2.TargetStatus.Value(f"TARGET_STATUS_{s.name}") for s in TargetStatus
}
_TARGET_STATUSES_BACK = {v: k for k, v in _TARGET_STATUSES.items()}
_ACCOUNT_STATUSES: dict[AccountStatus, posts_pb2.AccountStatus.ValueType] = {
    s: posts_pb2.AccountStatus.Value(f"ACCOUNT_STATUS_{s.name}") for s in AccountStatus
}
_ACCOUNT_STATUSES_BACK = {v: k for k, v in _ACCOUNT_STATUSES.items()}
_ERROR_CLASSES: dict[ErrorClass, posts_pb2.ErrorClass.ValueType] = {
    s: posts_pb2.ErrorClass.Value(f"ERROR_CLASS_{s.name}") for s in ErrorClass
}
_ERROR_CLASSES_BACK = {v: k for k, v in _ERROR_CLASSES.items()}


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: A post in the shape of kairos.posts.v1.Post (see `post_message`).
PostMessage = dict[str, Any]


class AttemptFields(Protocol):
    """What an attempt shows: an `orm.Attempt`, or a record read without the ORM."""

    @property
    def number(self) -> int: ...
    @property
    def started_at(self) -> datetime: ...
    @property
    def finished_at(self) -> datetime | None: ...
    @property
    def published(self) -> bool: ...
    @property
    def http_status(self) -> int: ...
    @property
    def error_class(self) -> str: ...
    @property
    def error_code(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def latency_ms(self) -> int | None: ...


class TargetFields(Protocol):
    """What a target shows: an `orm.Target`, or a record read without the ORM."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def account_id(self) -> uuid.UUID: ...
    @property
    def platform(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def content_override(self) -> str | None: ...
    @property
    def settings(self) -> Mapping[str, str]: ...
    @property
    def attempt_count(self) -> int: ...
    @property
    def next_attempt_at(self) -> datetime | None: ...
    @property
    def platform_post_id(self) -> str: ...
    @property
    def platform_url(self) -> str: ...
    @property
    def last_error_class(self) -> str: ...
    @property
    def last_error_code(self) -> str: ...
    @property
    def last_error_message(self) -> str: ...
    @property
    def published_at(self) -> datetime | None: ...
    @property
    def attempts(self) -> Sequence[AttemptFields]: ...


class PostFields(Protocol):
    """What a post shows: an `orm.Post`, or a record read without the ORM."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def content(self) -> str: ...
    @property
    def media_urls(self) -> Sequence[str]: ...
    @property
    def media_ids(self) -> Sequence[str]: ...
    @property
    def campaign(self) -> str: ...
    @property
    def tags(self) -> Sequence[str]: ...
    @property
    def notes(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def scheduled_at(self) -> datetime | None: ...
    @property
    def time_zone(self) -> str: ...
    @property
    def revision(self) -> int: ...
    @property
    def approval_required(self) -> bool: ...
    @property
    def approved_at(self) -> datetime | None: ...
    @property
    def rejection_reason(self) -> str: ...
    @property
    def stale_after_seconds(self) -> int | None: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...
    @property
    def parent_post_id(self) -> uuid.UUID | None: ...
    @property
    def series_id(self) -> uuid.UUID | None: ...
    @property
    def targets(self) -> Sequence[TargetFields]: ...


def platform_to_proto(platform: Platform | str) -> posts_pb2.Platform.ValueType:
    return _PLATFORMS[Platform(platform)]


def platform_from_proto(value: int) -> Platform | None:
    """The platform, or None for PLATFORM_UNSPECIFIED or a number this build does not know."""
    return cast("Platform | None", _PLATFORMS_BACK.get(value))  # type: ignore[call-overload]


def post_status_to_proto(status: PostStatus | str) -> posts_pb2.PostStatus.ValueType:
    return _POST_STATUSES[PostStatus(status)]


def post_status_from_proto(value: int) -> PostStatus | None:
    return cast("PostStatus | None", _POST_STATUSES_BACK.get(value))  # type: ignore[call-overload]


def target_status_to_proto(status: TargetStatus | str) -> posts_pb2.TargetStatus.ValueType:
    return _TARGET_STATUSES[TargetStatus(status)]


def target_status_from_proto(value: int) -> TargetStatus | None:
    return cast("TargetStatus | None", _TARGET_STATUSES_BACK.get(value))  # type: ignore[call-overload]


def account_status_to_proto(status: AccountStatus | str) -> posts_pb2.AccountStatus.ValueType:
    return _ACCOUNT_STATUSES[AccountStatus(status)]


def account_status_from_proto(value: int) -> AccountStatus | None:
    return cast("AccountStatus | None", _ACCOUNT_STATUSES_BACK.get(value))  # type: ignore[call-overload]


def error_class_to_proto(value: ErrorClass | str) -> posts_pb2.ErrorClass.ValueType:
    return _ERROR_CLASSES[ErrorClass(value)] if value else posts_pb2.ERROR_CLASS_UNSPECIFIED


def error_class_from_proto(value: int) -> ErrorClass | None:
    return cast("ErrorClass | None", _ERROR_CLASSES_BACK.get(value))  # type: ignore[call-overload]


def set_timestamp(field: Timestamp, value: datetime) -> None:
    """`value` written into a message's own Timestamp field, which spares building one and
    copying it in: the hot path's responses set thousands of them. A naive value is UTC (what
    SQLite gives back, and what `Timestamp.FromDatetime` assumes). Integer arithmetic on the
    offset from the epoch: a third of the cost of FromDatetime."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    offset = value - EPOCH
    field.seconds = offset.days * 86_400 + offset.seconds
    field.nanos = offset.microseconds * 1_000


def timestamp(value: datetime | None) -> Timestamp | None:
    """A protobuf Timestamp, or None (leave the field unset) for None."""
    if value is None:
        return None
    message = Timestamp()
    set_timestamp(message, value)
    return message


#: The ranges protobuf's well-known types allow (google/protobuf/timestamp.proto, duration.proto):
#: a Timestamp from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z with nanos in
#: [0, 10^9); a Duration within ±10,000 years, its nanos in (-10^9, 10^9) and of the sign of its
#: seconds. Python's own conversions do not check a Duration at all.
_TIMESTAMP_SECONDS = (-62_135_596_800, 253_402_300_799)
_DURATION_SECONDS = 315_576_000_000
_NANOS = 1_000_000_000


def from_timestamp(stamp: Timestamp, field: str) -> datetime:
    """The instant a request's Timestamp names; `InvalidArgument` on `field` when it breaks
    protobuf's rules."""
    if not 0 <= stamp.nanos < _NANOS:
        raise InvalidArgument.of(
            field, f"must be a valid timestamp: nanos 0 to 999,999,999, got {stamp.nanos:,}"
        )
    low, high = _TIMESTAMP_SECONDS
    if not low <= stamp.seconds <= high:
        raise InvalidArgument.of(
            field,
            "must be a valid timestamp, from 0001-01-01 to 9999-12-31: seconds "
            f"{low:,} to {high:,}, got {stamp.seconds:,}",
        )
    return stamp.ToDatetime(tzinfo=UTC)


def from_duration(value: Duration, field: str) -> timedelta:
    """The span a request's Duration names (to the microsecond, toward zero); `InvalidArgument`
    on `field` when it breaks protobuf's rules."""
    seconds, nanos = value.seconds, value.nanos
    if not -_NANOS < nanos < _NANOS:
        raise InvalidArgument.of(
            field,
            f"must be a valid duration: nanos -999,999,999 to 999,999,999, got {nanos:,}",
        )
    if seconds < 0 < nanos or nanos < 0 < seconds:
        raise InvalidArgument.of(
            field,
            "must be a valid duration: seconds and nanos of the same sign, "
            f"got seconds {seconds:,} and nanos {nanos:,}",
        )
    if abs(seconds) > _DURATION_SECONDS:
        raise InvalidArgument.of(
            field,
            "must be a valid duration, within 10,000 years: seconds "
            f"-{_DURATION_SECONDS:,} to {_DURATION_SECONDS:,}, got {seconds:,}",
        )
    return value.ToTimedelta()


def duration(value: timedelta | None) -> Duration | None:
    if value is None:
        return None
    out = Duration()
    out.FromTimedelta(value)
    return out


def instant(value: datetime | None) -> dict[str, int] | None:
    """A Timestamp as a message dict holds it, or None; a naive value is UTC, as in
    `set_timestamp`."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    offset = value - EPOCH
    return {"seconds": offset.days * 86_400 + offset.seconds, "nanos": offset.microseconds * 1000}


def instant_of(value: dict[str, int] | None) -> datetime | None:
    """The instant of a message's Timestamp (to the microsecond, as it was stored)."""
    if value is None:
        return None
    micros = value.get("seconds", 0) * 1_000_000 + value.get("nanos", 0) // 1000
    return EPOCH + timedelta(microseconds=micros)


def _error_class(value: str) -> str:
    return f"ERROR_CLASS_{value.upper()}" if value else "ERROR_CLASS_UNSPECIFIED"


def _duration_of_millis(millis: int | None) -> dict[str, int] | None:
    if millis is None:
        return None
    seconds = int(millis / 1000)  # toward zero, as PostgreSQL divides, nanos of the same sign
    return {"seconds": seconds, "nanos": (millis - seconds * 1000) * 1_000_000}


def _attempt_message(attempt: AttemptFields) -> dict[str, Any]:
    return {
        "number": attempt.number,
        "started_at": instant(attempt.started_at),
        "finished_at": instant(attempt.finished_at),
        "error_class": _error_class(attempt.error_class),
        "published": attempt.published,
        "http_status": attempt.http_status,
        "error_code": attempt.error_code,
        "message": attempt.message,
        "latency": _duration_of_millis(attempt.latency_ms),
    }


def _target_message(target: TargetFields, with_attempts: bool) -> dict[str, Any]:
    message: dict[str, Any] = {
        "id": str(target.id),
        "account_id": str(target.account_id),
        "platform": f"PLATFORM_{target.platform.upper()}",
        "status": f"TARGET_STATUS_{target.status.upper()}",
        "content_override": target.content_override,
        "settings": target.settings or None,
        "attempt_count": target.attempt_count,
        "next_attempt_at": (
            instant(target.next_attempt_at) if target.status == TargetStatus.RETRY_WAIT else None
        ),
        "platform_post_id": target.platform_post_id,
        "platform_url": target.platform_url,
        "published_at": instant(target.published_at),
    }
    if target.last_error_class or target.last_error_message:
        message["last_error"] = {
            "error_class": _error_class(target.last_error_class),
            "code": target.last_error_code,
            "message": target.last_error_message,
        }
    if with_attempts:
        message["attempts"] = [_attempt_message(a) for a in target.attempts]
    return message


def post_message(post: PostFields, *, with_attempts: bool) -> PostMessage:
    """A post as GetPost and ListPosts answer it: a dict in the shape of kairos.posts.v1.Post.

    Field names are the message's, enums the names of their values (`POST_STATUS_SCHEDULED`),
    Timestamps and Durations dicts of seconds and nanos, and a field left unset is None. Protobuf
    builds the message from such a dict in C (`posts_pb2.Post(**message)`), which costs less than
    setting its fields from Python. On PostgreSQL the database writes the same dict as JSON
    (`post_json`)."""
    return {
        "id": str(post.id),
        "content": post.content,
        "media_urls": post.media_urls,
        "campaign": post.campaign,
        "tags": post.tags,
        "notes": post.notes,
        "status": f"POST_STATUS_{post.status.upper()}",
        "scheduled_at": instant(post.scheduled_at),
        "time_zone": post.time_zone,
        "revision": post.revision,
        "approval_required": post.approval_required,
        "approved_at": instant(post.approved_at),
        "rejection_reason": post.rejection_reason,
        "stale_after": (
            {"seconds": post.stale_after_seconds} if post.stale_after_seconds is not None else None
        ),
        "targets": [_target_message(t, with_attempts) for t in post.targets],
        "created_at": instant(post.created_at),
        "updated_at": instant(post.updated_at),
        "parent_post_id": str(post.parent_post_id) if post.parent_post_id else "",
        "media_ids": post.media_ids,
        "series_id": str(post.series_id) if post.series_id else "",
    }


def post_to_proto(post: PostFields, *, with_attempts: bool = False) -> posts_pb2.Post:
    return posts_pb2.Post(**post_message(post, with_attempts=with_attempts))


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
    """PostgreSQL: `post_message` of the row of `posts` in the statement, written as JSON."""
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
    'parent_post_id', coalesce(posts.parent_post_id::text, ''),
    'media_ids', posts.media_ids,
    'series_id', coalesce(posts.series_id::text, '')
)"""


def account_to_proto(account: Account) -> posts_pb2.Account:
    """The account as clients see it: never its credentials."""
    return posts_pb2.Account(
        id=str(account.id),
        platform=platform_to_proto(account.platform),
        handle=account.handle,
        status=account_status_to_proto(account.status),
        token_expires_at=timestamp(account.token_expires_at),
        blocked_until=timestamp(account.blocked_until),
        created_at=timestamp(account.created_at),
        updated_at=timestamp(account.updated_at),
    )
