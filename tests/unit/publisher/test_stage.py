"""TrackedStage: an attempt that uploads first is marked uploading before anything is sent,
its lease kept while it runs, marked publishing before the public call, and its call slots
handed back while it waits for a platform's processing."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from kairos.dispatch.v1 import dispatch_pb2
from kairos_publisher.dispatch import DispatchClient
from kairos_publisher.platforms.base import Result
from kairos_publisher.stage import TrackedStage


class FakeDispatch:
    """Answers MarkAttempt as told, recording the stages asked for."""

    def __init__(self, *, ok: bool = True, fail: bool = False) -> None:
        self.ok = ok
        self.fail = fail
        self.marks: list[int] = []

    async def mark(self, attempt_id: str, stage: int) -> dispatch_pb2.MarkAttemptResponse:
        self.marks.append(stage)
        if self.fail:
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.UNAVAILABLE,
                grpc.aio.Metadata(),
                grpc.aio.Metadata(),
                "api away",
                None,
            )
        return dispatch_pb2.MarkAttemptResponse(
            ok=self.ok, lease=Duration(seconds=120), reason="" if self.ok else "superseded"
        )


def stage_of(dispatch: FakeDispatch, lease: float = 120.0, **kw: Any) -> TrackedStage:
    return TrackedStage(cast(DispatchClient, dispatch), "attempt-1", lease, **kw)


async def test_marks_uploading_then_publishing_and_extends_the_lease() -> None:
    dispatch = FakeDispatch()
    stage = stage_of(dispatch)
    before = time.monotonic()
    assert await stage.start() is None
    assert await stage.publishing() is None
    await stage.stop()
    assert dispatch.marks == [
        dispatch_pb2.ATTEMPT_STAGE_UPLOADING,
        dispatch_pb2.ATTEMPT_STAGE_PUBLISHING,
    ]
    assert stage.published_mark
    # The lease the api answered (120 s), counted from the last mark.
    assert before + 120 <= stage.lease_ends <= time.monotonic() + 120


@pytest.mark.parametrize("refusal", [{"ok": False}, {"fail": True}])
async def test_a_mark_that_does_not_hold_stops_the_attempt(refusal: dict[str, bool]) -> None:
    dispatch = FakeDispatch(**refusal)
    refused = await stage_of(dispatch).start()
    assert refused is not None
    assert refused.result == Result.RETRYABLE
    dispatch.ok, dispatch.fail = True, False
    stage = stage_of(dispatch)
    assert await stage.start() is None
    dispatch.ok, dispatch.fail = refusal.get("ok", True), refusal.get("fail", False)
    outcome = await stage.publishing()
    await stage.stop()
    assert outcome is not None
    assert outcome.result == Result.RETRYABLE
    assert "not published" in outcome.message
    assert not stage.published_mark


async def test_the_lease_is_kept_every_third_of_it(monkeypatch: pytest.MonkeyPatch) -> None:
    dispatch = FakeDispatch()
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr("kairos_publisher.stage.asyncio.sleep", sleep)
    stage = stage_of(dispatch, lease=90.0)
    assert await stage.start() is None
    while dispatch.marks.count(dispatch_pb2.ATTEMPT_STAGE_UPLOADING) < 4:
        await real_sleep(0)
    await stage.stop()
    assert waits[:3] == [30.0, 30.0, 30.0]  # a third of the 90 s lease between marks


async def test_pause_hands_the_call_slots_back_and_takes_them_again() -> None:
    account, platform = asyncio.Semaphore(1), asyncio.Semaphore(1)
    await account.acquire()
    await platform.acquire()
    stage = stage_of(FakeDispatch(), slots=(account, platform))
    pausing = asyncio.create_task(stage.pause(0.2))
    await asyncio.sleep(0.05)
    # Another attempt of the account can call meanwhile (it would wait for ever otherwise).
    await asyncio.wait_for(account.acquire(), 1)
    await asyncio.wait_for(platform.acquire(), 1)
    platform.release()
    account.release()
    await pausing
    assert account.locked()
    assert platform.locked()


async def test_a_pause_is_at_most_the_configured_longest_wait() -> None:
    stage = stage_of(FakeDispatch(), max_pause=0.05)
    started = time.monotonic()
    await asyncio.wait_for(stage.pause(60.0), 5)
    assert time.monotonic() - started < 1.0
