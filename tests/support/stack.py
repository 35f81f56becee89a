"""The whole system as real processes: api, schedulers and publishers, plus the sandbox platform.

The sandbox endpoint runs inside the test's own event loop, so the test reads exactly what
arrived and when.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Generic, Protocol

import grpc
import psycopg
from google.protobuf.timestamp_pb2 import Timestamp
from typing_extensions import TypeVar

from kairos.events.v1 import events_pb2
from kairos.posts.v1 import posts_pb2, posts_pb2_grpc
from kairos_api.adapters.database import migrate
from kairos_common.grpc.channel import CHANNEL_OPTIONS
from kairos_common.streams import DEAD_STREAM, EVENTS_STREAM, connect
from kairos_publisher.sandbox_server import SandboxServer
from support.api import SERVICE_TOKEN, TEST_SECRET
from support.nats_cluster import NatsCluster
from support.nats_server import NatsServer
from support.ports import free_port
from support.postgres import TestDatabase
from support.services import ServiceProcess
from support.tls import Pki

FAST_ENV = {
    "KAIROS_SCHEDULER_TICK_SECONDS": "0.1",
    "KAIROS_SCHEDULER_LEAD_SECONDS": "1.5",
    "KAIROS_SWEEP_SECONDS": "0.5",
    # Lost deliveries come back after 10 s instead of a minute, so recovery fits a test.
    "KAIROS_DELIVERY_LEASE_SECONDS": "10",
    "KAIROS_RETRY_BASE_SECONDS": "0.5",
    # The fakes process a video at once: polls of their processing need not wait long.
    "KAIROS_PROCESSING_POLL_MAX_SECONDS": "0.2",
    "KAIROS_GRACE_SECONDS": "5",
    "KAIROS_LOG_FORMAT": "json",
    "KAIROS_LOG_LEVEL": "info",
}


def at(seconds_from_now: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC) + timedelta(seconds=seconds_from_now))
    return stamp


class Broker(Protocol):
    """What the system needs of its NATS: where to reach it."""

    @property
    def url(self) -> str: ...


#: The NATS a system runs on: one server unless said otherwise (a NatsCluster).
N = TypeVar("N", bound=Broker, default=NatsServer, covariant=True)
#: The NATS given to running_stack.
B = TypeVar("B", bound=Broker)


@dataclass
class Stack(Generic[N]):
    """Handles on a running system."""

    env: dict[str, str]
    log_dir: Path
    sandbox: SandboxServer
    nats: N
    api: ServiceProcess
    schedulers: list[ServiceProcess] = field(default_factory=list)
    publishers: list[ServiceProcess] = field(default_factory=list)
    #: Every api copy, `api` first.
    apis: list[ServiceProcess] = field(default_factory=list)
    channel: grpc.aio.Channel | None = None
    key: str = ""
    account_id: str = ""
    #: The last KAIROS_EVENTS sequence before this system started: its events come after it.
    events_from: int = 0
    #: Where the schedulers and publishers reach the api ("": its port on 127.0.0.1).
    api_target: str = ""
    #: The certificates, when the system runs with TLS and mutual TLS.
    tls: Pki | None = None

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.key}"),)

    @property
    def posts(self) -> posts_pb2_grpc.PostsServiceAsyncStub:
        assert self.channel is not None
        return posts_pb2_grpc.PostsServiceStub(self.channel)

    @property
    def accounts(self) -> posts_pb2_grpc.AccountsServiceAsyncStub:
        assert self.channel is not None
        return posts_pb2_grpc.AccountsServiceStub(self.channel)

    def add(self, name: str, **env: str) -> ServiceProcess:
        api_target = self.api_target or f"127.0.0.1:{self.api.port}"
        tls_env = {} if self.tls is None else {**self.tls.server_env(), **self.tls.client_env()}
        process = ServiceProcess(
            name,
            {**self.env, **tls_env, "KAIROS_API_TARGET": api_target, **env},
            self.log_dir,
        )
        if self.tls is not None:
            process.health_credentials = self.tls.credentials()
        (self.schedulers if name == "scheduler" else self.publishers).append(process)
        process.start()
        return process

    async def create(self, content: str, seconds: float | None, **fields: Any) -> posts_pb2.Post:
        request = posts_pb2.CreatePostRequest(
            content=content,
            targets=[posts_pb2.TargetSpec(account_id=self.account_id)],
            **fields,
        )
        if seconds is not None:
            request.schedule.at.CopyFrom(at(seconds))
        reply = await self.posts.CreatePost(request, metadata=self.metadata)
        return reply.post

    async def get(self, post_id: str) -> posts_pb2.Post:
        reply = await self.posts.GetPost(
            posts_pb2.GetPostRequest(post_id=post_id), metadata=self.metadata
        )
        return reply.post

    def received(self, marker: str = "") -> list[dict[str, Any]]:
        """Posts the sandbox recorded whose content contains `marker`."""
        return [
            {"arrived_at": p.arrived_at, **p.body}
            for p in self.sandbox.platform.posts
            if marker in str(p.body.get("content", ""))
        ]

    def script(self, **answer: Any) -> None:
        from kairos_publisher.sandbox_server import ScriptedAnswer

        self.sandbox.platform.script.append(ScriptedAnswer(**answer))

    def logs(self) -> str:
        parts = []
        for process in [self.api, *self.schedulers, *self.publishers]:
            parts.append(f"--- {process.name} ---\n{process.logs()[-6000:]}")
        return "\n".join(parts)


@asynccontextmanager
async def running_stack(
    nats: B,
    log_dir: Path,
    *,
    schedulers: int = 1,
    publishers: int = 1,
    apis: int = 1,
    api_env: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    tls: Pki | None = None,
    database_url: str | None = None,
) -> AsyncIterator[Stack[B]]:
    """A fresh database, the api, the schedulers and publishers, a tenant and a sandbox account.

    `env` reaches every service; `api_env` the api only. With `apis` above 1, the schedulers,
    publishers and the test's channel reach the api copies round robin (an `ipv4:` target of
    all of them). With `tls`, every service listens with
    TLS, the api has its mutual-TLS listener too, and the schedulers and publishers reach it there
    with the client certificate; the test's channel trusts the CA. With `database_url`, the
    system runs on that database (the test's own servers) instead of a new one on the main
    server. On a NatsCluster the streams get a replica on every node (KAIROS_NATS_REPLICAS).
    """
    database = TestDatabase() if database_url is None else None
    if database is not None:
        database.create()
        database_url = database.url
    assert database_url is not None
    sandbox = SandboxServer()
    await sandbox.start()
    extra = env or {}
    env = {
        **FAST_ENV,
        **extra,
        "KAIROS_DATABASE_URL": database_url,
        "KAIROS_NATS_URL": nats.url,
        **({"KAIROS_NATS_REPLICAS": str(nats.size)} if isinstance(nats, NatsCluster) else {}),
        "KAIROS_SECRET_KEY": TEST_SECRET,
        "KAIROS_SERVICE_TOKEN": SERVICE_TOKEN,
    }
    migrate(database_url)
    api_tls_env: dict[str, str] = {}
    api_target = ""
    if tls is not None:
        api_target = f"127.0.0.1:{free_port()}"
        api_tls_env = tls.server_env(mutual_addr=api_target)
    api = ServiceProcess("api", {**env, **api_tls_env, **(api_env or {})}, log_dir)
    if tls is not None:
        api.health_credentials = tls.credentials()
    stack = Stack(env, log_dir, sandbox, nats, api, api_target=api_target, tls=tls, apis=[api])
    assert apis == 1 or tls is None, "several api copies run without TLS here"
    try:
        api.start()
        await api.wait_serving()
        for _ in range(apis - 1):
            copy = ServiceProcess("api", {**env, **(api_env or {})}, log_dir)
            stack.apis.append(copy)
            copy.start()
            await copy.wait_serving()
        if apis > 1:
            stack.api_target = "ipv4:" + ",".join(f"127.0.0.1:{a.port}" for a in stack.apis)
        for _ in range(schedulers):
            stack.add("scheduler")
        for _ in range(publishers):
            stack.add("publisher")
        for process in [*stack.schedulers, *stack.publishers]:
            await process.wait_serving()
        from kairos_api.bootstrap import bootstrap
        from kairos_api.service_layer.keys import create_key
        from kairos_api.settings import ApiSettings

        app = bootstrap(ApiSettings.from_env(env))
        created = await create_key(app.uow(), f"tenant-{uuid.uuid4().hex[:8]}")
        await app.close()
        stack.key = created.key
        if tls is None and apis == 1:
            stack.channel = grpc.aio.insecure_channel(f"127.0.0.1:{api.port}")
        elif tls is None:  # round robin over the copies, as the services do
            stack.channel = grpc.aio.insecure_channel(stack.api_target, options=CHANNEL_OPTIONS)
        else:
            stack.channel = grpc.aio.secure_channel(f"127.0.0.1:{api.port}", tls.credentials())
        account = await stack.accounts.ConnectAccount(
            posts_pb2.ConnectAccountRequest(
                platform=posts_pb2.PLATFORM_SANDBOX,
                handle="@sandbox",
                credentials=posts_pb2.Credentials(access_token="t", instance_url=sandbox.url),
            ),
            metadata=stack.metadata,
        )
        stack.account_id = account.account.id
        yield stack
    finally:
        if stack.channel is not None:
            await stack.channel.close(None)
        for process in [*stack.publishers, *stack.schedulers, *stack.apis]:
            if process.running:
                process.terminate()
        await sandbox.stop()
        if database is not None:
            database.drop()


def dump(value: Any) -> str:
    return json.dumps(value, default=str, indent=1)[:4000]


async def last_sequence(nats_url: str, stream: str) -> int:
    """The stream's last sequence number; 0 while the stream does not exist yet."""
    from nats.js.errors import NotFoundError

    client = await connect(nats_url, name="kairos-tests-sequence")
    try:
        return int((await client.jetstream().stream_info(stream)).state.last_seq)
    except NotFoundError:
        return 0
    finally:
        await client.close()


async def read_stream(nats_url: str, stream: str, subjects: str, after: int) -> list[bytes]:
    """Every message on `stream` after sequence `after`, up to its last one now, in order."""
    from nats.js.api import ConsumerConfig, DeliverPolicy

    last = await last_sequence(nats_url, stream)
    if last <= after:
        return []
    client = await connect(nats_url, name="kairos-tests-reader")
    found: list[bytes] = []
    try:
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after + 1
        )
        subscription = await client.jetstream().subscribe(
            subjects, stream=stream, ordered_consumer=True, config=config
        )
        sequence = after
        while sequence < last:
            message = await subscription.next_msg(timeout=5)
            sequence = message.metadata.sequence.stream
            found.append(message.data)
        await subscription.unsubscribe()
    finally:
        await client.close()
    return found


