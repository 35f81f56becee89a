"""A tenant's lifecycle events read back from KAIROS_EVENTS, for WatchEvents.

Each watch reads through a consumer of its own: ephemeral, in memory, with no acks, filtered to
the tenant's subjects (`kairos.events.<tenant>.>`, or one subject per wanted event type), and
starting just after the caller's cursor. The cursor is the stream sequence of the last event
looked at, so a watcher that reconnects with it gets every later event once, and none it had.

Memory stays bounded: events are pulled a batch at a time, and the next batch only after the
previous one has been handed to gRPC, which waits while the client is not reading. The consumer
is deleted when the watch ends, and NATS drops one whose api died after CONSUMER_INACTIVE.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime

import nats.errors
from google.protobuf.timestamp_pb2 import Timestamp
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from kairos.events.v1 import events_pb2
from kairos_api.adapters import convert
from kairos_api.service_layer.relay import subject_of
from kairos_common import errors
from kairos_common.streams import EVENTS_STREAM, tenant_subjects

#: Events pulled from NATS at a time: what one watch holds in memory at most.
FETCH_BATCH = 100
#: Seconds after which NATS deletes a consumer nobody pulls from (its api was killed).
CONSUMER_INACTIVE = 60.0
#: Seconds between heartbeats when the request leaves it to the api, and the bounds it may ask.
DEFAULT_HEARTBEAT = 15.0
HEARTBEAT_RANGE = (1, 300)
#: Seconds between checks that the caller may still watch (its key not revoked).
RECHECK_EVERY = 5.0
#: Seconds a NATS request of the watch (stream info, consumer creation) may take.
NATS_TIMEOUT = 5.0
#: Watches one tenant may have open on one api process at once; each holds a NATS consumer.
MAX_WATCHES_PER_TENANT = 50
CURSOR_PREFIX = "v1."
_TYPE_PREFIX = "LIFECYCLE_EVENT_TYPE_"


def format_cursor(sequence: int) -> str:
    """The cursor after the event at this stream sequence."""
    return f"{CURSOR_PREFIX}{sequence}"


def parse_cursor(text: str) -> int:
    """The stream sequence a cursor names, or INVALID_ARGUMENT on `cursor`."""
    digits = text.removeprefix(CURSOR_PREFIX)
    if text.startswith(CURSOR_PREFIX) and digits.isascii() and digits.isdigit():
        return int(digits)
    raise errors.InvalidArgument.of(
        "cursor", f"{text[:40]!r} is not a cursor that WatchEvents gave (they look like 'v1.42')"
    )


def event_name(event_type: events_pb2.LifecycleEventType.ValueType) -> str:
    """The name an event type has in subjects and in the outbox: `published`, `needs_reauth`."""
    return events_pb2.LifecycleEventType.Name(event_type).removeprefix(_TYPE_PREFIX).lower()


@dataclass(frozen=True)
class WatchQuery:
    """What one watch asks for; built and checked at the gRPC edge."""

    tenant_id: str
    #: Start after this stream sequence; None: at `since`, or now.
    after: int | None = None
    #: Events that happened (`occurred_at`) at or after this instant.
    since: datetime | None = None
    #: Event names (`published` ...); empty: every event.
    types: frozenset[str] = frozenset()
    #: A post's or an account's id as events carry it; empty: any.
    post_id: str = ""
    account_id: str = ""
    #: False: end once the events stored when the watch began are sent.
    follow: bool = False
    heartbeat: float = DEFAULT_HEARTBEAT


@dataclass(frozen=True)
class Watched:
    """One thing to send: an event, or a heartbeat (`event` None), with the cursor after it."""

    cursor: str
    event: events_pb2.LifecycleEvent | None


class _Gap(Exception):
    """A message of the consumer went missing (dropped by a slow subscription): read again from
    the cursor."""


class _Reader:
    """The consumer of one watch, opened (again) at a stream sequence and pulled a batch at a
    time; it notices a message that never arrived by the consumer's delivery numbers."""

    def __init__(self, js: JetStreamContext, config: ConsumerConfig) -> None:
        self.js = js
        self.config = config
        self.name: str | None = None
        self.subscription: JetStreamContext.PullSubscription | None = None
        self.delivered = 0

    async def open(self, after: int | None) -> tuple[int, int]:
        """Create the consumer (after stream sequence `after`, else as configured); the stream
        sequence just before its first event, and how many of its events are stored now."""
        config = self.config
        if after is not None:
            config = replace(
                config,
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=after + 1,
                opt_start_time=None,
            )
        info = await self.js.add_consumer(EVENTS_STREAM, config, timeout=NATS_TIMEOUT)
        self.name = info.name
        self.subscription = await self.js.pull_subscribe_bind(
            consumer=info.name,
            stream=EVENTS_STREAM,
            pending_msgs_limit=2 * FETCH_BATCH,
            # An event is at most a few KiB (its detail is cut to 1,000 characters).
            pending_bytes_limit=2 * FETCH_BATCH * 8 * 1024,
        )
        self.delivered = 0
        start = info.delivered.stream_seq if info.delivered is not None else None
        return int(start or 0), int(info.num_pending or 0)

    async def passed(self) -> int | None:
        """How far the stream may be taken as read, when everything the consumer delivered was
        taken and none of its events waits: the stream's last sequence, read before asking the
        consumer (so an event stored in between counts as waiting). A quiet watch's cursor so
        moves on past the other tenants' events, which its filter leaves out. None otherwise."""
        assert self.name is not None
        last = (await self.js.stream_info(EVENTS_STREAM)).state.last_seq
        info = await self.js.consumer_info(EVENTS_STREAM, self.name, timeout=NATS_TIMEOUT)
        if info.delivered is None or (info.delivered.consumer_seq or 0) != self.delivered:
            return None
        if info.num_pending:
            return None
        return max(int(last or 0), int(info.delivered.stream_seq or 0))

    async def fetch(self, timeout: float) -> list[Msg]:
        """The next batch, or none within `timeout` seconds."""
        assert self.subscription is not None
        try:
            batch = await self.subscription.fetch(FETCH_BATCH, timeout=timeout)
        except TimeoutError:  # nats.errors.TimeoutError is one
            return []
        for message in batch:
            self.delivered += 1
            if message.metadata.sequence.consumer != self.delivered:
                raise _Gap
        return batch

    async def close(self) -> None:
        """Unsubscribe and delete the consumer; a NATS that is away drops it by itself later."""
        subscription, name = self.subscription, self.name
        self.subscription = self.name = None
        with contextlib.suppress(Exception):
            if subscription is not None:
                await subscription.unsubscribe()
            if name is not None:
                await asyncio.wait_for(self.js.delete_consumer(EVENTS_STREAM, name), 2.0)


