"""Tenants' webhooks, sent by the publisher (DESIGN.md §8).

Two loops run in each publisher copy:

- `EventRecorder` takes lifecycle events from KAIROS_EVENTS through one durable consumer that
  every copy shares (`webhooks`, pushing to a delivery group), and hands them in batches to the api
  (`RecordWebhookEvents`), which records a delivery per matching endpoint. A batch is acked only
  once the api has it; while the api is away its events come back later, so none is lost.
- `WebhookSender` claims due deliveries from the api (`ClaimWebhookDeliveries`, leased), POSTs
  them, a bounded number at a time, and reports every try (`CompleteWebhookDeliveries`, in
  batches). The api decides retries, gives up, and disables endpoints; it says when the next
  delivery is due, and the sender claims then (and every few seconds anyway).

Each request is signed as Standard Webhooks says (https://www.standardwebhooks.com), goes only to
a public address (`kairos_publisher.egress`, as media downloads do), follows no redirect and has
a time limit. A try refused by that guard shows the tenant fixed words; what the host resolved
to goes only to the publisher's log, or the delivery log would let a tenant probe the names of
the network the publisher runs in.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc
import httpx
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from kairos.dispatch.v1 import webhooks_pb2, webhooks_pb2_grpc
from kairos.events.v1 import events_pb2
from kairos_common.deadline import Deadline
from kairos_common.grpc.channel import bearer, open_channel
from kairos_common.settings import CommonSettings
from kairos_common.streams import EVENTS_STREAM, EVENTS_SUBJECT_PREFIX
from kairos_publisher.batching import Batcher
from kairos_publisher.consumer import ensure_consumer
from kairos_publisher.dispatch import TRANSIENT
from kairos_publisher.egress import EgressGuard, Refused, guarded_client
from kairos_publisher.settings import WebhookSettings

log = logging.getLogger(__name__)

#: The durable consumer on KAIROS_EVENTS that every publisher copy shares.
DURABLE = "webhooks"
#: Events recorded together, at most.
EVENT_BATCH = 500
#: How long events gather before they are recorded (seconds): during a burst this makes a few
#: large RecordWebhookEvents calls instead of many small ones, whose cost is mostly per call;
#: a webhook sent this much later matters to nobody.
RECORD_LINGER = 0.2
#: Where the shared consumer pushes events; the copies take turns (a delivery group).
DELIVER_SUBJECT = "kairos.webhooks.events"
#: Events pushed and not yet acked, across all copies.
MAX_ACK_PENDING = 10_000
#: How long an event pushed to a copy may go unacked before JetStream pushes it again (seconds).
ACK_WAIT = 60.0
#: Events that have waited this long since they arrived (or were last marked) are marked in
#: progress, which restarts their ack wait (seconds). A slow api can keep thousands waiting
#: while batches are recorded one after another; unmarked, they would be pushed again and
#: recorded twice over. The check is one comparison a batch; marking happens only when it is due.
PROGRESS_AFTER = ACK_WAIT / 4
#: Deadline of each call to the api (seconds).
RPC_TIMEOUT = 15.0
#: How long a report waits for others to share its CompleteWebhookDeliveries call (seconds).
COMPLETE_LINGER = 0.02
#: Waits before events the api could not take come back: doubling per delivery, capped (s).
RECORD_RETRY_FIRST = 1.0
RECORD_RETRY_CAP = 30.0
#: The shortest wait before claiming again deliveries the last claim said were due but did not
#: hand out (seconds).
CLAIM_GAP = 0.1
#: Waits between offers of a report the api could not take (seconds).
COMPLETE_RETRY_FIRST = 0.2
COMPLETE_RETRY_CAP = 5.0
#: Seconds between warnings while the api keeps failing the same way.
WARN_EVERY = 30.0
#: The start of an endpoint's answer kept in the delivery log, in characters.
EXCERPT_CHARS = 500
#: Bytes read of an answer for its excerpt (at most four per character); the rest is not read.
EXCERPT_BYTES = EXCERPT_CHARS * 4
USER_AGENT = "Kairos-Webhooks/1 (+https://www.standardwebhooks.com)"
SECRET_PREFIX = "whsec_"


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header: "v1," and the base64 HMAC-SHA256 of
    "<id>.<timestamp>.<body>", keyed with the base64 part of the secret after "whsec_".
    Raises ValueError when the secret is not of that form."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        # Padding is optional in the secret, as Standard Webhooks' own libraries take it.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        raise ValueError("the endpoint's secret is not whsec_ and base64") from None
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signed_headers(send: webhooks_pb2.WebhookSend, timestamp: int) -> dict[str, str]:
    """Every header of one try of `send`, signed at `timestamp` (Unix seconds)."""
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        # The answer's start goes in the delivery log as it came: asked for uncompressed.
        "accept-encoding": "identity",
        "webhook-id": send.message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(send.secret, send.message_id, timestamp, send.body),
    }


def consumer_config() -> ConsumerConfig:
    """The shared durable consumer.

    It pushes events to the copies' delivery group rather than being pulled from: nats.py takes
    a pushed message for a fraction of the CPU a fetched one costs (no timer or future per
    message), and this consumer sees every lifecycle event. Created the first time a publisher
    starts, it takes events from then on (an older event went out before anyone could ask for
    it as a webhook); after that it keeps its place across restarts. It never gives up on an
    event: the api may be away for a while, and each event is recorded once however often it
    is offered.
    """
    return ConsumerConfig(
        name=DURABLE,
        durable_name=DURABLE,
        deliver_subject=DELIVER_SUBJECT,
        deliver_group=DURABLE,
        filter_subject=f"{EVENTS_SUBJECT_PREFIX}.>",
        deliver_policy=DeliverPolicy.NEW,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ACK_WAIT,
        max_ack_pending=MAX_ACK_PENDING,
        max_deliver=-1,
    )


def retry_delay(deliveries: int) -> float:
    """How long an event offered `deliveries` times waits before it comes back."""
    doublings = max(0, min(deliveries - 1, 10))
    return min(RECORD_RETRY_CAP, RECORD_RETRY_FIRST * float(2**doublings))


def unix(stamp: Timestamp) -> float:
    return stamp.seconds + stamp.nanos * 1e-9


class Warnings:
    """Says that calls fail, once when it starts and then every WARN_EVERY seconds while it
    lasts, and once more when they work again: a long api outage is a few lines, not one a try."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.failing_since: float | None = None
        self.told_at = 0.0

    def failed(self, error: grpc.aio.AioRpcError) -> None:
        now = time.monotonic()
        if self.failing_since is None:
            self.failing_since = now
        elif now - self.told_at < WARN_EVERY:
            return
        self.told_at = now
        log.warning(
            "%s failed: %s %s; trying again",
            self.what,
            error.code().name,
            (error.details() or "")[:200],
        )

    def worked(self) -> None:
        if self.failing_since is not None:
            seconds = time.monotonic() - self.failing_since
            log.info("%s works again after %.1f s", self.what, seconds)
            self.failing_since = None


