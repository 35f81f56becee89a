"""The console's settings, from the environment (every name starts with KAIROS_)."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlsplit

from kairos_common.settings import (
    DEVELOPMENT,
    PRODUCTION,
    ClientTls,
    Env,
    LogSettings,
    SettingsError,
    api_client_tls,
    grpc_target,
    is_public_secret,
    listen_address,
)

#: Shortest console secret accepted outside development, in characters.
MIN_SECRET_LENGTH = 32


@dataclass(frozen=True)
class ConsoleSettings:
    """What the console reads at start."""

    #: Where the console listens (KAIROS_CONSOLE_ADDR, host:port; port 0 picks a free one).
    host: str = "127.0.0.1"
    port: int = 8080
    #: Where it reaches the api (KAIROS_API_TARGET) and the channel's TLS (KAIROS_API_TLS...).
    api_target: str = "127.0.0.1:50051"
    api_tls: ClientTls = field(default_factory=ClientTls)
    #: The Fernet key that encrypts and signs the session cookie, derived from
    #: KAIROS_CONSOLE_SECRET (or _FILE).
    cookie_key: bytes = field(default=b"", repr=False)
    #: Whether cookies carry `Secure` (KAIROS_CONSOLE_SECURE_COOKIES; on unless development):
    #: behind TLS (a proxy that ends it, usually), the browser then never sends them in clear.
    secure_cookies: bool = True
    #: The origins (scheme://host[:port]) browsers reach the console at, when that is not the Host
    #: it sees: behind a proxy that sends its own Host (KAIROS_CONSOLE_ORIGINS, comma-separated).
    #: Forms from any other origin are refused; empty: the Host of each request.
    allowed_origins: tuple[str, ...] = ()
    #: How long a sign-in lasts (KAIROS_CONSOLE_SESSION_HOURS).
    session_lifetime: timedelta = timedelta(hours=12)
    #: Deadline of each call to the api, in seconds.
    api_timeout: float = 10.0
    environment: str = PRODUCTION
    log: LogSettings = field(default_factory=LogSettings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ConsoleSettings:
        env = Env(environ)
        environment = env.choice("KAIROS_ENV", PRODUCTION, (DEVELOPMENT, PRODUCTION))
        development = environment == DEVELOPMENT
        addr = listen_address(env, "KAIROS_CONSOLE_ADDR", f"{cls.host}:{cls.port}")
        host, _, port_text = addr.rpartition(":")
        host, port = host.strip("[]"), int(port_text)
        hours = env.integer("KAIROS_CONSOLE_SESSION_HOURS", 12, minimum=1, maximum=24 * 30)
        return cls(
            host=host,
            port=port,
            api_target=grpc_target(env, "KAIROS_API_TARGET", cls.api_target),
            api_tls=api_client_tls(env),
            cookie_key=_cookie_key(env.secret("KAIROS_CONSOLE_SECRET"), development),
            secure_cookies=env.flag("KAIROS_CONSOLE_SECURE_COOKIES", not development),
            session_lifetime=timedelta(hours=hours),
            allowed_origins=_origins(env.text("KAIROS_CONSOLE_ORIGINS", "")),
            environment=environment,
            log=LogSettings.from_env(env),
        )


def _origins(value: str) -> tuple[str, ...]:
    """KAIROS_CONSOLE_ORIGINS: each an http(s) origin, as a browser sends it in `Origin`."""
    found = []
    for entry in (part.strip() for part in value.split(",")):
        if not entry:
            continue
        parts = urlsplit(entry)
        if (
            parts.scheme not in ("http", "https")
            or not parts.netloc
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
        ):
            raise SettingsError(
                f"KAIROS_CONSOLE_ORIGINS: {entry[:80]!r} is not an origin such as "
                "https://kairos.example.com (a scheme and a host, no path)"
            )
        found.append(f"{parts.scheme}://{parts.netloc}".lower())
    return tuple(found)


def _cookie_key(secret: str, development: bool) -> bytes:
    """The session cookie's Fernet key. Outside development the secret must be set, private and
    long; in development an unset one is drawn at random (sign-ins then end with the process)."""
    name = "KAIROS_CONSOLE_SECRET"
    if not secret:
        if not development:
            raise SettingsError(
                f"{name} is not set: set it (or {name}_FILE) to a random value of at least "
                f"{MIN_SECRET_LENGTH} characters; it encrypts the session cookie that holds "
                "each user's API key"
            )
        secret = secrets.token_urlsafe(32)
    elif not development:
        if is_public_secret(secret):
            raise SettingsError(f"{name} is a public placeholder: set a random value")
        if len(secret) < MIN_SECRET_LENGTH:
            raise SettingsError(
                f"{name} is {len(secret)} characters long; use at least {MIN_SECRET_LENGTH}"
            )
    return base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest())
