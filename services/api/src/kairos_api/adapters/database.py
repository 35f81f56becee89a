"""Database engines and migrations: PostgreSQL with psycopg 3 in production, SQLite embedded.

Users give ordinary URLs (`postgresql://...`, `sqlite:///kairos.db`); the async engine and the
migrations each get the driver they need. Migrating creates the database when it does not exist
yet (a PostgreSQL role with CREATEDB, or a SQLite file and its folder).

A PostgreSQL URL may name several servers, as SQLAlchemy's PostgreSQL dialects take them:
`postgresql://user@/kairos?host=db1:5432&host=db2:5432&target_session_attrs=read-write` (or
libpq's own `host=db1,db2&port=5432,5432`). psycopg tries them in order and, with
`target_session_attrs=read-write`, keeps the first that accepts writes: after a failover, new
connections find the promoted server. Every connection the api opens goes through that
translation (`connect_arguments`), the engine's, the migrations', the admin ones and the reads'.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from psycopg.conninfo import make_conninfo
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy import event, pool, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.ext.asyncio import AsyncSession as AsyncSession

from kairos_common.settings import CannotStart

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


def connect_arguments(url: str) -> dict[str, str]:
    """What psycopg is given for a PostgreSQL URL: the engine's own translation, so that the
    several `host` of a multi-host URL become libpq's `host=a,b port=x,y` here as there."""
    target = _normalise(url).set(drivername="postgresql+psycopg")
    _, arguments = target.get_dialect()().create_connect_args(target)
    arguments.setdefault("connect_timeout", CONNECT_TIMEOUT)
    return {name: str(value) for name, value in arguments.items()}


def conninfo(url: str) -> str:
    """The libpq connection string of a PostgreSQL URL, for connections opened with psycopg."""
    return make_conninfo(**connect_arguments(url))


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
    # A server that does not answer at all (a partition, a host gone) must not hold a call for
    # the kernel's TCP timeout, minutes past the call's retries; the URL may set its own.
    connect_args = {} if "connect_timeout" in target.query else {"connect_timeout": CONNECT_TIMEOUT}
    return create_async_engine(
        target, pool_size=20, max_overflow=20, pool_pre_ping=True, connect_args=connect_args
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # The URL goes through ConfigParser's interpolation: its `%` (a multi-host URL's `host=a%3A1`,
    # an escaped character in a password) must be doubled to come out as written.
    rendered = sync_url(url).render_as_string(hide_password=False)
    config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return config


def migrate(url: str, revision: str = "head") -> None:
    """Bring the database schema up to `revision` (blocking; run before serving), creating the
    database first if it does not exist."""
    ensure_database(url, create=True)
    command.upgrade(alembic_config(url), revision)
    log.info("database migrated", extra={"revision": revision})


#: Seconds to wait for PostgreSQL to answer before saying it cannot be reached.
CONNECT_TIMEOUT = 10
#: SQLSTATEs of CREATE DATABASE that matter here.
_DUPLICATE_DATABASE = "42P04"
_INSUFFICIENT_PRIVILEGE = "42501"


def ensure_database(url: str, *, create: bool) -> None:
    """Check that the database can be opened (blocking); with `create`, make it if it is missing.

    Raises CannotStart naming KAIROS_DATABASE_URL, its password hidden, with what to do.
    """
    target = sync_url(url)
    shown = f"KAIROS_DATABASE_URL={make_url(url).render_as_string(hide_password=True)}"
    if target.get_backend_name() == "sqlite":
        path = target.database
        if path and path != ":memory:":
            folder = Path(path).expanduser().resolve().parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise CannotStart(
                    f"cannot make the folder {folder} for the SQLite database {shown}: "
                    f"{error.strerror}"
                ) from None
        return
    try:
        _connect(target)
        return
    except OperationalError as error:
        reason = _first_line(error)
    name = target.database
    if not name or _exists(target, name) is not False:
        raise CannotStart(f"cannot open the database {shown}: {reason}")
    if not create:
        raise CannotStart(
            f"the database {name!r} ({shown}) does not exist: `python -m kairos_api migrate` "
            "creates it"
        )
    _create(target, name, shown)


def _connect(target: URL) -> None:
    engine = create_sync_engine(
        target,
        poolclass=pool.NullPool,
        connect_args={"connect_timeout": CONNECT_TIMEOUT},
    )
    try:
        with engine.connect():
            pass
    finally:
        engine.dispose()


def _first_line(error: DBAPIError) -> str:
    return (str(error.orig).strip().splitlines() or [type(error.orig).__name__])[0]


def _exists(target: URL, name: str) -> bool | None:
    """Whether the server has a database `name`, asked in its maintenance database; None when
    that cannot be opened either (the server is away, the role may not log in)."""
    for maintenance in ("postgres", "template1"):
        engine = create_sync_engine(
            target.set(database=maintenance),
            poolclass=pool.NullPool,
            connect_args={"connect_timeout": CONNECT_TIMEOUT},
        )
        try:
            with engine.connect() as connection:
                found = connection.execute(
                    text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
                ).first()
                return found is not None
        except OperationalError:
            continue
        finally:
            engine.dispose()
    return None


def _create(target: URL, name: str, shown: str) -> None:
    engine = create_sync_engine(
        target.set(database="postgres"),
        poolclass=pool.NullPool,
        isolation_level="AUTOCOMMIT",  # CREATE DATABASE cannot run inside a transaction
        connect_args={"connect_timeout": CONNECT_TIMEOUT},
    )
    try:
        with engine.connect() as connection:
            quoted = connection.dialect.identifier_preparer.quote(name)
            connection.execute(text(f"CREATE DATABASE {quoted}"))
        log.info("created the database", extra={"database": name})
    except DBAPIError as error:
        state = getattr(error.orig, "sqlstate", None)
        if state == _DUPLICATE_DATABASE:
            return  # another api replica created it a moment ago
        if state == _INSUFFICIENT_PRIVILEGE:
            raise CannotStart(
                f"the database {name!r} ({shown}) does not exist and the role "
                f"{target.username or '(default)'!r} may not create it: create it as its owner "
                f"(createdb {name}, or CREATE DATABASE {name}) or grant the role CREATEDB"
            ) from None
        raise CannotStart(
            f"cannot create the database {name!r} ({shown}): {_first_line(error)}"
        ) from None
    finally:
        engine.dispose()


def schema_behind(url: str) -> str | None:
    """Why the database's schema is not the one this code needs (blocking), or None when it is
    at the newest migration."""
    ensure_database(url, create=False)
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
