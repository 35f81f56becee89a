"""Alembic migrations build exactly the schema the models describe, on PostgreSQL and SQLite."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from kairos.posts.v1 import posts_pb2, posts_pb2_grpc
from kairos_api.adapters.database import migrate, sync_url
from kairos_api.adapters.orm import Base
from support.api import api_settings, running_api
from support.nats_server import NatsServer
from support.postgres import TestDatabase


@pytest.fixture(params=["postgresql", "sqlite"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'nested' / 'kairos.db'}"
        return
    database = TestDatabase()
    database.create()
    yield database.url
    database.drop()


def test_migrations_match_the_models_and_can_run_twice(fresh_url: str) -> None:
    migrate(fresh_url)
    migrate(fresh_url)  # already at head: nothing to do, no error
    engine = create_engine(sync_url(fresh_url))
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
            tables = set(inspect(connection).get_table_names())
            claimable = {ix["name"] for ix in inspect(connection).get_indexes("targets")}
    finally:
        engine.dispose()
    assert differences == []
    assert {"posts", "targets", "attempts", "accounts", "api_keys", "outbox"} <= tables
    assert "ix_targets_claimable" in claimable


async def test_with_migrations_disabled_the_api_creates_no_table(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    """KAIROS_MIGRATE_ON_START=false leaves the schema to `python -m kairos_api migrate`: the api
    starts on an empty SQLite file without creating a table, and calls fail until it is migrated
    rather than half-working on a schema someone else owns."""
    path = tmp_path / "kairos.db"
    settings = api_settings(
        f"sqlite:///{path}", KAIROS_MIGRATE_ON_START="false", KAIROS_NATS_URL=nats_server.url
    )
    assert not settings.migrate_on_start

    async with running_api(settings) as api, grpc.aio.insecure_channel(api.target) as channel:
        stub = posts_pb2_grpc.PostsServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.ListPosts(
                posts_pb2.ListPostsRequest(), metadata=(("authorization", "Bearer kairos_x"),)
            )
        assert await asyncio.to_thread(table_names, path) == []

    await asyncio.to_thread(migrate, f"sqlite:///{path}")
    assert "api_keys" in await asyncio.to_thread(table_names, path)


def table_names(path: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(path)) as connection:
        return [name for (name,) in connection.execute("SELECT name FROM sqlite_master")]
