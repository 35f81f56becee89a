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
from sqlalchemy.engine import make_url


class ReadConnections:
    """Up to `size` psycopg connections in autocommit, opened when first needed."""

    def __init__(self, conninfo: str, size: int = 8) -> None:
        self._conninfo = conninfo
        self._size = size
        self._idle: list[psycopg.AsyncConnection[TupleRow]] = []
        self._slots: asyncio.Semaphore | None = None

    async def fetchall(self, query: str, params: Mapping[str, Any]) -> list[TupleRow]:
        """The rows of one statement."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._size)
        async with self._slots:
            reused = bool(self._idle)
            connection = self._idle.pop() if reused else await self._connect()
            try:
                rows = await (await connection.execute(query, params)).fetchall()
            except psycopg.OperationalError:
                broken = connection.broken
                await connection.close()
                if not (reused and broken):
                    raise
                # An idle connection the server dropped meanwhile: once more on a new one.
                connection = await self._connect()
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
            self._idle.append(connection)
            return rows

    @classmethod
    def of(cls, database_url: str) -> ReadConnections:
        """The connections of KAIROS_DATABASE_URL (a PostgreSQL URL, whichever its driver)."""
        url = make_url(database_url).set(drivername="postgresql")
        return cls(url.render_as_string(hide_password=False))

    async def _connect(self) -> psycopg.AsyncConnection[TupleRow]:
        return await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.close()
