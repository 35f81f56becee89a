"""`kairos posts ...` against the in-process api (PostgreSQL and SQLite), in this process.

Times are read and shown in Europe/Berlin (the `kairos` fixture passes `--tz Europe/Berlin`).
"""

from __future__ import annotations

import re
import shlex
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from integration.cli.conftest import Kairos

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
UNKNOWN_ID = "0190a6d2-0000-7000-8000-000000000000"


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- create -----------------------------------------------------------------------------------


async def test_create_without_at_prints_only_the_id_of_a_draft(
    kairos: Kairos, account_id: str
) -> None:
    ran = await kairos.ok("posts", "create", "A draft", "--account", account_id)

    assert UUID.fullmatch(ran.stdout.strip())
    assert ran.stdout.count("\n") == 1
    assert "is draft" in ran.stderr
    post = (await kairos.ok("--json", "posts", "show", ran.stdout.strip())).json()
    assert (post["status"], post["content"]) == ("draft", "A draft")


async def test_create_at_an_instant_shows_it_in_the_local_zone(
    kairos: Kairos, account_id: str
) -> None:
    post_id = await kairos.create_post(account_id, "--at", "2030-01-15T09:00:00Z")

    shown = await kairos.ok("posts", "show", post_id)
    post = (await kairos.ok("--json", "posts", "show", post_id)).json()

    assert "Tue 15 Jan 2030 10:00:00 CET" in shown.stdout
    assert post["scheduled_at"] == "2030-01-15T09:00:00Z"
    assert post["time_zone"] == ""


async def test_a_local_time_is_sent_with_its_zone(kairos: Kairos, account_id: str) -> None:
    in_berlin = await kairos.create_post(account_id, "--at", "2030-07-01 09:00")
    in_new_york = await kairos.create_post(
        account_id, "--at", "2030-07-01T09:00", "--tz", "America/New_York"
    )

    berlin = (await kairos.ok("--json", "posts", "show", in_berlin)).json()
    new_york = (await kairos.ok("--json", "posts", "show", in_new_york)).json()
    shown = await kairos.ok("posts", "show", in_new_york)

    assert (berlin["scheduled_at"], berlin["time_zone"]) == (
        "2030-07-01T07:00:00Z",
        "Europe/Berlin",
    )
    assert (new_york["scheduled_at"], new_york["time_zone"]) == (
        "2030-07-01T13:00:00Z",
        "America/New_York",
    )
    # Shown in the user's zone (Berlin), saying which zone the schedule was given in.
    assert "Mon 01 Jul 2030 15:00:00 CEST (set in America/New_York)" in shown.stdout


async def test_a_repeated_local_hour_takes_the_earlier_instant(
    kairos: Kairos, account_id: str
) -> None:
    # Berlin's clocks go back from 03:00 CEST to 02:00 CET on 2027-10-31: 02:30 happens twice.
    post_id = await kairos.create_post(account_id, "--at", "2027-10-31 02:30")

    post = (await kairos.ok("--json", "posts", "show", post_id)).json()
    shown = await kairos.ok("posts", "show", post_id)

    assert post["scheduled_at"] == "2027-10-31T00:30:00Z"
    assert "Sun 31 Oct 2027 02:30:00 CEST" in shown.stdout


async def test_a_relative_time_counts_from_now(kairos: Kairos, account_id: str) -> None:
    before = datetime.now(UTC)
    post_id = await kairos.create_post(account_id, "--at", "in 2h")

    post = (await kairos.ok("--json", "posts", "show", post_id)).json()

    scheduled = instant(post["scheduled_at"])
    assert before + timedelta(hours=2) <= scheduled <= datetime.now(UTC) + timedelta(hours=2)


