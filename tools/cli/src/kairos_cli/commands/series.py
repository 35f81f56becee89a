"""`kairos series`: list, show, edit, pause, resume and delete recurring series, and preview a
rule. `kairos posts create --repeat RULE` creates one (`create_series` here)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from google.protobuf.field_mask_pb2 import FieldMask

from kairos.posts.v1 import posts_pb2, series_pb2
from kairos_cli.runtime import (
    EXIT_USAGE,
    Options,
    call_api,
    fail,
    hint,
    message_dict,
    options,
    print_json,
    say,
)
from kairos_cli.when import When, load_zone, show

app = typer.Typer(help="List, show, edit, pause, resume and delete recurring series.")

SeriesId = Annotated[str, typer.Argument(metavar="ID", help="The series id.")]
RULE_HELP = (
    'An RFC 5545 rule, e.g. "FREQ=WEEKLY;BYDAY=MO,WE;COUNT=10", "FREQ=DAILY;INTERVAL=2", or '
    'with excluded dates "RRULE:FREQ=WEEKLY\\nEXDATE:20270315T090000" (local times).'
)
SCOPES = {
    "this": series_pb2.SERIES_SCOPE_THIS,
    "following": series_pb2.SERIES_SCOPE_FOLLOWING,
    "all": series_pb2.SERIES_SCOPE_ALL,
}
Scope = Annotated[
    str,
    typer.Option(
        "--scope",
        metavar="SCOPE",
        help="this (one occurrence), following (it and the later ones) or all.",
    ),
]
Occurrence = Annotated[
    str,
    typer.Option(
        "--post", metavar="POST_ID", help="The occurrence a `this` or `following` change names."
    ),
]


def start_of(when: When, zone_name: str) -> posts_pb2.LocalDateTime:
    """DTSTART from a WHEN: its wall time, or an instant's wall time in `zone_name`."""
    if when.wall_time:
        return posts_pb2.LocalDateTime(date_time=when.wall_time, time_zone=when.zone)
    instant = when.fixed().instant or datetime.now(UTC)
    wall = instant.astimezone(load_zone(zone_name)).replace(tzinfo=None, microsecond=0)
    return posts_pb2.LocalDateTime(date_time=wall.isoformat(), time_zone=zone_name)


def create_series(
    ctx: typer.Context,
    request: posts_pb2.CreatePostRequest,
    rule: str,
    when: When | None,
    zone_name: str,
) -> None:
    """`posts create --repeat`: the post's fields as the template, --at as the first time."""
    opts = options(ctx)
    if when is None:
        fail(EXIT_USAGE, "--repeat needs --at, the first occurrence")
    template = series_pb2.SeriesTemplate(
        content=request.content,
        media_urls=request.media_urls,
        media_ids=request.media_ids,
        targets=request.targets,
        campaign=request.campaign,
        tags=request.tags,
        notes=request.notes,
        approval_required=request.approval_required,
    )
    if request.HasField("stale_after"):
        template.stale_after.CopyFrom(request.stale_after)
    created = call_api(
        ctx,
        lambda client: client.create_series(
            series_pb2.CreateSeriesRequest(
                template=template,
                recurrence=series_pb2.Recurrence(
                    rule=rule.replace("\\n", "\n"), start=start_of(when, zone_name)
                ),
            )
        ),
    )
    if opts.json:
        print_json(created)
        return
    say(created.series.id)
    hint(f"series {created.series.id}: {len(created.occurrences)} occurrence(s) scheduled so far")
    for post in created.occurrences[:5]:
        hint(f"  {show(post.scheduled_at, opts.zone)}  post {post.id}")


def _lines(series: series_pb2.Series, opts: Options) -> list[str]:
    status = series_pb2.SeriesStatus.Name(series.status).removeprefix("SERIES_STATUS_").lower()
    start = series.recurrence.start
    lines = [
        f"series {series.id} ({status})",
        f"  rule:     {series.recurrence.rule.replace(chr(10), ' ')}",
        f"  start:    {start.date_time} {start.time_zone}",
        f"  content:  {series.template.content}",
        f"  accounts: {', '.join(t.account_id for t in series.template.targets)}",
        f"  made up to {show(series.materialised_until, opts.zone)}",
    ]
    if series.status_reason:
        lines.append(f"  reason:   {series.status_reason}")
    if series.split_from:
        lines.append(f"  split from series {series.split_from}")
    return lines


def _print(series: series_pb2.Series, opts: Options) -> None:
    if opts.json:
        print_json(series)
    else:
        for line in _lines(series, opts):
            say(line)


@app.command("list")
def list_series(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100, help="At most this many.")] = 50,
) -> None:
    """The tenant's series, newest first."""
    opts = options(ctx)
    found = call_api(
        ctx, lambda client: client.list_series(series_pb2.ListSeriesRequest(page_size=limit))
    )
    if opts.json:
        print_json({"series": [message_dict(s) for s in found.series]})
        return
    if not found.series:
        say("no series")
    for series in found.series:
        status = series_pb2.SeriesStatus.Name(series.status).removeprefix("SERIES_STATUS_")
        rule = series.recurrence.rule.splitlines()[0].removeprefix("RRULE:")
        say(f"{series.id}  {status.lower():<7} {rule}  {series.template.content[:40]!r}")


