"""The mistakes a `kairos` user is most likely to make, for every command: no key, a wrong key,
an unreachable api, a bad time, an unknown or wrong-state post, a bad option value; each ends with
its documented exit code and words a person can act on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer.main
from integration.cli.conftest import Kairos, run_in_process
from typer.core import TyperGroup

from kairos_cli.main import app
from support.ports import free_port

UNKNOWN_ID = "0190a6d2-0000-7000-8000-000000000000"

#: For every command, arguments that parse (so that only the key decides what happens).
VALID_ARGS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("calendar",): (),
    ("stats",): (),
    ("watch",): ("--interval", "0.1"),
    ("events",): (),
    ("keys", "create"): ("--tenant", "demo"),
    ("keys", "revoke"): (UNKNOWN_ID,),
    ("keys", "list"): (),
    ("accounts", "connect"): ("sandbox", "--handle", "@x", "--instance-url", "http://[::1]:9"),
    ("accounts", "list"): (),
    ("series", "list"): (),
    ("series", "show"): (UNKNOWN_ID,),
    ("series", "edit"): (UNKNOWN_ID, "--content", "x"),
    ("series", "pause"): (UNKNOWN_ID,),
    ("series", "resume"): (UNKNOWN_ID,),
    ("series", "delete"): (UNKNOWN_ID,),
    ("series", "preview"): ("FREQ=DAILY", "--start", "2030-01-01T09:00"),
    ("accounts", "show"): (UNKNOWN_ID,),
    ("accounts", "pause"): (UNKNOWN_ID,),
    ("accounts", "resume"): (UNKNOWN_ID,),
    ("accounts", "disconnect"): (UNKNOWN_ID,),
    ("accounts", "update-credentials"): (UNKNOWN_ID, "--access-token", "t"),
    ("posts", "create"): ("hello", "--account", UNKNOWN_ID, "--at", "in 1h"),
    ("posts", "thread"): ("one", "two", "--account", UNKNOWN_ID),
    ("posts", "schedule"): (UNKNOWN_ID, "--at", "in 1h"),
    ("posts", "unschedule"): (UNKNOWN_ID,),
    ("posts", "publish-now"): (UNKNOWN_ID,),
    ("posts", "retry"): (UNKNOWN_ID,),
    ("posts", "approve"): (UNKNOWN_ID,),
    ("posts", "reject"): (UNKNOWN_ID, "--reason", "off brand"),
    ("posts", "delete"): (UNKNOWN_ID,),
    ("posts", "edit"): (UNKNOWN_ID, "--content", "changed"),
    ("posts", "show"): (UNKNOWN_ID,),
    ("posts", "list"): (),
    ("posts", "import"): (str(Path(__file__).parents[2] / "data" / "import.csv"),),
    ("posts", "queue"): (UNKNOWN_ID,),
    ("queue", "slots", "set"): (UNKNOWN_ID, "--slot", "mon-fri 09:00", "--zone", "Europe/London"),
    ("queue", "slots", "show"): (UNKNOWN_ID,),
    ("queue", "show"): (UNKNOWN_ID,),
    ("queue", "move"): (UNKNOWN_ID, "2030-01-07T09:00:00Z"),
    ("queue", "swap"): (UNKNOWN_ID, UNKNOWN_ID),
    ("queue", "remove"): (UNKNOWN_ID,),
    # Any file that exists: the key is checked before a byte is sent.
    ("media", "upload"): (__file__,),
    ("media", "list"): (),
    ("media", "show"): (UNKNOWN_ID,),
    ("media", "delete"): (UNKNOWN_ID,),
    ("webhooks", "create"): ("https://hooks.example.com/in", "--event", "published"),
    ("webhooks", "list"): (),
    ("webhooks", "show"): (UNKNOWN_ID,),
    ("webhooks", "update"): (UNKNOWN_ID, "--disable"),
    ("webhooks", "delete"): (UNKNOWN_ID,),
    ("webhooks", "rotate-secret"): (UNKNOWN_ID,),
    ("webhooks", "deliveries"): (UNKNOWN_ID, "--status", "failed"),
    ("webhooks", "redeliver"): (UNKNOWN_ID,),
}
#: `kairos keys` works on the database, not through the api: no API key is involved.
KEYS_COMMANDS = {("keys", "create"), ("keys", "revoke"), ("keys", "list")}


def every_command() -> Iterator[tuple[str, ...]]:
    """The path of every command of the `kairos` app, walked from its root."""

    def walk(command: object, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        if isinstance(command, TyperGroup):
            for name, sub in command.commands.items():
                yield from walk(sub, (*path, name))
        else:
            yield path

    yield from walk(typer.main.get_command(app), ())


def test_the_table_names_every_command_of_the_app() -> None:
    # A new command without a row here would escape the tests below.
    assert sorted(every_command()) == sorted(VALID_ARGS)


@pytest.mark.parametrize("command", sorted(every_command()), ids=" ".join)
async def test_no_key_exits_with_its_code_before_any_call(command: tuple[str, ...]) -> None:
    # Nobody listens at the target: a call would have exited 6 instead.
    ran = await run_in_process(
        "--target", f"127.0.0.1:{free_port()}", *command, *VALID_ARGS[command]
    )

    assert ran.stdout == "", str(ran)
    if command in KEYS_COMMANDS:  # no database named: the keys commands' own "missing key"
        assert ran.code == 2, str(ran)
        assert "set KAIROS_DATABASE_URL" in ran.stderr
    else:
        assert ran.code == 3, str(ran)
        assert ran.stderr == (
            "kairos: error: missing or invalid API key: set KAIROS_API_KEY or --api-key\n"
        )


@pytest.mark.parametrize("command", sorted(set(every_command()) - KEYS_COMMANDS), ids=" ".join)
async def test_a_wrong_key_exits_3(kairos: Kairos, command: tuple[str, ...]) -> None:
    ran = await kairos(*command, *VALID_ARGS[command], key="kairos_not-a-real-key")

    assert ran.code == 3, str(ran)
    assert "kairos: error: missing or invalid API key" in ran.stderr
    assert ran.stdout == ""


# --- watch ------------------------------------------------------------------------------------


async def test_watch_with_no_key_a_wrong_key_or_no_api_ends_at_once(kairos: Kairos) -> None:
    target = f"127.0.0.1:{free_port()}"

    no_key = await kairos("watch", key=None)
    wrong_key = await kairos("watch", key="kairos_not-a-real-key")
    unreachable = await run_in_process(
        "--target", target, "--api-key", kairos.key, "--timeout", "1", "watch"
    )

    assert no_key.code == wrong_key.code == 3, (str(no_key), str(wrong_key))
    assert unreachable.code == 6, str(unreachable)
    assert unreachable.stderr.startswith(f"kairos: error: cannot reach the api at {target}")
    assert no_key.stdout == wrong_key.stdout == unreachable.stdout == ""


# --- posts ------------------------------------------------------------------------------------


async def test_unschedule_an_unknown_or_unscheduled_post(kairos: Kairos, account_id: str) -> None:
    draft = await kairos.create_post(account_id)
    published = await kairos.create_post(account_id, "--at", "in 1h")
    await kairos.settle_as_published(published, account_id)

    unknown = await kairos("posts", "unschedule", UNKNOWN_ID)
    still_draft = await kairos("posts", "unschedule", draft)
    too_late = await kairos("posts", "unschedule", published)

    assert unknown.code == 4, str(unknown)
    assert unknown.stderr == f"kairos: error: post {UNKNOWN_ID} not found\n"
    # A draft is where unschedule leads: nothing changes, and the output says so.
    assert still_draft.code == 0, str(still_draft)
    assert still_draft.stdout == f"post {draft} is draft (revision 1)\n"
    assert too_late.code == 5, str(too_late)
    assert "published" in too_late.stderr
    assert unknown.stdout == too_late.stdout == ""


@pytest.mark.parametrize("when", ["tomorrow at 3", "2030-02-30 10:00", "in 5 fortnights", ""])
async def test_schedule_at_a_bad_time_exits_2_naming_the_formats(
    kairos: Kairos, account_id: str, when: str
) -> None:
    post_id = await kairos.create_post(account_id)

    ran = await kairos("posts", "schedule", post_id, "--at", when)

    assert ran.code == 2, str(ran)
    assert "in 10s" in ran.stderr  # the accepted formats are named
    assert ran.stdout == ""
    shown = await kairos.ok("--json", "posts", "show", post_id)
    assert shown.json()["status"] == "draft"  # nothing was sent


async def test_accounts_list_with_an_unknown_status_exits_2_naming_the_choices(
    kairos: Kairos,
) -> None:
    ran = await kairos("accounts", "list", "--status", "bogus")

    assert ran.code == 2, str(ran)
    assert "bogus" in ran.stderr
    assert "paused" in ran.stderr  # one of the valid choices


async def test_deleting_a_published_post_succeeds_and_names_what_stays_published(
    kairos: Kairos, account_id: str
) -> None:
    post_id = await kairos.create_post(account_id, "--at", "in 1h")
    await kairos.settle_as_published(post_id, account_id)
    platform_id = (await kairos.ok("--json", "posts", "show", post_id)).json()["targets"][0][
        "platform_post_id"
    ]

    ran = await kairos("posts", "delete", post_id)
    gone = await kairos("posts", "show", post_id)

    # DeletePost soft-deletes the post whatever its state: it was deleted, so exit 0.
    assert ran.code == 0, str(ran)
    assert gone.code == 4  # Kairos no longer lists it
    assert ran.stdout.startswith(f"post {post_id} is published (revision ")
    assert f"post {post_id} was deleted from Kairos" in ran.stderr
    assert "stays on its platforms" in ran.stderr
    assert f"sandbox {platform_id}" in ran.stderr


async def test_deleting_a_partly_published_post_cancels_the_rest_and_says_what_stays(
    kairos: Kairos, account_id: str
) -> None:
    other = await kairos.connect_sandbox()
    post_id = await kairos.create_post(
        account_id, "--account", other, "--at", "in 1h"
    )  # fmt: skip
    await kairos.settle_as_published(post_id, account_id)

    ran = await kairos("--json", "posts", "delete", post_id)

    assert ran.code == 0, str(ran)
    targets = {t["account_id"]: t for t in ran.json()["targets"]}
    assert {a: t["status"] for a, t in targets.items()} == {
        account_id: "published",
        other: "cancelled",
    }
    [note] = [json.loads(line)["note"] for line in ran.stderr.splitlines()]
    assert f"sandbox {targets[account_id]['platform_post_id']}" in note