class WebhookDispatchClient:
    """The publisher's client of WebhookDispatchService, on a channel of its own (webhook
    traffic never queues with the begins and completions of posts)."""

    def __init__(
        self,
        stub: webhooks_pb2_grpc.WebhookDispatchServiceAsyncStub,
        token: str,
        *,
        channel: grpc.aio.Channel | None = None,
        timeout: float = RPC_TIMEOUT,
    ) -> None:
        self._stub = stub
        self._metadata = bearer(token)
        self._timeout = timeout
        self._channel = channel
        self._completions: Batcher[
            webhooks_pb2.WebhookResult, webhooks_pb2.CompleteWebhookDeliveriesResponse
        ] = Batcher("CompleteWebhookDeliveries", self._complete_batch, linger=COMPLETE_LINGER)

    @classmethod
    def connect(cls, settings: CommonSettings) -> WebhookDispatchClient:
        channel = open_channel(settings.api_target, settings.api_tls)
        stub = webhooks_pb2_grpc.WebhookDispatchServiceStub(channel)
        return cls(stub, settings.service_token, channel=channel)

    def start(self) -> None:
        self._completions.start()

    async def close(self) -> None:
        """Send the reports pending, then close the channel."""
        try:
            await self._completions.close()
        finally:
            if self._channel is not None:
                await self._channel.close(None)

    async def record(
        self, events: Sequence[events_pb2.LifecycleEvent]
    ) -> webhooks_pb2.RecordWebhookEventsResponse:
        return await self._stub.RecordWebhookEvents(
            webhooks_pb2.RecordWebhookEventsRequest(events=events),
            metadata=self._metadata,
            timeout=self._timeout,
        )

    async def claim(self, limit: int, lease: float) -> webhooks_pb2.ClaimWebhookDeliveriesResponse:
        request = webhooks_pb2.ClaimWebhookDeliveriesRequest(limit=limit)
        request.lease.FromNanoseconds(int(lease * 1e9))
        return await self._stub.ClaimWebhookDeliveries(
            request, metadata=self._metadata, timeout=self._timeout
        )

    async def complete(
        self, result: webhooks_pb2.WebhookResult
    ) -> webhooks_pb2.CompleteWebhookDeliveriesResponse:
        """Report one try, in a batch with the others made meanwhile."""
        return await self._completions.submit(result)

    async def _complete_batch(
        self, results: Sequence[webhooks_pb2.WebhookResult]
    ) -> Sequence[webhooks_pb2.CompleteWebhookDeliveriesResponse]:
        reply = await self._stub.CompleteWebhookDeliveries(
            webhooks_pb2.CompleteWebhookDeliveriesRequest(results=results),
            metadata=self._metadata,
            timeout=self._timeout,
        )
        return [reply] * len(results)


