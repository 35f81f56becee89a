"""The calendar page: posts on their day in the reader's zone, the week view, moving a post (by
the page's script and by the Move form, with the api's refusals next to the field), recurring
occurrences not yet posts, queue slots, and nothing of another tenant."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from kairos.posts.v1 import posts_pb2, series_pb2
from kairos_client import KairosError, schedule_local
from support.api import RunningApi
from support.console import Browser, RunningConsole

from .conftest import Tenant, new_tenant

BERLIN = ZoneInfo("Europe/Berlin")
#: The script's requests carry this header; the console answers them with fragments or text.
SCRIPT = {"X-Requested-With": "kairos-console"}
#: A year always ahead of now, so that every instant below can be scheduled.
YEAR = datetime.now(UTC).year + 1


def at(text: str) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.fromisoformat(text))
    return stamp


async def scheduled_post(tenant: Tenant, content: str, when: str) -> posts_pb2.Post:
    """A post of `tenant` scheduled at the UTC instant `when` ("2027-01-15T23:30:00+00:00")."""
    return await tenant.client.create_post(
        posts_pb2.CreatePostRequest(
            content=content,
            targets=[posts_pb2.TargetSpec(account_id=tenant.account.id)],
            schedule=posts_pb2.Schedule(at=at(when)),
        )
    )


def spring_forward(year: int) -> date:
    """The last Sunday of March: the night Europe/Berlin's clocks jump from 02:00 to 03:00."""
    day = date(year, 3, 31)
    return day - timedelta(days=(day.weekday() + 1) % 7)


async def test_a_post_shows_on_its_day_in_the_readers_zone(
    browser: Browser, tenant: Tenant
) -> None:
    post = await scheduled_post(
        tenant, "Late night launch of the winter catalogue, all ten pages", f"{YEAR}-01-15T23:30Z"
    )
    page = await browser.get(f"/calendar?date={YEAR}-01-10")
    assert page.status == 200
    assert page.texts("#cal-title") == [f"January {YEAR}"]
    # 23:30 UTC is 00:30 the next day in Berlin.
    chip = page.one(f'[data-date="{YEAR}-01-16"] [data-post-id="{post.id}"]')
    assert not page.all(f'[data-date="{YEAR}-01-15"] [data-post-id]')
    assert "state-scheduled" in chip["class"]
    assert chip["draggable"] == "true"
    assert chip["data-revision"] == str(post.revision)
    assert chip["data-time"] == "00:30"
    link = page.one(f'[data-post-id="{post.id}"] a.chip-link')
    assert link["href"] == f"/posts/{post.id}"
    assert page.texts(f'[data-post-id="{post.id}"] a.chip-link') == [
        "00:30 Late night launch of the winter…"
    ]
    assert page.texts(f'[data-post-id="{post.id}"] .chip-meta') == ["scheduled Sbx"]
    assert page.one(f'[data-post-id="{post.id}"] abbr')["title"] == "sandbox"
    # The month grid is whole weeks from Monday: the 1st of the month is in the first row.
    days = [tag["data-date"] for tag in page.all(".cal-day")]
    first = date.fromisoformat(str(days[0]))
    assert first.weekday() == 0
    assert f"{YEAR}-01-01" in days
    assert len(days) % 7 == 0
    # The Move form offers the post's own wall time, in the reader's zone.
    field = page.one(f"#move-{post.id}")
    assert field["type"] == "datetime-local"
    assert field["value"] == f"{YEAR}-01-16T00:30"
    assert page.texts(f'label[for="move-{post.id}"]') == ["New date and time (Europe/Berlin)"]


