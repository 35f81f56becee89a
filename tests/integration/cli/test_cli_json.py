"""`--json` for scripts: one vocabulary for statuses and platforms in every command's output (the
words `--status` and `--platform` take), and errors as one JSON line on stderr with the exit
code unchanged."""

from __future__ import annotations

import json
from typing import Any

import pytest
from integration.cli.conftest import Kairos, Ran, run_in_process

from support.ports import free_port

UNKNOWN_ID = "0190a6d2-0000-7000-8000-000000000000"


def error_of(ran: Ran) -> dict[str, Any]:
    """The JSON error of a failed run: stdout empty, stderr JSON lines, the error last."""
    assert ran.stdout == "", str(ran)
    lines = [json.loads(line) for line in ran.stderr.splitlines()]
    assert lines, str(ran)
    error: dict[str, Any] = lines[-1]
    assert set(error) == {"code", "message", "violations"}, str(ran)
    assert all(set(line) == {"note"} for line in lines[:-1]), str(ran)
    return error


async def test_every_command_names_statuses_and_platforms_in_the_same_words(
    kairos: Kairos, account_id: str
) -> None:
    scheduled = await kairos.create_post(account_id, "--at", "in 30m", content="Same words")
    failed = await kairos.create_post(account_id, "--at", "in 1h")
    await kairos.settle_as_failed(failed)

    shown = (await kairos.ok("--json", "posts", "show", failed)).json()
    listed = (await kairos.ok("--json", "posts", "list", "--status", "scheduled")).json()
    calendar = (await kairos.ok("--json", "calendar", "--days", "2")).json()
    accounts = (await kairos.ok("--json", "accounts", "list")).json()
    stats = (await kairos.ok("--json", "stats")).json()
    watched = (await kairos.ok("--json", "watch", "--once")).json()

    [target] = shown["targets"]
    assert (shown["status"], target["status"], target["platform"]) == (
        "failed",
        "failed",
        "sandbox",
    )
    assert target["last_error"]["error_class"] == "permanent"
    assert [a["error_class"] for a in target["attempts"]] == ["retryable", "permanent"]
    [post] = listed["posts"]
    assert (post["id"], post["status"], post["targets"][0]["status"]) == (
        scheduled,
        "scheduled",
        "pending",
    )
    rows = [row for day in calendar["days"] for rs in day["platforms"].values() for row in rs]
    assert [(row["post_id"], row["status"]) for row in rows] == [(scheduled, "scheduled")]
    assert [(a["platform"], a["status"]) for a in accounts["accounts"]] == [("sandbox", "active")]
    assert {row["status"]: row["count"] for row in stats["by_status"]} == {
        "scheduled": 1,
        "failed": 1,
    }
    assert {(row["platform"], row["status"]) for row in stats["by_platform"]} == {
        ("sandbox", "pending"),
        ("sandbox", "failed"),
    }
    assert [(p["id"], p["status"]) for p in watched["upcoming"]] == [(scheduled, "scheduled")]
    assert [(p["id"], p["status"]) for p in watched["recent"]] == [(failed, "failed")]
    # The words printed are the words the options take.
    again = await kairos.ok(
        "--json", "posts", "list", "--status", shown["status"], "--platform", target["platform"]
    )
    assert [p["id"] for p in again.json()["posts"]] == [failed]


async def test_an_api_refusal_is_json_with_its_field_violations(kairos: Kairos) -> None:
    ran = await kairos("--json", "posts", "create", "Nowhere", "--account", UNKNOWN_ID)

    assert ran.code == 2
    error = error_of(ran)
    assert error["code"] == "INVALID_ARGUMENT"
    assert error["message"]
    assert error["violations"] == [
        {"field": "targets[0].account_id", "description": f"account {UNKNOWN_ID} not found"}
    ]


@pytest.mark.parametrize(
    ("args", "exit_code", "status", "words"),
    [
        (("posts", "show", UNKNOWN_ID), 4, "NOT_FOUND", f"post {UNKNOWN_ID} not found"),
        (("posts", "create", "x", "--account", UNKNOWN_ID, "--at", "soon"), 2,
         "INVALID_ARGUMENT", "cannot read the time 'soon'"),
        (("posts", "list", "--status", "sideways"), 2, "INVALID_ARGUMENT", "'sideways'"),
        (("frobnicate",), 2, "INVALID_ARGUMENT", "frobnicate"),
    ],
)  # fmt: skip
async def test_each_kind_of_error_is_json_with_its_exit_code(
    kairos: Kairos, args: tuple[str, ...], exit_code: int, status: str, words: str
) -> None:
    ran = await kairos("--json", *args)

    assert ran.code == exit_code, str(ran)
    error = error_of(ran)
    assert error["code"] == status
    assert words in error["message"]


async def test_a_bad_option_value_names_the_option(kairos: Kairos) -> None:
    error = error_of(await kairos("--json", "posts", "list", "--status", "sideways"))

    [violation] = error["violations"]
    assert violation["field"] == "--status"
    assert "sideways" in violation["description"]


async def test_a_state_conflict_a_missing_key_and_no_api_are_json(
    kairos: Kairos, account_id: str
) -> None:
    plain = await kairos.create_post(account_id, "--at", "in 1h")

    conflict = await kairos("--json", "posts", "approve", plain)
    no_key = await kairos("--json", "stats", key=None)
    no_api = await run_in_process(
        "--json",
        "--target",
        f"127.0.0.1:{free_port()}",
        "--api-key",
        "k",
        "--timeout",
        "1",
        "stats",
    )

    assert (conflict.code, no_key.code, no_api.code) == (5, 3, 6)
    assert error_of(conflict)["code"] == "FAILED_PRECONDITION"
    assert "does not require approval" in error_of(conflict)["message"]
    assert error_of(no_key)["code"] == "UNAUTHENTICATED"
    assert "KAIROS_API_KEY" in error_of(no_key)["message"]
    assert error_of(no_api)["code"] == "UNAVAILABLE"
    assert "cannot reach the api" in error_of(no_api)["message"]


async def test_notes_before_an_error_are_json_lines_too(kairos: Kairos, account_id: str) -> None:
    ran = await kairos("--json", "posts", "thread", "fine", "x" * 100_001, "--account", account_id)

    assert ran.code == 2
    error = error_of(ran)
    notes = [json.loads(line)["note"] for line in ran.stderr.splitlines()[:-1]]
    assert notes == ["part 2 was refused; the thread was not created:"]
    assert error["violations"][0]["field"] == "content"


async def test_without_json_errors_stay_text(kairos: Kairos) -> None:
    ran = await kairos("posts", "show", UNKNOWN_ID)

    assert ran.stderr == f"kairos: error: post {UNKNOWN_ID} not found\n"
