"""`FitTable` at every width from a narrow terminal to a pipe: keys whole on one line, no line
wider than the width, every other column still showing its words."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from kairos_cli.tables import Column, FitTable

POST = "0190a6d2-0000-7000-8000-000000000001"
ACCOUNT = "0190a6d2-2222-7000-8000-000000000002"


def printed(table: FitTable, width: int) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(table)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(out, str)
    return out


def calendar_like() -> FitTable:
    table = FitTable(
        [
            Column("PLATFORM"),
            Column("TIME"),
            Column("POST", key=True),
            Column("ACCOUNT", key=True, under=1),
            Column("STATUS"),
            Column("CONTENT", under=20),
        ]
    )
    table.add_row(
        "linkedin",
        "09:00:00 CET",
        POST,
        ACCOUNT,
        "partially_published",
        "Aurora rises over the hill",
    )
    return table


@pytest.mark.parametrize("width", range(70, 201, 7))
def test_keys_stay_whole_and_every_column_shows_its_words(width: int) -> None:
    out = printed(calendar_like(), width)

    assert max(len(line.rstrip()) for line in out.splitlines()) <= width, out
    assert POST in out
    assert ACCOUNT in out
    for word in ("PLATFORM", "TIME", "STATUS", "CONTENT", "linkedin", "09:00:00", "Aurora"):
        assert word in out, out


def test_side_by_side_when_it_fits_and_the_row_stacks_when_it_does_not() -> None:
    wide = printed(calendar_like(), 200).splitlines()
    narrow = printed(calendar_like(), 80).splitlines()

    assert any(POST in line and ACCOUNT in line and "Aurora" in line for line in wide)
    post_line = next(i for i, line in enumerate(narrow) if POST in line)
    assert ACCOUNT in narrow[post_line + 1]  # beneath the post id, whole
    assert "Aurora" in narrow[post_line + 2]
    header = narrow[0]
    assert all(name in header for name in ("PLATFORM", "TIME", "POST", "STATUS")), narrow


@pytest.mark.parametrize("width", [45, 50, 60])
def test_a_column_is_never_squeezed_to_nothing(width: int) -> None:
    table = FitTable([Column("ID", key=True), Column("A"), Column("B"), Column("C")])
    table.add_row(POST, "alpha beta", "gamma", "delta epsilon zeta")

    out = printed(table, width)

    [row] = [line for line in out.splitlines() if POST in line]
    assert len(row.split()) == 4, out  # the id, and a start of each other column beside it
