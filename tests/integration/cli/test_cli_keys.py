"""`kairos keys ...` against a fresh SQLite database, checked against an api on that database.

In this process; test_cli_script.py runs `keys create` as a real process.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from integration.cli.conftest import Ran, run_in_process

from support.api import api_settings, running_api


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'kairos.db'}"


async def keys(database_url: str, *args: str) -> Ran:
    return await run_in_process(*args, env={"KAIROS_DATABASE_URL": database_url})


async def test_a_created_key_works_until_it_is_revoked(database_url: str) -> None:
    created = await keys(database_url, "keys", "create", "--tenant", "acme", "--label", "ci")

    assert created.code == 0, str(created)
    key = created.stdout.strip()
    assert created.stdout == key + "\n"  # the key alone, so that scripts can capture it
    assert key.startswith("kairos_")
    assert "shown only once" in created.stderr
    assert key not in created.stderr

    async with running_api(api_settings(database_url)) as api:
        with_key = ("--target", api.target, "--api-key", key)
        assert (await run_in_process(*with_key, "accounts", "list")).code == 0

        revoked = await keys(database_url, "keys", "revoke", key)
        assert revoked.code == 0, str(revoked)
        api.service.app.keys.forget()  # revoked by another process: drop the short cache
        refused = await run_in_process(*with_key, "accounts", "list")
        assert refused.code == 3, str(refused)

    listed = await keys(database_url, "--json", "keys", "list")
    table = await keys(database_url, "keys", "list", "--tenant", "acme")

    assert listed.code == 0, str(listed)
    [row] = listed.json()
    assert (row["tenant"], row["prefix"], row["label"]) == ("acme", key[:12], "ci")
    assert row["revoked_at"] is not None
    assert re.fullmatch(rf"revoked key {row['id']} \(\S+\.\.\.\) of tenant acme\n", revoked.stdout)
    assert row["id"] in table.stdout
    assert "acme" in table.stdout
    assert key not in listed.stdout + table.stdout


async def test_keys_mistakes(database_url: str) -> None:
    unknown = await keys(database_url, "keys", "revoke", str(uuid.uuid4()))
    bad_tenant = await keys(database_url, "--json", "keys", "create", "--tenant", "no spaces/x")

    assert unknown.code == 4, str(unknown)
    assert unknown.stderr == "kairos: error: no such API key\n"
    assert bad_tenant.code == 2, str(bad_tenant)
    assert "tenant: must be 1-64 letters" in bad_tenant.stderr
    assert unknown.stdout == bad_tenant.stdout == ""


@pytest.mark.parametrize(
    "args", [("keys", "create", "--tenant", "acme"), ("keys", "list"), ("keys", "revoke", "k")]
)
async def test_keys_need_a_database_url(args: tuple[str, ...]) -> None:
    ran = await run_in_process(*args)

    assert ran.code == 2
    assert "set KAIROS_DATABASE_URL" in ran.stderr
    assert ran.stdout == ""
