"""The publisher's one client of DispatchService.

The channel, the service token, the calls' deadline, the batching of BeginAttempts and
CompleteAttempts, and which calls are tried again all live here; the consumers ask for one
delivery's begin or one attempt's completion and get that one answer.

An outcome exists only in the publisher's memory until CompleteAttempts records it, so it is
offered again for as long as the attempt's lease lasts while the api is away (a restart under
load takes seconds); only then is it given up, and the sweeper settles the attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import grpc

from kairos.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from kairos_common import tracing
from kairos_common.grpc.channel import bearer, open_channel
from kairos_common.settings import CommonSettings
from kairos_publisher.batching import Batcher

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Deadline of each call to the api (seconds).
RPC_TIMEOUT = 15.0
#: How long a completion waits for others to share its CompleteAttempts call (seconds). The
#: post is out by then, so this delays only the ack and the status; a burst on one account
#: completes a few attempts at a time, and one call per few posts cost about a tenth of the
#: publisher's CPU (and an api transaction each).
COMPLETE_LINGER = 0.005
#: Failures after which a call to the api is made again (a completion here, a webhook report in
#: webhooks.py): the api is away, slow or shedding load.
TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        # A stopping api answers CANCELLED to the calls it had received but not yet begun
        # (grpc/grpc#41785); the publisher's own cancellations never arrive as errors.
        grpc.StatusCode.CANCELLED,
    }
)
#: Waits between offers of a completion: doubling from the first, capped (seconds). Not
#: jittered, so the outcomes that failed together go out again together, in one batch.
RETRY_FIRST = 0.1
RETRY_CAP = 2.0


async def offered_again(
    call: Callable[[], Awaitable[T]],
    *,
    give_up: Callable[[], float],
    stop: asyncio.Event,
    first: float,
    cap: float,
) -> T:
    """`call`'s answer, made again after each TRANSIENT failure, waiting `first` seconds and
    doubling up to `cap`. `give_up()`, asked at the first failure, is the `time.monotonic()`
    instant past which no wait may end. Raises the last error when it gives up, or when `stop`
    is set, and any other failure at once. Only for calls a second offer cannot do twice."""
    wait = first
    until: float | None = None
    while True:
        try:
            return await call()
        except grpc.aio.AioRpcError as error:
            if until is None:
                until = give_up()
            if error.code() not in TRANSIENT or stop.is_set() or time.monotonic() + wait > until:
                raise
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
            if stop.is_set():
                raise
        wait = min(wait * 2, cap)


class DispatchClient:
    """Begins and completes attempts in batches, fails deliveries, saves refreshed tokens."""

    def __init__(
        self,
        stub: dispatch_pb2_grpc.DispatchServiceAsyncStub,
        token: str,
        *,
        timeout: float = RPC_TIMEOUT,
        channel: grpc.aio.Channel | None = None,
    ) -> None:
        self._stub = stub
        self._metadata = bearer(token)
        self._timeout = timeout
        self._channel = channel
        self._closing = asyncio.Event()
        #: Tracing on: each call carries the traceparent of the span current in its caller.
        self._traced = tracing.tracer() is not None
        #: The traceparents of the begins waiting to go out, by delivery id (tracing on).
        self._begin_parents: dict[str, str] = {}
        #: Items are (delivery id, begin key).
        self._begins: Batcher[tuple[str, str], dispatch_pb2.BeginAttemptResponse] = Batcher(
            "BeginAttempts", self._begin_batch
        )
        self._completions: Batcher[dispatch_pb2.AttemptOutcome, dispatch_pb2.CompletionResult] = (
            Batcher("CompleteAttempts", self._complete_batch, linger=COMPLETE_LINGER)
        )

    @classmethod
    def connect(cls, settings: CommonSettings) -> DispatchClient:
        """A client of the api at KAIROS_API_TARGET, on its own channel (closed by `close`)."""
        channel = open_channel(settings.api_target, settings.api_tls)
        stub = dispatch_pb2_grpc.DispatchServiceStub(channel)
        return cls(stub, settings.service_token, channel=channel)

    def start(self) -> None:
        self._begins.start()
        self._completions.start()

    async def close(self) -> None:
        """Send what is pending, then close the channel. Completions waiting to be offered
        again give up at once."""
        self._closing.set()
        try:
            await self._begins.close()
            await self._completions.close()
        finally:
            if self._channel is not None:
                await self._channel.close(None)

    @property
    def calls(self) -> int:
        """Batched calls made so far (BeginAttempts and CompleteAttempts)."""
        return self._begins.calls + self._completions.calls

    async def begin(self, delivery_id: str, begin_key: str) -> dispatch_pb2.BeginAttemptResponse:
        """The fence's answer for one delivery, asked once: the caller offers it again under the
        same begin key (`offered_again`), and knows how to hand its event back."""
        if not self._traced:
            return await self._begins.submit((delivery_id, begin_key))
        self._begin_parents[delivery_id] = tracing.current_traceparent()
        try:
            return await self._begins.submit((delivery_id, begin_key))
        finally:
            self._begin_parents.pop(delivery_id, None)

    async def complete(
        self, outcome: dispatch_pb2.AttemptOutcome, until: float
    ) -> dispatch_pb2.CompletionResult:
        """Record one attempt's outcome, offering it again after transient failures until
        `until` (a `time.monotonic()` instant: the end of the attempt's lease). The api records
        an outcome once, so an offer that did reach it changes nothing the second time. Raises
        the last error when it gives up (also when the client closes meanwhile), and any other
        failure at once."""
        if self._traced:
            outcome.traceparent = tracing.current_traceparent()
        return await offered_again(
            lambda: self._completions.submit(outcome),
            give_up=lambda: until,
            stop=self._closing,
            first=RETRY_FIRST,
            cap=RETRY_CAP,
        )

    async def fail_delivery(self, delivery_id: str, reason: str) -> None:
        """Mark the target of a dead-lettered delivery failed."""
        await self._stub.FailDelivery(
            dispatch_pb2.FailDeliveryRequest(
                delivery_id=delivery_id,
                reason=reason,
                traceparent=tracing.current_traceparent() if self._traced else "",
            ),
            metadata=self._metadata,
            timeout=self._timeout,
        )

    async def mark(
        self, attempt_id: str, stage: dispatch_pb2.AttemptStage.ValueType
    ) -> dispatch_pb2.MarkAttemptResponse:
        """Record the stage an attempt that uploads first has reached, extending its lease."""
        return await self._stub.MarkAttempt(
            dispatch_pb2.MarkAttemptRequest(
                attempt_id=attempt_id,
                stage=stage,
                traceparent=tracing.current_traceparent() if self._traced else "",
            ),
            metadata=self._metadata,
            timeout=self._timeout,
        )

    async def save_credentials(
        self, request: dispatch_pb2.SaveRefreshedCredentialsRequest
    ) -> dispatch_pb2.SaveRefreshedCredentialsResponse:
        """Save an account's refreshed tokens, or that it needs re-authorising."""
        return await self._stub.SaveRefreshedCredentials(
            request, metadata=self._metadata, timeout=self._timeout
        )

    async def _begin_batch(
        self, items: Sequence[tuple[str, str]]
    ) -> Sequence[dispatch_pb2.BeginAttemptResponse]:
        parents = self._begin_parents
        ids = [delivery_id for delivery_id, _ in items]
        keys = [key for _, key in items]
        reply = await self._stub.BeginAttempts(
            dispatch_pb2.BeginAttemptsRequest(
                delivery_ids=ids,
                traceparents=[parents.get(i, "") for i in ids] if parents else (),
                begin_keys=keys,
            ),
            metadata=self._metadata,
            timeout=self._timeout,
        )
        return reply.results

    async def _complete_batch(
        self, outcomes: Sequence[dispatch_pb2.AttemptOutcome]
    ) -> Sequence[dispatch_pb2.CompletionResult]:
        reply = await self._stub.CompleteAttempts(
            dispatch_pb2.CompleteAttemptsRequest(outcomes=outcomes),
            metadata=self._metadata,
            timeout=self._timeout,
        )
        return reply.results
