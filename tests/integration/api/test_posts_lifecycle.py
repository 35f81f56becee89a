"""PostsService over real gRPC, on PostgreSQL and SQLite: what happens to a post after CreatePost.

UpdatePost, SchedulePost, UnschedulePost, PublishNow, DeletePost, RetryPost, ApprovePost and
RejectPost, with the outbox events each writes. What only the scheduler or publisher would do
(queue a target, publish it, fail it) is simulated by changing rows directly.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from integration.api.helpers_posts import (
    NEXT_YEAR,
    Tenant,
    at,
    at_instant,
    fields,
    local,
    next_transition,
    now,
    other_tenant,
    refused,
    tenant_of,
    when,
)
from sqlalchemy import select

from kairos.events.v1 import events_pb2
from kairos.posts.v1 import posts_pb2
from kairos_api.adapters.orm import OutboxEvent
from support.api import Client, RunningApi, violations_of

INVALID = grpc.StatusCode.INVALID_ARGUMENT
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
NOT_FOUND = grpc.StatusCode.NOT_FOUND
UNKNOWN_ID = "0190a6d2-0000-7000-8000-000000000000"


@pytest.fixture
def kairos(api: RunningApi, client: Client) -> Tenant:
    return tenant_of(api, client)


def close_to_now(value: datetime, slack: float = 30) -> bool:
    return abs(value - now()) < timedelta(seconds=slack)


async def queue(kairos: Tenant, post: posts_pb2.Post) -> uuid.UUID:
    """Simulate the scheduler claiming the post's first target for its current revision."""
    delivery = uuid.uuid4()
    await kairos.db_set_target(
        post.targets[0].id,
        status="queued",
        delivery_id=delivery,
        delivery_revision=post.revision,
        lease_until=now() + timedelta(minutes=5),
    )
    return delivery


# --- UpdatePost -------------------------------------------------------------------------------


async def test_update_content_bumps_the_revision(kairos: Tenant) -> None:
    post = await kairos.create(content="before", schedule=at(3600))
    updated = await kairos.update(
        post.id, ["content"], post=posts_pb2.Post(content="after", notes="ignored")
    )

    assert updated.content == "after"
    assert updated.notes == ""  # not in the mask: left alone
    assert updated.revision == 2
    assert updated.status == posts_pb2.POST_STATUS_SCHEDULED
    assert when(updated.updated_at) >= when(post.updated_at)
    assert (await kairos.get(post.id)).content == "after"
    assert await kairos.db_events(post.id) == {"created": 1, "scheduled": 1, "updated": 1}


async def test_update_notes_and_campaign_keeps_the_revision(kairos: Tenant) -> None:
    post = await kairos.create(content="text", campaign="old", notes="n1", schedule=at(3600))
    updated = await kairos.update(
        post.id,
        ["notes", "campaign"],
        post=posts_pb2.Post(notes="n2", campaign="new", content="IGNORED"),
    )

    assert (updated.notes, updated.campaign) == ("n2", "new")
    assert updated.content == "text"
    assert updated.revision == 1
    assert updated.status == posts_pb2.POST_STATUS_SCHEDULED
    fetched = await kairos.get(post.id)
    assert (fetched.notes, fetched.campaign, fetched.revision) == ("n2", "new", 1)
    assert await kairos.list_ids(campaign="new") == [post.id]
    assert await kairos.db_events(post.id) == {"created": 1, "scheduled": 1, "updated": 1}


async def test_update_tags_keeps_the_revision_and_reindexes_them(kairos: Tenant) -> None:
    post = await kairos.create(tags=["keep", "drop"], schedule=at(3600))
    updated = await kairos.update(
        post.id, ["tags"], post=posts_pb2.Post(tags=["keep", "new"], content="IGNORED")
    )

    assert list(updated.tags) == ["keep", "new"]
    assert updated.revision == 1
    assert updated.content == "Hello from Kairos"
    assert list((await kairos.get(post.id)).tags) == ["keep", "new"]
    assert await kairos.list_ids(tag="keep") == [post.id]
    assert await kairos.list_ids(tag="new") == [post.id]
    assert await kairos.list_ids(tag="drop") == []


async def test_update_targets_replaces_them_and_arms_the_new_one(kairos: Tenant) -> None:
    x, mastodon = await kairos.connect(), await kairos.connect(posts_pb2.PLATFORM_MASTODON)
    telegram = await kairos.connect(posts_pb2.PLATFORM_TELEGRAM)
    post = await kairos.create(x, mastodon, schedule=at(3600))
    kept = next(t for t in post.targets if t.account_id == x)

    updated = await kairos.update(
        post.id,
        ["targets"],
        targets=[
            posts_pb2.TargetSpec(account_id=x, content_override="for X"),
            posts_pb2.TargetSpec(account_id=telegram),
        ],
    )

    assert updated.revision == 2
    by_account = {t.account_id: t for t in updated.targets}
    assert set(by_account) == {x, telegram}
    assert by_account[x].id == kept.id  # the same row, not a new one
    assert by_account[x].content_override == "for X"
    assert by_account[telegram].platform == posts_pb2.PLATFORM_TELEGRAM
    rows = await kairos.db_targets(post.id)
    assert len(rows) == 2
    assert all(r.next_attempt_at == when(post.scheduled_at) for r in rows)


async def test_update_targets_with_an_unknown_account_is_refused(kairos: Tenant) -> None:
    post = await kairos.create()
    before = await kairos.db_counts()
    error = await refused(
        kairos.update(post.id, ["targets"], targets=[posts_pb2.TargetSpec(account_id=UNKNOWN_ID)]),
        INVALID,
    )
    assert fields(error) == ["targets[0].account_id"]
    assert await kairos.db_counts() == before
    assert len((await kairos.get(post.id)).targets) == 1


