"""Reading the CSV of `kairos posts import`: columns, cells, lines and batches (no api)."""

from __future__ import annotations

import pytest

from kairos.posts.v1 import posts_pb2
from kairos_cli.commands.imports import (
    MAX_BATCH_BYTES,
    RECURRENCE_NEEDS_AT,
    Report,
    Row,
    batches,
    column_of,
    read_rows,
    request_id,
)

MEDIA_ID = "0190a6d2-0000-7000-8000-000000000001"


def read(text: str, import_id: str = "posts.csv") -> tuple[list[Row], Report]:
    report = Report()
    rows = read_rows(text, zone="Europe/Berlin", import_id=import_id, report=report)
    return rows, report


def test_a_row_becomes_the_request_its_cells_describe() -> None:
    rows, report = read(
        "campaign,content,accounts,at,zone,media,tags\n"
        f'spring,"Two\nlines",a1; a2,2030-07-01 09:00,America/New_York,'
        f"https://x.example/a.png;{MEDIA_ID},sale; spring sale\n"
        ",draft,a1,,,,\n"
        ',"in two hours",a1,in 2h,,,\n'
    )
    assert report.errors == []
    assert [row.line for row in rows] == [2, 4, 5]  # a quoted cell spans lines 2 and 3
    first = rows[0].request
    assert first.content == "Two\nlines"
    assert [t.account_id for t in first.targets] == ["a1", "a2"]
    assert first.schedule.local == posts_pb2.LocalDateTime(
        date_time="2030-07-01T09:00:00", time_zone="America/New_York"
    )
    assert list(first.media_urls) == ["https://x.example/a.png"]
    assert list(first.media_ids) == [MEDIA_ID]
    assert (list(first.tags), first.campaign) == (["sale", "spring sale"], "spring")
    assert not rows[1].request.HasField("schedule")
    assert rows[2].request.schedule.after.seconds == 7200
    assert [row.request.request_id for row in rows] == [
        request_id("posts.csv", line) for line in (2, 4, 5)
    ]


def test_request_ids_depend_on_the_import_id_and_the_line_only() -> None:
    assert request_id("posts.csv", 7) == request_id("posts.csv", 7)
    assert len({request_id("posts.csv", 7), request_id("posts.csv", 8), request_id("b", 7)}) == 3
    assert len(request_id("x" * 1000, 10**9)) <= 128


def test_cells_that_cannot_be_read_are_reported_by_line() -> None:
    rows, report = read(
        "content,accounts,at,zone,recurrence\n"
        "fine,a1,,,\n"
        "bad time,a1,next tuesday,,\n"
        "bad zone,a1,2030-01-01 10:00,Mars/Olympus,\n"
        "repeats,a1,,,FREQ=DAILY\n"
        "right now,a1,now,,\n"
        "\n"
        "too many,a1,,,,extra\n"
        "nul \x00,a1,,,\n"
    )
    assert [row.line for row in rows] == [2]
    assert [(line, column) for line, column, _ in report.errors] == [
        (3, "at"),
        (4, "zone"),
        (5, "at"),
        (6, "at"),
        (8, "csv"),
        (9, "content"),
    ]
    assert report.errors[2][2] == RECURRENCE_NEEDS_AT


def test_a_recurring_row_becomes_a_series_from_its_first_occurrence() -> None:
    rows, report = read(
        "content,accounts,at,zone,recurrence\n"
        "weekly,a1,2030-01-07 09:00,Europe/Berlin,FREQ=WEEKLY;BYDAY=MO;COUNT=4\n"
    )
    assert report.errors == []
    [row] = rows
    made = row.series_request()
    assert made.recurrence.rule == "FREQ=WEEKLY;BYDAY=MO;COUNT=4"
    assert made.recurrence.start.time_zone == "Europe/Berlin"
    assert made.recurrence.start.date_time.startswith("2030-01-07T09:00")
    assert made.template.content == "weekly"
    assert [t.account_id for t in made.template.targets] == ["a1"]
    assert made.request_id == row.request.request_id


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("content,accounts,tag\n", "unknown column 'tag'"),
        ("content,at\n", "no 'accounts' column"),
        ("content,accounts,content\n", "twice"),
    ],
)
def test_a_wrong_header_refuses_the_file(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        read(text)


def test_the_apis_fields_are_named_by_the_files_columns() -> None:
    assert column_of("targets[1].account_id") == "accounts[1]"
    assert column_of("targets") == "accounts"
    assert column_of("media_urls[0]") == "media"
    assert column_of("schedule.local.time_zone") == "zone"
    assert column_of("schedule.at") == "at"
    assert column_of("content") == "content"
    assert column_of("tags[2]") == "tags[2]"


def test_batches_hold_at_most_their_size_and_bytes() -> None:
    small = [Row(n, posts_pb2.CreatePostRequest(content="x")) for n in range(2_500)]
    assert [len(b) for b in batches(small, 1_000)] == [1_000, 1_000, 500]
    big = [Row(n, posts_pb2.CreatePostRequest(content="x" * 300_000)) for n in range(7)]
    sizes = [len(b) for b in batches(big, 1_000)]
    assert sum(sizes) == 7
    assert all(n * 300_000 <= MAX_BATCH_BYTES for n in sizes)
    assert [row.line for b in batches(big, 1_000) for row in b] == list(range(7))
