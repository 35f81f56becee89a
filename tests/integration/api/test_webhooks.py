"""Outbound webhooks, api side, over real gRPC on PostgreSQL and SQLite: registering endpoints
(WebhooksService) and what the publisher asks of the api (WebhookDispatchService): recording
events once per matching endpoint, claiming with leases, completing tries per the retry
schedule, disabling an endpoint that fails for too long (afresh after a quiet spell),
redelivering, pruning the delivery log, and row locks that let recording and completing run side
by side on PostgreSQL.

The module's api retries after 60 s and then 600 s, and disables after an hour: tries are
reported with an `attempted_at` in the past to make an endpoint fail for that long, so no test
waits for it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp
from integration.api.helpers_posts import fields, refused
from nats.aio.client import Client as NatsClient
from nats.js.errors import NotFoundError
from sqlalchemy import func, select, update

from kairos.dispatch.v1 import webhooks_pb2 as dispatch_pb2
from kairos.dispatch.v1 import webhooks_pb2_grpc as dispatch_pb2_grpc
from kairos.events.v1 import events_pb2
from kairos.posts.v1 import posts_pb2, webhooks_pb2, webhooks_pb2_grpc
from kairos_api.adapters.crypto import CredentialDecryptError
from kairos_api.adapters.orm import OutboxEvent, Webhook, WebhookAttempt, WebhookDelivery, new_id
from kairos_api.bootstrap import bootstrap
from kairos_api.service_layer import rotation, webhooks
from kairos_api.service_layer.application import Application
from kairos_common.streams import EVENTS_STREAM, event_subject
from support.api import SERVICE_TOKEN, TEST_SECRET, RunningApi, violations_of

NEW_SECRET = "a-new-secret-key-with-more-than-32-characters"

OWN_API_ENV = {
    "KAIROS_WEBHOOK_RETRY_SCHEDULE_SECONDS": "60,600",
    "KAIROS_WEBHOOK_DISABLE_AFTER_SECONDS": "3600",
    "KAIROS_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
}
SERVICE = (("authorization", f"Bearer {SERVICE_TOKEN}"),)
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION

PUBLISHED = events_pb2.LIFECYCLE_EVENT_TYPE_PUBLISHED
FAILED = events_pb2.LIFECYCLE_EVENT_TYPE_FAILED
NEEDS_REAUTH = events_pb2.LIFECYCLE_EVENT_TYPE_NEEDS_REAUTH
DISABLED_EVENT = events_pb2.LIFECYCLE_EVENT_TYPE_WEBHOOK_DISABLED
PENDING = webhooks_pb2.WEBHOOK_DELIVERY_STATUS_PENDING
DELIVERED = webhooks_pb2.WEBHOOK_DELIVERY_STATUS_DELIVERED
GAVE_UP = webhooks_pb2.WEBHOOK_DELIVERY_STATUS_FAILED
OCCURRED = datetime(2030, 1, 7, 9, 30, 15, 250000, tzinfo=UTC)


def stamp(value: datetime) -> Timestamp:
    message = Timestamp()
    message.FromDatetime(value)
    return message


def when(message: Timestamp) -> datetime:
    return message.ToDatetime(tzinfo=UTC)


@dataclass
class Hooks:
    """One tenant's WebhooksService, and the publisher's WebhookDispatchService."""

    tenant: str
    metadata: tuple[tuple[str, str], ...]
    stub: webhooks_pb2_grpc.WebhooksServiceAsyncStub
    dispatch: dispatch_pb2_grpc.WebhookDispatchServiceAsyncStub
    api: RunningApi

    async def create(
        self,
        url: str = "https://hooks.example.com/kairos",
        events: Sequence[events_pb2.LifecycleEventType.ValueType] = (),
        description: str = "",
    ) -> webhooks_pb2.CreateWebhookResponse:
        return await self.stub.CreateWebhook(
            webhooks_pb2.CreateWebhookRequest(url=url, events=events, description=description),
            metadata=self.metadata,
        )

    async def get(self, webhook_id: str) -> webhooks_pb2.Webhook:
        request = webhooks_pb2.GetWebhookRequest(webhook_id=webhook_id)
        return (await self.stub.GetWebhook(request, metadata=self.metadata)).webhook

    async def update(
        self, webhook_id: str, paths: Sequence[str], **values: object
    ) -> webhooks_pb2.Webhook:
        request = webhooks_pb2.UpdateWebhookRequest(
            webhook_id=webhook_id,
            webhook=webhooks_pb2.Webhook(**values),  # type: ignore[arg-type]
            update_mask=FieldMask(paths=list(paths)),
        )
        return (await self.stub.UpdateWebhook(request, metadata=self.metadata)).webhook

    async def deliveries(
        self, webhook_id: str, status: int = 0
    ) -> list[webhooks_pb2.WebhookDelivery]:
        request = webhooks_pb2.ListWebhookDeliveriesRequest(
            webhook_id=webhook_id,
            status=webhooks_pb2.WebhookDeliveryStatus.ValueType(status),
        )
        reply = await self.stub.ListWebhookDeliveries(request, metadata=self.metadata)
        return list(reply.deliveries)

    def event(
        self, kind: int = PUBLISHED, tenant: str = "", **values: object
    ) -> events_pb2.LifecycleEvent:
        return events_pb2.LifecycleEvent(
            event_id=str(uuid.uuid4()),
            type=events_pb2.LifecycleEventType.ValueType(kind),
            occurred_at=stamp(OCCURRED),
            tenant_id=tenant or self.tenant,
            **values,  # type: ignore[arg-type]
        )

    async def record(self, *events: events_pb2.LifecycleEvent) -> int:
        reply = await self.dispatch.RecordWebhookEvents(
            dispatch_pb2.RecordWebhookEventsRequest(events=events), metadata=SERVICE
        )
        return reply.recorded

    async def claim(
        self, webhook_ids: Sequence[str], lease: float = 30.0, limit: int = 500
    ) -> list[dispatch_pb2.WebhookSend]:
        """What a claim hands out, of these endpoints."""
        reply = await self.dispatch.ClaimWebhookDeliveries(
            dispatch_pb2.ClaimWebhookDeliveriesRequest(
                limit=limit, lease=Duration(seconds=int(lease), nanos=int(lease % 1 * 1e9))
            ),
            metadata=SERVICE,
        )
        return [s for s in reply.sends if s.webhook_id in webhook_ids]

    async def complete(
        self,
        send: dispatch_pb2.WebhookSend,
        http_status: int,
        *,
        error: str = "",
        attempted_at: datetime | None = None,
        attempt_number: int = 0,
    ) -> None:
        result = dispatch_pb2.WebhookResult(
            delivery_id=send.delivery_id,
            attempt_number=attempt_number or send.attempt_number,
            http_status=http_status,
            error=error,
            latency=Duration(nanos=120_000_000),
            response_excerpt=f"answer {http_status}",
            attempted_at=stamp(attempted_at or datetime.now(UTC)),
        )
        await self.dispatch.CompleteWebhookDeliveries(
            dispatch_pb2.CompleteWebhookDeliveriesRequest(results=[result]), metadata=SERVICE
        )

    async def stored(self, webhook_id: str) -> Webhook:
        async with self.api.service.app.uow() as uow:
            return await uow.session.get_one(Webhook, uuid.UUID(webhook_id))


@pytest.fixture
async def hooks(own_api: RunningApi) -> AsyncIterator[Hooks]:
    async with own_api.client() as client:
        yield Hooks(
            client.tenant,
            client.metadata,
            webhooks_pb2_grpc.WebhooksServiceStub(client.channel),
            dispatch_pb2_grpc.WebhookDispatchServiceStub(client.channel),
            own_api,
        )


async def test_an_endpoint_is_created_read_listed_changed_rotated_and_deleted(
    hooks: Hooks,
) -> None:
    before = datetime.now(UTC)
    created = await hooks.create(events=[PUBLISHED, FAILED, PUBLISHED], description="ops")
    webhook = created.webhook
    assert created.secret.startswith("whsec_")
    assert len(base64.b64decode(created.secret.removeprefix("whsec_"), validate=True)) == 32
    assert webhook.secret_hint == created.secret[:10]
    assert webhook.url == "https://hooks.example.com/kairos"
    assert list(webhook.events) == [PUBLISHED, FAILED]
    assert webhook.description == "ops"
    assert webhook.status == webhooks_pb2.WEBHOOK_STATUS_ENABLED
    assert webhook.disabled_reason == ""
    assert not webhook.HasField("failing_since")
    assert before <= when(webhook.created_at) <= datetime.now(UTC)
    assert await hooks.get(webhook.webhook_id) == webhook

    second = (await hooks.create(url="https://b.example.com/")).webhook
    third = (await hooks.create(url="https://c.example.com/")).webhook
    page = await hooks.stub.ListWebhooks(
        webhooks_pb2.ListWebhooksRequest(page_size=2), metadata=hooks.metadata
    )
    assert [w.webhook_id for w in page.webhooks] == [third.webhook_id, second.webhook_id]
    rest = await hooks.stub.ListWebhooks(
        webhooks_pb2.ListWebhooksRequest(page_size=2, page_token=page.next_page_token),
        metadata=hooks.metadata,
    )
    assert [w.webhook_id for w in rest.webhooks] == [webhook.webhook_id]
    assert rest.next_page_token == ""

    changed = await hooks.update(
        webhook.webhook_id,
        ["url", "events", "description"],
        url="https://new.example.com/in",
        events=[NEEDS_REAUTH],
        description="new note",
    )
    assert (changed.url, list(changed.events), changed.description) == (
        "https://new.example.com/in",
        [NEEDS_REAUTH],
        "new note",
    )
    off = await hooks.update(
        webhook.webhook_id, ["status"], status=webhooks_pb2.WEBHOOK_STATUS_DISABLED
    )
    assert off.status == webhooks_pb2.WEBHOOK_STATUS_DISABLED
    assert off.disabled_reason == "disabled by its owner"
    on = await hooks.update(
        webhook.webhook_id, ["status"], status=webhooks_pb2.WEBHOOK_STATUS_ENABLED
    )
    assert (on.status, on.disabled_reason) == (webhooks_pb2.WEBHOOK_STATUS_ENABLED, "")

    rotated = await hooks.stub.RotateWebhookSecret(
        webhooks_pb2.RotateWebhookSecretRequest(webhook_id=webhook.webhook_id),
        metadata=hooks.metadata,
    )
    assert rotated.secret.startswith("whsec_")
    assert rotated.secret != created.secret
    assert rotated.webhook.secret_hint == rotated.secret[:10]
    assert (await hooks.get(webhook.webhook_id)).secret_hint == rotated.secret[:10]

    await hooks.stub.DeleteWebhook(
        webhooks_pb2.DeleteWebhookRequest(webhook_id=webhook.webhook_id), metadata=hooks.metadata
    )
    error = await refused(hooks.get(webhook.webhook_id), NOT_FOUND)
    assert error.details() == f"webhook {webhook.webhook_id} not found"


async def test_the_secret_is_stored_encrypted_and_handed_to_the_publisher_in_clear(
    hooks: Hooks,
) -> None:
    created = await hooks.create()
    row = await hooks.stored(created.webhook.webhook_id)
    key = base64.b64decode(created.secret.removeprefix("whsec_"))
    assert created.secret.encode() not in row.secret
    assert key not in row.secret
    assert row.secret_hint == created.secret[:10]
    cipher = hooks.api.service.app.cipher
    associated = f"webhook:{created.webhook.webhook_id}"
    assert cipher.decrypt(row.secret, associated=associated) == created.secret.encode()

    assert await hooks.record(hooks.event()) == 1
    [send] = await hooks.claim([created.webhook.webhook_id])
    assert send.secret == created.secret


async def test_a_key_reaches_only_its_own_tenants_endpoints(
    hooks: Hooks, own_api: RunningApi
) -> None:
    mine = (await hooks.create()).webhook
    assert await hooks.record(hooks.event()) == 1
    [delivery] = await hooks.deliveries(mine.webhook_id)
    async with own_api.client() as other:
        stub = webhooks_pb2_grpc.WebhooksServiceStub(other.channel)
        md = other.metadata
        wid = mine.webhook_id
        calls: list[Awaitable[Any]] = [
            stub.GetWebhook(webhooks_pb2.GetWebhookRequest(webhook_id=wid), metadata=md),
            stub.UpdateWebhook(
                webhooks_pb2.UpdateWebhookRequest(
                    webhook_id=wid,
                    webhook=webhooks_pb2.Webhook(description="x"),
                    update_mask=FieldMask(paths=["description"]),
                ),
                metadata=md,
            ),
            stub.DeleteWebhook(webhooks_pb2.DeleteWebhookRequest(webhook_id=wid), metadata=md),
            stub.RotateWebhookSecret(
                webhooks_pb2.RotateWebhookSecretRequest(webhook_id=wid), metadata=md
            ),
            stub.ListWebhookDeliveries(
                webhooks_pb2.ListWebhookDeliveriesRequest(webhook_id=wid), metadata=md
            ),
            stub.RedeliverWebhook(
                webhooks_pb2.RedeliverWebhookRequest(delivery_id=delivery.delivery_id),
                metadata=md,
            ),
        ]
        for call in calls:
            await refused(call, NOT_FOUND)
        listed = await stub.ListWebhooks(webhooks_pb2.ListWebhooksRequest(), metadata=md)
        assert list(listed.webhooks) == []
        # A tenant's key is not the service credential.
        denied = await refused(
            hooks.dispatch.RecordWebhookEvents(
                dispatch_pb2.RecordWebhookEventsRequest(events=[hooks.event()]), metadata=md
            ),
            grpc.StatusCode.PERMISSION_DENIED,
        )
        assert "service credential" in (denied.details() or "")
    assert (await hooks.get(mine.webhook_id)).description == ""


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (
            "",
            "is required; it must be an absolute https URL, e.g. https://hooks.example.com/kairos",
        ),
        ("http://hooks.example.com/", "must use https; http is allowed only in development"),
        ("ftp://hooks.example.com/", "must use https, not 'ftp'"),
        (
            "/relative",
            "is not absolute; it must be an absolute https URL, e.g. "
            "https://hooks.example.com/kairos",
        ),
        (
            "https://user:pw@hooks.example.com/",
            "must not contain credentials (user:password@); the signature proves the sender",
        ),
        (
            "https://hooks example.com/",
            "must not contain spaces or control characters (percent-encode them)",
        ),
        (
            "https://127.0.0.2/in",
            "must not point at a loopback address (127.0.0.2); Kairos only calls public addresses",
        ),
        (
            "https://10.1.2.3/in",
            "must not point at a private address (10.1.2.3); Kairos only calls public addresses",
        ),
        (
            "https://169.254.169.254/latest",
            "must not point at a cloud metadata address "
            "(169.254.169.254); Kairos only calls public addresses",
        ),
        (
            "https://169.254.0.1/",
            "must not point at a link-local address (169.254.0.1); Kairos only calls public "
            "addresses",
        ),
        (
            "https://[::1]:8443/",
            "must not point at a loopback address (::1); Kairos only calls public addresses",
        ),
        (
            "https://[::ffff:192.168.1.1]/",
            "must not point at a private address, as 192.168.1.1 inside ::ffff:c0a8:101; "
            "Kairos only calls public addresses",
        ),
        # 6to4 and NAT64 addresses lead to the IPv4 address they carry.
        (
            "https://[2002:a00:1::]/",
            "must not point at a private address, as 10.0.0.1 inside 2002:a00:1::; "
            "Kairos only calls public addresses",
        ),
        (
            "https://[64:ff9b::a9fe:a9fe]/latest",
            "must not point at a cloud metadata address, as 169.254.169.254 inside "
            "64:ff9b::a9fe:a9fe; Kairos only calls public addresses",
        ),
        ("https://bad_host.example.com/", "has an invalid host name 'bad_host.example.com'"),
        (
            "https://hooks.example.com" + "/a" * 1000,
            "is 2,025 characters long; at most 2,000 are allowed",
        ),
    ],
)
async def test_urls_that_are_refused(hooks: Hooks, url: str, problem: str) -> None:
    error = await refused(hooks.create(url=url), INVALID)
    assert violations_of(error) == [("url", problem)]


async def test_a_literal_address_in_the_allowed_networks_and_public_ones_are_taken(
    hooks: Hooks,
) -> None:
    for url in ("https://127.0.0.1:8443/in", "https://93.184.215.14/in", "https://[2606:4700::1]/"):
        assert (await hooks.create(url=url)).webhook.url == url


async def test_other_bad_input_names_its_field(hooks: Hooks) -> None:
    error = await refused(
        hooks.create(
            events=[PUBLISHED, events_pb2.LifecycleEventType.ValueType(99)], description="d" * 501
        ),
        INVALID,
    )
    assert violations_of(error) == [
        ("events[1]", "99 is not a known event type"),
        ("description", "is 501 characters long; at most 500"),
    ]
    webhook = (await hooks.create()).webhook
    error = await refused(hooks.update(webhook.webhook_id, []), INVALID)
    assert violations_of(error) == [("update_mask", "name at least one field to change")]
    error = await refused(hooks.update(webhook.webhook_id, ["secret", "status"]), INVALID)
    assert violations_of(error) == [
        ("update_mask", "unknown field 'secret'; use url, events, description, status"),
        ("webhook.status", "must be ENABLED or DISABLED"),
    ]
    error = await refused(
        hooks.update(webhook.webhook_id, ["url"], url="http://x.example/"), INVALID
    )
    assert fields(error) == ["webhook.url"]
    error = await refused(hooks.get("not-an-id"), INVALID)
    assert violations_of(error) == [("webhook_id", "'not-an-id' is not a valid id")]
    error = await refused(
        hooks.stub.ListWebhooks(
            webhooks_pb2.ListWebhooksRequest(page_token="nonsense"), metadata=hooks.metadata
        ),
        INVALID,
    )
    assert violations_of(error) == [("page_token", "is not a token returned by ListWebhooks")]
    error = await refused(
        hooks.dispatch.ClaimWebhookDeliveries(
            dispatch_pb2.ClaimWebhookDeliveriesRequest(limit=1, lease=Duration(seconds=7200)),
            metadata=SERVICE,
        ),
        INVALID,
    )
    assert violations_of(error) == [("lease", "must be above 0 and at most an hour")]


async def test_events_are_recorded_once_per_matching_enabled_endpoint(hooks: Hooks) -> None:
    every = (await hooks.create()).webhook.webhook_id
    published = (await hooks.create(events=[PUBLISHED])).webhook.webhook_id
    failed = (await hooks.create(events=[FAILED, DISABLED_EVENT])).webhook.webhook_id
    off = (await hooks.create()).webhook.webhook_id
    await hooks.update(off, ["status"], status=webhooks_pb2.WEBHOOK_STATUS_DISABLED)
    post_id, target_id, account_id = (str(uuid.uuid4()) for _ in range(3))
    went_out = hooks.event(
        PUBLISHED,
        post_id=post_id,
        target_id=target_id,
        account_id=account_id,
        post_status=posts_pb2.POST_STATUS_PUBLISHED,
        target_status=posts_pb2.TARGET_STATUS_PUBLISHED,
        revision=3,
    )
    gave_up = hooks.event(FAILED, post_id=post_id, detail="HTTP 403 from X")
    reauth = hooks.event(NEEDS_REAUTH, account_id=account_id)
    # The disabling of `every` goes to the others that want it, not to `every` itself.
    every_off = hooks.event(DISABLED_EVENT, webhook_id=every, detail="failing")
    strangers = hooks.event(PUBLISHED, tenant="someone-else")

    assert await hooks.record(went_out, gave_up, reauth, every_off, strangers) == 6
    assert await hooks.record(went_out, gave_up, reauth, every_off, strangers) == 0

    def events_of(deliveries: Sequence[webhooks_pb2.WebhookDelivery]) -> set[str]:
        return {d.event_id for d in deliveries}

    assert events_of(await hooks.deliveries(every)) == {
        went_out.event_id,
        gave_up.event_id,
        reauth.event_id,
    }
    assert events_of(await hooks.deliveries(published)) == {went_out.event_id}
    assert events_of(await hooks.deliveries(failed)) == {gave_up.event_id, every_off.event_id}
    assert await hooks.deliveries(off) == []

    [delivery] = await hooks.deliveries(published)
    assert delivery.status == PENDING
    assert delivery.event_type == PUBLISHED
    assert json.loads(delivery.body) == {
        "type": "post.published",
        "timestamp": "2030-01-07T09:30:15.250000Z",
        "data": {
            "event_id": went_out.event_id,
            "post_id": post_id,
            "target_id": target_id,
            "account_id": account_id,
            "post_status": "published",
            "target_status": "published",
            "revision": 3,
        },
    }
    bodies = {d.event_id: json.loads(d.body) for d in await hooks.deliveries(every)}
    assert bodies[reauth.event_id]["type"] == "account.needs_reauth"
    assert bodies[reauth.event_id]["data"] == {
        "event_id": reauth.event_id,
        "account_id": account_id,
    }
    assert bodies[gave_up.event_id]["data"]["detail"] == "HTTP 403 from X"
    disabled = {d.event_id: json.loads(d.body) for d in await hooks.deliveries(failed)}
    assert disabled[every_off.event_id] == {
        "type": "webhook.disabled",
        "timestamp": "2030-01-07T09:30:15.250000Z",
        "data": {"event_id": every_off.event_id, "webhook_id": every, "detail": "failing"},
    }


async def test_a_large_batch_is_recorded_in_parts(hooks: Hooks) -> None:
    """600 events to 2 endpoints: 1,200 deliveries, more than one INSERT takes."""
    endpoints = [(await hooks.create()).webhook.webhook_id for _ in range(2)]
    events = [hooks.event() for _ in range(600)]
    assert await hooks.record(*events) == 1200
    assert await hooks.record(*events[500:]) == 0
    page = await hooks.stub.ListWebhookDeliveries(
        webhooks_pb2.ListWebhookDeliveriesRequest(webhook_id=endpoints[1], page_size=200),
        metadata=hooks.metadata,
    )
    assert len(page.deliveries) == 200
    assert page.next_page_token
    async with hooks.api.service.app.uow() as uow:
        await uow.session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.tenant_id == hooks.tenant)
            .values(status="delivered", next_attempt_at=None)
        )
        await uow.commit()


async def test_a_claim_leases_what_it_hands_out_until_the_lease_ends(hooks: Hooks) -> None:
    webhook = (await hooks.create()).webhook.webhook_id
    event = hooks.event()
    assert await hooks.record(event) == 1
    [send] = await hooks.claim([webhook], lease=0.5)
    assert send.attempt_number == 1
    assert send.url == "https://hooks.example.com/kairos"
    assert send.message_id == event.event_id
    assert send.event_type == PUBLISHED
    [delivery] = await hooks.deliveries(webhook)
    assert send.body == delivery.body.encode()
    assert await hooks.claim([webhook]) == []  # leased

    # Once the lease ends, the delivery is handed out again, as the same try.
    again: list[dispatch_pb2.WebhookSend] = []
    for _ in range(100):
        again = await hooks.claim([webhook])
        if again:
            break
        await asyncio.sleep(0.05)
    assert [(s.delivery_id, s.attempt_number) for s in again] == [(send.delivery_id, 1)]

    # Both holders report try 1: the first report counts, the second is ignored, as is a try
    # that was never claimed.
    await hooks.complete(send, 500, error="HTTP 500")
    await hooks.complete(again[0], 200)
    await hooks.complete(send, 200, attempt_number=7)
    [delivery] = await hooks.deliveries(webhook)
    assert delivery.status == PENDING
    assert [(a.number, a.http_status, a.error) for a in delivery.attempts] == [(1, 500, "HTTP 500")]


async def test_claims_side_by_side_never_hand_out_the_same_delivery(hooks: Hooks) -> None:
    webhook = (await hooks.create()).webhook.webhook_id
    await hooks.claim([])  # whatever earlier tests left due is leased away first
    assert await hooks.record(*(hooks.event() for _ in range(30))) == 30
    claims = await asyncio.gather(*(hooks.claim([webhook], limit=10) for _ in range(4)))
    handed = [s.delivery_id for claim in claims for s in claim]
    assert len(handed) == 30
    assert len(set(handed)) == 30
    assert await hooks.claim([webhook]) == []


async def test_tries_follow_the_retry_schedule_then_give_up(hooks: Hooks) -> None:
    webhook = (await hooks.create()).webhook.webhook_id
    assert await hooks.record(hooks.event()) == 1
    [send] = await hooks.claim([webhook])
    before = datetime.now(UTC)
    await hooks.complete(send, 503, error="HTTP 503")
    [delivery] = await hooks.deliveries(webhook)
    assert delivery.status == PENDING
    due = when(delivery.next_attempt_at)
    assert before + timedelta(seconds=60) <= due <= datetime.now(UTC) + timedelta(seconds=60)
    stored = await hooks.stored(webhook)
    assert stored.failing_since is not None
    assert stored.status == "enabled"

    # Tries are reported as they were claimed; the schedule's second step is 600 s.
    second = dispatch_pb2.WebhookSend(delivery_id=send.delivery_id, attempt_number=2)
    before = datetime.now(UTC)
    await hooks.complete(second, 0, error="connection refused")
    [delivery] = await hooks.deliveries(webhook)
    due = when(delivery.next_attempt_at)
    assert before + timedelta(seconds=600) <= due <= datetime.now(UTC) + timedelta(seconds=600)

    third = dispatch_pb2.WebhookSend(delivery_id=send.delivery_id, attempt_number=3)
    await hooks.complete(third, 500)
    [delivery] = await hooks.deliveries(webhook)
    assert delivery.status == GAVE_UP
    assert not delivery.HasField("next_attempt_at")
    assert [(a.number, a.http_status, a.error) for a in delivery.attempts] == [
        (1, 503, "HTTP 503"),
        (2, 0, "connection refused"),
        (3, 500, ""),
    ]
    assert delivery.attempts[0].latency == Duration(nanos=120_000_000)
    assert delivery.attempts[0].response_excerpt == "answer 503"
    assert [d.delivery_id for d in await hooks.deliveries(webhook, GAVE_UP)] == [send.delivery_id]
    assert await hooks.deliveries(webhook, PENDING) == []


async def test_a_2xx_delivers_and_clears_failing_since(hooks: Hooks) -> None:
    webhook = (await hooks.create()).webhook.webhook_id
    assert await hooks.record(hooks.event(), hooks.event()) == 2
    first, second = await hooks.claim([webhook])
    await hooks.complete(first, 500)
    assert (await hooks.get(webhook)).HasField("failing_since")
    at = datetime(2030, 1, 7, 10, 0, tzinfo=UTC)
    await hooks.complete(second, 204, attempted_at=at)
    got = await hooks.get(webhook)
    assert not got.HasField("failing_since")
    assert got.status == webhooks_pb2.WEBHOOK_STATUS_ENABLED
    [delivered] = await hooks.deliveries(webhook, DELIVERED)
    assert delivered.delivery_id == second.delivery_id
    assert when(delivered.delivered_at) == at
    assert not delivered.HasField("next_attempt_at")
    assert [(a.number, a.http_status) for a in delivered.attempts] == [(1, 204)]


async def test_an_endpoint_failing_for_too_long_is_disabled_with_an_event(
    hooks: Hooks, nats_client: NatsClient
) -> None:
    webhook = (await hooks.create()).webhook.webhook_id
    assert await hooks.record(hooks.event(), hooks.event()) == 2
    first, second = await hooks.claim([webhook])
    # The failing time starts when the api learns of the failure, however long ago the try
    # was made: still enabled.
    before = datetime.now(UTC)
    await hooks.complete(first, 500, attempted_at=datetime.now(UTC) - timedelta(hours=2))
    assert (await hooks.get(webhook)).status == webhooks_pb2.WEBHOOK_STATUS_ENABLED
    since = (await hooks.stored(webhook)).failing_since
    assert since is not None
    assert before <= since <= datetime.now(UTC)

    # Make every try since an hour and a minute ago a failure: the next one disables it.
    async with hooks.api.service.app.uow() as uow:
        row = await uow.session.get_one(Webhook, uuid.UUID(webhook))
        row.failing_since = since = datetime.now(UTC) - timedelta(minutes=61)
        await uow.commit()
    await hooks.complete(second, 502)
    got = await hooks.get(webhook)
    assert got.status == webhooks_pb2.WEBHOOK_STATUS_DISABLED
    stamp_text = since.isoformat().replace("+00:00", "Z")
    reason = (
        "disabled by Kairos: every delivery failed for more than 1 hour "
        f"(since {stamp_text}); the last try: HTTP 502"
    )
    assert got.disabled_reason == reason
    # Its pending deliveries are given up, and no claim hands them out.
    assert {d.status for d in await hooks.deliveries(webhook)} == {GAVE_UP}
    assert await hooks.record(hooks.event()) == 0

    async with hooks.api.service.app.uow() as uow:
        rows = (
            await uow.session.execute(
                select(OutboxEvent).where(
                    OutboxEvent.tenant_id == hooks.tenant,
                    OutboxEvent.event_type == "webhook_disabled",
                )
            )
        ).scalars()
        events = [events_pb2.LifecycleEvent.FromString(r.payload) for r in rows]
    assert [(e.type, e.webhook_id, e.detail) for e in events] == [(DISABLED_EVENT, webhook, reason)]
    # The relay publishes it on its own subject.
    js = nats_client.jetstream()
    relayed: events_pb2.LifecycleEvent | None = None
    disabled_subject = event_subject(hooks.tenant, "webhook", "disabled")
    for _ in range(100):
        with contextlib.suppress(NotFoundError):  # none relayed yet
            found = await js.get_last_msg(EVENTS_STREAM, disabled_subject)
            relayed = events_pb2.LifecycleEvent.FromString(found.data or b"")
            if relayed.event_id == events[0].event_id:
                break
        await asyncio.sleep(0.05)
    assert relayed == events[0]

    # Enabled again by its owner: it starts afresh, and redelivery is allowed again.
    on = await hooks.update(webhook, ["status"], status=webhooks_pb2.WEBHOOK_STATUS_ENABLED)
    assert (on.status, on.disabled_reason, on.HasField("failing_since")) == (
        webhooks_pb2.WEBHOOK_STATUS_ENABLED,
        "",
        False,
    )


async def test_a_delivery_is_sent_again_on_request(hooks: Hooks) -> None:
    webhook = (await hooks.create()).webhook.webhook_id
    assert await hooks.record(hooks.event()) == 1
    [send] = await hooks.claim([webhook])
    redeliver = webhooks_pb2.RedeliverWebhookRequest(delivery_id=send.delivery_id)
    error = await refused(
        hooks.stub.RedeliverWebhook(redeliver, metadata=hooks.metadata), PRECONDITION
    )
    assert error.details() == (
        f"webhook delivery {send.delivery_id} is still pending; it is tried again by itself"
    )
    await hooks.complete(send, 200)

    before = datetime.now(UTC)
    again = (await hooks.stub.RedeliverWebhook(redeliver, metadata=hooks.metadata)).delivery
    assert again.status == PENDING
    assert before <= when(again.next_attempt_at) <= datetime.now(UTC)
    assert [a.number for a in again.attempts] == [1]
    [retry] = await hooks.claim([webhook])
    assert (retry.delivery_id, retry.attempt_number) == (send.delivery_id, 2)
    # A redelivered try that fails has the whole schedule ahead of it again.
    before = datetime.now(UTC)
    await hooks.complete(retry, 500)
    [delivery] = await hooks.deliveries(webhook)
    assert delivery.status == PENDING
    assert when(delivery.next_attempt_at) >= before + timedelta(seconds=60)

    await hooks.update(webhook, ["status"], status=webhooks_pb2.WEBHOOK_STATUS_DISABLED)
    error = await refused(
        hooks.stub.RedeliverWebhook(redeliver, metadata=hooks.metadata), PRECONDITION
    )
    assert error.details() == f"webhook {webhook} is disabled; enable it before redelivering"


async def test_deleting_an_endpoint_drops_its_deliveries(hooks: Hooks) -> None:
    webhook = (await hooks.create()).webhook.webhook_id
    assert await hooks.record(hooks.event()) == 1
    [send] = await hooks.claim([webhook])
    await hooks.complete(send, 500)
    await hooks.stub.DeleteWebhook(
        webhooks_pb2.DeleteWebhookRequest(webhook_id=webhook), metadata=hooks.metadata
    )
    # A try reported after the deletion is ignored; the deliveries are gone with the endpoint.
    retry = dispatch_pb2.WebhookSend(delivery_id=send.delivery_id, attempt_number=2)
    await hooks.complete(retry, 200)
    error = await refused(
        hooks.stub.RedeliverWebhook(
            webhooks_pb2.RedeliverWebhookRequest(delivery_id=send.delivery_id),
            metadata=hooks.metadata,
        ),
        NOT_FOUND,
    )
    assert error.details() == f"webhook delivery {send.delivery_id} not found"


PUBLIC = webhooks_pb2.DESCRIPTOR.services_by_name["WebhooksService"]
INTERNAL = dispatch_pb2.DESCRIPTOR.services_by_name["WebhookDispatchService"]


@pytest.mark.parametrize("method_name", [m.name for m in PUBLIC.methods])
async def test_every_public_rpc_needs_a_key(hooks: Hooks, method_name: str) -> None:
    webhook = (await hooks.create()).webhook
    request = getattr(webhooks_pb2, PUBLIC.methods_by_name[method_name].input_type.name)()
    if "webhook_id" in request.DESCRIPTOR.fields_by_name:
        request.webhook_id = webhook.webhook_id
    for metadata in ((), (("authorization", "Bearer kairos_not-a-real-key"),)):
        await refused(
            getattr(hooks.stub, method_name)(request, metadata=metadata),
            grpc.StatusCode.UNAUTHENTICATED,
        )
    assert await hooks.get(webhook.webhook_id) == webhook


@pytest.mark.parametrize("method_name", [m.name for m in INTERNAL.methods])
async def test_every_internal_rpc_needs_the_service_credential(
    hooks: Hooks, method_name: str
) -> None:
    request = getattr(dispatch_pb2, INTERNAL.methods_by_name[method_name].input_type.name)()
    call = getattr(hooks.dispatch, method_name)
    await refused(call(request, metadata=hooks.metadata), grpc.StatusCode.PERMISSION_DENIED)
    await refused(call(request, metadata=()), grpc.StatusCode.UNAUTHENTICATED)


async def test_secrets_are_reencrypted_under_a_new_key(hooks: Hooks) -> None:
    created = await hooks.create()
    old = hooks.api.service.app
    settings = old.settings

    def with_secret(secret: str) -> Application:
        return bootstrap(replace(settings, common=replace(settings.common, secret_key=secret)))

    rotating, new_only = with_secret(f"{NEW_SECRET},{TEST_SECRET}"), with_secret(NEW_SECRET)
    back = with_secret(f"{TEST_SECRET},{NEW_SECRET}")
    async with old.uow() as uow:
        stored = await uow.session.scalar(select(func.count()).select_from(Webhook))
    try:
        assert (await rotation.webhook_secrets(rotating)).count == stored
        assert (await rotation.webhook_secrets(rotating)).count == 0
        row = await hooks.stored(created.webhook.webhook_id)
        associated = f"webhook:{created.webhook.webhook_id}"
        assert new_only.cipher.decrypt(row.secret, associated=associated) == (
            created.secret.encode()
        )
        with pytest.raises(CredentialDecryptError):
            old.cipher.decrypt(row.secret, associated=associated)
    finally:
        # Back under the api's own key, for the tests that run after this one.
        assert (await rotation.webhook_secrets(back)).count == stored
        for app in (rotating, new_only, back):
            await app.close()


async def test_a_failure_after_a_quiet_spell_starts_the_failing_time_afresh(hooks: Hooks) -> None:
    """The longest step is 600 s and a lease at most an hour: a failure that comes longer than
    both after the last one says nothing about the time between, however old failing_since is.
    A failure within that keeps the failing time, and one too long disables."""
    webhook = (await hooks.create()).webhook.webhook_id
    assert await hooks.record(hooks.event(), hooks.event(), hooks.event()) == 3
    first, second, third = await hooks.claim([webhook])
    await hooks.complete(first, 500)
    stored = await hooks.stored(webhook)
    assert stored.last_failed_at is not None
    assert stored.last_failed_at == stored.failing_since

    async def failing(since: timedelta, last: timedelta) -> None:
        """Make the endpoint fail since `since` ago, its last failure `last` ago."""
        async with hooks.api.service.app.uow() as uow:
            row = await uow.session.get_one(Webhook, uuid.UUID(webhook))
            row.failing_since = datetime.now(UTC) - since
            row.last_failed_at = datetime.now(UTC) - last
            await uow.commit()

    quiet = timedelta(seconds=600) + timedelta(hours=1)
    await failing(since=timedelta(hours=3), last=quiet + timedelta(minutes=1))
    before = datetime.now(UTC)
    await hooks.complete(second, 500)
    stored = await hooks.stored(webhook)
    assert stored.status == "enabled"
    assert stored.failing_since is not None
    assert before <= stored.failing_since <= datetime.now(UTC)
    assert stored.last_failed_at == stored.failing_since

    await failing(since=timedelta(hours=3), last=quiet - timedelta(minutes=1))
    await hooks.complete(third, 500)
    got = await hooks.get(webhook)
    assert got.status == webhooks_pb2.WEBHOOK_STATUS_DISABLED
    assert got.disabled_reason.startswith("disabled by Kairos: every delivery failed for more")


def delivery_row(
    webhook_id: str,
    tenant: str,
    status: str,
    created: datetime | None = None,
    delivered: datetime | None = None,
) -> WebhookDelivery:
    """A delivery as recording (and then completing) makes it, recorded at `created`."""
    created = created or datetime.now(UTC)
    return WebhookDelivery(
        id=new_id(created),
        webhook_id=uuid.UUID(webhook_id),
        tenant_id=tenant,
        event_id=str(uuid.uuid4()),
        event_type="published",
        body="{}",
        status=status,
        attempts=0 if status == "pending" else 1,
        attempts_before=0,
        next_attempt_at=created if status == "pending" else None,
        leased_until=None,
        created_at=created,
        delivered_at=delivered,
    )


async def test_enabling_gives_up_a_delivery_left_pending_by_a_disabling(hooks: Hooks) -> None:
    webhook = (await hooks.create()).webhook.webhook_id
    await hooks.update(webhook, ["status"], status=webhooks_pb2.WEBHOOK_STATUS_DISABLED)
    # What a recording leaves that listed the endpoint as enabled just before it was disabled,
    # and wrote its delivery just after the disabling gave up the pending ones.
    async with hooks.api.service.app.uow() as uow:
        late = delivery_row(webhook, hooks.tenant, "pending")
        uow.session.add(late)
        await uow.commit()

    await hooks.update(webhook, ["status"], status=webhooks_pb2.WEBHOOK_STATUS_ENABLED)
    [left] = await hooks.deliveries(webhook)
    assert (left.delivery_id, left.status) == (str(late.id), GAVE_UP)
    assert not left.HasField("next_attempt_at")
    assert await hooks.claim([webhook]) == []
    # What is recorded once it is enabled is sent as ever.
    event = hooks.event()
    assert await hooks.record(event) == 1
    [send] = await hooks.claim([webhook])
    assert send.message_id == event.event_id


async def test_nul_in_a_tries_error_or_answer_is_replaced_not_refused(hooks: Hooks) -> None:
    """No column holds NUL (PostgreSQL refuses it): it becomes U+FFFD, whether the try comes
    over gRPC (whose guard refuses NUL in every other request) or to the service layer."""
    webhook = (await hooks.create()).webhook.webhook_id
    assert await hooks.record(hooks.event(), hooks.event()) == 2
    over_grpc, direct = await hooks.claim([webhook])
    result = dispatch_pb2.WebhookResult(
        delivery_id=over_grpc.delivery_id,
        attempt_number=1,
        http_status=500,
        error="bad\x00byte",
        latency=Duration(nanos=120_000_000),
        response_excerpt="\x00{}\x00",
        attempted_at=stamp(datetime.now(UTC)),
    )
    await hooks.dispatch.CompleteWebhookDeliveries(
        dispatch_pb2.CompleteWebhookDeliveriesRequest(results=[result]), metadata=SERVICE
    )
    await webhooks.complete_deliveries(
        hooks.api.service.app,
        [
            webhooks.TryResult(
                delivery_id=uuid.UUID(direct.delivery_id),
                attempt_number=1,
                http_status=0,
                error="\x00refused",
                latency_ms=5,
                response_excerpt="",
                attempted_at=datetime.now(UTC),
            )
        ],
    )
    tries = {d.delivery_id: list(d.attempts) for d in await hooks.deliveries(webhook)}
    assert [(a.error, a.response_excerpt) for a in tries[over_grpc.delivery_id]] == [
        ("bad\ufffdbyte", "\ufffd{}\ufffd")
    ]
    assert [(a.error, a.response_excerpt) for a in tries[direct.delivery_id]] == [
        ("\ufffdrefused", "")
    ]


async def tries_of(app: Application, delivery_ids: Sequence[uuid.UUID]) -> int:
    async with app.uow() as uow:
        count = await uow.session.scalar(
            select(func.count())
            .select_from(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_(delivery_ids))
        )
    return count or 0


async def add_rows(app: Application, rows: Sequence[WebhookDelivery]) -> None:
    """The deliveries, each with one try."""
    async with app.uow() as uow:
        uow.session.add_all(rows)
        await uow.session.flush()
        for row in rows:
            if row.status != "pending":
                uow.session.add(
                    WebhookAttempt(
                        delivery_id=row.id,
                        number=1,
                        attempted_at=row.created_at,
                        http_status=200 if row.status == "delivered" else 500,
                        error="",
                        latency_ms=10,
                        response_excerpt="",
                    )
                )
        await uow.commit()


async def test_settled_deliveries_older_than_the_retention_are_pruned_with_their_tries(
    hooks: Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two days back, so the api's own pruning (30 days) leaves these rows to this test."""
    app = hooks.api.service.app
    webhook = (await hooks.create()).webhook.webhook_id
    now = datetime.now(UTC)
    cutoff = now - timedelta(days=2)
    old = cutoff - timedelta(hours=1)
    settled = [
        delivery_row(webhook, hooks.tenant, status, created=old + timedelta(seconds=n))
        for n, status in enumerate(["delivered", "failed", "delivered", "failed", "failed"])
    ]
    kept = [
        # Still being tried, however old.
        delivery_row(webhook, hooks.tenant, "pending", created=old),
        # Redelivered a moment ago: kept until that delivery is old too.
        delivery_row(webhook, hooks.tenant, "delivered", created=old, delivered=now),
        delivery_row(webhook, hooks.tenant, "delivered", created=now - timedelta(hours=1)),
        delivery_row(webhook, hooks.tenant, "failed", created=now - timedelta(hours=1)),
    ]
    await add_rows(app, settled + kept)
    assert await tries_of(app, [row.id for row in settled]) == 5

    monkeypatch.setattr(webhooks, "PRUNE_BATCH", 2)  # three rounds: 2, 2 and 1
    assert await webhooks.prune_log(app, cutoff) == 5
    assert {d.delivery_id for d in await hooks.deliveries(webhook)} == {str(row.id) for row in kept}
    assert await tries_of(app, [row.id for row in settled]) == 0
    assert await tries_of(app, [row.id for row in kept]) == 3
    assert await webhooks.prune_log(app, cutoff) == 0