async def test_update_targets_with_a_setting_the_platform_refuses_is_refused(
    kairos: Tenant,
) -> None:
    pinterest = await kairos.connect(posts_pb2.PLATFORM_PINTEREST)
    post = await kairos.create(pinterest, media_urls=["https://cdn.example/pin.jpg"])
    error = await refused(
        kairos.update(
            post.id,
            ["targets"],
            targets=[posts_pb2.TargetSpec(account_id=pinterest, settings={"title": "t" * 101})],
        ),
        INVALID,
    )
    assert fields(error) == ["targets[0].settings.title"]
    assert dict((await kairos.get(post.id)).targets[0].settings) == {}


async def test_fewer_photos_than_a_tiktok_cover_index_reaches_are_refused(
    kairos: Tenant,
) -> None:
    tiktok = await kairos.connect(posts_pb2.PLATFORM_TIKTOK)
    settings = {"privacy_level": "SELF_ONLY", "photo_cover_index": "1"}
    created = await kairos.posts.CreatePost(
        posts_pb2.CreatePostRequest(
            content="Two photos",
            media_urls=["https://cdn.example/one.jpg", "https://cdn.example/two.jpg"],
            targets=[posts_pb2.TargetSpec(account_id=tiktok, settings=settings)],
        ),
        metadata=kairos.metadata,
    )
    post = created.post
    error = await refused(
        kairos.update(
            post.id, ["media_urls"], post=posts_pb2.Post(media_urls=["https://cdn.example/one.jpg"])
        ),
        INVALID,
    )
    assert fields(error) == ["targets[0].settings.photo_cover_index"]
    assert len((await kairos.get(post.id)).media_urls) == 2


async def test_update_targets_to_none_is_refused(kairos: Tenant) -> None:
    post = await kairos.create()
    error = await refused(kairos.update(post.id, ["targets"], targets=[]), INVALID)
    assert fields(error) == ["targets"]
    assert len((await kairos.get(post.id)).targets) == 1


async def disconnect(kairos: Tenant, account_id: str) -> None:
    await kairos.accounts.DisconnectAccount(
        posts_pb2.DisconnectAccountRequest(account_id=account_id), metadata=kairos.metadata
    )


async def test_a_post_with_a_disconnected_account_can_still_be_edited(kairos: Tenant) -> None:
    x, mastodon = await kairos.connect(), await kairos.connect(posts_pb2.PLATFORM_MASTODON)
    post = await kairos.create(x, mastodon, schedule=at(3600))
    await disconnect(kairos, mastodon)
    before = {t.account_id: t for t in (await kairos.get(post.id)).targets}

    tagged = await kairos.update(post.id, ["tags"], post=posts_pb2.Post(tags=["still"]))
    reworded = await kairos.update(post.id, ["content"], post=posts_pb2.Post(content="New words"))

    assert list(tagged.tags) == ["still"]
    assert reworded.content == "New words"
    assert reworded.status == posts_pb2.POST_STATUS_SCHEDULED
    after = {t.account_id: t for t in reworded.targets}
    # The disconnected account's target stays as the disconnect left it; the other is armed.
    assert after[mastodon].status == posts_pb2.TARGET_STATUS_SKIPPED
    assert after[mastodon].id == before[mastodon].id
    assert after[mastodon].last_error.code == before[mastodon].last_error.code
    assert after[x].status == posts_pb2.TARGET_STATUS_PENDING
    rows = {str(r.account_id): r for r in await kairos.db_targets(post.id)}
    assert rows[x].next_attempt_at == when(post.scheduled_at)
    assert rows[mastodon].next_attempt_at is None


async def test_update_targets_keeps_kept_ones_as_they_are_and_checks_only_new_ones(
    api: RunningApi, kairos: Tenant
) -> None:
    x, mastodon = await kairos.connect(), await kairos.connect(posts_pb2.PLATFORM_MASTODON)
    telegram, gone = await kairos.connect(posts_pb2.PLATFORM_TELEGRAM), await kairos.connect()
    post = await kairos.create(x, mastodon, schedule=at(3600))
    await disconnect(kairos, mastodon)
    await disconnect(kairos, gone)
    skipped = next(t for t in (await kairos.get(post.id)).targets if t.account_id == mastodon)
    async with other_tenant(api) as stranger:
        foreign = await stranger.connect()
    before = await kairos.db_counts()

    adds_disconnected = await refused(
        kairos.update(
            post.id,
            ["targets"],
            targets=[posts_pb2.TargetSpec(account_id=x), posts_pb2.TargetSpec(account_id=gone)],
        ),
        INVALID,
    )
    adds_foreign = await refused(
        kairos.update(
            post.id,
            ["targets"],
            targets=[posts_pb2.TargetSpec(account_id=x), posts_pb2.TargetSpec(account_id=foreign)],
        ),
        INVALID,
    )
    assert await kairos.db_counts() == before
    updated = await kairos.update(
        post.id,
        ["targets"],
        targets=[
            posts_pb2.TargetSpec(account_id=mastodon),
            posts_pb2.TargetSpec(account_id=telegram, content_override="for Telegram"),
        ],
        expected_revision=(await kairos.get(post.id)).revision,
    )

    assert [(v[0], "disconnected" in v[1]) for v in violations_of(adds_disconnected)] == [
        ("targets[1].account_id", True)
    ]
    assert fields(adds_foreign) == ["targets[1].account_id"]
    by_account = {t.account_id: t for t in updated.targets}
    assert set(by_account) == {mastodon, telegram}  # x removed: it had not been sent
    assert by_account[mastodon].id == skipped.id
    assert by_account[mastodon].status == posts_pb2.TARGET_STATUS_SKIPPED
    assert by_account[telegram].status == posts_pb2.TARGET_STATUS_PENDING
    assert by_account[telegram].content_override == "for Telegram"


