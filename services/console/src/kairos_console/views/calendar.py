"""The calendar: a month or a week of the tenant's scheduled posts, the occurrences of its
recurring series not yet made into posts, and its accounts' queue slots, all on the wall clock
of the session's zone; and moving a post to another day (dragged by the page's script, or sent
with a post's "Move" form when there is no script).

What a day holds is decided by the instant's date in the session's zone, never by UTC: a post at
23:30 UTC on the 8th is on the 9th for a reader in Berlin. Moving a post sends the new wall time
to the api as a local time in that zone with the revision the page showed, so the api's own
refusals (a wall time the clocks jump over, a post someone changed meanwhile) are what the
reader sees.
"""

from __future__ import annotations

import asyncio
import calendar as months
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import grpc
from aiohttp import web
from google.protobuf.timestamp_pb2 import Timestamp

from kairos.posts.v1 import posts_pb2, queues_pb2, series_pb2
from kairos_client import KairosClient, KairosError
from kairos_console.app import HTTP_STATUS, api, session_of, wants_fragment
from kairos_console.render import (
    render,
    timestamp_set,
    to_datetime,
    with_notice,
)
from kairos_console.views.forms import FieldErrors, form_of, text
from kairos_console.views.problems import REFUSALS

routes = web.RouteTableDef()

View = Literal["month", "week"]
VIEWS: tuple[View, ...] = ("month", "week")

#: The states SchedulePost accepts (the api's editable ones) that a calendar can show: a draft
#: has no instant, so it is never on a day.
MOVABLE = frozenset(
    {
        posts_pb2.POST_STATUS_SCHEDULED,
        posts_pb2.POST_STATUS_PENDING_APPROVAL,
        posts_pb2.POST_STATUS_REJECTED,
    }
)
#: More posts than this in one view are cut off, with a note saying so: a page of thousands of
#: chips helps nobody, and each page of ListPosts is a round trip.
MAX_POSTS = 1000
#: Occurrences asked of PreviewRecurrence at once (its maximum), and how many such pages one
#: series may take in one view (an hourly rule fills a month with about 1,000).
PREVIEW_COUNT = 100
PREVIEW_PAGES = 12
#: PreviewRecurrence refuses to walk a rule further than ten years ahead; a view beyond this
#: shows no recurring occurrences there rather than an error.
PREVIEW_REACH = timedelta(days=3640)
#: At most this many PreviewRecurrence and GetQueueSlots calls of one view in flight at once:
#: a tenant with hundreds of series should not send the api hundreds of calls in one burst.
API_CALLS_AT_ONCE = 8
#: The years a view may show: the previous and next links must stay representable.
FIRST_YEAR, LAST_YEAR = 1970, 9998
#: The api's refusals that belong next to the Move form's field; any other error is the
#: api_errors middleware's to show.
SHOWN_HERE = REFUSALS.keys() | {grpc.StatusCode.NOT_FOUND}
#: Platforms as the few letters a chip has room for (the full name is the abbr's title).
PLATFORM_LETTERS = {
    posts_pb2.PLATFORM_X: "X",
    posts_pb2.PLATFORM_MASTODON: "Mast",
    posts_pb2.PLATFORM_BLUESKY: "Bsky",
    posts_pb2.PLATFORM_LINKEDIN: "In",
    posts_pb2.PLATFORM_FACEBOOK: "FB",
    posts_pb2.PLATFORM_INSTAGRAM: "IG",
    posts_pb2.PLATFORM_THREADS: "Thr",
    posts_pb2.PLATFORM_TELEGRAM: "TG",
    posts_pb2.PLATFORM_DISCORD: "Disc",
    posts_pb2.PLATFORM_SLACK: "Slack",
    posts_pb2.PLATFORM_WEBHOOK: "Hook",
    posts_pb2.PLATFORM_SANDBOX: "Sbx",
    posts_pb2.PLATFORM_PINTEREST: "Pin",
    posts_pb2.PLATFORM_TIKTOK: "TT",
    posts_pb2.PLATFORM_YOUTUBE: "YT",
}
SUMMARY_WORDS = 6
SUMMARY_CHARS = 48


