"""The unit of work: one database transaction, and the lifecycle events written inside it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, cast

import psycopg
from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kairos_api.adapters import outbox
from kairos_api.adapters.orm import Account, OutboxEvent, Post, Target
from kairos_api.domain.model import PostStatus, TargetStatus


class UnitOfWork:
    """`async with uow:` opens a session; `commit()` makes the change and its events durable.

    Leaving the block without commit rolls everything back, so a handler that raises never
    leaves half a change behind.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        on_events: Callable[[], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._session: AsyncSession | None = None
        self._on_events = on_events
        self._emitted = False

    @property
    def session(self) -> AsyncSession:
        if self._session is None:
            raise RuntimeError("unit of work used outside `async with`")
        return self._session

    async def __aenter__(self) -> UnitOfWork:
        self._session = self._sessions()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._session is not None
        # close() rolls back whatever was not committed and detaches the loaded rows without
        # expiring them, so handlers can return what they read.
        await self._session.close()
        self._session = None

    @property
    def on_postgresql(self) -> bool:
        """Whether row locks with SKIP LOCKED are available (not on SQLite)."""
        return self.session.get_bind().dialect.name == "postgresql"

    async def psycopg(self) -> psycopg.AsyncConnection[Any]:
        """The psycopg connection under this unit of work, in its transaction (PostgreSQL only).

        For hot paths: a statement sent on it skips SQLAlchemy's compilation and result layers,
        and psycopg prepares it server-side once it has run a few times on the connection.
        """
        if not self.on_postgresql:
            raise RuntimeError("the psycopg connection exists on PostgreSQL only")
        connection = await self.session.connection()
        raw = await connection.get_raw_connection()
        return cast("psycopg.AsyncConnection[Any]", raw.driver_connection)

    async def commit(self) -> None:
        await self.session.commit()
        if self._emitted and self._on_events is not None:
            self._on_events()
        self._emitted = False

    def emit(
        self,
        event_type: str,
        post: Post,
        *,
        target: Target | None = None,
        account: Account | None = None,
        detail: str = "",
    ) -> None:
        """Record a lifecycle event in the outbox, inside this transaction."""
        self._emitted = True
        self.session.add(
            OutboxEvent(
                **outbox.lifecycle_row(
                    event_type,
                    tenant_id=post.tenant_id,
                    post_id=post.id,
                    post_status=PostStatus(post.status),
                    revision=post.revision,
                    target_id=target.id if target is not None else None,
                    target_status=TargetStatus(target.status) if target is not None else None,
                    account_id=(
                        account.id
                        if account is not None
                        else target.account_id
                        if target is not None
                        else None
                    ),
                    detail=detail,
                )
            )
        )

    def events_written(self) -> None:
        """Outbox rows were written by a statement of the caller's own: relay after commit."""
        self._emitted = True

    async def emit_rows(self, rows: Sequence[dict[str, Any]]) -> None:
        """Record many lifecycle events (`outbox.lifecycle_row` values) in one statement."""
        if not rows:
            return
        self._emitted = True
        # The table, not the mapped class: a plain Core insert skips the ORM's bulk machinery.
        connection = await self.session.connection()
        await connection.execute(insert(cast(Table, OutboxEvent.__table__)), list(rows))

    def emit_account(self, event_type: str, account: Account, *, detail: str = "") -> None:
        """Record an account event (needs_reauth ...) in the outbox, inside this transaction."""
        self._emitted = True
        self.session.add(
            OutboxEvent(
                **outbox.lifecycle_row(
                    event_type, tenant_id=account.tenant_id, account_id=account.id, detail=detail
                )
            )
        )