@pytest.mark.parametrize(
    ("status", "words"),
    [("published", "was published"), ("unknown", "may have been published")],
)
async def test_a_target_that_was_or_may_have_been_published_cannot_be_removed(
    kairos: Tenant, status: str, words: str
) -> None:
    x, telegram = await kairos.connect(), await kairos.connect(posts_pb2.PLATFORM_TELEGRAM)
    post = await kairos.create(x, telegram, schedule=at(3600))
    sent = next(t for t in post.targets if t.account_id == x)
    await kairos.db_set_target(sent.id, status=status, next_attempt_at=None)

    error = await refused(
        kairos.update(post.id, ["targets"], targets=[posts_pb2.TargetSpec(account_id=telegram)]),
        PRECONDITION,
    )
    kept = await kairos.update(
        post.id,
        ["targets"],
        targets=[posts_pb2.TargetSpec(account_id=x), posts_pb2.TargetSpec(account_id=telegram)],
    )

    assert f"target {sent.id}" in (error.details() or "")
    assert words in (error.details() or "")
    assert len((await kairos.get(post.id)).targets) == 2
    assert {t.account_id: t.id for t in kept.targets}[x] == sent.id


async def test_new_targets_must_leave_something_to_publish(kairos: Tenant) -> None:
    x, mastodon = await kairos.connect(), await kairos.connect(posts_pb2.PLATFORM_MASTODON)
    post = await kairos.create(x, mastodon, schedule=at(3600))
    await disconnect(kairos, mastodon)

    error = await refused(
        kairos.update(post.id, ["targets"], targets=[posts_pb2.TargetSpec(account_id=mastodon)]),
        INVALID,
    )

    [(field, description)] = violations_of(error)
    assert field == "targets"
    assert f"account {mastodon} is disconnected" in description
    assert len((await kairos.get(post.id)).targets) == 2


async def test_concurrent_updates_at_one_revision_let_exactly_one_through(
    request: pytest.FixtureRequest, kairos: Tenant
) -> None:
    post = await kairos.create(content="v1", schedule=at(3600))
    results = await asyncio.gather(
        *(
            kairos.update(
                post.id, ["content"], post=posts_pb2.Post(content=f"v2-{i}"), expected_revision=1
            )
            for i in range(3)
        ),
        kairos.schedule(post.id, at(7200), expected_revision=1),
        return_exceptions=True,
    )

    succeeded = [r for r in results if isinstance(r, posts_pb2.Post)]
    aborted = [
        r
        for r in results
        if isinstance(r, grpc.aio.AioRpcError) and r.code() == grpc.StatusCode.ABORTED
    ]
    assert (len(succeeded), len(aborted)) == (1, 3)
    final = await kairos.get(post.id)
    assert final.revision == 2
    assert (final.content, final.scheduled_at) == (succeeded[0].content, succeeded[0].scheduled_at)
    events = await kairos.db_events(post.id)
    assert events["updated"] + events["scheduled"] == 2  # the create's "scheduled" and one more


async def test_update_with_the_expected_revision_succeeds_and_a_stale_one_is_aborted(
    kairos: Tenant,
) -> None:
    post = await kairos.create(content="v1")
    v2 = await kairos.update(
        post.id, ["content"], post=posts_pb2.Post(content="v2"), expected_revision=1
    )
    assert v2.revision == 2
    before = await kairos.db_counts()

    error = await refused(
        kairos.update(post.id, ["content"], post=posts_pb2.Post(content="v3"), expected_revision=1),
        grpc.StatusCode.ABORTED,
    )
    assert "revision 2" in (error.details() or "")
    assert (await kairos.get(post.id)).content == "v2"
    assert await kairos.db_counts() == before


async def test_a_bad_update_mask_is_refused(kairos: Tenant) -> None:
    post = await kairos.create(content="v1")
    before = await kairos.db_counts()
    for paths, message in (
        (["status"], "'status' cannot be updated"),
        (["content", "scheduled_at"], "'scheduled_at' cannot be updated"),
        (["post.content"], "'post.content' cannot be updated"),
        ([], "at least one field"),
    ):
        error = await refused(
            kairos.update(post.id, paths, post=posts_pb2.Post(content="v2")), INVALID
        )
        assert fields(error) == ["update_mask"], paths
        assert message in (error.details() or ""), paths
    assert (await kairos.get(post.id)).content == "v1"
    assert await kairos.db_counts() == before


async def test_update_with_content_too_long_names_post_content(kairos: Tenant) -> None:
    post = await kairos.create(content="short")
    before = await kairos.db_counts()
    error = await refused(
        kairos.update(post.id, ["content"], post=posts_pb2.Post(content="z" * 281)), INVALID
    )
    assert fields(error) == ["post.content"]
    assert (await kairos.get(post.id)).content == "short"
    assert await kairos.db_counts() == before


async def test_update_with_an_http_media_url_names_post_media_urls(kairos: Tenant) -> None:
    post = await kairos.create()
    error = await refused(
        kairos.update(
            post.id, ["media_urls"], post=posts_pb2.Post(media_urls=["http://cdn.example/a.png"])
        ),
        INVALID,
    )
    assert fields(error) == ["post.media_urls[0]"]


async def test_update_names_campaign_and_notes_as_post_fields(kairos: Tenant) -> None:
    post = await kairos.create()
    error = await refused(
        kairos.update(
            post.id,
            ["campaign", "notes"],
            post=posts_pb2.Post(campaign="c" * 201, notes="n" * 10_001),
        ),
        INVALID,
    )
    assert fields(error) == ["post.campaign", "post.notes"]


@pytest.mark.parametrize(
    ("paths", "body", "field"),
    [
        (["stale_after"], posts_pb2.Post(stale_after=Duration(seconds=0)), "post.stale_after"),
        (
            ["stale_after"],
            posts_pb2.Post(stale_after=Duration(seconds=60, nanos=10**9)),
            "post.stale_after",
        ),
        (["tags"], posts_pb2.Post(tags=[" "]), "post.tags[0]"),
    ],
    ids=["stale_after", "stale_after nanos 10^9", "tags"],
)
async def test_update_names_tags_and_stale_after_as_post_fields(
    kairos: Tenant, paths: list[str], body: posts_pb2.Post, field: str
) -> None:
    post = await kairos.create()
    error = await refused(kairos.update(post.id, paths, post=body), INVALID)
    assert fields(error) == [field]