class BadQuery(ValueError):
    """A `?view=` or `?date=` the calendar cannot show; the message names what is wrong."""


@dataclass(frozen=True)
class Span:
    """The days one view shows: whole weeks, Monday first."""

    view: View
    anchor: date
    today: date

    @property
    def first(self) -> date:
        start = self.anchor.replace(day=1) if self.view == "month" else self.anchor
        return start - timedelta(days=start.weekday())

    @property
    def last(self) -> date:
        if self.view == "week":
            return self.first + timedelta(days=6)
        end = self.anchor.replace(day=months.monthrange(self.anchor.year, self.anchor.month)[1])
        return end + timedelta(days=6 - end.weekday())

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]

    @property
    def previous(self) -> date:
        if self.view == "week":
            return self.anchor - timedelta(days=7)
        return (self.anchor.replace(day=1) - timedelta(days=1)).replace(day=1)

    @property
    def next(self) -> date:
        if self.view == "week":
            return self.anchor + timedelta(days=7)
        return (self.anchor.replace(day=28) + timedelta(days=4)).replace(day=1)

    @property
    def title(self) -> str:
        if self.view == "month":
            return self.anchor.strftime("%B %Y")
        first, last = self.first, self.last
        return f"Week of {first.day} {first:%B %Y} to {last.day} {last:%B %Y}"

    def starts_in(self, zone: ZoneInfo) -> datetime:
        """The first instant of the first day in `zone`."""
        return _midnight(self.first, zone)

    def ends_in(self, zone: ZoneInfo) -> datetime:
        """The first instant after the last day in `zone`."""
        return _midnight(self.last + timedelta(days=1), zone)


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    # Where midnight does not exist (clocks jumping at 00:00), fold=0 reads it with the offset
    # from before the jump: the instant the day begins.
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)


def calendar_path(view: View, anchor: date, path: str = "/calendar") -> str:
    return f"{path}?{urlencode({'view': view, 'date': anchor.isoformat()})}"


def parse_view(value: str) -> View:
    if value in ("", "month"):
        return "month"
    if value == "week":
        return "week"
    raise BadQuery(f"The view {value!r} is not one the calendar has: choose month or week.")


def parse_date(value: str, today: date) -> date:
    if not value:
        return today
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise BadQuery(
            f"The date {value!r} is not a date written as YYYY-MM-DD (for example 2026-12-08)."
        ) from None
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise BadQuery(f"The date {value} is outside the years {FIRST_YEAR} to {LAST_YEAR}.")
    return day


@dataclass(frozen=True)
class Entry:
    """One thing on a day: a post, a recurring occurrence not yet a post, or a queue slot."""

    kind: Literal["post", "recurring", "slot"]
    local: datetime
    summary: str = ""
    platforms: tuple[int, ...] = ()
    post: posts_pb2.Post | None = None
    series_id: str = ""
    handle: str = ""

    @property
    def sort_key(self) -> tuple[datetime, int]:
        return (self.local, ("post", "recurring", "slot").index(self.kind))

    @property
    def clock(self) -> str:
        """The wall time as the chip shows it."""
        return self.local.strftime("%H:%M")

    @property
    def wall_time(self) -> str:
        """The wall time kept when the post moves: seconds only when there are some."""
        return self.local.strftime("%H:%M:%S" if self.local.second else "%H:%M")

    @property
    def movable(self) -> bool:
        return self.post is not None and self.post.status in MOVABLE

    @property
    def move_hint(self) -> str:
        """What moving does besides moving, said beside the Move form."""
        if self.post is None:
            return ""
        if self.post.status == posts_pb2.POST_STATUS_REJECTED:
            return "Moving a rejected post asks for its approval again."
        if self.post.status == posts_pb2.POST_STATUS_PENDING_APPROVAL:
            return "It still needs an approval after the move."
        return ""


