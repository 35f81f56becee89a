"""The unit of work: one database transaction, and the lifecycle events written inside it;
and when a call whose transactions failed with the database may run them again (`retrying`).

A transaction is the body of an `async with app.uow()` block, which only its caller can run
again; so retries wrap a whole call (an RPC: `entrypoints.retries`), and the units of work tell
them whether COMMIT was sent meanwhile. The decision (`retry_decision`):

- Only a lost database is retried (`database_lost`): the connection broke or could not be made
  (psycopg's OperationalError without a SQLSTATE, SQLSTATE class 08), the server is shutting down
  or starting (57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now), or it
  takes no writes (25006 read_only_sql_transaction: a standby, or a primary being demoted).
  Anything else (a constraint, a serialization failure, a bug) is answered as before.
- Before any COMMIT of the call was sent, nothing it did is durable: the server rolls back the
  open transaction of a broken connection, so running the call again does it once.
- Once a COMMIT was sent, its answer may be what was lost: the change may be made, and a second
  run would make it again (a second post, a second approval event). The call is run again only
  when it is idempotent by construction (a CreatePost with a request_id finds the post it made;
  see `entrypoints.retries` for the calls that are); otherwise it answers UNAVAILABLE saying the
  change may or may not have been made.
"""

from __future__ import annotations

import asyncio
import enum
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import Any, TypeVar, cast

import psycopg
from sqlalchemy import Table, insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kairos_api.adapters import outbox
from kairos_api.adapters.orm import Account, OutboxEvent, Post, Target
from kairos_api.domain.model import PostStatus, TargetStatus
from kairos_common import errors

T = TypeVar("T")

#: SQLSTATEs, besides class 08 (connection exception), after which the same transaction can
#: succeed on a new connection, to the promoted server or to the restarted one.
RETRYABLE_STATES = frozenset({"57P01", "57P02", "57P03", "25006"})


class CommitOutcomeUnknown(Exception):
    """The connection was lost after COMMIT was sent: the transaction may or may not be
    durable. Its cause is the database error."""


def database_lost(error: BaseException) -> bool:
    """Whether `error` says the database went away or takes no writes now, rather than
    anything about the statements sent."""
    if isinstance(error, CommitOutcomeUnknown):
        return True
    if isinstance(error, DBAPIError):
        if error.connection_invalidated:
            return True
        if error.orig is None:
            return False
        return database_lost(error.orig)
    if isinstance(error, psycopg.Error):
        state = error.sqlstate
        if state is None:
            # Raised by psycopg itself: the connection failed, or no host took it as asked
            # (target_session_attrs); its other errors without a SQLSTATE are misuse.
            return isinstance(error, psycopg.OperationalError)
        return state.startswith("08") or state in RETRYABLE_STATES
    return False


class Retry(enum.Enum):
    """What a call does after one of its runs failed."""

    #: The error is not about the database being away: answer it as usual.
    NO = "no"
    #: Run the call again (after a pause).
    AGAIN = "again"
    #: A COMMIT may have been made and the call is not idempotent: answer UNAVAILABLE saying so.
    OUTCOME_UNKNOWN = "outcome_unknown"


def retry_decision(error: BaseException, *, commit_sent: bool, idempotent: bool) -> Retry:
    """Whether a call that failed with `error` may run again (see the module docstring).

    `commit_sent`: a unit of work of this run sent COMMIT (whether or not it was answered);
    `idempotent`: running the call twice has the effect of running it once.
    """
    if not database_lost(error):
        return Retry.NO
    if idempotent:
        return Retry.AGAIN
    if commit_sent or isinstance(error, CommitOutcomeUnknown):
        return Retry.OUTCOME_UNKNOWN
    return Retry.AGAIN


@dataclass
class _Run:
    """One run of a call: whether any of its units of work sent COMMIT."""

    commit_sent: bool = False


#: The run of the call the current task serves; None outside `retrying` (background loops).
_RUN: ContextVar[_Run | None] = ContextVar("kairos_api_run", default=None)

#: First pause between runs; it doubles up to `MAX_PAUSE`, with jitter.
FIRST_PAUSE = 0.05
MAX_PAUSE = 1.0
#: Seconds kept before the caller's deadline, for the answer to reach it.
DEADLINE_MARGIN = 0.5


async def retrying(
    call: Callable[[], Awaitable[T]],
    *,
    patience: timedelta,
    idempotent: bool = False,
    time_left: Callable[[], float | None] = lambda: None,
) -> T:
    """`call()`, run again with short pauses while the database is away, for up to `patience`
    (and within `time_left()` seconds, the caller's deadline); then UNAVAILABLE.

    Each run's units of work record whether COMMIT was sent, which `retry_decision` needs.
    """
    give_up_at = time.monotonic() + patience.total_seconds()
    pause = FIRST_PAUSE
    runs = 0
    while True:
        run = _Run()
        token = _RUN.set(run)
        runs += 1
        try:
            return await call()
        except Exception as error:
            decision = retry_decision(error, commit_sent=run.commit_sent, idempotent=idempotent)
            if decision is Retry.NO:
                raise
            reason = _reason(error)
            if decision is Retry.OUTCOME_UNKNOWN:
                raise errors.Unavailable(
                    f"the database connection was lost while this change was being committed "
                    f"({reason}): it may or may not have been made; read it back before "
                    "repeating the call"
                ) from error
            room = give_up_at - time.monotonic()
            left = time_left()
            if left is not None:
                room = min(room, left - DEADLINE_MARGIN)
            if room <= 0:
                raise errors.Unavailable(
                    f"the database is unavailable ({reason}); tried {runs} time(s) over "
                    f"{patience.total_seconds():g} s at most, and this call made no change: "
                    "try again"
                ) from error
            # The last run comes at the end of the patience, not a pause before it.
            await asyncio.sleep(min(pause * random.uniform(0.5, 1.0), room))
            pause = min(pause * 2, MAX_PAUSE)
        finally:
            _RUN.reset(token)


def _reason(error: BaseException) -> str:
    cause = error.__cause__ if isinstance(error, CommitOutcomeUnknown) else error
    if isinstance(cause, DBAPIError) and cause.orig is not None:
        cause = cause.orig
    lines = str(cause).strip().splitlines()
    return lines[0][:200] if lines else type(cause).__name__


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
        if exc is not None and database_lost(exc):
            # Not back into the pool: its server is gone, or takes no writes (a demoted primary
            # or a standby, which the pool's ping does not notice); the next run connects anew.
            await self._session.invalidate()
        else:
            # close() rolls back whatever was not committed and detaches the loaded rows
            # without expiring them, so handlers can return what they read.
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
        """Make the transaction durable. A failure of the writes is raised as it is (nothing
        was committed); a connection lost once COMMIT was sent as CommitOutcomeUnknown."""
        # Written first, so that a failure here is known to be before COMMIT.
        await self.session.flush()
        run = _RUN.get()
        if run is not None:
            run.commit_sent = True
        try:
            await self.session.commit()
        except Exception as error:
            if database_lost(error):
                raise CommitOutcomeUnknown("COMMIT sent, its answer lost") from error
            raise
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