async def test_a_create_with_a_relative_time_can_be_repeated(
    kairos: Kairos, account_id: str
) -> None:
    args = ("posts", "create", "Twice", "--account", account_id, "--request-id", uuid.uuid4().hex)

    first = await kairos.ok(*args, "--at", "in 2h")
    again = await kairos.ok(*args, "--at", "in 2h")
    later = await kairos(*args, "--at", "in 3h")

    assert again.stdout == first.stdout  # the same post: the command repeated unchanged
    assert later.code == 2, str(later)  # another request under the same id
    assert "request_id" in later.stderr
    assert "already used for a different request" in later.stderr
    listed = (await kairos.ok("--json", "posts", "list")).json()
    assert [p["id"] for p in listed["posts"]] == [first.stdout.strip()]


async def test_create_now_publishes_at_once(kairos: Kairos, account_id: str) -> None:
    ran = await kairos.ok(
        "--json", "posts", "create", "Right now", "--account", account_id, "--at", "now"
    )

    post = ran.json()
    assert post["status"] == "scheduled"
    assert abs(instant(post["scheduled_at"]) - datetime.now(UTC)) < timedelta(seconds=30)


async def test_create_passes_every_option(kairos: Kairos, account_id: str) -> None:
    second = await kairos.connect_sandbox()
    request_id = uuid.uuid4().hex
    # An instant: a retry repeats it unchanged (as it repeats "in 1h", a delay the api resolves).
    at = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    args = (
        "--json",
        "posts",
        "create",
        "Launch day",
        "--account",
        account_id,
        "--account",
        second,
        "--at",
        at,
        "--media",
        "https://example.com/a.png",
        "--tag",
        "launch",
        "--tag",
        "q4",
        "--campaign",
        "winter",
        "--notes",
        "check the image",
        "--approval",
        "--stale-after",
        "600",
        "--request-id",
        request_id,
        "--override",
        f"{second}=Only here",
    )

    post = (await kairos.ok(*args)).json()
    again = (await kairos.ok(*args)).json()

    assert again["id"] == post["id"]  # the same request id returns the first post
    # The same request id with another request is refused, naming it, and writes nothing.
    changed = await kairos(*args[:3], "Launch night", *args[4:])
    assert changed.code == 2, str(changed)
    assert "request_id" in changed.stderr
    assert "already used for a different request" in changed.stderr
    assert post["status"] == "pending_approval"
    assert (post["media_urls"], post["tags"]) == (["https://example.com/a.png"], ["launch", "q4"])
    assert (post["campaign"], post["notes"], post["stale_after"]) == (
        "winter",
        "check the image",
        "600s",
    )
    overrides = {t["account_id"]: t.get("content_override") for t in post["targets"]}
    assert overrides == {account_id: None, second: "Only here"}


@pytest.mark.parametrize("when", ["tomorrow", "2030-02-30 10:00", "10:00", "in 3 fortnights"])
async def test_a_bad_time_exits_2_before_any_call(
    kairos: Kairos, account_id: str, when: str
) -> None:
    ran = await kairos("posts", "create", "Never", "--account", account_id, "--at", when)

    assert ran.code == 2, str(ran)
    assert ran.stdout == ""
    assert repr(when) in ran.stderr
    if "valid date" not in ran.stderr:
        assert '"in 10s"' in ran.stderr
        assert "2026-11-25T14:00:00Z" in ran.stderr
    listed = (await kairos.ok("--json", "posts", "list")).json()
    assert listed["posts"] == []


async def test_a_time_in_a_dst_gap_is_refused_by_the_server(
    kairos: Kairos, account_id: str
) -> None:
    ran = await kairos(
        "posts", "create", "Gap", "--account", account_id, "--at", "2027-03-28 02:30"
    )

    assert ran.code == 2, str(ran)
    assert ran.stdout == ""
    assert "kairos: error: the api refused the request:" in ran.stderr
    assert re.search(r"\n  schedule\.local\.date_time: .*2027-03-28.*02:30", ran.stderr), ran.stderr


async def test_an_unknown_account_exits_2_naming_the_field(kairos: Kairos) -> None:
    ran = await kairos("posts", "create", "Nowhere", "--account", UNKNOWN_ID, "--at", "in 1h")

    assert ran.code == 2, str(ran)
    assert f"  targets[0].account_id: account {UNKNOWN_ID} not found\n" in ran.stderr
    assert ran.stdout == ""