async def test_the_week_view_shows_monday_to_sunday_with_times(
    browser: Browser, tenant: Tenant
) -> None:
    thursday = date(YEAR, 2, 4) + timedelta(days=(3 - date(YEAR, 2, 4).weekday()) % 7)
    monday = thursday - timedelta(days=3)
    post = await scheduled_post(tenant, "Thursday tea", f"{thursday.isoformat()}T14:15:00Z")
    page = await browser.get(f"/calendar?view=week&date={thursday.isoformat()}")
    assert page.status == 200
    assert [tag["data-date"] for tag in page.all(".cal-day")] == [
        (monday + timedelta(days=n)).isoformat() for n in range(7)
    ]
    in_its_day = f'[data-date="{thursday.isoformat()}"] [data-post-id="{post.id}"]'
    assert page.texts(f"{in_its_day} a.chip-link time") == ["15:15"]  # CET in February
    assert page.one("#cal-view-week")["aria-current"] == "page"
    sunday = monday + timedelta(days=6)
    assert page.texts("#cal-title") == [
        f"Week of {monday.day} {monday:%B %Y} to {sunday.day} {sunday:%B %Y}"
    ]
    assert page.one("#cal-next")["href"] == (
        f"/calendar?view=week&date={(thursday + timedelta(days=7)).isoformat()}"
    )
    assert page.one("#cal-previous")["href"] == (
        f"/calendar?view=week&date={(thursday - timedelta(days=7)).isoformat()}"
    )
    # Following the link shows the next week, without the post.
    following = await browser.get(str(page.one("#cal-next")["href"]))
    assert following.all(".cal-day")[0]["data-date"] == (monday + timedelta(7)).isoformat()
    assert not following.all("[data-post-id]")


async def test_the_move_form_moves_a_post_to_the_same_wall_time_on_another_day(
    browser: Browser, tenant: Tenant
) -> None:
    post = await scheduled_post(tenant, "Move me", f"{YEAR}-01-15T08:00:00Z")  # 09:00 Berlin
    await browser.get(f"/calendar?date={YEAR}-01-15")
    page = await browser.post(
        "/calendar/reschedule",
        {
            "post_id": post.id,
            "date_time": f"{YEAR}-01-20T09:00",
            "expected_revision": str(post.revision),
            "view": "month",
            "date": f"{YEAR}-01-15",
        },
    )
    assert page.status == 200
    assert page.path == f"/calendar?view=month&date={YEAR}-01-20&done=rescheduled"
    assert "The post is rescheduled." in page.texts("[role=status]")
    page.one(f'[data-date="{YEAR}-01-20"] [data-post-id="{post.id}"]')
    moved = await tenant.client.get_post(post.id)
    assert moved.scheduled_at.ToDatetime(tzinfo=UTC) == datetime(YEAR, 1, 20, 8, tzinfo=UTC)
    assert moved.revision > post.revision


async def test_a_drag_gets_the_calendar_back_with_the_post_on_its_new_day(
    browser: Browser, tenant: Tenant
) -> None:
    post = await scheduled_post(tenant, "Drag me", f"{YEAR}-06-10T07:45:30Z")  # 09:45:30 CEST
    page = await browser.get(f"/calendar?view=week&date={YEAR}-06-10")
    chip = page.one(f'[data-post-id="{post.id}"]')
    assert chip["data-time"] == "09:45:30"  # seconds kept when there are some
    assert page.one(f"#move-{post.id}")["step"] == "1"
    day = date(YEAR, 6, 10) + timedelta(days=1 if date(YEAR, 6, 10).weekday() < 6 else -1)
    fragment = await browser.post(
        "/calendar/reschedule",
        {
            "post_id": post.id,
            "date_time": f"{day.isoformat()}T{chip['data-time']}",
            "days": str((day - date(YEAR, 6, 10)).days),  # as calendar.js sends a drag
            "expected_revision": str(chip["data-revision"]),
            "view": "week",
            "date": f"{YEAR}-06-10",
        },
        headers=SCRIPT,
    )
    assert fragment.status == 200
    assert not fragment.all("html, body, nav")  # the calendar alone, for the script to swap in
    moved_chip = fragment.one(f'[data-date="{day.isoformat()}"] [data-post-id="{post.id}"]')
    assert int(str(moved_chip["data-revision"])) > post.revision
    moved = await tenant.client.get_post(post.id)
    assert moved.scheduled_at.ToDatetime(tzinfo=BERLIN).replace(tzinfo=None) == datetime(
        day.year, day.month, day.day, 9, 45, 30
    )


