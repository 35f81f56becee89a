"""Group commit for CreatePost and BatchCreatePosts: concurrent creates share one transaction."""

from __future__ import annotations

import asyncio
import contextvars

from sqlalchemy.exc import IntegrityError

from kairos_api.service_layer.application import Application
from kairos_api.service_layer.posts.create import (
    Created,
    CreatePost,
    Draft,
    create_many,
    create_one,
    draft_of,
)
from kairos_api.service_layer.posts.records import PostRecord
from kairos_common import errors


class CreateBatcher:
    """Group commit for CreatePost: concurrent creates share one transaction.

    A create waits at most `max_wait` seconds for others (or until `max_batch` are waiting), or
    for as long as `max_writers` batches are already being written. Each create is validated on
    its own and a refused one fails alone; a batch that hits a request_id race (IntegrityError)
    is written again one create per transaction, as if it had never been batched.

    The items of a BatchCreatePosts (`create_all`) queue all at once, so they fill whole
    transactions of `max_batch` creates, written by up to `max_writers` at a time. Single creates
    go first: a transaction takes the CreatePosts waiting, then fills up with batch items, so an
    import of thousands of posts does not hold up the CreatePosts that arrive meanwhile.
    """

    def __init__(
        self,
        app: Application,
        *,
        max_batch: int = 64,
        max_wait: float = 0.001,
        max_writers: int = 2,
    ) -> None:
        self._app = app
        self._max_batch = max_batch
        self._max_wait = max_wait
        self._max_writers = max_writers
        self._waiting: list[tuple[Draft, asyncio.Future[Created]]] = []
        #: The items of BatchCreatePosts calls, after `_waiting` in every transaction.
        self._bulk: list[tuple[Draft, asyncio.Future[Created]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._writers: set[asyncio.Task[None]] = set()

    async def create(self, tenant: str, command: CreatePost) -> PostRecord:
        """What `create_post` does, in a transaction shared with concurrent creates."""
        future: asyncio.Future[Created] = asyncio.get_running_loop().create_future()
        self._waiting.append((draft_of(self._app, tenant, command), future))
        if len(self._waiting) >= self._max_batch:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._max_wait, self._flush)
        return (await future).record

    async def create_all(self, drafts: list[Draft]) -> list[Created | errors.InvalidArgument]:
        """Each draft created as `create` would, in order: the refused ones answered with their
        error. Any other error (the database went away) is raised once every draft is settled;
        the transactions already committed stay, and a retry with the same request_ids
        creates nothing twice."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Created]] = [loop.create_future() for _ in drafts]
        self._bulk.extend(zip(drafts, futures, strict=True))
        while self._bulk and len(self._writers) < self._max_writers:
            self._flush()
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        results: list[Created | errors.InvalidArgument] = []
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(
                outcome, errors.InvalidArgument
            ):
                raise outcome
            results.append(outcome)
        return results

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not (self._waiting or self._bulk) or len(self._writers) >= self._max_writers:
            return  # a writer that finishes flushes what waits
        batch = self._waiting[: self._max_batch]
        del self._waiting[: self._max_batch]
        room = self._max_batch - len(batch)
        batch += self._bulk[:room]
        del self._bulk[:room]
        # In a context of its own: the creates of many calls share its transaction, so its COMMIT
        # is not the run of whichever call flushed (`unit_of_work.retrying`); a lost one reaches
        # every caller as CommitOutcomeUnknown.
        writer = asyncio.create_task(self._write(batch), context=contextvars.Context())
        self._writers.add(writer)
        writer.add_done_callback(self._finished)

    def _finished(self, writer: asyncio.Task[None]) -> None:
        self._writers.discard(writer)
        if self._waiting or self._bulk:
            self._flush()

    async def _write(self, batch: list[tuple[Draft, asyncio.Future[Created]]]) -> None:
        try:
            try:
                results = await create_many(self._app, [draft for draft, _ in batch])
            except IntegrityError:
                for draft, future in batch:
                    try:
                        _settle(future, await create_one(self._app, draft))
                    except Exception as error:
                        _settle(future, error)
                return
            for (_, future), result in zip(batch, results, strict=True):
                _settle(future, result)
        except Exception as error:
            for _, future in batch:
                _settle(future, error)


def _settle(future: asyncio.Future[Created], outcome: Created | Exception) -> None:
    if future.done():  # the caller went away
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