@dataclass(frozen=True)
class Answer:
    """What one request got: the status (0 without one), what went wrong ("" on a 2xx), and the
    start of the body. `error` goes in the tenant's delivery log; `detail`, when set, says more
    for the publisher's log only (what a refused host resolved to)."""

    http_status: int
    error: str
    excerpt: str = ""
    detail: str = ""


def judged(response: httpx.Response, excerpt: str) -> Answer:
    """What an endpoint's answer means: a 2xx delivers; anything else, a redirect too, fails."""
    status = response.status_code
    if 200 <= status < 300:
        return Answer(status, "", excerpt)
    if 300 <= status < 400:
        location = response.headers.get("location", "")
        where = f"to {location[:300]}" if location else "without a location"
        return Answer(status, f"HTTP {status}: redirect {where} not followed", excerpt)
    return Answer(status, f"HTTP {status}", excerpt)


class WebhookPoster:
    """Makes one signed request of a delivery, through the egress guard."""

    def __init__(self, guard: EgressGuard, timeout: float) -> None:
        self.guard = guard
        self.timeout = timeout
        self.http = guarded_client(timeout)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def post(self, send: webhooks_pb2.WebhookSend) -> tuple[Answer, float]:
        """The endpoint's answer and how long it took (seconds)."""
        started = time.monotonic()
        answer = Answer(0, f"no answer within {self.timeout:g} s")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.timeout):
                sent = await self._send(send)
                if isinstance(sent, Answer):
                    answer = sent
                else:
                    try:
                        # The status stands even if the body is too slow to read.
                        answer = judged(sent, "")
                        answer = judged(sent, await self._excerpt(sent))
                    finally:
                        await sent.aclose()
        return answer, time.monotonic() - started

    async def _send(self, send: webhooks_pb2.WebhookSend) -> httpx.Response | Answer:
        """The response, its body not yet read; or why there is none."""
        try:
            pinned = await self.guard.pin(send.url)
        except Refused as refused:
            return Answer(0, f"not sent: {refused.reason}", detail=refused.detail)
        try:
            headers = signed_headers(send, int(time.time()))
            request = pinned.request(self.http, "POST", headers=headers, content=send.body)
        except ValueError as error:
            return Answer(0, str(error))
        try:
            return await self.http.send(request, stream=True)
        except httpx.TimeoutException as error:
            return Answer(0, f"timed out: {type(error).__name__}")
        except httpx.ConnectError as error:
            return Answer(0, f"cannot connect: {error}")
        except httpx.HTTPError as error:
            return Answer(0, f"request failed: {type(error).__name__}: {error}")

    @staticmethod
    async def _excerpt(response: httpx.Response) -> str:
        """The start of the body; what cannot be read is left out (the status is known)."""
        taken = bytearray()
        with contextlib.suppress(httpx.HTTPError):
            async for chunk in response.aiter_raw():
                taken += chunk
                if len(taken) >= EXCERPT_BYTES:
                    break
        text = bytes(taken[:EXCERPT_BYTES]).decode("utf-8", "replace")[:EXCERPT_CHARS]
        # PostgreSQL's text cannot hold NUL: a binary answer must not make its try unreportable.
        return text.replace("\x00", "\ufffd")


