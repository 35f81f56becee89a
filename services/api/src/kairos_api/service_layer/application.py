"""What a use case gets to work with: settings, the database, the cipher, the key resolver, the
clock and the notifier, built once per process by `kairos_api.bootstrap`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from kairos_api.adapters.crypto import CredentialCipher
from kairos_api.adapters.reads import ReadConnections
from kairos_api.service_layer.keys import KeyResolver
from kairos_api.service_layer.unit_of_work import UnitOfWork
from kairos_api.settings import ApiSettings
from kairos_media.store import MediaStore


def utc_now() -> datetime:
    return datetime.now(UTC)


class Notifier:
    """Tells the rest of the system about committed changes; silent until NATS is connected."""

    def outbox_written(self) -> None:
        """New outbox rows are committed: relay them now."""

    def due_soon(self) -> None:
        """Something became due within moments (publish-now): schedulers should claim now."""


@dataclass
class Application:
    """Everything a use case may need, built once per process."""

    settings: ApiSettings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    cipher: CredentialCipher
    keys: KeyResolver
    #: Where uploaded media is kept.
    media: MediaStore
    clock: Callable[[], datetime] = field(default=utc_now)
    notifier: Notifier = field(default_factory=Notifier)
    #: Autocommit connections for one-statement reads, on PostgreSQL only.
    reads: ReadConnections | None = None

    def uow(self) -> UnitOfWork:
        """A new unit of work (one transaction); its events are relayed once committed."""
        return UnitOfWork(self.sessions, self.notifier.outbox_written)

    async def close(self) -> None:
        if self.reads is not None:
            await self.reads.close()
        await self.engine.dispose()
