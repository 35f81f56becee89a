"""Settings read from `KAIROS_*` environment variables into frozen, typed objects at start-up.

Every value has a local default that just works on a developer machine; a malformed value fails at
start-up with a message naming the variable, never later.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class SettingsError(ValueError):
    """A `KAIROS_*` variable holds a value that cannot be used; the message names it."""


class Env:
    """Typed reads of environment variables, each failing with the variable's name."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    def text(self, name: str, default: str) -> str:
        """The variable's value, or `default` when unset or empty."""
        value = self._environ.get(name, "").strip()
        return value or default

    def integer(self, name: str, default: int, *, minimum: int | None = None) -> int:
        """A whole number, at least `minimum` when given."""
        raw = self._environ.get(name, "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not a whole number") from None
        if minimum is not None and value < minimum:
            raise SettingsError(f"{name}={value} is below the minimum of {minimum}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        """A flag: 1/true/yes/on or 0/false/no/off."""
        raw = self._environ.get(name, "").strip().lower()
        if not raw:
            return default
        if raw in _TRUE:
            return True
        if raw in _FALSE:
            return False
        raise SettingsError(f"{name}={raw!r} is not a boolean (use true or false)")

    def seconds(self, name: str, default: float, *, minimum: float = 0.0) -> timedelta:
        """A duration given in (possibly fractional) seconds."""
        raw = self._environ.get(name, "").strip()
        if not raw:
            return timedelta(seconds=default)
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not a number of seconds") from None
        if value < minimum:
            raise SettingsError(f"{name}={value} is below the minimum of {minimum} seconds")
        return timedelta(seconds=value)

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        """One of `choices`, compared case-insensitively."""
        value = self.text(name, default).lower()
        if value not in choices:
            raise SettingsError(f"{name}={value!r} must be one of: {', '.join(choices)}")
        return value


@dataclass(frozen=True)
class LogSettings:
    """How a service logs."""

    #: `plain` for people, `json` for log pipelines (KAIROS_LOG_FORMAT).
    format: str = "plain"
    #: Python level name (KAIROS_LOG_LEVEL).
    level: str = "INFO"

    @classmethod
    def from_env(cls, env: Env) -> LogSettings:
        return cls(
            format=env.choice("KAIROS_LOG_FORMAT", "plain", ("plain", "json")),
            level=env.choice(
                "KAIROS_LOG_LEVEL", "info", ("debug", "info", "warning", "error")
            ).upper(),
        )


@dataclass(frozen=True)
class ServerSettings:
    """How a service's gRPC server listens and stops."""

    #: host:port to listen on; port 0 picks a free port (tests).
    addr: str
    #: Serve gRPC reflection (KAIROS_GRPC_REFLECTION); switch off where it is not wanted.
    reflection: bool = True
    #: How long in-flight work may take to finish after SIGTERM (KAIROS_GRACE_SECONDS).
    grace: timedelta = timedelta(seconds=10)


@dataclass(frozen=True)
class CommonSettings:
    """Settings every Kairos service reads."""

    #: SQLAlchemy URL of the database; only the api opens it (KAIROS_DATABASE_URL).
    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/kairos"
    #: NATS server URL(s), comma-separated (KAIROS_NATS_URL).
    nats_url: str = "nats://127.0.0.1:4222"
    #: Where clients reach the api, host:port (KAIROS_API_TARGET).
    api_target: str = "127.0.0.1:50051"
    #: Credential-encryption keys, comma-separated, current first (KAIROS_SECRET_KEY).
    secret_key: str = field(default="", repr=False)
    #: Shared credential that the scheduler and publisher present to DispatchService
    #: (KAIROS_SERVICE_TOKEN).
    service_token: str = field(default="", repr=False)
    #: Logging.
    log: LogSettings = LogSettings()
    #: NATS stream replicas (1 on a single server; 3 in a cluster) (KAIROS_NATS_REPLICAS).
    nats_replicas: int = 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CommonSettings:
        env = Env(environ)
        return cls(
            database_url=env.text("KAIROS_DATABASE_URL", cls.database_url),
            nats_url=env.text("KAIROS_NATS_URL", cls.nats_url),
            api_target=env.text("KAIROS_API_TARGET", cls.api_target),
            secret_key=env.text("KAIROS_SECRET_KEY", ""),
            service_token=env.text("KAIROS_SERVICE_TOKEN", "dev-service-token"),
            log=LogSettings.from_env(env),
            nats_replicas=env.integer("KAIROS_NATS_REPLICAS", 1, minimum=1),
        )


def server_settings(
    env: Env, addr_variable: str, default_addr: str, *, default_grace: float = 10.0
) -> ServerSettings:
    """The gRPC listen settings of one service, from its own address variable."""
    addr = env.text(addr_variable, default_addr)
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise SettingsError(f"{addr_variable}={addr!r} is not host:port (e.g. 127.0.0.1:50051)")
    return ServerSettings(
        addr=addr,
        reflection=env.flag("KAIROS_GRPC_REFLECTION", True),
        grace=env.seconds("KAIROS_GRACE_SECONDS", default_grace, minimum=0.0),
    )
