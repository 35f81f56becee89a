"""A fresh PostgreSQL database per test session on the local server, dropped afterwards."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import psycopg
from psycopg import sql

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def admin_url() -> str:
    """The admin connection (KAIROS_TEST_DATABASE_URL), used only to create and drop databases."""
    return os.environ.get("KAIROS_TEST_DATABASE_URL", DEFAULT_ADMIN_URL)


class TestDatabase:
    """A database named `kairos_test_<random>` that exists until `drop()`."""

    __test__ = False  # not a test class

    def __init__(self) -> None:
        self.name = f"kairos_test_{secrets.token_hex(4)}"
        self.admin = admin_url()

    @property
    def url(self) -> str:
        """libpq URL of the new database."""
        base, _, _ = self.admin.rpartition("/")
        return f"{base}/{self.name}"

    @property
    def sqlalchemy_url(self) -> str:
        """The same, for SQLAlchemy with psycopg 3."""
        return self.url.replace("postgresql://", "postgresql+psycopg://", 1)

    def create(self) -> None:
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))

    def drop(self) -> None:
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name))
            )


@asynccontextmanager
async def fresh_database(kind: str, folder: Path) -> AsyncIterator[str]:
    """The URL of a new, empty database of `kind` ("postgresql" or "sqlite"), gone afterwards:
    a PostgreSQL database dropped on exit, or a SQLite file in `folder`."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'kairos.db'}"
        return
    database = TestDatabase()
    database.create()
    try:
        yield database.url
    finally:
        database.drop()
