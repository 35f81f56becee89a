"""Tenants' webhooks end to end: the api, a scheduler and a publisher as real processes, real
NATS and PostgreSQL, a post published to the sandbox platform, and real HTTP receivers in this
test that check every signature with the `standardwebhooks` library.

One system serves the module (its own NATS, so the shared `webhooks` consumer sees only these
events); the retry schedule and the time after which a failing endpoint is disabled are short.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC

import pytest

from kairos.events.v1 import events_pb2
from kairos.posts.v1 import posts_pb2, webhooks_pb2, webhooks_pb2_grpc
from support.nats_server import NatsServer
from support.stack import Stack, lifecycle_events, marker, running_stack, wait_status
from support.webhooks import WebhookReceiver, verified

pytestmark = pytest.mark.e2e

#: Seconds between tries of a failing delivery, and how many tries (about 12 s in all).
RETRY_EVERY = 0.5
RETRIES = 24
#: An endpoint whose every delivery failed for this long is disabled.
DISABLE_AFTER = 3.0
#: Seconds between the publisher's claims when nothing said a delivery is due.
POLL = 0.5
WEBHOOK_ENV = {
    # The receivers are plain http on this machine.
    "KAIROS_ALLOW_HTTP_MEDIA": "true",
    "KAIROS_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
    "KAIROS_WEBHOOK_RETRY_SCHEDULE_SECONDS": ",".join([str(RETRY_EVERY)] * RETRIES),
    "KAIROS_WEBHOOK_DISABLE_AFTER_SECONDS": str(DISABLE_AFTER),
    # A delivery sent again on request wakes no publisher: the next poll claims it.
    "KAIROS_WEBHOOK_POLL_SECONDS": str(POLL),
}
PUBLISHED = events_pb2.LIFECYCLE_EVENT_TYPE_PUBLISHED
DISABLED = events_pb2.LIFECYCLE_EVENT_TYPE_WEBHOOK_DISABLED


@pytest.fixture(scope="module")
async def stack(
    own_nats: NatsServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    logs = tmp_path_factory.mktemp("webhook-logs")
    async with running_stack(own_nats, logs, env=WEBHOOK_ENV) as running:
        yield running


@pytest.fixture
async def receivers() -> AsyncIterator[list[WebhookReceiver]]:
    started: list[WebhookReceiver] = []
    yield started
    for receiver in started:
        await receiver.stop()


async def receiving(
    receivers: list[WebhookReceiver], *statuses: int, otherwise: int = 200
) -> WebhookReceiver:
    receiver = WebhookReceiver(*statuses, otherwise=otherwise)
    await receiver.start()
    receivers.append(receiver)
    return receiver


def webhooks(stack: Stack) -> webhooks_pb2_grpc.WebhooksServiceAsyncStub:
    assert stack.channel is not None
    return webhooks_pb2_grpc.WebhooksServiceStub(stack.channel)


async def register(
    stack: Stack, url: str, *events: events_pb2.LifecycleEventType.ValueType
) -> webhooks_pb2.CreateWebhookResponse:
    request = webhooks_pb2.CreateWebhookRequest(url=url, events=events, description="e2e")
    created: webhooks_pb2.CreateWebhookResponse = await webhooks(stack).CreateWebhook(
        request, metadata=stack.metadata
    )
    return created


async def test_an_endpoint_that_fails_twice_gets_the_event_once_it_recovers(
    stack: Stack, receivers: list[WebhookReceiver]
) -> None:
    receiver = await receiving(receivers, 500, 500)
    created = await register(stack, f"{receiver.url}/kairos", PUBLISHED)
    mark = marker()
    post = await stack.create(f"webhook {mark}", 1.0)
    await wait_status(stack, post.id, posts_pb2.POST_STATUS_PUBLISHED)
    tries = await receiver.wait_for(3, timeout=20)

    # The three tries carry the same event, each signed (at its own time) with the secret.
    [event] = [
        e for e in await lifecycle_events(stack) if e.post_id == post.id and e.type == PUBLISHED
    ]
    assert [t.headers["webhook-id"] for t in tries] == [event.event_id] * 3
    for attempt in tries:
        assert attempt.body == tries[0].body
        payload = verified(created.secret, attempt)
    assert payload["type"] == "post.published"
    assert payload["data"]["event_id"] == event.event_id
    assert payload["data"]["post_id"] == post.id
    assert payload["data"]["target_id"] == event.target_id
    # Retried on the api's schedule, not sooner.
    gaps = [b.at - a.at for a, b in itertools.pairwise(tries)]
    assert all(gap >= RETRY_EVERY - 0.05 for gap in gaps), gaps

    async def delivery_once(
        ready: Callable[[webhooks_pb2.WebhookDelivery], bool],
    ) -> webhooks_pb2.WebhookDelivery:
        """The endpoint's one delivery, as the log shows it once `ready` holds."""
        deadline = time.monotonic() + 10
        while True:
            listed = await webhooks(stack).ListWebhookDeliveries(
                webhooks_pb2.ListWebhookDeliveriesRequest(webhook_id=created.webhook.webhook_id),
                metadata=stack.metadata,
            )
            [found] = listed.deliveries
            if ready(found):
                return found
            assert time.monotonic() < deadline, f"not as wanted: {found}\n{stack.logs()}"
            await asyncio.sleep(0.05)

    delivery = await delivery_once(
        lambda d: d.status == webhooks_pb2.WEBHOOK_DELIVERY_STATUS_DELIVERED
    )
    assert delivery.event_id == event.event_id
    assert delivery.event_type == PUBLISHED
    assert [(a.number, a.http_status) for a in delivery.attempts] == [(1, 500), (2, 500), (3, 200)]
    assert [a.error for a in delivery.attempts] == ["HTTP 500", "HTTP 500", ""]
    assert [a.response_excerpt for a in delivery.attempts] == [
        "answered 500",
        "answered 500",
        "answered 200",
    ]
    assert delivery.body.encode() == tries[0].body
    # Nothing more arrives once it was delivered.
    await asyncio.sleep(1.0)
    assert len(receiver.hooks) == 3

    # Sent again on request (the receiver lost it): the same event and body, a fourth try,
    # picked up by the publisher's next claim (within POLL, set low here; the rest of the bound
    # is room for a busy machine).
    asked = time.time()
    await webhooks(stack).RedeliverWebhook(
        webhooks_pb2.RedeliverWebhookRequest(delivery_id=delivery.delivery_id),
        metadata=stack.metadata,
    )
    again = (await receiver.wait_for(4, timeout=10))[3]
    assert again.at - asked < POLL + 2.5
    assert (again.headers["webhook-id"], again.body) == (event.event_id, tries[0].body)
    assert verified(created.secret, again) == payload
    delivery = await delivery_once(lambda d: len(d.attempts) == 4)
    assert [(a.number, a.http_status) for a in delivery.attempts][3:] == [(4, 200)]
    assert delivery.status == webhooks_pb2.WEBHOOK_DELIVERY_STATUS_DELIVERED
    await webhooks(stack).DeleteWebhook(
        webhooks_pb2.DeleteWebhookRequest(webhook_id=created.webhook.webhook_id),
        metadata=stack.metadata,
    )  # so that the next test's events do not reach it