async def test_update_stale_after_bumps_the_revision(kairos: Tenant) -> None:
    post = await kairos.create()
    updated = await kairos.update(
        post.id, ["stale_after"], post=posts_pb2.Post(stale_after=Duration(seconds=300))
    )
    assert updated.stale_after.ToTimedelta() == timedelta(minutes=5)
    assert updated.revision == 2


async def test_changing_the_content_of_an_approved_post_withdraws_the_approval(
    kairos: Tenant,
) -> None:
    post = await kairos.create(schedule=at(3600), approval_required=True)
    approved = await kairos.approve(post.id)
    assert approved.status == posts_pb2.POST_STATUS_SCHEDULED

    noted = await kairos.update(post.id, ["notes"], post=posts_pb2.Post(notes="fine"))
    assert noted.status == posts_pb2.POST_STATUS_SCHEDULED
    assert noted.HasField("approved_at")

    edited = await kairos.update(post.id, ["content"], post=posts_pb2.Post(content="changed"))
    assert edited.status == posts_pb2.POST_STATUS_PENDING_APPROVAL
    assert not edited.HasField("approved_at")
    rows = await kairos.db_targets(post.id)
    assert [r.next_attempt_at for r in rows] == [None]


async def test_requiring_approval_later_holds_a_scheduled_post(kairos: Tenant) -> None:
    post = await kairos.create(schedule=at(3600))
    updated = await kairos.update(
        post.id, ["approval_required"], post=posts_pb2.Post(approval_required=True)
    )

    assert updated.status == posts_pb2.POST_STATUS_PENDING_APPROVAL
    assert updated.revision == 2
    assert [r.next_attempt_at for r in await kairos.db_targets(post.id)] == [None]

    released = await kairos.update(
        post.id, ["approval_required"], post=posts_pb2.Post(approval_required=False)
    )
    assert released.status == posts_pb2.POST_STATUS_SCHEDULED
    assert [r.next_attempt_at for r in await kairos.db_targets(post.id)] == [
        when(post.scheduled_at)
    ]


async def test_update_of_a_post_that_is_no_longer_editable_is_refused(kairos: Tenant) -> None:
    post = await kairos.create(content="original", schedule=at(60))
    for status in ("published", "partially_published", "failed", "cancelled", "publishing"):
        await kairos.db_set_post(post.id, status=status)
        error = await refused(
            kairos.update(post.id, ["content"], post=posts_pb2.Post(content="new")), PRECONDITION
        )
        assert f"it is {status}" in (error.details() or ""), status
    assert (await kairos.get(post.id)).content == "original"


async def test_update_while_a_target_is_publishing_is_refused(kairos: Tenant) -> None:
    post = await kairos.create(content="original", schedule=at(60))
    await kairos.db_set_target(post.targets[0].id, status="publishing")
    before = await kairos.db_counts()

    for call in (
        kairos.update(post.id, ["content"], post=posts_pb2.Post(content="new")),
        kairos.update(post.id, ["notes"], post=posts_pb2.Post(notes="new")),
        kairos.schedule(post.id, at(7200)),
        kairos.unschedule(post.id),
        kairos.publish_now(post.id),
    ):
        error = await refused(call, PRECONDITION)
        assert "publishing now" in (error.details() or "")
    assert (await kairos.get(post.id)).content == "original"
    assert await kairos.db_counts() == before


async def test_update_with_a_malformed_id_names_post_id(kairos: Tenant) -> None:
    for post_id in ("", "nope"):
        error = await refused(
            kairos.update(post_id, ["content"], post=posts_pb2.Post(content="x")), INVALID
        )
        assert fields(error) == ["post_id"], post_id


async def test_update_of_an_unknown_or_foreign_post_is_not_found(
    api: RunningApi, kairos: Tenant
) -> None:
    async with other_tenant(api) as other:
        theirs = await other.create(content="theirs")
        for post_id in (UNKNOWN_ID, theirs.id):
            await refused(
                kairos.update(post_id, ["content"], post=posts_pb2.Post(content="x")), NOT_FOUND
            )
        assert (await other.get(theirs.id)).content == "theirs"


# --- SchedulePost, UnschedulePost, PublishNow ------------------------------------------------


async def test_schedule_a_draft(kairos: Tenant) -> None:
    post = await kairos.create()
    instant = (now() + timedelta(hours=3)).replace(microsecond=0)
    scheduled = await kairos.schedule(post.id, at_instant(instant))

    assert scheduled.status == posts_pb2.POST_STATUS_SCHEDULED
    assert when(scheduled.scheduled_at) == instant
    assert scheduled.revision == 2
    rows = await kairos.db_targets(post.id)
    assert [(r.next_attempt_at, r.due_at) for r in rows] == [(instant, instant)]
    assert await kairos.db_events(post.id) == {"created": 1, "scheduled": 1}


async def test_reschedule_moves_the_instant_and_the_zone(kairos: Tenant) -> None:
    post = await kairos.create(schedule=local(f"{NEXT_YEAR}-07-01T09:30", "Europe/Berlin"))
    assert post.time_zone == "Europe/Berlin"
    later = datetime(NEXT_YEAR, 8, 1, 12, 0, tzinfo=UTC)

    moved = await kairos.schedule(post.id, at_instant(later), expected_revision=1)

    assert when(moved.scheduled_at) == later
    assert moved.time_zone == ""
    assert moved.revision == 2
    assert [r.next_attempt_at for r in await kairos.db_targets(post.id)] == [later]

    local_again = await kairos.schedule(
        post.id, local(f"{NEXT_YEAR}-12-24T18:00", "America/New_York")
    )
    assert when(local_again.scheduled_at) == datetime(NEXT_YEAR, 12, 24, 23, 0, tzinfo=UTC)
    assert local_again.time_zone == "America/New_York"


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York"])
async def test_schedule_at_an_ambiguous_wall_time_takes_the_earlier_instant(
    kairos: Tenant, zone: str
) -> None:
    """The documented rule (LocalDateTime in posts.proto): the first time the clock shows it."""
    overlap = next_transition(zone, forward=False)
    post = await kairos.create()

    scheduled = await kairos.schedule(post.id, local(overlap.midway, zone))

    assert when(scheduled.scheduled_at) == overlap.midway_first_instant
    assert scheduled.time_zone == zone
    rows = await kairos.db_targets(post.id)
    assert [r.next_attempt_at for r in rows] == [overlap.midway_first_instant]