async def test_usage_mistakes_exit_2(kairos: Kairos, account_id: str) -> None:
    no_account = await kairos("posts", "create", "Lonely")
    stray_override = await kairos(
        "posts", "create", "x", "--account", account_id, "--override", f"{UNKNOWN_ID}=text"
    )
    bad_override = await kairos(
        "posts", "create", "x", "--account", account_id, "--override", "no-equals-sign"
    )
    bad_zone = await kairos(
        "posts",
        "create",
        "x",
        "--account",
        account_id,
        "--at",
        "2030-01-01 10:00",
        "--tz",
        "Mars/Olympus",
    )

    assert no_account.code == 2
    assert "--account" in no_account.stderr
    assert stray_override.code == 2
    assert "which no --account gives" in stray_override.stderr
    assert bad_override.code == 2
    assert "KEY=VALUE" in bad_override.stderr
    assert bad_zone.code == 2
    assert "unknown time zone 'Mars/Olympus'" in bad_zone.stderr


# --- schedule, unschedule, publish-now, edit --------------------------------------------------


async def test_schedule_and_reschedule(kairos: Kairos, account_id: str) -> None:
    post_id = await kairos.create_post(account_id)

    first = await kairos.ok("posts", "schedule", post_id, "--at", "2030-03-01 08:00")
    moved = await kairos.ok("--json", "posts", "schedule", post_id, "--at", "2030-03-02T10:00Z")

    assert first.stdout == (
        f"post {post_id} is scheduled for Fri 01 Mar 2030 08:00:00 CET (revision 2)\n"
    )
    assert moved.json()["scheduled_at"] == "2030-03-02T10:00:00Z"
    assert moved.json()["time_zone"] == ""


async def test_schedule_mistakes(kairos: Kairos, account_id: str) -> None:
    post_id = await kairos.create_post(account_id)

    past = await kairos("posts", "schedule", post_id, "--at", "2020-01-01T00:00:00Z")
    stale = await kairos("posts", "schedule", post_id, "--at", "in 1h", "--expected-revision", "9")
    unknown = await kairos("posts", "schedule", UNKNOWN_ID, "--at", "in 1h")
    no_at = await kairos("posts", "schedule", post_id)

    assert past.code == 2
    assert "\n  schedule: " in past.stderr
    assert "in the past" in past.stderr
    assert stale.code == 5, str(stale)
    assert "revision" in stale.stderr
    assert unknown.code == 4
    assert f"post {UNKNOWN_ID} not found" in unknown.stderr
    assert no_at.code == 2
    assert "--at" in no_at.stderr


async def test_schedule_now_publishes_and_unschedule_returns_to_draft(
    kairos: Kairos, account_id: str
) -> None:
    post_id = await kairos.create_post(account_id, "--at", "in 3h")

    back = await kairos.ok("posts", "unschedule", post_id)
    now = await kairos.ok("posts", "schedule", post_id, "--at", "now")

    assert back.stdout == f"post {post_id} is draft (revision 2)\n"
    assert now.stdout.startswith(f"post {post_id} is scheduled for ")


async def test_publish_now(kairos: Kairos, account_id: str) -> None:
    post_id = await kairos.create_post(account_id)

    ran = await kairos.ok("--json", "posts", "publish-now", post_id)
    unknown = await kairos("posts", "publish-now", UNKNOWN_ID)

    assert ran.json()["status"] == "scheduled"
    assert unknown.code == 4


async def test_edit_changes_only_the_given_fields(kairos: Kairos, account_id: str) -> None:
    post_id = await kairos.create_post(account_id, "--tag", "old", "--notes", "keep me")

    edited = await kairos.ok(
        "--json", "posts", "edit", post_id, "--content", "New words", "--tag", "a", "--tag", "b"
    )
    stale = await kairos("posts", "edit", post_id, "--notes", "x", "--expected-revision", "1")
    nothing = await kairos("posts", "edit", post_id)
    insecure = await kairos("posts", "edit", post_id, "--media", "http://example.com/a.png")

    post = edited.json()
    assert (post["content"], post["tags"], post["notes"]) == ("New words", ["a", "b"], "keep me")
    assert stale.code == 5, str(stale)
    assert nothing.code == 2
    assert "nothing to change" in nothing.stderr
    assert insecure.code == 2
    assert "\n  post.media_urls[0]: must use https" in insecure.stderr


