"""The scheduler's Prometheus metrics (served by `kairos_common.metrics`): its claim and sweep
rounds as it sees them (round trip to the api included) and the due events it published.

One observation per round or per batch of events, never per delivery.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram

from kairos.dispatch.v1 import dispatch_pb2
from kairos_common.metrics import BATCH_BUCKETS, SECONDS_BUCKETS

BATCH_SIZE = Histogram(
    "kairos_scheduler_batch_size",
    "Deliveries per round, by operation: claim (ClaimDue) or sweep (re-emitted by SweepExpired).",
    ["operation"],
    buckets=BATCH_BUCKETS,
)
BATCH_DURATION = Histogram(
    "kairos_scheduler_batch_duration_seconds",
    "How long a ClaimDue or SweepExpired call took, seen from the scheduler.",
    ["operation"],
    buckets=SECONDS_BUCKETS,
)
SWEPT = Counter(
    "kairos_scheduler_swept",
    "Targets the sweeper settled, by result: redelivered, unknown, missed, requeued_idempotent.",
    ["result"],
)
DUE_EVENTS = Counter(
    "kairos_scheduler_due_events",
    "Due events sent to KAIROS_DUE, by result: published (JetStream acknowledged) or "
    "unacknowledged (left to the sweeper).",
    ["result"],
)

_CLAIM_SIZE = BATCH_SIZE.labels("claim")
_CLAIM_DURATION = BATCH_DURATION.labels("claim")
_SWEEP_SIZE = BATCH_SIZE.labels("sweep")
_SWEEP_DURATION = BATCH_DURATION.labels("sweep")
_PUBLISHED = DUE_EVENTS.labels("published")
_UNACKNOWLEDGED = DUE_EVENTS.labels("unacknowledged")


def claimed(count: int, started: float) -> None:
    """A ClaimDue round that began at `started` (`time.perf_counter()`) returned `count`."""
    _CLAIM_DURATION.observe(time.perf_counter() - started)
    _CLAIM_SIZE.observe(count)


def swept(reply: dispatch_pb2.SweepExpiredResponse, started: float) -> None:
    """A SweepExpired round that began at `started` (`time.perf_counter()`) answered `reply`."""
    _SWEEP_DURATION.observe(time.perf_counter() - started)
    _SWEEP_SIZE.observe(len(reply.redeliveries))
    for result, count in (
        ("redelivered", len(reply.redeliveries)),
        ("unknown", reply.marked_unknown),
        ("missed", reply.marked_missed),
        ("requeued_idempotent", reply.requeued_idempotent),
    ):
        if count:
            SWEPT.labels(result).inc(count)


def emitted(published: int, unacknowledged: int) -> None:
    _PUBLISHED.inc(published)
    if unacknowledged:
        _UNACKNOWLEDGED.inc(unacknowledged)