async def test_schedule_without_a_schedule_is_refused(kairos: Tenant) -> None:
    post = await kairos.create()
    for schedule in (None, posts_pb2.Schedule()):
        error = await refused(kairos.schedule(post.id, schedule), INVALID)
        assert fields(error) == ["schedule"]
    assert (await kairos.get(post.id)).status == posts_pb2.POST_STATUS_DRAFT


async def test_schedule_refuses_a_bad_instant(kairos: Tenant) -> None:
    post = await kairos.create()
    before = await kairos.db_counts()
    for schedule, field in (
        (at(-3600), "schedule"),
        (
            local(next_transition("Europe/Berlin", forward=True).midway, "Europe/Berlin"),
            "schedule.local.date_time",
        ),
        (local(f"{NEXT_YEAR}-07-01T09:30", "Nowhere/City"), "schedule.local.time_zone"),
    ):
        error = await refused(kairos.schedule(post.id, schedule), INVALID)
        assert fields(error) == [field], schedule
    assert await kairos.db_counts() == before
    assert (await kairos.get(post.id)).status == posts_pb2.POST_STATUS_DRAFT


async def test_schedule_with_a_stale_revision_is_aborted(kairos: Tenant) -> None:
    post = await kairos.create(schedule=at(3600))
    await kairos.update(post.id, ["content"], post=posts_pb2.Post(content="edited"))
    before = await kairos.db_counts()

    await refused(kairos.schedule(post.id, at(7200), expected_revision=1), grpc.StatusCode.ABORTED)

    assert (await kairos.get(post.id)).scheduled_at == post.scheduled_at
    assert await kairos.db_counts() == before


async def test_schedule_a_post_requiring_approval_waits_for_it(kairos: Tenant) -> None:
    post = await kairos.create(approval_required=True)
    scheduled = await kairos.schedule(post.id, at(3600))

    assert scheduled.status == posts_pb2.POST_STATUS_PENDING_APPROVAL
    assert [r.next_attempt_at for r in await kairos.db_targets(post.id)] == [None]


async def test_unschedule_goes_back_to_draft_and_disarms_the_targets(kairos: Tenant) -> None:
    x, mastodon = await kairos.connect(), await kairos.connect(posts_pb2.PLATFORM_MASTODON)
    post = await kairos.create(
        x, mastodon, schedule=local(f"{NEXT_YEAR}-07-01T09:30", "Europe/Paris")
    )
    assert all(r.next_attempt_at is not None for r in await kairos.db_targets(post.id))

    draft = await kairos.unschedule(post.id)

    assert draft.status == posts_pb2.POST_STATUS_DRAFT
    assert not draft.HasField("scheduled_at")
    assert draft.time_zone == ""
    assert draft.revision == 2
    assert all(t.status == posts_pb2.TARGET_STATUS_PENDING for t in draft.targets)
    rows = await kairos.db_targets(post.id)
    assert [(r.next_attempt_at, r.due_at) for r in rows] == [(None, None), (None, None)]
    assert await kairos.db_events(post.id) == {"created": 1, "scheduled": 1, "unscheduled": 1}


async def test_unschedule_a_draft_changes_nothing(kairos: Tenant) -> None:
    post = await kairos.create()
    again = await kairos.unschedule(post.id)

    assert again.status == posts_pb2.POST_STATUS_DRAFT
    assert again.revision == 1
    assert await kairos.db_events(post.id) == {"created": 1}


async def test_publish_now_schedules_for_this_instant(kairos: Tenant) -> None:
    post = await kairos.create(schedule=local(f"{NEXT_YEAR}-07-01T09:30", "Europe/Berlin"))
    published = await kairos.publish_now(post.id)

    assert published.status == posts_pb2.POST_STATUS_SCHEDULED
    assert close_to_now(when(published.scheduled_at))
    assert published.time_zone == ""
    assert published.revision == 2
    rows = await kairos.db_targets(post.id)
    assert [r.next_attempt_at for r in rows] == [when(published.scheduled_at)]
    assert (await kairos.db_events(post.id))["scheduled"] == 2


async def test_publish_now_of_a_draft(kairos: Tenant) -> None:
    post = await kairos.create()
    published = await kairos.publish_now(post.id)

    assert published.status == posts_pb2.POST_STATUS_SCHEDULED
    assert close_to_now(when(published.scheduled_at))


async def test_publish_now_needs_an_approval_first(kairos: Tenant) -> None:
    post = await kairos.create(schedule=at(3600), approval_required=True)
    before = await kairos.db_counts()

    error = await refused(kairos.publish_now(post.id), PRECONDITION)
    assert "requires approval" in (error.details() or "")
    assert await kairos.db_counts() == before
    assert [r.next_attempt_at for r in await kairos.db_targets(post.id)] == [None]

    await kairos.approve(post.id)
    published = await kairos.publish_now(post.id)
    assert published.status == posts_pb2.POST_STATUS_SCHEDULED
    assert close_to_now(when(published.scheduled_at))


async def test_publish_now_of_a_published_post_is_refused(kairos: Tenant) -> None:
    post = await kairos.create(schedule=at(60))
    await kairos.db_set_post(post.id, status="published")
    error = await refused(kairos.publish_now(post.id), PRECONDITION)
    assert "it is published" in (error.details() or "")