async def test_edit_adds_and_removes_accounts(kairos: Kairos, account_id: str) -> None:
    second, third = await kairos.connect_sandbox(), await kairos.connect_sandbox()
    post_id = await kairos.create_post(
        account_id, "--account", second, "--override", f"{second}=Only here", "--at", "in 1h"
    )

    added = await kairos.ok("--json", "posts", "edit", post_id, "--add-account", third)
    swapped = await kairos.ok(
        "--json", "posts", "edit", post_id, "--remove-account", account_id,
        "--remove-account", third, "--content", "Fewer places",
    )  # fmt: skip
    not_there = await kairos("posts", "edit", post_id, "--remove-account", account_id)
    already = await kairos("posts", "edit", post_id, "--add-account", second)
    stale = await kairos(
        "posts", "edit", post_id, "--add-account", third, "--expected-revision", "1"
    )

    assert {t["account_id"] for t in added.json()["targets"]} == {account_id, second, third}
    post = swapped.json()
    assert [(t["account_id"], t.get("content_override")) for t in post["targets"]] == [
        (second, "Only here")  # the kept target keeps its override
    ]
    assert (post["content"], post["status"]) == ("Fewer places", "scheduled")
    assert not_there.code == 2, str(not_there)
    assert f"has no target on account {account_id}" in not_there.stderr
    assert already.code == 2, str(already)
    assert stale.code == 5, str(stale)
    assert "revision" in stale.stderr
    final = (await kairos.ok("--json", "posts", "show", post_id)).json()
    assert [t["account_id"] for t in final["targets"]] == [second]


async def test_a_post_whose_account_was_disconnected_can_be_edited(
    kairos: Kairos, account_id: str
) -> None:
    leaving, replacement = await kairos.connect_sandbox(), await kairos.connect_sandbox()
    post_id = await kairos.create_post(account_id, "--account", leaving, "--at", "in 1h")
    await kairos.ok("accounts", "disconnect", leaving)

    tagged = await kairos("posts", "edit", post_id, "--tag", "still-editable")
    moved = await kairos(
        "--json", "posts", "edit", post_id,
        "--remove-account", leaving, "--add-account", replacement,
    )  # fmt: skip

    assert tagged.code == 0, str(tagged)
    assert moved.code == 0, str(moved)
    statuses = {t["account_id"]: t["status"] for t in moved.json()["targets"]}
    assert statuses == {account_id: "pending", replacement: "pending"}


# --- show, list -------------------------------------------------------------------------------


async def test_show_lists_targets_and_every_attempt(kairos: Kairos, account_id: str) -> None:
    post_id = await kairos.create_post(account_id, "--at", "in 1h")
    target_id = await kairos.settle_as_failed(post_id)

    ran = await kairos.ok("posts", "show", post_id)
    post = (await kairos.ok("--json", "posts", "show", post_id)).json()

    out = ran.stdout
    assert target_id in out
    assert account_id in out
    for text in (
        "failed",
        "sandbox",
        "503",
        "retryable",
        "unavailable",
        "upstream busy",
        "400",
        "permanent",
        "bad_content",
        "content refused by the platform",
        "420 ms",
    ):
        assert text in out, text
    assert re.search(r"\b\w{3} \d{2} \w{3} \d{2}:\d{2}:\d{2} CES?T", out)
    [target] = post["targets"]
    assert [a["http_status"] for a in target["attempts"]] == [503, 400]
    assert target["last_error"]["message"] == "content refused by the platform"


async def test_show_unknown_and_malformed_ids(kairos: Kairos) -> None:
    unknown = await kairos("posts", "show", UNKNOWN_ID)
    malformed = await kairos("posts", "show", "not-an-id")

    assert unknown.code == 4
    assert unknown.stderr == f"kairos: error: post {UNKNOWN_ID} not found\n"
    assert malformed.code == 2
    assert "  post_id: " in malformed.stderr


