"""The publisher's one client of DispatchService.

The channel, the service token, the calls' deadline, the batching of BeginAttempts and
CompleteAttempts, and which calls are tried again all live here; the consumers ask for one
delivery's begin or one attempt's completion and get that one answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import grpc

from kairos.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from kairos_common.grpc.channel import bearer, insecure_channel
from kairos_common.settings import CommonSettings
from kairos_publisher.batching import Batcher

log = logging.getLogger(__name__)

#: Deadline of each call to the api (seconds).
RPC_TIMEOUT = 15.0
#: Tries of a completion before its outcome is given up.
COMPLETE_ATTEMPTS = 5


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
        self._begins: Batcher[str, dispatch_pb2.BeginAttemptResponse] = Batcher(
            "BeginAttempts", self._begin_batch
        )
        self._completions: Batcher[dispatch_pb2.AttemptOutcome, dispatch_pb2.CompletionResult] = (
            Batcher("CompleteAttempts", self._complete_batch)
        )

    @classmethod
    def connect(cls, settings: CommonSettings) -> DispatchClient:
        """A client of the api at KAIROS_API_TARGET, on its own channel (closed by `close`)."""
        channel = insecure_channel(settings.api_target)
        stub = dispatch_pb2_grpc.DispatchServiceStub(channel)
        return cls(stub, settings.service_token, channel=channel)

    def start(self) -> None:
        self._begins.start()
        self._completions.start()

    async def close(self) -> None:
        """Send what is pending, then close the channel."""
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

    async def begin(self, delivery_id: str) -> dispatch_pb2.BeginAttemptResponse:
        """The fence's answer for one delivery. Never tried again here: a begin that timed out
        may have begun, and only the caller knows how to hand its event back."""
        return await self._begins.submit(delivery_id)

    async def complete(self, outcome: dispatch_pb2.AttemptOutcome) -> dispatch_pb2.CompletionResult:
        """Record one attempt's outcome; tried again on failure (the api records an outcome once,
        so a retried call changes nothing). Raises the last error when it gives up."""
        for attempt in range(COMPLETE_ATTEMPTS):
            try:
                return await self._completions.submit(outcome)
            except Exception as error:
                if attempt + 1 == COMPLETE_ATTEMPTS:
                    raise
                log.warning("CompleteAttempts failed, retrying: %r", error)
                await asyncio.sleep(0.2 * 2**attempt)
        raise AssertionError("unreachable")

    async def fail_delivery(self, delivery_id: str, reason: str) -> None:
        """Mark the target of a dead-lettered delivery failed."""
        await self._stub.FailDelivery(
            dispatch_pb2.FailDeliveryRequest(delivery_id=delivery_id, reason=reason),
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

    async def _begin_batch(self, ids: Sequence[str]) -> Sequence[dispatch_pb2.BeginAttemptResponse]:
        reply = await self._stub.BeginAttempts(
            dispatch_pb2.BeginAttemptsRequest(delivery_ids=ids),
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