async def test_a_drag_keeps_a_post_in_its_own_zone_at_its_own_wall_time(
    browser: Browser, tenant: Tenant
) -> None:
    """A post entered as 09:00 in New York, seen in Berlin at 15:00, dragged five days across
    the day the US clocks change (the second Sunday of March) and the EU's do not: it stays at
    09:00 New York time, not 15:00 Berlin time (10:00 in New York)."""
    new_york = "America/New_York"
    march = date(YEAR, 3, 1)
    us_change = march + timedelta(days=(6 - march.weekday()) % 7 + 7)  # second Sunday
    start = us_change - timedelta(days=3)
    post = await tenant.client.create_post(
        posts_pb2.CreatePostRequest(
            content="Entered in New York",
            targets=[posts_pb2.TargetSpec(account_id=tenant.account.id)],
            schedule=schedule_local(f"{start.isoformat()}T09:00:00", new_york),
        )
    )
    page = await browser.get(f"/calendar?view=week&date={start.isoformat()}")
    chip = page.one(f'[data-post-id="{post.id}"]')
    assert chip["data-time"] == "15:00"
    later = start + timedelta(days=5)
    dragged = await browser.post(
        "/calendar/reschedule",
        {
            "post_id": post.id,
            "date_time": f"{later.isoformat()}T15:00",
            "days": "5",
            "expected_revision": str(chip["data-revision"]),
            "view": "week",
            "date": start.isoformat(),
        },
        headers=SCRIPT,
    )
    assert dragged.status == 200, dragged.text
    moved = await tenant.client.get_post(post.id)
    assert moved.time_zone == new_york
    wall = moved.scheduled_at.ToDatetime(tzinfo=UTC).astimezone(ZoneInfo(new_york))
    assert (wall.date(), wall.hour, wall.minute) == (later, 9, 0)


async def test_posts_awaiting_or_refused_approval_move_and_say_what_moving_does(
    browser: Browser, tenant: Tenant
) -> None:
    waiting, refused = [
        await tenant.client.create_post(
            posts_pb2.CreatePostRequest(
                content=content,
                targets=[posts_pb2.TargetSpec(account_id=tenant.account.id)],
                schedule=posts_pb2.Schedule(at=at(f"{YEAR}-01-15T08:00:00Z")),
                approval_required=True,
            )
        )
        for content in ("Needs a yes", "Got a no")
    ]
    refused = await tenant.client.reject_post(refused.id, "not on brand")
    page = await browser.get(f"/calendar?date={YEAR}-01-15")
    for post, state, hint in [
        (waiting, "state-pending-approval", "It still needs an approval after the move."),
        (refused, "state-rejected", "Moving a rejected post asks for its approval again."),
    ]:
        chip = page.one(f'[data-post-id="{post.id}"]')
        assert state in chip["class"]
        assert chip["draggable"] == "true"
        assert page.texts(f'[data-post-id="{post.id}"] .move-form .hint') == [hint]
    moved = await browser.post(
        "/calendar/reschedule",
        {
            "post_id": refused.id,
            "date_time": f"{YEAR}-01-16T09:00",
            "expected_revision": str(refused.revision),
        },
    )
    assert moved.status == 200
    again = await tenant.client.get_post(refused.id)
    assert again.status == posts_pb2.POST_STATUS_PENDING_APPROVAL
    assert "state-pending-approval" in moved.one(f'[data-post-id="{refused.id}"]')["class"]


