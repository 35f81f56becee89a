"""`kairos posts import FILE.csv`: many posts from a CSV file, sent with BatchCreatePosts.

The file has a header row naming its columns, in any order (only `content` and `accounts` are
required): content, accounts, at, zone, media, tags, campaign, recurrence. List cells (accounts,
media, tags) separate their values with ";". Every row is checked before anything is created:
first here (times, zones, cells), then by the api with `validate_only`, and each refused row is
reported by its line in the file. Without --skip-invalid one refused row means nothing is
created.

Each row is sent with a request_id made of the import id (the file's name unless --import-id
says otherwise) and its line, so running the same import again, after a failure or a timeout,
creates nothing twice: a row already imported is answered with its post. A row changed since it
was imported is refused (its request_id now stands for another request), never created twice.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kairos.posts.v1 import posts_pb2, series_pb2
from kairos_cli.commands.series import start_of
from kairos_cli.runtime import (
    EXIT_USAGE,
    Options,
    call_api,
    fail,
    hint,
    options,
    print_json,
    say,
)
from kairos_cli.when import WhenError, load_zone, parse_when
from kairos_client import KairosClient, KairosError

#: The columns a file may have; `content` and `accounts` must be there.
COLUMNS = ("content", "accounts", "at", "zone", "media", "tags", "campaign", "recurrence")
REQUIRED = ("content", "accounts")
#: The most rows one BatchCreatePosts takes.
MAX_BATCH = 1_000
#: The most bytes of items one call carries, so that the request and its answer (each post
#: comes back with ids and times) stay well inside gRPC's 4 MiB message limit.
MAX_BATCH_BYTES = 1 << 20
CHANGED_SINCE_IMPORTED = (
    "this line was imported before with other values (its request_id is taken); restore it, "
    "or import the file as new posts with another --import-id"
)
RECURRENCE_NEEDS_AT = "a recurring row needs `at`: its first occurrence"

_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
#: Where the api's field names point in the file: its first path segment, by column.
_COLUMN_OF = {
    "targets": "accounts",
    "media_urls": "media",
    "media_ids": "media",
    "schedule": "at",
}


@dataclass(frozen=True)
class Row:
    """One row of the file, read into the request it becomes; a row with a `recurrence` also
    becomes a series (its request is then the first occurrence, checked as a post would be)."""

    line: int
    request: posts_pb2.CreatePostRequest
    recurrence: series_pb2.Recurrence | None = None

    def series_request(self) -> series_pb2.CreateSeriesRequest:
        """The CreateSeries this recurring row is, under the row's request_id."""
        assert self.recurrence is not None
        made = self.request
        template = series_pb2.SeriesTemplate(
            content=made.content,
            media_urls=made.media_urls,
            media_ids=made.media_ids,
            targets=made.targets,
            campaign=made.campaign,
            tags=made.tags,
        )
        return series_pb2.CreateSeriesRequest(
            template=template, recurrence=self.recurrence, request_id=made.request_id
        )


@dataclass
class Report:
    """What an import found and did, line by line."""

    #: (line, column or field, description), in the order found.
    errors: list[tuple[int, str, str]] = field(default_factory=list)
    #: (line, post id, whether an earlier import of the line made it); in a dry run the lines
    #: that would be created have no post id yet.
    posts: list[tuple[int, str, bool]] = field(default_factory=list)

    def refused_lines(self) -> set[int]:
        return {line for line, _, _ in self.errors}

    def counts(self) -> tuple[int, int, int]:
        """Lines created (or that would be), lines already imported, lines refused."""
        repeated = sum(1 for _, _, again in self.posts if again)
        return len(self.posts) - repeated, repeated, len(self.refused_lines())

    def as_json(self, *, dry_run: bool) -> dict[str, Any]:
        created, repeated, refused = self.counts()
        return {
            "dry_run": dry_run,
            "would_create" if dry_run else "created": created,
            "already_imported": repeated,
            "refused_lines": refused,
            "posts": [
                {"line": line, "post_id": post_id, "already_imported": repeated}
                for line, post_id, repeated in self.posts
            ],
            "errors": [
                {"line": line, "field": name, "description": text}
                for line, name, text in self.errors
            ],
        }


