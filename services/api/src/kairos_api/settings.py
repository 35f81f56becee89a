"""Api settings, from `KAIROS_*` environment variables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kairos_common.settings import CommonSettings, Env, ServerSettings, server_settings


@dataclass(frozen=True)
class ApiSettings:
    """Everything the api reads at start-up."""

    common: CommonSettings
    #: Listen address of the public and internal gRPC APIs (KAIROS_API_ADDR).
    server: ServerSettings

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ApiSettings:
        env = Env(environ)
        return cls(
            common=CommonSettings.from_env(environ),
            server=server_settings(env, "KAIROS_API_ADDR", "127.0.0.1:50051"),
        )
