"""QueueService and `Schedule.queue` over real gRPC, on PostgreSQL and SQLite: weekly slots in a
zone, adding to the queue (concurrently too), listing, moving, swapping and removing queued
posts, and the refusals of bad input. Slots are looked for from a Monday in 2030 on
(`not_before`), so every instant is known in advance."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from integration.api.helpers_posts import Tenant, fields, refused, stamp, tenant_of, when
from sqlalchemy import select

from kairos.posts.v1 import posts_pb2, queues_pb2, queues_pb2_grpc
from kairos_api.adapters.orm import Target
from support.api import Client, RunningApi

INVALID = grpc.StatusCode.INVALID_ARGUMENT
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
NOT_FOUND = grpc.StatusCode.NOT_FOUND
UNKNOWN_ID = "0190a6d2-0000-7000-8000-000000000000"

#: A Monday in winter (GMT in London), and the Monday of the week British Summer Time starts
#: (Sunday 31 March 2030).
MONDAY = datetime(2030, 1, 7, tzinfo=UTC)
SPRING_MONDAY = datetime(2030, 3, 25, tzinfo=UTC)
WEEKDAYS = range(1, 6)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@dataclass
class Queues:
    """A tenant's PostsService helpers and its QueueService stub."""

    kairos: Tenant
    stub: queues_pb2_grpc.QueueServiceAsyncStub

    async def set_slots(
        self, account_id: str, time_zone: str, slots: Sequence[tuple[int, str]]
    ) -> queues_pb2.QueueSlots:
        response = await self.stub.SetQueueSlots(
            queues_pb2.SetQueueSlotsRequest(
                account_id=account_id,
                time_zone=time_zone,
                slots=[
                    queues_pb2.QueueSlot(weekday=queues_pb2.Weekday.ValueType(d), time=t)
                    for d, t in slots
                ],
            ),
            metadata=self.kairos.metadata,
        )
        return response.queue

    async def account(self, time_zone: str, slots: Sequence[tuple[int, str]]) -> str:
        account_id = await self.kairos.connect()
        await self.set_slots(account_id, time_zone, slots)
        return account_id

    async def create_queued(
        self, *account_ids: str, not_before: datetime = MONDAY, content: str = "queued"
    ) -> posts_pb2.Post:
        return await self.kairos.create(*account_ids, content=content, schedule=queued(not_before))

    async def listed(
        self, account_id: str, count: int = 10, start: datetime = MONDAY
    ) -> list[tuple[datetime, str, str]]:
        request = queues_pb2.ListQueueRequest(account_id=account_id, count=count)
        getattr(request, "from").CopyFrom(stamp(start))
        response = await self.stub.ListQueue(request, metadata=self.kairos.metadata)
        return [(when(e.at), e.local_time, e.post_id) for e in response.entries]

    async def move(self, post_id: str, slot_at: datetime) -> posts_pb2.Post:
        response = await self.stub.MoveQueuedPost(
            queues_pb2.MoveQueuedPostRequest(post_id=post_id, slot_at=stamp(slot_at)),
            metadata=self.kairos.metadata,
        )
        return response.post

    async def swap(self, first: str, second: str) -> queues_pb2.SwapQueuedPostsResponse:
        return await self.stub.SwapQueuedPosts(
            queues_pb2.SwapQueuedPostsRequest(first_post_id=first, second_post_id=second),
            metadata=self.kairos.metadata,
        )

    async def remove(self, post_id: str, *, shift_up: bool) -> queues_pb2.RemoveFromQueueResponse:
        return await self.stub.RemoveFromQueue(
            queues_pb2.RemoveFromQueueRequest(post_id=post_id, shift_up=shift_up),
            metadata=self.kairos.metadata,
        )


def queued(not_before: datetime = MONDAY) -> posts_pb2.Schedule:
    return posts_pb2.Schedule(queue=posts_pb2.QueueSchedule(not_before=stamp(not_before)))


@pytest.fixture
def q(api: RunningApi, client: Client) -> Queues:
    kairos = tenant_of(api, client)
    return Queues(kairos, queues_pb2_grpc.QueueServiceStub(client.channel))


