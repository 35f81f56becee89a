"""One durable pull consumer per platform on KAIROS_DUE, shared by every publisher copy.

For each due event: hold it until its instant (in memory with in-progress acks, or nak(delay)
when it is far off), begin the attempt (the fence), call the platform, report the outcome, and
then ack, or nak(delay) when the outcome asks for a short retry through JetStream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import cast

import grpc
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import BadRequestError, NotFoundError

from kairos.dispatch.v1 import dispatch_pb2
from kairos.events.v1 import events_pb2
from kairos.posts.v1 import media_pb2, posts_pb2
from kairos_common import tracing
from kairos_common.platforms import CATALOGUE, Platform
from kairos_common.streams import DUE_STREAM, dead_subject, due_subject
from kairos_publisher import metrics, traces
from kairos_publisher.admission import AccountGate
from kairos_publisher.dispatch import DispatchClient, offered_again
from kairos_publisher.media import StoredMedia
from kairos_publisher.platforms.base import (
    NO_STAGE,
    AttemptStage,
    PlatformClient,
    PublishOutcome,
    PublishRequest,
    RefreshingClient,
    Result,
)
from kairos_publisher.settings import PublisherSettings
from kairos_publisher.stage import TrackedStage

log = logging.getLogger(__name__)

FETCH_TIMEOUT = 1.0
#: How long tokens refreshed here are reused by calls refused with the old ones (seconds).
REFRESHED_KEPT = 300.0
#: Expired rate-limit blocks are dropped once this many accounts are remembered.
BLOCKED_PRUNE_AT = 10_000
#: In-progress acks while holding an event, well inside AckWait (at most a third of it).
KEEPALIVE_EVERY = 10.0
#: How long after its first failure a begin is asked again under its begin key (seconds): long
#: enough for an api restart or a PostgreSQL failover, short against the attempt's lease (the
#: api counts it from the begin it committed, perhaps the first of these asks).
BEGIN_RETRY_FOR = 10.0
#: Waits between those asks: doubling from the first, capped (seconds).
BEGIN_RETRY_FIRST = 0.2
BEGIN_RETRY_CAP = 2.0

ERROR_CLASSES = {
    Result.RETRYABLE: posts_pb2.ERROR_CLASS_RETRYABLE,
    Result.AUTH: posts_pb2.ERROR_CLASS_AUTH,
    Result.PERMANENT: posts_pb2.ERROR_CLASS_PERMANENT,
    Result.UNKNOWN: posts_pb2.ERROR_CLASS_UNKNOWN,
}


def durable_name(platform: Platform) -> str:
    return f"publisher-{platform.value}"


def consumer_config(settings: PublisherSettings, platform: Platform) -> ConsumerConfig:
    return ConsumerConfig(
        name=durable_name(platform),
        durable_name=durable_name(platform),
        filter_subject=due_subject(platform.value),
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=settings.ack_wait.total_seconds(),
        max_ack_pending=settings.max_ack_pending,
        max_deliver=settings.max_deliver,
        max_waiting=512,
    )


async def ensure_consumer(
    js: JetStreamContext, config: ConsumerConfig, stream: str = DUE_STREAM
) -> None:
    """Create the durable consumer on `stream`, or bring an existing one's settings up to
    `config` (AckWait, MaxAckPending, MaxDeliver ... changed since it was created); safe from
    every copy at once."""
    assert config.durable_name is not None
    for _ in range(3):
        try:
            info = await js.consumer_info(stream, config.durable_name)
        except NotFoundError:
            try:
                await js.add_consumer(stream, config)
                log.info("created consumer", extra={"consumer": config.durable_name})
                return
            except BadRequestError:
                continue  # another copy created it first: go round and compare
        if not differs(info.config, config):
            return
        # Creating a consumer that exists with other settings updates it.
        await js.add_consumer(stream, config)
        log.info("updated consumer", extra={"consumer": config.durable_name})
        return
    raise RuntimeError(f"could not declare consumer {config.durable_name}")


def differs(current: ConsumerConfig, wanted: ConsumerConfig) -> bool:
    """Whether the consumer's settings that the publisher manages differ from the wanted ones."""
    fields = ("filter_subject", "ack_wait", "max_ack_pending", "max_deliver")
    return any(getattr(current, f) != getattr(wanted, f) for f in fields)


