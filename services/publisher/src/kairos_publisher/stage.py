"""The stage of one attempt that sends a video before it publishes (`AttemptStage`).

It tells the api, with MarkAttempt, that the attempt is uploading when it starts (so a
publisher lost during the upload gets the attempt retried, not UNKNOWN) and that it is
publishing just before the one call that makes the post public. While the attempt runs it
marks it again every third of the lease, which extends the lease: a long upload, or a platform
processing the video for minutes, never outlives it while this publisher is alive. `pause`
hands the attempt's call slots back while it waits for a platform's processing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

import grpc

from kairos.dispatch.v1 import dispatch_pb2
from kairos_publisher.dispatch import DispatchClient
from kairos_publisher.platforms.base import PublishOutcome, Result

log = logging.getLogger(__name__)


class TrackedStage:
    """One attempt's stage, recorded in the api; `start` before the platform module runs,
    `stop` after it."""

    def __init__(
        self,
        dispatch: DispatchClient,
        attempt_id: str,
        lease: float,
        slots: Sequence[asyncio.Semaphore] = (),
        max_pause: float = 60.0,
    ) -> None:
        self.dispatch = dispatch
        self.attempt_id = attempt_id
        #: The lease's length (seconds): it is extended every third of it.
        self.lease = lease
        #: The call slots the attempt holds (account, then platform), handed back in `pause`.
        self.slots = tuple(slots)
        #: The longest `pause`, whatever the platform module asks (KAIROS_PROCESSING_POLL_MAX).
        self.max_pause = max_pause
        #: When the lease ends as last extended (`time.monotonic()`), 0 before any mark.
        self.lease_ends = 0.0
        #: Whether the module said it was about to make the post public.
        self.published_mark = False
        self._keeper: asyncio.Task[None] | None = None

    async def _mark(self, stage: dispatch_pb2.AttemptStage.ValueType) -> str:
        """Mark the attempt; "" when it held, else why not."""
        asked = time.monotonic()
        try:
            answer = await self.dispatch.mark(self.attempt_id, stage)
        except grpc.aio.AioRpcError as error:
            return f"the api could not be told ({error.code().name})"
        if not answer.ok:
            return answer.reason or "the attempt is no longer current"
        self.lease_ends = max(self.lease_ends, asked + answer.lease.ToTimedelta().total_seconds())
        return ""

    async def start(self) -> PublishOutcome | None:
        """Mark the attempt uploading and keep its lease; an outcome when it could not be
        marked (then nothing is sent)."""
        why = await self._mark(dispatch_pb2.ATTEMPT_STAGE_UPLOADING)
        if why:
            return PublishOutcome(
                Result.RETRYABLE,
                code="stage",
                message=f"not started: marking the attempt uploading failed: {why}",
            )
        self._keeper = asyncio.create_task(self._keep(), name=f"lease-{self.attempt_id}")
        return None

    async def stop(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(max(1.0, self.lease / 3))
            # UPLOADING never takes an attempt back from PUBLISHING: the api keeps the later.
            why = await self._mark(dispatch_pb2.ATTEMPT_STAGE_UPLOADING)
            if why:
                log.warning("could not extend the lease of attempt %s: %s", self.attempt_id, why)

    async def publishing(self) -> PublishOutcome | None:
        why = await self._mark(dispatch_pb2.ATTEMPT_STAGE_PUBLISHING)
        if why:
            return PublishOutcome(
                Result.RETRYABLE,
                code="stage",
                message=f"not published: recording that the post is being published failed: {why}",
            )
        self.published_mark = True
        return None

    async def pause(self, seconds: float) -> None:
        """Wait without the call slots; they are taken again (in the same order) after."""
        for slot in reversed(self.slots):
            slot.release()
        try:
            await asyncio.sleep(min(seconds, self.max_pause))
        finally:
            # Shielded: a cancelled wait still ends holding the slots the caller releases.
            await asyncio.shield(self._retake())

    async def _retake(self) -> None:
        for slot in self.slots:
            await slot.acquire()
