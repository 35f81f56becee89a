"""`python -m kairos_api migrate`, and the api's migrate-on-start, create the PostgreSQL database
when it does not exist yet, against the real server: a new, random database name each time,
dropped afterwards."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from kairos_api.adapters.database import schema_behind
from kairos_common.settings import CannotStart
from support.api import api_settings, running_api
from support.nats_server import NatsServer
from support.postgres import TestDatabase


@pytest.fixture
def missing() -> Iterator[TestDatabase]:
    """A database name nobody has created; dropped at the end if something created it."""
    database = TestDatabase()  # not created
    yield database
    database.drop()


def exists(database: TestDatabase) -> bool:
    with psycopg.connect(database.admin, autocommit=True) as conn:
        found = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database.name,)
        ).fetchone()
    return found is not None


def migrate(url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAIROS_")}
    return subprocess.run(
        [sys.executable, "-m", "kairos_api", "migrate"],
        env={**env, "KAIROS_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_migrate_creates_a_missing_database_and_brings_it_to_head(missing: TestDatabase) -> None:
    assert not exists(missing)
    done = migrate(missing.url)
    assert done.returncode == 0, done.stderr
    assert f"/{missing.name} is at revision" in done.stdout
    assert exists(missing)
    assert schema_behind(missing.url) is None
    again = migrate(missing.url)  # there now: nothing to create, nothing to do
    assert again.returncode == 0, again.stderr


async def test_the_api_creates_its_missing_database_when_it_migrates_on_start(
    missing: TestDatabase, nats_server: NatsServer
) -> None:
    settings = api_settings(missing.url, KAIROS_NATS_URL=nats_server.url)
    async with running_api(settings) as api:
        _, key = await api.new_key()
        assert key
    assert exists(missing)


async def test_without_migrate_on_start_a_missing_database_is_named_with_the_command(
    missing: TestDatabase,
) -> None:
    settings = api_settings(missing.url, KAIROS_MIGRATE_ON_START="false")
    expected = rf"the database '{missing.name}' .* does not exist: `python -m kairos_api migrate`"
    with pytest.raises(CannotStart, match=expected):
        async with running_api(settings):
            pass
    assert not exists(missing)


@pytest.fixture
def role_without_createdb(missing: TestDatabase) -> Iterator[str]:
    role = f"kairos_test_role_{secrets.token_hex(4)}"
    with psycopg.connect(missing.admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOCREATEDB").format(sql.Identifier(role)))
    yield role
    with psycopg.connect(missing.admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_a_role_that_may_not_create_databases_is_told_how_to_create_it(
    missing: TestDatabase, role_without_createdb: str
) -> None:
    url = make_url(missing.url).set(username=role_without_createdb)
    done = migrate(url.render_as_string(hide_password=False))
    assert done.returncode == 1, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith(
        f"python -m kairos_api: error: the database '{missing.name}' (KAIROS_DATABASE_URL="
    ), line
    assert f"the role '{role_without_createdb}' may not create it" in line
    assert f"createdb {missing.name}" in line
    assert not exists(missing)
