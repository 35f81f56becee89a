"""`kairos posts import FILE.csv` against the in-process api (PostgreSQL and SQLite)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import pytest
from integration.cli.conftest import Kairos

from kairos.posts.v1 import posts_pb2
from kairos_client import KairosClient, KairosError

UNKNOWN_ID = "0190a6d2-0000-7000-8000-000000000000"


def write_csv(folder: Path, *rows: str, name: str = "posts.csv") -> Path:
    path = folder / name
    path.write_text("content,accounts,at,zone,tags,campaign,recurrence\n" + "".join(rows))
    return path


async def listed(kairos: Kairos) -> list[dict[str, object]]:
    posts: list[dict[str, object]] = (await kairos.ok("--json", "posts", "list")).json()["posts"]
    return sorted(posts, key=lambda post: str(post["content"]))


async def test_a_dry_run_reports_every_refused_row_by_line_and_writes_nothing(
    kairos: Kairos, account_id: str, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path,
        f"fine,{account_id},2030-07-01 09:00,,,,\n",
        f"bad time,{account_id},next tuesday,,,,\n",
        f'"unknown\naccount",{UNKNOWN_ID},,,,,\n',
        f"repeats,{account_id},,,,,FREQ=WEEKLY\n",
        f"also fine,{account_id},in 2h,,a;b,spring,\n",
    )
    ran = await kairos("posts", "import", str(path), "--dry-run")

    assert ran.code == 2, str(ran)
    assert "2 rows would be created, 0 already imported, 3 refused" in ran.stdout
    assert ran.stderr.startswith("kairos: error: 3 rows refused:\n")
    lines = [line.strip() for line in ran.stderr.splitlines()[1:]]
    assert [line.split(": ")[0:2] for line in lines] == [
        ["posts.csv:3", "at"],
        ["posts.csv:4", "accounts[0]"],  # its content spans lines 4 and 5
        ["posts.csv:6", "at"],  # a recurring row needs its first occurrence
    ]
    assert "first occurrence" in lines[2]
    assert await listed(kairos) == []


async def test_a_recurring_row_becomes_a_series_once_however_often_it_is_imported(
    kairos: Kairos, account_id: str, tmp_path: Path
) -> None:
    # The first occurrence as a wall time: a relative one ("in 1h") is a new instant at each
    # import, so a second import a second later is another request, refused as changed.
    first = (datetime.now(ZoneInfo("Europe/Berlin")) + timedelta(days=2)).strftime("%Y-%m-%dT10:00")
    path = write_csv(
        tmp_path,
        f"every day,{account_id},{first},Europe/Berlin,,,FREQ=DAILY;COUNT=3\n",
        f"bad rule,{account_id},in 1h,,,,FREQ=SOMETIMES\n",
        f"once,{account_id},in 2h,,,,\n",
    )
    dry = await kairos("posts", "import", str(path), "--dry-run")
    assert dry.code == 2, str(dry)
    assert "posts.csv:3: recurrence" in dry.stderr, dry.stderr

    ran = await kairos("posts", "import", str(path), "--skip-invalid")
    assert ran.code == 2, str(ran)  # a row was refused, though the others were imported
    assert "2 posts created, 0 already imported, 1 rows refused" in ran.stdout, str(ran)
    again = await kairos("posts", "import", str(path), "--skip-invalid")
    assert again.code == 2, str(again)
    # The plain row is known by its request_id; the series row is answered with its series.
    assert "1 posts created, 1 already imported, 1 rows refused" in again.stdout, str(again)

    series = (await kairos.ok("--json", "series", "list")).json()["series"]
    assert len(series) == 1, series
    assert series[0]["recurrence"]["rule"] == "RRULE:FREQ=DAILY;COUNT=3"
    posts = await listed(kairos)
    assert sorted(str(p["content"]) for p in posts) == ["every day"] * 3 + ["once"]


async def test_an_import_creates_every_row_and_running_it_again_creates_nothing_twice(
    kairos: Kairos, account_id: str, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path,
        f"a local time,{account_id},2030-07-01 09:00,America/New_York,,,\n",
        f"an instant,{account_id},2030-07-01T09:00:00Z,,launch; spring sale,spring,\n",
        f"a draft,{account_id},,,,,\n",
    )
    ran = await kairos.ok("posts", "import", str(path))
    assert "3 posts created, 0 already imported, 0 rows refused" in ran.stdout
    posts = await listed(kairos)
    assert [p["content"] for p in posts] == ["a draft", "a local time", "an instant"]
    draft, local, instant = posts
    statuses = (draft["status"], local["status"], instant["status"])
    assert statuses == ("draft", "scheduled", "scheduled")
    assert (local["scheduled_at"], local["time_zone"]) == (
        "2030-07-01T13:00:00Z",
        "America/New_York",
    )
    assert (instant["tags"], instant["campaign"]) == (["launch", "spring sale"], "spring")

    again = await kairos.ok("--json", "posts", "import", str(path))
    report = again.json()
    assert (report["created"], report["already_imported"]) == (0, 3)
    assert {p["post_id"] for p in report["posts"]} == {p["id"] for p in posts}
    assert len(await listed(kairos)) == 3


async def test_a_refused_row_stops_the_import_unless_told_to_skip_it(
    kairos: Kairos, account_id: str, tmp_path: Path
) -> None:
    rows = [
        f"first,{account_id},,,,,\n",
        f"second,{UNKNOWN_ID},,,,,\n",
        f"third,{account_id},,,,,\n",
    ]
    path = write_csv(tmp_path, *rows)
    refused = await kairos("posts", "import", str(path))
    assert refused.code == 2
    assert refused.stdout == ""
    assert "nothing was imported" in refused.stderr
    assert "posts.csv:3: accounts[0]:" in refused.stderr
    assert await listed(kairos) == []
    as_json = await kairos("--json", "posts", "import", str(path))
    assert as_json.code == 2
    assert as_json.json()["refused_lines"] == 1
    error = json.loads(as_json.stderr)
    assert error["code"] == "INVALID_ARGUMENT"
    assert [v["field"] for v in error["violations"]] == ["posts.csv:3: accounts[0]"]

    skipped = await kairos("posts", "import", str(path), "--skip-invalid")
    assert skipped.code == 2
    assert "2 posts created, 0 already imported, 1 rows refused" in skipped.stdout
    # Fixed, the same file imports the row it refused, and only that one.
    rows[1] = f"second,{account_id},,,,,\n"
    fixed = await kairos.ok("posts", "import", str(write_csv(tmp_path, *rows)))
    assert "1 posts created, 2 already imported" in fixed.stdout
    assert [p["content"] for p in await listed(kairos)] == ["first", "second", "third"]
    # A row changed after it was imported is refused, never imported a second time.
    rows[0] = f"first edited,{account_id},,,,,\n"
    changed = await kairos("posts", "import", str(write_csv(tmp_path, *rows)), "--dry-run")
    assert changed.code == 2
    assert "posts.csv:2: row: this line was imported before with other values" in changed.stderr
    # The same file under another import id is another import.
    other = await kairos.ok(
        "posts", "import", str(path), "--import-id", "june", "--batch-size", "2"
    )
    assert "3 posts created" in other.stdout
    assert len(await listed(kairos)) == 6


async def test_an_import_that_failed_half_way_is_finished_by_running_it_again(
    kairos: Kairos, account_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_csv(tmp_path, *(f"post {n},{account_id},,,,,\n" for n in range(3)))
    sent = KairosClient.batch_create_posts
    calls = 0

    async def failing_second_create(
        client: KairosClient, items: Sequence[posts_pb2.CreatePostRequest], **options: Any
    ) -> list[posts_pb2.BatchCreatePostsResult]:
        nonlocal calls
        if not options.get("validate_only"):
            calls += 1
            if calls == 2:
                raise KairosError(grpc.StatusCode.UNAVAILABLE, "the api went away")
        return await sent(client, items, **options)

    monkeypatch.setattr(KairosClient, "batch_create_posts", failing_second_create)
    failed = await kairos("posts", "import", str(path), "--batch-size", "1")
    assert failed.code == 6, str(failed)
    assert "the import stopped at line 3; the same command imports the rest" in failed.stderr
    assert [p["content"] for p in await listed(kairos)] == ["post 0"]

    monkeypatch.setattr(KairosClient, "batch_create_posts", sent)
    again = await kairos.ok("posts", "import", str(path), "--batch-size", "1")
    assert "2 posts created, 1 already imported" in again.stdout
    assert [p["content"] for p in await listed(kairos)] == ["post 0", "post 1", "post 2"]