def request_id(import_id: str, line: int) -> str:
    """The request_id of one line of an import: the same for the same import id and line."""
    digest = hashlib.sha256(import_id.encode()).hexdigest()[:16]
    return f"import-{digest}-line-{line}"


def read_rows(text: str, *, zone: str, import_id: str, report: Report) -> list[Row]:
    """The rows of a CSV text as requests; what cannot be read goes to `report` by line.

    Raises ValueError when the header itself is wrong (the whole file is refused).
    """
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header = next(reader, None)
    if header is None:
        raise ValueError("the file is empty: it needs a header row naming its columns")
    names = [name.strip().lower() for name in header]
    unknown = [name for name in names if name not in COLUMNS]
    if unknown:
        raise ValueError(
            f"unknown column {unknown[0]!r} in the header; the columns are {', '.join(COLUMNS)}"
        )
    missing = [name for name in REQUIRED if name not in names]
    if missing:
        raise ValueError(f"the header has no {missing[0]!r} column")
    if len(set(names)) != len(names):
        raise ValueError("the header names a column twice")
    rows: list[Row] = []
    while True:
        line = reader.line_num + 1
        try:
            cells = next(reader, None)
        except csv.Error as error:
            report.errors.append((line, "csv", str(error)))
            break  # the rest of the file cannot be told apart reliably
        if cells is None:
            break
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) > len(names):
            report.errors.append((line, "csv", f"{len(cells)} cells; the header has {len(names)}"))
            continue
        values = dict(zip(names, cells, strict=False))
        found: list[tuple[str, str]] = []
        request = _request(values, zone, found)
        recurrence = _recurrence(values, zone, found) if not found else None
        if found:
            report.errors.extend((line, name, text) for name, text in found)
            continue
        request.request_id = request_id(import_id, line)
        rows.append(Row(line, request, recurrence))
    return rows


def _recurrence(
    values: dict[str, str], default_zone: str, found: list[tuple[str, str]]
) -> series_pb2.Recurrence | None:
    """A recurring row's rule and first occurrence (its `at`, as a wall-clock time in its
    zone), or None for a row without `recurrence`."""
    rule = values.get("recurrence", "").strip()
    if not rule:
        return None
    at = values.get("at", "").strip()
    if not at:
        found.append(("at", RECURRENCE_NEEDS_AT))
        return None
    zone = values.get("zone", "").strip() or default_zone
    when = parse_when(at, zone)  # read once already by _request, without error
    return series_pb2.Recurrence(rule=rule.replace("\\n", "\n"), start=start_of(when, zone))


def _request(
    values: dict[str, str], default_zone: str, found: list[tuple[str, str]]
) -> posts_pb2.CreatePostRequest:
    """One row's request; what is wrong with its cells goes to `found` as (column, text)."""
    for name, value in values.items():
        if "\x00" in value:
            found.append((name, "must not contain NUL characters"))
    request = posts_pb2.CreatePostRequest(
        content=values.get("content", ""),
        targets=[posts_pb2.TargetSpec(account_id=a) for a in _split(values.get("accounts", ""))],
        tags=_split(values.get("tags", "")),
        campaign=values.get("campaign", "").strip(),
    )
    for item in _split(values.get("media", "")):
        (request.media_ids if _UUID.fullmatch(item) else request.media_urls).append(item)
    zone = values.get("zone", "").strip()
    if zone:
        try:
            load_zone(zone)
        except WhenError as error:
            found.append(("zone", str(error)))
            return request
    at = values.get("at", "").strip()
    if at:
        try:
            when = parse_when(at, zone or default_zone)
        except WhenError as error:
            found.append(("at", str(error)))
            return request
        if when.now:
            found.append(("at", '"now" cannot be imported; give an instant or "in 10m"'))
        else:
            request.schedule.CopyFrom(when.schedule())
    return request