async def lifecycle_events(stack: Stack[Broker]) -> list[events_pb2.LifecycleEvent]:
    """Every lifecycle event on KAIROS_EVENTS since the system started."""
    raw = await read_stream(stack.nats.url, EVENTS_STREAM, "kairos.events.>", stack.events_from)
    return [events_pb2.LifecycleEvent.FromString(data) for data in raw]


async def dead_letters(stack: Stack) -> list[events_pb2.DeadLetter]:
    """Every dead letter on KAIROS_DEAD (since the NATS server started)."""
    raw = await read_stream(stack.nats.url, DEAD_STREAM, "kairos.dead.>", 0)
    return [events_pb2.DeadLetter.FromString(data) for data in raw]


def event_names(events: list[events_pb2.LifecycleEvent]) -> Counter[str]:
    """How many events of each type, by short name (`published`, `retry_scheduled` ...)."""
    prefix = "LIFECYCLE_EVENT_TYPE_"
    return Counter(
        events_pb2.LifecycleEventType.Name(e.type).removeprefix(prefix).lower() for e in events
    )


async def expect_events(
    stack: Stack,
    wanted: dict[str, int],
    about: Callable[[events_pb2.LifecycleEvent], bool],
    timeout: float = 15.0,
) -> list[events_pb2.LifecycleEvent]:
    """Wait until the events `about` something are exactly `wanted` (type name -> count), then
    check again a second later that nothing arrived twice; the events, all with unique ids.

    The outbox is relayed just after each change, so the events may lag the status a little.
    """
    deadline = time.monotonic() + timeout
    ours = [e for e in await lifecycle_events(stack) if about(e)]
    while event_names(ours) != Counter(wanted) and time.monotonic() < deadline:
        await asyncio.sleep(0.3)
        ours = [e for e in await lifecycle_events(stack) if about(e)]
    await asyncio.sleep(1.0)  # a doubled event would be relayed by now
    ours = [e for e in await lifecycle_events(stack) if about(e)]
    assert event_names(ours) == Counter(wanted), f"{dict(event_names(ours))} != {wanted}"
    assert len({e.event_id for e in ours}) == len(ours), "an event id appeared twice"
    return ours


