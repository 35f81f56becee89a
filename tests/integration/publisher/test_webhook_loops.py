"""The publisher's webhook loops, run by a real publisher in this process against a real NATS
server, a real HTTP receiver and a fake WebhookDispatchService (an in-memory api that records,
leases and retries deliveries as the contract says): events read from KAIROS_EVENTS are
recorded in batches and acked after, sent signed, retried as the api says, and kept while the
api cannot take them."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError

from kairos.dispatch.v1 import webhooks_pb2, webhooks_pb2_grpc
from kairos.events.v1 import events_pb2
from kairos_common.streams import EVENTS_STREAM, connect, event_subject
from kairos_publisher import webhooks
from kairos_publisher.service import PublisherService
from kairos_publisher.webhooks import DURABLE
from support.nats_server import NatsServer
from support.services import Running, running_publisher
from support.webhooks import WebhookReceiver, verified

Context = grpc.aio.ServicerContext[Any, Any]
#: Waits the fake api asks for between tries of a delivery (seconds).
RETRY_AFTER = 0.3


def stamp(when: float) -> Timestamp:
    made = Timestamp()
    made.FromDatetime(datetime.fromtimestamp(when, UTC))
    return made


@dataclass
class Delivery:
    delivery_id: str
    webhook_id: str
    event: events_pb2.LifecycleEvent
    body: bytes
    due: float
    attempts: int = 0
    delivered: bool = False
    leased_until: float = 0.0


@dataclass
class FakeApi(webhooks_pb2_grpc.WebhookDispatchServiceServicer):
    """WebhookDispatchService in memory: every event goes to every endpoint."""

    #: webhook id -> (url, secret)
    endpoints: dict[str, tuple[str, str]] = field(default_factory=dict)
    deliveries: dict[str, Delivery] = field(default_factory=dict)
    results: list[webhooks_pb2.WebhookResult] = field(default_factory=list)
    #: The event ids of each RecordWebhookEvents call, in order.
    record_calls: list[list[str]] = field(default_factory=list)
    #: The event ids of the calls that succeeded.
    accepted: list[str] = field(default_factory=list)

    claim_calls: int = 0
    complete_calls: int = 0
    #: Answer the next RecordWebhookEvents calls with these codes.
    record_failures: list[grpc.StatusCode] = field(default_factory=list)
    #: A batch holding an event with one of these ids is refused as INVALID_ARGUMENT.
    invalid_events: set[str] = field(default_factory=set)
    #: How long each RecordWebhookEvents call takes (seconds): a slow api.
    record_delay: float = 0.0
    tokens: set[str] = field(default_factory=set)

    def _next_due(self) -> Timestamp | None:
        due = [d.due for d in self.deliveries.values() if not d.delivered]
        return stamp(min(due)) if due else None

    async def RecordWebhookEvents(  # noqa: N802 - the gRPC method's name
        self, request: webhooks_pb2.RecordWebhookEventsRequest, context: Context
    ) -> webhooks_pb2.RecordWebhookEventsResponse:
        self.tokens.add(dict(context.invocation_metadata() or ()).get("authorization", ""))
        self.record_calls.append([e.event_id for e in request.events])
        if self.record_delay:
            await asyncio.sleep(self.record_delay)
        if self.record_failures:
            await context.abort(self.record_failures.pop(0), "the database is away")
        bad = [e.event_id for e in request.events if e.event_id in self.invalid_events]
        if bad:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"events: {bad[0]} is bad")
        recorded = 0
        self.accepted.extend(e.event_id for e in request.events)
        for event in request.events:
            for webhook_id in self.endpoints:
                key = f"{webhook_id}/{event.event_id}"
                if key in self.deliveries:
                    continue
                body = json.dumps({"type": "post.published", "data": {"id": event.event_id}})
                self.deliveries[key] = Delivery(
                    key, webhook_id, event, body.encode(), due=time.time()
                )
                recorded += 1
        reply = webhooks_pb2.RecordWebhookEventsResponse(recorded=recorded)
        due = self._next_due()
        if recorded and due is not None:
            reply.next_due_at.CopyFrom(due)
        return reply

    async def ClaimWebhookDeliveries(  # noqa: N802 - the gRPC method's name
        self, request: webhooks_pb2.ClaimWebhookDeliveriesRequest, context: Context
    ) -> webhooks_pb2.ClaimWebhookDeliveriesResponse:
        self.claim_calls += 1
        now = time.time()
        reply = webhooks_pb2.ClaimWebhookDeliveriesResponse()
        for delivery in self.deliveries.values():
            if delivery.delivered or delivery.due > now or delivery.leased_until > now:
                continue
            if len(reply.sends) == request.limit:
                break
            delivery.leased_until = now + request.lease.ToTimedelta().total_seconds()
            url, secret = self.endpoints[delivery.webhook_id]
            reply.sends.append(
                webhooks_pb2.WebhookSend(
                    delivery_id=delivery.delivery_id,
                    webhook_id=delivery.webhook_id,
                    url=url,
                    secret=secret,
                    message_id=delivery.event.event_id,
                    body=delivery.body,
                    attempt_number=delivery.attempts + 1,
                    event_type=delivery.event.type,
                )
            )
        later = [
            d.due
            for d in self.deliveries.values()
            if not d.delivered and d.leased_until <= now and d.due > now
        ]
        if later:
            reply.next_due_at.CopyFrom(stamp(min(later)))
        return reply

    async def CompleteWebhookDeliveries(  # noqa: N802 - the gRPC method's name
        self, request: webhooks_pb2.CompleteWebhookDeliveriesRequest, context: Context
    ) -> webhooks_pb2.CompleteWebhookDeliveriesResponse:
        self.complete_calls += 1
        for result in request.results:
            self.results.append(result)
            delivery = self.deliveries[result.delivery_id]
            delivery.attempts = result.attempt_number
            delivery.leased_until = 0.0
            if 200 <= result.http_status < 300:
                delivery.delivered = True
            else:
                delivery.due = time.time() + RETRY_AFTER
        reply = webhooks_pb2.CompleteWebhookDeliveriesResponse()
        due = self._next_due()
        if due is not None:
            reply.next_due_at.CopyFrom(due)
        return reply


@asynccontextmanager
async def serving(api: FakeApi) -> AsyncIterator[str]:
    server = grpc.aio.server()
    webhooks_pb2_grpc.add_WebhookDispatchServiceServicer_to_server(api, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


def secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def lifecycle_event(kind: str = "published") -> events_pb2.LifecycleEvent:
    event = events_pb2.LifecycleEvent(
        event_id=str(uuid.uuid4()),
        type=events_pb2.LIFECYCLE_EVENT_TYPE_PUBLISHED,
        tenant_id=str(uuid.uuid4()),
        post_id=str(uuid.uuid4()),
        detail=kind,
    )
    event.occurred_at.FromDatetime(datetime.now(UTC))
    return event


async def publish(nats: NatsServer, events: list[events_pb2.LifecycleEvent]) -> None:
    client = await connect(nats.url, name="webhook-tests")
    try:
        js = client.jetstream()
        for event in events:
            await js.publish(
                event_subject(event.tenant_id, "post", "published"),
                event.SerializeToString(),
                headers={"Nats-Msg-Id": event.event_id},
            )
    finally:
        await client.close()


async def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.02)


async def consumer_pending(nats: NatsServer) -> tuple[int, int]:
    """The webhooks consumer's (unacked, undelivered) message counts."""
    client = await connect(nats.url, name="webhook-tests-info")
    try:
        info = await client.jetstream().consumer_info(EVENTS_STREAM, DURABLE)
        return info.num_ack_pending, info.num_pending or 0
    finally:
        await client.close()


