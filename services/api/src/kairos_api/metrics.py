"""The api's Prometheus metrics (served by `kairos_common.metrics`).

DispatchService's batch calls are measured once per call (`measured`), never per item. Targets
by state and the outbox's lag need the database: a refresh task reads them every few seconds
(KAIROS_METRICS_REFRESH_SECONDS), from the totals GetStats reads (migration 0005: a few rows per
tenant, platform and state, whatever the size of the tables) and from the outbox's index of
unrelayed rows, so a scrape never queries the database.

Every api copy reports the same database-wide gauges: aggregate them with max(), not sum().
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from prometheus_client import Gauge, Histogram
from sqlalchemy import func, select, union_all

from kairos_api.adapters.orm import OutboxEvent, StatsDelta, StatsTotal
from kairos_api.service_layer.application import Application
from kairos_common.metrics import BATCH_BUCKETS, SECONDS_BUCKETS

DISPATCH_BATCH_SIZE = Histogram(
    "kairos_dispatch_batch_size",
    "Items per DispatchService call, by operation: claim (deliveries claimed), begin (attempts "
    "asked to begin), complete (outcomes reported), sweep (deliveries re-emitted).",
    ["operation"],
    buckets=BATCH_BUCKETS,
)
DISPATCH_BATCH_DURATION = Histogram(
    "kairos_dispatch_batch_duration_seconds",
    "How long the api took to handle a DispatchService call, by operation.",
    ["operation"],
    buckets=SECONDS_BUCKETS,
)
TARGETS = Gauge(
    "kairos_targets",
    "Targets of live posts, by platform and state (refreshed periodically).",
    ["platform", "state"],
)
OUTBOX_UNRELAYED = Gauge(
    "kairos_outbox_unrelayed_events",
    "Lifecycle events written and not yet relayed to KAIROS_EVENTS (refreshed periodically).",
)
OUTBOX_LAG = Gauge(
    "kairos_outbox_lag_seconds",
    "Age of the oldest lifecycle event not yet relayed; 0 when none waits (refreshed "
    "periodically).",
)

Servicer = TypeVar("Servicer")
Request = TypeVar("Request")
Response = TypeVar("Response")
Handler = Callable[[Servicer, Request, Any], Awaitable[Response]]


def measured(
    operation: str, size: Callable[[Any, Any], int]
) -> Callable[[Handler[Servicer, Request, Response]], Handler[Servicer, Request, Response]]:
    """Decorates a DispatchService handler: each call that answers observes its duration and
    its batch size (`size` of the request and the response; typed loosely because a lambda
    beside the decorator cannot see the handler's types)."""
    duration = DISPATCH_BATCH_DURATION.labels(operation)
    sizes = DISPATCH_BATCH_SIZE.labels(operation)

    def decorate(
        handler: Handler[Servicer, Request, Response],
    ) -> Handler[Servicer, Request, Response]:
        @functools.wraps(handler)
        async def handle(servicer: Servicer, request: Request, context: Any) -> Response:
            started = time.perf_counter()
            response = await handler(servicer, request, context)
            duration.observe(time.perf_counter() - started)
            sizes.observe(size(request, response))
            return response

        return handle

    return decorate


_pending = union_all(
    select(StatsTotal.platform, StatsTotal.status, StatsTotal.total.label("n")).where(
        StatsTotal.platform != ""
    ),
    select(StatsDelta.platform, StatsDelta.status, StatsDelta.delta).where(
        StatsDelta.platform != ""
    ),
).subquery()
#: Targets by platform and state over every tenant, deltas not yet folded included.
_TARGETS = select(_pending.c.platform, _pending.c.status, func.sum(_pending.c.n)).group_by(
    _pending.c.platform, _pending.c.status
)
_UNRELAYED = select(func.count(), func.min(OutboxEvent.created_at)).where(
    OutboxEvent.relayed_at.is_(None)
)


async def refresh_gauges(app: Application) -> None:
    """Read the targets by state and the outbox's lag into their gauges."""
    async with app.uow() as uow:
        connection = await uow.session.connection()
        targets = list(await connection.execute(_TARGETS))
        unrelayed, oldest = (await connection.execute(_UNRELAYED)).one()
    seen = {(platform, status) for platform, status, _ in targets}
    for labels in _shown - seen:
        TARGETS.labels(*labels).set(0)  # its last target moved on
    for platform, status, total in targets:
        TARGETS.labels(platform, status).set(int(total))
    _shown.update(seen)
    OUTBOX_UNRELAYED.set(unrelayed)
    OUTBOX_LAG.set(_age(app.clock(), oldest))


#: The (platform, state) pairs the gauge has shown, so one that empties drops to 0.
_shown: set[tuple[str, str]] = set()


def _age(now: datetime, oldest: datetime | None) -> float:
    if oldest is None:
        return 0.0
    if oldest.tzinfo is None:  # SQLite hands back naive UTC
        oldest = oldest.replace(tzinfo=now.tzinfo)
    return max(0.0, (now - oldest).total_seconds())
