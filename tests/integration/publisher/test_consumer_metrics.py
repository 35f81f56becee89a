"""The publisher's counters where they happen, with one platform consumer on a real nats-server
and the fakes of `test_consumer_limits`: events held back for an account's rate limit, token
refreshes by outcome, attempts by outcome."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from integration.publisher.test_consumer_limits import (
    FakeDispatch,
    consuming,
    due_event,
    eventually,
    publish,
    settings,
)
from nats.js import JetStreamContext
from prometheus_client import REGISTRY

from kairos.dispatch.v1 import dispatch_pb2
from kairos_publisher.platforms.base import (
    PublishOutcome,
    PublishRequest,
    RefreshedTokens,
    Result,
)


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"platform": "sandbox", **labels}) or 0.0


def counters() -> dict[str, float]:
    return {
        "blocks": counter("kairos_rate_limit_blocks_total"),
        "published": counter("kairos_delivery_attempts_total", outcome="published"),
        "retryable": counter("kairos_delivery_attempts_total", outcome="retryable"),
        "auth": counter("kairos_delivery_attempts_total", outcome="auth"),
        "refreshed": counter("kairos_credential_refreshes_total", outcome="refreshed"),
        "refused": counter("kairos_credential_refreshes_total", outcome="refused"),
        "unavailable": counter("kairos_credential_refreshes_total", outcome="unavailable"),
        "calls": counter("kairos_platform_call_duration_seconds_count"),
    }


def grown(before: dict[str, float]) -> dict[str, float]:
    """What moved since `before`, leaving out what did not."""
    return {k: v - before[k] for k, v in counters().items() if v != before[k]}


@dataclass
class LimitedPlatform(FakeDispatch):
    """The first call says the account's limit is used up for `block_seconds`."""

    block_seconds: float = 1.0

    async def publish(self, request: PublishRequest) -> PublishOutcome:
        self.calls[request.content] += 1
        if sum(self.calls.values()) == 1:
            return PublishOutcome(
                Result.RETRYABLE,
                message="rate limited",
                blocked_until=datetime.now(UTC) + timedelta(seconds=self.block_seconds),
            )
        return PublishOutcome(Result.PUBLISHED, platform_post_id=request.content)


async def test_events_held_back_for_a_used_up_limit_are_counted_once_each(
    js: JetStreamContext,
) -> None:
    fake = LimitedPlatform()
    account = str(uuid.uuid4())
    first, *later = [str(uuid.uuid4()) for _ in range(3)]
    for delivery_id in (first, *later):
        fake.accounts[delivery_id] = account
    before = counters()

    async with consuming(js, fake, settings()):
        await publish(js, due_event(first, account))
        await eventually(lambda: first in fake.completed, "the limited call reported")
        for delivery_id in later:
            await publish(js, due_event(delivery_id, account))
        await eventually(lambda: fake.completed >= set(later), "the held events published")

    assert grown(before) == {"blocks": 2, "retryable": 1, "published": 2, "calls": 3}


async def test_an_event_handed_back_during_a_long_block_is_counted_once(
    js: JetStreamContext,
) -> None:
    """A block longer than the hold: the held event goes back to JetStream with nak(delay)
    and returns a few times while the block lasts, but it is one event held back."""
    fake = LimitedPlatform(block_seconds=2.0)
    account = str(uuid.uuid4())
    first, later = str(uuid.uuid4()), str(uuid.uuid4())
    fake.accounts[first] = fake.accounts[later] = account
    before = counters()

    async with consuming(js, fake, settings(KAIROS_HOLD_MAX_SECONDS="0.3")):
        await publish(js, due_event(first, account))
        await eventually(lambda: first in fake.completed, "the limited call reported")
        await publish(js, due_event(later, account))
        await eventually(lambda: later in fake.completed, "the held event published")

    assert grown(before) == {"blocks": 1, "retryable": 1, "published": 1, "calls": 2}


class RefreshingPlatform(FakeDispatch):
    """Refuses token `old`; its token endpoint answers in turn: new tokens, a refusal, and
    'come back later'."""

    refresh_margin = timedelta(seconds=0)

    def __init__(self) -> None:
        super().__init__()
        self.answers: list[RefreshedTokens | str | PublishOutcome] = [
            RefreshedTokens(access_token="new", refresh_token="r2"),
            "refresh token revoked",
            PublishOutcome(Result.RETRYABLE, message="token endpoint down"),
        ]

    async def publish(self, request: PublishRequest) -> PublishOutcome:
        self.calls[request.content] += 1
        if request.access_token != "new":
            return PublishOutcome(Result.AUTH, message="token expired")
        return PublishOutcome(Result.PUBLISHED, platform_post_id=request.content)

    async def refresh(self, request: PublishRequest) -> RefreshedTokens | str | PublishOutcome:
        return self.answers.pop(0)

    async def SaveRefreshedCredentials(  # noqa: N802 - the gRPC method's name
        self, request: dispatch_pb2.SaveRefreshedCredentialsRequest, **_: Any
    ) -> dispatch_pb2.SaveRefreshedCredentialsResponse:
        return dispatch_pb2.SaveRefreshedCredentialsResponse()


async def test_token_refreshes_are_counted_by_outcome(js: JetStreamContext) -> None:
    fake = RefreshingPlatform()
    # One account each, one after the other, so that each refresh gets the next answer.
    deliveries = [str(uuid.uuid4()) for _ in range(3)]
    for delivery_id in deliveries:
        fake.accounts[delivery_id] = str(uuid.uuid4())
    before = counters()

    async with consuming(js, fake, settings()):
        for delivery_id in deliveries:
            await publish(js, due_event(delivery_id, fake.accounts[delivery_id]))
            await eventually(lambda d=delivery_id: d in fake.completed, "reported")  # type: ignore[misc]

    # Refreshed: called again with the new token and published. Refused: the AUTH outcome
    # stands. Unavailable: reported as the endpoint's own retryable outcome.
    assert grown(before) == {
        "refreshed": 1,
        "refused": 1,
        "unavailable": 1,
        "published": 1,
        "auth": 1,
        "retryable": 1,
        "calls": 3,
    }