@asynccontextmanager
async def publisher(
    nats: NatsServer, target: str, **env: str
) -> AsyncIterator[Running[PublisherService]]:
    environ = {
        "KAIROS_NATS_URL": nats.url,
        "KAIROS_API_TARGET": target,
        "KAIROS_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        # Nothing polls: deliveries go out because Record and Complete say when they are due.
        "KAIROS_WEBHOOK_POLL_SECONDS": "30",
        **env,
    }
    async with running_publisher(environ) as running:
        yield running


def count_taken(copy: Running[PublisherService]) -> dict[str, int]:
    """How many events this publisher copy hands to the api, counted as it goes."""
    assert copy.service.publisher is not None
    assert copy.service.publisher.webhooks is not None
    recorder = copy.service.publisher.webhooks.recorder
    counted = {"events": 0}
    record = recorder.record

    async def counting(messages: Sequence[Msg]) -> bool:
        counted["events"] += len(messages)
        return await record(messages)

    recorder.record = counting  # type: ignore[method-assign]
    return counted


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    server = WebhookReceiver()
    await server.start()
    yield server
    await server.stop()


async def test_events_are_recorded_in_batches_sent_signed_and_retried_as_the_api_says(
    fresh_nats: NatsServer, receiver: WebhookReceiver
) -> None:
    flaky = WebhookReceiver(500, 500, each=True)
    await flaky.start()
    key, flaky_key = secret(), secret()
    api = FakeApi(
        endpoints={"w-ok": (f"{receiver.url}/in", key), "w-flaky": (flaky.url, flaky_key)}
    )
    events = [lifecycle_event() for _ in range(20)]
    try:
        async with serving(api) as target, publisher(fresh_nats, target):
            await publish(fresh_nats, events)
            await receiver.wait_for(20)
            await flaky.wait_for(60)
            await until(lambda: len(api.results) == 80, 10, "every try reported")
            assert await consumer_pending(fresh_nats) == (0, 0)
    finally:
        await flaky.stop()
    sent = {verified(key, r)["data"]["id"] for r in receiver.hooks}
    assert sent == {e.event_id for e in events}
    assert len(receiver.hooks) == 20
    assert [r.headers["webhook-id"] for r in receiver.hooks] == [
        verified(key, r)["data"]["id"] for r in receiver.hooks
    ]
    # The flaky endpoint got each event three times (500, 500, 200), each try signed anew.
    flaky_ids = [r.headers["webhook-id"] for r in flaky.hooks]
    assert sorted(flaky_ids) == sorted([e.event_id for e in events] * 3)
    for request in flaky.hooks:
        verified(flaky_key, request)
    tries = [
        (r.attempt_number, r.http_status, r.error)
        for r in api.results
        if r.delivery_id.startswith("w-flaky/" + events[0].event_id)
    ]
    assert tries == [(1, 500, "HTTP 500"), (2, 500, "HTTP 500"), (3, 200, "")]
    assert all(d.delivered for d in api.deliveries.values())
    # Recorded in batches, each event once, and reports shared calls.
    recorded = [event_id for call in api.record_calls for event_id in call]
    assert sorted(recorded) == sorted(e.event_id for e in events)
    assert len(api.record_calls) < 20
    assert api.complete_calls < 80
    assert api.tokens == {"Bearer dev-service-token"}