@dataclass
class Day:
    day: date
    in_view: bool
    today: bool
    entries: list[Entry] = field(default_factory=list)

    @property
    def shown(self) -> list[Entry]:
        """Posts and occurrences: what the month view lists (it counts the slots)."""
        return [entry for entry in self.entries if entry.kind != "slot"]

    @property
    def slots(self) -> list[Entry]:
        return [entry for entry in self.entries if entry.kind == "slot"]


def summary_of(content: str) -> str:
    """The first words of a post, for a chip."""
    words = content.split()
    shown = " ".join(words[:SUMMARY_WORDS])
    if len(shown) > SUMMARY_CHARS:
        shown = shown[: SUMMARY_CHARS - 1].rstrip()
        return shown + "…"
    return shown + ("…" if len(words) > SUMMARY_WORDS else "")


def _timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


async def _posts(
    client: KairosClient, start: datetime, end: datetime
) -> tuple[list[posts_pb2.Post], bool]:
    """The posts scheduled in [start, end), any state, and whether there were more than shown."""
    request = posts_pb2.ListPostsRequest(
        scheduled_from=_timestamp(start),
        scheduled_to=_timestamp(end),
        page_size=100,
        order=posts_pb2.POST_ORDER_SCHEDULED_SOONEST,
    )
    found = [post async for post in client.iter_posts(request, limit=MAX_POSTS + 1)]
    return found[:MAX_POSTS], len(found) > MAX_POSTS


async def _series(client: KairosClient) -> list[series_pb2.Series]:
    found: list[series_pb2.Series] = []
    request = series_pb2.ListSeriesRequest(page_size=100)
    while True:
        page = await client.list_series(request)
        found.extend(page.series)
        if not page.next_page_token:
            return found
        request.page_token = page.next_page_token


async def _occurrences(
    client: KairosClient, series: series_pb2.Series, start: datetime, end: datetime
) -> list[datetime]:
    """The instants of an active series in [start, end) that are not posts yet: those from its
    `materialised_until` on (every earlier one is a post already, or was removed on purpose)."""
    if series.status != series_pb2.SERIES_STATUS_ACTIVE:
        return []
    made_until = series.materialised_until.ToDatetime(tzinfo=UTC)
    after = max(start, made_until) if series.HasField("materialised_until") else start
    found: list[datetime] = []
    for _ in range(PREVIEW_PAGES):
        if after >= end:
            break
        page = await client.preview_recurrence(
            series_pb2.PreviewRecurrenceRequest(
                recurrence=series.recurrence, count=PREVIEW_COUNT, after=_timestamp(after)
            )
        )
        instants = [stamp.ToDatetime(tzinfo=UTC) for stamp in page.instants]
        found.extend(instant for instant in instants if instant < end)
        if len(instants) < PREVIEW_COUNT:
            break
        # Occurrences are at least 15 minutes apart: the next page starts past the last one.
        after = instants[-1] + timedelta(seconds=1)
    return found


def slot_instants(queue: queues_pb2.QueueSlots, first: date, last: date) -> list[datetime]:
    """The instants of an account's weekly slots on the days `first` to `last` of its queue's
    zone, as the api takes them: a slot inside a daylight-saving gap at the instant the clocks
    jump over it (fold=0 reads it with the offset before the jump), one in the repeated hour at
    its earlier instant, and two slots that fall on one instant as one."""
    if not queue.time_zone or not queue.slots:
        return []
    zone = ZoneInfo(queue.time_zone)
    found: set[datetime] = set()
    day = first
    while day <= last:
        for slot in queue.slots:
            if slot.weekday != day.isoweekday():
                continue
            hours, minutes = (int(part) for part in slot.time.split(":"))
            wall = datetime.combine(day, time(hours, minutes), tzinfo=zone)
            found.add(wall.astimezone(UTC))
        day += timedelta(days=1)
    return sorted(found)


