"""Alembic migrations build exactly the schema the models describe, on PostgreSQL and SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from kairos_api.adapters.database import migrate, sync_url
from kairos_api.adapters.orm import Base
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


def test_claiming_uses_the_partial_index_on_postgresql(test_database: TestDatabase) -> None:
    """The due-target query reads the partial index, not the whole table."""
    migrate(test_database.url)
    engine = create_engine(sync_url(test_database.url))
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SET enable_seqscan = off")
            plan = "\n".join(
                row[0]
                for row in connection.exec_driver_sql(
                    "EXPLAIN SELECT id FROM targets WHERE status IN ('pending', 'retry_wait') "
                    "AND next_attempt_at <= now() ORDER BY next_attempt_at LIMIT 500"
                )
            )
    finally:
        engine.dispose()
    assert "ix_targets_claimable" in plan