async def test_a_reschedule_takes_a_queued_target_back_to_pending(kairos: Tenant) -> None:
    post = await kairos.create(schedule=at(120))
    await queue(kairos, post)

    moved = await kairos.schedule(post.id, at(7200))

    assert moved.targets[0].status == posts_pb2.TARGET_STATUS_PENDING
    [row] = await kairos.db_targets(post.id)
    assert row.status == "pending"
    assert (row.delivery_id, row.delivery_revision, row.lease_until) == (None, None, None)
    assert row.next_attempt_at == when(moved.scheduled_at)


async def test_a_content_edit_takes_a_queued_target_back_to_pending(kairos: Tenant) -> None:
    post = await kairos.create(schedule=at(120))
    await queue(kairos, post)

    edited = await kairos.update(post.id, ["content"], post=posts_pb2.Post(content="v2"))

    assert edited.revision == 2
    [row] = await kairos.db_targets(post.id)
    assert row.status == "pending"
    assert (row.delivery_id, row.delivery_revision) == (None, None)
    assert row.next_attempt_at == when(post.scheduled_at)


async def test_a_notes_edit_leaves_a_queued_target_alone(kairos: Tenant) -> None:
    post = await kairos.create(schedule=at(120))
    delivery = await queue(kairos, post)

    await kairos.update(post.id, ["notes"], post=posts_pb2.Post(notes="only a note"))

    [row] = await kairos.db_targets(post.id)
    assert row.status == "queued"
    assert (row.delivery_id, row.delivery_revision) == (delivery, 1)


async def test_schedule_calls_on_an_unknown_post_are_not_found(kairos: Tenant) -> None:
    for call in (
        kairos.schedule(UNKNOWN_ID, at(600)),
        kairos.unschedule(UNKNOWN_ID),
        kairos.publish_now(UNKNOWN_ID),
    ):
        await refused(call, NOT_FOUND)


# --- DeletePost -------------------------------------------------------------------------------


async def test_delete_cancels_the_pending_targets(kairos: Tenant) -> None:
    x, mastodon = await kairos.connect(), await kairos.connect(posts_pb2.PLATFORM_MASTODON)
    post = await kairos.create(x, mastodon, schedule=at(3600))
    deleted = await kairos.delete(post.id)

    assert deleted.status == posts_pb2.POST_STATUS_CANCELLED
    assert deleted.revision == 2
    assert [t.status for t in deleted.targets] == [posts_pb2.TARGET_STATUS_CANCELLED] * 2
    rows = await kairos.db_targets(post.id)
    assert [(r.status, r.next_attempt_at) for r in rows] == [("cancelled", None)] * 2
    assert (await kairos.db_post(post.id)).deleted_at is not None
    assert (await kairos.db_events(post.id))["deleted"] == 1


async def test_delete_twice_gives_the_same_answer(kairos: Tenant) -> None:
    post = await kairos.create()
    first = await kairos.delete(post.id)
    second = await kairos.delete(post.id)

    assert (second.id, second.status, second.revision) == (first.id, first.status, first.revision)
    assert second.updated_at == first.updated_at
    assert await kairos.db_events(post.id) == {"created": 1, "deleted": 1}


async def test_a_deleted_post_is_gone_from_get_and_list(kairos: Tenant) -> None:
    account = await kairos.connect()
    kept = await kairos.create(account)
    gone = await kairos.create(account)
    await kairos.delete(gone.id)

    await refused(kairos.get(gone.id), NOT_FOUND)
    assert await kairos.list_ids() == [kept.id]
    stats = await kairos.stats()
    assert sum(s.count for s in stats.by_status) == 1


async def test_a_deleted_post_cannot_be_changed(kairos: Tenant) -> None:
    post = await kairos.create(schedule=at(3600), approval_required=True)
    await kairos.delete(post.id)

    for call in (
        kairos.update(post.id, ["content"], post=posts_pb2.Post(content="x")),
        kairos.schedule(post.id, at(600)),
        kairos.unschedule(post.id),
        kairos.publish_now(post.id),
        kairos.approve(post.id),
        kairos.reject(post.id, "no"),
        kairos.retry(post.id),
    ):
        await refused(call, NOT_FOUND)


async def test_delete_leaves_a_publishing_target_to_finish(kairos: Tenant) -> None:
    x, mastodon = await kairos.connect(), await kairos.connect(posts_pb2.PLATFORM_MASTODON)
    post = await kairos.create(x, mastodon, schedule=at(60))
    in_flight = next(t for t in post.targets if t.account_id == x)
    await kairos.db_set_target(in_flight.id, status="publishing")
    await kairos.db_set_post(post.id, status="publishing")

    deleted = await kairos.delete(post.id)

    by_account = {t.account_id: t.status for t in deleted.targets}
    assert by_account == {
        x: posts_pb2.TARGET_STATUS_PUBLISHING,
        mastodon: posts_pb2.TARGET_STATUS_CANCELLED,
    }
    assert deleted.status == posts_pb2.POST_STATUS_PUBLISHING


async def test_delete_of_an_unknown_or_foreign_post_is_not_found(
    api: RunningApi, kairos: Tenant
) -> None:
    async with other_tenant(api) as other:
        theirs = await other.create()
        for post_id in (UNKNOWN_ID, theirs.id):
            await refused(kairos.delete(post_id), NOT_FOUND)
        assert (await other.get(theirs.id)).status == posts_pb2.POST_STATUS_DRAFT
    error = await refused(kairos.delete("nope"), INVALID)
    assert fields(error) == ["post_id"]


# --- RetryPost --------------------------------------------------------------------------------