def _series_column(violation_field: str) -> str:
    """A CreateSeries or PreviewRecurrence field path as the file's column."""
    if violation_field.startswith("recurrence.start"):
        return "at"
    if violation_field.startswith("recurrence"):
        return "recurrence"
    return column_of(violation_field.removeprefix("template."))


def _split(cell: str) -> list[str]:
    """The values of a list cell: separated by ";", spaces around them ignored."""
    return [part.strip() for part in cell.split(";") if part.strip()]


def column_of(violation_field: str) -> str:
    """An api field path within an item (`targets[1].account_id`) as the file's column."""
    head, _, rest = violation_field.partition(".")
    name, bracket, index = head.partition("[")
    if name == "schedule" and rest.startswith("local.time_zone"):
        return "zone"
    column = _COLUMN_OF.get(name)
    if column is None:
        return violation_field
    if name == "targets" and bracket:
        return f"accounts[{index}"
    return column


def batches(rows: Sequence[Row], size: int) -> Iterator[list[Row]]:
    """`rows` in order, in batches of at most `size` rows and MAX_BATCH_BYTES bytes."""
    batch: list[Row] = []
    weight = 0
    for row in rows:
        cost = row.request.ByteSize() + 8
        if batch and (len(batch) >= size or weight + cost > MAX_BATCH_BYTES):
            yield batch
            batch, weight = [], 0
        batch.append(row)
        weight += cost
    if batch:
        yield batch


async def send(
    client: KairosClient,
    rows: Sequence[Row],
    *,
    size: int,
    validate_only: bool,
    report: Report,
    progress: Progress,
) -> None:
    """Send `rows` in batches, noting each line's post or violations in `report`."""
    task = progress.add_task("checking" if validate_only else "importing", total=len(rows))
    # A recurring row is checked as its first occurrence (the template's checks) and its rule
    # is evaluated once; it is created as a series, one call each, under its request_id.
    recurring = [row for row in rows if row.recurrence is not None]
    if not validate_only:
        rows = [row for row in rows if row.recurrence is None]
    for row in recurring:
        try:
            if validate_only:
                await client.preview_recurrence(
                    series_pb2.PreviewRecurrenceRequest(recurrence=row.recurrence, count=1)
                )
            else:
                made = await client.create_series(row.series_request())
                report.posts.append((row.line, made.series.id, False))
                progress.advance(task)
        except KairosError as error:
            if not error.violations:
                raise
            for name, text in error.violations:
                report.errors.append((row.line, _series_column(name), text))
    for batch in batches(rows, size):
        try:
            results = await client.batch_create_posts(
                [row.request for row in batch], validate_only=validate_only
            )
        except KairosError:
            if not validate_only:
                hint(
                    f"the import stopped at line {batch[0].line}; the same command imports the"
                    " rest and creates nothing twice:"
                )
            raise
        for row, result in zip(batch, results, strict=True):
            if result.violations:
                for violation in result.violations:
                    within = violation.field.partition(".")[2]
                    text = violation.description
                    if within == "request_id":
                        within, text = "", CHANGED_SINCE_IMPORTED
                    report.errors.append((row.line, column_of(within) if within else "row", text))
            else:
                report.posts.append((row.line, result.post.id, result.repeated))
        progress.advance(task, len(batch))


