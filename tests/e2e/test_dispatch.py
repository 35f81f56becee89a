"""The heart of Kairos, end to end: api, scheduler and publisher as real processes.

Most tests share one running system (`stack`) and tell their posts apart by a unique marker in
the content; the tests that kill or restart processes start their own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC

import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.field_mask_pb2 import FieldMask

from kairos.events.v1 import events_pb2
from kairos.posts.v1 import posts_pb2
from support.nats_server import NatsServer
from support.stack import (
    Stack,
    at,
    due_of,
    eventually,
    expect_events,
    marker,
    running_stack,
    wait_status,
    watching_due_events,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def stack(
    nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    async with running_stack(nats_server, tmp_path_factory.mktemp("dispatch-logs")) as running:
        yield running


async def test_a_scheduled_post_arrives_on_time_once(stack: Stack) -> None:
    mark = marker()
    post = await stack.create(f"on time {mark}", 2.0)
    await eventually(lambda: bool(stack.received(mark)), 10, stack, "arrival")
    arrival = stack.received(mark)[0]["arrived_at"]
    assert arrival >= due_of(post), f"published {due_of(post) - arrival:.3f}s early"
    assert arrival - due_of(post) < 1.0, f"published {arrival - due_of(post):.3f}s late"
    done = await wait_status(stack, post.id, posts_pb2.POST_STATUS_PUBLISHED)
    target = done.targets[0]
    assert target.status == posts_pb2.TARGET_STATUS_PUBLISHED
    assert target.platform_post_id == next(
        p.id for p in stack.sandbox.platform.posts if mark in p.body["content"]
    )
    assert [a.published for a in target.attempts] == [True]
    await asyncio.sleep(1.0)
    assert len(stack.received(mark)) == 1


async def test_edits_during_the_lead_window_win(stack: Stack) -> None:
    """Claimed and on the bus (lead 1.5 s), then changed before the instant: the old delivery
    never publishes, the new content and time do."""
    edited, moved, unscheduled, deleted = marker(), marker(), marker(), marker()
    names = {"edit": edited, "move": moved, "unschedule": unscheduled, "delete": deleted}
    async with watching_due_events(stack.nats) as due_events:
        posts = {name: await stack.create(f"{name} old {m}", 2.5) for name, m in names.items()}
        ids = {post.id for post in posts.values()}
        await eventually(
            lambda: {e.post_id for e in due_events} >= ids, 5, stack, "the four due events"
        )
        for post in posts.values():
            claimed = await stack.get(post.id)
            assert claimed.targets[0].status == posts_pb2.TARGET_STATUS_QUEUED, claimed
        await stack.posts.UpdatePost(
            posts_pb2.UpdatePostRequest(
                post_id=posts["edit"].id,
                post=posts_pb2.Post(content=f"edit new {edited}"),
                update_mask=FieldMask(paths=["content"]),
            ),
            metadata=stack.metadata,
        )
        new_time = at(3.5)
        await stack.posts.SchedulePost(
            posts_pb2.SchedulePostRequest(
                post_id=posts["move"].id, schedule=posts_pb2.Schedule(at=new_time)
            ),
            metadata=stack.metadata,
        )
        await stack.posts.UnschedulePost(
            posts_pb2.UnschedulePostRequest(post_id=posts["unschedule"].id),
            metadata=stack.metadata,
        )
        await stack.posts.DeletePost(
            posts_pb2.DeletePostRequest(post_id=posts["delete"].id), metadata=stack.metadata
        )
        # Every change landed while the old deliveries were still waiting for their instant.
        assert time.time() < min(due_of(p) for p in posts.values()), "changed too late to test"
        await eventually(lambda: bool(stack.received(moved)), 10, stack, "rescheduled arrival")
        edit_done = await wait_status(stack, posts["edit"].id, posts_pb2.POST_STATUS_PUBLISHED)
        move_done = await wait_status(stack, posts["move"].id, posts_pb2.POST_STATUS_PUBLISHED)
        await asyncio.sleep(1.5)
    assert [p["content"] for p in stack.received(edited)] == [f"edit new {edited}"]
    moved_arrivals = stack.received(moved)
    assert len(moved_arrivals) == 1
    assert moved_arrivals[0]["arrived_at"] >= new_time.ToDatetime(tzinfo=UTC).timestamp()
    # One attempt each: the old deliveries were fenced out before they began one.
    assert len(edit_done.targets[0].attempts) == 1
    assert len(move_done.targets[0].attempts) == 1
    assert stack.received(unscheduled) == []
    assert stack.received(deleted) == []
    assert (await stack.get(posts["unschedule"].id)).status == posts_pb2.POST_STATUS_DRAFT
    assert (await stack.get(posts["unschedule"].id)).targets[0].attempts == []


async def test_server_errors_are_retried_with_backoff(stack: Stack) -> None:
    mark = marker()
    stack.script(match=mark, status=500, times=2, body={"error": "try later"})
    post = await stack.create(f"flaky {mark}", 0.5)
    done = await wait_status(stack, post.id, posts_pb2.POST_STATUS_PUBLISHED, timeout=20)
    attempts = done.targets[0].attempts
    assert [(a.published, a.http_status) for a in attempts] == [
        (False, 500),
        (False, 500),
        (True, 201),
    ]
    gaps = [
        attempts[i + 1].started_at.ToDatetime().timestamp()
        - attempts[i].started_at.ToDatetime().timestamp()
        for i in range(2)
    ]
    assert all(gap >= 0.25 for gap in gaps), gaps  # backoff: base 0.5 s, jitter over the upper half
    assert len(stack.received(mark)) == 1
    wanted = {"created": 1, "scheduled": 1, "retry_scheduled": 2, "published": 1}
    await expect_events(stack, wanted, lambda e: e.post_id == post.id)


async def test_a_platform_failing_for_good_is_tried_max_attempts_times(stack: Stack) -> None:
    """500 forever: the first try and 3 retries (the default), then FAILED, every try shown."""
    mark = marker()
    stack.script(match=mark, status=500, times=100, record=True, body={"error": "down"})
    post = await stack.create(f"down for good {mark}", 0.5)
    done = await wait_status(stack, post.id, posts_pb2.POST_STATUS_FAILED, timeout=30)
    target = done.targets[0]
    assert target.status == posts_pb2.TARGET_STATUS_FAILED
    assert target.last_error.error_class == posts_pb2.ERROR_CLASS_RETRYABLE
    assert [(a.number, a.published, a.http_status) for a in target.attempts] == [
        (n, False, 500) for n in range(1, 5)
    ]
    assert all(a.HasField("finished_at") for a in target.attempts)
    await asyncio.sleep(1.5)  # a fifth try would have come by now (backoff base 0.5 s)
    assert len(stack.received(mark)) == 4
    wanted = {"created": 1, "scheduled": 1, "retry_scheduled": 3, "failed": 1}
    await expect_events(stack, wanted, lambda e: e.post_id == post.id)


async def test_retry_after_is_honoured(stack: Stack) -> None:
    mark = marker()
    stack.script(match=mark, status=429, headers={"retry-after": "2"}, body={"error": "slow"})
    post = await stack.create(f"limited {mark}", 0.5)
    done = await wait_status(stack, post.id, posts_pb2.POST_STATUS_PUBLISHED, timeout=20)
    first, second = done.targets[0].attempts
    assert first.http_status == 429
    waited = second.started_at.ToDatetime().timestamp() - first.finished_at.ToDatetime().timestamp()
    assert waited >= 1.9, f"retried after {waited:.2f}s despite Retry-After: 2"


async def test_a_rejection_fails_with_the_platform_message(stack: Stack) -> None:
    mark = marker()
    stack.script(match=mark, status=400, body={"error": "status is a duplicate"})
    post = await stack.create(f"rejected {mark}", 0.5)
    done = await wait_status(stack, post.id, posts_pb2.POST_STATUS_FAILED)
    target = done.targets[0]
    assert target.status == posts_pb2.TARGET_STATUS_FAILED
    assert target.last_error.error_class == posts_pb2.ERROR_CLASS_PERMANENT
    assert "status is a duplicate" in target.last_error.message
    assert len(target.attempts) == 1
    wanted = {"created": 1, "scheduled": 1, "failed": 1}
    events = await expect_events(stack, wanted, lambda e: e.post_id == post.id)
    failed = next(e for e in events if e.type == events_pb2.LIFECYCLE_EVENT_TYPE_FAILED)
    assert failed.target_status == posts_pb2.TARGET_STATUS_FAILED


async def test_a_post_past_stale_after_is_missed(stack: Stack) -> None:
    """Due, but its account was paused until past stale_after: MISSED, never sent."""
    mark = marker()
    await stack.accounts.PauseAccount(
        posts_pb2.PauseAccountRequest(account_id=stack.account_id), metadata=stack.metadata
    )
    try:
        post = await stack.create(f"stale {mark}", 0.5, stale_after=Duration(seconds=1))
        await asyncio.sleep(2.5)
    finally:
        await stack.accounts.ResumeAccount(
            posts_pb2.ResumeAccountRequest(account_id=stack.account_id), metadata=stack.metadata
        )
    done = await wait_status(stack, post.id, posts_pb2.POST_STATUS_MISSED)
    assert done.targets[0].status == posts_pb2.TARGET_STATUS_MISSED
    await asyncio.sleep(1.0)
    assert stack.received(mark) == []
    wanted = {"created": 1, "scheduled": 1, "missed": 1}
    await expect_events(stack, wanted, lambda e: e.post_id == post.id)


async def test_every_state_change_reaches_kairos_events_once(stack: Stack) -> None:
    from kairos_common.streams import EVENTS_STREAM, connect

    mark = marker()
    post = await stack.create(f"events {mark}", 0.5)
    await wait_status(stack, post.id, posts_pb2.POST_STATUS_PUBLISHED)
    client = await connect(stack.nats.url, name="events-test")
    try:
        js = client.jetstream()
        subscription = await js.subscribe(
            "kairos.events.>", stream=EVENTS_STREAM, ordered_consumer=True
        )
        seen: list[events_pb2.LifecycleEvent] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ours = [e for e in seen if e.post_id == post.id]
            if {e.type for e in ours} >= {
                events_pb2.LIFECYCLE_EVENT_TYPE_CREATED,
                events_pb2.LIFECYCLE_EVENT_TYPE_SCHEDULED,
                events_pb2.LIFECYCLE_EVENT_TYPE_PUBLISHED,
            }:
                break
            try:
                message = await subscription.next_msg(timeout=0.5)
            except Exception:
                continue
            seen.append(events_pb2.LifecycleEvent.FromString(message.data))
        await asyncio.sleep(1.0)  # anything doubled would arrive by now
        while True:
            try:
                message = await subscription.next_msg(timeout=0.5)
            except Exception:
                break
            seen.append(events_pb2.LifecycleEvent.FromString(message.data))
        await subscription.unsubscribe()
    finally:
        await client.close()
    ours = [e for e in seen if e.post_id == post.id]
    kinds = sorted(events_pb2.LifecycleEventType.Name(e.type) for e in ours)
    assert kinds == [
        "LIFECYCLE_EVENT_TYPE_CREATED",
        "LIFECYCLE_EVENT_TYPE_PUBLISHED",
        "LIFECYCLE_EVENT_TYPE_SCHEDULED",
    ]
    assert len({e.event_id for e in seen}) == len(seen), "an event id appeared twice"
    published = next(e for e in ours if e.type == events_pb2.LIFECYCLE_EVENT_TYPE_PUBLISHED)
    assert published.target_status == posts_pb2.TARGET_STATUS_PUBLISHED


async def connect_sandbox(stack: Stack, refresh_token: str) -> str:
    reply = await stack.accounts.ConnectAccount(
        posts_pb2.ConnectAccountRequest(
            platform=posts_pb2.PLATFORM_SANDBOX,
            handle=f"@refreshing-{marker()}",
            credentials=posts_pb2.Credentials(
                access_token="expired-token",
                refresh_token=refresh_token,
                instance_url=stack.sandbox.url,
            ),
        ),
        metadata=stack.metadata,
    )
    return reply.account.id


async def create_on(stack: Stack, account_id: str, content: str) -> posts_pb2.Post:
    request = posts_pb2.CreatePostRequest(
        content=content, targets=[posts_pb2.TargetSpec(account_id=account_id)]
    )
    request.schedule.at.CopyFrom(at(0.5))
    return (await stack.posts.CreatePost(request, metadata=stack.metadata)).post


async def test_an_expired_token_is_refreshed_once_and_the_post_goes_out(stack: Stack) -> None:
    mark = marker()
    stack.sandbox.platform.refresh_tokens.add(f"refresh-{mark}")
    account_id = await connect_sandbox(stack, f"refresh-{mark}")
    before = stack.sandbox.platform.refreshes
    stack.sandbox.platform.expired_tokens.add("expired-token")
    posts = [await create_on(stack, account_id, f"auth {mark} {i}") for i in range(2)]
    for post in posts:
        await wait_status(stack, post.id, posts_pb2.POST_STATUS_PUBLISHED)
    # Two calls refused at once, one refresh (single flight), both then published once.
    assert stack.sandbox.platform.refreshes - before == 1
    arrivals = stack.received(mark)
    assert len(arrivals) == 2
    used = {p.headers["authorization"] for p in stack.sandbox.platform.posts if mark in str(p.body)}
    assert len(used) == 1
    assert used.pop().startswith("Bearer access-")  # the refreshed token, not "expired-token"
    account = await stack.accounts.GetAccount(
        posts_pb2.GetAccountRequest(account_id=account_id), metadata=stack.metadata
    )
    assert account.account.status == posts_pb2.ACCOUNT_STATUS_ACTIVE
    assert account.account.HasField("token_expires_at")


async def test_a_failed_refresh_marks_the_account_needs_reauth(stack: Stack) -> None:
    mark = marker()
    account_id = await connect_sandbox(stack, "not-a-known-refresh-token")
    stack.sandbox.platform.expired_tokens.add("expired-token")
    post, _ = [await create_on(stack, account_id, f"reauth {mark} {i}") for i in range(2)]
    deadline = time.monotonic() + 15
    status = posts_pb2.ACCOUNT_STATUS_ACTIVE
    while time.monotonic() < deadline and status != posts_pb2.ACCOUNT_STATUS_NEEDS_REAUTH:
        await asyncio.sleep(0.2)
        status = (
            await stack.accounts.GetAccount(
                posts_pb2.GetAccountRequest(account_id=account_id), metadata=stack.metadata
            )
        ).account.status
    assert status == posts_pb2.ACCOUNT_STATUS_NEEDS_REAUTH, stack.logs()
    # The account is marked as the refresh fails; the attempt's outcome is reported after it.
    target = (await stack.get(post.id)).targets[0]
    while time.monotonic() < deadline and target.status == posts_pb2.TARGET_STATUS_PUBLISHING:
        await asyncio.sleep(0.2)
        target = (await stack.get(post.id)).targets[0]
    # It waits for the user to reconnect; nothing was published.
    assert target.status == posts_pb2.TARGET_STATUS_PENDING
    assert target.last_error.error_class == posts_pb2.ERROR_CLASS_AUTH
    assert stack.received(mark) == []
    # Two posts due at once on the account, one state change of the account: one event.
    reauth = await expect_events(
        stack,
        {"needs_reauth": 1},
        lambda e: (
            e.account_id == account_id and e.type == events_pb2.LIFECYCLE_EVENT_TYPE_NEEDS_REAUTH
        ),
    )
    assert not reauth[0].post_id


async def test_a_poison_message_goes_to_the_dead_letter_stream(stack: Stack) -> None:
    from kairos_common.streams import DEAD_STREAM, connect, due_subject

    client = await connect(stack.nats.url, name="poison-test")
    try:
        js = client.jetstream()
        junk = b"\xff\x00 not a due event " + marker().encode()
        await js.publish(due_subject("sandbox"), junk)
        subscription = await js.subscribe(
            "kairos.dead.>", stream=DEAD_STREAM, ordered_consumer=True
        )
        found: events_pb2.DeadLetter | None = None
        deadline = time.monotonic() + 10
        while found is None and time.monotonic() < deadline:
            try:
                message = await subscription.next_msg(timeout=0.5)
            except Exception:
                continue
            letter = events_pb2.DeadLetter.FromString(message.data)
            if letter.payload == junk:
                found = letter
        await subscription.unsubscribe()
    finally:
        await client.close()
    assert found is not None, stack.logs()
    assert found.subject == "kairos.due.sandbox"
    assert "undecodable" in found.reason


async def test_the_scheduler_catches_up_after_downtime_honouring_stale_after(
    stack: Stack,
) -> None:
    fresh, stale = marker(), marker()
    scheduler = stack.schedulers[0]
    assert scheduler.terminate() == 0
    try:
        kept = await stack.create(f"catch up {fresh}", 0.3, stale_after=Duration(seconds=3600))
        dropped = await stack.create(f"too late {stale}", 0.3, stale_after=Duration(seconds=1))
        await asyncio.sleep(3.0)  # both are overdue while no scheduler runs
    finally:
        scheduler.start()
        await scheduler.wait_serving()
    await wait_status(stack, kept.id, posts_pb2.POST_STATUS_PUBLISHED)
    await wait_status(stack, dropped.id, posts_pb2.POST_STATUS_MISSED)
    assert len(stack.received(fresh)) == 1
    assert stack.received(stale) == []


async def test_publisher_sigterm_finishes_the_call_in_flight(stack: Stack) -> None:
    mark = marker()
    stack.script(match=mark, status=201, delay=1.5, record=True, body={"id": f"slow-{mark}"})
    post = await stack.create(f"graceful {mark}", 0.3)
    await eventually(lambda: bool(stack.received(mark)), 10, stack, "the slow call began")
    publisher = stack.publishers[0]
    stopped_at = time.monotonic()
    # Wait in a thread: the sandbox answering the slow call lives on this event loop.
    code = await asyncio.to_thread(publisher.terminate, 15)
    assert code == 0, publisher.logs()[-3000:]
    assert time.monotonic() - stopped_at >= 1.0  # it waited for the call
    replacement = stack.add("publisher")
    stack.publishers.remove(publisher)
    await replacement.wait_serving()
    done = await stack.get(post.id)
    assert done.status == posts_pb2.POST_STATUS_PUBLISHED, f"{done}\n{publisher.logs()}"
    assert done.targets[0].platform_post_id == f"slow-{mark}"
    assert len(stack.received(mark)) == 1


async def test_an_event_far_from_due_is_handed_back_with_a_delay(stack: Stack) -> None:
    """A publisher that holds events at most 0.3 s gets them back from JetStream on time."""
    old = stack.publishers.pop(0)
    assert old.terminate() == 0
    short = stack.add("publisher", KAIROS_HOLD_MAX_SECONDS="0.3")
    await short.wait_serving()
    mark = marker()
    post = await stack.create(f"nak delay {mark}", 1.4)
    await eventually(lambda: bool(stack.received(mark)), 10, stack, "arrival after nak")
    arrival = stack.received(mark)[0]["arrived_at"]
    assert arrival >= due_of(post)
    assert arrival - due_of(post) < 1.5