async def test_list_filters_orders_and_limits(kairos: Kairos, account_id: str) -> None:
    later = await kairos.create_post(account_id, "--at", "in 3h", "--tag", "x", content="Later")
    sooner = await kairos.create_post(account_id, "--at", "in 1h", "--campaign", "c1")
    draft = await kairos.create_post(account_id, "--tag", "x", content="Draft")

    async def ids(*args: str) -> list[str]:
        return [
            p["id"] for p in (await kairos.ok("--json", "posts", "list", *args)).json()["posts"]
        ]

    assert await ids() == [draft, sooner, later]
    assert await ids("--order", "oldest") == [later, sooner, draft]
    assert await ids("--status", "scheduled", "--order", "soonest") == [sooner, later]
    assert await ids("--status", "draft", "--status", "SCHEDULED", "--limit", "2") == [
        draft,
        sooner,
    ]
    assert await ids("--tag", "x") == [draft, later]
    assert await ids("--campaign", "c1") == [sooner]
    assert await ids("--platform", "sandbox", "--account", account_id, "--limit", "1") == [draft]
    assert await ids("--platform", "x") == []

    table = await kairos.ok("posts", "list", "--order", "soonest")
    assert UUID.findall(table.stdout) == [sooner, later, draft]
    assert "Later" in table.stdout
    assert "sandbox" in table.stdout

    bad_status = await kairos("posts", "list", "--status", "sideways")
    assert bad_status.code == 2


async def test_list_prints_how_to_get_the_next_page(kairos: Kairos, account_id: str) -> None:
    tagged = [
        await kairos.create_post(account_id, "--tag", "paged", content=f"Paged {n}")
        for n in range(3)
    ]
    await kairos.create_post(account_id, content="Not tagged")

    first = await kairos.ok("posts", "list", "--tag", "paged", "--limit", "2", "--order", "oldest")
    hint = first.stderr.strip()
    assert hint.startswith("more posts: kairos posts list --tag paged --limit 2 --order oldest")
    command = shlex.split(hint.removeprefix("more posts: "))
    second = await kairos.ok(*command[1:])  # as printed, without the leading "kairos"

    assert UUID.findall(first.stdout) == tagged[:2]
    assert UUID.findall(second.stdout) == tagged[2:]
    assert second.stderr == ""  # the last page: nothing more to get


async def test_list_json_carries_the_next_page_token(kairos: Kairos, account_id: str) -> None:
    ids = [await kairos.create_post(account_id, "--tag", "tokens") for _ in range(3)]

    async def page(token: str = "") -> dict[str, Any]:
        args = ["--json", "posts", "list", "--tag", "tokens", "--limit", "2", "--order", "oldest"]
        ran = await kairos.ok(*args, *(["--page-token", token] if token else []))
        assert ran.stderr == ""
        result: dict[str, Any] = ran.json()
        return result

    first = await page()
    second = await page(first["next_page_token"])
    refused = await kairos(
        "posts", "list", "--tag", "other", "--page-token", first["next_page_token"]
    )

    assert [p["id"] for p in first["posts"]] == ids[:2]
    assert first["next_page_token"]
    assert [p["id"] for p in second["posts"]] == ids[2:]
    assert second["next_page_token"] == ""
    assert refused.code == 2  # a token is for the filters it came with
    assert "page_token" in refused.stderr


# --- retry, approve, reject, delete -----------------------------------------------------------


async def test_retry_sends_a_failed_target_again(kairos: Kairos, account_id: str) -> None:
    post_id = await kairos.create_post(account_id, "--at", "in 1h")
    nothing = await kairos("posts", "retry", post_id)
    target_id = await kairos.settle_as_failed(post_id)

    unknown_target = await kairos("posts", "retry", post_id, "--target", UNKNOWN_ID)
    retried = await kairos.ok("--json", "posts", "retry", post_id, "--target", target_id)

    assert nothing.code == 5, str(nothing)
    assert unknown_target.code == 2
    assert "  target_ids[0]: " in unknown_target.stderr
    [target] = retried.json()["targets"]
    assert target["status"] == "pending"


