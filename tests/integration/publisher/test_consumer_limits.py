"""One platform consumer on a real nats-server, with a small fake DispatchService and platform.

The fakes count what the consumer does at every instant: calls in flight per account and per
platform, attempts begun and not yet completed, the ids in each BeginAttempts batch. So these
tests see the concurrency caps themselves, that attempts are begun only as the account's gate
admits them, and what becomes of poison events, without the timing noise of whole processes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import cast

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from nats.js import JetStreamContext

from kairos.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from kairos.events.v1 import events_pb2
from kairos.posts.v1 import posts_pb2
from kairos_common.platforms import Platform
from kairos_common.streams import DEAD_STREAM, due_subject
from kairos_publisher import consumer as consumer_module
from kairos_publisher.consumer import PlatformConsumer, account_semaphores
from kairos_publisher.dispatch import DispatchClient
from kairos_publisher.platforms.base import PublishOutcome, PublishRequest, Result
from kairos_publisher.settings import PublisherSettings

CALL_SECONDS = 0.15


@dataclass
class FakeDispatch:
    """DispatchService as the consumer sees it, and a platform that takes a while per call."""

    #: The account of each delivery the fake api knows.
    accounts: dict[str, str] = field(default_factory=dict)
    batches: list[list[str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    completed: set[str] = field(default_factory=set)
    #: Attempts begun and not yet completed, per account; and their peak.
    open_attempts: Counter[str] = field(default_factory=Counter)
    peak_open_per_account: int = 0
    #: Platform calls in flight, per account; and their peaks.
    in_flight: Counter[str] = field(default_factory=Counter)
    peak_per_account: int = 0
    peak: int = 0
    #: The attempt lease each begin announces.
    lease_seconds: int = 120

    async def BeginAttempts(  # noqa: N802 - the gRPC method's name
        self, request: dispatch_pb2.BeginAttemptsRequest, **_: object
    ) -> dispatch_pb2.BeginAttemptsResponse:
        self.batches.append(list(request.delivery_ids))
        answers = []
        for delivery_id in request.delivery_ids:
            account = self.accounts.get(delivery_id)
            if account is None:
                answers.append(
                    dispatch_pb2.BeginAttemptResponse(
                        ok=False, rejection=dispatch_pb2.FENCE_REJECTION_SUPERSEDED
                    )
                )
                continue
            self.open_attempts[account] += 1
            self.peak_open_per_account = max(
                self.peak_open_per_account, *self.open_attempts.values()
            )
            answers.append(
                dispatch_pb2.BeginAttemptResponse(
                    ok=True,
                    attempt_id=delivery_id,
                    account_id=account,
                    account_handle=account,
                    snapshot=dispatch_pb2.ContentSnapshot(content=delivery_id),
                    credentials=posts_pb2.Credentials(access_token="token"),
                    lease=Duration(seconds=self.lease_seconds),
                )
            )
        return dispatch_pb2.BeginAttemptsResponse(results=answers)

    async def CompleteAttempts(  # noqa: N802 - the gRPC method's name
        self, request: dispatch_pb2.CompleteAttemptsRequest, **_: object
    ) -> dispatch_pb2.CompleteAttemptsResponse:
        for outcome in request.outcomes:
            self.open_attempts[self.accounts[outcome.delivery_id]] -= 1
            self.completed.add(outcome.delivery_id)
        return dispatch_pb2.CompleteAttemptsResponse(
            results=[
                dispatch_pb2.CompletionResult(
                    attempt_id=o.attempt_id, next_step=dispatch_pb2.NEXT_STEP_ACK
                )
                for o in request.outcomes
            ]
        )

    async def publish(self, request: PublishRequest) -> PublishOutcome:
        account = request.handle
        self.calls[request.content] += 1
        self.in_flight[account] += 1
        self.peak_per_account = max(self.peak_per_account, self.in_flight[account])
        self.peak = max(self.peak, sum(self.in_flight.values()))
        await asyncio.sleep(CALL_SECONDS)
        self.in_flight[account] -= 1
        return PublishOutcome(Result.PUBLISHED, platform_post_id=request.content)

    async def FailDelivery(  # noqa: N802 - the gRPC method's name
        self, request: dispatch_pb2.FailDeliveryRequest, **_: object
    ) -> dispatch_pb2.FailDeliveryResponse:
        self.failed.append((request.delivery_id, request.reason))
        return dispatch_pb2.FailDeliveryResponse()


def settings(**env: str) -> PublisherSettings:
    return PublisherSettings.from_env({"KAIROS_PUBLISHER_PLATFORMS": "sandbox", **env})


@asynccontextmanager
async def consuming(
    js: JetStreamContext, fake: FakeDispatch, config: PublisherSettings
) -> AsyncIterator[PlatformConsumer]:
    """A sandbox consumer running against the fakes until the block ends."""
    dispatch = DispatchClient(cast("dispatch_pb2_grpc.DispatchServiceAsyncStub", fake), "token")
    dispatch.start()
    consumer = PlatformConsumer(
        Platform.SANDBOX,
        fake,
        config,
        js,
        dispatch,
        account_semaphores(config.account_concurrency),
    )
    running = asyncio.create_task(consumer.run())
    try:
        yield consumer
    finally:
        await consumer.drain(5.0)
        await asyncio.wait_for(running, timeout=5.0)
        await dispatch.close()


def due_event(delivery_id: str, account_id: str, **fields: object) -> events_pb2.DueEvent:
    event = events_pb2.DueEvent(
        delivery_id=delivery_id,
        target_id=str(uuid.uuid4()),
        post_id=str(uuid.uuid4()),
        platform=posts_pb2.PLATFORM_SANDBOX,
        account_id=account_id,
        **fields,  # type: ignore[arg-type]
    )
    if "due_at" not in fields:
        event.due_at.FromDatetime(datetime.now(UTC))
    return event


async def publish(js: JetStreamContext, event: events_pb2.DueEvent) -> None:
    await js.publish(due_subject("sandbox"), event.SerializeToString())


async def eventually(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.02)


async def test_calls_stay_within_the_caps_and_with_no_budget_attempts_begin_only_with_a_slot(
    js: JetStreamContext,
) -> None:
    fake = FakeDispatch()
    accounts = [str(uuid.uuid4()) for _ in range(4)]
    for account in accounts:
        for _ in range(5):
            fake.accounts[str(uuid.uuid4())] = account
    config = settings(
        KAIROS_PLATFORM_CONCURRENCY="3",
        KAIROS_ACCOUNT_CONCURRENCY="2",
        KAIROS_BEGIN_AHEAD_SECONDS="0",
    )

    async with consuming(js, fake, config):
        for delivery_id, account in fake.accounts.items():
            await publish(js, due_event(delivery_id, account))
        await eventually(lambda: len(fake.completed) == len(fake.accounts), "all 20 completed")

    assert fake.calls == Counter({d: 1 for d in fake.accounts})
    # Reached, never passed: the caps hold while there was work enough to exceed them.
    assert fake.peak_per_account == 2
    assert fake.peak == 3
    # With no time to wait allowed, an attempt begins only when its account's call can start,
    # so no lease runs while it queues: as many open as the account has slots, never more.
    assert fake.peak_open_per_account == 2


async def test_poison_events_go_to_dead_letters_at_once_and_a_repeated_id_begins_once(
    js: JetStreamContext,
) -> None:
    fake = FakeDispatch()
    account = str(uuid.uuid4())
    good = [str(uuid.uuid4()) for _ in range(3)]
    for delivery_id in good:
        fake.accounts[delivery_id] = account
    no_account = str(uuid.uuid4())
    dead = await js.subscribe("kairos.dead.sandbox", stream=DEAD_STREAM, ordered_consumer=True)

    async with consuming(js, fake, settings()):
        await publish(js, due_event("not-a-uuid", account))
        await publish(js, due_event(no_account, ""))
        for delivery_id in good:
            await publish(js, due_event(delivery_id, account))
        await publish(js, due_event(good[0], account))  # the same delivery twice
        await eventually(lambda: fake.completed == set(good), "the good events completed")
        letters = [
            events_pb2.DeadLetter.FromString((await dead.next_msg(timeout=10)).data)
            for _ in range(2)
        ]

    assert sorted(letter.reason for letter in letters) == [
        "invalid due event: delivery_id 'not-a-uuid' is not a UUID",
        "invalid due event: no account_id",
    ]
    assert all(letter.deliveries == 1 for letter in letters)  # at once, not after retries
    # The event whose delivery can name a target marks it failed; the other cannot.
    assert fake.failed == [(no_account, "invalid due event: no account_id")]
    assert fake.calls == Counter({d: 1 for d in good})
    for batch in fake.batches:
        assert len(batch) == len(set(batch))
        assert "not-a-uuid" not in batch


@dataclass
class AwayDispatch(FakeDispatch):
    """An api that begins attempts, then cannot take their outcomes (it is restarting)."""

    offers: int = 0

    async def CompleteAttempts(  # noqa: N802 - the gRPC method's name
        self, request: dispatch_pb2.CompleteAttemptsRequest, **_: object
    ) -> dispatch_pb2.CompleteAttemptsResponse:
        self.offers += 1
        raise grpc.aio.AioRpcError(
            grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "away", None
        )


async def test_an_outcome_the_api_cannot_take_is_offered_until_the_lease_the_begin_announced(
    js: JetStreamContext, caplog: pytest.LogCaptureFixture
) -> None:
    """The publisher gives an outcome up when the api's lease for it ends, as the begin said;
    then the sweeper settles the attempt. (A lease of its own configuring would drift from the
    api's: longer, and it retries attempts already settled; shorter, and it gives up early.)"""
    fake = AwayDispatch(lease_seconds=2)
    delivery_id, account = str(uuid.uuid4()), str(uuid.uuid4())
    fake.accounts[delivery_id] = account

    def given_up() -> bool:
        return any("CompleteAttempts failed" in r.getMessage() for r in caplog.records)

    async with consuming(js, fake, settings()):
        started = time.monotonic()
        await publish(js, due_event(delivery_id, account))
        await eventually(lambda: fake.calls[delivery_id] == 1, "the platform called")
        await eventually(given_up, "the outcome given up", timeout=10.0)
        gave_up_after = time.monotonic() - started

    assert fake.offers > 1  # offered again meanwhile
    assert 1.5 < gave_up_after < 4.0  # at the announced lease, not the default 120 s


@dataclass
class LostAnswerDispatch(FakeDispatch):
    """An api that begins attempts and then loses the answer `lost` times (it died after
    committing); as the real api does, it answers a begin asked again with the key of an
    attempt it began with that attempt, and refuses one with any other key."""

    lost: int = 2
    #: The begin key of each ask, in order.
    keys: list[str] = field(default_factory=list)
    begun_with: dict[str, str] = field(default_factory=dict)

    async def BeginAttempts(  # noqa: N802 - the gRPC method's name
        self, request: dispatch_pb2.BeginAttemptsRequest, **_: object
    ) -> dispatch_pb2.BeginAttemptsResponse:
        [delivery_id] = request.delivery_ids
        [key] = request.begin_keys
        self.keys.append(key)
        began = self.begin_with_key(delivery_id, key)
        if self.lost > 0:
            self.lost -= 1
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "gone", None
            )
        return began

    def begin_with_key(self, delivery_id: str, key: str) -> dispatch_pb2.BeginAttemptsResponse:
        known = self.begun_with.get(delivery_id)
        if known is not None and known != key:
            return dispatch_pb2.BeginAttemptsResponse(
                results=[
                    dispatch_pb2.BeginAttemptResponse(
                        ok=False, rejection=dispatch_pb2.FENCE_REJECTION_NOT_QUEUED
                    )
                ]
            )
        self.begun_with[delivery_id] = key
        account = self.accounts[delivery_id]
        return dispatch_pb2.BeginAttemptsResponse(
            results=[
                dispatch_pb2.BeginAttemptResponse(
                    ok=True,
                    attempt_id=delivery_id,
                    account_id=account,
                    account_handle=account,
                    snapshot=dispatch_pb2.ContentSnapshot(content=delivery_id),
                    credentials=posts_pb2.Credentials(access_token="token"),
                    lease=Duration(seconds=self.lease_seconds),
                )
            ]
        )


