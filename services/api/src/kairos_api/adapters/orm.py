"""SQLAlchemy 2 tables of the posts service (DESIGN.md §2), portable to PostgreSQL and SQLite.

Statuses are stored as their lower-case names in plain strings, so adding a state needs no
type migration. Every timestamp is stored and returned as an aware UTC datetime.
"""

from __future__ import annotations

import os
import random
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always aware UTC in Python, whatever the database keeps."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where an aware UTC instant is needed")
        value = value.astimezone(UTC)
        # SQLite keeps text; drop the zone so that string comparison orders correctly.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """The current instant, aware UTC."""
    return datetime.now(UTC)


#: The random part of ids. Ids are not secrets, so a generator seeded once from the system's
#: randomness (256 bits) is unguessable enough for them, and spares a system call per id.
_id_random = random.Random(os.urandom(32))


def _reseed_ids_in_child() -> None:
    # A forked child must not draw the same sequence as its parent.
    _id_random.seed(os.urandom(32))


os.register_at_fork(after_in_child=_reseed_ids_in_child)


def new_id(at: datetime | None = None) -> uuid.UUID:
    """A time-ordered UUID (version 7 layout), so new rows land at the end of indexes.

    48 bits of Unix time in milliseconds (now, or `at`), then 74 random bits around the version
    and variant. The random bits come from `_id_random`: unique and unguessable enough for ids
    (not for tokens or keys, which use the `secrets` module).
    """
    millis = int((at or datetime.now(UTC)).timestamp() * 1000)
    rand = _id_random.getrandbits(74)
    value = (
        (millis << 80)
        | (0x7 << 76)
        | ((rand >> 62) << 64)
        | (0b10 << 62)
        | (rand & ((1 << 62) - 1))
    )
    return uuid.UUID(int=value)


def id_floor(at: datetime) -> uuid.UUID:
    """The lowest id `new_id` makes at `at`: every id made before it is smaller, so an id range
    on a primary key finds rows by age without an index on their time."""
    return uuid.UUID(int=int(at.timestamp() * 1000) << 80)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime(), uuid.UUID: Uuid()}