async def test_approve_and_reject(kairos: Kairos, account_id: str) -> None:
    approved_id = await kairos.create_post(account_id, "--at", "in 1h", "--approval")
    rejected_id = await kairos.create_post(account_id, "--at", "in 1h", "--approval")
    plain_id = await kairos.create_post(account_id, "--at", "in 1h")

    approved = await kairos.ok("posts", "approve", approved_id)
    rejected = await kairos.ok("--json", "posts", "reject", rejected_id, "--reason", "off brand")
    not_needed = await kairos("posts", "approve", plain_id)
    no_reason = await kairos("posts", "reject", plain_id)

    assert approved.stdout.startswith(f"post {approved_id} is scheduled for ")
    assert rejected.json()["status"] == "rejected"
    assert rejected.json()["rejection_reason"] == "off brand"
    assert not_needed.code == 5
    assert "does not require approval" in not_needed.stderr
    assert no_reason.code == 2
    assert "--reason" in no_reason.stderr


async def test_delete(kairos: Kairos, account_id: str) -> None:
    post_id = await kairos.create_post(account_id, "--at", "in 1h")

    deleted = await kairos.ok("posts", "delete", post_id)
    gone = await kairos("posts", "show", post_id)
    unknown = await kairos("posts", "delete", UNKNOWN_ID)

    assert deleted.stdout == f"post {post_id} is cancelled (revision 2)\n"
    assert gone.code == 4
    assert unknown.code == 4


# --- threads ----------------------------------------------------------------------------------


async def test_create_reply_to_makes_the_next_part_of_a_thread(
    kairos: Kairos, account_id: str
) -> None:
    first = await kairos.create_post(account_id, "--at", "in 1h")
    reply = await kairos.create_post(account_id, "--at", "in 1h", "--reply-to", first)

    post = (await kairos.ok("--json", "posts", "show", reply)).json()
    assert post["parent_post_id"] == first


async def test_thread_creates_the_parts_chained_and_scheduled(
    kairos: Kairos, account_id: str
) -> None:
    ran = await kairos.ok(
        "posts", "thread", "1/3 first", "2/3 second", "3/3 third",
        "--account", account_id, "--at", "2030-03-01T12:00:00Z",
    )  # fmt: skip

    ids = ran.stdout.split()
    assert len(ids) == 3
    assert all(UUID.fullmatch(i) for i in ids)
    shown = [(await kairos.ok("--json", "posts", "show", i)).json() for i in ids]
    assert [p["content"] for p in shown] == ["1/3 first", "2/3 second", "3/3 third"]
    assert [p.get("parent_post_id", "") for p in shown] == ["", ids[0], ids[1]]
    assert {p["status"] for p in shown} == {"scheduled"}
    assert {p["scheduled_at"] for p in shown} == {"2030-03-01T12:00:00Z"}


async def test_a_thread_with_a_refused_part_leaves_no_part_behind(
    kairos: Kairos, account_id: str
) -> None:
    marker = uuid.uuid4().hex
    ran = await kairos(
        "posts", "thread", f"fine {marker}", "x" * 100_001, f"also fine {marker}",
        "--account", account_id, "--at", "in 1h",
    )  # fmt: skip

    assert ran.code == 2, str(ran)  # the api's INVALID_ARGUMENT
    assert "part 2 was refused" in ran.stderr
    assert "content" in ran.stderr
    listed = (await kairos.ok("--json", "posts", "list", "--limit", "100")).json()
    live = [p for p in listed["posts"] if marker in p["content"]]
    assert live == [], live


async def test_a_thread_of_one_part_is_a_usage_error(kairos: Kairos, account_id: str) -> None:
    ran = await kairos("posts", "thread", "alone", "--account", account_id)

    assert ran.code == 2
    assert "at least two parts" in ran.stderr