def import_posts(
    ctx: typer.Context,
    path: Annotated[
        Path,
        typer.Argument(
            metavar="FILE.csv",
            exists=True,
            dir_okay=False,
            readable=True,
            help="The CSV file, with a header row (see the README for its columns).",
        ),
    ],
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Check every row (here and with the api); create nothing."),
    ] = False,
    skip_invalid: Annotated[
        bool,
        typer.Option(
            "--skip-invalid",
            help="Create the valid rows even when others are refused (by default one refused "
            "row means nothing is created).",
        ),
    ] = False,
    import_id: Annotated[
        str,
        typer.Option(
            "--import-id",
            metavar="NAME",
            show_default=False,
            help="What the rows' request_ids are made of, with their lines (default: the "
            "file's name). The same id and line is the same post: a new file under an old "
            "name needs a new id.",
        ),
    ] = "",
    tz: Annotated[
        str,
        typer.Option(
            "--tz",
            metavar="ZONE",
            show_default=False,
            help="IANA zone of a local `at` whose row has no `zone` (default: the global --tz).",
        ),
    ] = "",
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size", min=1, max=MAX_BATCH, metavar="N", help="Rows per call to the api."
        ),
    ] = MAX_BATCH,
) -> None:
    """Create posts from a CSV file, checking every row first; errors are reported by line.

    Running the same import again creates nothing twice (each line has its own request_id).
    """
    opts = options(ctx)
    zone = tz.strip() or opts.zone_name
    try:
        load_zone(zone)
        text = path.read_bytes().decode("utf-8-sig")
    except WhenError as error:
        fail(EXIT_USAGE, f"--tz: {error}")
    except UnicodeDecodeError:
        fail(EXIT_USAGE, f"{path}: not UTF-8 text")
    report = Report()
    try:
        rows = read_rows(text, zone=zone, import_id=import_id.strip() or path.name, report=report)
    except ValueError as error:
        fail(EXIT_USAGE, f"{path}: {error}")
    if not rows and not report.errors:
        fail(EXIT_USAGE, f"{path}: no rows to import")

    async def run(client: KairosClient) -> None:
        with _progress(opts) as progress:
            if rows:
                await send(
                    client,
                    rows,
                    size=batch_size,
                    validate_only=True,
                    report=report,
                    progress=progress,
                )
            if dry_run:
                return
            refused = report.refused_lines()
            if refused and not skip_invalid:
                report.posts.clear()
                return
            # Rows imported before are answered already; only the new ones are sent.
            imported = {line for line, _, repeated in report.posts if repeated}
            report.posts[:] = [p for p in report.posts if p[2]]
            valid = [row for row in rows if row.line not in refused | imported]
            if valid:
                await send(
                    client,
                    valid,
                    size=batch_size,
                    validate_only=False,
                    report=report,
                    progress=progress,
                )

    call_api(ctx, run)
    report.errors.sort(key=lambda error: error[0])
    report.posts.sort(key=lambda post: post[0])
    _print(report, opts, path=path, dry_run=dry_run, skip_invalid=skip_invalid)


def _progress(opts: Options) -> Progress:
    """A progress bar on stderr, shown only to a person at a terminal."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(file=sys.stderr),
        transient=True,
        disable=opts.json or not sys.stderr.isatty(),
    )


def _print(report: Report, opts: Options, *, path: Path, dry_run: bool, skip_invalid: bool) -> None:
    """The summary on stdout (the whole report with --json); refused rows end the command with
    exit 2 and an error naming each (`FILE:LINE: column`), as every other command's errors."""
    created, repeated, refused = report.counts()
    stopped = refused and not dry_run and not skip_invalid
    if opts.json:
        print_json(report.as_json(dry_run=dry_run))
    elif dry_run:
        say(
            f"dry run: {created} rows would be created, {repeated} already imported,"
            f" {refused} refused; nothing was written"
        )
    elif not stopped:
        say(f"{created} posts created, {repeated} already imported, {refused} rows refused")
    if not refused:
        return
    message = f"{refused} rows refused"
    if stopped:
        message += (
            "; nothing was imported (fix them and run again, or pass --skip-invalid to import"
            " the others)"
        )
    fail(
        EXIT_USAGE,
        message + ":",
        [f"{path.name}:{line}: {name}: {text}" for line, name, text in report.errors],
        violations=[(f"{path.name}:{line}: {name}", text) for line, name, text in report.errors],
    )
