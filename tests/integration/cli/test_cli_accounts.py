"""`kairos accounts ...`, and the mistakes every command shares (key, target, zone), against the
in-process api (PostgreSQL and SQLite)."""

from __future__ import annotations

import re
import uuid

import pytest
from integration.cli.conftest import Kairos, run_in_process
from sqlalchemy import update

from kairos_api.adapters.orm import Account
from kairos_api.service_layer.accounts import decrypt_credentials
from support.ports import free_port

UNKNOWN_ID = "0190a6d2-0000-7000-8000-000000000000"


async def test_connect_prints_the_id_and_the_account_can_be_read(kairos: Kairos) -> None:
    ran = await kairos.ok(
        "accounts",
        "connect",
        "SANDBOX",
        "--handle",
        "@sandbox-one",
        "--instance-url",
        "http://127.0.0.1:9",
    )
    account_id = ran.stdout.strip()

    shown = await kairos.ok("accounts", "show", account_id)
    listed = await kairos.ok("accounts", "list")
    as_json = (await kairos.ok("--json", "accounts", "list", "--platform", "sandbox")).json()

    assert ran.stdout == account_id + "\n"
    assert "@sandbox-one" in shown.stdout
    assert "active" in shown.stdout
    assert account_id in listed.stdout
    assert "sandbox" in listed.stdout
    assert [a["id"] for a in as_json["accounts"]] == [account_id]
    assert as_json["accounts"][0]["status"] == "active"


async def test_connect_with_every_credential(kairos: Kairos) -> None:
    ran = await kairos.ok(
        "--json",
        "accounts",
        "connect",
        "x",
        "--handle",
        "@kairos",
        "--access-token",
        "tok-3f9a",
        "--refresh-token",
        "ref-77c1",
        "--expires-at",
        "2030-01-15 10:00",
        "--page-id",
        "p",
        "--chat-id",
        "c",
        "--extra",
        "reply_settings=following",
        "--extra",
        "note=a=b",
    )

    account = ran.json()
    assert account["platform"] == "x"
    assert account["token_expires_at"] == "2030-01-15T09:00:00Z"  # read in Europe/Berlin
    assert "tok-3f9a" not in ran.stdout
    assert "ref-77c1" not in ran.stdout


async def test_a_token_can_come_from_stdin(kairos: Kairos) -> None:
    ran = await kairos(
        "accounts",
        "connect",
        "x",
        "--handle",
        "@piped",
        "--access-token",
        "-",
        input="secret-from-stdin\n",
    )

    assert ran.code == 0, str(ran)


async def test_connect_mistakes(kairos: Kairos) -> None:
    no_token = await kairos("accounts", "connect", "x", "--handle", "@x")
    no_page = await kairos(
        "accounts", "connect", "instagram", "--handle", "@i", "--access-token", "t"
    )
    unknown_platform = await kairos("accounts", "connect", "myspace", "--handle", "@m")
    bad_extra = await kairos(
        "accounts", "connect", "x", "--handle", "@x", "--access-token", "t", "--extra", "novalue"
    )
    bad_expiry = await kairos(
        "accounts", "connect", "x", "--handle", "@x", "--access-token", "t", "--expires-at", "soon"
    )

    assert no_token.code == 2
    assert "\n  credentials.access_token: is required for x" in no_token.stderr
    assert no_page.code == 2
    assert "\n  credentials.page_id: " in no_page.stderr
    assert unknown_platform.code == 2
    assert "myspace" in unknown_platform.stderr
    assert bad_extra.code == 2
    assert "--extra takes KEY=VALUE" in bad_extra.stderr
    assert bad_expiry.code == 2
    assert "--expires-at" in bad_expiry.stderr
    assert all(r.stdout == "" for r in (no_token, no_page, bad_extra, bad_expiry))


async def test_pause_resume_and_disconnect(kairos: Kairos, account_id: str) -> None:
    paused = await kairos.ok("accounts", "pause", account_id)
    listed = (await kairos.ok("--json", "accounts", "list", "--status", "paused")).json()
    resumed = await kairos.ok("--json", "accounts", "resume", account_id)
    gone = await kairos.ok("accounts", "disconnect", account_id)
    post = await kairos("posts", "create", "x", "--account", account_id)

    assert re.fullmatch(rf"account {account_id} \(@sandbox-\w+\) paused\n", paused.stdout)
    assert [a["id"] for a in listed["accounts"]] == [account_id]
    assert resumed.json()["status"] == "active"
    assert gone.stdout.endswith(" disconnected\n")
    assert post.code == 2
    assert "  targets[0].account_id: " in post.stderr