async def calendar_context(request: web.Request, view: View, anchor: date) -> dict[str, Any]:
    """What the page and its fragment show for `view` around `anchor`."""
    client = api(request)
    zone_name = session_of(request).zone
    zone = ZoneInfo(zone_name)
    span = Span(view, anchor, datetime.now(zone).date())
    start, end = span.starts_in(zone), span.ends_in(zone)
    (posts, cut_off), every_series, accounts = await asyncio.gather(
        _posts(client, start, end), _series(client), client.list_accounts()
    )
    by_account = {account.id: account for account in accounts}
    # PreviewRecurrence refuses to walk further than ten years ahead; nothing past that is shown.
    reach = datetime.now(UTC) + PREVIEW_REACH
    at_once = asyncio.Semaphore(API_CALLS_AT_ONCE)

    async def occurrences_of(series: series_pb2.Series) -> list[datetime]:
        async with at_once:
            return await _occurrences(client, series, start, min(end, reach))

    async def slots_of(account: posts_pb2.Account) -> queues_pb2.QueueSlots:
        async with at_once:
            return await client.get_queue_slots(account.id)

    queued = [a for a in accounts if a.status != posts_pb2.ACCOUNT_STATUS_DISCONNECTED]
    occurrences, queues = await asyncio.gather(
        asyncio.gather(*(occurrences_of(series) for series in every_series)),
        asyncio.gather(*(slots_of(account) for account in queued)),
    )

    days = {
        day: Day(day, in_view=view == "week" or day.month == anchor.month, today=day == span.today)
        for day in span.days
    }

    def place(entry: Entry) -> None:
        if (found := days.get(entry.local.date())) is not None:
            found.entries.append(entry)

    for post in posts:
        place(
            Entry(
                "post",
                post.scheduled_at.ToDatetime(tzinfo=UTC).astimezone(zone),
                summary=summary_of(post.content),
                platforms=tuple(dict.fromkeys(target.platform for target in post.targets)),
                post=post,
            )
        )
    for series, instants in zip(every_series, occurrences, strict=True):
        platforms = tuple(
            dict.fromkeys(
                by_account[target.account_id].platform
                for target in series.template.targets
                if target.account_id in by_account
            )
        )
        for instant in instants:
            place(
                Entry(
                    "recurring",
                    instant.astimezone(zone),
                    summary=summary_of(series.template.content),
                    platforms=platforms,
                    series_id=series.id,
                )
            )
    for account, queue in zip(queued, queues, strict=True):
        # The queue's zone may be up to a day ahead of or behind the reader's: look two days
        # further out on each side, and let `place` keep what falls on a shown day.
        for instant in slot_instants(
            queue, span.first - timedelta(days=2), span.last + timedelta(days=2)
        ):
            place(
                Entry(
                    "slot",
                    instant.astimezone(zone),
                    platforms=(account.platform,),
                    handle=account.handle,
                )
            )
    for day in days.values():
        day.entries.sort(key=lambda entry: entry.sort_key)

    return {
        "span": span,
        "days": list(days.values()),
        "cut_off": cut_off,
        "max_posts": MAX_POSTS,
        "beyond_reach": end > reach,
        "calendar_path": calendar_path,
        "platform_letters": PLATFORM_LETTERS,
        "errors": {},
        "typed": {},
        "summary_title": "",
        "summary_errors": [],
    }


def _today(request: web.Request) -> date:
    return datetime.now(ZoneInfo(session_of(request).zone)).date()


@routes.get("/calendar")
async def calendar_page(request: web.Request) -> web.Response:
    today = _today(request)
    try:
        view = parse_view(request.query.get("view", ""))
        anchor = parse_date(request.query.get("date", ""), today)
    except BadQuery as error:
        context = await calendar_context(request, "month", today)
        return render(
            request,
            "calendar.html",
            status=400,
            **{
                **context,
                "summary_title": "That calendar cannot be shown; here is this month:",
                "summary_errors": [str(error)],
            },
        )
    return render(request, "calendar.html", **await calendar_context(request, view, anchor))


