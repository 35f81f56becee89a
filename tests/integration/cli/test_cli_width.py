"""Tables in a narrow terminal: every id whole on one line, every column still showing its
content, no line wider than the terminal. $COLUMNS sets the width, as a terminal would."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from integration.cli.conftest import ZONE, Kairos, Ran, run_in_process

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


async def at_width(kairos: Kairos, columns: int, *args: str) -> Ran:
    ran = await run_in_process(*kairos.options(kairos.key), *args, env={"COLUMNS": str(columns)})
    assert ran.code == 0, str(ran)
    return ran


def fits(ran: Ran, columns: int) -> str:
    """The output, once checked to be no wider than the terminal."""
    too_wide = [line for line in ran.stdout.splitlines() if len(line.rstrip()) > columns]
    assert not too_wide, str(ran)
    return ran.stdout


def shows_whole(out: str, *ids: str) -> None:
    """Each id is on one line, whole (not cut, not wrapped)."""
    for ident in ids:
        assert ident in out, f"{ident} is not shown whole:\n{out}"


@pytest.fixture
async def account(kairos: Kairos) -> str:
    return await kairos.connect_sandbox("@narrow")


@pytest.fixture
async def posts(kairos: Kairos, account: str) -> list[str]:
    tomorrow = (datetime.now(UTC).astimezone(ZoneInfo(ZONE)) + timedelta(days=1)).date()
    return [
        await kairos.create_post(
            account, "--at", f"{tomorrow} 09:00", "--tag", "launch", content="Aurora rises"
        ),
        await kairos.create_post(account, "--at", "in 2h", "--tag", "q4", content="Boreal winds"),
    ]


async def test_posts_list_at_80_columns(kairos: Kairos, account: str, posts: list[str]) -> None:
    out = fits(await at_width(kairos, 80, "posts", "list"), 80)

    shows_whole(out, *posts)
    for header in ("ID", "STATUS", "SCHEDULED", "PLATFORMS", "CONTENT", "TAGS"):
        assert header in out
    for shown in ("sandbox", "Aurora", "Boreal", "launch", "q4", "scheduled"):
        assert shown in out, out


async def test_watch_at_80_columns(kairos: Kairos, account: str, posts: list[str]) -> None:
    failed = await kairos.create_post(account, "--at", "in 1h", content="Cirrus gone")
    await kairos.settle_as_failed(failed)

    out = fits(await at_width(kairos, 80, "watch", "--once"), 80)

    shows_whole(out, *posts, failed)
    for shown in ("PLATFORMS", "sandbox", "Aurora", "Boreal", "launch", "q4", "Cirrus"):
        assert shown in out, out
    assert "refused" in out  # the failed target's error


async def test_calendar_at_80_columns(kairos: Kairos, account: str, posts: list[str]) -> None:
    out = fits(await at_width(kairos, 80, "calendar", "--days", "2"), 80)

    shows_whole(out, posts[0], account)
    for shown in ("sandbox", "09:00:00", "Aurora", "scheduled"):
        assert shown in out, out


@pytest.mark.parametrize("columns", [80, 120])
async def test_accounts_list_at_80_and_120_columns(kairos: Kairos, columns: int) -> None:
    x_account = (
        await kairos.ok(
            "accounts", "connect", "x", "--handle", "@kairos_width_test", "--access-token", "t"
        )
    ).stdout.strip()
    sandbox = await kairos.connect_sandbox("@sandbox-w")

    out = fits(await at_width(kairos, columns, "accounts", "list"), columns)

    shows_whole(out, x_account, sandbox)
    for shown in ("HANDLE", "@kairos_width_test", "@sandbox-w", "x", "sandbox", "active"):
        assert shown in out, out


async def test_posts_show_at_80_columns(kairos: Kairos, account: str, posts: list[str]) -> None:
    target = await kairos.settle_as_failed(posts[0])

    out = fits(await at_width(kairos, 80, "posts", "show", posts[0]), 80)

    shows_whole(out, posts[0], target, account)
    for shown in ("sandbox", "failed", "refused", "bad_content", "503", "420 ms"):
        assert shown in out, out


async def test_keys_list_at_80_columns_in_the_given_zone(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'kairos.db'}"
    env = {"KAIROS_DATABASE_URL": database_url}
    for label in ("runner", "laptop"):
        created = await run_in_process(
            "keys", "create", "--tenant", "acme", "--label", label, env=env
        )
        assert created.code == 0, str(created)
    listed = await run_in_process("--json", "keys", "list", env=env)
    rows = listed.json()

    tokyo = fits(
        await run_in_process("--tz", "Asia/Tokyo", "keys", "list", env={**env, "COLUMNS": "80"}),
        80,
    )
    berlin = await run_in_process("--tz", ZONE, "keys", "list", env=env)

    shows_whole(tokyo, *(row["id"] for row in rows))
    for shown in ("acme", "runner", "laptop", rows[0]["prefix"]):
        assert shown in tokyo, tokyo
    created_at = datetime.fromisoformat(rows[0]["created_at"])
    created_at = created_at if created_at.tzinfo else created_at.replace(tzinfo=UTC)
    assert f"{created_at.astimezone(ZoneInfo('Asia/Tokyo')):%H:%M:%S}" in tokyo
    assert "JST" in tokyo
    assert f"{created_at.astimezone(ZoneInfo(ZONE)):%a %d %b %H:%M:%S %Z}" in berlin.stdout
    assert rows[0]["created_at"] not in tokyo  # not the raw UTC text any more