async def test_update_credentials_replaces_them_and_reactivates_the_account(
    kairos: Kairos,
) -> None:
    account_id = (
        await kairos.ok("accounts", "connect", "x", "--handle", "@renewed", "--access-token", "old")
    ).stdout.strip()
    async with kairos.api.service.app.uow() as uow:  # as a refresh refused for good leaves it
        await uow.session.execute(
            update(Account)
            .where(Account.id == uuid.UUID(account_id))
            .values(status="needs_reauth", status_reason="token revoked")
        )
        await uow.commit()

    ran = await kairos(
        "accounts", "update-credentials", account_id,
        "--access-token", "-", "--refresh-token", "ref-2b7e", "--expires-at", "2030-02-01 12:00",
        input="tok-9c41\n",
    )  # fmt: skip
    shown = (await kairos.ok("--json", "accounts", "show", account_id)).json()
    app = kairos.api.service.app
    async with app.uow() as uow:
        stored = await uow.session.get(Account, uuid.UUID(account_id))
        assert stored is not None
        secrets = decrypt_credentials(app, stored)

    assert ran.code == 0, str(ran)
    assert ran.stdout == f"account {account_id} (@renewed) has new credentials\n"
    assert "tok-9c41" not in ran.stdout + ran.stderr
    assert "ref-2b7e" not in ran.stdout + ran.stderr
    assert (shown["status"], shown["token_expires_at"]) == ("active", "2030-02-01T11:00:00Z")
    assert (secrets["access_token"], secrets["refresh_token"]) == ("tok-9c41", "ref-2b7e")


async def test_update_credentials_mistakes(kairos: Kairos) -> None:
    x_account = (
        await kairos.ok("accounts", "connect", "x", "--handle", "@x", "--access-token", "t")
    ).stdout.strip()
    gone = await kairos.connect_sandbox()
    await kairos.ok("accounts", "disconnect", gone)

    no_token = await kairos("accounts", "update-credentials", x_account)
    unknown = await kairos("accounts", "update-credentials", UNKNOWN_ID, "--access-token", "t")
    disconnected = await kairos(
        "accounts", "update-credentials", gone, "--instance-url", "http://127.0.0.1:9"
    )
    bad_expiry = await kairos(
        "accounts", "update-credentials", x_account, "--access-token", "t", "--expires-at", "soon"
    )

    assert no_token.code == 2, str(no_token)
    assert "\n  credentials.access_token: is required for x" in no_token.stderr
    assert unknown.code == 4, str(unknown)
    assert disconnected.code == 5, str(disconnected)
    assert bad_expiry.code == 2
    assert "--expires-at" in bad_expiry.stderr


@pytest.mark.parametrize("command", ["show", "pause", "resume", "disconnect"])
async def test_an_unknown_account_exits_4(kairos: Kairos, command: str) -> None:
    ran = await kairos("accounts", command, UNKNOWN_ID)

    assert ran.code == 4, str(ran)
    assert ran.stderr == f"kairos: error: account {UNKNOWN_ID} not found\n"


# --- mistakes every command shares ------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [("accounts", "list"), ("posts", "show", UNKNOWN_ID), ("stats",), ("calendar",)],
)
async def test_a_missing_key_exits_3_before_calling(kairos: Kairos, args: tuple[str, ...]) -> None:
    # The target is a port nobody listens on: a call would have exited 6, not 3.
    ran = await run_in_process("--target", f"127.0.0.1:{free_port()}", *args)

    assert ran.code == 3, str(ran)
    assert ran.stderr == (
        "kairos: error: missing or invalid API key: set KAIROS_API_KEY or --api-key\n"
    )
    assert ran.stdout == ""


async def test_a_wrong_or_revoked_key_exits_3(kairos: Kairos) -> None:
    wrong = await kairos("accounts", "list", key="kairos_not-a-real-key")

    assert wrong.code == 3, str(wrong)
    assert "missing or invalid API key: set KAIROS_API_KEY or --api-key" in wrong.stderr


async def test_the_key_and_target_come_from_the_environment(kairos: Kairos) -> None:
    ran = await run_in_process(
        "--json",
        "accounts",
        "list",
        env={"KAIROS_API_TARGET": kairos.api.target, "KAIROS_API_KEY": kairos.key},
    )

    assert ran.code == 0, str(ran)
    assert ran.json() == {"accounts": []}


async def test_an_unreachable_api_exits_6_naming_it() -> None:
    target = f"127.0.0.1:{free_port()}"

    ran = await run_in_process("--target", target, "--api-key", "k", "--timeout", "2", "stats")

    assert ran.code == 6, str(ran)
    assert ran.stderr.startswith(f"kairos: error: cannot reach the api at {target} (UNAVAILABLE")


async def test_a_bad_zone_or_option_exits_2(kairos: Kairos) -> None:
    zone = await run_in_process("--tz", "Nowhere/Land", "--api-key", "k", "stats")
    unknown_command = await kairos("frobnicate")
    global_after = await kairos("stats", "--json")

    assert zone.code == 2
    assert "unknown time zone 'Nowhere/Land'" in zone.stderr
    assert unknown_command.code == 2
    assert global_after.code == 2  # global options go before the command


async def test_help_documents_the_exit_codes() -> None:
    ran = await run_in_process("--help")

    assert ran.code == 0
    text = " ".join(ran.stdout.split())
    for phrase in ("3 missing or invalid API key", "4 not found", "6 api unreachable"):
        assert phrase in text