@app.command("show")
def show_series(ctx: typer.Context, series_id: SeriesId) -> None:
    """One series: its rule, start, template and how far ahead its posts exist."""
    opts = options(ctx)
    _print(call_api(ctx, lambda client: client.get_series(series_id)), opts)


@app.command("edit")
def edit(
    ctx: typer.Context,
    series_id: SeriesId,
    scope: Scope = "all",
    post: Occurrence = "",
    content: Annotated[
        str | None, typer.Option("--content", metavar="TEXT", help="New text.")
    ] = None,
    rule: Annotated[
        str | None, typer.Option("--rule", metavar="RULE", help="A new rule. " + RULE_HELP)
    ] = None,
    start: Annotated[
        str | None,
        typer.Option("--start", metavar="LOCAL", help='New first time, e.g. "2027-01-04T09:00".'),
    ] = None,
    tz: Annotated[
        str | None, typer.Option("--tz", metavar="ZONE", help="Zone of a new --start.")
    ] = None,
) -> None:
    """Change one occurrence, it and the following ones, or the whole series."""
    opts = options(ctx)
    if scope not in SCOPES:
        fail(EXIT_USAGE, f"--scope takes this, following or all, got {scope!r}")
    request = series_pb2.UpdateSeriesRequest(series_id=series_id, scope=SCOPES[scope], post_id=post)
    paths: list[str] = []
    if content is not None:
        request.template.content = content
        paths.append("content")
    if rule is not None or start is not None or tz is not None:
        now = call_api(ctx, lambda client: client.get_series(series_id)).recurrence
        request.recurrence.rule = (rule or now.rule).replace("\\n", "\n")
        request.recurrence.start.date_time = start or now.start.date_time
        request.recurrence.start.time_zone = tz or now.start.time_zone
        paths.append("recurrence")
    if not paths:
        fail(EXIT_USAGE, "say what changes: --content, --rule, --start or --tz")
    request.update_mask.CopyFrom(FieldMask(paths=paths))
    updated = call_api(ctx, lambda client: client.update_series(request))
    if opts.json:
        print_json(updated)
    elif updated.HasField("post"):
        say(f"post {updated.post.id} changed (revision {updated.post.revision})")
    else:
        _print(updated.series, opts)


@app.command("pause")
def pause(ctx: typer.Context, series_id: SeriesId) -> None:
    """Stop making occurrences; the unpublished future ones are cancelled."""
    _print(call_api(ctx, lambda client: client.pause_series(series_id)), options(ctx))


@app.command("resume")
def resume(ctx: typer.Context, series_id: SeriesId) -> None:
    """Make occurrences again, from now on."""
    _print(call_api(ctx, lambda client: client.resume_series(series_id)), options(ctx))


@app.command("delete")
def delete(
    ctx: typer.Context, series_id: SeriesId, scope: Scope = "all", post: Occurrence = ""
) -> None:
    """Delete one occurrence, it and the following ones, or the series; published posts stay."""
    if scope not in SCOPES:
        fail(EXIT_USAGE, f"--scope takes this, following or all, got {scope!r}")
    cancelled = call_api(ctx, lambda client: client.delete_series(series_id, SCOPES[scope], post))
    opts = options(ctx)
    if opts.json:
        print_json({"cancelled": cancelled})
    else:
        say(f"{cancelled} unpublished occurrence(s) cancelled")


@app.command("preview")
def preview(
    ctx: typer.Context,
    rule: Annotated[str, typer.Argument(metavar="RULE", help=RULE_HELP)],
    start: Annotated[
        str, typer.Option("--start", metavar="LOCAL", help='First time, e.g. "2027-01-04T09:00".')
    ],
    tz: Annotated[
        str, typer.Option("--tz", metavar="ZONE", help="The rule's zone (default: global --tz).")
    ] = "",
    count: Annotated[int, typer.Option("--count", min=1, max=100, help="How many.")] = 10,
) -> None:
    """The next instants of a rule, without saving it."""
    opts = options(ctx)
    request = series_pb2.PreviewRecurrenceRequest(
        recurrence=series_pb2.Recurrence(
            rule=rule.replace("\\n", "\n"),
            start=posts_pb2.LocalDateTime(date_time=start, time_zone=tz or opts.zone_name),
        ),
        count=count,
    )
    found = call_api(ctx, lambda client: client.preview_recurrence(request))
    if opts.json:
        print_json(found)
        return
    for instant, wall in zip(found.instants, found.local_times, strict=True):
        say(f"{wall}  ({instant.ToDatetime(tzinfo=UTC).isoformat()})")