class WebhookSender:
    """Claims due deliveries and sends them, `concurrency` at a time."""

    def __init__(
        self, client: WebhookDispatchClient, poster: WebhookPoster, settings: WebhookSettings
    ) -> None:
        self.client = client
        self.poster = poster
        self.concurrency = settings.concurrency
        self.lease = settings.lease.total_seconds()
        self.poll = settings.poll.total_seconds()
        self.in_flight: set[asyncio.Task[None]] = set()
        #: When a delivery is next due (Unix seconds), as far as this copy knows.
        self.next_due: float | None = None
        self.wakeup = asyncio.Event()
        self.stopping = asyncio.Event()
        self.claim_warnings = Warnings("ClaimWebhookDeliveries")
        self.complete_warnings = Warnings("CompleteWebhookDeliveries")

    def wake_at(self, stamp: Timestamp) -> None:
        """Claim at `stamp` (or at once, if it has passed)."""
        due = unix(stamp)
        if self.next_due is None or due < self.next_due:
            self.next_due = due
        self.wakeup.set()

    @property
    def free(self) -> int:
        return self.concurrency - len(self.in_flight)

    async def run(self) -> None:
        while not self.stopping.is_set():
            await self._wait()
            if self.stopping.is_set():
                break
            while self.free > 0 and not self.stopping.is_set():
                if not await self._claim(self.free):
                    break  # took all that is due

    def halt(self) -> None:
        """Claim no more (a claim under way still starts its sends)."""
        self.stopping.set()
        self.wakeup.set()

    async def drain(self, deadline: Deadline) -> None:
        """Let the tries in flight finish and report while the deadline allows (call once `run`
        has returned)."""
        if self.in_flight:
            await asyncio.wait(set(self.in_flight), timeout=max(0.0, deadline.remaining()))
        for task in self.in_flight:
            task.cancel()

    async def _wait(self) -> None:
        """Until a delivery is due (or the poll interval passed) and a slot is free."""
        poll_at = time.monotonic() + self.poll
        while not self.stopping.is_set():
            due_in = float("inf") if self.next_due is None else self.next_due - time.time()
            poll_in = poll_at - time.monotonic()
            if self.free > 0 and (due_in <= 0 or poll_in <= 0):
                return
            self.wakeup.clear()
            # With every slot busy, only a finished send (which sets wakeup) can help.
            timeout = min(due_in, poll_in) if self.free > 0 else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), timeout)

    async def _claim(self, limit: int) -> bool:
        """Claim and start sending up to `limit`; whether there may be more due now."""
        self.next_due = None  # what is due is claimed now; what comes meanwhile sets it again
        asked = time.monotonic()
        try:
            reply = await self.client.claim(limit, self.lease)
        except grpc.aio.AioRpcError as error:
            self.claim_warnings.failed(error)
            return False
        self.claim_warnings.worked()
        if reply.HasField("next_due_at"):
            if len(reply.sends) < limit and unix(reply.next_due_at) <= time.time():
                # Due, yet not handed out (taken by another copy meanwhile): not worth more
                # than a claim every CLAIM_GAP seconds.
                reply.next_due_at.FromNanoseconds(int((time.time() + CLAIM_GAP) * 1e9))
            self.wake_at(reply.next_due_at)
        for send in reply.sends:
            task = asyncio.create_task(self._deliver(send, asked + self.lease))
            self.in_flight.add(task)
            task.add_done_callback(self._done)
        return len(reply.sends) >= limit

    def _done(self, task: asyncio.Task[None]) -> None:
        self.in_flight.discard(task)
        self.wakeup.set()

    async def _deliver(self, send: webhooks_pb2.WebhookSend, lease_ends: float) -> None:
        try:
            attempted_at = datetime.now(UTC)
            answer, latency = await self.poster.post(send)
            result = webhooks_pb2.WebhookResult(
                delivery_id=send.delivery_id,
                attempt_number=send.attempt_number,
                http_status=answer.http_status,
                error=answer.error,
                response_excerpt=answer.excerpt,
            )
            result.latency.FromNanoseconds(int(latency * 1e9))
            result.attempted_at.FromDatetime(attempted_at)
            log.log(
                logging.INFO if answer.error else logging.DEBUG,
                "webhook try failed" if answer.error else "webhook delivered",
                extra={
                    "delivery_id": send.delivery_id,
                    "webhook_id": send.webhook_id,
                    "attempt": send.attempt_number,
                    "http_status": answer.http_status,
                    "error": answer.error,
                    **({"detail": answer.detail} if answer.detail else {}),
                },
            )
            await self._report(result, lease_ends)
        except Exception:
            # Unreported, the delivery is claimed again when its lease ends.
            log.exception("sending a webhook failed", extra={"delivery_id": send.delivery_id})

    async def _report(self, result: webhooks_pb2.WebhookResult, lease_ends: float) -> None:
        """Report the try, offering it again while the api is away and the lease lasts (after
        that the api hands the delivery out again, and ignores this try)."""
        wait = COMPLETE_RETRY_FIRST
        while True:
            try:
                reply = await self.client.complete(result)
            except grpc.aio.AioRpcError as error:
                self.complete_warnings.failed(error)
                if error.code() not in TRANSIENT or time.monotonic() + wait > lease_ends:
                    log.error(
                        "the try of webhook delivery %s is not reported (%s); it is made again "
                        "when its lease ends",
                        result.delivery_id,
                        error.code().name,
                    )
                    return
                await asyncio.sleep(wait)
                wait = min(wait * 2, COMPLETE_RETRY_CAP)
                continue
            self.complete_warnings.worked()
            if reply.HasField("next_due_at"):
                self.wake_at(reply.next_due_at)
            return


