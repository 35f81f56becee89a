"""DispatchClient offers an outcome again while the api is away, until the lease ends."""

from __future__ import annotations

import asyncio
import time
from typing import cast

import grpc
import pytest

from kairos.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from kairos_publisher.dispatch import RETRY_FIRST, DispatchClient


def failure(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        code, grpc.aio.Metadata(), grpc.aio.Metadata(), "from the test", None
    )


class FlakyApi:
    """CompleteAttempts failing with the given codes first, then answering."""

    def __init__(self, *codes: grpc.StatusCode) -> None:
        self.codes = list(codes)
        self.calls = 0

    async def CompleteAttempts(  # noqa: N802 - the gRPC method's name
        self, request: dispatch_pb2.CompleteAttemptsRequest, **_: object
    ) -> dispatch_pb2.CompleteAttemptsResponse:
        self.calls += 1
        if self.codes:
            raise failure(self.codes.pop(0))
        return dispatch_pb2.CompleteAttemptsResponse(
            results=[
                dispatch_pb2.CompletionResult(attempt_id=o.attempt_id) for o in request.outcomes
            ]
        )


def client(api: FlakyApi) -> DispatchClient:
    dispatch = DispatchClient(cast("dispatch_pb2_grpc.DispatchServiceAsyncStub", api), "token")
    dispatch.start()
    return dispatch


OUTCOME = dispatch_pb2.AttemptOutcome(attempt_id="a", delivery_id="d")


async def test_transient_failures_are_offered_again_within_the_lease() -> None:
    codes = grpc.StatusCode
    # CANCELLED: what a stopping api answers to calls it had not yet begun (grpc/grpc#41785).
    api = FlakyApi(
        codes.UNAVAILABLE, codes.DEADLINE_EXCEEDED, codes.RESOURCE_EXHAUSTED, codes.CANCELLED
    )
    dispatch = client(api)
    result = await dispatch.complete(OUTCOME, until=time.monotonic() + 30)
    assert result.attempt_id == "a"
    assert api.calls == 5
    await dispatch.close()


async def test_other_failures_and_the_end_of_the_lease_give_up() -> None:
    api = FlakyApi(grpc.StatusCode.INVALID_ARGUMENT)
    dispatch = client(api)
    with pytest.raises(grpc.aio.AioRpcError):
        await dispatch.complete(OUTCOME, until=time.monotonic() + 30)
    assert api.calls == 1  # not tried again

    api.codes = [grpc.StatusCode.UNAVAILABLE] * 100
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError):
        await dispatch.complete(OUTCOME, until=started + 1.0)
    assert time.monotonic() - started <= 1.0
    assert 1 + 3 <= api.calls <= 1 + 5  # 0.1, 0.2, 0.4 s apart: the next wait passes the lease
    await dispatch.close()


async def test_closing_stops_the_offers_with_the_last_failure() -> None:
    api = FlakyApi(*[grpc.StatusCode.UNAVAILABLE] * 100)
    dispatch = client(api)
    completing = asyncio.ensure_future(dispatch.complete(OUTCOME, until=time.monotonic() + 30))
    await asyncio.sleep(RETRY_FIRST / 2)  # the first offer failed; the next is not due
    assert api.calls == 1
    started = time.monotonic()
    await dispatch.close()  # while the completion waits to be offered again
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await completing
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - started < RETRY_FIRST
    assert api.calls == 1
