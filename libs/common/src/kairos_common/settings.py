"""Settings read from `KAIROS_*` environment variables into frozen, typed objects at start-up.

Every value has a local default that just works on a developer machine, except the secrets that
guard a real deployment: outside development (`KAIROS_ENV`, production unless set) the services
refuse to start without a service token of their own. A malformed value fails at start-up with a
message naming the variable, never later. Each secret can be read from a file instead, named by
the same variable with `_FILE` appended (KAIROS_SECRET_KEY_FILE), as container secrets are.
"""

from __future__ import annotations

import math
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import SplitResult, urlsplit

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}

#: Longest duration any `*_SECONDS` setting may hold: longer ones overflow the places a duration
#: ends up in (datetimes, JetStream's nanoseconds, timers) and are always a mistake.
MAX_SECONDS = 365 * 24 * 3600.0
#: Largest whole number a setting may hold unless it says otherwise: what protobuf's int32 and
#: JetStream's limits take.
MAX_INTEGER = 2**31 - 1

DEVELOPMENT = "development"
PRODUCTION = "production"
#: The service token that development mode uses when KAIROS_SERVICE_TOKEN is unset; public.
DEV_SERVICE_TOKEN = "dev-service-token"
#: Shortest service token accepted outside development, in characters.
MIN_SERVICE_TOKEN_LENGTH = 24
#: Longest one: it travels in a gRPC header on every DispatchService call.
MAX_SERVICE_TOKEN_LENGTH = 1024
#: Secrets published in this repository (docs, earlier compose files): never secret in production.
PUBLIC_SECRETS = frozenset(
    {
        DEV_SERVICE_TOKEN,
        "change-me-service-token",
        "change-me-to-a-random-string-of-32-characters-or-more",
    }
)
SECRET_HINT = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"

_NATS_SCHEMES = ("nats", "tls", "ws", "wss")
#: gRPC name-resolver prefixes a KAIROS_API_TARGET may start with instead of host:port.
_GRPC_TARGET_SCHEMES = ("dns:", "unix:", "unix-abstract:", "ipv4:", "ipv6:")


class SettingsError(ValueError):
    """A `KAIROS_*` variable holds a value that cannot be used; the message names it."""


class CannotStart(RuntimeError):
    """The service cannot start as it is set up (a port taken, a database it cannot reach); the
    message names the setting and says what to do about it."""


def is_public_secret(value: str) -> bool:
    """Whether `value` is a secret anyone can read in this repository, or a placeholder."""
    return value in PUBLIC_SECRETS or value.lower().startswith("change-me")


class Env:
    """Typed reads of environment variables, each failing with the variable's name."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    def text(self, name: str, default: str) -> str:
        """The variable's value, or `default` when unset or empty."""
        value = self._environ.get(name, "").strip()
        return value or default

    def secret(self, name: str, default: str = "") -> str:
        """A secret: the variable's value, or the contents of the file `<name>_FILE` names (as
        container secrets are mounted), without the line end; `default` when neither is set.

        Setting both is refused, and so is a file that cannot be read or is empty; the messages
        name the variables and the path, never the value.
        """
        file_name = f"{name}_FILE"
        path = self._environ.get(file_name, "").strip()
        if not path:
            return self.text(name, default)
        if self._environ.get(name, "").strip():
            raise SettingsError(f"{name} and {file_name} are both set; set one of them")
        try:
            value = Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "it is not UTF-8 text"
            raise SettingsError(f"{file_name}={path!r} cannot be read: {reason}") from None
        if not value:
            raise SettingsError(f"{file_name}={path!r} is empty")
        return value

    def integer(
        self, name: str, default: int, *, minimum: int | None = None, maximum: int = MAX_INTEGER
    ) -> int:
        """A whole number, at least `minimum` when given and at most `maximum`."""
        raw = self._environ.get(name, "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw[:40]!r} is not a whole number") from None
        if minimum is not None and value < minimum:
            raise SettingsError(f"{name}={value} is below the minimum of {minimum}")
        if value > maximum:
            raise SettingsError(f"{name}={raw[:40]} is above the maximum of {maximum}")
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
        raise SettingsError(f"{name}={raw[:40]!r} is not a boolean (use true or false)")

    def seconds(
        self, name: str, default: float, *, minimum: float = 0.0, maximum: float = MAX_SECONDS
    ) -> timedelta:
        """A duration given in (possibly fractional) seconds, from `minimum` to `maximum`."""
        raw = self._environ.get(name, "").strip()
        if not raw:
            return timedelta(seconds=default)
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw[:40]!r} is not a number of seconds") from None
        if not math.isfinite(value):
            raise SettingsError(f"{name}={raw[:40]!r} is not a finite number of seconds")
        if value < minimum:
            raise SettingsError(f"{name}={raw[:40]} is below the minimum of {minimum:.10g} seconds")
        if value > maximum:
            raise SettingsError(f"{name}={raw[:40]} is above the maximum of {maximum:.10g} seconds")
        return timedelta(seconds=value)

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        """One of `choices`, compared case-insensitively."""
        value = self.text(name, default).lower()
        if value not in choices:
            raise SettingsError(f"{name}={value[:40]!r} must be one of: {', '.join(choices)}")
        return value