def _unavailable(error: BaseException) -> errors.Unavailable:
    return errors.Unavailable(
        f"NATS (the events stream) cannot be reached ({type(error).__name__}); try again, "
        "passing the last cursor received"
    )


class EventFeed:
    """Streams tenants' events from KAIROS_EVENTS; one per api process.

    `nats()` is the api's NATS connection, or None while it is still connecting. `stopping` is
    set when the api stops: every watch then ends with UNAVAILABLE, so the client reconnects
    (to another copy, or to this one once it is back) with its cursor.
    """

    def __init__(self, nats: Callable[[], NatsClient | None], stopping: asyncio.Event) -> None:
        self._nats = nats
        self._stopping = stopping
        self.max_per_tenant = MAX_WATCHES_PER_TENANT
        self._open: Counter[str] = Counter()

    def _jetstream(self) -> JetStreamContext:
        client = self._nats()
        if client is None or not client.is_connected:
            raise errors.Unavailable(
                "the api is not connected to NATS (the events stream) at the moment; try again "
                "shortly, passing the last cursor received"
            )
        return client.jetstream(timeout=NATS_TIMEOUT)

    async def watch(
        self, query: WatchQuery, allowed: Callable[[], Awaitable[None]] | None = None
    ) -> AsyncIterator[Watched]:
        """Heartbeat first (with the starting cursor), then the events, with heartbeats when
        quiet. Ends when all stored events are sent (unless following), or with UNAVAILABLE
        when NATS goes away or the api stops.

        `allowed` is awaited about every RECHECK_EVERY seconds, quiet or not; what it raises
        (UNAUTHENTICATED for a revoked key) ends the watch."""
        tenant = query.tenant_id
        if self._open[tenant] >= self.max_per_tenant:
            raise errors.ResourceExhausted(
                f"{self._open[tenant]} watches of this tenant are open on this api, the most "
                "allowed; end one first"
            )
        self._open[tenant] += 1
        try:
            async for item in self._watch(query, allowed):
                yield item
        finally:
            self._open[tenant] -= 1
            if not self._open[tenant]:
                del self._open[tenant]

    async def _watch(
        self, query: WatchQuery, allowed: Callable[[], Awaitable[None]] | None
    ) -> AsyncIterator[Watched]:
        js = self._jetstream()
        try:
            state = (await js.stream_info(EVENTS_STREAM)).state
        except (nats.errors.Error, TimeoutError) as error:
            raise _unavailable(error) from None
        config = ConsumerConfig(
            description=f"WatchEvents of {query.tenant_id}",
            ack_policy=AckPolicy.NONE,
            filter_subjects=(
                sorted(subject_of(query.tenant_id, name) for name in query.types)
                or [tenant_subjects(query.tenant_id)]
            ),
            inactive_threshold=CONSUMER_INACTIVE,
            mem_storage=True,
            num_replicas=1,
        )
        after: int | None = query.after
        if after is not None:
            _check_cursor(after, state.first_seq, state.last_seq)
        elif query.since is not None:
            config.deliver_policy = DeliverPolicy.BY_START_TIME
            config.opt_start_time = query.since
        else:
            after = state.last_seq
        # What is stored now: a watch that does not follow ends there.
        end = state.last_seq
        reader = _Reader(js, config)
        try:
            try:
                cursor, pending = await reader.open(after)
            except (nats.errors.Error, TimeoutError) as error:
                raise _unavailable(error) from None
            if pending == 0:
                # None of the tenant's events after the start was stored when the consumer was
                # made, and the stream had reached `end` before: the cursor may start there.
                cursor = max(cursor, end)
            yield Watched(format_cursor(cursor), None)
            if not query.follow and (pending == 0 or cursor >= end):
                return
            async for item in self._follow(query, reader, cursor, end, allowed):
                yield item
        finally:
            await reader.close()

    async def _follow(
        self,
        query: WatchQuery,
        reader: _Reader,
        cursor: int,
        end: int,
        allowed: Callable[[], Awaitable[None]] | None,
    ) -> AsyncIterator[Watched]:
        sent = cursor  # the cursor the client last received
        quiet_since = checked = time.monotonic()
        since = convert.timestamp(query.since)
        while True:
            now = time.monotonic()
            if allowed is not None and now - checked >= RECHECK_EVERY:
                await allowed()
                checked = now
            wait = quiet_since + query.heartbeat - now
            if allowed is not None:
                wait = min(wait, checked + RECHECK_EVERY - now)
            try:
                batch = await self._fetch(reader, max(0.001, wait))
            except _Gap:
                await reader.close()
                try:
                    await reader.open(cursor)
                except (nats.errors.Error, TimeoutError) as error:
                    raise _unavailable(error) from None
                continue
            if not batch:
                if time.monotonic() - quiet_since < query.heartbeat:
                    continue  # woken early to check the caller
                cursor = max(cursor, await self._passed(reader))
                yield Watched(format_cursor(cursor), None)
                sent, quiet_since = cursor, time.monotonic()
                continue
            for message in batch:
                cursor = message.metadata.sequence.stream
                event = events_pb2.LifecycleEvent.FromString(message.data)
                if _wanted(query, event, since):
                    yield Watched(format_cursor(cursor), event)
                    sent, quiet_since = cursor, time.monotonic()
                if not query.follow and (cursor >= end or message.metadata.num_pending == 0):
                    if sent != cursor:  # the last events were filtered out: move past them
                        yield Watched(format_cursor(cursor), None)
                    return
            if time.monotonic() - quiet_since >= query.heartbeat:
                # Busy for others, quiet for this client: its filters left everything out.
                yield Watched(format_cursor(cursor), None)
                sent, quiet_since = cursor, time.monotonic()

    async def _passed(self, reader: _Reader) -> int:
        """What `_Reader.passed` says, 0 while a delivery is in flight; UNAVAILABLE when NATS
        cannot be asked."""
        try:
            return await reader.passed() or 0
        except (nats.errors.Error, TimeoutError) as error:
            raise _unavailable(error) from None

    async def _fetch(self, reader: _Reader, timeout: float) -> list[Msg]:
        """The next batch within `timeout`; UNAVAILABLE when the api stops or NATS goes away."""
        if self._stopping.is_set():
            raise errors.Unavailable("the api is stopping; reconnect, passing the last cursor")
        fetching = asyncio.ensure_future(reader.fetch(timeout))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({fetching, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not fetching.done():
                fetching.cancel()
        if not fetching.done() or fetching.cancelled():
            raise errors.Unavailable("the api is stopping; reconnect, passing the last cursor")
        try:
            batch = fetching.result()
        except _Gap:
            raise
        except (nats.errors.Error, TimeoutError) as error:
            raise _unavailable(error) from None
        client = self._nats()
        if not batch and (client is None or not client.is_connected):
            raise _unavailable(ConnectionError("disconnected"))
        return batch


def _check_cursor(after: int, first: int, last: int) -> None:
    """A cursor names a sequence the stream has reached, and nothing after it was dropped."""
    if after > last:
        raise errors.InvalidArgument.of(
            "cursor",
            f"names event {after:,}, but the events stream has only reached {last:,} (a cursor "
            "of another Kairos installation, or of a stream that was recreated)",
        )
    if after + 1 < first:
        raise errors.FailedPrecondition(
            f"cursor: the events after it, from {after + 1:,} to {first - 1:,}, are no longer "
            "kept (events are kept for KAIROS_EVENTS' max age), so some of yours may be lost; "
            "start again without a cursor, or from an instant (`since`)"
        )


def _wanted(
    query: WatchQuery, event: events_pb2.LifecycleEvent, since: Timestamp | None = None
) -> bool:
    """The event is one the watch asked for. The tenant is checked again although the subject
    filter already did: before the subject layout named the tenant, events were published on
    `kairos.events.post.<event>`, which a tenant called `post` would match. `since` is checked
    on when the event happened, as the request promises: the consumer starts by when NATS
    stored it, which may be later (an outbox relayed after a pause)."""
    if event.tenant_id != query.tenant_id:
        return False
    if since is not None and (
        (event.occurred_at.seconds, event.occurred_at.nanos) < (since.seconds, since.nanos)
    ):
        return False
    if query.post_id and event.post_id != query.post_id:
        return False
    return not query.account_id or event.account_id == query.account_id