async def test_an_endpoint_failing_for_too_long_is_disabled_with_an_event(
    stack: Stack, receivers: list[WebhookReceiver]
) -> None:
    failing = await receiving(receivers, otherwise=500)
    watcher = await receiving(receivers)
    broken = await register(stack, f"{failing.url}/kairos")  # every event type
    told = await register(stack, f"{watcher.url}/kairos", DISABLED)
    broken_id = broken.webhook.webhook_id
    post = await stack.create(f"webhook {marker()}", 1.0)
    await wait_status(stack, post.id, posts_pb2.POST_STATUS_PUBLISHED)

    # The watcher is told; the broken endpoint is not (of its own disabling, or of anything
    # after it).
    [notice] = await watcher.wait_for(1, timeout=DISABLE_AFTER + 15)
    await asyncio.sleep(0.5)
    assert watcher.hooks == [notice]
    payload = verified(told.secret, notice)
    assert payload["type"] == "webhook.disabled"
    assert payload["data"]["webhook_id"] == broken_id
    got = await webhooks(stack).GetWebhook(
        webhooks_pb2.GetWebhookRequest(webhook_id=broken_id), metadata=stack.metadata
    )
    assert got.webhook.status == webhooks_pb2.WEBHOOK_STATUS_DISABLED
    assert got.webhook.disabled_reason.startswith("disabled by Kairos"), got.webhook
    assert payload["data"]["detail"] == got.webhook.disabled_reason

    # The lifecycle event, on KAIROS_EVENTS, came after the documented time of failing.
    [event] = [
        e for e in await lifecycle_events(stack) if e.type == DISABLED and e.webhook_id == broken_id
    ]
    assert event.event_id == notice.headers["webhook-id"]
    first_failure = failing.hooks[0].at  # arrived a moment after the try's recorded start
    disabled_at = event.occurred_at.ToDatetime(tzinfo=UTC).timestamp()
    failed_for = disabled_at - first_failure
    assert DISABLE_AFTER - 0.1 <= failed_for < DISABLE_AFTER + 3 * RETRY_EVERY + 2, failed_for
    # Its tries stop: nothing reaches it after it was disabled (beyond a try already under way).
    sent = len(failing.hooks)
    assert all(request.at <= disabled_at + 0.5 for request in failing.hooks)
    await asyncio.sleep(1.0)
    assert len(failing.hooks) == sent
    for request in failing.hooks:
        verified(broken.secret, request)
