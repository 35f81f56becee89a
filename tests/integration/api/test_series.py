"""SeriesService over real gRPC, on PostgreSQL and SQLite: recurring posts whose occurrences are
ordinary posts, their rules across daylight-saving changes, calendar-style edits, and
materialising that creates each occurrence once whoever runs it and however often.

The api's horizon is long here (KAIROS_SERIES_HORIZON_DAYS), so a rule running through next
year exists as posts at once; a second and a third materialiser get longer horizons still.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from integration.api.helpers_posts import Tenant, refused, tenant_of
from sqlalchemy import func, select

from kairos.posts.v1 import posts_pb2, series_pb2, series_pb2_grpc
from kairos_api.adapters.orm import Post
from kairos_api.bootstrap import bootstrap
from kairos_api.service_layer.series import materialise_due
from support.api import Client, RunningApi, running_api, violations_of

OWN_API_ENV = {"KAIROS_SERIES_HORIZON_DAYS": "800"}
INVALID = grpc.StatusCode.INVALID_ARGUMENT
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
THIS = series_pb2.SERIES_SCOPE_THIS
FOLLOWING = series_pb2.SERIES_SCOPE_FOLLOWING
ALL = series_pb2.SERIES_SCOPE_ALL


@dataclass
class Kairos:
    """One tenant: its posts helper and its SeriesService stub."""

    posts: Tenant
    series: series_pb2_grpc.SeriesServiceAsyncStub

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return self.posts.metadata

    async def create(
        self, rule: str, start: str, zone: str, content: str = "weekly news", **template: Any
    ) -> series_pb2.CreateSeriesResponse:
        account = await self.posts.connect()
        request = series_pb2.CreateSeriesRequest(
            template=series_pb2.SeriesTemplate(
                content=content, targets=[posts_pb2.TargetSpec(account_id=account)], **template
            ),
            recurrence=recurrence(rule, start, zone),
        )
        return await self.series.CreateSeries(request, metadata=self.metadata)

    async def occurrences(self, series_id: str) -> list[posts_pb2.Post]:
        """The live posts of a series, soonest first (every page)."""
        found: list[posts_pb2.Post] = []
        token = ""
        while True:
            page = await self.posts.posts.ListPosts(
                posts_pb2.ListPostsRequest(
                    series_id=series_id,
                    order=posts_pb2.POST_ORDER_SCHEDULED_SOONEST,
                    page_size=100,
                    page_token=token,
                ),
                metadata=self.metadata,
            )
            found.extend(page.posts)
            token = page.next_page_token
            if not token:
                return found

    async def update(self, **fields: Any) -> series_pb2.UpdateSeriesResponse:
        return await self.series.UpdateSeries(
            series_pb2.UpdateSeriesRequest(**fields), metadata=self.metadata
        )

    async def delete(self, **fields: Any) -> series_pb2.DeleteSeriesResponse:
        return await self.series.DeleteSeries(
            series_pb2.DeleteSeriesRequest(**fields), metadata=self.metadata
        )

    async def publish(self, post: posts_pb2.Post) -> None:
        """Pretend the publisher published the occurrence."""
        await self.posts.db_set_post(post.id, status="published")
        for target in post.targets:
            await self.posts.db_set_target(
                target.id, status="published", platform_post_id="p1", next_attempt_at=None
            )


@pytest.fixture
async def kairos(own_api: RunningApi, tenant: Client) -> Kairos:
    return Kairos(tenant_of(own_api, tenant), series_pb2_grpc.SeriesServiceStub(tenant.channel))


def recurrence(rule: str, start: str, zone: str) -> series_pb2.Recurrence:
    return series_pb2.Recurrence(
        rule=rule, start=posts_pb2.LocalDateTime(date_time=start, time_zone=zone)
    )


def first_monday_of_next_year() -> date:
    day = date(datetime.now(UTC).year + 1, 1, 1)
    return day + timedelta(days=(7 - day.weekday()) % 7)


def local(post: posts_pb2.Post, zone: str) -> datetime:
    return post.scheduled_at.ToDatetime(tzinfo=UTC).astimezone(ZoneInfo(zone))


@pytest.mark.parametrize("zone", ["America/New_York", "Europe/Berlin"])
async def test_a_weekly_rule_stays_at_its_wall_clock_time_across_both_dst_changes(
    kairos: Kairos, zone: str
) -> None:
    monday = first_monday_of_next_year()
    skipped = monday + timedelta(weeks=3)
    created = await kairos.create(
        f"RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=52\nEXDATE:{skipped:%Y%m%d}T090000",
        f"{monday}T09:00",
        zone,
    )
    occurrences = await kairos.occurrences(created.series.id)
    assert [p.id for p in occurrences] == [p.id for p in created.occurrences]
    # COUNT counts the excluded date: 52 dates, one of them skipped.
    assert len(occurrences) == 51
    walls = [local(p, zone) for p in occurrences]
    assert all((w.weekday(), w.hour, w.minute) == (0, 9, 0) for w in walls)
    assert skipped not in {w.date() for w in walls}
    assert walls[0].date() == monday
    assert walls[-1].date() == monday + timedelta(weeks=51)
    # Both changes crossed: winter, summer and winter again, each at 09:00 local.
    offsets = [w.utcoffset() for w in walls]
    summer = max(o for o in offsets if o is not None)
    first_summer = offsets.index(summer)
    last_summer = len(offsets) - 1 - offsets[::-1].index(summer)
    assert 0 < first_summer < last_summer < len(offsets) - 1
    assert all(o == summer for o in offsets[first_summer : last_summer + 1])
    assert all(p.series_id == created.series.id for p in occurrences)
    assert {p.status for p in occurrences} == {posts_pb2.POST_STATUS_SCHEDULED}
    assert created.series.status == series_pb2.SERIES_STATUS_ACTIVE


async def test_until_ends_the_series_and_a_gap_time_happens_after_the_jump(
    kairos: Kairos,
) -> None:
    monday = first_monday_of_next_year()
    until = monday + timedelta(days=20)
    created = await kairos.create(
        f"FREQ=DAILY;INTERVAL=2;UNTIL={until:%Y%m%d}T090000", f"{monday}T09:00", "Europe/Berlin"
    )
    walls = [local(p, "Europe/Berlin") for p in created.occurrences]
    assert [w.date() for w in walls] == [monday + timedelta(days=2 * i) for i in range(11)]
    # PreviewRecurrence: a daily 02:30 in Berlin across the spring-forward night.
    year = datetime.now(UTC).year + 1
    march = date(year, 3, 31)
    jump = march - timedelta(days=(march.weekday() + 1) % 7)  # last Sunday of March
    preview = await kairos.series.PreviewRecurrence(
        series_pb2.PreviewRecurrenceRequest(
            recurrence=recurrence(
                "FREQ=DAILY", f"{jump - timedelta(days=1)}T02:30", "Europe/Berlin"
            ),
            count=3,
        ),
        metadata=kairos.metadata,
    )
    instants = [t.ToDatetime(tzinfo=UTC) for t in preview.instants]
    berlin = [i.astimezone(ZoneInfo("Europe/Berlin")) for i in instants]
    assert [(b.hour, b.minute) for b in berlin] == [(2, 30), (3, 30), (2, 30)]
    assert preview.local_times[1] == f"{jump}T02:30:00"


async def test_bad_rules_and_templates_are_refused_naming_the_field(kairos: Kairos) -> None:
    cases = {
        "FREQ=MINUTELY": "recurrence.rule",
        "FREQ=HOURLY;BYMINUTE=0,5": "recurrence.rule",
        "FREQ=WEEKLY;BYDAY=XX": "recurrence.rule",
        "BYDAY=MO": "recurrence.rule",
        "FREQ=DAILY;COUNT=2;UNTIL=20990101T000000": "recurrence.rule",
        "FREQ=DAILY;UNTIL=20000101T000000": "recurrence.rule",
    }
    for rule, field in cases.items():
        error = await refused(kairos.create(rule, "2030-01-07T09:00", "Europe/Berlin"), INVALID)
        assert field in [f for f, _ in violations_of(error)], rule
    error = await refused(kairos.create("FREQ=DAILY", "2030-01-07T09:00", "Mars/Olympus"), INVALID)
    assert [f for f, _ in violations_of(error)] == ["recurrence.start.time_zone"]
    error = await refused(
        kairos.series.CreateSeries(
            series_pb2.CreateSeriesRequest(
                template=series_pb2.SeriesTemplate(content="x"),
                recurrence=recurrence("FREQ=DAILY", "2030-01-07T09:00", "UTC"),
            ),
            metadata=kairos.metadata,
        ),
        INVALID,
    )
    assert "template.targets" in [f for f, _ in violations_of(error)]


async def test_this_and_following_on_the_third_of_ten_changes_three_to_ten_only(
    kairos: Kairos,
) -> None:
    monday = first_monday_of_next_year()
    created = await kairos.create("FREQ=WEEKLY;COUNT=10", f"{monday}T09:00", "Europe/Berlin")
    old = created.occurrences
    assert len(old) == 10
    await kairos.publish(old[4])  # the 5th went out early (say, published now)
    published_before = await kairos.posts.get(old[4].id)

    updated = await kairos.update(
        series_id=created.series.id,
        scope=FOLLOWING,
        post_id=old[2].id,
        template=series_pb2.SeriesTemplate(content="new text"),
        update_mask=FieldMask(paths=["content"]),
    )
    new_series = updated.series
    assert new_series.id != created.series.id
    assert new_series.split_from == created.series.id
    first_part = await kairos.occurrences(created.series.id)
    second_part = await kairos.occurrences(new_series.id)
    # 1 and 2 unchanged; 5 untouched (it stays in the first part, published); 3, 4, 6-10 new.
    assert [p.id for p in first_part] == [old[0].id, old[1].id, old[4].id]
    assert [p.content for p in first_part[:2]] == ["weekly news"] * 2
    assert first_part[2] == published_before
    assert [p.content for p in second_part] == ["new text"] * 7
    assert [p.scheduled_at for p in second_part] == [
        p.scheduled_at for i, p in enumerate(old) if i >= 2 and i != 4
    ]
    old_series = (
        await kairos.series.GetSeries(
            series_pb2.GetSeriesRequest(series_id=created.series.id), metadata=kairos.metadata
        )
    ).series
    assert "UNTIL=" in old_series.recurrence.rule
    assert "COUNT" not in old_series.recurrence.rule
    assert new_series.recurrence.start.date_time.startswith(str(monday + timedelta(weeks=2)))
    # Nothing new appears on another round.
    await materialise_due(kairos.posts.app)
    assert len(await kairos.occurrences(new_series.id)) == 7
    assert len(await kairos.occurrences(created.series.id)) == 3


async def test_this_edits_and_deletes_one_occurrence_and_a_published_one_is_refused(
    kairos: Kairos,
) -> None:
    monday = first_monday_of_next_year()
    created = await kairos.create("FREQ=WEEKLY;COUNT=4", f"{monday}T09:00", "UTC")
    first, second, third, fourth = created.occurrences
    changed = await kairos.update(
        series_id=created.series.id,
        scope=THIS,
        post_id=second.id,
        template=series_pb2.SeriesTemplate(content="just this once"),
        update_mask=FieldMask(paths=["content"]),
    )
    assert changed.post.id == second.id
    assert changed.post.content == "just this once"
    assert changed.post.series_id == created.series.id
    await kairos.publish(first)
    await refused(
        kairos.update(
            series_id=created.series.id,
            scope=THIS,
            post_id=first.id,
            template=series_pb2.SeriesTemplate(content="too late"),
            update_mask=FieldMask(paths=["content"]),
        ),
        PRECONDITION,
    )
    await refused(
        kairos.delete(series_id=created.series.id, scope=THIS, post_id=first.id), PRECONDITION
    )
    deleted = await kairos.delete(series_id=created.series.id, scope=THIS, post_id=third.id)
    assert deleted.cancelled == 1
    series = (
        await kairos.series.GetSeries(
            series_pb2.GetSeriesRequest(series_id=created.series.id), metadata=kairos.metadata
        )
    ).series
    assert "EXDATE:" in series.recurrence.rule
    # An ALL edit from now on keeps the deleted one deleted and the published one as it was.
    await kairos.update(
        series_id=created.series.id,
        scope=ALL,
        template=series_pb2.SeriesTemplate(content="all of them"),
        update_mask=FieldMask(paths=["content"]),
    )
    live = await kairos.occurrences(created.series.id)
    assert [p.scheduled_at for p in live] == [
        first.scheduled_at,
        second.scheduled_at,
        fourth.scheduled_at,
    ]
    assert [p.content for p in live] == ["weekly news", "all of them", "all of them"]
    assert live[0].status == posts_pb2.POST_STATUS_PUBLISHED
    # Deleting from the first occurrence on is deleting the series (on a copy of it).
    copy = await kairos.create("FREQ=WEEKLY;COUNT=2", f"{monday}T09:00", "UTC")
    whole = await kairos.delete(
        series_id=copy.series.id, scope=FOLLOWING, post_id=copy.occurrences[0].id
    )
    assert whole.cancelled == 2
    await refused(
        kairos.series.GetSeries(
            series_pb2.GetSeriesRequest(series_id=copy.series.id), metadata=kairos.metadata
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    # Deleting the whole series cancels what is unpublished and keeps what went out.
    gone = await kairos.delete(series_id=created.series.id, scope=ALL)
    assert gone.cancelled == 2
    assert [p.id for p in await kairos.occurrences(created.series.id)] == [first.id]
    await refused(
        kairos.series.GetSeries(
            series_pb2.GetSeriesRequest(series_id=created.series.id), metadata=kairos.metadata
        ),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_pause_cancels_future_occurrences_and_resume_brings_them_back(
    kairos: Kairos,
) -> None:
    monday = first_monday_of_next_year()
    created = await kairos.create("FREQ=WEEKLY;COUNT=3", f"{monday}T09:00", "UTC")
    paused = await kairos.series.PauseSeries(
        series_pb2.PauseSeriesRequest(series_id=created.series.id), metadata=kairos.metadata
    )
    assert paused.series.status == series_pb2.SERIES_STATUS_PAUSED
    assert await kairos.occurrences(created.series.id) == []
    await materialise_due(kairos.posts.app)
    assert await kairos.occurrences(created.series.id) == []
    resumed = await kairos.series.ResumeSeries(
        series_pb2.ResumeSeriesRequest(series_id=created.series.id), metadata=kairos.metadata
    )
    assert resumed.series.status == series_pb2.SERIES_STATUS_ACTIVE
    again = await kairos.occurrences(created.series.id)
    assert [p.scheduled_at for p in again] == [p.scheduled_at for p in created.occurrences]
    listed = await kairos.series.ListSeries(
        series_pb2.ListSeriesRequest(), metadata=kairos.metadata
    )
    assert created.series.id in [s.id for s in listed.series]


async def _count_per_occurrence(kairos: Kairos, series_id: str) -> Counter[datetime]:
    async with kairos.posts.app.uow() as uow:
        rows = await uow.session.execute(
            select(Post.occurrence_at, func.count())
            .where(Post.series_id == uuid.UUID(series_id), Post.deleted_at.is_(None))
            .group_by(Post.occurrence_at)
        )
        return Counter({at: n for at, n in rows.all() if at is not None})


async def test_concurrent_materialisers_and_a_restart_create_each_occurrence_once(
    own_api: RunningApi, kairos: Kairos
) -> None:
    # Weekly, without end: the api's own horizon (800 days) makes the first part; two more
    # materialisers with longer horizons race for the next part, one of them cut short.
    created = await kairos.create("FREQ=WEEKLY", f"{first_monday_of_next_year()}T09:00", "UTC")
    settings = own_api.service.settings
    longer = replace(settings, series_horizon=timedelta(days=1000))
    copies = [bootstrap(longer), bootstrap(longer)]
    try:
        cut = asyncio.create_task(materialise_due(copies[0]))
        await asyncio.sleep(0)
        cut.cancel()
        await asyncio.gather(cut, return_exceptions=True)
        await asyncio.gather(*(materialise_due(c) for c in copies + copies))
        counts = await _count_per_occurrence(kairos, created.series.id)
        assert set(counts.values()) == {1}
        # Every week from the first to the 1,000-day horizon: none missing, none twice.
        reach = datetime.now(UTC) + timedelta(days=1000)
        assert len(counts) == (max(counts) - min(counts)) // timedelta(weeks=1) + 1
        assert max(counts) > reach - timedelta(days=8)
        # A restarted api (a new process on the same database) with a longer horizon still:
        # its start-up round races a copy's round and its own explicit one, and it stops
        # perhaps in the middle of one (a round it did not finish is rolled back, and one that
        # found the series locked left it to the other). The next round finishes the work.
        longest = replace(settings, series_horizon=timedelta(days=1200))
        async with running_api(longest) as restarted:
            await asyncio.gather(materialise_due(restarted.service.app), materialise_due(copies[1]))
        next_round = bootstrap(longest)
        copies.append(next_round)
        await materialise_due(next_round)
        counts = await _count_per_occurrence(kairos, created.series.id)
        assert set(counts.values()) == {1}
        weeks = (max(counts) - min(counts)) // timedelta(weeks=1) + 1
        assert len(counts) == weeks
        assert max(counts) > datetime.now(UTC) + timedelta(days=1200 - 8)
    finally:
        for copy in copies:
            await copy.close()


async def test_following_with_a_new_rule_and_what_other_tenants_and_bad_edits_get(
    own_api: RunningApi, kairos: Kairos
) -> None:
    monday = first_monday_of_next_year()
    created = await kairos.create("FREQ=WEEKLY;COUNT=6", f"{monday}T09:00", "America/New_York")
    old = created.occurrences
    # From the 4th on: Wednesdays at 18:00 instead, three more times.
    wednesday = monday + timedelta(weeks=3, days=2)
    updated = await kairos.update(
        series_id=created.series.id,
        scope=FOLLOWING,
        post_id=old[3].id,
        recurrence=recurrence("FREQ=WEEKLY;COUNT=3", f"{wednesday}T18:00", "America/New_York"),
        update_mask=FieldMask(paths=["recurrence"]),
    )
    later = await kairos.occurrences(updated.series.id)
    assert [
        (local(p, "America/New_York").weekday(), local(p, "America/New_York").hour) for p in later
    ] == [(2, 18)] * 3
    assert [p.id for p in await kairos.occurrences(created.series.id)] == [p.id for p in old[:3]]

    bad = await refused(
        kairos.update(
            series_id=updated.series.id,
            scope=THIS,
            post_id=later[0].id,
            template=series_pb2.SeriesTemplate(content="x" * 300),
            update_mask=FieldMask(paths=["content"]),
        ),
        INVALID,
    )
    assert [f for f, _ in violations_of(bad)] == ["template.content"]
    bad = await refused(
        kairos.update(
            series_id=updated.series.id,
            scope=THIS,
            post_id=later[0].id,
            update_mask=FieldMask(paths=["recurrence", "colour"]),
        ),
        INVALID,
    )
    assert sorted(f for f, _ in violations_of(bad)) == ["recurrence", "update_mask"]
    bad = await refused(
        kairos.update(
            series_id=updated.series.id, scope=FOLLOWING, update_mask=FieldMask(paths=["content"])
        ),
        INVALID,
    )
    assert [f for f, _ in violations_of(bad)] == ["post_id"]
    bad = await refused(
        kairos.delete(series_id=updated.series.id, scope=THIS, post_id=old[0].id), INVALID
    )
    assert [f for f, _ in violations_of(bad)] == ["post_id"]

    async with own_api.client() as other:
        stub = series_pb2_grpc.SeriesServiceStub(other.channel)
        for call in (
            stub.GetSeries(
                series_pb2.GetSeriesRequest(series_id=updated.series.id), metadata=other.metadata
            ),
            stub.PauseSeries(
                series_pb2.PauseSeriesRequest(series_id=updated.series.id), metadata=other.metadata
            ),
            stub.DeleteSeries(
                series_pb2.DeleteSeriesRequest(series_id=updated.series.id, scope=ALL),
                metadata=other.metadata,
            ),
        ):
            await refused(call, grpc.StatusCode.NOT_FOUND)
        listed = await stub.ListSeries(series_pb2.ListSeriesRequest(), metadata=other.metadata)
        assert list(listed.series) == []
    assert len(await kairos.occurrences(updated.series.id)) == 3


async def test_list_series_pages_newest_first(kairos: Kairos) -> None:
    ids = [
        (
            await kairos.create("FREQ=DAILY;COUNT=1", f"{first_monday_of_next_year()}T09:00", "UTC")
        ).series.id
        for _ in range(3)
    ]
    first = await kairos.series.ListSeries(
        series_pb2.ListSeriesRequest(page_size=2), metadata=kairos.metadata
    )
    second = await kairos.series.ListSeries(
        series_pb2.ListSeriesRequest(page_size=2, page_token=first.next_page_token),
        metadata=kairos.metadata,
    )
    assert [s.id for s in [*first.series, *second.series]] == ids[::-1]
    assert second.next_page_token == ""
    bad = await refused(
        kairos.series.ListSeries(
            series_pb2.ListSeriesRequest(page_token="nope"), metadata=kairos.metadata
        ),
        INVALID,
    )
    assert [f for f, _ in violations_of(bad)] == ["page_token"]


async def test_rules_dateutil_cannot_walk_cheaply_are_refused(kairos: Kairos) -> None:
    start = f"{first_monday_of_next_year()}T09:00"
    for rule in (
        "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30",  # never: dateutil would walk to year 9999
        "FREQ=DAILY;INTERVAL=0",
        "FREQ=DAILY;COUNT=99999999999999999999",
        "FREQ=DAILY;UNTIL=99991231T235959",
        "FREQ=MONTHLY;BYDAY=+60MO",
        "FREQ=DAILY\x00",
    ):
        error = await refused(kairos.create(rule, start, "Europe/Berlin"), INVALID)
        assert [f for f, _ in violations_of(error)] == ["recurrence.rule"], rule
    error = await refused(kairos.create("FREQ=DAILY", "9999-12-31T23:00", "Etc/GMT+12"), INVALID)
    assert [f for f, _ in violations_of(error)] == ["recurrence.start.date_time"]
    far = series_pb2.PreviewRecurrenceRequest(
        recurrence=recurrence("FREQ=HOURLY", start, "UTC"), count=1
    )
    far.after.FromDatetime(datetime(9000, 1, 1))
    error = await refused(kairos.series.PreviewRecurrence(far, metadata=kairos.metadata), INVALID)
    assert [f for f, _ in violations_of(error)] == ["after"]


async def test_out_of_range_settings_are_refused_before_dateutil_walks_them(
    kairos: Kairos,
) -> None:
    start = f"{first_monday_of_next_year()}T09:00"
    for rule in (
        "FREQ=HOURLY;BYSETPOS=366",  # took dateutil two minutes to find nothing
        "FREQ=HOURLY;BYMONTH=20270101",
        "FREQ=WEEKLY;BYMONTHDAY=99",
        "FREQ=WEEKLY;BYYEARDAY=0",
        "FREQ=HOURLY;BYYEARDAY=1;BYMONTH=2",
        "FREQ=WEEKLY;BYDAY=2MO",
        "FREQ=MONTHLY;BYDAY=MOX",
    ):
        error = await refused(kairos.create(rule, start, "UTC"), INVALID)
        assert [f for f, _ in violations_of(error)] == ["recurrence.rule"], rule
    # What calendars use still works: the last weekday of the month, the 2nd Tuesday.
    for rule in ("FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1", "FREQ=MONTHLY;BYDAY=2TU"):
        preview = await kairos.series.PreviewRecurrence(
            series_pb2.PreviewRecurrenceRequest(recurrence=recurrence(rule, start, "UTC"), count=3),
            metadata=kairos.metadata,
        )
        assert len(preview.instants) == 3


async def test_delete_this_and_following_keeps_the_earlier_ones(kairos: Kairos) -> None:
    monday = first_monday_of_next_year()
    created = await kairos.create("FREQ=DAILY;COUNT=5", f"{monday}T09:00", "Europe/Berlin")
    gone = await kairos.delete(
        series_id=created.series.id, scope=FOLLOWING, post_id=created.occurrences[2].id
    )
    assert gone.cancelled == 3
    left = await kairos.occurrences(created.series.id)
    assert [p.id for p in left] == [p.id for p in created.occurrences[:2]]
    await materialise_due(kairos.posts.app)
    assert len(await kairos.occurrences(created.series.id)) == 2


async def test_a_repeated_request_id_returns_the_first_series(kairos: Kairos) -> None:
    account = await kairos.posts.connect()
    request = series_pb2.CreateSeriesRequest(
        template=series_pb2.SeriesTemplate(
            content="once", targets=[posts_pb2.TargetSpec(account_id=account)]
        ),
        recurrence=recurrence("FREQ=DAILY;COUNT=3", f"{first_monday_of_next_year()}T09:00", "UTC"),
        request_id=f"req-{uuid.uuid4()}",
    )
    first, second, third = await asyncio.gather(
        *(kairos.series.CreateSeries(request, metadata=kairos.metadata) for _ in range(3))
    )
    assert first.series.id == second.series.id == third.series.id
    assert [p.id for p in second.occurrences] == [p.id for p in first.occurrences]
    assert len(await kairos.occurrences(first.series.id)) == 3
    listed = await kairos.series.ListSeries(
        series_pb2.ListSeriesRequest(), metadata=kairos.metadata
    )
    assert [s.id for s in listed.series].count(first.series.id) == 1
    # The same request_id with another request is refused on it, and makes nothing.
    changed = series_pb2.CreateSeriesRequest()
    changed.CopyFrom(request)
    changed.template.content = "twice"
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await kairos.series.CreateSeries(changed, metadata=kairos.metadata)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    [(field, description)] = violations_of(refused.value)
    assert field == "request_id"
    assert f"already used for a different request (series {first.series.id})" in description
    assert len(await kairos.occurrences(first.series.id)) == 3
