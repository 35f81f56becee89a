"""The api's autocommit read connections on PostgreSQL: reused between reads, replaced when the
server dropped them (the read still answers), not given back after a failed statement; those of
reads that plan once plan generically, and only those reads get them."""

from __future__ import annotations

import psycopg
import pytest

from kairos_api.adapters.reads import ReadConnections
from support.postgres import TestDatabase

BACKEND = "SELECT pg_backend_pid()"


async def test_a_dropped_connection_is_replaced_and_the_read_answers(
    test_database: TestDatabase,
) -> None:
    reads = ReadConnections.of(test_database.url)
    try:
        ((first,),) = await reads.fetchall(BACKEND, {})
        assert await reads.fetchall(BACKEND, {}) == [(first,)]  # the same connection again
        async with await psycopg.AsyncConnection.connect(test_database.url) as admin:
            await admin.execute("SELECT pg_terminate_backend(%s)", (first,))

        ((second,),) = await reads.fetchall(BACKEND, {})

        assert second != first
        with pytest.raises(psycopg.errors.DivisionByZero):
            await reads.fetchall("SELECT 1 / %(zero)s", {"zero": 0})
        ((third,),) = await reads.fetchall(BACKEND, {})
        assert third != second  # the connection of the failed statement was closed
    finally:
        await reads.close()


PLAN_MODE = "SELECT current_setting('plan_cache_mode')"


async def test_reads_that_plan_once_get_connections_of_their_own(
    test_database: TestDatabase,
) -> None:
    reads = ReadConnections.of(test_database.url)
    try:
        assert await reads.fetchall(PLAN_MODE, {}, plan_once=True) == [("force_generic_plan",)]
        assert await reads.fetchall(PLAN_MODE, {}) == [("auto",)]
        # Each kind again, each on the connection it had: neither took the other's.
        ((once,),) = await reads.fetchall(BACKEND, {}, plan_once=True)
        ((planned,),) = await reads.fetchall(BACKEND, {})
        assert once != planned
        assert await reads.fetchall(PLAN_MODE, {}, plan_once=True) == [("force_generic_plan",)]
        assert await reads.fetchall(PLAN_MODE, {}) == [("auto",)]
    finally:
        await reads.close()