def hide_password(url: str) -> str:
    """`url` with the password of its user part, if any, replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user, _, host = parts.netloc.rpartition("@")
    return parts._replace(netloc=f"{user.partition(':')[0]}:***@{host}").geturl()


def _nats_server(name: str, entry: str) -> SplitResult:
    # The same reading as nats-py's: a bare host or host:port means nats://.
    url = entry if "://" in entry else f"nats://{entry}"
    parts = urlsplit(url)
    shown = hide_password(url)
    if parts.scheme not in _NATS_SCHEMES:
        raise SettingsError(
            f"{name}: {shown!r} is not a NATS URL; use {' or '.join(_NATS_SCHEMES)} URLs such "
            "as nats://127.0.0.1:4222"
        )
    try:
        port = parts.port
    except ValueError:
        raise SettingsError(f"{name}: {shown!r} has no valid port (1-65535)") from None
    if not parts.hostname or port == 0 or any(c.isspace() for c in entry):
        raise SettingsError(f"{name}: {shown!r} is not a NATS URL such as nats://127.0.0.1:4222")
    return parts


def nats_url(env: Env, name: str, default: str) -> str:
    """NATS server URLs, comma-separated, each one checked as nats-py will read it."""
    value = env.text(name, default)
    servers = [_nats_server(name, entry.strip()) for entry in value.split(",") if entry.strip()]
    if not servers:
        raise SettingsError(f"{name}={value!r} names no NATS server")
    websocket = {server.scheme in ("ws", "wss") for server in servers}
    if len(websocket) > 1:
        raise SettingsError(f"{name} mixes websocket (ws, wss) and nats/tls URLs; use one kind")
    return value


def grpc_target(env: Env, name: str, default: str) -> str:
    """Where to reach a gRPC server: host:port, or a target with a gRPC resolver prefix."""
    value = env.text(name, default)
    if any(c.isspace() for c in value):
        raise SettingsError(f"{name}={value[:80]!r} contains a space")
    if value.startswith(_GRPC_TARGET_SCHEMES):
        return value
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise SettingsError(f"{name}={value[:80]!r} is not host:port (e.g. 127.0.0.1:50051)")
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
    #: The variable `addr` came from, named when the server cannot listen there.
    addr_variable: str = "the listen address"
    #: TLS of the server (KAIROS_TLS_CERT_FILE, KAIROS_TLS_KEY_FILE); None: plaintext.
    tls: ServerTls | None = None


#: The variables of each way to authenticate to NATS, as named in messages.
NATS_USER_PASSWORD = "KAIROS_NATS_USER and KAIROS_NATS_PASSWORD(_FILE)"
NATS_TOKEN = "KAIROS_NATS_TOKEN(_FILE)"
NATS_NKEY = "KAIROS_NATS_NKEY_SEED(_FILE)"
NATS_CREDS = "KAIROS_NATS_CREDS(_FILE)"
NATS_URL_USER = "the user in KAIROS_NATS_URL"
_PEM_CERTIFICATE = "-----BEGIN CERTIFICATE-----"
#: Ends the first line of every PEM private key: PKCS#8, RSA, EC.
_PEM_KEY = "PRIVATE KEY-----"


@dataclass(frozen=True)
class NatsAuthSettings:
    """How the services authenticate to NATS and check its TLS certificate.

    At most one way to authenticate is set; none leaves it to the server (or to a user in
    KAIROS_NATS_URL, which nats-py sends as before). TLS is used whenever the server asks for
    it; a CA or a client certificate given here shapes that TLS, and where TLS is wanted
    (`wants_tls`) connect() gives a password or token only over TLS.
    """

    #: User name, sent with `password` (KAIROS_NATS_USER).
    user: str = ""
    #: That user's password (KAIROS_NATS_PASSWORD or KAIROS_NATS_PASSWORD_FILE).
    password: str = field(default="", repr=False)
    #: Token authentication (KAIROS_NATS_TOKEN or KAIROS_NATS_TOKEN_FILE).
    token: str = field(default="", repr=False)
    #: NKey seed (SU...) of a user the server knows by its public key
    #: (KAIROS_NATS_NKEY_SEED or, usually, KAIROS_NATS_NKEY_SEED_FILE).
    nkey_seed: str = field(default="", repr=False)
    #: Contents of a .creds file, user JWT and NKey seed, for servers in operator mode
    #: (KAIROS_NATS_CREDS_FILE, or KAIROS_NATS_CREDS).
    creds: str = field(default="", repr=False)
    #: PEM file of the CA(s) that signed the server's certificate; the system's CAs when empty
    #: (KAIROS_NATS_CA_FILE).
    ca_file: str = ""
    #: PEM client certificate (chain) and its key, for servers that verify clients
    #: (KAIROS_NATS_CERT_FILE, KAIROS_NATS_KEY_FILE).
    cert_file: str = ""
    key_file: str = ""
    #: Name to check the server's certificate against instead of the URL's host
    #: (KAIROS_NATS_TLS_HOSTNAME).
    tls_hostname: str = ""

    @property
    def method(self) -> str:
        """The variables of the way to authenticate that is set, or "" when none is."""
        if self.user:
            return NATS_USER_PASSWORD
        if self.token:
            return NATS_TOKEN
        if self.nkey_seed:
            return NATS_NKEY
        if self.creds:
            return NATS_CREDS
        return ""

    def wants_tls(self, nats_url: str) -> bool:
        """Whether the link to NATS must be TLS: a CA or client certificate is set, or a URL in
        `nats_url` (KAIROS_NATS_URL) is tls:// or wss://."""
        schemes = {entry.strip().partition("://")[0] for entry in nats_url.split(",")}
        return bool(self.ca_file or self.cert_file or schemes & {"tls", "wss"})

    def tls_context(
        self, context_class: type[ssl.SSLContext] = ssl.SSLContext, *, always: bool = False
    ) -> ssl.SSLContext | None:
        """The TLS context that verifies the server (against KAIROS_NATS_CA_FILE, else the
        system's CAs) and presents the client certificate, made of `context_class`.

        None when neither a CA nor a client certificate is set, unless `always`: then nats-py
        uses the system's CAs if the server asks for TLS.
        """
        if not (always or self.ca_file or self.cert_file):
            return None
        # As ssl.create_default_context() makes it: the server's certificate and name checked.
        context = context_class(ssl.PROTOCOL_TLS_CLIENT)
        if self.ca_file:
            context.load_verify_locations(cafile=self.ca_file)
        else:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        if self.cert_file:
            # No password: an encrypted key fails here instead of prompting on a terminal.
            context.load_cert_chain(self.cert_file, self.key_file, password=b"")
        return context