@asynccontextmanager
async def watching_due_events(nats: Broker) -> AsyncIterator[list[events_pb2.DueEvent]]:
    """Due events as the schedulers publish them on kairos.due.*, seen from a plain NATS
    subscription beside the publishers' consumers (it takes nothing from the work queue)."""
    seen: list[events_pb2.DueEvent] = []
    client = await connect(nats.url, name="kairos-tests-due-watch")

    async def keep(message: Any) -> None:
        seen.append(events_pb2.DueEvent.FromString(message.data))

    try:
        await client.subscribe("kairos.due.*", cb=keep)
        await client.flush()
        yield seen
    finally:
        await client.close()


async def eventually(check: Callable[[], bool], timeout: float, stack: Stack, what: str) -> None:
    """Wait until `check()` holds; fail after `timeout` seconds with `what` and the logs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {what}\n{stack.logs()}")


async def wait_status(
    stack: Stack, post_id: str, status: posts_pb2.PostStatus.ValueType, timeout: float = 15.0
) -> posts_pb2.Post:
    """The post once it has `status`; fail after `timeout` seconds with the post and the logs."""
    deadline = time.monotonic() + timeout
    post = await stack.get(post_id)
    while time.monotonic() < deadline:
        post = await stack.get(post_id)
        if post.status == status:
            return post
        await asyncio.sleep(0.1)
    raise AssertionError(
        f"post {post_id} is {posts_pb2.PostStatus.Name(post.status)}, wanted "
        f"{posts_pb2.PostStatus.Name(status)}\n{post}\n{stack.logs()}"
    )


def marker() -> str:
    """A unique word to put in a post's content, to find what the sandbox received of it."""
    return f"m-{uuid.uuid4().hex[:10]}"


