"""Publisher settings, from `KAIROS_*` environment variables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kairos_common.settings import CommonSettings, Env, ServerSettings, server_settings


@dataclass(frozen=True)
class PublisherSettings:
    """Everything the publisher reads at start-up."""

    common: CommonSettings
    #: Health endpoint (KAIROS_PUBLISHER_ADDR).
    server: ServerSettings

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PublisherSettings:
        env = Env(environ)
        return cls(
            common=CommonSettings.from_env(environ),
            server=server_settings(env, "KAIROS_PUBLISHER_ADDR", "127.0.0.1:50053"),
        )
