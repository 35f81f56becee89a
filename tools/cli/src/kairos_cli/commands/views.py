"""`kairos calendar`, `kairos stats`, `kairos watch` and `kairos events`: read-only views across
posts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import grpc
import typer
from rich.console import RenderableType
from rich.live import Live

from kairos.events.v1 import events_pb2 as lifecycle_pb2
from kairos.posts.v1 import events_pb2, posts_pb2
from kairos_cli import names, render
from kairos_cli.commands.queue import free_json, free_lines, free_slots_by_day
from kairos_cli.runtime import (
    EXIT_USAGE,
    Options,
    call_api,
    console,
    fail,
    hint,
    message_dict,
    options,
    print_json,
)
from kairos_cli.when import WhenError, parse_instant, show, to_datetime
from kairos_client import KairosClient, KairosError

UPCOMING = [
    posts_pb2.POST_STATUS_SCHEDULED,
    posts_pb2.POST_STATUS_PENDING_APPROVAL,
    posts_pb2.POST_STATUS_PUBLISHING,
]
SETTLED = [
    posts_pb2.POST_STATUS_PUBLISHED,
    posts_pb2.POST_STATUS_PARTIALLY_PUBLISHED,
    posts_pb2.POST_STATUS_FAILED,
    posts_pb2.POST_STATUS_MISSED,
    posts_pb2.POST_STATUS_UNKNOWN,
]
#: How many settled posts `watch` reads to find the most recently settled ones (ListPosts orders
#: by creation, not by when a post settled).
RECENT_WINDOW = 100

Row = tuple[str, posts_pb2.Post, posts_pb2.Target]


def register(app: typer.Typer) -> None:
    app.command("calendar")(calendar)
    app.command("stats")(stats)
    app.command("watch")(watch)
    app.command("events")(events)


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def calendar(
    ctx: typer.Context,
    days: Annotated[
        int,
        typer.Option("--days", metavar="N", min=1, max=92, help="How many days, today included."),
    ] = 7,
    queue: Annotated[
        list[str] | None,
        typer.Option(
            "--queue", metavar="ACCOUNT", help="Also show this account's free queue slots."
        ),
    ] = None,
) -> None:
    """Scheduled posts of the coming days, per local day and platform (and free queue slots)."""
    opts = options(ctx)
    zone = opts.zone
    today = datetime.now(UTC).astimezone(zone).date()
    dates = [today + timedelta(days=n) for n in range(days)]
    request = posts_pb2.ListPostsRequest(
        statuses=UPCOMING, order=posts_pb2.POST_ORDER_SCHEDULED_SOONEST, page_size=100
    )
    request.scheduled_from.FromDatetime(_midnight(dates[0], zone))
    request.scheduled_to.FromDatetime(_midnight(dates[-1] + timedelta(days=1), zone))

    async def run(client: KairosClient) -> list[posts_pb2.Post]:
        return [post async for post in client.iter_posts(request)]

    end = _midnight(dates[-1] + timedelta(days=1), zone)
    free = free_slots_by_day(ctx, queue or [], _midnight(dates[0], zone), end, zone)
    by_day: dict[date, list[Row]] = defaultdict(list)
    for post in call_api(ctx, run):
        moment = to_datetime(post.scheduled_at)
        if moment is None:
            continue
        for target in post.targets:
            by_day[moment.astimezone(zone).date()].append(
                (names.platform_label(target.platform), post, target)
            )
    for rows in by_day.values():
        rows.sort(key=lambda row: (row[0], row[1].scheduled_at.ToNanoseconds(), row[1].id))
    if opts.json:
        days_json = [_day_dict(d, by_day[d], zone) | free_json(free, d) for d in dates]
        print_json({"time_zone": opts.zone_name, "days": days_json})
        return
    out = console()
    for day in dates:
        out.print(render.calendar_day(day, by_day[day], zone))
        free_lines(out, free, day, zone)


def _day_dict(day: date, rows: list[Row], zone: ZoneInfo) -> dict[str, Any]:
    platforms: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for platform, post, target in rows:
        moment = to_datetime(post.scheduled_at)
        platforms[platform].append(
            {
                "post_id": post.id,
                "target_id": target.id,
                "account_id": target.account_id,
                "scheduled_at": moment.isoformat() if moment else None,
                "local_time": moment.astimezone(zone).isoformat() if moment else None,
                "status": names.post_status_label(post.status),
                "series_id": post.series_id,
                "content": (
                    target.content_override if target.HasField("content_override") else post.content
                ),
            }
        )
    return {"date": day.isoformat(), "platforms": dict(platforms)}


def stats(ctx: typer.Context) -> None:
    """Posts by status, targets by platform, and what is due or overdue."""
    opts = options(ctx)
    result = call_api(ctx, lambda client: client.get_stats())
    if opts.json:
        print_json(result)
    else:
        console().print(render.stats_view(result, opts.zone))


async def _snapshot(
    client: KairosClient, limit: int
) -> tuple[list[posts_pb2.Post], list[posts_pb2.Post]]:
    upcoming_request = posts_pb2.ListPostsRequest(
        statuses=UPCOMING, order=posts_pb2.POST_ORDER_SCHEDULED_SOONEST, page_size=limit
    )
    upcoming = [p async for p in client.iter_posts(upcoming_request, limit=limit)]
    settled = await client.list_posts(
        posts_pb2.ListPostsRequest(
            statuses=SETTLED, order=posts_pb2.POST_ORDER_CREATED_NEWEST, page_size=RECENT_WINDOW
        )
    )
    recent = sorted(settled.posts, key=lambda p: p.updated_at.ToNanoseconds(), reverse=True)
    return upcoming, recent[:limit]


def _snapshot_dict(upcoming: list[posts_pb2.Post], recent: list[posts_pb2.Post]) -> dict[str, Any]:
    return {
        "upcoming": [message_dict(p) for p in upcoming],
        "recent": [message_dict(p) for p in recent],
    }


def watch(
    ctx: typer.Context,
    interval: Annotated[
        float,
        typer.Option(
            "--interval",
            min=0.1,
            metavar="SECONDS",
            help="Time between refreshes while live updates are unavailable.",
        ),
    ] = 1.0,
    once: Annotated[bool, typer.Option("--once", help="Print one snapshot and exit.")] = False,
    limit: Annotated[
        int, typer.Option("--limit", metavar="N", min=1, max=100, help="Rows per table.")
    ] = 10,
) -> None:
    """A live table of upcoming and recently published or failed posts (Ctrl-C stops).

    It refreshes when one of the tenant's events arrives (WatchEvents), and polls every
    --interval while the api cannot stream them. On a terminal the table refreshes in place;
    piped, each snapshot is printed in turn (one JSON line each with --json)."""
    opts = options(ctx)
    if once:
        upcoming, recent = call_api(ctx, lambda client: _snapshot(client, limit))
        if opts.json:
            print_json(_snapshot_dict(upcoming, recent))
        else:
            footer = f"as of {show(datetime.now(UTC), opts.zone)}"
            console().print(render.watch_view(upcoming, recent, opts.zone, footer))
        return
    try:
        call_api(ctx, lambda client: _watch(client, opts, interval, limit))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


#: Seconds between the heartbeats `watch` asks for: the table's "as of" moves on at least this
#: often while nothing happens.
WATCH_HEARTBEAT = 15
#: Seconds `watch` waits after an event for those that follow it, to show them in one refresh.
WATCH_GATHER = 0.2
#: Seconds `watch` polls before it asks for the stream again when the api has as many watches
#: of the tenant open as it allows.
WATCH_RETRY_BUSY = 30.0


class _Changes:
    """What the stream of events tells `watch`: that something changed, or that live updates
    are unavailable (then `watch` polls)."""

    def __init__(self, client: KairosClient, target: str, interval: float) -> None:
        self.client = client
        self.target = target
        self.interval = interval
        self.changed = asyncio.Event()
        self.problem = ""

    async def listen(self) -> None:
        """Follow the events for ever; a lost stream is opened again after `interval`. A cursor
        the api no longer takes (its events dropped, or another installation's) starts again
        from now; too many watches of the tenant make `watch` poll, trying the stream again
        every WATCH_RETRY_BUSY seconds. Any other error (a revoked key) ends it, and `watch`
        with it."""
        request = events_pb2.WatchEventsRequest(follow=True, heartbeat_seconds=WATCH_HEARTBEAT)
        while True:
            pause = self.interval
            try:
                async for response in self.client.watch_events(request):
                    request.cursor = response.cursor
                    self.problem = ""
                    self.changed.set()
            except KairosError as error:
                if request.cursor and error.code in (
                    grpc.StatusCode.FAILED_PRECONDITION,
                    grpc.StatusCode.INVALID_ARGUMENT,
                ):
                    # The table is read whole on each change, so no event is needed from
                    # before: start again from now, and refresh in case one was missed.
                    request.ClearField("cursor")
                    self.changed.set()
                    continue
                if error.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    pause = max(self.interval, WATCH_RETRY_BUSY)
                elif error.code != grpc.StatusCode.UNAVAILABLE:
                    raise
                self.problem = (
                    f"no live updates from the api at {self.target} ({error.message}); "
                    f"refreshing every {self.interval:g}s"
                )
                self.changed.set()
            await asyncio.sleep(pause)

    async def wait(self) -> None:
        """Until something changed; at most `interval` while there are no live updates."""
        timeout = self.interval if self.problem else None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.changed.wait(), timeout)
        self.changed.clear()


async def _watch(client: KairosClient, opts: Options, interval: float, limit: int) -> None:
    """Refresh on every change until interrupted: a Live table on a terminal; otherwise (a pipe,
    a log file) one snapshot after another, as JSON lines with --json. A lost api is shown and
    waited for; any other error ends the command."""
    upcoming, recent = await _snapshot(client, limit)  # a bad key or target fails here, at once
    out = console()
    changes = _Changes(client, opts.target, interval)
    unreachable = ""

    def problem() -> str:
        return unreachable or changes.problem

    def view() -> RenderableType:
        moment = show(datetime.now(UTC), opts.zone)
        note = problem() or f"as of {moment}, live; Ctrl-C to stop"
        return render.watch_view(upcoming, recent, opts.zone, note)

    live = (
        Live(view(), console=out, refresh_per_second=4)
        if out.is_terminal and not opts.json
        else None
    )
    listening = asyncio.create_task(changes.listen())
    try:
        with live or contextlib.nullcontext():
            while True:
                if live is not None:
                    live.update(view())
                elif opts.json:
                    snapshot = _snapshot_dict(upcoming, recent)
                    sys.stdout.write(json.dumps({**snapshot, "error": problem() or None}) + "\n")
                    sys.stdout.flush()
                else:
                    out.print(view())
                    out.file.flush()
                waiting = asyncio.create_task(changes.wait())
                await asyncio.wait({waiting, listening}, return_when=asyncio.FIRST_COMPLETED)
                if listening.done():
                    waiting.cancel()
                    listening.result()  # raises what ended it
                # The events of a burst make one refresh.
                await asyncio.sleep(WATCH_GATHER)
                try:
                    upcoming, recent = await _snapshot(client, limit)
                    unreachable = ""
                except KairosError as error:
                    if error.code not in (
                        grpc.StatusCode.UNAVAILABLE,
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                    ):
                        raise
                    unreachable = (
                        f"cannot reach the api at {opts.target}; showing the last snapshot"
                    )
    finally:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening


_EVENT_PREFIX = "LIFECYCLE_EVENT_TYPE_"


def _event_type(name: str) -> lifecycle_pb2.LifecycleEventType.ValueType:
    """An event type as the command line writes it (`published`, `needs_reauth`)."""
    try:
        return lifecycle_pb2.LifecycleEventType.Value(_EVENT_PREFIX + name.strip().upper())
    except ValueError:
        known = [
            value.name.removeprefix(_EVENT_PREFIX).lower()
            for value in lifecycle_pb2.LifecycleEventType.DESCRIPTOR.values
            if value.number
        ]
        fail(
            EXIT_USAGE,
            f"--type: unknown event type {name!r}; one of {', '.join(known)}",
            violations=[("--type", f"unknown event type {name!r}")],
        )


def event_line(event: lifecycle_pb2.LifecycleEvent, cursor: str, zone: ZoneInfo) -> str:
    """One event on one line: when, what, the ids and statuses it names, its detail, and the
    cursor to resume after it."""
    parts = [
        show(event.occurred_at, zone),
        names.enum_label(lifecycle_pb2.LifecycleEventType.DESCRIPTOR, event.type),
    ]
    for label, value in (
        ("post", event.post_id),
        ("target", event.target_id),
        ("account", event.account_id),
        ("webhook", event.webhook_id),
        ("post_status", names.post_status_label(event.post_status) if event.post_status else ""),
        (
            "target_status",
            names.target_status_label(event.target_status) if event.target_status else "",
        ),
    ):
        if value:
            parts.append(f"{label}={value}")
    if event.detail:
        parts.append(f"detail={json.dumps(event.detail, ensure_ascii=False)}")
    parts.append(f"cursor={cursor}")
    return "  ".join(parts)


def events(
    ctx: typer.Context,
    follow: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Keep printing events as they happen (Ctrl-C stops)."),
    ] = False,
    after: Annotated[
        str,
        typer.Option(
            "--after",
            metavar="CURSOR",
            help="Start after this cursor (printed with every event): nothing missed, nothing "
            "repeated.",
        ),
    ] = "",
    since: Annotated[
        str,
        typer.Option(
            "--since",
            metavar="WHEN",
            help="Start with the events from this instant on (ISO 8601; as far back as events "
            "are kept).",
        ),
    ] = "",
    types: Annotated[
        list[str] | None,
        typer.Option("--type", metavar="TYPE", help="Only this kind of event (repeatable)."),
    ] = None,
    post: Annotated[
        str, typer.Option("--post", metavar="ID", help="Only this post's events.")
    ] = "",
    account: Annotated[
        str, typer.Option("--account", metavar="ID", help="Only the events naming this account.")
    ] = "",
) -> None:
    """The tenant's lifecycle events, one line each with the cursor to resume after it.

    Without --after or --since it starts now; without --follow it prints the events kept up to
    now from there and ends (so with neither, nothing). With --follow it keeps going, and
    reconnects by itself (from the last cursor) when the api restarts."""
    opts = options(ctx)
    request = events_pb2.WatchEventsRequest(
        cursor=after.strip(),
        types=[_event_type(name) for name in types or []],
        post_id=post.strip(),
        account_id=account.strip(),
        follow=follow,
    )
    if since:
        try:
            request.since.FromDatetime(parse_instant(since, opts.zone_name))
        except WhenError as error:
            fail(EXIT_USAGE, f"--since: {error}", violations=[("--since", str(error))])
    last = [after.strip()]

    def show_event(response: events_pb2.WatchEventsResponse) -> None:
        last[0] = response.cursor
        if not response.HasField("event"):
            return
        if opts.json:
            line = {"cursor": response.cursor, "event": message_dict(response.event)}
            sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
        else:
            sys.stdout.write(event_line(response.event, response.cursor, opts.zone) + "\n")
        sys.stdout.flush()

    async def run(client: KairosClient) -> None:
        # A bad key, cursor or target ends the command at once; only a stream that was open is
        # opened again (from its cursor) when it is lost.
        stream = client.watch_events(request)
        async for response in stream:
            show_event(response)
            if follow:
                break
        await stream.aclose()
        if follow:
            request.cursor = last[0]
            request.ClearField("since")
            async for response in client.watch_events(request, reconnect=True):
                show_event(response)

    with contextlib.suppress(KeyboardInterrupt):
        call_api(ctx, run)
    if last[0]:
        hint(f"to go on from here: kairos events --after {last[0]}")
