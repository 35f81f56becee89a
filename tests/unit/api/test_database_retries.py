"""When a call that failed with the database runs again: the errors that count as the database
being away, the decision before and after COMMIT, and the retry loop's bounds."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, cast

import psycopg
import psycopg.errors
import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kairos_api.service_layer.unit_of_work import (
    CommitOutcomeUnknown,
    Retry,
    UnitOfWork,
    database_lost,
    retry_decision,
    retrying,
)
from kairos_common import errors

REFUSED = psycopg.OperationalError("connection failed: Connection refused")


def _wrapped(orig: BaseException, *, invalidated: bool = False) -> DBAPIError:
    return OperationalError("COMMIT", None, orig, connection_invalidated=invalidated)


@pytest.mark.parametrize(
    "error",
    [
        REFUSED,
        psycopg.OperationalError("connection failed: server is in hot standby mode"),
        psycopg.errors.lookup("08006")("connection failure"),
        psycopg.errors.lookup("57P01")("terminating connection due to administrator command"),
        psycopg.errors.lookup("57P02")("crash shutdown"),
        psycopg.errors.lookup("57P03")("the database system is starting up"),
        psycopg.errors.lookup("25006")("cannot execute INSERT in a read-only transaction"),
        _wrapped(psycopg.errors.lookup("57P01")("shutdown")),
        _wrapped(ValueError("whatever the driver said"), invalidated=True),
        CommitOutcomeUnknown("COMMIT sent, its answer lost"),
    ],
)
def test_a_lost_or_read_only_database_counts_as_away(error: BaseException) -> None:
    assert database_lost(error)


@pytest.mark.parametrize(
    "error",
    [
        psycopg.errors.lookup("23505")("duplicate key"),
        # An OperationalError with a SQLSTATE, about the transaction and not the server.
        psycopg.errors.lookup("40001")("could not serialize access"),
        psycopg.errors.lookup("57014")("canceling statement due to statement timeout"),
        psycopg.InterfaceError("the query has 2 placeholders but 1 parameters were passed"),
        IntegrityError("INSERT", None, psycopg.errors.lookup("23505")("duplicate key")),
        ValueError("a bug"),
        errors.NotFound("no such post"),
    ],
)
def test_other_errors_do_not(error: BaseException) -> None:
    assert not database_lost(error)
    assert retry_decision(error, commit_sent=False, idempotent=True) is Retry.NO


def test_before_commit_any_call_runs_again() -> None:
    assert retry_decision(REFUSED, commit_sent=False, idempotent=False) is Retry.AGAIN


def test_after_commit_only_an_idempotent_call_runs_again() -> None:
    lost = CommitOutcomeUnknown("lost")
    assert retry_decision(lost, commit_sent=True, idempotent=False) is Retry.OUTCOME_UNKNOWN
    assert retry_decision(lost, commit_sent=True, idempotent=True) is Retry.AGAIN
    # A later transaction of the call failed before its COMMIT, but an earlier one committed.
    assert retry_decision(REFUSED, commit_sent=True, idempotent=False) is Retry.OUTCOME_UNKNOWN
    # Lost in a transaction shared with other calls (group commit): no run of this call knew.
    assert retry_decision(lost, commit_sent=False, idempotent=False) is Retry.OUTCOME_UNKNOWN


class _Session:
    """What UnitOfWork needs of a session; commit fails as told."""

    def __init__(self, commit_error: BaseException | None, flush_error: BaseException | None):
        self.commit_error = commit_error
        self.flush_error = flush_error
        self.commits = 0
        self.invalidated = False

    async def flush(self) -> None:
        if self.flush_error is not None:
            raise self.flush_error

    async def commit(self) -> None:
        self.commits += 1
        if self.commit_error is not None:
            raise self.commit_error

    async def close(self) -> None:
        pass

    async def invalidate(self) -> None:
        self.invalidated = True


def _sessions(session: _Session) -> async_sessionmaker[AsyncSession]:
    return cast("async_sessionmaker[AsyncSession]", lambda: session)


async def _run_uow(session: _Session) -> str:
    async with UnitOfWork(_sessions(session)) as uow:
        await uow.commit()
    return "done"


async def test_a_commit_whose_answer_is_lost_is_not_repeated_by_a_plain_call() -> None:
    session = _Session(commit_error=_wrapped(REFUSED, invalidated=True), flush_error=None)
    with pytest.raises(errors.Unavailable, match="may or may not have been made") as refused:
        await retrying(lambda: _run_uow(session), patience=timedelta(seconds=5))
    assert session.commits == 1
    assert isinstance(refused.value.__cause__, CommitOutcomeUnknown)


async def test_an_idempotent_call_is_repeated_after_a_lost_commit() -> None:
    session = _Session(commit_error=_wrapped(REFUSED, invalidated=True), flush_error=None)

    async def call() -> str:
        if session.commits == 2:
            session.commit_error = None
        return await _run_uow(session)

    assert await retrying(call, patience=timedelta(seconds=5), idempotent=True) == "done"
    assert session.commits == 3


async def test_a_failure_before_commit_is_retried_until_the_database_is_back() -> None:
    session = _Session(commit_error=None, flush_error=REFUSED)
    runs = 0

    async def call() -> str:
        nonlocal runs
        runs += 1
        if runs == 3:
            session.flush_error = None
        return await _run_uow(session)

    assert await retrying(call, patience=timedelta(seconds=5)) == "done"
    assert (runs, session.commits) == (3, 1)


async def test_a_commit_that_failed_on_the_writes_is_raised_as_it_is() -> None:
    duplicate = IntegrityError("COMMIT", None, psycopg.errors.lookup("23505")("duplicate key"))
    session = _Session(commit_error=duplicate, flush_error=None)
    with pytest.raises(IntegrityError):
        await retrying(lambda: _run_uow(session), patience=timedelta(seconds=5))
    assert session.commits == 1


async def test_it_gives_up_with_unavailable_after_its_patience() -> None:
    runs = 0

    async def away() -> Any:
        nonlocal runs
        runs += 1
        raise REFUSED

    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(errors.Unavailable, match=r"database is unavailable .*made no change"):
        await retrying(away, patience=timedelta(seconds=0.5))
    waited = loop.time() - started
    assert 0.5 <= waited < 1.5
    assert runs > 3  # short pauses at first


async def test_it_gives_up_before_the_callers_deadline() -> None:
    runs = 0

    async def away() -> Any:
        nonlocal runs
        runs += 1
        raise REFUSED

    with pytest.raises(errors.Unavailable):
        await retrying(away, patience=timedelta(seconds=30), time_left=lambda: 0.2)
    assert runs == 1


async def test_no_patience_runs_once_and_still_answers_unavailable() -> None:
    runs = 0

    async def away() -> Any:
        nonlocal runs
        runs += 1
        raise _wrapped(REFUSED)

    with pytest.raises(errors.Unavailable):
        await retrying(away, patience=timedelta(0))
    assert runs == 1