class ApiKey(Base):
    """A tenant's API key: only its SHA-256 is stored; the key itself is shown once."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(String(64), index=True)
    #: The first characters of the key, to tell keys apart in listings.
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class Account(Base):
    """A connected social account; credentials encrypted under KAIROS_SECRET_KEY."""

    __tablename__ = "accounts"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(String(64))
    platform: Mapped[str] = mapped_column(String(20))
    handle: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(20))
    credentials: Mapped[bytes | None] = mapped_column(LargeBinary)
    token_expires_at: Mapped[datetime | None]
    blocked_until: Mapped[datetime | None]
    status_reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (Index(None, "tenant_id", "platform"),)


class Post(Base):
    """A post: content, schedule, and the revision that fences out stale deliveries."""

    __tablename__ = "posts"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(String(64))
    content: Mapped[str] = mapped_column(Text, default="")
    media_urls: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: Uploaded media (`Media` ids as text), in order; `media_rows` indexes them. The server
    #: default gives rows written without the column (older writers, bulk seeds) none.
    media_ids: Mapped[list[str]] = mapped_column(JSON, default=list, server_default=text("'[]'"))
    campaign: Mapped[str] = mapped_column(String(200), default="")
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    notes: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(24))
    scheduled_at: Mapped[datetime | None]
    time_zone: Mapped[str] = mapped_column(String(64), default="")
    revision: Mapped[int] = mapped_column(BigInteger, default=1)
    approval_required: Mapped[bool] = mapped_column(Boolean, default=False)
    approved_at: Mapped[datetime | None]
    rejection_reason: Mapped[str] = mapped_column(Text, default="")
    stale_after_seconds: Mapped[int | None] = mapped_column(Integer)
    parent_post_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("posts.id"))
    request_id: Mapped[str | None] = mapped_column(String(128))
    #: SHA-256 (hex) of the create request, without its request_id: a repeated request_id must
    #: come with the same request. NULL for posts created before it was kept.
    request_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None]
    #: The recurring series this post is an occurrence of, and the instant the series' rule
    #: gave it (kept when the occurrence alone is moved: RFC 5545's RECURRENCE-ID).
    series_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("series.id"))
    occurrence_at: Mapped[datetime | None]

    targets: Mapped[list[Target]] = relationship(
        back_populates="post", order_by="Target.id", cascade="all, delete-orphan"
    )
    tag_rows: Mapped[list[PostTag]] = relationship(cascade="all, delete-orphan")
    media_rows: Mapped[list[PostMedia]] = relationship(
        order_by="PostMedia.position", cascade="all, delete-orphan"
    )

    __table_args__ = (
        UniqueConstraint("tenant_id", "request_id"),
        Index(None, "tenant_id", "created_at", "id"),
        Index(None, "tenant_id", "scheduled_at", "id"),
        Index(None, "tenant_id", "campaign"),
        # GetStats finds what is due soon or overdue from this index, and lists filtered by
        # status find a tenant's posts in it (its totals come from `StatsTotal`).
        Index(
            "ix_posts_live_tenant_id_status_scheduled_at",
            "tenant_id",
            "status",
            "scheduled_at",
            postgresql_where=text("deleted_at IS NULL"),
            sqlite_where=text("deleted_at IS NULL"),
        ),
        # The parts of threads by the post they reply to; only replies are in it.
        Index(
            "ix_posts_parent_post_id",
            "parent_post_id",
            postgresql_where=text("parent_post_id IS NOT NULL"),
            sqlite_where=text("parent_post_id IS NOT NULL"),
        ),
        # One live post per occurrence of a series, whoever materialises it and how often.
        Index(
            "uq_posts_series_id_occurrence_at",
            "series_id",
            "occurrence_at",
            unique=True,
            postgresql_where=text("series_id IS NOT NULL AND deleted_at IS NULL"),
            sqlite_where=text("series_id IS NOT NULL AND deleted_at IS NULL"),
        ),
        # The few deleted posts: the counting triggers ask of each changed target whether its
        # post is deleted, and this small index answers without reading the table.
        Index(
            "ix_posts_deleted_id",
            "id",
            postgresql_where=text("deleted_at IS NOT NULL"),
            sqlite_where=text("deleted_at IS NOT NULL"),
        ),
    )


class Series(Base):
    """A recurring post: a template, an RFC 5545 rule on the wall clock of a zone, and how far
    its occurrences (ordinary posts) have been created."""

    __tablename__ = "series"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(String(64))
    content: Mapped[str] = mapped_column(Text, default="")
    media_urls: Mapped[list[str]] = mapped_column(JSON, default=list)
    media_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: [{"account_id", "content_override", "settings"}], as CreatePost takes them.
    targets: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    campaign: Mapped[str] = mapped_column(String(200), default="")
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    notes: Mapped[str] = mapped_column(Text, default="")
    approval_required: Mapped[bool] = mapped_column(Boolean, default=False)
    stale_after_seconds: Mapped[int | None] = mapped_column(Integer)
    #: RFC 5545 lines: one RRULE, then EXDATE lines (wall-clock times in `time_zone`).
    rule: Mapped[str] = mapped_column(Text)
    #: DTSTART as a wall-clock time in `time_zone` (ISO 8601, no offset).
    start_local: Mapped[str] = mapped_column(String(32))
    time_zone: Mapped[str] = mapped_column(String(64))
    #: active or paused.
    status: Mapped[str] = mapped_column(String(12))
    status_reason: Mapped[str] = mapped_column(Text, default="")
    #: Every occurrence before this instant exists as a post, or was deleted on purpose.
    materialised_until: Mapped[datetime]
    split_from: Mapped[uuid.UUID | None]
    #: The CreateSeries request_id, so that a retried create returns this series.
    request_id: Mapped[str | None] = mapped_column(String(128))
    #: SHA-256 of that request (`series.request_hash`): a different request under the same
    #: request_id is refused. NULL for series made before it was kept.
    request_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None]

    __table_args__ = (
        UniqueConstraint("tenant_id", "request_id"),
        Index(None, "tenant_id", "created_at", "id"),
        # The materialiser's round: live active series that are not far enough ahead yet.
        Index(
            "ix_series_due",
            "materialised_until",
            postgresql_where=text("status = 'active' AND deleted_at IS NULL"),
            sqlite_where=text("status = 'active' AND deleted_at IS NULL"),
        ),
    )


class PostTag(Base):
    """One tag of one post, so that filtering by tag uses an index on every database."""

    __tablename__ = "post_tags"

    post_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(100), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))

    __table_args__ = (Index(None, "tenant_id", "tag"),)


class PostMedia(Base):
    """One uploaded file a post names, at its place in the post's `media_ids`: which posts name
    a file is asked of this table (DeleteMedia), what a post's files are too (BeginAttempt)."""

    __tablename__ = "post_media"

    post_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    media_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("media.id"))

    __table_args__ = (Index(None, "media_id"),)