def _pem_file(env: Env, name: str, what: str, marker: str) -> str:
    """The path in `name`, checked to be a readable file holding PEM `what` (`marker` in it)."""
    path = env.text(name, "")
    if not path:
        return ""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "it is not UTF-8 text"
        raise SettingsError(f"{name}={path!r} cannot be read: {reason}") from None
    if marker not in text:
        raise SettingsError(f"{name}={path!r} holds no PEM {what}")
    return path


def _check_nkey_seed(seed: str) -> None:
    import nkeys  # type: ignore[import-untyped]

    try:
        nkeys.from_seed(bytearray(seed.encode())).wipe()
    except (nkeys.NkeysError, ValueError, TypeError):
        raise SettingsError(
            f"{NATS_NKEY} holds no NKey seed (one line that starts with SU, as `nk -gen user` "
            "writes)"
        ) from None
    if not seed.startswith("SU"):
        raise SettingsError(f"{NATS_NKEY} holds a seed that is not a user's (SU...)")


def _check_creds(creds: str) -> None:
    if "BEGIN NATS USER JWT" not in creds or "BEGIN USER NKEY SEED" not in creds:
        raise SettingsError(
            f"{NATS_CREDS} is not a .creds file: it needs a NATS USER JWT and a USER NKEY SEED "
            "block (as `nsc generate creds` writes)"
        )