#: A UUID as the api writes them; anything else is still checked by `uuid.UUID`.
CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def is_uuid(value: str) -> bool:
    if CANONICAL_UUID.fullmatch(value):
        return True
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def event_problem(event: events_pb2.DueEvent, platform: Platform) -> str | None:
    """What makes a decoded due event unusable, or None when it is fine."""
    for name in ("delivery_id", "target_id", "post_id", "account_id"):
        value = getattr(event, name)
        if not value:
            return f"no {name}"
        if not is_uuid(value):
            return f"{name} {value[:64]!r} is not a UUID"
    if not event.HasField("due_at"):
        return "no due_at"
    try:
        named = posts_pb2.Platform.Name(event.platform).removeprefix("PLATFORM_").lower()
    except ValueError:
        return f"unknown platform {event.platform}"
    if named != platform.value:
        return f"platform {named} on the {platform.value} subject"
    return None


def outcome_message(
    begun: dispatch_pb2.BeginAttemptResponse,
    delivery_id: str,
    outcome: PublishOutcome,
    latency: float,
) -> dispatch_pb2.AttemptOutcome:
    message = dispatch_pb2.AttemptOutcome(
        attempt_id=begun.attempt_id,
        delivery_id=delivery_id,
        error_code=outcome.code,
        message=outcome.message,
        http_status=outcome.http_status,
    )
    message.latency.FromNanoseconds(int(latency * 1e9))
    if outcome.blocked_until is not None:
        message.account_blocked_until.FromDatetime(outcome.blocked_until)
    if outcome.result == Result.PUBLISHED:
        message.published.CopyFrom(
            dispatch_pb2.Published(platform_post_id=outcome.platform_post_id, url=outcome.url)
        )
    else:
        message.error_class = ERROR_CLASSES[outcome.result]
        if outcome.retry_not_before is not None:
            stamp = Timestamp()
            stamp.FromDatetime(outcome.retry_not_before)
            message.retry_not_before.CopyFrom(stamp)
    return message


def expiry(credentials: posts_pb2.Credentials) -> datetime | None:
    """When the access token expires, if the account says."""
    if not credentials.HasField("expires_at"):
        return None
    return credentials.expires_at.ToDatetime(tzinfo=UTC)


def publish_request(
    begun: dispatch_pb2.BeginAttemptResponse, stage: AttemptStage = NO_STAGE
) -> PublishRequest:
    """What the platform module is asked to publish. An uploaded file the api presigned (for a
    platform that pulls media by URL) joins the URLs, ahead of the post's own; the others are
    read from the media store and sent as bytes."""
    credentials = begun.credentials
    snapshot = begun.snapshot
    video = media_pb2.MEDIA_KIND_VIDEO
    presigned = [m.url for m in snapshot.stored_media if m.url and m.kind != video]
    return PublishRequest(
        post_id=begun.post_id,
        target_id=begun.target_id,
        content=snapshot.content,
        media_urls=[*presigned, *snapshot.media_urls],
        stored_media=[
            StoredMedia(
                m.media_id,
                m.content_type,
                m.size,
                m.sha256,
                m.storage_key,
                kind=media_pb2.MediaKind.Name(m.kind).removeprefix("MEDIA_KIND_").lower(),
                url=m.url,
                width=m.width,
                height=m.height,
                duration_seconds=m.duration.ToTimedelta().total_seconds(),
            )
            for m in snapshot.stored_media
            if not m.url or m.kind == video
        ],
        settings=dict(begun.snapshot.settings),
        reply_to=begun.reply_to_platform_id,
        idempotency_key=begun.idempotency_key,
        due_at=begun.due_at.ToDatetime(tzinfo=UTC),
        access_token=credentials.access_token,
        refresh_token=credentials.refresh_token,
        instance_url=credentials.instance_url,
        page_id=credentials.page_id,
        chat_id=credentials.chat_id,
        extra=dict(credentials.extra),
        expires_at=expiry(credentials),
        handle=begun.account_handle,
        earlier_outcome_lost=begun.earlier_outcome_lost,
        stage=stage,
    )


