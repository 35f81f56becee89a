"""The rig's throwaway PostgreSQL databases: fresh per session, gone afterwards."""

from __future__ import annotations

import psycopg

from support.postgres import TestDatabase, admin_url


def database_exists(name: str) -> bool:
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        return row is not None


def test_session_database_is_fresh_and_reachable(test_database: TestDatabase) -> None:
    with psycopg.connect(test_database.url) as conn:
        name = conn.execute("SELECT current_database()").fetchone()
        assert name == (test_database.name,)
    assert test_database.name.startswith("kairos_test_")


def test_a_database_is_dropped_even_with_open_connections() -> None:
    database = TestDatabase()
    database.create()
    lingering = psycopg.connect(database.url)
    try:
        assert database_exists(database.name)
        database.drop()
        assert not database_exists(database.name)
    finally:
        lingering.close()