def nats_auth_settings(env: Env, nats_url: str) -> NatsAuthSettings:
    """NATS authentication and TLS from KAIROS_NATS_* variables, checked at start-up.

    Refused, naming the variables and never a secret's value: two ways to authenticate at once
    (a user in `nats_url` counts as one), a user without a password or the reverse, a
    certificate without its key or the reverse, a file that cannot be read or does not hold
    what it should.
    """
    settings = NatsAuthSettings(
        user=env.text("KAIROS_NATS_USER", ""),
        password=env.secret("KAIROS_NATS_PASSWORD"),
        token=env.secret("KAIROS_NATS_TOKEN"),
        nkey_seed=env.secret("KAIROS_NATS_NKEY_SEED"),
        creds=env.secret("KAIROS_NATS_CREDS"),
        ca_file=_pem_file(env, "KAIROS_NATS_CA_FILE", "certificate", _PEM_CERTIFICATE),
        cert_file=_pem_file(env, "KAIROS_NATS_CERT_FILE", "certificate", _PEM_CERTIFICATE),
        key_file=_pem_file(env, "KAIROS_NATS_KEY_FILE", "private key", _PEM_KEY),
        tls_hostname=env.text("KAIROS_NATS_TLS_HOSTNAME", ""),
    )
    if settings.user and not settings.password:
        raise SettingsError(
            "KAIROS_NATS_USER is set without KAIROS_NATS_PASSWORD (or KAIROS_NATS_PASSWORD_FILE)"
        )
    if settings.password and not settings.user:
        raise SettingsError("KAIROS_NATS_PASSWORD is set without KAIROS_NATS_USER")
    methods = [
        method
        for method, present in (
            (NATS_USER_PASSWORD, settings.user),
            (NATS_TOKEN, settings.token),
            (NATS_NKEY, settings.nkey_seed),
            (NATS_CREDS, settings.creds),
            (NATS_URL_USER, _url_has_user(nats_url)),
        )
        if present
    ]
    if len(methods) > 1:
        raise SettingsError(
            f"NATS authentication is set more than one way ({'; '.join(methods)}); set one"
        )
    if settings.cert_file and not settings.key_file:
        raise SettingsError("KAIROS_NATS_CERT_FILE is set without KAIROS_NATS_KEY_FILE")
    if settings.key_file and not settings.cert_file:
        raise SettingsError("KAIROS_NATS_KEY_FILE is set without KAIROS_NATS_CERT_FILE")
    if settings.nkey_seed:
        _check_nkey_seed(settings.nkey_seed)
    if settings.creds:
        _check_creds(settings.creds)
    try:
        settings.tls_context()
    except ssl.SSLError as error:
        message = f"KAIROS_NATS_CA_FILE cannot be loaded ({error.reason or error})"
        if settings.cert_file:
            message = (
                "KAIROS_NATS_CA_FILE, KAIROS_NATS_CERT_FILE and KAIROS_NATS_KEY_FILE cannot be "
                f"loaded ({error.reason or error}): is the key the certificate's, and not "
                "encrypted?"
            )
        raise SettingsError(message) from None
    return settings