class EventRecorder:
    """Takes lifecycle events as the shared consumer pushes them and records them in batches:
    what arrives within RECORD_LINGER of the first, or while the previous batch was being
    recorded, goes in the next one."""

    def __init__(
        self, js: JetStreamContext, client: WebhookDispatchClient, sender: WebhookSender
    ) -> None:
        self.js = js
        self.client = client
        self.sender = sender
        self.stopping = False
        self.warnings = Warnings("RecordWebhookEvents")
        self.subscription: JetStreamContext.PushSubscription | None = None
        #: Messages pushed and not yet recorded, in order of arrival.
        self.arrived: list[Msg] = []
        #: The batch being recorded, taken from `arrived`.
        self.taken: Sequence[Msg] = ()
        #: Since when (monotonic) the longest-waiting message has waited unmarked: the first
        #: arrival while none waited, or the last marking; None while none waits.
        self.waiting_since: float | None = None
        self.wakeup = asyncio.Event()

    async def subscribe(self) -> None:
        """Declare the shared consumer and join its delivery group: events from now on are kept
        for webhooks even before `run` records them."""
        config = consumer_config()
        await ensure_consumer(self.js, config, stream=EVENTS_STREAM)
        self.subscription = await self.js.subscribe_bind(
            EVENTS_STREAM,
            config,
            DURABLE,
            cb=self._arrive,
            manual_ack=True,
            # Above what the consumer lets be unacked, so the client never drops one.
            pending_msgs_limit=MAX_ACK_PENDING * 2,
        )

    async def _arrive(self, message: Msg) -> None:
        if self.waiting_since is None:
            self.waiting_since = time.monotonic()
        self.arrived.append(message)
        self.wakeup.set()

    async def run(self) -> None:
        while True:
            await self.wakeup.wait()
            if not self.stopping:
                await asyncio.sleep(RECORD_LINGER)
            self.wakeup.clear()
            while self.arrived:
                batch = self.arrived[:EVENT_BATCH]
                del self.arrived[:EVENT_BATCH]
                self.taken = batch
                recorded = await self.record(batch)
                self.taken = ()
                if recorded:
                    continue
                if self.stopping:
                    # The api is away and there is no time to wait for it: the rest goes
                    # back now, for another copy to record.
                    for message in self.arrived:
                        await message.nak()
                    self.arrived.clear()
                    break
                # The api could not take them: they come back later; meanwhile, wait a little
                # rather than send the next ones straight into the same failure.
                await asyncio.sleep(RECORD_RETRY_FIRST)
            if not self.arrived:
                self.waiting_since = None
            if self.stopping:
                return

    async def stop(self) -> None:
        """Take no more events; what arrived is recorded (or handed back) before `run` ends."""
        self.stopping = True
        if self.subscription is not None:
            with contextlib.suppress(Exception):
                await self.subscription.unsubscribe()
        self.wakeup.set()

    async def record(self, messages: Sequence[Msg]) -> bool:
        """Record the events, then ack them; False when the api could not take them now."""
        batch: list[tuple[Msg, events_pb2.LifecycleEvent]] = []
        for message in messages:
            try:
                batch.append((message, events_pb2.LifecycleEvent.FromString(message.data)))
            except DecodeError as error:
                log.error("an undecodable lifecycle event is dropped: %s", error)
                await message.term()
        return await self._record(batch) if batch else True

    async def keep_waiting(self) -> None:
        """Mark the waiting messages in progress once the longest-waiting one has waited
        PROGRESS_AFTER, so that their ack wait does not run out while the api is slow."""
        since = self.waiting_since
        now = time.monotonic()
        if since is None or now - since < PROGRESS_AFTER:
            return
        self.waiting_since = now
        waiting = [*self.taken, *self.arrived]
        try:
            for message in waiting:
                await message.in_progress()
        except NatsError as error:
            # Those not marked may be pushed again; the api records each event once anyway.
            log.warning("marking %d waiting events in progress failed: %r", len(waiting), error)
            return
        log.info(
            "%d events still wait to be recorded after %.0f s; marked in progress",
            len(waiting),
            now - since,
        )

    async def _record(self, batch: list[tuple[Msg, events_pb2.LifecycleEvent]]) -> bool:
        await self.keep_waiting()
        try:
            reply = await self.client.record([event for _, event in batch])
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.INVALID_ARGUMENT:
                self.warnings.failed(error)
                for message, _ in batch:
                    await message.nak(delay=retry_delay(message.metadata.num_delivered))
                return False
            if len(batch) > 1:
                # One bad event must not hold the others back: each is offered on its own.
                results = [await self._record([one]) for one in batch]
                return all(results)
            message, event = batch[0]
            log.error(
                "the api refused lifecycle event %s for webhooks: %s",
                event.event_id,
                error.details(),
            )
            await message.term()
            return True
        self.warnings.worked()
        for message, _ in batch:
            await message.ack()
        if reply.recorded and reply.HasField("next_due_at"):
            self.sender.wake_at(reply.next_due_at)
        return True