def due_of(post: posts_pb2.Post) -> float:
    """The post's scheduled instant, in Unix seconds."""
    return post.scheduled_at.ToDatetime(tzinfo=UTC).timestamp()


async def create_many(
    stack: Stack[Broker], mark: str, count: int, first_due: float, spread: float
) -> list[str]:
    """`count` posts through the public API, due between `first_due` and `first_due + spread`
    seconds from now.

    Creating thousands of posts takes longer than the window they must share, so they are
    created ten minutes ahead and then moved into the window in one transaction, as a batch
    scheduled long ago for the same moment would be.
    """
    semaphore = asyncio.Semaphore(32)

    async def one(index: int) -> str:
        async with semaphore:
            request = posts_pb2.CreatePostRequest(
                content=f"{mark} #{index}",
                targets=[posts_pb2.TargetSpec(account_id=stack.account_id)],
            )
            request.schedule.at.CopyFrom(at(600))
            reply = await stack.posts.CreatePost(request, metadata=stack.metadata)
            return reply.post.id

    post_ids = list(await asyncio.gather(*(one(i) for i in range(count))))
    start = datetime.now(UTC) + timedelta(seconds=first_due)
    rows = [
        (start + timedelta(seconds=spread * i / count), uuid.UUID(post_id))
        for i, post_id in enumerate(post_ids)
    ]
    async with await psycopg.AsyncConnection.connect(stack.env["KAIROS_DATABASE_URL"]) as conn:
        async with conn.cursor() as cursor:
            await cursor.executemany("UPDATE posts SET scheduled_at = %s WHERE id = %s", rows)
            await cursor.executemany(
                "UPDATE targets SET next_attempt_at = %s, due_at = %s,"
                " stale_at = %s + interval '1 hour' WHERE post_id = %s",
                [(due, due, due, post_id) for due, post_id in rows],
            )
        await conn.commit()
    return post_ids


