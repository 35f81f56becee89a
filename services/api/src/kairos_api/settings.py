"""Api settings, from `KAIROS_*` environment variables."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from kairos_common.addresses import Network, parse_networks
from kairos_common.metrics import API_METRICS_PORT, MetricsSettings, metrics_settings
from kairos_common.settings import (
    CommonSettings,
    Env,
    ServerSettings,
    SettingsError,
    server_settings,
)
from kairos_media.settings import MediaSettings, media_settings

#: UploadMedia's limit unless KAIROS_MEDIA_MAX_BYTES sets another: 1 GiB, above what X (512 MB)
#: and Instagram (300 MB Reels) take, so that the platforms' own limits decide per target.
DEFAULT_MEDIA_MAX_BYTES = 1 << 30

#: Databases the api runs on, by SQLAlchemy backend name, and the drivers it accepts for each
#: (none named: the api picks psycopg for PostgreSQL, aiosqlite or sqlite3 for SQLite).
DATABASES: dict[str, tuple[str, ...]] = {
    "postgresql": ("psycopg",),
    "postgres": ("psycopg",),
    "sqlite": ("pysqlite", "aiosqlite"),
}
DATABASE_EXAMPLES = "postgresql://user@host:5432/kairos or sqlite:///path/to/kairos.db"

#: Seconds from one failed webhook try to the next, unless KAIROS_WEBHOOK_RETRY_SCHEDULE_SECONDS
#: sets others: about 27.5 hours in all, so a receiver away for a day still gets its events.
DEFAULT_WEBHOOK_RETRY_SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 36000)


def parse_schedule(name: str, value: str, default: tuple[float, ...]) -> tuple[timedelta, ...]:
    """Comma-separated seconds (`5, 300, 1800`) as delays; SettingsError naming `name`."""
    if not value.strip():
        return tuple(timedelta(seconds=s) for s in default)
    delays: list[timedelta] = []
    for item in value.split(","):
        try:
            seconds = float(item)
        except ValueError:
            raise SettingsError(
                f"{name}: {item.strip()[:40]!r} is not a number of seconds"
            ) from None
        if not math.isfinite(seconds) or not 0 < seconds <= 30 * 86_400:
            raise SettingsError(f"{name}: {item.strip()[:40]} must be above 0 and at most 30 days")
        delays.append(timedelta(seconds=seconds))
    return tuple(delays)


def allowed_networks(name: str, value: str) -> tuple[Network, ...]:
    """`parse_networks` of `value`, failing with a SettingsError naming `name`."""
    try:
        return parse_networks(value)
    except ValueError as error:
        raise SettingsError(f"{name}: {error}") from None


def check_database_url(url: str) -> str:
    """`url` if the api can run on it; a SettingsError naming KAIROS_DATABASE_URL otherwise.

    The value is never repeated in the message unless parsed with its password hidden.
    """
    # Imported here: SQLAlchemy takes a while to import, and only the api's database needs it.
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    name = "KAIROS_DATABASE_URL"
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise SettingsError(f"{name} is not a database URL such as {DATABASE_EXAMPLES}") from None
    shown = parsed.render_as_string(hide_password=True)
    backend, _, driver = parsed.drivername.partition("+")
    if backend not in DATABASES:
        raise SettingsError(
            f"{name}: unsupported database {backend!r} in {shown!r}; Kairos runs on PostgreSQL "
            f"or SQLite ({DATABASE_EXAMPLES})"
        )
    if driver and driver not in DATABASES[backend]:
        raise SettingsError(
            f"{name}: unsupported driver {driver!r} in {shown!r}; leave it out "
            f"({backend}://...) or use {backend}+{DATABASES[backend][0]}://..."
        )
    if backend in ("postgresql", "postgres"):
        # Several servers (`?host=a:5432&host=b:5432`, or `?host=a,b&port=5432,5432`) are
        # checked as the engine will read them: ports that are numbers, one per host.
        target = parsed.set(drivername="postgresql+psycopg")
        try:
            target.get_dialect()().create_connect_args(target)
        except (ArgumentError, ValueError) as error:
            raise SettingsError(f"{name}: {error} in {shown!r}") from None
    if backend == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise SettingsError(
            f"{name}: {shown!r} is an in-memory SQLite database, empty for every connection; "
            "name a file: sqlite:///path/to/kairos.db"
        )
    return url


@dataclass(frozen=True)
class ApiSettings:
    """Everything the api reads at start-up."""

    common: CommonSettings
    #: Listen address of the public and internal gRPC APIs (KAIROS_API_ADDR), their TLS, and
    #: the mutual-TLS listener DispatchService then requires (KAIROS_API_MTLS_ADDR).
    server: ServerSettings
    #: Run the database migrations before serving (KAIROS_MIGRATE_ON_START).
    migrate_on_start: bool = True
    #: How far in the past a schedule may be and still be accepted (KAIROS_PAST_TOLERANCE_SECONDS).
    past_tolerance: timedelta = timedelta(seconds=60)
    #: Allow http:// media URLs, for development against local servers (KAIROS_ALLOW_HTTP_MEDIA).
    allow_http_media: bool = False
    #: stale_after of posts that give none (KAIROS_DEFAULT_STALE_AFTER_SECONDS).
    default_stale_after: timedelta = timedelta(hours=1)

    #: How long a call keeps retrying while the database is away (a failover, a restart) before
    #: it answers UNAVAILABLE; 0 retries nothing (KAIROS_DATABASE_RETRY_SECONDS).
    database_retry: timedelta = timedelta(seconds=15)

    #: Tries per target before it fails: the first plus 3 retries (KAIROS_MAX_ATTEMPTS).
    max_attempts: int = 4
    #: First retry delay; doubles per attempt, with jitter (KAIROS_RETRY_BASE_SECONDS).
    retry_base: timedelta = timedelta(seconds=2)
    #: Longest retry delay (KAIROS_RETRY_CAP_SECONDS).
    retry_cap: timedelta = timedelta(minutes=10)
    #: Retries sooner than this wait in JetStream (nak with delay); later ones go back to the
    #: database as RETRY_WAIT (KAIROS_REDELIVER_MAX_SECONDS).
    redeliver_max: timedelta = timedelta(seconds=30)
    #: How long a begun attempt may run before the sweeper settles it
    #: (KAIROS_ATTEMPT_LEASE_SECONDS).
    attempt_lease: timedelta = timedelta(seconds=120)
    #: How long relayed lifecycle events stay in the outbox table before they are deleted
    #: (KAIROS_OUTBOX_RETENTION_SECONDS); KAIROS_EVENTS keeps them for subscribers.
    outbox_retention: timedelta = timedelta(hours=1)
    #: Where uploaded media is kept (KAIROS_MEDIA_STORE and the S3 settings, `kairos_media`).
    media: MediaSettings = field(default_factory=lambda: media_settings({}))
    #: The largest file UploadMedia takes (KAIROS_MEDIA_MAX_BYTES).
    media_max_bytes: int = DEFAULT_MEDIA_MAX_BYTES
    #: How far ahead the occurrences of recurring series exist as posts
    #: (KAIROS_SERIES_HORIZON_DAYS).
    series_horizon: timedelta = timedelta(days=14)
    #: How often the api creates the occurrences that came within the horizon
    #: (KAIROS_SERIES_EVERY_SECONDS).
    series_every: timedelta = timedelta(seconds=60)
    #: The Prometheus endpoint (KAIROS_METRICS_HOST, KAIROS_METRICS_PORT, default 9461).
    metrics: MetricsSettings = field(default_factory=lambda: MetricsSettings(port=API_METRICS_PORT))
    #: Delays between failed tries of a webhook delivery; after the last one it is given up
    #: (KAIROS_WEBHOOK_RETRY_SCHEDULE_SECONDS, comma-separated seconds).
    webhook_retry_schedule: tuple[timedelta, ...] = tuple(
        timedelta(seconds=s) for s in DEFAULT_WEBHOOK_RETRY_SCHEDULE
    )
    #: How long every delivery to an endpoint may fail before it is disabled
    #: (KAIROS_WEBHOOK_DISABLE_AFTER_SECONDS).
    webhook_disable_after: timedelta = timedelta(days=5)
    #: Networks a webhook URL may name by a literal loopback, private or link-local address, for
    #: development and tests (KAIROS_WEBHOOK_ALLOWED_NETWORKS, e.g. "127.0.0.0/8,::1/128").
    webhook_allowed_networks: tuple[Network, ...] = ()
    #: How long delivered and failed webhook deliveries stay in the log before they are deleted
    #: with their tries (KAIROS_WEBHOOK_LOG_RETENTION_SECONDS).
    webhook_log_retention: timedelta = timedelta(days=30)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ApiSettings:
        env = Env(environ)
        common = CommonSettings.from_env(environ)
        check_database_url(common.database_url)
        return cls(
            common=common,
            server=server_settings(
                env,
                "KAIROS_API_ADDR",
                "127.0.0.1:50051",
                mutual_tls_addr_variable="KAIROS_API_MTLS_ADDR",
            ),
            migrate_on_start=env.flag("KAIROS_MIGRATE_ON_START", True),
            past_tolerance=env.seconds("KAIROS_PAST_TOLERANCE_SECONDS", 60.0),
            allow_http_media=env.flag("KAIROS_ALLOW_HTTP_MEDIA", False),
            default_stale_after=env.seconds(
                "KAIROS_DEFAULT_STALE_AFTER_SECONDS", 3600.0, minimum=1.0
            ),
            database_retry=env.seconds("KAIROS_DATABASE_RETRY_SECONDS", 15.0, maximum=300.0),
            max_attempts=env.integer("KAIROS_MAX_ATTEMPTS", 4, minimum=1),
            retry_base=env.seconds("KAIROS_RETRY_BASE_SECONDS", 2.0),
            retry_cap=env.seconds("KAIROS_RETRY_CAP_SECONDS", 600.0),
            redeliver_max=env.seconds("KAIROS_REDELIVER_MAX_SECONDS", 30.0),
            attempt_lease=env.seconds("KAIROS_ATTEMPT_LEASE_SECONDS", 120.0, minimum=1.0),
            outbox_retention=env.seconds("KAIROS_OUTBOX_RETENTION_SECONDS", 3600.0, minimum=60.0),
            media=media_settings(environ),
            media_max_bytes=env.integer(
                "KAIROS_MEDIA_MAX_BYTES", DEFAULT_MEDIA_MAX_BYTES, minimum=1
            ),
            series_horizon=timedelta(
                days=env.integer("KAIROS_SERIES_HORIZON_DAYS", 14, minimum=1, maximum=3660)
            ),
            series_every=env.seconds("KAIROS_SERIES_EVERY_SECONDS", 60.0, minimum=1.0),
            metrics=metrics_settings(env, API_METRICS_PORT),
            webhook_retry_schedule=parse_schedule(
                "KAIROS_WEBHOOK_RETRY_SCHEDULE_SECONDS",
                env.text("KAIROS_WEBHOOK_RETRY_SCHEDULE_SECONDS", ""),
                DEFAULT_WEBHOOK_RETRY_SCHEDULE,
            ),
            webhook_disable_after=env.seconds(
                "KAIROS_WEBHOOK_DISABLE_AFTER_SECONDS", 5 * 86_400.0, minimum=0.1
            ),
            webhook_allowed_networks=allowed_networks(
                "KAIROS_WEBHOOK_ALLOWED_NETWORKS", env.text("KAIROS_WEBHOOK_ALLOWED_NETWORKS", "")
            ),
            webhook_log_retention=env.seconds(
                "KAIROS_WEBHOOK_LOG_RETENTION_SECONDS", 30 * 86_400.0, minimum=60.0
            ),
        )