class Webhooks:
    """The publisher's webhook work: the recorder and the sender, started and stopped together."""

    def __init__(
        self,
        client: WebhookDispatchClient,
        recorder: EventRecorder,
        sender: WebhookSender,
        poster: WebhookPoster,
    ) -> None:
        self.client = client
        self.recorder = recorder
        self.sender = sender
        self.poster = poster
        self.tasks: list[asyncio.Task[None]] = []

    @classmethod
    def build(
        cls, settings: WebhookSettings, common: CommonSettings, js: JetStreamContext
    ) -> Webhooks:
        client = WebhookDispatchClient.connect(common)
        guard = EgressGuard(settings.allowed_networks)
        poster = WebhookPoster(guard, settings.timeout.total_seconds())
        sender = WebhookSender(client, poster, settings)
        return cls(client, EventRecorder(js, client, sender), sender, poster)

    async def start(self) -> None:
        """Subscribe, then run the loops in the background."""
        await self.recorder.subscribe()
        self.client.start()
        self.tasks = [
            asyncio.create_task(self.recorder.run(), name="webhook-events"),
            asyncio.create_task(self.sender.run(), name="webhook-sender"),
        ]

    async def stop(self, deadline: Deadline) -> None:
        """Stop reading and claiming, finish the tries in flight, report them, close."""
        await self.recorder.stop()
        self.sender.halt()
        await deadline.finish(self.tasks)
        await self.sender.drain(deadline)
        await deadline.run(self.client.close())
        await self.poster.aclose()