def held(entries: list[tuple[datetime, str, str]]) -> dict[str, datetime]:
    return {post_id: at for at, _, post_id in entries if post_id}


async def test_fifty_concurrent_adds_on_one_account_fill_fifty_distinct_slots_in_order(
    q: Queues,
) -> None:
    account = await q.account(
        "Europe/London", [(d, t) for d in WEEKDAYS for t in ("09:00", "13:00")]
    )
    # Half created queued (group commit), half drafts added to the queue: all at once.
    drafts = [await q.kairos.create(account, content=f"draft {i}") for i in range(25)]
    created, scheduled = await asyncio.gather(
        asyncio.gather(*(q.create_queued(account, content=f"new {i}") for i in range(25))),
        asyncio.gather(*(q.kairos.schedule(d.id, queued()) for d in drafts)),
    )
    instants = sorted(when(p.scheduled_at) for p in [*created, *scheduled])
    # Five weeks of ten slots (GMT: 09:00 and 13:00 UTC), the first fifty, each taken once.
    expected = [
        MONDAY + timedelta(weeks=week, days=day, hours=hour)
        for week in range(5)
        for day in range(5)
        for hour in (9, 13)
    ]
    assert instants == expected
    assert {p.status for p in [*created, *scheduled]} == {posts_pb2.POST_STATUS_SCHEDULED}
    listing = await q.listed(account, count=51)
    assert [at for at, _, _ in listing] == [*expected, MONDAY + timedelta(weeks=5, hours=9)]
    assert sorted(held(listing)) == sorted(p.id for p in [*created, *scheduled])
    assert listing[-1][2] == ""  # the 51st slot is free


async def test_slots_keep_their_wall_clock_time_across_the_spring_change(q: Queues) -> None:
    account = await q.account("Europe/London", [(1, "09:00")])
    first = await q.create_queued(account, not_before=SPRING_MONDAY)
    second = await q.create_queued(account, not_before=SPRING_MONDAY)
    assert when(first.scheduled_at) == utc("2030-03-25T09:00")  # GMT
    assert when(second.scheduled_at) == utc("2030-04-01T08:00")  # BST: still 09:00 in London
    assert first.time_zone == "Europe/London"
    listing = await q.listed(account, count=3, start=SPRING_MONDAY)
    assert [local for _, local, _ in listing] == [
        "2030-03-25T09:00",
        "2030-04-01T09:00",
        "2030-04-08T09:00",
    ]
    assert [post for _, _, post in listing] == [first.id, second.id, ""]


async def test_a_post_on_two_accounts_takes_the_next_slot_free_on_both(q: Queues) -> None:
    london = await q.account("Europe/London", [(1, "09:00"), (1, "10:00")])
    # 11:00 and 12:00 in Berlin are 10:00 and 11:00 in London in winter.
    berlin = await q.account("Europe/Berlin", [(1, "11:00"), (1, "12:00")])
    both = await q.create_queued(london, berlin)
    assert when(both.scheduled_at) == utc("2030-01-07T10:00")
    alone = await q.create_queued(london)
    assert when(alone.scheduled_at) == utc("2030-01-07T09:00")
    again = await q.create_queued(london, berlin)  # 10:00 is held: next Monday
    assert when(again.scheduled_at) == utc("2030-01-14T10:00")
    on_berlin = await q.create_queued(berlin)
    assert when(on_berlin.scheduled_at) == utc("2030-01-07T11:00")
    listing = await q.listed(berlin, count=3)
    assert [post for _, _, post in listing] == [both.id, on_berlin.id, again.id]


async def test_unscheduling_or_deleting_a_queued_post_frees_its_slot_and_keeps_the_others(
    q: Queues,
) -> None:
    account = await q.account("UTC", [(d, "09:00") for d in WEEKDAYS])
    posts = [await q.create_queued(account) for _ in range(3)]
    await q.kairos.unschedule(posts[0].id)
    await q.kairos.delete(posts[1].id)
    listing = await q.listed(account, count=3)
    assert [post for _, _, post in listing] == ["", "", posts[2].id]
    refill = [await q.create_queued(account) for _ in range(2)]
    assert [when(p.scheduled_at) for p in refill] == [
        MONDAY + timedelta(hours=9, days=d) for d in (0, 1)
    ]
    # Rescheduled at an instant, a queued post holds its slot no longer.
    await q.kairos.schedule(posts[2].id, posts_pb2.Schedule(at=stamp(MONDAY + timedelta(days=30))))
    assert held(await q.listed(account, count=3)) == {
        refill[0].id: utc("2030-01-07T09:00"),
        refill[1].id: utc("2030-01-08T09:00"),
    }


