"""`kairos queue`: an account's weekly slots, its upcoming queue, and moving, swapping and
removing queued posts. A post joins a queue with `kairos posts queue ID` or
`kairos posts create ... --queue`.

A slot spec is DAYS and TIMES: "mon-fri 09:00,13:00", "sat,sun 10:30", "daily 08:00".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer
from rich.console import Console

from kairos.posts.v1 import queues_pb2
from kairos_cli.runtime import (
    EXIT_USAGE,
    Options,
    call_api,
    console,
    fail,
    options,
    print_json,
    say,
)
from kairos_cli.tables import Column, FitTable
from kairos_cli.when import WhenError, parse_instant, show
from kairos_client import KairosClient

app = typer.Typer(help="Posting queues: weekly slots per account, and the posts queued in them.")
slots_app = typer.Typer(help="Set or show an account's weekly queue slots.")
app.add_typer(slots_app, name="slots")

AccountId = Annotated[str, typer.Argument(metavar="ACCOUNT", help="The account id.")]
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME = re.compile(r"\d{1,2}:\d{2}")
#: Most slots one ListQueue answers with.
MAX_LISTED = 500


def parse_slot_spec(spec: str) -> list[tuple[int, str]]:
    """(ISO weekday, "HH:MM") pairs of one spec such as "mon-fri 09:00,13:00"; ValueError
    saying what is wrong."""
    parts = spec.strip().lower().split()
    if len(parts) != 2:
        raise ValueError(f"{spec!r}: give DAYS and TIMES, e.g. 'mon-fri 09:00,13:00'")
    days_text, times_text = parts
    days: list[int] = []
    for item in days_text.split(","):
        if item == "daily":
            days.extend(range(1, 8))
            continue
        first, _, last = item.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise ValueError(f"{spec!r}: days are {', '.join(DAYS)}, ranges (mon-fri) or daily")
        start = DAYS.index(first) + 1
        end = DAYS.index(last) + 1 if last else start
        if end < start:
            raise ValueError(f"{spec!r}: a day range runs forward, e.g. mon-fri")
        days.extend(range(start, end + 1))
    times: list[str] = []
    for item in times_text.split(","):
        if not _TIME.fullmatch(item):
            raise ValueError(f"{spec!r}: times are HH:MM, e.g. 09:00")
        times.append(item.zfill(5))
    return [(day, at) for day in dict.fromkeys(days) for at in times]


def slots_text(queue: queues_pb2.QueueSlots) -> list[str]:
    """One line per weekday: "Mon 09:00 13:00"."""
    by_day: dict[int, list[str]] = {}
    for slot in queue.slots:
        by_day.setdefault(int(slot.weekday), []).append(slot.time)
    return [f"{DAYS[day - 1].title()} {' '.join(times)}" for day, times in sorted(by_day.items())]


def _print_slots(queue: queues_pb2.QueueSlots, opts: Options) -> None:
    if opts.json:
        print_json(queue)
    elif not queue.slots:
        say(f"account {queue.account_id} has no queue slots")
    else:
        say(f"account {queue.account_id} queue slots ({queue.time_zone}):")
        for line in slots_text(queue):
            say(f"  {line}")


@slots_app.command("set")
def set_slots(
    ctx: typer.Context,
    account_id: AccountId,
    slot: Annotated[
        list[str] | None,
        typer.Option(
            "--slot",
            metavar="SPEC",
            help="DAYS TIMES, e.g. 'mon-fri 09:00,13:00' (repeatable).",
        ),
    ] = None,
    zone: Annotated[
        str,
        typer.Option(
            "--zone",
            metavar="ZONE",
            show_default=False,
            help="IANA zone of the slots' times (default: the global --tz).",
        ),
    ] = "",
    clear: Annotated[bool, typer.Option("--clear", help="Remove every slot.")] = False,
) -> None:
    """Replace an account's weekly slots (posts already queued keep their times)."""
    if not slot and not clear:
        fail(EXIT_USAGE, "give --slot SPEC (repeatable), or --clear")
    if slot and clear:
        fail(EXIT_USAGE, "--slot and --clear exclude each other")
    opts = options(ctx)
    pairs: list[tuple[int, str]] = []
    for spec in slot or []:
        try:
            pairs.extend(parse_slot_spec(spec))
        except ValueError as error:
            fail(EXIT_USAGE, f"--slot {error}")
    time_zone = "" if clear else zone.strip() or opts.zone_name
    queue = call_api(
        ctx,
        lambda client: client.set_queue_slots(account_id, time_zone, list(dict.fromkeys(pairs))),
    )
    _print_slots(queue, opts)


@slots_app.command("show")
def show_slots(ctx: typer.Context, account_id: AccountId) -> None:
    """Show an account's weekly slots."""
    opts = options(ctx)
    queue = call_api(ctx, lambda client: client.get_queue_slots(account_id))
    _print_slots(queue, opts)