async def settled_post(kairos: Tenant) -> tuple[posts_pb2.Post, dict[str, str]]:
    """A post whose four targets ended failed, unknown, missed and published; {status: id}."""
    accounts = [
        await kairos.connect(),
        await kairos.connect(posts_pb2.PLATFORM_MASTODON),
        await kairos.connect(posts_pb2.PLATFORM_TELEGRAM),
        await kairos.connect(),
    ]
    post = await kairos.create(*accounts, schedule=at(60))
    by_status = {}
    for target, status in zip(
        post.targets, ["failed", "unknown", "missed", "published"], strict=True
    ):
        values: dict[str, object] = {"status": status, "next_attempt_at": None}
        if status == "published":
            values.update(platform_post_id="123", published_at=now())
        else:
            values.update(last_error_class="permanent", last_error_message="boom")
        await kairos.db_set_target(target.id, **values)
        by_status[status] = target.id
    await kairos.db_set_post(post.id, status="partially_published")
    return post, by_status


async def test_retry_sends_failed_unknown_and_missed_targets_again(kairos: Tenant) -> None:
    post, by_status = await settled_post(kairos)
    retried = await kairos.retry(post.id)

    assert retried.status == posts_pb2.POST_STATUS_PUBLISHING
    assert retried.revision == post.revision + 1
    statuses = {t.id: t.status for t in retried.targets}
    assert statuses == {
        by_status["failed"]: posts_pb2.TARGET_STATUS_PENDING,
        by_status["unknown"]: posts_pb2.TARGET_STATUS_PENDING,
        by_status["missed"]: posts_pb2.TARGET_STATUS_PENDING,
        by_status["published"]: posts_pb2.TARGET_STATUS_PUBLISHED,
    }
    rows = {str(r.id): r for r in await kairos.db_targets(post.id)}
    for status in ("failed", "unknown", "missed"):
        row = rows[by_status[status]]
        assert row.next_attempt_at is not None
        assert close_to_now(row.next_attempt_at)
    published = rows[by_status["published"]]
    assert (published.status, published.next_attempt_at, published.platform_post_id) == (
        "published",
        None,
        "123",
    )
    assert (await kairos.db_events(post.id))["retried"] == 1


async def test_retry_of_chosen_targets_only(kairos: Tenant) -> None:
    post, by_status = await settled_post(kairos)
    retried = await kairos.retry(post.id, by_status["unknown"])

    statuses = {t.id: t.status for t in retried.targets}
    assert statuses[by_status["unknown"]] == posts_pb2.TARGET_STATUS_PENDING
    assert statuses[by_status["failed"]] == posts_pb2.TARGET_STATUS_FAILED
    assert statuses[by_status["missed"]] == posts_pb2.TARGET_STATUS_MISSED


async def test_retry_of_a_published_target_is_refused(kairos: Tenant) -> None:
    post, by_status = await settled_post(kairos)
    before = await kairos.db_counts()

    error = await refused(
        kairos.retry(post.id, by_status["failed"], by_status["published"]), PRECONDITION
    )

    assert "never sent again" in (error.details() or "")
    assert await kairos.db_counts() == before
    rows = {str(r.id): r.status for r in await kairos.db_targets(post.id)}
    assert rows[by_status["failed"]] == "failed"


async def test_retry_of_an_unknown_target_names_it(kairos: Tenant) -> None:
    post, by_status = await settled_post(kairos)

    error = await refused(kairos.retry(post.id, UNKNOWN_ID), INVALID)
    assert fields(error) == ["target_ids[0]"]
    error = await refused(kairos.retry(post.id, by_status["failed"], "nope"), INVALID)
    assert fields(error) == ["target_ids[1]"]

    other = await kairos.create(schedule=at(60))
    error = await refused(kairos.retry(post.id, other.targets[0].id), INVALID)
    assert fields(error) == ["target_ids[0]"]


async def test_retry_with_nothing_to_retry_is_refused(kairos: Tenant) -> None:
    post = await kairos.create(schedule=at(600))
    before = await kairos.db_counts()

    error = await refused(kairos.retry(post.id), PRECONDITION)
    assert "no failed, unknown or missed target" in (error.details() or "")
    assert await kairos.db_counts() == before


async def test_retry_on_a_paused_account_is_refused(kairos: Tenant) -> None:
    post, by_status = await settled_post(kairos)
    [row] = [r for r in await kairos.db_targets(post.id) if str(r.id) == by_status["failed"]]
    await kairos.accounts.PauseAccount(
        posts_pb2.PauseAccountRequest(account_id=str(row.account_id)), metadata=kairos.metadata
    )
    error = await refused(kairos.retry(post.id, by_status["failed"]), PRECONDITION)
    assert "paused" in (error.details() or "")


# --- ApprovePost and RejectPost ---------------------------------------------------------------


async def test_approve_schedules_and_arms_a_pending_approval_post(kairos: Tenant) -> None:
    post = await kairos.create(schedule=at(3600), approval_required=True)
    approved = await kairos.approve(post.id)

    assert approved.status == posts_pb2.POST_STATUS_SCHEDULED
    assert close_to_now(when(approved.approved_at))
    assert approved.revision == 2
    rows = await kairos.db_targets(post.id)
    assert [r.next_attempt_at for r in rows] == [when(post.scheduled_at)]
    assert (await kairos.db_events(post.id))["approved"] == 1


async def test_approve_twice_changes_nothing_the_second_time(kairos: Tenant) -> None:
    post = await kairos.create(schedule=at(3600), approval_required=True)
    first = await kairos.approve(post.id)
    second = await kairos.approve(post.id)

    assert (second.status, second.revision, second.approved_at) == (
        first.status,
        first.revision,
        first.approved_at,
    )
    assert (await kairos.db_events(post.id))["approved"] == 1


async def test_approve_a_draft_keeps_it_a_draft_until_scheduled(kairos: Tenant) -> None:
    post = await kairos.create(approval_required=True)
    approved = await kairos.approve(post.id)
    assert approved.status == posts_pb2.POST_STATUS_DRAFT
    assert approved.HasField("approved_at")

    scheduled = await kairos.schedule(post.id, at(600))
    assert scheduled.status == posts_pb2.POST_STATUS_SCHEDULED


