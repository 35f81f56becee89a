"""Tables that fit the width they are printed in: ids whole, every other column still readable.

A `FitTable` is laid out anew for each width it is rendered at (a terminal, a `Live` view, a
pipe). Key columns (ids, which other commands take as arguments) are printed whole and on one
line. The other columns shrink, wrapping their words, down to a floor: their longest word, at
most `WORD_FLOOR` characters. When even the floors do not fit, or a column marked `under` would
be left too narrow, those columns move beneath the row's first key column (the id on the first
line, its content or handle on the lines below it) and the rest share what is left. Only when
that does not fit either do words break (folded onto the next line, never cut off): no column
is squeezed to nothing, as rich's own shrinking does at 80 columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text, TextType

#: The narrowest a column becomes before its words break, unless it says otherwise.
WORD_FLOOR = 10
#: Characters between two columns.
GAP = 2


@dataclass(frozen=True)
class Column:
    """One column of a `FitTable`."""

    header: str
    #: An id (or anything else a command takes back): printed whole, on one line.
    key: bool = False
    #: Shown beneath the first key column instead of beside it when the columns do not fit side
    #: by side, or when this one would get fewer than this many characters there (0: never
    #: beneath; 1: only when the columns do not fit).
    under: int = 0
    #: "left" or "right".
    justify: str = "left"
    #: The narrowest this column becomes before its words break (default: its longest word, at
    #: most WORD_FLOOR).
    floor: int | None = None


@dataclass(frozen=True)
class _Row:
    cells: tuple[Text, ...]
    end_section: bool


@dataclass(frozen=True)
class _Layout:
    """The columns as they will be printed: each a header and one Text per row."""

    headers: list[Text]
    cells: list[list[Text]]
    specs: list[Column]

    #: Per column, the width below which its keys would be cut (0: no key in it).
    keys: list[int]

    def natural(self, index: int) -> int:
        return max(_width(text) for text in (self.headers[index], *self.cells[index]))

    def floor(self, index: int) -> int:
        spec = self.specs[index]
        natural = self.natural(index)
        if spec.key:
            return natural
        longest_word = max(_longest_word(t) for t in (self.headers[index], *self.cells[index]))
        floor = spec.floor if spec.floor is not None else min(longest_word, WORD_FLOOR)
        return min(natural, max(floor, self.keys[index]))


class FitTable:
    """A table whose layout follows the width it is rendered at (see the module notes)."""

    def __init__(self, columns: Sequence[Column], *, title: str = "", caption: str = "") -> None:
        self.columns = list(columns)
        self.title = title
        self.caption = caption
        self.rows: list[_Row] = []

    def add_row(self, *cells: TextType, end_section: bool = False) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns")
        texts = tuple(Text(cell) if isinstance(cell, str) else cell for cell in cells)
        self.rows.append(_Row(texts, end_section))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.table(options.max_width)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        widest = self._layout(stacked=False)
        narrowest = self._layout(stacked=True)
        return Measurement(
            min(_needed(narrowest.keys), options.max_width),
            min(_needed(_naturals(widest)), options.max_width),
        )

    def table(self, width: int) -> Table:
        """The rich Table laid out for `width` columns."""
        layout = self._layout(stacked=False)
        widths = _widths(layout, width)
        squeezed = any(
            widths[i] < min(spec.under, layout.natural(i)) for i, spec in enumerate(layout.specs)
        )
        if squeezed or _needed([layout.floor(i) for i in range(len(layout.specs))]) > width:
            layout = self._layout(stacked=True)
            widths = _widths(layout, width)
        return _render(layout, self.title, self.caption, self.rows, widths)

    def _layout(self, *, stacked: bool) -> _Layout:
        specs = list(self.columns)
        columns = [[row.cells[i] for row in self.rows] for i in range(len(specs))]
        headers = [Text(spec.header) for spec in specs]
        first_key = next((i for i, spec in enumerate(specs) if spec.key), None)
        keys = [
            max(_width(t) for t in (headers[i], *columns[i])) if spec.key else 0
            for i, spec in enumerate(specs)
        ]
        if not stacked or first_key is None or not any(spec.under for spec in specs):
            return _Layout(headers, columns, specs, keys)
        under = [i for i, spec in enumerate(specs) if spec.under and i != first_key]
        kept = [i for i in range(len(specs)) if i not in under]
        merged_header = Text("\n").join([headers[first_key], *(headers[i] for i in under)])
        # Headers sit on their last line: pad the others so that all start on the first.
        for i in kept:
            if i != first_key:
                headers[i] = Text("\n" * len(under)).join([headers[i], Text()])
        merged_cells = [
            Text("\n").join([columns[first_key][row], *(columns[i][row] for i in under)])
            for row in range(len(self.rows))
        ]
        # The merged column keeps the width of its widest key line; other lines wrap inside it.
        key_width = max(keys[i] for i in (first_key, *under))
        merged_spec = Column(specs[first_key].header)
        return _Layout(
            [merged_header if i == first_key else headers[i] for i in kept],
            [merged_cells if i == first_key else columns[i] for i in kept],
            [merged_spec if i == first_key else specs[i] for i in kept],
            [key_width if i == first_key else keys[i] for i in kept],
        )


def _width(text: Text) -> int:
    return max((cell_len(line) for line in text.plain.split("\n")), default=0)


def _longest_word(text: Text) -> int:
    return max((cell_len(word) for word in text.plain.split()), default=0)


def _naturals(layout: _Layout) -> list[int]:
    return [layout.natural(i) for i in range(len(layout.specs))]


def _needed(widths: Sequence[int]) -> int:
    return sum(widths) + GAP * (len(widths) - 1)


def _widths(layout: _Layout, width: int) -> list[int]:
    """Column widths for `width` columns: keys whole; the others as wide as they need or, when
    that is too much, an equal share (widest reduced first) never below their floors; below the
    floors only when those do not fit either (then in proportion to them)."""
    naturals = _naturals(layout)
    if _needed(naturals) <= width:
        return naturals
    count = len(naturals)
    floors = [layout.floor(i) for i in range(count)]
    fixed = [i for i in range(count) if floors[i] == naturals[i]]
    flexible = [i for i in range(count) if i not in fixed]
    budget = width - GAP * (count - 1) - sum(naturals[i] for i in fixed)
    widths = list(naturals)
    if sum(floors[i] for i in flexible) > budget:
        # Not even the floors fit: every column gives up width in proportion to its floor
        # above its keys (its words fold), keys never.
        budget = width - GAP * (count - 1) - sum(layout.keys)
        room = [floors[i] - layout.keys[i] for i in range(count)]
        total = sum(room) or 1
        for i in range(count):
            widths[i] = layout.keys[i] + max(1 if room[i] else 0, room[i] * max(budget, 0) // total)
        return widths
    level = 0
    while sum(_level(naturals, floors, i, level + 1) for i in flexible) <= budget:
        level += 1
        if all(_level(naturals, floors, i, level) == naturals[i] for i in flexible):
            break
    for i in flexible:
        widths[i] = _level(naturals, floors, i, level)
    spare = budget - sum(widths[i] for i in flexible)
    for i in sorted(flexible, key=lambda i: -naturals[i]):  # the widest wraps the most
        extra = min(spare, naturals[i] - widths[i])
        widths[i] += extra
        spare -= extra
    return widths


def _level(naturals: list[int], floors: list[int], index: int, level: int) -> int:
    return min(naturals[index], max(floors[index], level))


def _render(
    layout: _Layout, title: str, caption: str, rows: Sequence[_Row], widths: Sequence[int]
) -> Table:
    table = Table(
        title=title or None,
        title_justify="left",
        caption=caption or None,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    for spec, header, width in zip(layout.specs, layout.headers, widths, strict=True):
        table.add_column(
            header,
            justify="right" if spec.justify == "right" else "left",
            no_wrap=spec.key,
            overflow="fold",
            width=width,
        )
    for index, row in enumerate(rows):
        table.add_row(*(column[index] for column in layout.cells), end_section=row.end_section)
    return table
