"""The NATS connection and the JetStream streams Kairos uses (DESIGN.md §5).

`ensure_streams()` is idempotent and safe to run from every service copy at once: it creates a
missing stream and brings an existing one's settings up to date.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import timedelta

import nats
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from kairos_common.deadline import Deadline

log = logging.getLogger(__name__)

DUE_STREAM = "KAIROS_DUE"
EVENTS_STREAM = "KAIROS_EVENTS"
DEAD_STREAM = "KAIROS_DEAD"

DUE_SUBJECT_PREFIX = "kairos.due"
EVENTS_SUBJECT_PREFIX = "kairos.events"
DEAD_SUBJECT_PREFIX = "kairos.dead"
#: Core-NATS subject that tells schedulers to claim now (publish-now, schedule inside the lead).
WAKE_SUBJECT = "kairos.control.wake"


def due_subject(platform: str) -> str:
    """Subject of due events for one platform."""
    return f"{DUE_SUBJECT_PREFIX}.{platform}"


def dead_subject(platform: str) -> str:
    """Subject of dead letters for one platform."""
    return f"{DEAD_SUBJECT_PREFIX}.{platform}"


def event_subject(event: str) -> str:
    """Subject of one kind of post lifecycle event, e.g. `kairos.events.post.published`."""
    return f"{EVENTS_SUBJECT_PREFIX}.post.{event}"


@dataclass(frozen=True)
class StreamLayout:
    """Retention of the three streams; the defaults suit a single server."""

    replicas: int = 1
    #: Re-publishes of the same delivery within this window are dropped by JetStream.
    due_duplicate_window: timedelta = timedelta(minutes=20)
    due_max_age: timedelta = timedelta(days=7)
    events_duplicate_window: timedelta = timedelta(hours=1)
    events_max_age: timedelta = timedelta(days=7)
    dead_max_age: timedelta = timedelta(days=30)

    def configs(self) -> list[StreamConfig]:
        """The stream configurations to declare."""
        return [
            StreamConfig(
                name=DUE_STREAM,
                description="Due events: one per delivery of a target, on kairos.due.<platform>",
                subjects=[f"{DUE_SUBJECT_PREFIX}.>"],
                # One consumer per platform takes each message once; consumed messages go away.
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
                num_replicas=self.replicas,
                duplicate_window=self.due_duplicate_window.total_seconds(),
                max_age=self.due_max_age.total_seconds(),
                discard=DiscardPolicy.OLD,
            ),
            StreamConfig(
                name=EVENTS_STREAM,
                description="Post lifecycle events for other services, kairos.events.>",
                subjects=[f"{EVENTS_SUBJECT_PREFIX}.>"],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                num_replicas=self.replicas,
                duplicate_window=self.events_duplicate_window.total_seconds(),
                max_age=self.events_max_age.total_seconds(),
                discard=DiscardPolicy.OLD,
            ),
            StreamConfig(
                name=DEAD_STREAM,
                description="Due events that could not be processed, with the reason",
                subjects=[f"{DEAD_SUBJECT_PREFIX}.>"],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                num_replicas=self.replicas,
                max_age=self.dead_max_age.total_seconds(),
                discard=DiscardPolicy.OLD,
            ),
        ]


async def connect(url: str, *, name: str) -> NatsClient:
    """Connect to NATS, reconnecting forever in the background once connected."""
    client = NatsClient()

    async def on_disconnected() -> None:
        # Closing (a drain ends with a close) also disconnects: only a lost link is news.
        if client.is_closed or client.is_draining:
            log.info("NATS connection closed")
        else:
            log.warning("NATS disconnected")

    async def on_reconnected() -> None:
        log.info("NATS reconnected")

    async def on_error(error: Exception) -> None:
        log.warning("NATS error: %s", error)

    await client.connect(
        servers=[u.strip() for u in url.split(",") if u.strip()],
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,  # type: ignore[arg-type]  # annotated int; it sleeps any float
        disconnected_cb=on_disconnected,
        reconnected_cb=on_reconnected,
        error_cb=on_error,
    )
    return client


async def drain_and_close(nc: NatsClient, deadline: Deadline) -> None:
    """Drain `nc` (finish subscriptions, flush publishes) until the deadline, then close it.

    A connection that is reconnecting cannot drain, and one that ran out of time stops
    draining; both are closed anyway, which still writes out what is buffered.
    """
    if nc.is_closed:
        return
    with contextlib.suppress(nats.errors.Error):
        await deadline.run(nc.drain())
    await nc.close()


async def ensure_streams(js: JetStreamContext, layout: StreamLayout | None = None) -> None:
    """Create the three streams, or update them to the wanted settings; safe to repeat."""
    for config in (layout or StreamLayout()).configs():
        await _ensure_stream(js, config)


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    assert config.name is not None
    for _ in range(3):
        try:
            await js.stream_info(config.name)
        except NotFoundError:
            try:
                await js.add_stream(config)
                log.info("created stream", extra={"stream": config.name})
                return
            except BadRequestError:
                continue  # another copy created it first: go round and update it
        await js.update_stream(config)
        return
    raise RuntimeError(f"could not declare stream {config.name}")