async def test_approve_or_reject_a_post_without_approval_is_refused(kairos: Tenant) -> None:
    post = await kairos.create(schedule=at(3600))
    for call in (kairos.approve(post.id), kairos.reject(post.id, "no")):
        error = await refused(call, PRECONDITION)
        assert "does not require approval" in (error.details() or "")
    assert (await kairos.get(post.id)).status == posts_pb2.POST_STATUS_SCHEDULED


async def test_reject_needs_a_reason(kairos: Tenant) -> None:
    post = await kairos.create(schedule=at(3600), approval_required=True)
    for reason in ("", "   ", "r" * 1001):
        error = await refused(kairos.reject(post.id, reason), INVALID)
        assert fields(error) == ["reason"], reason
    assert (await kairos.get(post.id)).status == posts_pb2.POST_STATUS_PENDING_APPROVAL


async def test_reject_makes_the_post_unclaimable(kairos: Tenant) -> None:
    post = await kairos.create(schedule=at(3600), approval_required=True)
    await kairos.approve(post.id)
    assert [r.next_attempt_at for r in await kairos.db_targets(post.id)] != [None]

    rejected = await kairos.reject(post.id, "  tone is off  ")

    assert rejected.status == posts_pb2.POST_STATUS_REJECTED
    assert rejected.rejection_reason == "tone is off"
    assert not rejected.HasField("approved_at")
    rows = await kairos.db_targets(post.id)
    assert [(r.status, r.next_attempt_at) for r in rows] == [("pending", None)]
    assert (await kairos.db_events(post.id))["rejected"] == 1
    error = await refused(kairos.publish_now(post.id), PRECONDITION)
    assert "requires approval" in (error.details() or "")


async def test_approve_after_reject_schedules_again(kairos: Tenant) -> None:
    post = await kairos.create(schedule=at(3600), approval_required=True)
    await kairos.reject(post.id, "fix the typo")
    approved = await kairos.approve(post.id)

    assert approved.status == posts_pb2.POST_STATUS_SCHEDULED
    assert approved.rejection_reason == ""
    assert approved.HasField("approved_at")
    assert [r.next_attempt_at for r in await kairos.db_targets(post.id)] == [
        when(post.scheduled_at)
    ]


async def test_rescheduling_a_rejected_post_asks_for_approval_again(kairos: Tenant) -> None:
    post = await kairos.create(schedule=at(3600), approval_required=True)
    await kairos.reject(post.id, "later")
    again = await kairos.schedule(post.id, at(7200))

    assert again.status == posts_pb2.POST_STATUS_PENDING_APPROVAL
    assert again.rejection_reason == ""
    assert [r.next_attempt_at for r in await kairos.db_targets(post.id)] == [None]


# --- outbox -----------------------------------------------------------------------------------


async def test_each_change_writes_its_event_with_the_post_state(kairos: Tenant) -> None:
    post = await kairos.create(schedule=at(3600))
    await kairos.update(post.id, ["content"], post=posts_pb2.Post(content="v2"))
    await kairos.update(post.id, ["notes"], post=posts_pb2.Post(notes="note"))
    await kairos.schedule(post.id, at(7200))
    await kairos.unschedule(post.id)
    await kairos.delete(post.id)

    assert await kairos.db_events(post.id) == {
        "created": 1,
        "scheduled": 2,
        "updated": 2,
        "unscheduled": 1,
        "deleted": 1,
    }
    async with kairos.app.uow() as uow:
        rows = (
            await uow.session.execute(
                select(OutboxEvent)
                .where(OutboxEvent.tenant_id == kairos.tenant)
                .order_by(OutboxEvent.seq)
            )
        ).scalars()
        events = [events_pb2.LifecycleEvent.FromString(r.payload) for r in rows]
    assert [(e.type, e.revision, e.post_status) for e in events] == [
        (events_pb2.LIFECYCLE_EVENT_TYPE_CREATED, 1, posts_pb2.POST_STATUS_SCHEDULED),
        (events_pb2.LIFECYCLE_EVENT_TYPE_SCHEDULED, 1, posts_pb2.POST_STATUS_SCHEDULED),
        (events_pb2.LIFECYCLE_EVENT_TYPE_UPDATED, 2, posts_pb2.POST_STATUS_SCHEDULED),
        (events_pb2.LIFECYCLE_EVENT_TYPE_UPDATED, 2, posts_pb2.POST_STATUS_SCHEDULED),
        (events_pb2.LIFECYCLE_EVENT_TYPE_SCHEDULED, 3, posts_pb2.POST_STATUS_SCHEDULED),
        (events_pb2.LIFECYCLE_EVENT_TYPE_UNSCHEDULED, 4, posts_pb2.POST_STATUS_DRAFT),
        (events_pb2.LIFECYCLE_EVENT_TYPE_DELETED, 5, posts_pb2.POST_STATUS_CANCELLED),
    ]
    assert {e.post_id for e in events} == {post.id}
    assert {e.tenant_id for e in events} == {kairos.tenant}
    assert len({e.event_id for e in events}) == len(events)


async def test_refused_requests_write_no_event(kairos: Tenant) -> None:
    post = await kairos.create(schedule=at(3600), approval_required=True)
    before = await kairos.db_events()

    for call, code in (
        (kairos.update(post.id, ["bogus"]), INVALID),
        (
            kairos.update(post.id, ["content"], post=posts_pb2.Post(content="y" * 300)),
            INVALID,
        ),
        (
            kairos.update(
                post.id, ["content"], post=posts_pb2.Post(content="z"), expected_revision=9
            ),
            grpc.StatusCode.ABORTED,
        ),
        (kairos.schedule(post.id, at(-3600)), INVALID),
        (kairos.schedule(post.id, at(600), expected_revision=9), grpc.StatusCode.ABORTED),
        (kairos.publish_now(post.id), PRECONDITION),
        (kairos.retry(post.id), PRECONDITION),
        (kairos.reject(post.id, ""), INVALID),
        (kairos.delete(UNKNOWN_ID), NOT_FOUND),
    ):
        await refused(call, code)

    assert await kairos.db_events() == before