async def test_the_api_prunes_the_log_on_a_timer_per_the_retention(hooks: Hooks) -> None:
    """The api's pruning runs from its start; here a copy of it, with a retention of a day
    (KAIROS_WEBHOOK_LOG_RETENTION_SECONDS) and a round every 50 ms."""
    assert "webhook-log-prune" in {task.get_name() for task in hooks.api.service.tasks}
    settings = hooks.api.service.app.settings
    pruner = bootstrap(replace(settings, webhook_log_retention=timedelta(days=1)))
    webhook = (await hooks.create()).webhook.webhook_id
    now = datetime.now(UTC)
    old = [
        delivery_row(webhook, hooks.tenant, status, created=now - timedelta(days=3))
        for status in ("delivered", "failed")
    ]
    young = delivery_row(webhook, hooks.tenant, "delivered", created=now - timedelta(hours=23))
    await add_rows(pruner, [*old, young])
    stopping = asyncio.Event()
    timer = asyncio.create_task(webhooks.prune_log_until(pruner, stopping, every=0.05))
    try:
        left: set[str] = set()
        for _ in range(100):
            left = {d.delivery_id for d in await hooks.deliveries(webhook)}
            if len(left) == 1:
                break
            await asyncio.sleep(0.05)
        assert left == {str(young.id)}
    finally:
        stopping.set()
        await timer
        await pruner.close()


