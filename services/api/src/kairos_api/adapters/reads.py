"""Connections for the reads clients make most (GetPost, ListPosts, GetStats) on PostgreSQL.

Each such read is one statement, which sees one snapshot on its own; so these connections stay
in autocommit, and a read is one round trip: no BEGIN and ROLLBACK around it, and no ping on
every checkout as the engine's pool does (a few hundred microseconds of the api's CPU per call,
more than the read itself). A connection the server dropped (a restart) is replaced, and the read
tried once more on the new one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg.rows import TupleRow

from kairos_api.adapters import database


class ReadConnections:
    """Up to `size` psycopg connections in autocommit, opened when first needed."""

    def __init__(self, conninfo: str, size: int = 8) -> None:
        self._conninfo = conninfo
        self._size = size
        # Idle connections by whether they plan once (`fetchall`'s plan_once).
        self._idle: dict[bool, list[psycopg.AsyncConnection[TupleRow]]] = {False: [], True: []}
        self._slots: asyncio.Semaphore | None = None

    async def fetchall(
        self, query: str, params: Mapping[str, Any], *, plan_once: bool = False
    ) -> list[TupleRow]:
        """The rows of one statement.

        With `plan_once`, PostgreSQL plans the statement once for every value of its parameters
        (its generic plan, `plan_cache_mode`) rather than again for each call's values. For a
        statement whose best plan does not depend on the values that saves the planning, which
        can cost more than the statement: a range near the end of an index (posts due from now
        on) has the planner read that index for its actual bounds, every call (GetStats with
        1,000,000 posts stored: three times the statement's own cost).
        """
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._size)
        idle = self._idle[plan_once]
        async with self._slots:
            reused = bool(idle)
            connection = idle.pop() if reused else await self._connect(plan_once)
            try:
                rows = await (await connection.execute(query, params)).fetchall()
            except psycopg.OperationalError:
                broken = connection.broken
                await connection.close()
                if not (reused and broken):
                    raise
                # An idle connection the server dropped meanwhile: once more on a new one.
                connection = await self._connect(plan_once)
                try:
                    rows = await (await connection.execute(query, params)).fetchall()
                except BaseException:
                    await connection.close()
                    raise
            except BaseException:
                # Cancelled mid-statement, or a bad statement: the connection's state is
                # unknown, so it is not given back.
                await connection.close()
                raise
            idle.append(connection)
            return rows

    @classmethod
    def of(cls, database_url: str) -> ReadConnections:
        """The connections of KAIROS_DATABASE_URL (a PostgreSQL URL, whichever its driver, with
        one server or several: `database.conninfo`)."""
        return cls(database.conninfo(database_url))

    async def _connect(self, plan_once: bool) -> psycopg.AsyncConnection[TupleRow]:
        connection = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        if plan_once:
            try:
                await connection.execute("SET plan_cache_mode = force_generic_plan")
            except BaseException:
                await connection.close()
                raise
        return connection

    async def close(self) -> None:
        for idle in self._idle.values():
            while idle:
                await idle.pop().close()