async def create_spread(
    stack: Stack[Broker], mark: str, count: int, first_due: float, spread: float
) -> list[str]:
    """`count` posts through CreatePost, each with a request_id (so a call the api retried is
    never doubled), due evenly from `first_due` to `first_due + spread` seconds from now; their
    ids in order. For a few hundred posts: `create_many` makes thousands."""
    semaphore = asyncio.Semaphore(16)

    async def create(index: int) -> str:
        request = posts_pb2.CreatePostRequest(
            content=f"{mark} #{index}",
            targets=[posts_pb2.TargetSpec(account_id=stack.account_id)],
            request_id=f"{mark}-{index}",
            schedule=posts_pb2.Schedule(at=at(first_due + spread * index / count)),
        )
        async with semaphore:
            reply = await stack.posts.CreatePost(request, metadata=stack.metadata, timeout=30)
            return reply.post.id

    return list(await asyncio.gather(*(create(i) for i in range(count))))


async def wait_all_arrived(stack: Stack[Broker], mark: str, count: int, timeout: float) -> None:
    """Wait until `count` different posts marked `mark` reached the sandbox."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len({p["content"] for p in stack.received(mark)}) >= count:
            return
        await asyncio.sleep(0.2)
    arrived = len({p["content"] for p in stack.received(mark)})
    raise AssertionError(f"{arrived} of {count} arrived within {timeout}s\n{stack.logs()}")


def exactly_once(stack: Stack[Broker], mark: str, count: int) -> None:
    """The sandbox received each of the `count` posts marked `mark` once: none twice, none lost."""
    arrivals = Counter(p["content"] for p in stack.received(mark))
    doubled = {content: n for content, n in arrivals.items() if n > 1}
    assert not doubled, f"published more than once: {list(doubled.items())[:5]}"
    assert len(arrivals) == count


def due(iso: str) -> float:
    """An instant as the sandbox records it (ISO 8601), in Unix seconds."""
    return datetime.fromisoformat(iso).timestamp()


async def statuses(stack: Stack[Broker], post_ids: list[str]) -> Counter[str]:
    """The posts' statuses, counted by name."""
    semaphore = asyncio.Semaphore(16)

    async def one(post_id: str) -> str:
        async with semaphore:
            return posts_pb2.PostStatus.Name((await stack.get(post_id)).status)

    return Counter(await asyncio.gather(*(one(post_id) for post_id in post_ids)))


async def published_events(stack: Stack[Broker], post_ids: list[str]) -> Counter[str]:
    """How many `published` lifecycle events each of the posts got, after checking that no
    event id is on KAIROS_EVENTS twice."""
    events = await lifecycle_events(stack)
    assert len({e.event_id for e in events}) == len(events), "an event id appeared twice"
    ours = set(post_ids)
    return Counter(
        e.post_id
        for e in events
        if e.post_id in ours and e.type == events_pb2.LIFECYCLE_EVENT_TYPE_PUBLISHED
    )


async def settled(stack: Stack[Broker], post_ids: list[str], timeout: float) -> Counter[str]:
    """The posts' statuses once none is scheduled or publishing any more."""
    deadline = time.monotonic() + timeout
    found = await statuses(stack, post_ids)
    final = {"POST_STATUS_PUBLISHED", "POST_STATUS_UNKNOWN", "POST_STATUS_FAILED"}
    while not set(found) <= final and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        found = await statuses(stack, post_ids)
    assert set(found) <= final, f"{found}\n{stack.logs()}"
    return found