def _url_has_user(nats_url: str) -> bool:
    for entry in nats_url.split(","):
        entry = entry.strip()
        if entry:
            parts = urlsplit(entry if "://" in entry else f"nats://{entry}")
            if parts.username or parts.password:
                return True
    return False


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
    #: (KAIROS_SERVICE_TOKEN); in development, the public DEV_SERVICE_TOKEN when unset.
    service_token: str = field(default="", repr=False)
    #: Logging.
    log: LogSettings = LogSettings()
    #: NATS stream replicas (1 on a single server; 3 in a cluster) (KAIROS_NATS_REPLICAS).
    nats_replicas: int = 1
    #: `production` (the default) or `development` (KAIROS_ENV): development lets the services
    #: run on the public development token and secrets; `make dev` and the tests set it.
    environment: str = PRODUCTION
    #: TLS of the channel to the api (KAIROS_API_TLS and the KAIROS_API_*_FILE certificates).
    api_tls: ClientTls = field(default_factory=lambda: ClientTls())  # (defined below)
    #: NATS authentication and TLS (KAIROS_NATS_USER, KAIROS_NATS_CA_FILE ...).
    nats_auth: NatsAuthSettings = NatsAuthSettings()

    @property
    def development(self) -> bool:
        return self.environment == DEVELOPMENT

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CommonSettings:
        env = Env(environ)
        environment = env.choice("KAIROS_ENV", PRODUCTION, (DEVELOPMENT, PRODUCTION))
        token_default = DEV_SERVICE_TOKEN if environment == DEVELOPMENT else ""
        servers = nats_url(env, "KAIROS_NATS_URL", cls.nats_url)
        return cls(
            database_url=env.secret("KAIROS_DATABASE_URL", cls.database_url),
            nats_url=servers,
            api_target=grpc_target(env, "KAIROS_API_TARGET", cls.api_target),
            secret_key=env.secret("KAIROS_SECRET_KEY"),
            service_token=env.secret("KAIROS_SERVICE_TOKEN", token_default),
            log=LogSettings.from_env(env),
            # JetStream keeps at most 5 replicas of a stream.
            nats_replicas=env.integer("KAIROS_NATS_REPLICAS", 1, minimum=1, maximum=5),
            environment=environment,
            api_tls=api_client_tls(env),
            nats_auth=nats_auth_settings(env, servers),
        )

    def require_service_token(self) -> str:
        """The service token, checked before a service starts with it.

        Outside development it must be set, private (not a value published in this repository)
        and at least MIN_SERVICE_TOKEN_LENGTH characters long; DispatchService hands out
        decrypted platform credentials to whoever holds it.
        """
        name = "KAIROS_SERVICE_TOKEN"
        token = self.service_token
        advice = (
            f"set it to the same random value (at least {MIN_SERVICE_TOKEN_LENGTH} characters) "
            f"for the api, the scheduler and the publisher ({SECRET_HINT}), or set "
            "KAIROS_ENV=development on a development machine"
        )
        if not token:
            raise SettingsError(f"{name} is not set: {advice}")
        if len(token) > MAX_SERVICE_TOKEN_LENGTH or not all(33 <= ord(c) <= 126 for c in token):
            raise SettingsError(
                f"{name} must be at most {MAX_SERVICE_TOKEN_LENGTH} printable ASCII characters "
                "without spaces (it is sent in a gRPC header)"
            )
        if self.development:
            return token
        if is_public_secret(token):
            raise SettingsError(f"{name} is a publicly known value: {advice}")
        if len(token) < MIN_SERVICE_TOKEN_LENGTH:
            raise SettingsError(f"{name} is {len(token)} characters long: {advice}")
        return token


def listen_address(env: Env, name: str, default: str) -> str:
    """A host:port to listen on (port 0 picks a free one)."""
    addr = env.text(name, default)
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise SettingsError(f"{name}={addr!r} is not host:port (e.g. 127.0.0.1:50051)")
    return addr