class Target(Base):
    """One (post, account) pair: its publishing state, lease and outcome."""

    __tablename__ = "targets"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    post_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"))
    tenant_id: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    platform: Mapped[str] = mapped_column(String(20))
    content_override: Mapped[str | None] = mapped_column(Text)
    settings: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(20))
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    #: When the target may next be claimed; NULL while it must not be (draft, awaiting approval).
    next_attempt_at: Mapped[datetime | None]
    #: The instant the target was due (kept across retries, for lateness and stale_after).
    due_at: Mapped[datetime | None]
    #: Past this instant the target is MISSED instead of published late (due_at + stale_after).
    stale_at: Mapped[datetime | None]
    #: The queue slot of this target's own account, when its post was queued per target (it is
    #: then due at this instant, not at the post's `scheduled_at`); NULL otherwise.
    queued_at: Mapped[datetime | None]
    delivery_id: Mapped[uuid.UUID | None] = mapped_column(unique=True)
    delivery_revision: Mapped[int | None] = mapped_column(BigInteger)
    lease_until: Mapped[datetime | None]
    platform_post_id: Mapped[str] = mapped_column(String(200), default="")
    platform_url: Mapped[str] = mapped_column(String(2048), default="")
    last_error_class: Mapped[str] = mapped_column(String(20), default="")
    last_error_code: Mapped[str] = mapped_column(String(100), default="")
    last_error_message: Mapped[str] = mapped_column(Text, default="")
    published_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    post: Mapped[Post] = relationship(back_populates="targets")
    attempts: Mapped[list[Attempt]] = relationship(
        back_populates="target", order_by="Attempt.number", cascade="all, delete-orphan"
    )

    __table_args__ = (
        UniqueConstraint("post_id", "account_id"),
        # Claiming reads only due, claimable rows: the partial index keeps its cost proportional
        # to what is due, not to the size of the table.
        Index(
            "ix_targets_claimable",
            "next_attempt_at",
            postgresql_where=text("status IN ('pending', 'retry_wait')"),
            sqlite_where=text("status IN ('pending', 'retry_wait')"),
        ),
        Index(
            "ix_targets_leased",
            "lease_until",
            postgresql_where=text("status IN ('queued', 'publishing')"),
            sqlite_where=text("status IN ('queued', 'publishing')"),
        ),
        Index(None, "account_id", "status"),
        # Lists filtered by platform find the posts of a platform the tenant seldom uses here.
        Index(None, "tenant_id", "platform", "status"),
    )


class Attempt(Base):
    """One try at a target, written before the platform call and completed after it."""

    __tablename__ = "attempts"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    target_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("targets.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    delivery_id: Mapped[uuid.UUID]
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    published: Mapped[bool] = mapped_column(Boolean, default=False)
    http_status: Mapped[int] = mapped_column(Integer, default=0)
    error_class: Mapped[str] = mapped_column(String(20), default="")
    error_code: Mapped[str] = mapped_column(String(100), default="")
    message: Mapped[str] = mapped_column(Text, default="")
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    #: '' (never said), 'uploading' (sending media, nothing public yet) or 'publishing' (the
    #: call that makes the post public is under way): `MarkAttempt`.
    stage: Mapped[str] = mapped_column(String(12), default="", server_default=text("''"))
    #: The digest of the publisher's key for the handling that began this attempt
    #: (`BeginAttempts`; see `service_layer.dispatch.begin._digest`): the same begin asked again
    #: with that key, after its answer was lost, is answered with this attempt.
    begin_key: Mapped[uuid.UUID | None]

    target: Mapped[Target] = relationship(back_populates="attempts")

    __table_args__ = (UniqueConstraint("target_id", "number"),)


class StatsTotal(Base):
    """What GetStats counts, kept up to date by triggers on posts and targets (migration 0005):
    a tenant's live posts by status (platform ''), and their targets by platform and status.

    On PostgreSQL the triggers append to `stats_deltas` instead, and the api folds the deltas
    in now and then: a total is the row here plus its pending deltas.
    """

    __tablename__ = "stats_totals"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    platform: Mapped[str] = mapped_column(String(20), primary_key=True)
    status: Mapped[str] = mapped_column(String(24), primary_key=True)
    total: Mapped[int] = mapped_column(BigInteger)


class StatsDelta(Base):
    """A change to a `stats_totals` row not folded in yet (PostgreSQL): every statement that
    changes posts or targets appends its own rows, so concurrent writers never wait for each
    other on a shared total."""

    __tablename__ = "stats_deltas"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    tenant_id: Mapped[str] = mapped_column(String(64))
    platform: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(24))
    delta: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index(None, "tenant_id"),)


class OutboxEvent(Base):
    """A lifecycle event written with the change it describes, relayed to NATS once."""

    __tablename__ = "outbox"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    event_id: Mapped[uuid.UUID] = mapped_column(unique=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(40))
    #: The serialized kairos.events.v1.LifecycleEvent.
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    relayed_at: Mapped[datetime | None]

    __table_args__ = (
        Index(
            "ix_outbox_unrelayed",
            "seq",
            postgresql_where=text("relayed_at IS NULL"),
            sqlite_where=text("relayed_at IS NULL"),
        ),
    )


