"""`python -m kairos_api` admin commands against a fresh SQLite file.

The main paths run as real processes, and the keys they print are checked over gRPC against an
in-process api on the same database. Each process takes a couple of seconds to import SQLAlchemy
and Alembic, so the finer cases call `cli.main` in this process instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import sqlite3
import sys
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from psycopg.rows import dict_row

from kairos.posts.v1 import posts_pb2, posts_pb2_grpc
from kairos_api import cli
from kairos_api.adapters.orm import Account, Webhook
from kairos_api.bootstrap import bootstrap
from kairos_api.service_layer import accounts, webhooks
from support.api import TEST_SECRET, RunningApi, api_settings, running_api
from support.postgres import TestDatabase

NEW_SECRET = "cli-rotated-secret-with-more-than-32-characters"
LOST_SECRET = "a-key-the-operator-no-longer-has-32-characters"


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'kairos.db'}"


def environment(database_url: str, **environ: str) -> dict[str, str]:
    """This process's environment with only the given KAIROS_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAIROS_")}
    env.update({"KAIROS_DATABASE_URL": database_url, "KAIROS_SECRET_KEY": TEST_SECRET, **environ})
    return env


async def kairos_api(database_url: str, *args: str, **environ: str) -> Result:
    """Run `python -m kairos_api ARGS` as a process."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kairos_api",
        *args,
        env=environment(database_url, **environ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return Result(process.returncode, stdout.decode(), stderr.decode())


def in_process(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    database_url: str,
    *args: str,
    **environ: str,
) -> Result:
    """Run `cli.main(ARGS)` here, with the same environment a process would get."""
    for name in list(os.environ):
        if name.startswith("KAIROS_"):
            monkeypatch.delenv(name)
    for name, value in environment(database_url, **environ).items():
        if name.startswith("KAIROS_"):
            monkeypatch.setenv(name, value)
    capsys.readouterr()
    code = cli.main(args)
    out, err = capsys.readouterr()
    return Result(code, out, err)


async def list_accounts(api: RunningApi, key: str) -> posts_pb2.ListAccountsResponse:
    async with grpc.aio.insecure_channel(api.target) as channel:
        stub = posts_pb2_grpc.AccountsServiceStub(channel)
        return await stub.ListAccounts(
            posts_pb2.ListAccountsRequest(), metadata=(("authorization", f"Bearer {key}"),)
        )


def key_rows(listing: str) -> dict[str, list[str]]:
    """`keys list` output by key id: [tenant, prefix, created, revoked, label]."""
    header, *rows = listing.splitlines()
    assert header.split("\t") == ["ID", "TENANT", "PREFIX", "CREATED", "REVOKED", "LABEL"]
    return {cells[0]: cells[1:] for cells in (row.split("\t") for row in rows)}


# --- as real processes ----------------------------------------------------------------------


async def test_a_created_key_works_until_it_is_revoked(database_url: str) -> None:
    created = await kairos_api(database_url, "keys", "create", "--tenant", "acme", "--label", "ci")

    assert created.code == 0, created.stderr
    key = created.stdout.strip()
    assert created.stdout == key + "\n"  # the key alone, so that scripts can capture it
    assert key.startswith("kairos_")
    assert "shown only once" in created.stderr
    assert key not in created.stderr

    async with running_api(api_settings(database_url)) as api:
        assert list((await list_accounts(api, key)).accounts) == []

        revoked = await kairos_api(database_url, "keys", "revoke", key)
        assert revoked.code == 0, revoked.stderr
        # The revocation was made by another process: drop the resolver's short cache.
        api.service.app.keys.forget()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await list_accounts(api, key)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED

    listed = await kairos_api(database_url, "keys", "list")
    assert listed.code == 0, listed.stderr
    [(key_id, [tenant, prefix, _, revoked_at, label])] = key_rows(listed.stdout).items()
    assert key_id in revoked.stdout
    assert (tenant, prefix, label) == ("acme", key[:12], "ci")
    assert revoked_at != "-"
    assert key not in listed.stdout


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_a_created_key_is_stored_only_as_its_sha256(
    backend: str, database_url: str, test_database: TestDatabase
) -> None:
    url = database_url if backend == "sqlite" else test_database.url
    tenant = f"hashed-{uuid.uuid4().hex[:8]}"

    created = await kairos_api(url, "keys", "create", "--tenant", tenant)

    assert created.code == 0, created.stderr
    key = created.stdout.strip()
    rows = await asyncio.to_thread(api_key_rows, url, tenant)
    assert len(rows) == 1
    [row] = rows
    assert bytes(row["key_hash"]) == hashlib.sha256(key.encode()).digest()
    assert row["prefix"] == key[:12]  # what `keys list` shows: 5 of the 43 random characters
    for value in row.values():
        text = value.hex() if isinstance(value, bytes | memoryview) else str(value)
        assert key[12:] not in text
    if backend == "sqlite":
        raw = await asyncio.to_thread(Path(url.removeprefix("sqlite:///")).read_bytes)
        assert key[12:].encode() not in raw


def api_key_rows(url: str, tenant: str) -> list[dict[str, Any]]:
    """Every column of the tenant's api_keys rows, read with the database's own driver."""
    query = "SELECT * FROM api_keys WHERE tenant_id = "
    if url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as connection:
            connection.row_factory = sqlite3.Row
            return [dict(row) for row in connection.execute(query + "?", (tenant,))]
    with psycopg.connect(url, row_factory=dict_row) as connection:
        return list(connection.execute(query + "%s", (tenant,)))


async def test_a_bad_tenant_name_is_refused_with_the_rule(database_url: str) -> None:
    result = await kairos_api(database_url, "keys", "create", "--tenant", "no spaces/allowed")

    assert result.code == 2
    assert result.stdout == ""
    assert "tenant: must be 1-64 letters" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


async def test_migrate_brings_the_schema_up(database_url: str, tmp_path: Path) -> None:
    result = await kairos_api(database_url, "migrate")

    assert result.code == 0, result.stderr
    assert "is at revision" in result.stdout
    assert (tmp_path / "kairos.db").stat().st_size > 0


async def test_reencrypt_moves_credentials_under_the_first_key(database_url: str) -> None:
    settings = api_settings(database_url)
    async with running_api(settings) as api:
        account = await accounts.connect_account(
            api.service.app,
            "acme",
            accounts.ConnectAccount(
                platform="x",
                handle="@acme",
                credentials=accounts.Credentials(access_token="cli-rotation-token"),
            ),
        )

    result = await kairos_api(
        database_url, "reencrypt", KAIROS_SECRET_KEY=f"{NEW_SECRET},{TEST_SECRET}"
    )

    assert result.code == 0, result.stderr
    assert result.stdout.startswith("re-encrypted 1 credentials")
    new_only = bootstrap(replace(settings, common=replace(settings.common, secret_key=NEW_SECRET)))
    try:
        async with new_only.uow() as uow:
            row = await uow.session.get(Account, account.id)
        assert row is not None
        assert accounts.decrypt_credentials(new_only, row)["access_token"] == "cli-rotation-token"
    finally:
        await new_only.close()


async def test_reencrypt_moves_webhook_secrets_even_when_a_credential_cannot_be(
    database_url: str,
) -> None:
    # The account's credentials are under a key the command is not given; the webhook's secret
    # is under the old key it has. The secret moves all the same, and the account is named.
    settings = api_settings(database_url)
    lost = replace(settings, common=replace(settings.common, secret_key=LOST_SECRET))
    async with running_api(lost) as api:
        account = await accounts.connect_account(
            api.service.app,
            "acme",
            accounts.ConnectAccount(
                platform="x",
                handle="@acme",
                credentials=accounts.Credentials(access_token="under-a-lost-key"),
            ),
        )
    async with running_api(settings) as api:
        hook, secret = await webhooks.create_webhook(
            api.service.app, "acme", "https://hooks.example.com/kairos", [], "rotation"
        )

    result = await kairos_api(
        database_url, "reencrypt", KAIROS_SECRET_KEY=f"{NEW_SECRET},{TEST_SECRET}"
    )

    assert result.code == 1, result.stderr
    assert f"account {account.id}: " in result.stderr
    assert "re-encrypted 0 credentials and 1 webhook secrets; 1 could not be" in result.stderr
    assert "under-a-lost-key" not in result.stderr
    assert "Traceback" not in result.stderr
    new_only = bootstrap(replace(settings, common=replace(settings.common, secret_key=NEW_SECRET)))
    try:
        async with new_only.uow() as uow:
            row = await uow.session.get(Webhook, hook.id)
        assert row is not None
        assert new_only.cipher.decrypt(row.secret, associated=f"webhook:{hook.id}") == (
            secret.encode()
        )
    finally:
        await new_only.close()


@pytest.mark.parametrize(
    ("args", "environ", "named"),
    [
        (("keys", "list"), {"KAIROS_MIGRATE_ON_START": "maybe"}, "KAIROS_MIGRATE_ON_START"),
        (("reencrypt",), {"KAIROS_SECRET_KEY": "too-short"}, "KAIROS_SECRET_KEY"),
    ],
    ids=["bad flag", "short secret"],
)
async def test_bad_settings_exit_2_naming_the_problem(
    database_url: str, args: tuple[str, ...], environ: dict[str, str], named: str
) -> None:
    result = await kairos_api(database_url, *args, **environ)

    assert result.code == 2
    assert named in result.stderr
    assert "too-short" not in result.stderr  # a secret is never echoed, even a bad one
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("args", [("keys",), ("keys", "create"), ("frobnicate",)])
async def test_bad_usage_exits_2(database_url: str, args: tuple[str, ...]) -> None:
    result = await kairos_api(database_url, *args)

    assert result.code == 2
    assert "usage:" in result.stderr


# --- in this process --------------------------------------------------------------------------


def test_keys_are_revoked_by_id_and_listed_per_tenant(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], database_url: str
) -> None:
    def run(*args: str) -> Result:
        return in_process(monkeypatch, capsys, database_url, *args)

    acme_key = run("keys", "create", "--tenant", "acme").stdout.strip()
    assert run("keys", "create", "--tenant", "globex", "--label", "two\twords").code == 0

    [(acme_id, acme_row)] = key_rows(run("keys", "list", "--tenant", "acme").stdout).items()
    assert acme_row[:2] == ["acme", acme_key[:12]]
    revoked = run("keys", "revoke", acme_id)
    again = run("keys", "revoke", acme_id)  # revoking twice is harmless

    assert (revoked.code, again.code) == (0, 0)
    rows = key_rows(run("keys", "list").stdout)
    assert {cells[0]: (cells[3] != "-", cells[4]) for cells in rows.values()} == {
        "acme": (True, ""),
        "globex": (False, "two words"),
    }


def test_revoking_an_unknown_key_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], database_url: str
) -> None:
    by_id = in_process(monkeypatch, capsys, database_url, "keys", "revoke", str(uuid.uuid4()))
    by_key = in_process(monkeypatch, capsys, database_url, "keys", "revoke", "kairos_nope")

    for result in (by_id, by_key):
        assert result.code == 1
        assert result.stderr == "python -m kairos_api: error: no such API key\n"
        assert result.stdout == ""


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://db/kairos", "KAIROS_DATABASE_URL: unsupported database 'mysql'"),
        ("::not a url::", "KAIROS_DATABASE_URL is not a database URL"),
    ],
)
def test_an_unusable_database_url_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str, message: str
) -> None:
    result = in_process(monkeypatch, capsys, url, "keys", "list")

    assert result.code == 2
    assert message in result.stderr
    assert result.stdout == ""