async def test_move_swap_and_remove_with_and_without_shifting_up(q: Queues) -> None:
    account = await q.account("UTC", [(d, "09:00") for d in WEEKDAYS])
    a, b, c, d = [await q.create_queued(account, content=n) for n in "abcd"]
    day = [MONDAY + timedelta(days=i, hours=9) for i in range(6)]  # Mon..Fri, then Sat (none)

    moved = await q.move(a.id, day[4])  # Friday, free
    assert when(moved.scheduled_at) == day[4]
    assert moved.revision == a.revision + 1
    swapped = await q.swap(b.id, c.id)
    assert (when(swapped.first.scheduled_at), when(swapped.second.scheduled_at)) == (day[2], day[1])
    assert held(await q.listed(account, count=5)) == {
        c.id: day[1],
        b.id: day[2],
        d.id: day[3],
        a.id: day[4],
    }

    # Without shift_up the others stay; with it, each later post moves up one free slot.
    kept = await q.remove(c.id, shift_up=False)
    assert kept.post.status == posts_pb2.POST_STATUS_DRAFT
    assert list(kept.moved_post_ids) == []
    assert held(await q.listed(account, count=5)) == {b.id: day[2], d.id: day[3], a.id: day[4]}
    shifted = await q.remove(b.id, shift_up=True)
    assert list(shifted.moved_post_ids) == [d.id, a.id]
    # From the freed slot on: the free Monday and Tuesday before it stay free.
    assert held(await q.listed(account, count=5)) == {d.id: day[2], a.id: day[3]}
    assert when((await q.kairos.get(a.id)).scheduled_at) == day[3]


async def test_moves_and_swaps_are_refused_where_the_slot_is_not_one(q: Queues) -> None:
    account = await q.account("UTC", [(1, "09:00"), (2, "09:00")])
    first = await q.create_queued(account)
    second = await q.create_queued(account)
    draft = await q.kairos.create(account)
    error = await refused(q.move(first.id, utc("2030-01-07T10:00")), INVALID)
    assert fields(error) == ["slot_at"]
    error = await refused(q.move(first.id, utc("2030-01-08T09:00")), PRECONDITION)
    assert second.id in (error.details() or "")
    await refused(q.move(draft.id, utc("2030-01-14T09:00")), PRECONDITION)
    error = await refused(q.move(first.id, utc("2020-01-06T09:00")), INVALID)
    assert fields(error) == ["slot_at"]
    await refused(q.move(UNKNOWN_ID, utc("2030-01-14T09:00")), NOT_FOUND)
    error = await refused(q.swap(first.id, first.id), INVALID)
    assert fields(error) == ["second_post_id"]
    error = await refused(q.swap("nope", ""), INVALID)
    assert fields(error) == ["first_post_id", "second_post_id"]
    await refused(q.swap(first.id, draft.id), PRECONDITION)
    await refused(q.remove(draft.id, shift_up=True), PRECONDITION)
    # Nothing moved.
    assert held(await q.listed(account, count=2)) == {
        first.id: utc("2030-01-07T09:00"),
        second.id: utc("2030-01-08T09:00"),
    }


