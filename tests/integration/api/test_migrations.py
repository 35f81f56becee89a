"""Alembic migrations build exactly the schema the models describe, on PostgreSQL and SQLite."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from kairos.posts.v1 import posts_pb2, posts_pb2_grpc
from kairos_api.adapters.database import migrate, schema_behind, sync_url
from kairos_api.adapters.orm import Base
from kairos_common.runner import CannotStart
from support.api import SERVICE_TOKEN, TEST_SECRET, api_settings, running_api
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


async def test_with_migrations_disabled_the_api_refuses_an_old_schema_and_creates_no_table(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    """KAIROS_MIGRATE_ON_START=false leaves the schema to `python -m kairos_api migrate`: on an
    empty SQLite file the api refuses to start, saying so, rather than half-working on a schema
    someone else owns; it creates no table; once migrated it serves."""
    path = tmp_path / "kairos.db"
    settings = api_settings(
        f"sqlite:///{path}", KAIROS_MIGRATE_ON_START="false", KAIROS_NATS_URL=nats_server.url
    )
    assert not settings.migrate_on_start

    with pytest.raises(CannotStart, match=r"schema is empty.*python -m kairos_api migrate"):
        async with running_api(settings):
            pass
    assert await asyncio.to_thread(table_names, path) == []

    await asyncio.to_thread(migrate, f"sqlite:///{path}")
    async with running_api(settings) as api, grpc.aio.insecure_channel(api.target) as channel:
        stub = posts_pb2_grpc.PostsServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ListPosts(
                posts_pb2.ListPostsRequest(), metadata=(("authorization", "Bearer kairos_x"),)
            )
        # The schema is there: an unknown key is refused as such, not as a broken database.
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_the_api_process_exits_2_naming_the_migrate_command(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "KAIROS_DATABASE_URL": f"sqlite:///{tmp_path / 'kairos.db'}",
        "KAIROS_MIGRATE_ON_START": "false",
        "KAIROS_API_ADDR": "127.0.0.1:0",
        "KAIROS_SECRET_KEY": TEST_SECRET,
        "KAIROS_SERVICE_TOKEN": SERVICE_TOKEN,
    }
    done = subprocess.run(
        [sys.executable, "-m", "kairos_api"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert "run `python -m kairos_api migrate` first" in done.stderr


def test_replicas_migrating_at_once_all_succeed_on_postgresql() -> None:
    """Several api replicas starting together each run the migrations, as processes: one does
    the work, the others wait for it and find the schema at head."""
    database = TestDatabase()
    database.create()
    try:
        env = {**os.environ, "KAIROS_DATABASE_URL": database.url, "KAIROS_SECRET_KEY": TEST_SECRET}
        command = [sys.executable, "-m", "kairos_api", "migrate"]
        replicas = [
            subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True) for _ in range(3)
        ]
        for replica in replicas:
            _, errors = replica.communicate(timeout=60)
            assert replica.returncode == 0, errors
        assert schema_behind(database.url) is None
    finally:
        database.drop()


def table_names(path: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(path)) as connection:
        return [name for (name,) in connection.execute("SELECT name FROM sqlite_master")]
