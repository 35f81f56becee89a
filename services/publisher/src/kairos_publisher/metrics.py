"""The publisher's Prometheus metrics (served by `kairos_common.metrics`).

Every observation here is one per attempt, refresh or held-back event: the consumer handles each
due event on its own anyway, so none adds a loop. JetStream's pending counts are asked of the
broker by a refresh task, never on the consumer's path.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from nats.js.errors import NotFoundError
from prometheus_client import Counter, Gauge, Histogram

from kairos_common.metrics import SECONDS_BUCKETS
from kairos_common.platforms import Platform
from kairos_publisher.platforms.base import PublishOutcome

if TYPE_CHECKING:
    from nats.js import JetStreamContext

    from kairos.dispatch.v1 import dispatch_pb2

DELIVERY_LATENESS = Histogram(
    "kairos_delivery_lateness_seconds",
    "Start of a target's first platform call (its attempt 1) minus its due instant.",
    ["platform"],
    buckets=SECONDS_BUCKETS,
)
ATTEMPTS = Counter(
    "kairos_delivery_attempts",
    "Attempts that called a platform, by platform and outcome (published, retryable, auth, "
    "permanent, unknown).",
    ["platform", "outcome"],
)
PLATFORM_CALL_DURATION = Histogram(
    "kairos_platform_call_duration_seconds",
    "How long an attempt's platform call took: every request it made, uploads and token "
    "refreshes included.",
    ["platform"],
    buckets=SECONDS_BUCKETS,
)
CREDENTIAL_REFRESHES = Counter(
    "kairos_credential_refreshes",
    "Calls to a platform's token endpoint, by outcome: refreshed, refused (the refresh token "
    "is no good) or unavailable (the endpoint could not answer now).",
    ["platform", "outcome"],
)
RATE_LIMIT_BLOCKS = Counter(
    "kairos_rate_limit_blocks",
    "Due events held back because the platform said their account's rate limit is used up.",
    ["platform"],
)
CONSUMER_PENDING = Gauge(
    "kairos_jetstream_consumer_pending_messages",
    "Messages in the stream not yet delivered to the consumer (refreshed periodically).",
    ["stream", "consumer"],
)
CONSUMER_ACK_PENDING = Gauge(
    "kairos_jetstream_consumer_ack_pending_messages",
    "Messages delivered to the consumer and not yet acknowledged (refreshed periodically).",
    ["stream", "consumer"],
)


#: Each platform's children of the histograms, and each (platform, outcome)'s counter: looking
#: a child up by its labels takes a lock and costs about as much as the observation itself.
_per_platform: dict[Platform, tuple[Histogram, Histogram]] = {}
_attempts: dict[tuple[Platform, str], Counter] = {}


def attempted(
    platform: Platform,
    begun: dispatch_pb2.BeginAttemptResponse,
    outcome: PublishOutcome,
    called_at: float,
    duration: float,
) -> None:
    """One attempt called its platform at `called_at` (Unix seconds) for `duration` seconds.

    Lateness is observed for attempt 1 only, a target's first try: retries are late by design,
    and counting them would hide how on time first calls are.
    """
    children = _per_platform.get(platform)
    if children is None:
        children = _per_platform[platform] = (
            DELIVERY_LATENESS.labels(platform.value),
            PLATFORM_CALL_DURATION.labels(platform.value),
        )
    lateness, call_duration = children
    if begun.attempt_number == 1:
        due = begun.due_at.seconds + begun.due_at.nanos * 1e-9
        lateness.observe(called_at - due)
    call_duration.observe(duration)
    key = (platform, outcome.result.value)
    attempts = _attempts.get(key)
    if attempts is None:
        attempts = _attempts[key] = ATTEMPTS.labels(platform.value, outcome.result.value)
    attempts.inc()


def refreshed(platform: Platform, answer: object) -> None:
    """A token endpoint answered: new tokens, a refusal (text), or an outcome for later."""
    if isinstance(answer, str):
        outcome = "refused"
    elif isinstance(answer, PublishOutcome):
        outcome = "unavailable"
    else:
        outcome = "refreshed"
    CREDENTIAL_REFRESHES.labels(platform.value, outcome).inc()


def held_for_rate_limit(platform: Platform) -> None:
    RATE_LIMIT_BLOCKS.labels(platform.value).inc()


async def refresh_consumer_gauges(
    js: JetStreamContext, consumers: Iterable[tuple[str, str]]
) -> None:
    """Ask JetStream for each consumer's pending and unacknowledged counts, given as (stream,
    consumer): the due-event consumers and, where webhooks are on, the webhook events' one."""
    for stream, consumer in consumers:
        try:
            info = await js.consumer_info(stream, consumer)
        except NotFoundError:
            continue  # not declared yet: its consumer task is starting
        CONSUMER_PENDING.labels(stream, consumer).set(info.num_pending or 0)
        CONSUMER_ACK_PENDING.labels(stream, consumer).set(info.num_ack_pending or 0)