async def test_recording_and_changing_an_endpoint_do_not_wait_on_each_other(hooks: Hooks) -> None:
    """PostgreSQL: a new delivery's foreign key check takes FOR KEY SHARE on its endpoint, in
    the order of the rows written; completing tries locks the endpoints in id order. Were that
    FOR UPDATE, the two could deadlock (one answered INTERNAL): recording holds B and waits for
    A, completing holds A and waits for B. FOR NO KEY UPDATE lets the check through.

    Here a transaction holds what recording holds half-way (a delivery to B written, not
    committed) while tries to A and B are completed and B is changed and its secret rotated:
    none of them waits. Then calls side by side all succeed."""
    app = hooks.api.service.app
    if app.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers: the calls cannot interleave")
    a, b, c = sorted([(await hooks.create()).webhook.webhook_id for _ in range(3)])
    # Its row changed, the lowest id now comes last in the heap: recording meets it last.
    await hooks.update(a, ["description"], description="changed")
    assert await hooks.record(hooks.event()) == 3
    sends = {s.webhook_id: s for s in await hooks.claim([a, b, c])}

    async with app.uow() as recording:
        recording.session.add(delivery_row(b, hooks.tenant, "pending"))
        await recording.session.flush()
        results = [
            dispatch_pb2.WebhookResult(
                delivery_id=sends[hook].delivery_id,
                attempt_number=1,
                http_status=500,
                latency=Duration(nanos=1_000_000),
                attempted_at=stamp(datetime.now(UTC)),
            )
            for hook in (a, b, c)
        ]
        await asyncio.wait_for(
            hooks.dispatch.CompleteWebhookDeliveries(
                dispatch_pb2.CompleteWebhookDeliveriesRequest(results=results), metadata=SERVICE
            ),
            timeout=5,
        )
        changed = await asyncio.wait_for(
            hooks.update(b, ["description"], description="changed too"), timeout=5
        )
        assert changed.description == "changed too"
        await asyncio.wait_for(
            hooks.stub.RotateWebhookSecret(
                webhooks_pb2.RotateWebhookSecretRequest(webhook_id=b), metadata=hooks.metadata
            ),
            timeout=5,
        )
        recording.session.add(delivery_row(a, hooks.tenant, "pending"))
        await recording.commit()
    for hook in (a, b):
        # The try, and the delivery written meanwhile.
        assert sorted(len(d.attempts) for d in await hooks.deliveries(hook, PENDING)) == [0, 1]

    # Side by side: each round completes the last round's tries as new events are recorded.
    await hooks.claim([a, b, c], lease=600)  # what is due now is leased away first
    assert await hooks.record(*(hooks.event() for _ in range(3))) == 9
    for _ in range(6):
        due = await hooks.claim([a, b, c])
        assert len(due) == 9
        results = [
            dispatch_pb2.WebhookResult(
                delivery_id=send.delivery_id,
                attempt_number=send.attempt_number,
                http_status=503,
                latency=Duration(nanos=1_000_000),
                attempted_at=stamp(datetime.now(UTC)),
            )
            for send in due
        ]
        recorded, _ = await asyncio.gather(
            hooks.record(*(hooks.event() for _ in range(3))),
            hooks.dispatch.CompleteWebhookDeliveries(
                dispatch_pb2.CompleteWebhookDeliveriesRequest(results=results), metadata=SERVICE
            ),
        )
        assert recorded == 9
