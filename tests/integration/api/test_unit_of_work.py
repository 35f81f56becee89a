"""The unit of work's psycopg connection takes part in its transaction; SQLite has none."""

from __future__ import annotations

import pytest
from integration.api.test_dispatch_service import connect, post_due

from support.api import RunningApi


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