async def test_a_stale_move_is_refused_with_the_apis_message_next_to_the_field(
    browser: Browser, tenant: Tenant
) -> None:
    post = await scheduled_post(tenant, "Changed meanwhile", f"{YEAR}-01-15T08:00:00Z")
    page = await browser.get(f"/calendar?date={YEAR}-01-15")
    shown_revision = str(page.one(f'[data-post-id="{post.id}"]')["data-revision"])
    # Someone else changes the post after the page was shown.
    await tenant.client.update_post(post.id, posts_pb2.Post(content="Changed"), ["content"])
    form = {
        "post_id": post.id,
        "date_time": f"{YEAR}-01-22T09:00",
        "expected_revision": shown_revision,
        "view": "month",
        "date": f"{YEAR}-01-15",
    }
    refused = await browser.post("/calendar/reschedule", form)
    assert refused.status == 409
    field = refused.one(f"#move-{post.id}")
    assert field["aria-invalid"] == "true"
    assert field["value"] == f"{YEAR}-01-22T09:00"  # what the user typed, kept
    message = refused.texts(f"#{field['aria-describedby']}")[0]
    assert f"is at revision {post.revision + 1}, not {shown_revision}" in message
    assert message in refused.texts("[role=alert] li")
    assert refused.texts("[role=alert] p") == ["The post was not moved:"]
    assert refused.one(f'[data-post-id="{post.id}"] details').has_attr("open")
    # The script is told the same, as text, and the post has not moved.
    scripted = await browser.post("/calendar/reschedule", form, headers=SCRIPT)
    assert scripted.status == 409
    assert "read it again and reapply your change" in scripted.text
    # The script then shows the calendar as it is now, with the post's new revision.
    now = await browser.get(str(page.one("#calendar")["data-days"]), headers=SCRIPT)
    assert now.status == 200
    assert now.one(f'[data-post-id="{post.id}"]')["data-revision"] == str(post.revision + 1)
    unchanged = await tenant.client.get_post(post.id)
    assert unchanged.scheduled_at == post.scheduled_at


async def test_a_wall_time_the_clocks_jump_over_is_refused_with_the_apis_message(
    browser: Browser, tenant: Tenant
) -> None:
    night = spring_forward(YEAR)
    post = await scheduled_post(
        tenant, "Before the clocks change", f"{(night - timedelta(days=2)).isoformat()}T01:30Z"
    )
    gap = f"{night.isoformat()}T02:30"
    with pytest.raises(KairosError) as expected:
        await tenant.client.schedule_post(
            post.id,
            posts_pb2.Schedule(
                local=posts_pb2.LocalDateTime(date_time=gap, time_zone="Europe/Berlin")
            ),
        )
    ((_, api_message),) = expected.value.violations
    await browser.get(f"/calendar?date={night.isoformat()}")
    refused = await browser.post(
        "/calendar/reschedule",
        {
            "post_id": post.id,
            "date_time": gap,
            "expected_revision": str(post.revision),
            "view": "month",
            "date": night.isoformat(),
        },
    )
    assert refused.status == 400
    field = refused.one(f"#move-{post.id}")
    assert field["aria-invalid"] == "true"
    assert refused.texts(f"#{field['aria-describedby']}") == [api_message]
    scripted = await browser.post(
        "/calendar/reschedule",
        {"post_id": post.id, "date_time": gap, "expected_revision": str(post.revision)},
        headers=SCRIPT,
    )
    assert scripted.status == 400
    assert scripted.text == api_message


async def test_a_move_without_a_time_says_so(browser: Browser, tenant: Tenant) -> None:
    post = await scheduled_post(tenant, "Going nowhere", f"{YEAR}-01-15T08:00:00Z")
    await browser.get(f"/calendar?date={YEAR}-01-15")
    refused = await browser.post(
        "/calendar/reschedule",
        {"post_id": post.id, "date_time": "", "expected_revision": "x", "date": f"{YEAR}-01-15"},
    )
    assert refused.status == 400
    assert refused.texts(f"#move-{post.id}-error") == [
        "Enter the new date and time. The revision 'x' is not a whole number: reload the page."
    ]
    huge = "9" * 20  # past what the api's int64 revision holds
    beyond = await browser.post(
        "/calendar/reschedule",
        {
            "post_id": post.id,
            "date_time": f"{YEAR}-01-16T09:00",
            "expected_revision": huge,
            "date": f"{YEAR}-01-15",
        },
    )
    assert beyond.status == 400
    assert beyond.texts(f"#move-{post.id}-error") == [
        f"The revision '{huge}' is not a whole number: reload the page."
    ]


