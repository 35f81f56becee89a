"""The NATS connection and the JetStream streams Kairos uses (DESIGN.md §5).

`ensure_streams()` is idempotent and safe to run from every service copy at once: it creates a
missing stream and brings an existing one's settings up to date.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import UserString
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import APIError, BadRequestError, NotFoundError, ServiceUnavailableError

from kairos_common.deadline import Deadline
from kairos_common.settings import (
    NATS_CREDS,
    NATS_NKEY,
    NATS_TOKEN,
    NATS_USER_PASSWORD,
    CannotStart,
    NatsAuthSettings,
    hide_password,
)

log = logging.getLogger(__name__)

DUE_STREAM = "KAIROS_DUE"
EVENTS_STREAM = "KAIROS_EVENTS"
DEAD_STREAM = "KAIROS_DEAD"

DUE_SUBJECT_PREFIX = "kairos.due"
EVENTS_SUBJECT_PREFIX = "kairos.events"
DEAD_SUBJECT_PREFIX = "kairos.dead"
#: Core-NATS subject that tells schedulers to claim now (publish-now, schedule inside the lead).
WAKE_SUBJECT = "kairos.control.wake"
#: Core-NATS subject on which a publisher whose connection came back asks one scheduler to
#: re-emit the deliveries claimed and not begun (events in flight to it may be lost).
REEMIT_SUBJECT = "kairos.control.reemit"
#: Queue group of the schedulers on REEMIT_SUBJECT: one of them answers.
REEMIT_QUEUE = "kairos-schedulers"


def leader_elected_subjects(stream: str) -> tuple[str, str]:
    """JetStream's advisories that `stream`, or one of its consumers, has a new leader (in a
    cluster, after a node's loss or a partition)."""
    return (
        f"$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.{stream}",
        f"$JS.EVENT.ADVISORY.CONSUMER.LEADER_ELECTED.{stream}.*",
    )


def due_subject(platform: str) -> str:
    """Subject of due events for one platform."""
    return f"{DUE_SUBJECT_PREFIX}.{platform}"


def dead_subject(platform: str) -> str:
    """Subject of dead letters for one platform."""
    return f"{DEAD_SUBJECT_PREFIX}.{platform}"


def tenant_token(tenant_id: str) -> str:
    """The tenant as one subject token, different for every tenant.

    Tenant ids may hold `.`, which would split the token, so `_` and `.` are written as `_5F`
    and `_2E`, their code in hex after an underscore: `acme.eu` is `acme_2Eeu`, `a_b` is
    `a_5Fb`. Letters, digits and `-` stay as they are.
    """
    return tenant_id.replace("_", "_5F").replace(".", "_2E")


def tenant_subjects(tenant_id: str) -> str:
    """The subjects of every lifecycle event of one tenant: `kairos.events.<tenant>.>`."""
    return f"{EVENTS_SUBJECT_PREFIX}.{tenant_token(tenant_id)}.>"


def event_subject(tenant_id: str, family: str, event: str) -> str:
    """Subject of one kind of lifecycle event of one tenant, in a family (`post`, `account`,
    `webhook`): `kairos.events.<tenant>.post.published`."""
    return f"{EVENTS_SUBJECT_PREFIX}.{tenant_token(tenant_id)}.{family}.{event}"


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
                description="Lifecycle events, kairos.events.<tenant>.<family>.<event>",
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


#: Seconds between the lines that say NATS still cannot be reached: the first failure is logged
#: at once, then one line per period while it lasts, not one per attempt.
UNREACHABLE_LOG_EVERY = 30.0
#: Seconds between connection attempts while NATS is away.
RECONNECT_WAIT = 0.5
#: Seconds between the client's pings, and how many may go unanswered before the connection is
#: given up as stale. A server cut off by a partition closes nothing, and nats-py's defaults
#: (2 min, 2) would keep a service on it for minutes while the rest of the cluster serves on; so
#: it is left within PING_INTERVAL * (MAX_OUTSTANDING_PINGS + 1) seconds.
PING_INTERVAL = 1.0
MAX_OUTSTANDING_PINGS = 2
#: The most a connection to a server that stopped answering is kept.
STALE_AFTER = PING_INTERVAL * (MAX_OUTSTANDING_PINGS + 1)


