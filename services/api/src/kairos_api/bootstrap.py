"""The composition root: builds the engine, the cipher and the handlers' dependencies once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from kairos_api.adapters import database
from kairos_api.adapters.crypto import MIN_SECRET_LENGTH, SETTING, CredentialCipher
from kairos_api.entrypoints.auth import Authenticator
from kairos_api.service_layer.keys import KeyResolver
from kairos_api.service_layer.unit_of_work import UnitOfWork
from kairos_api.settings import ApiSettings
from kairos_common.settings import SECRET_HINT, SettingsError, is_public_secret


def _now() -> datetime:
    return datetime.now(UTC)


class Notifier:
    """Tells the rest of the system about committed changes; silent until NATS is connected."""

    def outbox_written(self) -> None:
        """New outbox rows are committed: relay them now."""

    def due_soon(self) -> None:
        """Something became due within moments (publish-now): schedulers should claim now."""


@dataclass
class Application:
    """Everything a request handler may need, built once per process."""

    settings: ApiSettings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    cipher: CredentialCipher
    auth: Authenticator
    clock: Callable[[], datetime] = field(default=_now)
    notifier: Notifier = field(default_factory=Notifier)

    def uow(self) -> UnitOfWork:
        """A new unit of work (one transaction); its events are relayed once committed."""
        return UnitOfWork(self.sessions, self.notifier.outbox_written)

    async def close(self) -> None:
        await self.engine.dispose()


def load_cipher(secret: str, *, development: bool = False) -> CredentialCipher:
    """The cipher of KAIROS_SECRET_KEY; outside development its current (first) key may not be
    one published in this repository. Older keys may be, so that credentials stored under a
    placeholder can still be re-encrypted under a real key."""
    try:
        cipher = CredentialCipher.from_secret(secret)
    except ValueError as error:
        raise SettingsError(str(error)) from None
    if not development and is_public_secret(secret.split(",")[0].strip()):
        raise SettingsError(
            f"the first key of {SETTING} is a publicly known placeholder; outside development "
            f"set a random secret of at least {MIN_SECRET_LENGTH} characters first ({SECRET_HINT})"
        )
    return cipher


def bootstrap(settings: ApiSettings, *, clock: Callable[[], datetime] = _now) -> Application:
    """Build the application; connects lazily (the first query opens the pool)."""
    cipher = load_cipher(settings.common.secret_key, development=settings.common.development)
    engine = database.create_engine(settings.common.database_url)
    sessions = database.session_factory(engine)
    keys = KeyResolver(lambda: UnitOfWork(sessions))
    auth = Authenticator(keys, settings.common.service_token)
    return Application(settings, engine, sessions, cipher, auth, clock)
