"""Database engines and migrations: PostgreSQL with psycopg 3 in production, SQLite embedded.

Users give ordinary URLs (`postgresql://...`, `sqlite:///kairos.db`); the async engine and the
migrations each get the driver they need.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy import event, pool
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.ext.asyncio import AsyncSession as AsyncSession

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def _normalise(url: str) -> URL:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgres":
        parsed = parsed.set(drivername="postgresql")
        backend = "postgresql"
    if backend not in ("postgresql", "sqlite"):
        raise ValueError(f"KAIROS_DATABASE_URL: unsupported database {backend!r}")
    return parsed


def async_url(url: str) -> URL:
    """The URL with the asyncio driver: psycopg for PostgreSQL, aiosqlite for SQLite."""
    parsed = _normalise(url)
    driver = (
        "postgresql+psycopg" if parsed.get_backend_name() == "postgresql" else "sqlite+aiosqlite"
    )
    return parsed.set(drivername=driver)


def sync_url(url: str) -> URL:
    """The URL with the blocking driver, for migrations and admin commands."""
    parsed = _normalise(url)
    driver = "postgresql+psycopg" if parsed.get_backend_name() == "postgresql" else "sqlite"
    return parsed.set(drivername=driver)


def is_sqlite(url: str) -> bool:
    return _normalise(url).get_backend_name() == "sqlite"


def create_engine(url: str) -> AsyncEngine:
    """The async engine the api serves from."""
    target = async_url(url)
    if target.get_backend_name() == "sqlite":
        engine = create_async_engine(target, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
            # Let SQLAlchemy, not the driver, decide when transactions begin (see below).
            dbapi_connection.isolation_level = None  # type: ignore[attr-defined]
            cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _begin_immediate(connection: Connection) -> None:
            # SQLite has no row locks: take the write lock when a transaction starts, so a
            # read-then-write (revision checks, claims) cannot interleave with another writer.
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_async_engine(target, pool_size=20, max_overflow=20, pool_pre_ping=True)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", sync_url(url).render_as_string(hide_password=False))
    return config


def migrate(url: str, revision: str = "head") -> None:
    """Bring the database schema up to `revision` (blocking; run before serving)."""
    if is_sqlite(url):
        path = _normalise(url).database
        if path and path != ":memory:":
            Path(path).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), revision)
    log.info("database migrated", extra={"revision": revision})


def schema_behind(url: str) -> str | None:
    """Why the database's schema is not the one this code needs (blocking), or None when it is
    at the newest migration."""
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    engine = create_sync_engine(sync_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
    if current == head:
        return None
    found = f"at migration {current}" if current else "empty"
    return f"the database schema is {found}; this api needs {head}"
