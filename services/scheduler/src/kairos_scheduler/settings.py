"""Scheduler settings, from `KAIROS_*` environment variables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from kairos_common.metrics import SCHEDULER_METRICS_PORT, MetricsSettings, metrics_settings
from kairos_common.settings import CommonSettings, Env, ServerSettings, server_settings


@dataclass(frozen=True)
class SchedulerSettings:
    """Everything the scheduler reads at start-up."""

    common: CommonSettings
    #: Health endpoint (KAIROS_SCHEDULER_ADDR).
    server: ServerSettings
    #: Claim targets due within this window, so events wait at the publisher, not the reverse
    #: (KAIROS_SCHEDULER_LEAD_SECONDS).
    lead: timedelta = timedelta(seconds=2)
    #: Time between claims when nothing wakes the loop (KAIROS_SCHEDULER_TICK_SECONDS).
    tick: timedelta = timedelta(milliseconds=200)
    #: Deliveries per ClaimDue call (KAIROS_SCHEDULER_BATCH).
    batch: int = 1000
    #: A delivery's lease after its due instant; the sweeper re-emits it once this runs out
    #: (KAIROS_DELIVERY_LEASE_SECONDS).
    lease: timedelta = timedelta(seconds=60)
    #: Time between sweeps (KAIROS_SWEEP_SECONDS).
    sweep_every: timedelta = timedelta(seconds=1)
    #: The Prometheus endpoint (KAIROS_METRICS_HOST, KAIROS_METRICS_PORT, default 9462).
    metrics: MetricsSettings = field(
        default_factory=lambda: MetricsSettings(port=SCHEDULER_METRICS_PORT)
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SchedulerSettings:
        env = Env(environ)
        return cls(
            common=CommonSettings.from_env(environ),
            server=server_settings(env, "KAIROS_SCHEDULER_ADDR", "127.0.0.1:50052"),
            lead=env.seconds("KAIROS_SCHEDULER_LEAD_SECONDS", 2.0),
            tick=env.seconds("KAIROS_SCHEDULER_TICK_SECONDS", 0.2, minimum=0.01),
            # DispatchService.ClaimDue takes at most 2,000 deliveries a call (the api's MAX_CLAIM).
            batch=env.integer("KAIROS_SCHEDULER_BATCH", 1000, minimum=1, maximum=2000),
            lease=env.seconds("KAIROS_DELIVERY_LEASE_SECONDS", 60.0, minimum=1.0),
            sweep_every=env.seconds("KAIROS_SWEEP_SECONDS", 1.0, minimum=0.05),
            metrics=metrics_settings(env, SCHEDULER_METRICS_PORT),
        )