async def test_events_the_api_cannot_take_come_back_and_are_recorded_once(
    fresh_nats: NatsServer, receiver: WebhookReceiver
) -> None:
    key = secret()
    api = FakeApi(
        endpoints={"w": (receiver.url, key)},
        record_failures=[grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNIMPLEMENTED],
    )
    events = [lifecycle_event() for _ in range(3)]
    async with serving(api) as target, publisher(fresh_nats, target):
        await publish(fresh_nats, events)
        await receiver.wait_for(3, timeout=20)
        await until(lambda: len(api.results) == 3, 10, "every try reported")
        assert await consumer_pending(fresh_nats) == (0, 0)
    # Refused twice, then each event taken by the api once (acked after) and sent once.
    expected = sorted(e.event_id for e in events)
    assert len(api.record_calls) >= 3
    assert api.record_failures == []
    assert sorted(api.accepted) == expected
    assert sorted(r.headers["webhook-id"] for r in receiver.hooks) == expected


async def test_an_event_the_api_refuses_does_not_hold_back_the_others(
    fresh_nats: NatsServer, receiver: WebhookReceiver
) -> None:
    events = [lifecycle_event() for _ in range(4)]
    api = FakeApi(endpoints={"w": (receiver.url, secret())}, invalid_events={events[1].event_id})
    async with serving(api) as target, publisher(fresh_nats, target):
        await publish(fresh_nats, events)
        await receiver.wait_for(3)
        await until(lambda: len(api.results) == 3, 10, "every try reported")
        assert await consumer_pending(fresh_nats) == (0, 0)
    sent = sorted(r.headers["webhook-id"] for r in receiver.hooks)
    assert sent == sorted(e.event_id for i, e in enumerate(events) if i != 1)
    # The refused one was offered in the batch and on its own, never again after.
    alone = [call for call in api.record_calls if call == [events[1].event_id]]
    assert len(alone) == 1


