"""Publisher settings, from `KAIROS_*` environment variables."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlsplit

from kairos_common.addresses import Network, parse_networks
from kairos_common.metrics import PUBLISHER_METRICS_PORT, MetricsSettings, metrics_settings
from kairos_common.platforms import Platform
from kairos_common.settings import (
    CommonSettings,
    Env,
    ServerSettings,
    SettingsError,
    server_settings,
)
from kairos_media.settings import MediaSettings, media_settings
from kairos_publisher.platforms.base import (
    GRAPH_API_VERSION,
    LINKEDIN_VERSION,
    parse_platform_urls,
)

GRAPH_VERSION_FORM = re.compile(r"v[1-9][0-9]*\.[0-9]+")
LINKEDIN_VERSION_FORM = re.compile(r"20[0-9]{2}(0[1-9]|1[0-2])")


def _check_base_url(key: str, url: str) -> None:
    """A ValueError unless `url` has a host and, if it names one, a valid port."""
    try:
        parts = urlsplit(url)
        valid = bool(parts.hostname) and parts.port != 0
    except ValueError:  # a port out of range or not a number, a broken [IPv6] host
        valid = False
    if not valid:
        raise ValueError(f"{key}={url!r} has no valid host and port")


@dataclass(frozen=True)
class WebhookSettings:
    """How the publisher sends tenants' webhooks (`kairos_publisher.webhooks`)."""

    #: Whether this copy records lifecycle events for webhooks and sends them
    #: (KAIROS_WEBHOOKS_ENABLED); off, it does nothing at all for webhooks.
    enabled: bool = True
    #: Webhook requests in flight in this copy (KAIROS_WEBHOOK_CONCURRENCY).
    concurrency: int = 32
    #: How long one request may take, connecting and answering, before it counts as failed
    #: (KAIROS_WEBHOOK_TIMEOUT_SECONDS).
    timeout: timedelta = timedelta(seconds=10)
    #: How long a claimed delivery is this copy's alone (KAIROS_WEBHOOK_LEASE_SECONDS); at least
    #: twice the timeout, so a try and its report fit in it.
    lease: timedelta = timedelta(seconds=60)
    #: The longest wait between two claims when nothing said a delivery is due
    #: (KAIROS_WEBHOOK_POLL_SECONDS): deliveries that another copy recorded, or that a user asked
    #: to send again, go out within this.
    poll: timedelta = timedelta(seconds=2)
    #: Networks webhooks may be sent to although they are not public; empty in production
    #: (KAIROS_WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8,::1/128" for development and tests).
    allowed_networks: tuple[Network, ...] = ()

    @classmethod
    def from_env(cls, env: Env) -> WebhookSettings:
        try:
            networks = parse_networks(env.text("KAIROS_WEBHOOK_ALLOWED_NETWORKS", ""))
        except ValueError as error:
            raise SettingsError(f"KAIROS_WEBHOOK_ALLOWED_NETWORKS: {error}") from None
        timeout = env.seconds("KAIROS_WEBHOOK_TIMEOUT_SECONDS", 10.0, minimum=0.1, maximum=300.0)
        lease = env.seconds("KAIROS_WEBHOOK_LEASE_SECONDS", 60.0, minimum=1.0, maximum=3600.0)
        if lease < 2 * timeout:
            raise SettingsError(
                f"KAIROS_WEBHOOK_LEASE_SECONDS={lease.total_seconds():g} must be at least twice "
                f"KAIROS_WEBHOOK_TIMEOUT_SECONDS={timeout.total_seconds():g}"
            )
        return cls(
            enabled=env.flag("KAIROS_WEBHOOKS_ENABLED", True),
            concurrency=env.integer("KAIROS_WEBHOOK_CONCURRENCY", 32, minimum=1, maximum=1000),
            timeout=timeout,
            lease=lease,
            poll=env.seconds("KAIROS_WEBHOOK_POLL_SECONDS", 2.0, minimum=0.05, maximum=60.0),
            allowed_networks=networks,
        )