async def test_bad_slots_and_queues_are_refused_naming_each_field(q: Queues) -> None:
    account = await q.kairos.connect()
    error = await refused(
        q.set_slots(
            account, "Europe/Londn", [(0, "09:00"), (1, "9am"), (2, "10:00"), (2, "10:00")]
        ),
        INVALID,
    )
    assert fields(error) == ["time_zone", "slots[0].weekday", "slots[1].time", "slots[3]"]
    error = await refused(q.set_slots("x", "UTC", [(1, "09:00")]), INVALID)
    assert fields(error) == ["account_id"]
    await refused(q.set_slots(UNKNOWN_ID, "UTC", [(1, "09:00")]), NOT_FOUND)
    # No slots: adding to the queue is refused, and nothing is written.
    before = await q.kairos.db_counts()
    error = await refused(q.create_queued(account), INVALID)
    assert fields(error) == ["schedule.queue"]
    assert await q.kairos.db_counts() == before
    draft = await q.kairos.create(account)
    error = await refused(q.kairos.schedule(draft.id, queued()), INVALID)
    assert fields(error) == ["schedule.queue"]
    assert (await q.kairos.get(draft.id)).status == posts_pb2.POST_STATUS_DRAFT
    error = await refused(q.create_queued(account, not_before=utc("2099-01-01T00:00")), INVALID)
    assert fields(error) == ["schedule.queue.not_before"]
    error = await refused(q.listed(account, count=501), INVALID)
    assert fields(error) == ["count"]

    # Set, read back sorted, then turned off.
    stored = await q.set_slots(account, "Europe/Paris", [(3, "18:30"), (1, "08:00")])
    assert [(s.weekday, s.time) for s in stored.slots] == [(1, "08:00"), (3, "18:30")]
    read = await q.stub.GetQueueSlots(
        queues_pb2.GetQueueSlotsRequest(account_id=account), metadata=q.kairos.metadata
    )
    assert read.queue == stored
    off = await q.set_slots(account, "", [])
    assert (off.time_zone, list(off.slots)) == ("", [])
    assert await q.listed(account) == []