def queue_table(listed: queues_pb2.ListQueueResponse, opts: Options) -> FitTable:
    table = FitTable(
        [Column("SLOT"), Column("LOCAL"), Column("POST", key=True)],
        caption="" if listed.entries else "no queue slots",
    )
    for entry in listed.entries:
        table.add_row(
            show(entry.at, opts.zone), entry.local_time.replace("T", " "), entry.post_id or "free"
        )
    return table


@app.command("show")
def show_queue(
    ctx: typer.Context,
    account_id: AccountId,
    count: Annotated[
        int, typer.Option("--count", min=1, max=500, help="How many upcoming slots.")
    ] = 20,
    start: Annotated[
        str,
        typer.Option("--from", metavar="WHEN", help="From this instant (default: now)."),
    ] = "",
) -> None:
    """An account's upcoming slots, each with its post or free."""
    opts = options(ctx)
    since = _instant(start, opts, "--from") if start else None
    listed = call_api(ctx, lambda client: client.list_queue(account_id, count, since))
    if opts.json:
        print_json(listed)
    else:
        console().print(queue_table(listed, opts))


@app.command("move")
def move(
    ctx: typer.Context,
    post_id: Annotated[str, typer.Argument(metavar="ID", help="A queued post.")],
    slot_at: Annotated[str, typer.Argument(metavar="WHEN", help="The slot to move it to.")],
) -> None:
    """Move a queued post to another slot, free on every account it targets."""
    opts = options(ctx)
    at = _instant(slot_at, opts, "WHEN")
    post = call_api(ctx, lambda client: client.move_queued_post(post_id, at))
    if opts.json:
        print_json(post)
    else:
        say(f"post {post.id} moved to {show(post.scheduled_at, opts.zone)}")


@app.command("swap")
def swap(
    ctx: typer.Context,
    first: Annotated[str, typer.Argument(metavar="ID", help="A queued post.")],
    second: Annotated[str, typer.Argument(metavar="OTHER", help="Another queued post.")],
) -> None:
    """Swap the slots of two queued posts."""
    opts = options(ctx)
    swapped = call_api(ctx, lambda client: client.swap_queued_posts(first, second))
    if opts.json:
        print_json(swapped)
    else:
        for post in (swapped.first, swapped.second):
            say(f"post {post.id} is now at {show(post.scheduled_at, opts.zone)}")


@app.command("remove")
def remove(
    ctx: typer.Context,
    post_id: Annotated[str, typer.Argument(metavar="ID", help="A queued post.")],
    shift_up: Annotated[
        bool, typer.Option("--shift-up", help="Move the later queued posts up.")
    ] = False,
) -> None:
    """Take a post out of the queue (back to draft); the others stay unless --shift-up."""
    opts = options(ctx)
    removed = call_api(ctx, lambda client: client.remove_from_queue(post_id, shift_up=shift_up))
    if opts.json:
        print_json(removed)
    else:
        say(f"post {removed.post.id} removed from the queue (now a draft)")
        for moved in removed.moved_post_ids:
            say(f"  moved up: {moved}")


def _instant(text: str, opts: Options, name: str) -> datetime:
    try:
        return parse_instant(text, opts.zone_name)
    except WhenError as error:
        fail(EXIT_USAGE, f"{name}: {error}")


#: Free slots per local day: (account id, instant) pairs in time order.
FreeSlots = dict[date, list[tuple[str, datetime]]]


def free_slots_by_day(
    ctx: typer.Context, accounts: Sequence[str], start: datetime, end: datetime, zone: ZoneInfo
) -> FreeSlots:
    """The free queue slots of these accounts between `start` and `end`, by local day in
    `zone` (for `kairos calendar --queue`)."""
    if not accounts:
        return {}

    async def run(client: KairosClient) -> list[tuple[str, queues_pb2.ListQueueResponse]]:
        return [(a, await client.list_queue(a, MAX_LISTED, start)) for a in accounts]

    found: FreeSlots = {}
    for account_id, listed in call_api(ctx, run):
        for entry in listed.entries:
            at = entry.at.ToDatetime(tzinfo=UTC)
            if not entry.post_id and at < end:
                found.setdefault(at.astimezone(zone).date(), []).append((account_id, at))
    for slots in found.values():
        slots.sort(key=lambda pair: (pair[1], pair[0]))
    return found


def free_json(free: FreeSlots, day: date) -> dict[str, Any]:
    """The day's free slots as JSON fields (none without --queue)."""
    if not free:
        return {}
    return {
        "free_queue_slots": [
            {"account_id": account_id, "at": at.isoformat()} for account_id, at in free.get(day, [])
        ]
    }


def free_lines(out: Console, free: FreeSlots, day: date, zone: ZoneInfo) -> None:
    """The day's free slots under its calendar table (nothing without --queue)."""
    if not free:
        return
    slots = free.get(day, [])
    out.print("free queue slots:" + ("" if slots else " none"), markup=False)
    for account_id, at in slots:
        out.print(f"  {at.astimezone(zone).strftime('%H:%M %Z')}  {account_id}", markup=False)