@dataclass(frozen=True)
class PublisherSettings:
    """Everything the publisher reads at start-up."""

    common: CommonSettings
    #: Health endpoint (KAIROS_PUBLISHER_ADDR).
    server: ServerSettings
    #: Platforms this copy consumes, comma-separated; all by default (KAIROS_PUBLISHER_PLATFORMS).
    platforms: tuple[Platform, ...] = tuple(Platform)
    #: Platform calls in flight per platform in this copy (KAIROS_PLATFORM_CONCURRENCY).
    platform_concurrency: int = 64
    #: Platform calls in flight per account in this copy (KAIROS_ACCOUNT_CONCURRENCY).
    account_concurrency: int = 4
    #: How long a begun attempt may expect to wait behind its account's calls
    #: (KAIROS_BEGIN_AHEAD_SECONDS). An attempt's lease runs from BeginAttempt, so attempts are
    #: begun ahead of a free call slot only while the queue they join would drain in this long
    #: at the account's recent call latency; keep it well inside the api's attempt lease
    #: (KAIROS_ATTEMPT_LEASE_SECONDS). 0 begins an attempt only when its call can start.
    begin_ahead: timedelta = timedelta(seconds=30)
    #: Events due later than this are handed back with nak(delay) instead of held in memory
    #: (KAIROS_HOLD_MAX_SECONDS).
    hold_max: timedelta = timedelta(seconds=30)
    #: Unacknowledged events per platform consumer across all copies; sized for a burst of tens
    #: of thousands due in the same second (KAIROS_MAX_ACK_PENDING).
    max_ack_pending: int = 50_000
    #: How long JetStream waits for an ack before redelivering; in-progress acks extend it
    #: (KAIROS_ACK_WAIT_SECONDS).
    ack_wait: timedelta = timedelta(seconds=60)
    #: Deliveries of one event before it is dead-lettered (KAIROS_MAX_DELIVER).
    max_deliver: int = 20
    #: Platform HTTP timeout (KAIROS_HTTP_TIMEOUT_SECONDS).
    http_timeout: timedelta = timedelta(seconds=15)
    #: The longest wait between two polls of a platform's processing of a video; each platform
    #: waits as long as it asks or its module chooses (up to a minute), at most this
    #: (KAIROS_PROCESSING_POLL_MAX_SECONDS; short for local fakes, which process at once).
    processing_poll_max: timedelta = timedelta(seconds=60)
    #: Base URL overrides for the platforms' APIs, e.g. to point them at local fakes
    #: (KAIROS_PLATFORM_URLS="x=http://127.0.0.1:9001,linkedin=http://127.0.0.1:9004").
    platform_urls: dict[str, str] = field(default_factory=dict)
    #: Networks media may be downloaded from although they are not public; empty in production
    #: (KAIROS_MEDIA_ALLOWED_NETWORKS="127.0.0.0/8,::1/128" for development and tests).
    media_allowed_networks: tuple[Network, ...] = ()
    #: The Graph API version Facebook and Instagram are called with, `vNN.N`
    #: (KAIROS_GRAPH_API_VERSION); Meta keeps a version at least two years.
    graph_api_version: str = GRAPH_API_VERSION
    #: The `LinkedIn-Version` header, `YYYYMM` (KAIROS_LINKEDIN_VERSION); LinkedIn retires a
    #: version about a year after its release.
    linkedin_version: str = LINKEDIN_VERSION
    #: Where uploaded media is read from: the api's store (KAIROS_MEDIA_STORE and the S3
    #: settings, `kairos_media`), which the publisher only reads.
    media: MediaSettings = field(default_factory=lambda: media_settings({}))
    #: The Prometheus endpoint (KAIROS_METRICS_HOST, KAIROS_METRICS_PORT, default 9463).
    metrics: MetricsSettings = field(
        default_factory=lambda: MetricsSettings(port=PUBLISHER_METRICS_PORT)
    )
    #: Tenants' webhooks (KAIROS_WEBHOOK_*).
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PublisherSettings:
        env = Env(environ)
        names = env.text("KAIROS_PUBLISHER_PLATFORMS", "")
        platforms: tuple[Platform, ...] = tuple(Platform)
        known = ", ".join(p.value for p in Platform)
        if names:
            try:
                platforms = tuple(Platform(n.strip()) for n in names.split(",") if n.strip())
            except ValueError:
                raise SettingsError(
                    f"KAIROS_PUBLISHER_PLATFORMS={names!r} names an unknown platform; "
                    f"known: {known}"
                ) from None
            if not platforms:
                raise SettingsError(
                    f"KAIROS_PUBLISHER_PLATFORMS={names!r} names no platform; known: {known}"
                )
        try:
            urls = parse_platform_urls(env.text("KAIROS_PLATFORM_URLS", ""))
            for key, url in urls.items():
                _check_base_url(key, url)
        except ValueError as error:
            raise SettingsError(f"KAIROS_PLATFORM_URLS: {error}") from None
        try:
            networks = parse_networks(env.text("KAIROS_MEDIA_ALLOWED_NETWORKS", ""))
        except ValueError as error:
            raise SettingsError(f"KAIROS_MEDIA_ALLOWED_NETWORKS: {error}") from None
        graph = env.text("KAIROS_GRAPH_API_VERSION", GRAPH_API_VERSION)
        if not GRAPH_VERSION_FORM.fullmatch(graph):
            raise SettingsError(
                f"KAIROS_GRAPH_API_VERSION={graph!r} is not a Graph API version like "
                f"{GRAPH_API_VERSION} (v, major, dot, minor)"
            )
        linkedin = env.text("KAIROS_LINKEDIN_VERSION", LINKEDIN_VERSION)
        if not LINKEDIN_VERSION_FORM.fullmatch(linkedin):
            raise SettingsError(
                f"KAIROS_LINKEDIN_VERSION={linkedin!r} is not a LinkedIn version like "
                f"{LINKEDIN_VERSION} (YYYYMM)"
            )
        return cls(
            common=CommonSettings.from_env(environ),
            server=server_settings(env, "KAIROS_PUBLISHER_ADDR", "127.0.0.1:50053"),
            platforms=platforms,
            platform_concurrency=env.integer("KAIROS_PLATFORM_CONCURRENCY", 64, minimum=1),
            account_concurrency=env.integer("KAIROS_ACCOUNT_CONCURRENCY", 4, minimum=1),
            begin_ahead=env.seconds("KAIROS_BEGIN_AHEAD_SECONDS", 30.0),
            hold_max=env.seconds("KAIROS_HOLD_MAX_SECONDS", 30.0),
            max_ack_pending=env.integer("KAIROS_MAX_ACK_PENDING", 50_000, minimum=1),
            ack_wait=env.seconds("KAIROS_ACK_WAIT_SECONDS", 60.0, minimum=1.0),
            max_deliver=env.integer("KAIROS_MAX_DELIVER", 20, minimum=2),
            http_timeout=env.seconds("KAIROS_HTTP_TIMEOUT_SECONDS", 15.0, minimum=0.1),
            processing_poll_max=env.seconds(
                "KAIROS_PROCESSING_POLL_MAX_SECONDS", 60.0, minimum=0.01
            ),
            platform_urls=urls,
            media_allowed_networks=networks,
            graph_api_version=graph,
            linkedin_version=linkedin,
            media=media_settings(environ),
            metrics=metrics_settings(env, PUBLISHER_METRICS_PORT),
            webhooks=WebhookSettings.from_env(env),
        )