async def test_recurring_occurrences_and_queue_slots_appear(
    browser: Browser, tenant: Tenant
) -> None:
    today = datetime.now(BERLIN).date()
    first_monday = today + timedelta(days=7 - today.weekday())
    created = await tenant.client.create_series(
        series_pb2.CreateSeriesRequest(
            template=series_pb2.SeriesTemplate(
                content="Monday digest for the whole team",
                targets=[posts_pb2.TargetSpec(account_id=tenant.account.id)],
            ),
            recurrence=series_pb2.Recurrence(
                rule="FREQ=WEEKLY;BYDAY=MO",
                start=posts_pb2.LocalDateTime(
                    date_time=f"{first_monday.isoformat()}T09:00:00", time_zone="Europe/Berlin"
                ),
            ),
        )
    )
    series_id = created.series.id
    await tenant.client.set_queue_slots(tenant.account.id, "Europe/Berlin", [(3, "10:00")])

    # Within the api's horizon the occurrence is a post already, shown once, as a post.
    near = await browser.get(f"/calendar?view=week&date={first_monday.isoformat()}")
    monday = f'[data-date="{first_monday.isoformat()}"]'
    assert near.texts(f"{monday} .chip-post a.chip-link") == [
        "09:00 Monday digest for the whole team"
    ]
    assert not near.all(f"{monday} [data-series-id]")

    # Beyond it, the occurrence is previewed, marked recurring and not movable.
    later = first_monday + timedelta(weeks=5)
    far = await browser.get(f"/calendar?view=week&date={later.isoformat()}")
    occurrence = far.one(f'[data-date="{later.isoformat()}"] [data-series-id="{series_id}"]')
    assert not occurrence.has_attr("draggable")
    assert not occurrence.select("form, a")
    assert " ".join(occurrence.get_text(" ").split()) == (
        "09:00 Monday digest for the whole team recurring Sbx"
    )
    wednesday = (later + timedelta(days=2)).isoformat()
    assert far.texts(f'[data-date="{wednesday}"] .slot') == ["10:00 slot Sbx @console"]
    assert len(far.all(".slot")) == 1

    # The month view counts the slots: one each Wednesday of the grid.
    month = await browser.get(f"/calendar?date={later.isoformat()}")
    counts = month.all("[data-slot-count]")
    assert counts
    assert all(tag.get_text() == "1 queue slot" for tag in counts)
    assert {
        date.fromisoformat(str(day["data-date"])).weekday()
        for day in month.all(".cal-day:has([data-slot-count])")
    } == {2}
    assert month.all(f'[data-series-id="{series_id}"]')
    assert not month.all("#cal-beyond-reach")

    # PreviewRecurrence walks at most ten years ahead: further, the view says so, and still works.
    distant = await browser.get(f"/calendar?date={today.year + 11}-01-01")
    assert distant.status == 200
    assert not distant.all("[data-series-id]")
    assert distant.texts("#cal-beyond-reach") == [
        "Recurring posts more than ten years ahead are not shown."
    ]


@pytest.mark.parametrize("day", ["1970-01-01", "9998-12-31"])
async def test_the_first_and_last_months_show(browser: Browser, day: str) -> None:
    page = await browser.get(f"/calendar?date={day}")
    assert page.status == 200
    page.one(f'[data-date="{day}"]')