def server_settings(
    env: Env,
    addr_variable: str,
    default_addr: str,
    *,
    default_grace: float = 10.0,
    mutual_tls_addr_variable: str = "",
) -> ServerSettings:
    """The gRPC listen settings of one service, from its own address variable; with
    `mutual_tls_addr_variable`, the service can take a mutual-TLS listener as well."""
    addr = listen_address(env, addr_variable, default_addr)
    return ServerSettings(
        addr=addr,
        reflection=env.flag("KAIROS_GRPC_REFLECTION", True),
        grace=env.seconds("KAIROS_GRACE_SECONDS", default_grace, minimum=0.0),
        addr_variable=addr_variable,
        tls=server_tls(env, mutual_tls_addr_variable),
    )


# --- TLS of the gRPC servers and of the channels to the api ------------------------------------


@dataclass(frozen=True)
class ServerTls:
    """TLS of a service's gRPC server, the PEM files read (and checked) at start-up."""

    #: The server's certificate chain (KAIROS_TLS_CERT_FILE).
    cert_chain: bytes
    #: Its private key (KAIROS_TLS_KEY_FILE).
    private_key: bytes = field(repr=False)
    #: The CA that signs the certificates clients present on the mutual-TLS listener
    #: (KAIROS_TLS_CLIENT_CA_FILE); None: no such listener.
    client_ca: bytes | None = None
    #: Where the mutual-TLS listener listens (KAIROS_API_MTLS_ADDR); set with `client_ca`.
    mutual_addr: str = ""
    #: The variable `mutual_addr` came from, named when the server cannot listen there.
    mutual_addr_variable: str = ""


@dataclass(frozen=True)
class ClientTls:
    """TLS of a channel to a Kairos service; off, the channel is plaintext."""

    #: Use TLS (KAIROS_API_TLS; on by default when a CA or a client certificate is given).
    enabled: bool = False
    #: The CA that signed the server's certificate (KAIROS_API_CA_FILE); None: the system's
    #: roots.
    ca: bytes | None = None
    #: The client certificate chain presented for mutual TLS (KAIROS_API_CLIENT_CERT_FILE).
    cert_chain: bytes | None = None
    #: Its private key (KAIROS_API_CLIENT_KEY_FILE).
    private_key: bytes | None = field(default=None, repr=False)
    #: The name the server's certificate is checked against instead of the target's host
    #: (KAIROS_API_TLS_SERVER_NAME); "" checks the target's host.
    server_name: str = ""


def _read_pem(env: Env, name: str) -> tuple[str, bytes] | None:
    """(path, contents) of the PEM file the variable `name` names; None when it is unset."""
    path = env.text(name, "")
    if not path:
        return None
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise SettingsError(f"{name}={path!r} cannot be read: {error.strerror}") from None
    return path, data