async def test_with_webhooks_off_the_publisher_does_nothing_for_them(
    fresh_nats: NatsServer, receiver: WebhookReceiver
) -> None:
    api = FakeApi(endpoints={"w": (receiver.url, secret())})
    async with (
        serving(api) as target,
        publisher(
            fresh_nats, target, KAIROS_WEBHOOKS_ENABLED="false", KAIROS_WEBHOOK_POLL_SECONDS="0.05"
        ),
    ):
        await publish(fresh_nats, [lifecycle_event()])
        await asyncio.sleep(0.5)  # ten polls, had the sender been running
        client = await connect(fresh_nats.url, name="webhook-tests-off")
        try:
            with pytest.raises(NotFoundError):
                await client.jetstream().consumer_info(EVENTS_STREAM, DURABLE)
        finally:
            await client.close()
    assert (api.record_calls, api.claim_calls, receiver.requests) == ([], 0, [])


async def test_a_delivery_recorded_elsewhere_is_claimed_within_the_poll_interval(
    fresh_nats: NatsServer, receiver: WebhookReceiver
) -> None:
    key = secret()
    api = FakeApi(endpoints={"w": (receiver.url, key)})
    async with (
        serving(api) as target,
        publisher(fresh_nats, target, KAIROS_WEBHOOK_POLL_SECONDS="0.2"),
    ):
        await until(lambda: api.claim_calls >= 1, 5, "a first claim")
        # Another copy (or a redelivery asked for by a user) made this one: nobody wakes us.
        event = lifecycle_event()
        api.deliveries["w/x"] = Delivery("w/x", "w", event, b"{}", due=time.time())
        started = time.monotonic()
        await receiver.wait_for(1, timeout=5)
        assert time.monotonic() - started < 1.0
    assert receiver.hooks[0].headers["webhook-id"] == event.event_id
    assert verified(key, receiver.hooks[0]) == {}


async def test_a_try_under_way_when_the_publisher_stops_is_finished_and_reported(
    fresh_nats: NatsServer,
) -> None:
    slow = WebhookReceiver(delay=0.5)
    await slow.start()
    api = FakeApi(endpoints={"w": (slow.url, secret())})
    event = lifecycle_event()
    try:
        async with serving(api) as target:
            async with publisher(fresh_nats, target):
                await publish(fresh_nats, [event])
                await slow.wait_for(1)
                stopping = time.monotonic()
            # Stopped after the answer came (0.5 s after the request), and without waiting for
            # anything else: the next poll is 30 s away. The upper bound leaves room for a busy
            # machine (the grace is 1 s in this process, plus closing the connections).
            assert 0.3 < time.monotonic() - stopping < 5.0
    finally:
        await slow.stop()
    [result] = api.results
    assert (result.delivery_id, result.attempt_number, result.http_status, result.error) == (
        f"w/{event.event_id}",
        1,
        200,
        "",
    )