def with_credentials(request: PublishRequest, credentials: posts_pb2.Credentials) -> PublishRequest:
    """The request with an account's newer credentials."""
    return replace(
        request,
        access_token=credentials.access_token,
        refresh_token=credentials.refresh_token,
        extra=dict(credentials.extra),
        expires_at=expiry(credentials),
    )


class PlatformConsumer:
    """Pulls one platform's due events and publishes them, within its concurrency limits."""

    def __init__(
        self,
        platform: Platform,
        client: PlatformClient,
        settings: PublisherSettings,
        js: JetStreamContext,
        dispatch: DispatchClient,
        account_limits: dict[str, asyncio.Semaphore],
    ) -> None:
        self.platform = platform
        self.client = client
        self.settings = settings
        self.js = js
        self.dispatch = dispatch
        self.account_limits = account_limits
        self.slots = asyncio.Semaphore(settings.platform_concurrency)
        #: Per account, how many attempts may be begun ahead of its call slots (see `deliver`).
        self.gates: dict[str, AccountGate] = {}
        self.in_flight: set[asyncio.Task[None]] = set()
        #: Messages being handled past their hold, by id (Msg is not hashable), and the one task
        #: that keeps them alive.
        self.in_hand: dict[int, Msg] = {}
        self.keeper: asyncio.Task[None] | None = None
        #: Delivery ids of the events this consumer is handling, so one is never begun twice.
        self.active: set[str] = set()
        self.stopping = asyncio.Event()
        self.published = 0
        self.refresh_locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        #: Tokens this copy refreshed lately, by account, so that calls that were refused with
        #: the old token at the same time use them instead of refreshing again. Kept briefly:
        #: the saved credentials reach later calls through BeginAttempt.
        self.refreshed: dict[str, tuple[float, posts_pb2.Credentials]] = {}
        #: Accounts whose rate limit the platform said is used up, until when (Unix seconds).
        self.blocked: dict[str, float] = {}
        #: Per blocked account, the deliveries already counted as held back by its block: an
        #: event handed back with nak(delay) comes back while the block lasts, and is counted
        #: once. Forgotten with the block.
        self.held: dict[str, set[str]] = {}
        #: This process's tracer, or None when tracing is off; `run` asks once, so the untraced
        #: path does nothing more per event.
        self.tracer = tracing.tracer()

    async def run(self) -> None:
        """Fetch while not stopping; each message is handled in its own task."""
        await ensure_consumer(self.js, consumer_config(self.settings, self.platform))
        subscription = await self.js.pull_subscribe_bind(
            durable=durable_name(self.platform), stream=DUE_STREAM
        )
        handle = self.handle if self.tracer is None else self.handle_traced
        while not self.stopping.is_set():
            # Hold events waiting for their instant outside the call slots, so a burst of
            # early events never blocks the ones that are due now.
            free = max(1, self.settings.platform_concurrency * 4 - len(self.in_flight))
            try:
                messages = await subscription.fetch(min(free, 500), timeout=FETCH_TIMEOUT)
            except (NatsTimeoutError, TimeoutError):
                continue
            except Exception as error:
                if self.stopping.is_set():
                    break
                log.warning("fetch failed on %s: %r", self.platform, error)
                await asyncio.sleep(0.5)
                continue
            for message in messages:
                task = asyncio.create_task(handle(message))
                self.in_flight.add(task)
                task.add_done_callback(self.in_flight.discard)
        await subscription.unsubscribe()

    async def drain(self, grace: float) -> None:
        """Stop fetching, then let in-flight messages finish within `grace` seconds."""
        self.stopping.set()
        if self.in_flight:
            await asyncio.wait(set(self.in_flight), timeout=grace)
        if self.keeper is not None:
            self.keeper.cancel()

    async def handle(self, message: Msg) -> None:
        try:
            await self._handle(message)
        except Exception:
            # Left unacked: JetStream redelivers after AckWait, and the fence keeps it safe.
            log.exception("handling a due event failed", extra={"platform": self.platform.value})

    async def handle_traced(self, message: Msg) -> None:
        """`handle` in the span of the event's handling (tracing on)."""
        assert self.tracer is not None
        with traces.processing(self.tracer, message):
            await self.handle(message)

    async def _handle(self, message: Msg) -> None:
        try:
            event = events_pb2.DueEvent.FromString(message.data)
        except DecodeError as error:
            await self.dead_letter(message, f"undecodable due event: {error}")
            return
        problem = event_problem(event, self.platform)
        if problem is not None:
            # Poison: no delivery of it can ever succeed, so it goes to KAIROS_DEAD at once
            # rather than into a BeginAttempts batch, where it would hold back the good ones.
            await self.fail_delivery(event, f"invalid due event: {problem}")
            await self.dead_letter(message, f"invalid due event: {problem}")
            return
        if message.metadata.num_delivered >= self.settings.max_deliver:
            reason = f"delivered {message.metadata.num_delivered} times without an outcome"
            await self.fail_delivery(event, reason)
            await self.dead_letter(message, reason)
            return
        if event.delivery_id in self.active:
            # Another message of this copy carries the same delivery (a redelivery of one still
            # being handled, or a re-publish): that one settles it. Left unacked, this one comes
            # back after AckWait, when the fence turns it away.
            log.warning("delivery already in hand", extra={"delivery_id": event.delivery_id})
            return
        self.active.add(event.delivery_id)
        try:
            await self.deliver(message, event)
        finally:
            self.active.discard(event.delivery_id)

    async def deliver(self, message: Msg, event: events_pb2.DueEvent) -> None:
        """Hold, begin when the account's gate admits it, call in a slot, report, ack."""
        # Instants as Unix seconds: no datetime objects made per event.
        due = event.due_at.seconds + event.due_at.nanos * 1e-9
        blocked = self.blocked.get(event.account_id)
        if blocked is not None and blocked <= time.time():
            del self.blocked[event.account_id]
            self.held.pop(event.account_id, None)
        elif blocked is not None and blocked > due:
            due = blocked  # the platform asked this account to wait
            held = self.held.setdefault(event.account_id, set())
            if event.delivery_id not in held:
                held.add(event.delivery_id)
                metrics.held_for_rate_limit(self.platform)
        if not await self.hold_until(message, due):
            return  # handed back with nak(delay), or stopping
        # An attempt's lease runs from BeginAttempt, so an event must not begin and then queue
        # behind a busy account for longer than the lease (see kairos_publisher.admission).
        gate = self.gate(event.account_id)
        async with self.kept_alive(message), gate.admit():
            if self.stopping.is_set():
                await message.nak()
                return  # handed back before anything began
            # The api starts the lease when it takes the begin, so counted from before the call
            # it ends no sooner than the api's.
            asked = time.monotonic()
            begun = await self.begin(message, event)
            if begun is None:
                return
            lease = begun.lease.seconds + begun.lease.nanos * 1e-9
            lease_ends = asked + lease
            async with self.call_slots(event.account_id):
                called_at = time.time()
                started = time.monotonic()
                if begun.snapshot.stored_media and any(
                    m.kind == media_pb2.MEDIA_KIND_VIDEO for m in begun.snapshot.stored_media
                ):
                    outcome, lease_ends = await self.call_staged(begun, lease, lease_ends)
                else:
                    outcome = await self.call(begun)
                latency = time.monotonic() - started
            gate.timed(latency)
            metrics.attempted(self.platform, begun, outcome, called_at, latency)
            await self.report(message, event, begun, outcome, latency, lease_ends)

    def gate(self, account_id: str) -> AccountGate:
        gate = self.gates.get(account_id)
        if gate is None:
            gate = self.gates[account_id] = AccountGate(
                self.settings.account_concurrency,
                self.settings.begin_ahead.total_seconds(),
                first_latency=self.settings.http_timeout.total_seconds(),
            )
        return gate

    async def begin(
        self, message: Msg, event: events_pb2.DueEvent
    ) -> dispatch_pb2.BeginAttemptResponse | None:
        """The begun attempt; None when the event was settled instead (fenced out, or the api
        could not be asked and it was handed back).

        A begin whose answer was lost may have begun (the api committed, then died or its
        database failed over): a redelivery would be fenced out and the target left to the
        sweeper as UNKNOWN. So the begin is asked again under the key drawn for this handling,
        which the api answers with the attempt it began, for up to BEGIN_RETRY_FOR after the
        first failure (which may itself have waited out the call's deadline)."""
        key = uuid.uuid4().hex
        try:
            begun = await offered_again(
                lambda: self.dispatch.begin(event.delivery_id, key),
                give_up=lambda: time.monotonic() + BEGIN_RETRY_FOR,
                stop=self.stopping,
                first=BEGIN_RETRY_FIRST,
                cap=BEGIN_RETRY_CAP,
            )
        except grpc.aio.AioRpcError as error:
            # The api is away or overloaded. An attempt may have begun: the sweeper settles it
            # when its lease runs out, and the redelivery is fenced out.
            log.warning("BeginAttempts failed: %s", error.code().name)
            await message.nak(delay=1.0)
            return None
        if not begun.ok:
            log.info(
                "delivery fenced out",
                extra={
                    "delivery_id": event.delivery_id,
                    "rejection": dispatch_pb2.FenceRejection.Name(begun.rejection),
                    "reason": begun.reason,
                },
            )
            await message.ack()
            return None
        return begun

    async def report(
        self,
        message: Msg,
        event: events_pb2.DueEvent,
        begun: dispatch_pb2.BeginAttemptResponse,
        outcome: PublishOutcome,
        latency: float,
        lease_ends: float,
    ) -> None:
        """Complete the attempt, then ack, or nak(delay) when the api asks for a short retry.

        While the api cannot take the outcome it is offered again until the attempt's lease
        ends (`lease_ends`, by `time.monotonic()`); the message is kept alive meanwhile, so
        JetStream does not hand the event to another copy."""
        if outcome.blocked_until is not None:
            until = outcome.blocked_until.timestamp()
            known = self.blocked.get(begun.account_id)
            if known is None or known < until:
                self.blocked[begun.account_id] = until
                if known is None or known <= time.time():
                    self.held.pop(begun.account_id, None)  # a new block: count afresh
            if len(self.blocked) > BLOCKED_PRUNE_AT:
                now = time.time()
                self.blocked = {a: t for a, t in self.blocked.items() if t > now}
                self.held = {a: d for a, d in self.held.items() if a in self.blocked}
        try:
            result = await self.dispatch.complete(
                outcome_message(begun, event.delivery_id, outcome, latency), lease_ends
            )
        except grpc.aio.AioRpcError as error:
            # The outcome is lost to us; the sweeper settles the attempt as its lease runs out
            # (UNKNOWN, or a safe retry where the platform has idempotency keys). A redelivery
            # could do no better (the fence turns it away), so the event is acked.
            log.error("CompleteAttempts failed: %s; the sweeper settles it", error.code().name)
            await message.ack()
            return
        if outcome.result == Result.PUBLISHED:
            self.published += 1
        if result.next_step == dispatch_pb2.NEXT_STEP_REDELIVER:
            await message.nak(delay=max(0.0, result.retry_delay.ToTimedelta().total_seconds()))
        else:
            await message.ack()

    @contextlib.asynccontextmanager
    async def call_slots(self, account_id: str) -> AsyncIterator[None]:
        """A call slot of the account, then of the platform: account first, so events queued
        behind a busy account never sit on platform slots that other accounts could use."""
        async with self.account_limits[account_id], self.slots:
            yield

    @contextlib.asynccontextmanager
    async def kept_alive(self, message: Msg) -> AsyncIterator[None]:
        """Push AckWait back while the message waits for slots, begins, calls and reports, so
        JetStream never redelivers an event that is still being handled. One task keeps every
        message in hand alive, rather than a task per message on the hot path."""
        self.in_hand[id(message)] = message
        if self.keeper is None or self.keeper.done():
            self.keeper = asyncio.create_task(self.keep_alive(), name="keep-alive")
        try:
            yield
        finally:
            del self.in_hand[id(message)]

    async def keep_alive(self) -> None:
        """An in-progress ack every `keepalive_every` seconds for each message in hand; ends
        once none is left (the next message in hand starts it again)."""
        every = self.keepalive_every()
        while self.in_hand:
            await asyncio.sleep(every)
            for message in list(self.in_hand.values()):
                # A lost in-progress ack risks only a redelivery, which the fence turns away.
                with contextlib.suppress(Exception):
                    await message.in_progress()

    def keepalive_every(self) -> float:
        return min(KEEPALIVE_EVERY, self.settings.ack_wait.total_seconds() / 3)

    async def fail_delivery(self, event: events_pb2.DueEvent, reason: str) -> None:
        """Mark the event's target failed, when its delivery id can name one."""
        if not is_uuid(event.delivery_id):
            return
        await self.dispatch.fail_delivery(event.delivery_id, reason)

    async def call_staged(
        self, begun: dispatch_pb2.BeginAttemptResponse, lease: float, lease_ends: float
    ) -> tuple[PublishOutcome, float]:
        """`call` for an attempt that uploads a video first: marked uploading before anything
        is sent, its lease kept while it runs (`kairos_publisher.stage`); the outcome and when
        the lease now ends."""
        stage = TrackedStage(
            self.dispatch,
            begun.attempt_id,
            lease,
            (self.account_limits[begun.account_id], self.slots),
            max_pause=self.settings.processing_poll_max.total_seconds(),
        )
        refused = await stage.start()
        if refused is not None:
            return refused, lease_ends
        try:
            outcome = await self.call(begun, stage)
        finally:
            await stage.stop()
        if outcome.result == Result.PUBLISHED and not stage.published_mark:
            log.error(
                "%s published attempt %s without marking it publishing first: a publisher lost "
                "at that moment would have had it retried",
                self.platform,
                begun.attempt_id,
            )
        return outcome, max(lease_ends, stage.lease_ends)

    async def call(
        self, begun: dispatch_pb2.BeginAttemptResponse, stage: AttemptStage = NO_STAGE
    ) -> PublishOutcome:
        """Publish, refreshing the token first when it is about to expire, and once (then trying
        again once) when the platform refuses it."""
        request = publish_request(begun, stage)
        info = CATALOGUE[self.platform]
        unlinked = request.stored_media and [
            m for m in request.stored_media if not m.url and info.pulls_by_url(m.kind)
        ]
        if unlinked:
            # Its module would send the URLs alone and publish the post without these files.
            return PublishOutcome(
                Result.PERMANENT,
                code="media",
                message=f"{info.name} pulls media by URL and media "
                f"{unlinked[0].media_id} came without one",
            )
        refreshing = hasattr(self.client, "refresh")
        if refreshing and request.expires_at is not None:
            margin = cast(RefreshingClient, self.client).refresh_margin
            if request.expires_at - datetime.now(UTC) <= margin:
                fresh = await self.refresh(begun, request, final=False)
                if isinstance(fresh, PublishRequest):
                    request = fresh
                # When it failed, the old token may still work: the call says, and a refusal
                # brings the refresh that decides whether the account needs re-authorising.
        outcome = await self.client.publish(request)
        if outcome.result != Result.AUTH or not refreshing:
            return outcome
        fresh = await self.refresh(begun, request)
        if isinstance(fresh, str):
            return replace(outcome, message=f"{outcome.message} (token refresh failed: {fresh})")
        if isinstance(fresh, PublishOutcome):
            return replace(fresh, message=f"token refresh failed for now: {fresh.message}")
        return await self.client.publish(fresh)

    async def refresh(
        self,
        begun: dispatch_pb2.BeginAttemptResponse,
        request: PublishRequest,
        *,
        final: bool = True,
    ) -> PublishRequest | str | PublishOutcome:
        """The request with refreshed tokens; why there are none (the account needs re-auth);
        or the outcome of a token endpoint that could not answer now (nothing is saved).

        One refresh at a time per account in this copy; the new tokens are saved through
        DispatchService before they are used. Only a `final` failure (after the platform refused
        the token) marks the account as needing re-authorisation. A refresh token that another
        copy used first is told apart from a dead one by the api, which then hands back the
        newer credentials.
        """
        client = cast(RefreshingClient, self.client)
        async with self.refresh_locks[begun.account_id]:
            now = time.monotonic()
            self.refreshed = {
                a: kept for a, kept in self.refreshed.items() if now - kept[0] < REFRESHED_KEPT
            }
            known = self.refreshed.get(begun.account_id)
            if known is not None and known[1].access_token != request.access_token:
                return with_credentials(request, known[1])  # another call refreshed meanwhile
            answer = await client.refresh(request)
            metrics.refreshed(self.platform, answer)
            if isinstance(answer, PublishOutcome):
                return answer
            if isinstance(answer, str) and not final:
                return answer  # ahead of expiry: the token still works, the account is fine
            if isinstance(answer, str):
                saved = await self.dispatch.save_credentials(
                    dispatch_pb2.SaveRefreshedCredentialsRequest(
                        account_id=begun.account_id,
                        needs_reauth=True,
                        reason=answer,
                        failed_refresh_token=request.refresh_token,
                    )
                )
                if saved.HasField("current") and saved.current.access_token:
                    self.refreshed[begun.account_id] = (time.monotonic(), saved.current)
                    return with_credentials(request, saved.current)
                return answer
            credentials = posts_pb2.Credentials()
            credentials.CopyFrom(begun.credentials)
            credentials.access_token = answer.access_token
            credentials.refresh_token = answer.refresh_token
            credentials.extra.update(answer.extra)
            credentials.ClearField("expires_at")
            if answer.expires_at is not None:
                credentials.expires_at.FromDatetime(answer.expires_at)
            await self.dispatch.save_credentials(
                dispatch_pb2.SaveRefreshedCredentialsRequest(
                    account_id=begun.account_id, credentials=credentials
                )
            )
            self.refreshed[begun.account_id] = (time.monotonic(), credentials)
            return with_credentials(request, credentials)

    async def hold_until(self, message: Msg, due: float) -> bool:
        """Wait for the due instant (Unix seconds), keeping the message alive; False if it was
        handed back."""
        every = self.keepalive_every()
        while True:
            wait = due - time.time()
            if wait <= 0:
                return True
            if wait > self.settings.hold_max.total_seconds():
                # Far off: JetStream keeps it and brings it back shortly before its time.
                await message.nak(delay=wait - min(5.0, wait / 2))
                return False
            if self.stopping.is_set():
                await message.nak()
                return False
            if wait > every:
                # Only a long hold needs to push AckWait back; the usual lead-window hold of a
                # second or two does not, and skipping it saves a broker round trip per post.
                await message.in_progress()
            await asyncio.sleep(min(wait, every))

    async def dead_letter(self, message: Msg, reason: str) -> None:
        dead = events_pb2.DeadLetter(
            reason=reason,
            subject=message.subject,
            payload=message.data,
            deliveries=message.metadata.num_delivered,
        )
        dead.dead_at.FromDatetime(datetime.now(UTC))
        await self.js.publish(dead_subject(self.platform.value), dead.SerializeToString())
        await message.term()
        log.warning("dead-lettered a due event", extra={"reason": reason})


def account_semaphores(limit: int) -> dict[str, asyncio.Semaphore]:
    return defaultdict(lambda: asyncio.Semaphore(limit))