def _check_certificates(name: str, path: str, data: bytes) -> None:
    """Refuse a file without a PEM certificate, naming the variable."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cadata=data.decode("ascii"))
    except (UnicodeDecodeError, ssl.SSLError, ValueError):
        raise SettingsError(f"{name}={path!r} holds no PEM certificate") from None


def _check_key_pair(cert: tuple[str, str], key: tuple[str, str]) -> None:
    """Refuse a certificate and key that do not make a pair, naming the variables.

    Python's `ssl` (OpenSSL) checks them: gRPC itself would take any bytes and fail each
    handshake later. An encrypted key is refused too: gRPC cannot decrypt one.
    """
    (cert_name, cert_path), (key_name, key_path) = cert, key
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # The callback answers a passphrase prompt (an encrypted key) with none instead of
        # letting OpenSSL ask on the terminal.
        context.load_cert_chain(cert_path, key_path, password=lambda: b"")
    except ssl.SSLError as error:
        if error.reason == "KEY_VALUES_MISMATCH":
            raise SettingsError(
                f"{key_name}={key_path!r} is not the private key of the certificate in "
                f"{cert_name}={cert_path!r}"
            ) from None
        raise SettingsError(
            f"{key_name}={key_path!r} holds no unencrypted PEM private key"
        ) from None
    except OSError as error:
        raise SettingsError(f"{key_name}={key_path!r} cannot be read: {error.strerror}") from None


def _key_pair(env: Env, cert_name: str, key_name: str) -> tuple[bytes, bytes] | None:
    """(certificate chain, private key) from the files two variables name, checked to be a
    pair; None when neither is set."""
    cert = _read_pem(env, cert_name)
    key = _read_pem(env, key_name)
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        given, missing = (cert_name, key_name) if cert is not None else (key_name, cert_name)
        raise SettingsError(f"{given} is set but {missing} is not; set both or neither")
    _check_certificates(cert_name, *cert)
    _check_key_pair((cert_name, cert[0]), (key_name, key[0]))
    return cert[1], key[1]


def server_tls(env: Env, mutual_tls_addr_variable: str = "") -> ServerTls | None:
    """The server's TLS from KAIROS_TLS_CERT_FILE and KAIROS_TLS_KEY_FILE; None (plaintext)
    when neither is set.

    With `mutual_tls_addr_variable` (the api's), KAIROS_TLS_CLIENT_CA_FILE adds a listener at
    that address where clients must present a certificate signed by that CA. It is a listener
    of its own because gRPC Python either never asks for client certificates or requires them
    on every connection: tenants' clients, which authenticate by API key, keep the other one.
    """
    pair = _key_pair(env, "KAIROS_TLS_CERT_FILE", "KAIROS_TLS_KEY_FILE")
    if not mutual_tls_addr_variable:
        return None if pair is None else ServerTls(*pair)
    ca_name = "KAIROS_TLS_CLIENT_CA_FILE"
    client_ca = _read_pem(env, ca_name)
    mutual_addr = env.text(mutual_tls_addr_variable, "")
    if client_ca is None and mutual_addr:
        raise SettingsError(f"{mutual_tls_addr_variable} is set but {ca_name} is not; set both")
    if client_ca is not None and not mutual_addr:
        raise SettingsError(
            f"{ca_name} is set but {mutual_tls_addr_variable} is not: mutual TLS is served on "
            "a listener of its own; set it (e.g. 0.0.0.0:50054) and point the scheduler's and "
            "publisher's KAIROS_API_TARGET at it"
        )
    if pair is None:
        if client_ca is not None:
            raise SettingsError(
                f"{ca_name} is set but KAIROS_TLS_CERT_FILE and KAIROS_TLS_KEY_FILE are not: "
                "mutual TLS needs the server's certificate too"
            )
        return None
    if client_ca is None:
        return ServerTls(*pair)
    _check_certificates(ca_name, *client_ca)
    return ServerTls(
        *pair,
        client_ca=client_ca[1],
        mutual_addr=listen_address(env, mutual_tls_addr_variable, ""),
        mutual_addr_variable=mutual_tls_addr_variable,
    )


def api_client_tls(env: Env) -> ClientTls:
    """TLS of the channel to the api, from KAIROS_API_TLS, KAIROS_API_CA_FILE,
    KAIROS_API_CLIENT_CERT_FILE with KAIROS_API_CLIENT_KEY_FILE, KAIROS_API_TLS_SERVER_NAME."""
    ca = _read_pem(env, "KAIROS_API_CA_FILE")
    if ca is not None:
        _check_certificates("KAIROS_API_CA_FILE", *ca)
    pair = _key_pair(env, "KAIROS_API_CLIENT_CERT_FILE", "KAIROS_API_CLIENT_KEY_FILE")
    server_name = env.text("KAIROS_API_TLS_SERVER_NAME", "")
    given = [
        name
        for name, value in (
            ("KAIROS_API_CA_FILE", ca),
            ("KAIROS_API_CLIENT_CERT_FILE", pair),
            ("KAIROS_API_TLS_SERVER_NAME", server_name),
        )
        if value
    ]
    enabled = env.flag("KAIROS_API_TLS", bool(given))
    if not enabled and given:
        raise SettingsError(
            f"KAIROS_API_TLS is off but {', '.join(given)} only applies with TLS; "
            "unset KAIROS_API_TLS or those"
        )
    return ClientTls(
        enabled=enabled,
        ca=None if ca is None else ca[1],
        cert_chain=None if pair is None else pair[0],
        private_key=None if pair is None else pair[1],
        server_name=server_name,
    )