async def test_two_publishers_share_the_consumer_and_record_each_event_once(
    fresh_nats: NatsServer, receiver: WebhookReceiver
) -> None:
    api = FakeApi(endpoints={"w": (receiver.url, secret())})
    events = [lifecycle_event() for _ in range(200)]
    async with (
        serving(api) as target,
        publisher(fresh_nats, target) as first,
        publisher(fresh_nats, target) as second,
    ):
        taken = [count_taken(first), count_taken(second)]
        await publish(fresh_nats, events)
        await receiver.wait_for(200)
        await until(lambda: len(api.results) == 200, 10, "every try reported")
        assert await consumer_pending(fresh_nats) == (0, 0)
    # Both copies took some (the group hands each event to one of them at random).
    assert min(taken[0]["events"], taken[1]["events"]) > 0, taken
    assert taken[0]["events"] + taken[1]["events"] == 200
    assert sorted(api.accepted) == sorted(e.event_id for e in events)
    assert sorted(r.headers["webhook-id"] for r in receiver.hooks) == sorted(
        e.event_id for e in events
    )


def recorder_of(copy: Running[PublisherService]) -> webhooks.EventRecorder:
    assert copy.service.publisher is not None
    assert copy.service.publisher.webhooks is not None
    return copy.service.publisher.webhooks.recorder


async def test_events_waiting_for_a_slow_api_are_kept_in_progress_and_recorded_once(
    fresh_nats: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Scaled down: a 2 s ack wait, marks after 0.5 s, and 6 batches of 2 at 0.5 s a call, so
    # the last batch waits about 3 s. Unmarked, the events still waiting after 2 s would be
    # pushed again and recorded a second time.
    monkeypatch.setattr(webhooks, "ACK_WAIT", 2.0)
    monkeypatch.setattr(webhooks, "PROGRESS_AFTER", 0.5)
    monkeypatch.setattr(webhooks, "EVENT_BATCH", 2)
    api = FakeApi(record_delay=0.5)
    events = [lifecycle_event() for _ in range(12)]
    async with serving(api) as target, publisher(fresh_nats, target) as copy:
        recorder = recorder_of(copy)
        started = time.monotonic()
        await publish(fresh_nats, events)
        await until(
            lambda: len(api.accepted) >= 12 and not recorder.arrived and not recorder.taken,
            20,
            "every event recorded and none waiting",
        )
        # At least 6 calls of 0.5 s: the last events waited longer than the ack wait.
        assert time.monotonic() - started > 2.0
        assert await consumer_pending(fresh_nats) == (0, 0)
        assert recorder.waiting_since is None
    assert sorted(api.accepted) == sorted(e.event_id for e in events)


async def test_a_refused_endpoint_shows_fixed_words_and_only_the_log_gets_the_address(
    fresh_nats: NatsServer, receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    api = FakeApi(endpoints={"w": (f"http://localhost:{receiver.port}/in", secret())})
    with caplog.at_level(logging.INFO, logger="kairos_publisher.webhooks"):
        async with (
            serving(api) as target,
            # No network is exempted: localhost is refused as the loopback address it is.
            publisher(fresh_nats, target, KAIROS_WEBHOOK_ALLOWED_NETWORKS=""),
        ):
            await publish(fresh_nats, [lifecycle_event()])
            await until(lambda: len(api.results) >= 1, 10, "the first try reported")
    # What the api keeps for the tenant's delivery log names no address.
    first = api.results[0]
    assert (first.attempt_number, first.http_status, first.error, first.response_excerpt) == (
        1,
        0,
        "not sent: the host does not resolve to a public address",
        "",
    )
    assert receiver.requests == []
    failed = [r for r in caplog.records if r.getMessage() == "webhook try failed"]
    detail = failed[0].__dict__["detail"]
    assert detail.startswith("localhost resolves to "), detail
    assert detail.endswith(", a loopback address; refused"), detail