def shown_url(url: str) -> str:
    """The KAIROS_NATS_URL value as it may be logged: passwords hidden."""
    servers = [u.strip() for u in url.split(",") if u.strip()]
    return ",".join(hide_password(u if "://" in u else f"nats://{u}") for u in servers)


#: The kind of failure that says nothing more than that NATS did not answer.
UNREACHABLE = "unreachable"


class _Unreachable:
    """Failed connection attempts since NATS was last reachable, and when they were last told."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.failures = 0
        self.told_at: float | None = None
        self.told_kind = ""
        #: When NATS last answered with a refusal (credentials, TLS) rather than not at all.
        self.refused_at: float | None = None

    def should_tell(self, kind: str = UNREACHABLE) -> bool:
        """Whether to log this failure: the first, one per period, and a change of kind.

        A lost connection within a period of a refusal is not told: a server that refuses
        closes the connection at once, and the client sometimes reads that reset before the
        refusal, which would otherwise alternate with it as "cannot reach".
        """
        self.failures += 1
        now = self.clock()
        if kind != UNREACHABLE:
            self.refused_at = now
        elif self.refused_at is not None and now - self.refused_at < UNREACHABLE_LOG_EVERY:
            return False
        if (
            self.told_at is None
            or kind != self.told_kind
            or now - self.told_at >= UNREACHABLE_LOG_EVERY
        ):
            self.told_at = now
            self.told_kind = kind
            return True
        return False

    def reset(self) -> None:
        self.failures = 0
        self.told_at = None
        self.told_kind = ""
        self.refused_at = None


#: How each line about a failed connection attempt ends (UNREACHABLE_LOG_EVERY fills it in).
_RETRYING = "retrying, and repeating this line every %g s while it lasts"
#: Every way to authenticate, named when a server that wants one was given none.
_ANY_AUTH = f"{NATS_USER_PASSWORD}, {NATS_TOKEN}, {NATS_NKEY} or {NATS_CREDS}"


class TlsNotOffered(nats.errors.Error):
    """The server did not ask for TLS where it is wanted; the credentials were not sent."""

    def __str__(self) -> str:
        return "the server did not ask for TLS"


class _WitnessedContext(ssl.SSLContext):
    """A TLS context that remembers the last TLS session it began, so that a password or token
    is only given to a connection that did upgrade to TLS.

    nats-py upgrades only when the server's INFO asks for TLS, whatever the URL says, and then
    builds CONNECT with the credentials: a plain server (or one in the middle that drops the
    TLS request) would get them in the clear.
    """

    last_session: ssl.SSLObject | None = None

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        session_object = super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)
        self.last_session = session_object
        return session_object

    def upgraded(self) -> bool:
        """Whether the connection being set up finished a TLS handshake; each session counts
        once, so a later attempt that stays plain is not taken for it."""
        last, self.last_session = self.last_session, None
        return last is not None and last.version() is not None


def _given_over_tls(value: str, context: _WitnessedContext) -> Callable[[], str]:
    """`value` for nats-py to send in CONNECT, refused (TlsNotOffered) on a plain connection."""

    def give() -> str:
        if not context.upgraded():
            raise TlsNotOffered()
        return value

    return give


def _refused_authentication(error: Exception) -> bool:
    # The first connection gets the server's -ERR as a plain Error with its text; a reconnection
    # gets AuthorizationError. An expired user JWT reads "User Authentication Expired".
    if isinstance(error, nats.errors.AuthorizationError):
        return True
    text = str(error).lower()
    return "authorization violation" in text or "authentication expired" in text


def _failure_line(
    error: Exception, shown: str, auth: NatsAuthSettings
) -> tuple[str, str, tuple[object, ...]]:
    """The kind of a failed connection attempt, and the log line (format, arguments) to tell it."""
    reason = str(error) or type(error).__name__
    if _refused_authentication(error):
        check = auth.method or f"the server wants credentials: set one of {_ANY_AUTH}"
        return (
            "authentication",
            "NATS at KAIROS_NATS_URL=%s refused authentication (%s); check %s; " + _RETRYING,
            (shown, reason, check, UNREACHABLE_LOG_EVERY),
        )
    if isinstance(error, TlsNotOffered):
        return (
            "no-tls",
            "NATS at KAIROS_NATS_URL=%s did not ask for TLS, which is wanted here (a tls:// URL, "
            "KAIROS_NATS_CA_FILE or KAIROS_NATS_CERT_FILE); the credentials were not sent: give "
            "the server a tls block; " + _RETRYING,
            (shown, UNREACHABLE_LOG_EVERY),
        )
    if isinstance(error, ssl.SSLError):
        check = (
            "KAIROS_NATS_CA_FILE (the CA that signed the server's certificate), and "
            "KAIROS_NATS_CERT_FILE and KAIROS_NATS_KEY_FILE if the server verifies clients"
        )
        return (
            "tls",
            "TLS with NATS at KAIROS_NATS_URL=%s failed (%s); check %s; " + _RETRYING,
            (shown, reason, check, UNREACHABLE_LOG_EVERY),
        )
    return (
        UNREACHABLE,
        "cannot reach NATS at KAIROS_NATS_URL=%s (%s); " + _RETRYING,
        (shown, reason, UNREACHABLE_LOG_EVERY),
    )


def _auth_options(auth: NatsAuthSettings, url: str) -> dict[str, Any]:
    """nats-py's connect() keywords for `auth`; none for what is not set, so that a user in the
    URL keeps working. Where TLS is wanted, a password or token is handed over only on a
    connection that did upgrade to TLS.

    An NKey seed or a .creds file never leaves the service (the server gets a signature of its
    challenge), so nothing is held back with those.
    """
    options: dict[str, Any] = {}
    context = auth.tls_context(_WitnessedContext, always=auth.wants_tls(url))
    witness = context if isinstance(context, _WitnessedContext) else None
    if auth.user:
        user: str | Callable[[], str] = auth.user
        if witness is not None:
            # nats-py asks for the user first, then at once for the password.
            user = _given_over_tls(auth.user, witness)
        options.update(user=user, password=auth.password)
    if auth.token:
        options["token"] = auth.token if witness is None else _given_over_tls(auth.token, witness)
    if auth.nkey_seed:
        options["nkeys_seed_str"] = auth.nkey_seed
    if auth.creds:
        # nats-py reads a UserString as the contents of a .creds file, not as its path.
        options["user_credentials"] = UserString(auth.creds)
    if context is not None:
        options["tls"] = context
    if auth.tls_hostname:
        options["tls_hostname"] = auth.tls_hostname
    return options


async def connect(
    url: str,
    *,
    name: str,
    on_change: Callable[[bool], Awaitable[None]] | None = None,
    auth: NatsAuthSettings | None = None,
) -> NatsClient:
    """Connect to NATS at `url` (KAIROS_NATS_URL), trying until it answers, and reconnect forever
    in the background once connected.

    `auth` holds the credentials and TLS files (KAIROS_NATS_USER, KAIROS_NATS_CA_FILE ...);
    without it only what the URL carries is sent. While NATS cannot be reached one line says so,
    naming the variable and the URL, and repeats every UNREACHABLE_LOG_EVERY seconds while it
    lasts; a server that refuses the credentials or a failed TLS handshake is told as such,
    naming the settings to check. `on_change(False)` is awaited when an established connection
    is lost, or its server stopped answering for STALE_AFTER seconds (cut off from the client
    by a partition), and `on_change(True)` when it is back, so that a service can report itself
    NOT_SERVING meanwhile.
    """
    auth = auth or NatsAuthSettings()
    client = NatsClient()
    shown = shown_url(url)
    unreachable = _Unreachable()

    async def on_disconnected() -> None:
        # Closing (a drain ends with a close) also disconnects: only a lost link is news.
        if client.is_closed or client.is_draining:
            log.info("NATS connection closed")
            return
        log.warning("NATS disconnected; reconnecting", extra={"nats_url": shown})
        if on_change is not None:
            await on_change(False)

    async def on_reconnected() -> None:
        unreachable.reset()
        log.info("NATS reconnected", extra={"nats_url": shown})
        if on_change is not None:
            await on_change(True)

    async def on_error(error: Exception) -> None:
        if client.is_connected:
            log.warning("NATS error: %s", error)
            return
        kind, line, args = _failure_line(error, shown, auth)
        if unreachable.should_tell(kind):
            log.warning(line, *args, extra={"failed_attempts": unreachable.failures})

    await client.connect(
        servers=[u.strip() for u in url.split(",") if u.strip()],
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=RECONNECT_WAIT,  # type: ignore[arg-type]  # annotated int; any float
        ping_interval=PING_INTERVAL,  # type: ignore[arg-type]  # annotated int; any float
        max_outstanding_pings=MAX_OUTSTANDING_PINGS,
        disconnected_cb=on_disconnected,
        reconnected_cb=on_reconnected,
        error_cb=on_error,
        **_auth_options(auth, url),
    )
    if unreachable.failures:
        log.info("NATS reachable now", extra={"nats_url": shown})
    unreachable.reset()
    return client


async def drain_and_close(nc: NatsClient, deadline: Deadline) -> None:
    """Drain `nc` (finish subscriptions, flush publishes) until the deadline, then close it.

    A connection that is reconnecting cannot drain, and one that ran out of time stops
    draining; both are closed anyway, which still writes out what is buffered while the server
    is there. A server that is gone does not make closing fail.
    """
    if nc.is_closed:
        return
    try:
        await deadline.run(nc.drain())
    except nats.errors.Error:
        pass
    except asyncio.CancelledError:
        # The client cancels its own drain when the connection drops under it; only a
        # cancellation of this task itself goes on.
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
    # A server that went away leaves a reset socket that cannot take what is buffered.
    with contextlib.suppress(OSError):
        await nc.close()


#: How long declaring the streams keeps trying while NATS answers but JetStream does not yet (a
#: server restarting, a cluster electing its leader) before the service gives up (exit 2).
STREAMS_PATIENCE = 30.0
#: Errors of a JetStream that is there but not ready: worth another try shortly.
_NOT_READY = (
    ServiceUnavailableError,
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
)


async def ensure_streams(
    js: JetStreamContext,
    layout: StreamLayout | None = None,
    *,
    patience: float = STREAMS_PATIENCE,
) -> None:
    """Create the three streams, or update them to the wanted settings; safe to repeat.

    A JetStream that does not answer yet (a restart under way) is asked again every half second
    for up to `patience` seconds. Raises CannotStart when NATS refuses a stream as configured
    (more replicas than servers), or still has no JetStream after that, naming what to look at.
    """
    layout = layout or StreamLayout()
    deadline = time.monotonic() + patience
    tries = 0
    while True:
        try:
            for config in layout.configs():
                await _ensure_stream(js, config)
            return
        except _NOT_READY as error:
            tries += 1
            if time.monotonic() >= deadline:
                raise CannotStart(
                    "NATS at KAIROS_NATS_URL answered no JetStream requests for "
                    f"{patience:g} s ({type(error).__name__}): is JetStream enabled "
                    "(nats-server -js) and the cluster up?"
                ) from None
            if tries == 1:
                log.warning("JetStream not ready yet (%s); asking again", type(error).__name__)
            await asyncio.sleep(0.5)
        except APIError as error:
            raise CannotStart(
                f"NATS refused the stream {config.name} with {layout.replicas} replica(s) "
                f"(KAIROS_NATS_REPLICAS): {error.description or error}"
            ) from None


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    assert config.name is not None
    try:
        await js.stream_info(config.name)
    except NotFoundError:
        try:
            await js.add_stream(config)
            log.info("created stream", extra={"stream": config.name})
            return
        except BadRequestError as refused:
            # Another copy may have created it just now; if not, NATS refused this config.
            with contextlib.suppress(NotFoundError):
                await js.stream_info(config.name)
                await js.update_stream(config)
                return
            raise refused from None
    await js.update_stream(config)