class Media(Base):
    """A media file a tenant uploaded: what its bytes were probed to be, and where they are kept
    (`storage_key` in the media store). Deleting it marks the row and removes the stored bytes."""

    __tablename__ = "media"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(String(64))
    #: image, gif or video (`kairos_media.MediaKind`).
    kind: Mapped[str] = mapped_column(String(8))
    content_type: Mapped[str] = mapped_column(String(100))
    file_name: Mapped[str] = mapped_column(String(255), default="")
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    #: Videos only.
    duration_seconds: Mapped[float | None] = mapped_column(Double)
    video_codec: Mapped[str] = mapped_column(String(32), default="")
    audio_codec: Mapped[str] = mapped_column(String(32), default="")
    frame_rate: Mapped[float | None] = mapped_column(Double)
    bit_rate: Mapped[int | None] = mapped_column(BigInteger)
    storage_key: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None]

    __table_args__ = (
        # A tenant's live media, newest first (ListMedia's order and its page tokens).
        Index(
            "ix_media_live_tenant_id_created_at_id",
            "tenant_id",
            "created_at",
            "id",
            postgresql_where=text("deleted_at IS NULL"),
            sqlite_where=text("deleted_at IS NULL"),
        ),
    )


class AccountQueue(Base):
    """An account's posting queue: its weekly slots (`domain.queue`) and their zone. Adding to
    the queue locks this row, so concurrent adds on one account take its slots in turn."""

    __tablename__ = "account_queues"

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    tenant_id: Mapped[str] = mapped_column(String(64))
    time_zone: Mapped[str] = mapped_column(String(64))
    #: [[ISO weekday, minute of the day], ...], sorted.
    slots: Mapped[list[list[int]]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class QueuedSlot(Base):
    """A queue slot of an account held by a post. The primary key is the rule that two posts
    never hold one slot of one account. A row whose post has since left that instant (moved,
    unscheduled, deleted) holds nothing: it is ignored when read and removed by the next add."""

    __tablename__ = "queued_slots"

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    slot_at: Mapped[datetime] = mapped_column(primary_key=True)
    post_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"))
    tenant_id: Mapped[str] = mapped_column(String(64))

    __table_args__ = (Index(None, "post_id"),)


class Webhook(Base):
    """A tenant's webhook endpoint. Its signing secret is encrypted under KAIROS_SECRET_KEY, bound
    to the row's id, like account credentials."""

    __tablename__ = "webhooks"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(Text)
    #: The event names (outbox names: "published", "needs_reauth" ...) sent; empty: every one.
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    description: Mapped[str] = mapped_column(Text, default="")
    #: enabled or disabled.
    status: Mapped[str] = mapped_column(String(12))
    disabled_reason: Mapped[str] = mapped_column(Text, default="")
    #: Since when every try has failed; NULL while the endpoint answers 2xx.
    failing_since: Mapped[datetime | None]
    #: When the api learnt of the last failed try: after a quiet spell a failure starts
    #: `failing_since` afresh.
    last_failed_at: Mapped[datetime | None]
    secret: Mapped[bytes] = mapped_column(LargeBinary)
    secret_hint: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (Index(None, "tenant_id", "created_at", "id"),)


class WebhookDelivery(Base):
    """One lifecycle event to send to one endpoint, with the body built once."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    webhook_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    tenant_id: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[str] = mapped_column(String(64))
    #: The event's outbox name ("published" ...).
    event_type: Mapped[str] = mapped_column(String(40))
    body: Mapped[str] = mapped_column(Text)
    #: pending, delivered or failed.
    status: Mapped[str] = mapped_column(String(12))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: Tries made before the last redelivery: the retry schedule starts again after them.
    attempts_before: Mapped[int] = mapped_column(Integer, default=0)
    #: When it is due while pending; a claim moves it to the end of its lease.
    next_attempt_at: Mapped[datetime | None]
    #: When the last claim's lease ends (NULL when never claimed).
    leased_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]

    __table_args__ = (
        UniqueConstraint("webhook_id", "event_id"),
        Index(None, "webhook_id", "created_at", "id"),
        # The claim reads only pending deliveries, soonest first.
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
    )


class WebhookAttempt(Base):
    """One try at a delivery, as the publisher reported it."""

    __tablename__ = "webhook_attempts"

    delivery_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), primary_key=True
    )
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    attempted_at: Mapped[datetime]
    #: 0 when there was no answer.
    http_status: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    response_excerpt: Mapped[str] = mapped_column(Text, default="")