async def test_a_begin_whose_answer_was_lost_is_asked_again_under_the_same_key(
    js: JetStreamContext,
) -> None:
    """Handing the event back would be fenced out (the attempt began); asking again under the
    handling's key gets the attempt, and the post goes out once, without a redelivery."""
    fake = LostAnswerDispatch(lost=2)
    delivery_id, account = str(uuid.uuid4()), str(uuid.uuid4())
    fake.accounts[delivery_id] = account

    async with consuming(js, fake, settings()):
        started = time.monotonic()
        await publish(js, due_event(delivery_id, account))
        await eventually(lambda: delivery_id in fake.completed, "the attempt completed")
        took = time.monotonic() - started

    assert fake.calls == Counter({delivery_id: 1})
    assert len(fake.keys) == 3
    assert len(set(fake.keys)) == 1  # one key for the handling, asked three times
    assert len(fake.keys[0]) == 32
    assert took < 5.0  # asked again after short waits (0.2 s, 0.4 s), not after a redelivery


async def test_a_begin_that_keeps_failing_is_handed_back_and_its_next_handling_draws_a_new_key(
    js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Asking again stops after BEGIN_RETRY_FOR; the event is naked as before, and its
    redelivery is a new handling with a key of its own (which the api refuses while the first
    handling's attempt is open, so a post never goes out under two handlings)."""
    monkeypatch.setattr(consumer_module, "BEGIN_RETRY_FOR", 0.5)
    # The first handling asks at once and after 0.2 s (the next ask, 0.4 s on, would be past
    # 0.5 s); the redelivery's handling fails once, then is answered.
    fake = LostAnswerDispatch(lost=3)
    delivery_id, account = str(uuid.uuid4()), str(uuid.uuid4())
    fake.accounts[delivery_id] = account

    async with consuming(js, fake, settings()):
        await publish(js, due_event(delivery_id, account))
        await eventually(lambda: len(fake.keys) >= 4, "the second handling answered", 10.0)
        await asyncio.sleep(0.3)

    first, second = fake.keys[0], fake.keys[2]
    assert fake.keys == [first, first, second, second]
    assert second != first
    assert fake.calls == Counter()  # the first handling's attempt is open: nobody calls
