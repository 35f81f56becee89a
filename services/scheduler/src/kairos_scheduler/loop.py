"""The claim loop and the sweeper: due targets become due events on `kairos.due.<platform>`.

Each delivery is published once with `Nats-Msg-Id = delivery_id`, so a re-publish after a crash
is dropped by JetStream. A delivery whose publish failed stays QUEUED in the database until its
lease runs out; the sweeper then re-emits it under a new delivery, so nothing is lost.

Waiting out the lease would make such posts a minute late. Events JetStream did not acknowledge
are published again, same ids, before each sweep while NATS is up. And when events may have been
lost after they were stored (this scheduler's NATS connection came back, a publisher's did, or
the due stream's leader changed) the next sweep, due at once, asks the api to re-emit every
delivery claimed before that moment and not begun. The fence refuses the superseded events that
do still arrive, so a re-emission costs a refused begin, never a second post.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import grpc
from google.protobuf.duration_pb2 import Duration

from kairos.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from kairos.events.v1 import events_pb2
from kairos.posts.v1 import posts_pb2
from kairos_common import tracing
from kairos_common.grpc.channel import bearer
from kairos_common.publishing import AckedPublisher, Message
from kairos_common.streams import due_subject
from kairos_scheduler import metrics, traces
from kairos_scheduler.settings import SchedulerSettings

log = logging.getLogger(__name__)

RPC_TIMEOUT = 10.0
#: Most unacknowledged due events kept to publish again; the sweeper re-emits any beyond, once
#: their lease runs out.
MAX_UNSENT = 100_000
#: How long to wait for JetStream to acknowledge a batch of due events.
ACK_TIMEOUT = 5.0


def platform_name(value: int) -> str:
    """`PLATFORM_MASTODON` → `mastodon`, the subject token."""
    return posts_pb2.Platform.Name(value).removeprefix("PLATFORM_").lower()  # type: ignore[arg-type]


def due_event(delivery: dispatch_pb2.Delivery) -> events_pb2.DueEvent:
    return events_pb2.DueEvent(
        delivery_id=delivery.delivery_id,
        target_id=delivery.target_id,
        post_id=delivery.post_id,
        platform=delivery.platform,
        account_id=delivery.account_id,
        due_at=delivery.due_at,
        revision=delivery.revision,
        attempt_number=delivery.attempt_number,
    )


async def emit(
    publisher: AckedPublisher, deliveries: Sequence[dispatch_pb2.Delivery]
) -> list[Message]:
    """Publish one due event per delivery, all at once, and wait for every ack (a broker restart
    can leave acks unanswered for ever: give up on them after ACK_TIMEOUT); the messages that
    were not acknowledged."""
    messages = [
        Message(
            due_subject(platform_name(delivery.platform)),
            due_event(delivery).SerializeToString(),
            delivery.delivery_id,
        )
        for delivery in deliveries
    ]
    tracer = tracing.tracer()
    spans = None if tracer is None else traces.start_publishing(tracer, deliveries, messages)
    stored: list[bool] = []
    try:
        stored = await publisher.publish(messages, ACK_TIMEOUT)
    finally:
        if spans is not None:
            traces.end_publishing(spans, stored or [False] * len(spans))
    failed = [message for message, ok in zip(messages, stored, strict=True) if not ok]
    metrics.emitted(len(stored) - len(failed), len(failed))
    if failed:
        # The rows stay QUEUED: they are published again (same ids) while their lease lasts.
        log.warning("due events not acknowledged", extra={"failed": len(failed)})
    return failed


class ClaimLoop:
    """Claims due targets every tick (or at once when woken) and sweeps expired leases."""

    def __init__(
        self,
        settings: SchedulerSettings,
        dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub,
        publisher: AckedPublisher,
    ) -> None:
        self.settings = settings
        self.dispatch = dispatch
        self.publisher = publisher
        self.metadata = bearer(settings.common.service_token)
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.emitted = 0
        #: Deliveries claimed before this instant and not begun are to be re-emitted at the next
        #: sweep (None: none are). It only moves forward until a sweep has re-emitted them all.
        self.reemit_before: datetime | None = None
        #: Set to sweep at once instead of at the next `sweep_every`.
        self.sweep_now = asyncio.Event()
        #: Due events JetStream did not acknowledge, by delivery id, oldest first: published
        #: again (the same `Nats-Msg-Id`, so one that was stored after all is not stored twice)
        #: before each sweep while NATS is up, until acknowledged or too many are waiting.
        self.unsent: dict[str, Message] = {}

    def reemit(self, reason: str) -> None:
        """Have the deliveries claimed until now and not begun re-emitted at once: their events
        may have been lost (`reason` says why, for the log)."""
        now = datetime.now(UTC)
        if self.reemit_before is None or self.reemit_before < now:
            self.reemit_before = now
        # The unacknowledged events are among what the sweep re-emits: not published twice.
        self.unsent.clear()
        log.info("re-emitting the deliveries claimed so far and not begun", extra={"why": reason})
        self.sweep_now.set()

    def _duration(self, seconds: float) -> Duration:
        value = Duration()
        value.FromNanoseconds(int(seconds * 1e9))
        return value

    async def claim_once(self) -> int:
        """One ClaimDue round trip and its events; the number of deliveries claimed."""
        started = time.perf_counter()
        reply = await self.dispatch.ClaimDue(
            dispatch_pb2.ClaimDueRequest(
                horizon=self._duration(self.settings.lead.total_seconds()),
                limit=self.settings.batch,
                lease=self._duration(self.settings.lease.total_seconds()),
            ),
            metadata=self.metadata,
            timeout=RPC_TIMEOUT,
        )
        metrics.claimed(len(reply.deliveries), started)
        if reply.deliveries:
            claimed = time.perf_counter()
            await self._emit(reply.deliveries)
            log.info(
                "claimed",
                extra={
                    "count": len(reply.deliveries),
                    "claim_ms": round((claimed - started) * 1000, 2),
                    "emit_ms": round((time.perf_counter() - claimed) * 1000, 2),
                },
            )
        return len(reply.deliveries)

    async def sweep_once(self) -> None:
        started = time.perf_counter()
        request = dispatch_pb2.SweepExpiredRequest(
            limit=self.settings.batch,
            lease=self._duration(self.settings.lease.total_seconds()),
        )
        # While NATS is away a re-emission would only fail again: it waits for the reconnect.
        before = self.reemit_before if self.publisher.connected else None
        if before is not None:
            request.reemit_claimed_before.FromDatetime(before)
        reply = await self.dispatch.SweepExpired(
            request, metadata=self.metadata, timeout=RPC_TIMEOUT
        )
        metrics.swept(reply, started)
        if reply.redeliveries:
            await self._emit(reply.redeliveries)
        if len(reply.redeliveries) >= self.settings.batch:
            self.sweep_now.set()  # more to re-emit: the next page at once
        elif before is not None and self.reemit_before == before:
            self.reemit_before = None  # all of them re-emitted
        if reply.redeliveries or reply.marked_unknown or reply.marked_missed:
            log.info(
                "swept",
                extra={
                    "redelivered": len(reply.redeliveries),
                    "unknown": reply.marked_unknown,
                    "missed": reply.marked_missed,
                    "requeued_idempotent": reply.requeued_idempotent,
                },
            )

    async def _emit(self, deliveries: Sequence[dispatch_pb2.Delivery]) -> None:
        """Publish the deliveries' due events, keeping the unacknowledged ones to send again."""
        failed = await emit(self.publisher, deliveries)
        self.emitted += len(deliveries) - len(failed)
        self.keep_unsent(failed)

    def keep_unsent(self, failed: Sequence[Message]) -> None:
        """Keep `failed` to publish again; past MAX_UNSENT the oldest are left to their lease."""
        for message in failed:
            self.unsent[message.msg_id] = message
        while len(self.unsent) > MAX_UNSENT:
            del self.unsent[next(iter(self.unsent))]

    async def publish_unsent(self) -> None:
        """Publish again, in batches, the due events JetStream did not acknowledge."""
        while self.unsent and self.publisher.connected and not self.stopping.is_set():
            messages = list(itertools.islice(self.unsent.values(), self.settings.batch))
            stored = await self.publisher.publish(messages, ACK_TIMEOUT)
            metrics.emitted(stored.count(True), stored.count(False))
            for message, ok in zip(messages, stored, strict=True):
                if ok:
                    self.emitted += 1
                    self.unsent.pop(message.msg_id, None)
            if not all(stored):
                return  # still not answering: at the next sweep
            log.info("unacknowledged due events published again", extra={"count": len(messages)})

    async def run_claims(self) -> None:
        while not self.stopping.is_set():
            try:
                claimed = await self.claim_once()
            except grpc.aio.AioRpcError as error:
                log.warning("ClaimDue failed: %s %s", error.code().name, error.details())
                claimed = 0
                await self._pause(1.0, self.wake)
            except Exception:
                log.exception("claim round failed")
                claimed = 0
                await self._pause(1.0, self.wake)
            if claimed >= self.settings.batch:
                continue  # more is due right now: no pause
            await self._pause(self.settings.tick.total_seconds(), self.wake)

    async def run_sweeps(self) -> None:
        while not self.stopping.is_set():
            try:
                await self.publish_unsent()
                await self.sweep_once()
            except grpc.aio.AioRpcError as error:
                log.warning("SweepExpired failed: %s %s", error.code().name, error.details())
            except Exception:
                log.exception("sweep failed")
            await self._pause(self.settings.sweep_every.total_seconds(), self.sweep_now)

    async def _pause(self, seconds: float, event: asyncio.Event) -> None:
        """Sleep `seconds`, until `event` (a wake-up, a sweep wanted at once), or stop."""
        waiters = [
            asyncio.ensure_future(event.wait()),
            asyncio.ensure_future(self.stopping.wait()),
        ]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        event.clear()
