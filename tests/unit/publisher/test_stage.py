"""TrackedStage: an attempt that uploads first is marked uploading before anything is sent,
its lease kept while it runs, marked publishing before the public call, and its call slots
handed back while it waits for a platform's processing."""

from __future__ import annotations

import asyncio
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
    assert await stage.start() is None
    assert await stage.publishing() is None
    await stage.stop()
    assert dispatch.marks == [
        dispatch_pb2.ATTEMPT_STAGE_UPLOADING,
        dispatch_pb2.ATTEMPT_STAGE_PUBLISHING,
    ]
    assert stage.published_mark
    assert stage.lease_ends > 0


@pytest.mark.parametrize("dispatch", [FakeDispatch(ok=False), FakeDispatch(fail=True)])
async def test_a_mark_that_does_not_hold_stops_the_attempt(dispatch: FakeDispatch) -> None:
    refused = await stage_of(dispatch).start()
    assert refused is not None
    assert refused.result == Result.RETRYABLE
    dispatch.ok, dispatch.fail = True, False
    stage = stage_of(dispatch)
    assert await stage.start() is None
    dispatch.ok = False
    outcome = await stage.publishing()
    await stage.stop()
    assert outcome is not None
    assert outcome.result == Result.RETRYABLE
    assert "not published" in outcome.message
    assert not stage.published_mark


async def test_the_lease_is_kept_every_third_of_it() -> None:
    dispatch = FakeDispatch()
    stage = stage_of(dispatch, lease=3.0)  # marked again every second (the floor)
    assert await stage.start() is None
    await asyncio.sleep(2.3)
    await stage.stop()
    assert dispatch.marks.count(dispatch_pb2.ATTEMPT_STAGE_UPLOADING) == 3


async def test_pause_hands_the_call_slots_back_and_takes_them_again() -> None:
    account, platform = asyncio.Semaphore(1), asyncio.Semaphore(1)
    await account.acquire()
    await platform.acquire()
    stage = stage_of(FakeDispatch(), slots=(account, platform))
    pausing = asyncio.create_task(stage.pause(0.2))
    await asyncio.sleep(0.05)
    # Another attempt of the account can call meanwhile.
    async with account, platform:
        pass
    await pausing
    assert account.locked()
    assert platform.locked()
