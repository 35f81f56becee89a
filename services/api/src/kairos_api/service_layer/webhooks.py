"""Outbound webhooks: tenants' endpoints, and the deliveries the publisher makes to them.

The api keeps the endpoints, their secrets (encrypted at rest, bound to the endpoint's id, like
account credentials) and the delivery log; the publisher reads lifecycle events from
KAIROS_EVENTS and calls the three internal handlers at the end of this module:

- `record_events`: one delivery per enabled endpoint of the event's tenant whose filter matches,
  with its JSON body built once. UNIQUE(webhook_id, event_id) makes recording the same event
  again a no-op, so the publisher may send a batch twice.
- `claim_deliveries`: due pending deliveries of enabled endpoints, leased by moving their
  `next_attempt_at` to the end of the lease (PostgreSQL: FOR UPDATE SKIP LOCKED, so publisher
  copies take different rows; SQLite: one writer at a time). A lease that ends makes the
  delivery due again.
- `complete_deliveries`: each try is written to the log. 2xx delivers; anything else schedules
  the next try per KAIROS_WEBHOOK_RETRY_SCHEDULE_SECONDS, or gives up after its last step. A
  try reported with another number than the one claimed (its lease ended and the delivery was
  claimed again, and tried, meanwhile) is ignored, so no try counts twice. An endpoint every
  delivery of which has failed for KAIROS_WEBHOOK_DISABLE_AFTER_SECONDS is disabled, its
  pending deliveries given up, and a `webhook_disabled` event written, all in one transaction.
  A failure after a quiet spell (no failed try for longer than the schedule's longest step and
  the longest lease, an hour) starts the failing time afresh.

Locks, on PostgreSQL: a change to an endpoint row takes FOR NO KEY UPDATE (only deleting one
takes FOR UPDATE). The foreign key check of a new delivery takes FOR KEY SHARE on its endpoint,
which FOR NO KEY UPDATE lets through, so recording never waits on completing or on
UpdateWebhook (nor they on it), and the order in which either meets the endpoints cannot
deadlock them.

`prune_log_until` deletes settled deliveries older than KAIROS_WEBHOOK_LOG_RETENTION_SECONDS,
with their tries, about once a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Table, delete, func, literal_column, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from kairos.events.v1 import events_pb2
from kairos_api.adapters import convert
from kairos_api.adapters.crypto import CredentialDecryptError
from kairos_api.adapters.orm import (
    OutboxEvent,
    Webhook,
    WebhookAttempt,
    WebhookDelivery,
    id_floor,
    new_id,
)
from kairos_api.adapters.outbox import EVENT_TYPES, lifecycle_row
from kairos_api.domain import webhooks as rules
from kairos_api.service_layer.application import Application
from kairos_api.service_layer.posts.page_tokens import Cursor, decode_token, encode_token
from kairos_api.service_layer.posts.rules import parse_id
from kairos_api.service_layer.unit_of_work import UnitOfWork
from kairos_common import errors
from kairos_common.errors import FieldViolation

log = logging.getLogger(__name__)

ENABLED = "enabled"
DISABLED = "disabled"
PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"
DELIVERY_STATUSES = (PENDING, DELIVERED, FAILED)

#: Page sizes of ListWebhooks and ListWebhookDeliveries (webhooks.proto).
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
#: Endpoints one tenant may have.
MAX_WEBHOOKS = 50
#: The most deliveries one claim hands out, whatever it asks for.
MAX_CLAIM = 500
MAX_LEASE = timedelta(hours=1)
#: Deliveries written per INSERT statement (eleven parameters each).
INSERT_ROWS = 1000
#: Longest error text and answer excerpt kept per try.
MAX_ERROR = 1000
MAX_EXCERPT = 500
OWNER_DISABLED = "disabled by its owner"
#: Deliveries deleted per pruning statement, and seconds between prunings of the log.
PRUNE_BATCH = 5000
PRUNE_EVERY = 60.0

#: Event names (as the outbox writes them) by protobuf type.
EVENT_NAMES: dict[int, str] = {value: name for name, value in EVENT_TYPES.items()}
ACCOUNT_EVENTS = frozenset({"needs_reauth"})


def body_type(name: str) -> str:
    """The `type` of a webhook body: "post.published", "account.needs_reauth",
    "webhook.disabled"."""
    if name in ACCOUNT_EVENTS:
        return f"account.{name}"
    if name == "webhook_disabled":
        return "webhook.disabled"
    return f"post.{name}"


def rfc3339(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def event_body(event: events_pb2.LifecycleEvent, name: str) -> str:
    """The JSON a webhook receives for an event: its type, when it happened, and its fields
    that are set."""
    data: dict[str, Any] = {"event_id": event.event_id}
    for key in ("post_id", "target_id", "account_id", "webhook_id"):
        if value := getattr(event, key):
            data[key] = value
    if post_status := convert.post_status_from_proto(event.post_status):
        data["post_status"] = str(post_status)
    if target_status := convert.target_status_from_proto(event.target_status):
        data["target_status"] = str(target_status)
    if event.revision:
        data["revision"] = event.revision
    if event.detail:
        data["detail"] = event.detail
    occurred = convert.from_timestamp(event.occurred_at, "occurred_at")
    return json.dumps(
        {"type": body_type(name), "timestamp": rfc3339(occurred), "data": data},
        separators=(",", ":"),
        ensure_ascii=False,
    )


# ---------------------------------------------------------------------------------------------
# The public API


@dataclass(frozen=True)
class WebhookChanges:
    """UpdateWebhook: the fields named in `paths` are set from the others."""

    paths: Sequence[str]
    url: str = ""
    events: Sequence[int] = ()
    description: str = ""
    #: "enabled" or "disabled"; "" when the request named neither.
    status: str = ""


@dataclass(frozen=True)
class DeliveryView:
    """A delivery and its tries, oldest first."""

    delivery: WebhookDelivery
    attempts: list[WebhookAttempt] = field(default_factory=list)


def _check_url(app: Application, url: str, found: list[FieldViolation], where: str) -> None:
    found.extend(
        rules.url_violations(
            url,
            where,
            allow_http=app.settings.allow_http_media,
            allowed_networks=app.settings.webhook_allowed_networks,
        )
    )


def _event_names(events: Sequence[int], where: str, found: list[FieldViolation]) -> list[str]:
    names: list[str] = []
    for index, value in enumerate(events):
        name = EVENT_NAMES.get(value)
        if name is None:
            found.append(FieldViolation(f"{where}[{index}]", f"{value} is not a known event type"))
        elif name not in names:
            names.append(name)
    return names


def _check_description(text: str, where: str, found: list[FieldViolation]) -> None:
    if len(text) > rules.MAX_DESCRIPTION_LENGTH:
        found.append(
            FieldViolation(
                where, f"is {len(text):,} characters long; at most {rules.MAX_DESCRIPTION_LENGTH}"
            )
        )


def _seal(app: Application, webhook_id: uuid.UUID, secret: str) -> bytes:
    return app.cipher.encrypt(secret.encode(), associated=f"webhook:{webhook_id}")


def _unseal(app: Application, webhook: Webhook) -> str:
    return app.cipher.decrypt(webhook.secret, associated=f"webhook:{webhook.id}").decode()


async def create_webhook(
    app: Application, tenant: str, url: str, events: Sequence[int], description: str
) -> tuple[Webhook, str]:
    """Register an endpoint; returns it and its secret, which is never shown again."""
    found: list[FieldViolation] = []
    _check_url(app, url, found, "url")
    names = _event_names(events, "events", found)
    _check_description(description, "description", found)
    if found:
        raise errors.InvalidArgument.collect(found)
    secret = rules.new_secret()
    now = app.clock()
    webhook_id = new_id()
    webhook = Webhook(
        id=webhook_id,
        tenant_id=tenant,
        url=url,
        events=names,
        description=description,
        status=ENABLED,
        disabled_reason="",
        failing_since=None,
        secret=_seal(app, webhook_id, secret),
        secret_hint=rules.secret_hint(secret),
        created_at=now,
        updated_at=now,
    )
    async with app.uow() as uow:
        count = await uow.session.scalar(
            select(func.count()).select_from(Webhook).where(Webhook.tenant_id == tenant)
        )
        if (count or 0) >= MAX_WEBHOOKS:
            raise errors.FailedPrecondition(
                f"a tenant may have at most {MAX_WEBHOOKS} webhook endpoints; delete one first"
            )
        uow.session.add(webhook)
        await uow.commit()
    return webhook, secret


async def _owned(
    uow: UnitOfWork,
    tenant: str,
    webhook_id: str,
    where: str,
    *,
    lock: Literal["change", "delete", ""] = "change",
) -> Webhook:
    """The tenant's endpoint, or NOT_FOUND. `lock` is "change" (FOR NO KEY UPDATE: recording
    deliveries for it goes on meanwhile), "delete" (FOR UPDATE) or "" (none)."""
    wanted = parse_id(webhook_id, where)
    query = select(Webhook).where(Webhook.id == wanted, Webhook.tenant_id == tenant)
    if lock:
        query = query.with_for_update(key_share=lock == "change")
    webhook = await uow.session.scalar(query)
    if webhook is None:
        raise errors.NotFound(f"webhook {webhook_id} not found")
    return webhook


async def get_webhook(app: Application, tenant: str, webhook_id: str) -> Webhook:
    async with app.uow() as uow:
        return await _owned(uow, tenant, webhook_id, "webhook_id", lock="")


async def list_webhooks(
    app: Application, tenant: str, page_size: int, page_token: str
) -> tuple[list[Webhook], str]:
    """A page of the tenant's endpoints, newest first, and the next page's token."""
    size = _page_size(page_size)
    fingerprint = b"webhooks"
    cursor = (
        decode_token(page_token, fingerprint, "created_newest", listing="ListWebhooks")
        if page_token
        else None
    )
    query = select(Webhook).where(Webhook.tenant_id == tenant)
    if cursor is not None and cursor.at is not None:
        query = query.where(
            (Webhook.created_at < cursor.at)
            | ((Webhook.created_at == cursor.at) & (Webhook.id < cursor.post_id))
        )
    query = query.order_by(Webhook.created_at.desc(), Webhook.id.desc()).limit(size + 1)
    async with app.uow() as uow:
        found = list((await uow.session.execute(query)).scalars())
    token = ""
    if len(found) > size:
        del found[size:]
        token = encode_token(fingerprint, Cursor(found[-1].created_at, found[-1].id))
    return found, token


def _page_size(page_size: int) -> int:
    if page_size < 0:
        raise errors.InvalidArgument.of("page_size", "must not be negative")
    return min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


UPDATABLE = ("url", "events", "description", "status")


async def update_webhook(
    app: Application, tenant: str, webhook_id: str, changes: WebhookChanges
) -> Webhook:
    """Change the fields named in `changes.paths`. Enabling clears `failing_since` and the
    reason; disabling gives up the endpoint's pending deliveries, and so does enabling (those
    recorded while it was being disabled)."""
    found: list[FieldViolation] = []
    paths = list(dict.fromkeys(changes.paths))
    if not paths:
        found.append(FieldViolation("update_mask", "name at least one field to change"))
    for path in paths:
        if path not in UPDATABLE:
            found.append(
                FieldViolation("update_mask", f"unknown field {path!r}; use {', '.join(UPDATABLE)}")
            )
    if "url" in paths:
        _check_url(app, changes.url, found, "webhook.url")
    names = _event_names(changes.events, "webhook.events", found) if "events" in paths else []
    if "description" in paths:
        _check_description(changes.description, "webhook.description", found)
    if "status" in paths and changes.status not in (ENABLED, DISABLED):
        found.append(FieldViolation("webhook.status", "must be ENABLED or DISABLED"))
    if found:
        raise errors.InvalidArgument.collect(found)
    now = app.clock()
    async with app.uow() as uow:
        webhook = await _owned(uow, tenant, webhook_id, "webhook_id")
        if "url" in paths:
            webhook.url = changes.url
        if "events" in paths:
            webhook.events = names
        if "description" in paths:
            webhook.description = changes.description
        if "status" in paths and changes.status != webhook.status:
            webhook.status = changes.status
            if changes.status == ENABLED:
                webhook.disabled_reason = ""
                webhook.failing_since = None
                webhook.last_failed_at = None
                # A delivery recorded while the endpoint was being disabled can be left
                # pending (recording does not lock the endpoint); sent now it would be days
                # late. Disabling gave up all the others, so every pending one is such.
                await _give_up_pending(uow, webhook.id)
            else:
                webhook.disabled_reason = OWNER_DISABLED
                await _give_up_pending(uow, webhook.id)
        webhook.updated_at = now
        await uow.commit()
    return webhook


async def delete_webhook(app: Application, tenant: str, webhook_id: str) -> None:
    """Remove an endpoint with its deliveries and their tries."""
    async with app.uow() as uow:
        webhook = await _owned(uow, tenant, webhook_id, "webhook_id", lock="delete")
        # The foreign keys cascade on both databases (SQLite with foreign_keys on).
        await uow.session.delete(webhook)
        await uow.commit()


async def rotate_secret(app: Application, tenant: str, webhook_id: str) -> tuple[Webhook, str]:
    """A new secret for the endpoint; the old one signs nothing from now on."""
    secret = rules.new_secret()
    async with app.uow() as uow:
        webhook = await _owned(uow, tenant, webhook_id, "webhook_id")
        webhook.secret = _seal(app, webhook.id, secret)
        webhook.secret_hint = rules.secret_hint(secret)
        webhook.updated_at = app.clock()
        await uow.commit()
    return webhook, secret


async def list_deliveries(
    app: Application,
    tenant: str,
    webhook_id: str,
    status: str,
    page_size: int,
    page_token: str,
) -> tuple[list[DeliveryView], str]:
    """A page of an endpoint's deliveries (of one status, or all for ""), newest first, each
    with its tries."""
    size = _page_size(page_size)
    wanted = parse_id(webhook_id, "webhook_id")
    fingerprint = hashlib.sha256(f"deliveries\0{wanted}\0{status}".encode()).digest()[:8]
    cursor = (
        decode_token(page_token, fingerprint, "created_newest", listing="ListWebhookDeliveries")
        if page_token
        else None
    )
    async with app.uow() as uow:
        exists = await uow.session.scalar(
            select(Webhook.id).where(Webhook.id == wanted, Webhook.tenant_id == tenant)
        )
        if exists is None:
            raise errors.NotFound(f"webhook {webhook_id} not found")
        query = select(WebhookDelivery).where(WebhookDelivery.webhook_id == wanted)
        if status:
            query = query.where(WebhookDelivery.status == status)
        if cursor is not None and cursor.at is not None:
            query = query.where(
                (WebhookDelivery.created_at < cursor.at)
                | (
                    (WebhookDelivery.created_at == cursor.at)
                    & (WebhookDelivery.id < cursor.post_id)
                )
            )
        query = query.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc()).limit(
            size + 1
        )
        deliveries = list((await uow.session.execute(query)).scalars())
        token = ""
        if len(deliveries) > size:
            del deliveries[size:]
            last = deliveries[-1]
            token = encode_token(fingerprint, Cursor(last.created_at, last.id))
        views = {d.id: DeliveryView(d) for d in deliveries}
        if views:
            attempts = await uow.session.execute(
                select(WebhookAttempt)
                .where(WebhookAttempt.delivery_id.in_(list(views)))
                .order_by(WebhookAttempt.delivery_id, WebhookAttempt.number)
            )
            for attempt in attempts.scalars():
                views[attempt.delivery_id].attempts.append(attempt)
    return list(views.values()), token


async def redeliver(app: Application, tenant: str, delivery_id: str) -> DeliveryView:
    """Make a delivered or failed delivery due now, as a new try with the whole retry schedule
    ahead of it."""
    wanted = parse_id(delivery_id, "delivery_id")
    now = app.clock()
    async with app.uow() as uow:
        delivery = await uow.session.scalar(
            select(WebhookDelivery)
            .where(WebhookDelivery.id == wanted, WebhookDelivery.tenant_id == tenant)
            .with_for_update()
        )
        if delivery is None:
            raise errors.NotFound(f"webhook delivery {delivery_id} not found")
        webhook = await uow.session.get_one(Webhook, delivery.webhook_id)
        if webhook.status != ENABLED:
            raise errors.FailedPrecondition(
                f"webhook {webhook.id} is disabled; enable it before redelivering"
            )
        if delivery.status == PENDING:
            raise errors.FailedPrecondition(
                f"webhook delivery {delivery_id} is still pending; it is tried again by itself"
            )
        delivery.status = PENDING
        delivery.attempts_before = delivery.attempts
        delivery.next_attempt_at = now
        delivery.delivered_at = None
        attempts = list(
            (
                await uow.session.execute(
                    select(WebhookAttempt)
                    .where(WebhookAttempt.delivery_id == wanted)
                    .order_by(WebhookAttempt.number)
                )
            ).scalars()
        )
        await uow.commit()
    return DeliveryView(delivery, attempts)


async def _give_up_pending(uow: UnitOfWork, webhook_id: uuid.UUID) -> None:
    await uow.session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == webhook_id, WebhookDelivery.status == PENDING)
        .values(status=FAILED, next_attempt_at=None)
        .execution_options(synchronize_session=False)
    )


# ---------------------------------------------------------------------------------------------
# The publisher's side


async def record_events(
    app: Application, events: Sequence[events_pb2.LifecycleEvent]
) -> tuple[int, datetime | None]:
    """One delivery per enabled endpoint of each event's tenant whose filter matches; how many
    were new, and when the first of them is due (now), if any was."""
    usable: list[tuple[events_pb2.LifecycleEvent, str]] = []
    for event in events:
        name = EVENT_NAMES.get(event.type)
        if name is None or not event.tenant_id or not 0 < len(event.event_id) <= 64:
            # Nothing a tenant could be sent; the publisher acknowledges it all the same.
            log.warning("webhook events: skipped event %r of type %d", event.event_id, event.type)
            continue
        usable.append((event, name))
    if not usable:
        return 0, None
    tenants = sorted({event.tenant_id for event, _ in usable})
    now = app.clock()
    async with app.uow() as uow:
        endpoints: dict[str, list[tuple[uuid.UUID, list[str]]]] = {t: [] for t in tenants}
        # In id order, the order completing locks them in: an event's deliveries are written,
        # and their endpoints checked, in that order too.
        listed = await uow.session.execute(
            select(Webhook.id, Webhook.tenant_id, Webhook.events)
            .where(Webhook.tenant_id.in_(tenants), Webhook.status == ENABLED)
            .order_by(Webhook.id)
        )
        for webhook_id, tenant_id, names in listed.all():
            endpoints[tenant_id].append((webhook_id, names))
        rows: list[dict[str, Any]] = []
        seen: set[tuple[uuid.UUID, str]] = set()
        for event, name in usable:
            body: str | None = None
            for webhook_id, names in endpoints[event.tenant_id]:
                if names and name not in names:
                    continue
                if name == "webhook_disabled" and event.webhook_id == str(webhook_id):
                    continue  # an endpoint is not told of its own disabling
                if (webhook_id, event.event_id) in seen:
                    continue
                seen.add((webhook_id, event.event_id))
                body = body if body is not None else event_body(event, name)
                rows.append(
                    {
                        "id": new_id(),
                        "webhook_id": webhook_id,
                        "tenant_id": event.tenant_id,
                        "event_id": event.event_id,
                        "event_type": name,
                        "body": body,
                        "status": PENDING,
                        "attempts": 0,
                        "attempts_before": 0,
                        "next_attempt_at": now,
                        "created_at": now,
                    }
                )
        if not rows:
            return 0, None
        insert = postgresql_insert if uow.on_postgresql else sqlite_insert
        table = WebhookDelivery.__table__
        assert isinstance(table, Table)
        recorded = 0
        # In parts: one statement's parameters are limited (SQLite 32,766, PostgreSQL 65,535).
        for start in range(0, len(rows), INSERT_ROWS):
            statement = (
                insert(table)
                .values(rows[start : start + INSERT_ROWS])
                .on_conflict_do_nothing(index_elements=["webhook_id", "event_id"])
                .returning(table.c.id)
            )
            recorded += len((await uow.session.execute(statement)).all())
        await uow.commit()
    return recorded, (now if recorded else None)


@dataclass(frozen=True)
class Send:
    """One delivery to make now."""

    delivery_id: uuid.UUID
    webhook_id: uuid.UUID
    url: str
    secret: str
    event_id: str
    event_type: str
    body: str
    attempt_number: int


#: Pending deliveries, with the status as a literal: the planner then matches the partial due
#: index even in the generic plan of a prepared statement (a bound value would not).
IS_PENDING = WebhookDelivery.status == literal_column("'pending'")


async def _next_due(uow: UnitOfWork) -> datetime | None:
    """When the earliest pending delivery of an enabled endpoint is due: the due index read in
    order up to the first one whose endpoint is enabled."""
    return await uow.session.scalar(
        select(WebhookDelivery.next_attempt_at)
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .where(IS_PENDING, Webhook.status == ENABLED)
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(1)
    )


async def claim_deliveries(
    app: Application, limit: int, lease: timedelta
) -> tuple[list[Send], datetime | None]:
    """Up to `limit` due deliveries, leased for `lease`; and when the next one is due."""
    if limit < 0:
        raise errors.InvalidArgument.of("limit", "must not be negative")
    if not timedelta(0) < lease <= MAX_LEASE:
        raise errors.InvalidArgument.of("lease", "must be above 0 and at most an hour")
    size = min(limit or 100, MAX_CLAIM)
    now = app.clock()
    until = now + lease
    sends: list[Send] = []
    async with app.uow() as uow:
        query = (
            select(WebhookDelivery)
            .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
            .where(
                IS_PENDING,
                WebhookDelivery.next_attempt_at <= now,
                Webhook.status == ENABLED,
            )
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(size)
        )
        if uow.on_postgresql:
            query = query.with_for_update(of=WebhookDelivery, skip_locked=True)
        deliveries = list((await uow.session.execute(query)).scalars())
        if deliveries:
            ids = [d.id for d in deliveries]
            await uow.session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_(ids))
                .values(next_attempt_at=until, leased_until=until)
                .execution_options(synchronize_session=False)
            )
            hooks = {
                w.id: w
                for w in (
                    await uow.session.execute(
                        select(Webhook).where(Webhook.id.in_({d.webhook_id for d in deliveries}))
                    )
                ).scalars()
            }
            secrets: dict[uuid.UUID, str | None] = {}
            for webhook_id, webhook in hooks.items():
                try:
                    secrets[webhook_id] = _unseal(app, webhook)
                except CredentialDecryptError as error:
                    # Its deliveries stay leased and come back when the key is restored.
                    log.error("webhook %s: its secret cannot be decrypted: %s", webhook_id, error)
                    secrets[webhook_id] = None
            for delivery in deliveries:
                secret = secrets[delivery.webhook_id]
                if secret is None:
                    continue
                sends.append(
                    Send(
                        delivery_id=delivery.id,
                        webhook_id=delivery.webhook_id,
                        url=hooks[delivery.webhook_id].url,
                        secret=secret,
                        event_id=delivery.event_id,
                        event_type=delivery.event_type,
                        body=delivery.body,
                        attempt_number=delivery.attempts + 1,
                    )
                )
        next_due = await _next_due(uow)
        await uow.commit()
    return sends, next_due


@dataclass(frozen=True)
class TryResult:
    """What one try did, as the publisher reports it."""

    delivery_id: uuid.UUID
    attempt_number: int
    http_status: int
    error: str
    latency_ms: int
    response_excerpt: str
    attempted_at: datetime

    @property
    def delivered(self) -> bool:
        return 200 <= self.http_status < 300


async def complete_deliveries(app: Application, results: Sequence[TryResult]) -> datetime | None:
    """Record each try and decide what follows it; when the earliest pending delivery is due."""
    settings = app.settings
    now = app.clock()
    quiet = max(settings.webhook_retry_schedule) + MAX_LEASE
    async with app.uow() as uow:
        ids = sorted({r.delivery_id for r in results})
        # Endpoints are locked before their deliveries, each in id order, as UpdateWebhook
        # does (the endpoint, then its deliveries): the two never wait on each other crosswise.
        # FOR NO KEY UPDATE lets recording (FOR KEY SHARE) go on; see the module's docstring.
        owners = await uow.session.execute(
            select(WebhookDelivery.webhook_id).where(WebhookDelivery.id.in_(ids)).distinct()
        )
        hook_ids = sorted(owners.scalars())
        hooks = {
            w.id: w
            for w in (
                await uow.session.execute(
                    select(Webhook)
                    .where(Webhook.id.in_(hook_ids))
                    .order_by(Webhook.id)
                    .with_for_update(key_share=True)
                )
            ).scalars()
        }
        query = (
            select(WebhookDelivery)
            .where(WebhookDelivery.id.in_(ids))
            .order_by(WebhookDelivery.id)
            .with_for_update()
        )
        deliveries = {d.id: d for d in (await uow.session.execute(query)).scalars()}
        failing: dict[uuid.UUID, TryResult] = {}
        for result in results:
            delivery = deliveries.get(result.delivery_id)
            if (
                delivery is None
                or delivery.webhook_id not in hooks
                or delivery.status != PENDING
                or result.attempt_number != delivery.attempts + 1
            ):
                log.info(
                    "webhook delivery %s: try %d ignored (stale, or the delivery is settled)",
                    result.delivery_id,
                    result.attempt_number,
                )
                continue
            uow.session.add(
                WebhookAttempt(
                    delivery_id=delivery.id,
                    number=result.attempt_number,
                    attempted_at=result.attempted_at,
                    http_status=result.http_status,
                    error=_storable(result.error, MAX_ERROR),
                    latency_ms=result.latency_ms,
                    response_excerpt=_storable(result.response_excerpt, MAX_EXCERPT),
                )
            )
            delivery.attempts = result.attempt_number
            delivery.leased_until = None
            webhook = hooks[delivery.webhook_id]
            if result.delivered:
                delivery.status = DELIVERED
                delivery.delivered_at = result.attempted_at
                delivery.next_attempt_at = None
                webhook.failing_since = None
                failing.pop(webhook.id, None)
                continue
            failed_tries = delivery.attempts - delivery.attempts_before
            delivery.next_attempt_at = rules.next_try(
                settings.webhook_retry_schedule, failed_tries, now
            )
            if delivery.next_attempt_at is None:
                delivery.status = FAILED
            last_failed = webhook.last_failed_at
            if webhook.failing_since is None or last_failed is None or now - last_failed > quiet:
                # When the api learnt of the failure: never before the receiver saw the try,
                # whatever the publisher's clock says. A failure after a quiet spell starts
                # afresh: a delivery that keeps failing is tried again within the schedule's
                # longest step (and a lease, if a publisher died holding it), so a longer gap
                # means nothing was failing meanwhile, and an old failure says nothing now.
                webhook.failing_since = now
            webhook.last_failed_at = now
            failing[webhook.id] = result
        await uow.session.flush()
        for webhook_id, last in failing.items():
            webhook = hooks[webhook_id]
            since = webhook.failing_since
            if (
                webhook.status == ENABLED
                and since is not None
                and now - since >= settings.webhook_disable_after
            ):
                await _disable(uow, webhook, last, since, now, settings.webhook_disable_after)
        next_due = await _next_due(uow)
        await uow.commit()
    return next_due


def _storable(text: str, longest: int) -> str:
    """Text a receiver sent, NUL characters (which PostgreSQL text cannot hold) replaced as
    the publisher does, cut to `longest`."""
    return text.replace("\x00", "\ufffd")[:longest]


def _what_failed(result: TryResult) -> str:
    if result.error:
        return _storable(result.error, 200)
    return f"HTTP {result.http_status}"


def _span(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("day", 86_400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{value.total_seconds():g} s"


async def _disable(
    uow: UnitOfWork,
    webhook: Webhook,
    last: TryResult,
    since: datetime,
    now: datetime,
    after: timedelta,
) -> None:
    """Disable an endpoint that has failed for too long, give up its pending deliveries, and
    write the event that says so."""
    reason = (
        f"disabled by Kairos: every delivery failed for more than {_span(after)} "
        f"(since {rfc3339(since)}); the last try: {_what_failed(last)}"
    )
    webhook.status = DISABLED
    webhook.disabled_reason = reason
    webhook.updated_at = now
    await uow.session.flush()
    await _give_up_pending(uow, webhook.id)
    uow.session.add(
        OutboxEvent(
            **lifecycle_row(
                "webhook_disabled",
                tenant_id=webhook.tenant_id,
                webhook_id=webhook.id,
                detail=reason,
                now=now,
            )
        )
    )
    uow.events_written()
    log.warning("webhook %s of tenant %s: %s", webhook.id, webhook.tenant_id, reason)


async def prune_log(app: Application, cutoff: datetime) -> int:
    """Delete delivered and failed deliveries recorded before `cutoff` (a delivered one also
    delivered before it: a recent redelivery stays), with their tries, oldest first, a batch
    at a time; how many.

    Ids are time-ordered, so the oldest are found by a range of the primary key. On PostgreSQL
    rows another transaction holds (a redelivery, say) are skipped until the next round.
    """
    floor = id_floor(cutoff)
    pruned = 0
    while True:
        async with app.uow() as uow:
            oldest = (
                select(WebhookDelivery.id)
                .where(
                    WebhookDelivery.id < floor,
                    WebhookDelivery.created_at < cutoff,
                    WebhookDelivery.status.in_((DELIVERED, FAILED)),
                    (WebhookDelivery.delivered_at.is_(None))
                    | (WebhookDelivery.delivered_at < cutoff),
                )
                .order_by(WebhookDelivery.id)
                .limit(PRUNE_BATCH)
            )
            if uow.on_postgresql:
                oldest = oldest.with_for_update(skip_locked=True)
            # The tries go with them (ON DELETE CASCADE; SQLite with foreign_keys on).
            result = await uow.session.execute(
                delete(WebhookDelivery)
                .where(WebhookDelivery.id.in_(oldest.scalar_subquery()))
                .execution_options(synchronize_session=False)
            )
            await uow.commit()
        deleted = int(result.rowcount)  # type: ignore[attr-defined]
        pruned += deleted
        if deleted < PRUNE_BATCH:
            return pruned


async def prune_log_until(
    app: Application, stopping: asyncio.Event, every: float = PRUNE_EVERY
) -> None:
    """Prune the delivery log now and then every `every` seconds until `stopping` is set (the
    api's timer; every copy runs it, and copies skip each other's rows)."""
    while not stopping.is_set():
        try:
            pruned = await prune_log(app, app.clock() - app.settings.webhook_log_retention)
        except Exception as error:  # the database is away: the next round tries again
            log.warning("pruning the webhook delivery log failed: %r", error)
        else:
            if pruned:
                log.info("webhook delivery log pruned", extra={"deleted": pruned})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), every)
