"""The unit of work's psycopg connection takes part in its transaction; SQLite has none."""

from __future__ import annotations

import pytest
from integration.api.test_dispatch_service import connect, post_due
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from kairos_api.bootstrap import bootstrap
from kairos_api.service_layer.unit_of_work import UnitOfWork, database_lost
from support.api import RunningApi, api_settings
from support.postgres import TestDatabase


async def tags_named(api: RunningApi, tenant: str) -> list[str]:
    async with api.service.app.uow() as uow:
        connection = await uow.psycopg()
        cursor = await connection.execute(
            "SELECT tag FROM post_tags WHERE tenant_id = %s ORDER BY tag", (tenant,)
        )
        return [row[0] for row in await cursor.fetchall()]


async def test_statements_on_the_psycopg_connection_commit_and_roll_back_with_the_unit(
    api: RunningApi,
) -> None:
    async with api.service.app.uow() as uow:
        if not uow.on_postgresql:
            with pytest.raises(RuntimeError, match="PostgreSQL only"):
                await uow.psycopg()
            return
    async with api.client() as client:
        post = await post_due(client, await connect(client), "a post to tag", offset=3600)
        tenant = client.tenant
    insert = "INSERT INTO post_tags (tenant_id, post_id, tag) VALUES (%s, %s, %s)"
    async with api.service.app.uow() as uow:
        connection = await uow.psycopg()
        await connection.execute(insert, (tenant, post.id, "rolled back"))
        # Leaving without commit rolls back what the psycopg connection wrote too.
    async with api.service.app.uow() as uow:
        connection = await uow.psycopg()
        await connection.execute(insert, (tenant, post.id, "kept"))
        await uow.commit()
    assert await tags_named(api, tenant) == ["kept"]


async def test_a_connection_whose_server_takes_no_writes_is_not_pooled_again(
    test_database: TestDatabase,
) -> None:
    """A demoted primary (or a standby reached by mistake) still answers the pool's ping: a
    connection that got 25006 read_only_sql_transaction is dropped, not handed out again, so
    the next run of the call connects anew (and finds the promoted server)."""
    app = bootstrap(api_settings(test_database.url))
    try:
        async with app.uow() as uow:
            # This connection now opens every transaction read-only, as on a demoted server.
            await uow.session.execute(text("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"))
            read_only_pid = await _backend_pid(uow)
            await uow.commit()

        async def write() -> None:
            async with app.uow() as uow:
                assert await _backend_pid(uow) == read_only_pid  # the pool hands it out again
                await uow.session.execute(text("UPDATE api_keys SET label = label WHERE false"))

        with pytest.raises(DBAPIError) as refused:
            await write()
        assert database_lost(refused.value)
        async with app.uow() as uow:
            assert await _backend_pid(uow) != read_only_pid
            read_only = await uow.session.execute(text("SHOW transaction_read_only"))
            assert read_only.scalar_one() == "off"
    finally:
        await app.close()


async def _backend_pid(uow: UnitOfWork) -> int:
    return int((await uow.session.execute(text("SELECT pg_backend_pid()"))).scalar_one())