@routes.get("/calendar/days")
async def calendar_days(request: web.Request) -> web.Response:
    """The calendar's days alone, for the page's script to show the posts as they are now."""
    try:
        view = parse_view(request.query.get("view", ""))
        anchor = parse_date(request.query.get("date", ""), _today(request))
    except BadQuery as error:
        raise web.HTTPBadRequest(text=str(error)) from None
    return render(request, "calendar_body.html", **await calendar_context(request, view, anchor))


#: The most days one drag can move a post (a month view spans six weeks).
MAX_DRAG_DAYS = 62


async def _dragged(
    client: KairosClient, post_id: str, days: int, seen: posts_pb2.LocalDateTime
) -> posts_pb2.LocalDateTime:
    """Where a post dragged `days` days goes: its own wall time in its own zone, that many days
    on, when it was scheduled in a zone other than the reader's (`seen`, the wall time the
    reader saw, moved). Otherwise `seen`: moving it in the reader's zone would change its zone,
    and across a daylight-saving change its wall time there too."""
    if days == 0:
        return seen
    post = await client.get_post(post_id)
    own = post.time_zone
    if not own or own == seen.time_zone or not timestamp_set(post.scheduled_at):
        return seen
    wall = to_datetime(post.scheduled_at, own)
    moved = (wall.replace(tzinfo=None) + timedelta(days=days)).isoformat(timespec="seconds")
    return posts_pb2.LocalDateTime(date_time=moved, time_zone=own)


@routes.post("/calendar/reschedule")
async def reschedule(request: web.Request) -> web.StreamResponse:
    """Move a post to a new wall time in the session's zone, at the revision the page showed.

    A script's request (a drag) gets the calendar's fragment back, or the api's message as
    text; a form gets a redirect with a notice, or the calendar again with the message next to
    the post's field."""
    form = await form_of(request)
    today = _today(request)
    try:
        view = parse_view(text(form, "view"))
        anchor = parse_date(text(form, "date"), today)
    except BadQuery:
        view, anchor = "month", today  # only where to go back to; the move itself is fine
    post_id = text(form, "post_id")
    date_time = text(form, "date_time")
    revision_text = text(form, "expected_revision")
    zone = session_of(request).zone

    messages: list[str] = []
    status = 400
    revision: int | None = None
    if not post_id:
        messages.append("Choose the post to move.")
    if not date_time:
        messages.append("Enter the new date and time.")
    if revision_text:
        try:
            revision = int(revision_text)
            if not 0 <= revision < 2**63:  # what the api's int64 can hold
                raise ValueError(revision_text)
        except ValueError:
            messages.append(
                f"The revision {revision_text!r} is not a whole number: reload the page."
            )
    days_text = text(form, "days")
    if not messages:
        try:
            local = posts_pb2.LocalDateTime(date_time=date_time, time_zone=zone)
            if days_text.lstrip("-").isdigit() and abs(int(days_text)) <= MAX_DRAG_DAYS:
                local = await _dragged(api(request), post_id, int(days_text), local)
            moved = await api(request).schedule_post(
                post_id, posts_pb2.Schedule(local=local), revision
            )
        except KairosError as error:
            if error.code not in SHOWN_HERE:
                raise
            status = HTTP_STATUS[error.code]
            messages = [message for found in FieldErrors.of(error).values() for message in found]
        else:
            if wants_fragment(request):
                return render(
                    request, "calendar_body.html", **await calendar_context(request, view, anchor)
                )
            landed = to_datetime(moved.scheduled_at, zone)
            raise web.HTTPSeeOther(with_notice(calendar_path(view, landed.date()), "rescheduled"))

    if wants_fragment(request):
        return web.Response(text=" ".join(messages), status=status)
    context = await calendar_context(request, view, anchor)
    context.update(
        errors={post_id: messages},
        typed={post_id: date_time},
        summary_title="The post was not moved:",
        summary_errors=messages,
    )
    return render(request, "calendar.html", status=status, **context)