async def test_another_tenants_queues_and_posts_are_not_found_and_a_key_is_needed(
    q: Queues, api: RunningApi
) -> None:
    account = await q.account("UTC", [(1, "09:00")])
    post = await q.create_queued(account)
    async with api.client() as other_client:
        other = Queues(
            tenant_of(api, other_client), queues_pb2_grpc.QueueServiceStub(other_client.channel)
        )
        await refused(other.set_slots(account, "UTC", [(2, "09:00")]), NOT_FOUND)
        await refused(other.listed(account), NOT_FOUND)
        await refused(other.move(post.id, utc("2030-01-14T09:00")), NOT_FOUND)
        await refused(other.remove(post.id, shift_up=False), NOT_FOUND)
        # Its own post cannot take this tenant's queue either.
        error = await refused(other.create_queued(account), INVALID)
        assert fields(error) == ["targets[0].account_id"]
    await refused(
        q.stub.GetQueueSlots(queues_pb2.GetQueueSlotsRequest(account_id=account)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    assert held(await q.listed(account, count=1)) == {post.id: utc("2030-01-07T09:00")}


async def test_a_repeated_queued_create_returns_the_first_post_and_takes_no_second_slot(
    q: Queues,
) -> None:
    account = await q.account("UTC", [(1, "09:00")])
    first = await q.kairos.create(account, schedule=queued(), request_id="queue-once")
    again = await q.kairos.create(account, schedule=queued(), request_id="queue-once")
    assert again.id == first.id
    assert [post for _, _, post in await q.listed(account, count=2)] == [first.id, ""]
    # The same request_id with another not_before is another request.
    error = await refused(
        q.kairos.create(
            account, schedule=queued(MONDAY + timedelta(days=7)), request_id="queue-once"
        ),
        INVALID,
    )
    assert fields(error) == ["request_id"]


def per_target(not_before: datetime = MONDAY) -> posts_pb2.Schedule:
    return posts_pb2.Schedule(
        queue=posts_pb2.QueueSchedule(not_before=stamp(not_before), per_target=True)
    )


async def due_by_account(
    kairos: Tenant, post_id: str
) -> dict[str, tuple[datetime | None, datetime | None]]:
    """Each target's (due_at, next_attempt_at) by account, as the scheduler would claim it."""
    async with kairos.app.uow() as uow:
        rows = await uow.session.execute(
            select(Target.account_id, Target.due_at, Target.next_attempt_at).where(
                Target.post_id == uuid.UUID(post_id)
            )
        )
        return {str(a): (due, armed) for a, due, armed in rows.all()}


async def test_per_target_each_target_takes_its_own_accounts_next_free_slot(q: Queues) -> None:
    first = await q.account("UTC", [(1, "09:00"), (3, "09:00")])  # Mondays and Wednesdays
    second = await q.account("UTC", [(2, "09:00")])  # Tuesdays
    monday, tuesday, wednesday = (utc(f"2030-01-0{d}T09:00") for d in (7, 8, 9))
    earlier = await q.create_queued(first)
    assert when(earlier.scheduled_at) == monday

    post = await q.kairos.create(first, second, schedule=per_target())
    assert when(post.scheduled_at) == tuesday  # the earliest of its targets
    assert await due_by_account(q.kairos, post.id) == {
        first: (wednesday, wednesday),
        second: (tuesday, tuesday),
    }
    assert held(await q.listed(first, count=2)) == {earlier.id: monday, post.id: wednesday}
    assert held(await q.listed(second, count=1)) == {post.id: tuesday}

    # An edit keeps each target's own slot.
    await q.kairos.update(post.id, ["content"], post=posts_pb2.Post(content="edited"))
    assert (await due_by_account(q.kairos, post.id))[first] == (wednesday, wednesday)

    # Added per target too, by SchedulePost: the next free slot of each account.
    draft = await q.kairos.create(first, second)
    later = await q.kairos.schedule(draft.id, per_target())
    week = timedelta(weeks=1)
    assert await due_by_account(q.kairos, later.id) == {
        first: (monday + week, monday + week),
        second: (tuesday + week, tuesday + week),
    }
    await refused(q.swap(post.id, earlier.id), PRECONDITION)

    # Removing with shift_up moves each of the later post's targets up on its own account.
    removed = await q.remove(post.id, shift_up=True)
    assert list(removed.moved_post_ids) == [later.id]
    assert await due_by_account(q.kairos, later.id) == {
        first: (wednesday, wednesday),
        second: (tuesday, tuesday),
    }
    assert when((await q.kairos.get(later.id)).scheduled_at) == tuesday
    assert held(await q.listed(first, count=2)) == {earlier.id: monday, later.id: wednesday}

    # Moved to one slot, every target goes there; unscheduled, it holds nothing.
    await q.set_slots(second, "UTC", [(2, "09:00"), (4, "09:00")])
    thursday = utc("2030-01-10T09:00")
    await refused(q.move(later.id, thursday), INVALID)  # not a slot of the first account
    await q.set_slots(first, "UTC", [(1, "09:00"), (3, "09:00"), (4, "09:00")])
    moved = await q.move(later.id, thursday)
    assert when(moved.scheduled_at) == thursday
    assert await due_by_account(q.kairos, later.id) == {
        first: (thursday, thursday),
        second: (thursday, thursday),
    }
    await q.kairos.unschedule(later.id)
    assert held(await q.listed(first, count=4)) == {earlier.id: monday}
    assert held(await q.listed(second, count=4)) == {}


async def test_concurrent_per_target_adds_take_distinct_slots_on_each_account(q: Queues) -> None:
    first = await q.account("UTC", [(d, "09:00") for d in WEEKDAYS])
    second = await q.account("UTC", [(d, "15:00") for d in WEEKDAYS])
    created = await asyncio.gather(
        *(q.kairos.create(first, second, schedule=per_target()) for _ in range(12)),
        *(q.create_queued(first) for _ in range(4)),
    )
    on_first = sorted(held(await q.listed(first, count=16)).values())
    on_second = sorted(held(await q.listed(second, count=12)).values())
    weekdays = [MONDAY + timedelta(weeks=w, days=d) for w in range(4) for d in range(5)]
    assert on_first == [day + timedelta(hours=9) for day in weekdays[:16]]
    assert on_second == [day + timedelta(hours=15) for day in weekdays[:12]]
    # The slots are held by exactly the posts made: the 16 on the first account, and on the
    # second the 12 queued per target.
    assert set(held(await q.listed(first, count=16))) == {p.id for p in created}
    assert set(held(await q.listed(second, count=12))) == {p.id for p in created[:12]}