async def test_queue_slots_are_the_apis_across_a_daylight_saving_jump(
    browser: Browser, tenant: Tenant
) -> None:
    night = spring_forward(YEAR)  # a Sunday
    # 02:30 does not exist that night: the api takes it when the clocks jump (03:30), the same
    # instant as the 03:30 slot, which makes them one slot that day.
    await tenant.client.set_queue_slots(
        tenant.account.id, "Europe/Berlin", [(7, "02:30"), (7, "03:30"), (6, "23:45")]
    )
    page = await browser.get(f"/calendar?view=week&date={night.isoformat()}")
    shown = [
        f"{day['data-date']}T{slot['data-time']}"
        for day in page.all(".cal-day")
        for slot in day.select(".slot")
    ]
    monday = night - timedelta(days=6)
    queue = await tenant.client.list_queue(
        tenant.account.id, count=10, start=datetime.combine(monday, datetime.min.time(), BERLIN)
    )
    expected = [
        entry.at.ToDatetime(tzinfo=UTC).astimezone(BERLIN).strftime("%Y-%m-%dT%H:%M")
        for entry in queue.entries
        if entry.at.ToDatetime(tzinfo=UTC).astimezone(BERLIN).date() <= night
    ]
    assert shown == expected
    assert shown == [f"{night - timedelta(days=1)}T23:45", f"{night}T03:30"]


async def test_another_tenants_post_never_appears(
    browser: Browser, tenant: Tenant, console_api: RunningApi
) -> None:
    mine = await scheduled_post(tenant, "Mine", f"{YEAR}-01-15T08:00:00Z")
    async with new_tenant(console_api, "@other") as them:
        other = them.client
        await other.set_queue_slots(them.account.id, "Europe/Berlin", [(4, "11:00")])
        theirs = await scheduled_post(them, "Theirs", f"{YEAR}-01-15T08:00:00Z")
        page = await browser.get(f"/calendar?view=week&date={YEAR}-01-15")
        assert [tag["data-post-id"] for tag in page.all("[data-post-id]")] == [mine.id]
        assert theirs.id not in page.text
        assert "@other" not in page.text
        # Nor can the Move form move it.
        refused = await browser.post(
            "/calendar/reschedule",
            {"post_id": theirs.id, "date_time": f"{YEAR}-01-16T09:00", "date": f"{YEAR}-01-15"},
        )
        assert refused.status == 404
        assert refused.texts("[role=alert] li")
        still = await other.get_post(theirs.id)
        assert still.scheduled_at == theirs.scheduled_at


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("date=2026-13-40", "'2026-13-40' is not a date written as YYYY-MM-DD"),
        ("date=0001-01-01", "outside the years 1970 to 9998"),
        ("view=year", "'year' is not one the calendar has"),
    ],
)
async def test_a_bad_date_or_view_says_what_is_wrong(
    browser: Browser, query: str, message: str
) -> None:
    page = await browser.get(f"/calendar?{query}")
    assert page.status == 400
    assert any(message in line for line in page.texts("[role=alert] li"))
    assert page.texts("[role=alert] p") == ["That calendar cannot be shown; here is this month:"]
    assert page.all(".cal-day")  # this month instead, not an error page
    fragment = await browser.get(f"/calendar/days?{query}", headers=SCRIPT)
    assert fragment.status == 400
    assert message in fragment.text


async def test_the_calendar_holds_no_inline_script_or_style(
    console: RunningConsole, browser: Browser
) -> None:
    page = await browser.get("/calendar?view=week")
    for script in page.all("script"):
        assert script.get("src"), script
        assert not script.get_text().strip()
    assert not page.all("style, [style]")
    assert not [tag for tag in page.all("*") if any(a.startswith("on") for a in tag.attrs)]
    for link in page.all('link[rel="stylesheet"], script'):
        source = str(link.get("href") or link.get("src"))
        assert source.startswith("/static/")
        async with browser.session.get(source) as response:
            assert response.status == 200
