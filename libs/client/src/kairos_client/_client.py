"""`KairosClient`: one channel, one typed async method per public RPC.

Every call carries the API key (`authorization: Bearer <key>`) and a deadline, and a call that
answers `UNAVAILABLE` is tried again with exponential backoff and jitter. Only `UNAVAILABLE`, and
`CANCELLED` sent by the server, are retried: they are the codes that usually say the request was
not acted on (the server was unreachable, starting or stopping). A stopping gRPC server answers
`CANCELLED` to the calls it had received but not yet handed to a handler (grpc/grpc#41785), and the
client never receives its own cancellations as errors (asyncio raises CancelledError), so a
`CANCELLED` error always comes from the server. Any other failure, `DEADLINE_EXCEEDED` included,
may have changed something and is raised at once as a `KairosError`.

`UNAVAILABLE` (and `CANCELLED`, past the server's grace) can still follow a request that was acted
on (the connection dropped after the commit, before the answer). A retried CreatePost must then not
make a second post, so the client gives every create a `request_id` (a uuid4) unless the caller
chose one: the api answers a repeated `request_id` with the first post. ConnectAccount has no such
id, so it is never retried: it waits for the channel to be ready instead (`wait_for_ready`), which
covers an api that is still starting without sending the request twice. The other calls change the
state of one existing post or account, so a repeat after a commit cannot duplicate anything (at
worst it reports that the state has already changed).
"""

from __future__ import annotations

import asyncio
import copy
import random
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message

from kairos.events.v1 import events_pb2 as lifecycle_pb2
from kairos.posts.v1 import (
    events_pb2,
    events_pb2_grpc,
    media_pb2,
    media_pb2_grpc,
    posts_pb2,
    posts_pb2_grpc,
    queues_pb2,
    queues_pb2_grpc,
    series_pb2,
    series_pb2_grpc,
    webhooks_pb2,
    webhooks_pb2_grpc,
)
from kairos_client._errors import KairosError

#: The codes of a server that went away, retried: unreachable, starting or stopping
#: (`CANCELLED`: a call the stopping server had received but not begun, grpc/grpc#41785).
AWAY = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})

#: Channel options used unless the caller passes its own. The reconnect backoff is shortened
#: (gRPC's default waits 1 s, then longer, after a refused connection) so that a retried call
#: reaches an api that has just started; keepalive pings keep idle connections through NATs and
#: load balancers; calls go round robin over every address the target resolves to (several api
#: copies behind one DNS name).
DEFAULT_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.primary_user_agent", "kairos-client/0.1"),
    ("grpc.lb_policy_name", "round_robin"),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
)

#: Seconds a WatchEvents stream must stay open before its failure counts as a new one, and
#: the reconnect backoff starts again from the shortest wait.
WATCH_STEADY = 5.0

#: Bytes per message of an upload: the api takes chunks of at most 1 MiB.
UPLOAD_CHUNK_SIZE = 1 << 20

RequestT = TypeVar("RequestT", bound=Message)
ResponseT = TypeVar("ResponseT", bound=Message)


class KairosClient:
    """An asyncio client of the Kairos public API (PostsService and AccountsService).

    Use it as an async context manager; the channel opens on entry and closes on exit:

        async with KairosClient("127.0.0.1:50051", api_key) as client:
            post = await client.get_post(post_id)

    `timeout` is the deadline of each method call in seconds, retries included. `retries` is how
    many times an `UNAVAILABLE` (or server-sent `CANCELLED`) answer is retried, waiting
    `backoff_base * 2**n` seconds (at most `backoff_cap`), jittered between half and all of it,
    and never past the deadline. Pass `credentials` for TLS; without them the channel is
    plaintext. Failures raise `KairosError`.
    """

    def __init__(
        self,
        target: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        channel_options: Sequence[tuple[str, Any]] = DEFAULT_CHANNEL_OPTIONS,
        credentials: grpc.ChannelCredentials | None = None,
        backoff_base: float = 0.2,
        backoff_cap: float = 2.0,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if retries < 0:
            raise ValueError("retries must not be negative")
        self.target = target
        self.timeout = timeout
        self.retries = retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._channel_options = list(channel_options)
        self._credentials = credentials
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {api_key}"),) if api_key else ()
        )
        self._channel: grpc.aio.Channel | None = None
        #: False for a client made by `with_key`: the channel is its origin's to close.
        self._owns_channel = True
        self._posts: posts_pb2_grpc.PostsServiceAsyncStub | None = None
        self._accounts: posts_pb2_grpc.AccountsServiceAsyncStub | None = None
        self._media: media_pb2_grpc.MediaServiceAsyncStub | None = None
        self._queues: queues_pb2_grpc.QueueServiceAsyncStub | None = None
        self._series: series_pb2_grpc.SeriesServiceAsyncStub | None = None
        self._events: events_pb2_grpc.EventsServiceAsyncStub | None = None

    # --- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._credentials is None:
            channel = grpc.aio.insecure_channel(self.target, options=self._channel_options)
        else:
            channel = grpc.aio.secure_channel(
                self.target, self._credentials, options=self._channel_options
            )
        self._channel = channel
        self._posts = posts_pb2_grpc.PostsServiceStub(channel)
        self._accounts = posts_pb2_grpc.AccountsServiceStub(channel)
        self._media = media_pb2_grpc.MediaServiceStub(channel)
        self._queues = queues_pb2_grpc.QueueServiceStub(channel)
        self._series = series_pb2_grpc.SeriesServiceStub(channel)
        self._events = events_pb2_grpc.EventsServiceStub(channel)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel; calls in flight are cancelled. A client from `with_key` leaves
        the channel open: it is its origin's."""
        if self._channel is not None:
            if self._owns_channel:
                await self._channel.close(grace=None)
            self._channel = None

    def with_key(self, api_key: str) -> KairosClient:
        """A client that calls with `api_key` over this open client's channel (one connection
        for many users' keys, as a web console needs); the same deadline and retries."""
        if self._channel is None:
            raise RuntimeError("KairosClient is not open: use `async with KairosClient(...)`")
        other = copy.copy(self)
        other._metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()
        other._owns_channel = False
        return other

    @property
    def posts_stub(self) -> posts_pb2_grpc.PostsServiceAsyncStub:
        if self._posts is None or self._channel is None:
            raise RuntimeError("KairosClient is not open: use `async with KairosClient(...)`")
        return self._posts

    @property
    def accounts_stub(self) -> posts_pb2_grpc.AccountsServiceAsyncStub:
        if self._accounts is None or self._channel is None:
            raise RuntimeError("KairosClient is not open: use `async with KairosClient(...)`")
        return self._accounts

    @property
    def media_stub(self) -> media_pb2_grpc.MediaServiceAsyncStub:
        if self._media is None or self._channel is None:
            raise RuntimeError("KairosClient is not open: use `async with KairosClient(...)`")
        return self._media

    @property
    def queues_stub(self) -> queues_pb2_grpc.QueueServiceAsyncStub:
        if self._queues is None or self._channel is None:
            raise RuntimeError("KairosClient is not open: use `async with KairosClient(...)`")
        return self._queues

    @property
    def series_stub(self) -> series_pb2_grpc.SeriesServiceAsyncStub:
        if self._series is None or self._channel is None:
            raise RuntimeError("KairosClient is not open: use `async with KairosClient(...)`")
        return self._series

    @property
    def events_stub(self) -> events_pb2_grpc.EventsServiceAsyncStub:
        if self._events is None or self._channel is None:
            raise RuntimeError("KairosClient is not open: use `async with KairosClient(...)`")
        return self._events

    # --- the call ---------------------------------------------------------------------------

    async def call(
        self,
        rpc: grpc.aio.UnaryUnaryMultiCallable[RequestT, ResponseT],
        request: RequestT,
        *,
        timeout: float | None = None,
        once: bool = False,
    ) -> ResponseT:
        """Call one RPC with the key, a deadline and retries of `UNAVAILABLE`; `once`: send it
        at most once (for a call that is not safe to repeat), waiting for the channel instead."""
        budget = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            try:
                response: ResponseT = await rpc(
                    request,
                    timeout=max(remaining, 0.001),
                    metadata=self._metadata,
                    wait_for_ready=once,
                )
                return response
            except grpc.aio.AioRpcError as error:
                retried = error.code() in AWAY and not once
                if not retried or attempt >= self.retries:
                    raise KairosError.from_rpc_error(error) from None
                delay = self._backoff(attempt)
                if time.monotonic() + delay >= deadline:
                    raise KairosError.from_rpc_error(error) from None
            attempt += 1
            await asyncio.sleep(delay)

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.backoff_cap, self.backoff_base * 2.0**attempt)
        # "Equal jitter": at least half the step, so retries still spread out over time, while
        # clients that failed together do not all come back together.
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    # --- PostsService -----------------------------------------------------------------------

    async def create_post(
        self, request: posts_pb2.CreatePostRequest, *, timeout: float | None = None
    ) -> posts_pb2.Post:
        """Create a post (a draft, or scheduled when `request.schedule` is set).

        Without a `request.request_id` a new uuid4 is sent (in a copy: `request` is unchanged),
        so that a retry after a create that was committed returns the same post."""
        if not request.request_id:
            fresh = posts_pb2.CreatePostRequest()
            fresh.CopyFrom(request)
            fresh.request_id = str(uuid.uuid4())
            request = fresh
        reply = await self.call(self.posts_stub.CreatePost, request, timeout=timeout)
        return reply.post

    async def batch_create_posts(
        self,
        items: Sequence[posts_pb2.CreatePostRequest],
        *,
        validate_only: bool = False,
        timeout: float | None = None,
    ) -> list[posts_pb2.BatchCreatePostsResult]:
        """Create up to 1,000 posts in one call; one result per item, in order: its post, or
        the violations that refused it (`items[i].field`). The valid items are created even
        when others are refused; with `validate_only` every check runs and nothing is written.

        Items without a `request_id` are sent with a new uuid4 (in copies: `items` are
        unchanged), so that a retry after a batch that was committed creates nothing twice."""
        request = posts_pb2.BatchCreatePostsRequest(items=items, validate_only=validate_only)
        if not validate_only:
            for item in request.items:
                if not item.request_id:
                    item.request_id = str(uuid.uuid4())
        reply = await self.call(self.posts_stub.BatchCreatePosts, request, timeout=timeout)
        return list(reply.results)

    async def validate_post(
        self, request: posts_pb2.CreatePostRequest, *, timeout: float | None = None
    ) -> posts_pb2.ValidatePostResponse:
        """What CreatePost would say of `request`, writing nothing: each target's text length
        as its platform counts it, beside its limits, and every violation CreatePost would
        refuse the request with (a request it would refuse is answered, not raised). Retried
        like the reads: it changes nothing."""
        return await self.call(
            self.posts_stub.ValidatePost,
            posts_pb2.ValidatePostRequest(post=request),
            timeout=timeout,
        )

    async def get_post(self, post_id: str, *, timeout: float | None = None) -> posts_pb2.Post:
        """One post with its targets and every attempt."""
        request = posts_pb2.GetPostRequest(post_id=post_id)
        reply = await self.call(self.posts_stub.GetPost, request, timeout=timeout)
        return reply.post

    async def list_posts(
        self, request: posts_pb2.ListPostsRequest | None = None, *, timeout: float | None = None
    ) -> posts_pb2.ListPostsResponse:
        """One page of posts; pass `next_page_token` back as `page_token` for the next."""
        return await self.call(
            self.posts_stub.ListPosts, request or posts_pb2.ListPostsRequest(), timeout=timeout
        )

    async def iter_posts(
        self,
        request: posts_pb2.ListPostsRequest | None = None,
        *,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[posts_pb2.Post]:
        """Every post the request's filters select, page after page (at most `limit`)."""
        page_request = posts_pb2.ListPostsRequest()
        if request is not None:
            page_request.CopyFrom(request)
        yielded = 0
        while True:
            page = await self.list_posts(page_request, timeout=timeout)
            for post in page.posts:
                if limit is not None and yielded >= limit:
                    return
                yield post
                yielded += 1
            if not page.next_page_token or (limit is not None and yielded >= limit):
                return
            page_request.page_token = page.next_page_token

    async def update_post(
        self,
        post_id: str,
        post: posts_pb2.Post,
        update_mask: Sequence[str],
        *,
        targets: Sequence[posts_pb2.TargetSpec] = (),
        expected_revision: int | None = None,
        timeout: float | None = None,
    ) -> posts_pb2.Post:
        """Change the fields of `post` named in `update_mask` (and the targets, with "targets")."""
        request = posts_pb2.UpdatePostRequest(post_id=post_id, post=post, targets=list(targets))
        request.update_mask.paths.extend(update_mask)
        if expected_revision is not None:
            request.expected_revision = expected_revision
        reply = await self.call(self.posts_stub.UpdatePost, request, timeout=timeout)
        return reply.post

    async def schedule_post(
        self,
        post_id: str,
        schedule: posts_pb2.Schedule,
        expected_revision: int | None = None,
        *,
        timeout: float | None = None,
    ) -> posts_pb2.Post:
        """Set or change when a post publishes."""
        request = posts_pb2.SchedulePostRequest(post_id=post_id, schedule=schedule)
        if expected_revision is not None:
            request.expected_revision = expected_revision
        reply = await self.call(self.posts_stub.SchedulePost, request, timeout=timeout)
        return reply.post

    async def unschedule_post(
        self, post_id: str, *, timeout: float | None = None
    ) -> posts_pb2.Post:
        """Take a scheduled post back to draft."""
        request = posts_pb2.UnschedulePostRequest(post_id=post_id)
        reply = await self.call(self.posts_stub.UnschedulePost, request, timeout=timeout)
        return reply.post

    async def publish_now(self, post_id: str, *, timeout: float | None = None) -> posts_pb2.Post:
        """Publish a post immediately."""
        request = posts_pb2.PublishNowRequest(post_id=post_id)
        reply = await self.call(self.posts_stub.PublishNow, request, timeout=timeout)
        return reply.post

    async def delete_post(self, post_id: str, *, timeout: float | None = None) -> posts_pb2.Post:
        """Delete a post, cancelling what is not yet published."""
        request = posts_pb2.DeletePostRequest(post_id=post_id)
        reply = await self.call(self.posts_stub.DeletePost, request, timeout=timeout)
        return reply.post

    async def retry_post(
        self, post_id: str, target_ids: Sequence[str] = (), *, timeout: float | None = None
    ) -> posts_pb2.Post:
        """Try failed, unknown or missed targets again (only `target_ids`, when given)."""
        request = posts_pb2.RetryPostRequest(post_id=post_id, target_ids=list(target_ids))
        reply = await self.call(self.posts_stub.RetryPost, request, timeout=timeout)
        return reply.post

    async def approve_post(self, post_id: str, *, timeout: float | None = None) -> posts_pb2.Post:
        """Approve a post that requires approval."""
        request = posts_pb2.ApprovePostRequest(post_id=post_id)
        reply = await self.call(self.posts_stub.ApprovePost, request, timeout=timeout)
        return reply.post

    async def reject_post(
        self, post_id: str, reason: str, *, timeout: float | None = None
    ) -> posts_pb2.Post:
        """Reject a post that requires approval, saying why."""
        request = posts_pb2.RejectPostRequest(post_id=post_id, reason=reason)
        reply = await self.call(self.posts_stub.RejectPost, request, timeout=timeout)
        return reply.post

    async def get_stats(self, *, timeout: float | None = None) -> posts_pb2.GetStatsResponse:
        """Posts by status, targets by platform and status, and what is due or overdue."""
        return await self.call(
            self.posts_stub.GetStats, posts_pb2.GetStatsRequest(), timeout=timeout
        )

    # --- AccountsService --------------------------------------------------------------------

    async def connect_account(
        self, request: posts_pb2.ConnectAccountRequest, *, timeout: float | None = None
    ) -> posts_pb2.Account:
        """Connect an account with its credentials (stored encrypted, never returned).

        Sent at most once: a repeat after a connect that was committed would connect the account
        twice, so an `UNAVAILABLE` answer is raised (check `list_accounts` before trying again)."""
        reply = await self.call(
            self.accounts_stub.ConnectAccount, request, timeout=timeout, once=True
        )
        return reply.account

    async def list_accounts(
        self,
        platform: posts_pb2.Platform.ValueType = posts_pb2.PLATFORM_UNSPECIFIED,
        status: posts_pb2.AccountStatus.ValueType = posts_pb2.ACCOUNT_STATUS_UNSPECIFIED,
        *,
        timeout: float | None = None,
    ) -> list[posts_pb2.Account]:
        """The tenant's accounts, optionally only one platform's or one status's."""
        request = posts_pb2.ListAccountsRequest(platform=platform, status=status)
        reply = await self.call(self.accounts_stub.ListAccounts, request, timeout=timeout)
        return list(reply.accounts)

    async def get_account(
        self, account_id: str, *, timeout: float | None = None
    ) -> posts_pb2.Account:
        """One account (never its credentials)."""
        request = posts_pb2.GetAccountRequest(account_id=account_id)
        reply = await self.call(self.accounts_stub.GetAccount, request, timeout=timeout)
        return reply.account

    async def update_account_credentials(
        self,
        account_id: str,
        credentials: posts_pb2.Credentials,
        *,
        timeout: float | None = None,
    ) -> posts_pb2.Account:
        """Replace an account's credentials whole."""
        request = posts_pb2.UpdateAccountCredentialsRequest(
            account_id=account_id, credentials=credentials
        )
        reply = await self.call(
            self.accounts_stub.UpdateAccountCredentials, request, timeout=timeout
        )
        return reply.account

    async def pause_account(
        self, account_id: str, *, timeout: float | None = None
    ) -> posts_pb2.Account:
        """Pause an account: its pending targets are skipped until resumed."""
        request = posts_pb2.PauseAccountRequest(account_id=account_id)
        reply = await self.call(self.accounts_stub.PauseAccount, request, timeout=timeout)
        return reply.account

    async def resume_account(
        self, account_id: str, *, timeout: float | None = None
    ) -> posts_pb2.Account:
        """Resume a paused account."""
        request = posts_pb2.ResumeAccountRequest(account_id=account_id)
        reply = await self.call(self.accounts_stub.ResumeAccount, request, timeout=timeout)
        return reply.account

    async def disconnect_account(
        self, account_id: str, *, timeout: float | None = None
    ) -> posts_pb2.Account:
        """Disconnect an account and forget its credentials."""
        request = posts_pb2.DisconnectAccountRequest(account_id=account_id)
        reply = await self.call(self.accounts_stub.DisconnectAccount, request, timeout=timeout)
        return reply.account

    # --- EventsService ----------------------------------------------------------------------

    async def watch_events(
        self, request: events_pb2.WatchEventsRequest, *, reconnect: bool = False
    ) -> AsyncGenerator[events_pb2.WatchEventsResponse]:
        """The tenant's lifecycle events (and heartbeats) as WatchEvents streams them, with no
        deadline: it ends when the api ends the stream (`request.follow` false) or the caller
        stops iterating.

        With `reconnect`, a stream that fails with `UNAVAILABLE` or `CANCELLED` (the api
        restarting, NATS away) is opened again after a backoff, from the cursor of the last
        response received, for as long as it takes: nothing is missed and nothing is repeated.
        Other failures raise `KairosError` at once.
        """
        current = events_pb2.WatchEventsRequest()
        current.CopyFrom(request)
        attempt = 0
        while True:
            call = self.events_stub.WatchEvents(current, metadata=self._metadata)
            opened = time.monotonic()
            try:
                async for response in call:
                    # The opening heartbeat does not show the stream works: one that opens and
                    # fails at once must still back off further each time.
                    if response.HasField("event"):
                        attempt = 0
                    current.cursor = response.cursor
                    current.ClearField("since")  # the cursor says where to go on from now
                    yield response
                return
            except grpc.aio.AioRpcError as error:
                if not reconnect or error.code() not in AWAY:
                    raise KairosError.from_rpc_error(error) from None
            finally:
                call.cancel()
            if time.monotonic() - opened >= WATCH_STEADY:
                attempt = 0  # it worked for a while: this is a new failure
            await asyncio.sleep(self._backoff(min(attempt, 16)))  # the cap is reached long before
            attempt += 1

    # --- MediaService -----------------------------------------------------------------------

    async def upload_media(
        self,
        path: str | Path,
        *,
        file_name: str | None = None,
        timeout: float | None = None,
    ) -> media_pb2.Media:
        """Upload the file at `path` (streamed in chunks, never read whole), under `file_name`
        (default: the path's last part). Sent once: an upload the api stored but whose answer
        was lost would be stored again by a retry."""
        source = Path(path)
        size = (await asyncio.to_thread(source.stat)).st_size
        # Opened and closed here rather than in the generator: when the api answers before the
        # last chunk (a refused key, a file over the limit) gRPC drops the generator unfinished,
        # and its `finally` would never close the file.
        file = await asyncio.to_thread(source.open, "rb")

        async def requests() -> AsyncIterator[media_pb2.UploadMediaRequest]:
            name = source.name if file_name is None else file_name
            yield media_pb2.UploadMediaRequest(
                upload=media_pb2.MediaUpload(file_name=name, size=size)
            )
            while chunk := await asyncio.to_thread(file.read, UPLOAD_CHUNK_SIZE):
                yield media_pb2.UploadMediaRequest(chunk=chunk)

        try:
            reply: media_pb2.UploadMediaResponse = await self.media_stub.UploadMedia(
                requests(),
                timeout=self.timeout if timeout is None else timeout,
                metadata=self._metadata,
                wait_for_ready=True,
            )
        except grpc.aio.AioRpcError as error:
            if _status_lost(error):
                # The api answered before the last chunk, and grpcio's asyncio client reported
                # the write that failed instead of the api's answer (grpc/grpc#36066). A refused
                # key is the usual reason: one cheap call says whether it was.
                await self.list_media(media_pb2.ListMediaRequest(page_size=1), timeout=timeout)
                raise KairosError(
                    grpc.StatusCode.INTERNAL,
                    "the api ended the upload before the whole file was sent and its reason was "
                    "lost on the way (a gRPC client bug); the key is good: check the file "
                    "against the api's size and type limits, and try again",
                ) from None
            raise KairosError.from_rpc_error(error) from None
        finally:
            file.close()
        return reply.media

    async def get_media(self, media_id: str, *, timeout: float | None = None) -> media_pb2.Media:
        """One media file of the tenant."""
        request = media_pb2.GetMediaRequest(media_id=media_id)
        reply = await self.call(self.media_stub.GetMedia, request, timeout=timeout)
        return reply.media

    async def list_media(
        self, request: media_pb2.ListMediaRequest, *, timeout: float | None = None
    ) -> media_pb2.ListMediaResponse:
        """One page of the tenant's media, newest first."""
        return await self.call(self.media_stub.ListMedia, request, timeout=timeout)

    async def delete_media(self, media_id: str, *, timeout: float | None = None) -> None:
        """Delete a media file (again: no error)."""
        request = media_pb2.DeleteMediaRequest(media_id=media_id)
        await self.call(self.media_stub.DeleteMedia, request, timeout=timeout)

    # --- QueueService -----------------------------------------------------------------------
    # A post joins a queue through `schedule_queue()` as its schedule (create_post, schedule_post).

    async def set_queue_slots(
        self,
        account_id: str,
        time_zone: str,
        slots: Sequence[tuple[int, str]],
        *,
        timeout: float | None = None,
    ) -> queues_pb2.QueueSlots:
        """Replace an account's weekly slots: (ISO weekday 1-7, "HH:MM") in `time_zone`; none
        turns its queue off."""
        request = queues_pb2.SetQueueSlotsRequest(
            account_id=account_id,
            time_zone=time_zone,
            slots=[
                queues_pb2.QueueSlot(weekday=queues_pb2.Weekday.ValueType(day), time=at)
                for day, at in slots
            ],
        )
        reply = await self.call(self.queues_stub.SetQueueSlots, request, timeout=timeout)
        return reply.queue

    async def get_queue_slots(
        self, account_id: str, *, timeout: float | None = None
    ) -> queues_pb2.QueueSlots:
        """An account's weekly slots (none when it has no queue)."""
        request = queues_pb2.GetQueueSlotsRequest(account_id=account_id)
        reply = await self.call(self.queues_stub.GetQueueSlots, request, timeout=timeout)
        return reply.queue

    async def list_queue(
        self,
        account_id: str,
        count: int = 0,
        start: datetime | None = None,
        *,
        timeout: float | None = None,
    ) -> queues_pb2.ListQueueResponse:
        """An account's next `count` slots (0: 20) from `start` (None: now), free or held."""
        request = queues_pb2.ListQueueRequest(account_id=account_id, count=count)
        if start is not None:
            getattr(request, "from").FromDatetime(start)
        return await self.call(self.queues_stub.ListQueue, request, timeout=timeout)

    async def move_queued_post(
        self, post_id: str, slot_at: datetime, *, timeout: float | None = None
    ) -> posts_pb2.Post:
        """Move a queued post to another slot free on every account it targets."""
        request = queues_pb2.MoveQueuedPostRequest(post_id=post_id)
        request.slot_at.FromDatetime(slot_at)
        reply = await self.call(self.queues_stub.MoveQueuedPost, request, timeout=timeout)
        return reply.post

    async def swap_queued_posts(
        self, first_post_id: str, second_post_id: str, *, timeout: float | None = None
    ) -> queues_pb2.SwapQueuedPostsResponse:
        """Swap the slots of two queued posts. Sent at most once: a repeat would swap back."""
        request = queues_pb2.SwapQueuedPostsRequest(
            first_post_id=first_post_id, second_post_id=second_post_id
        )
        return await self.call(
            self.queues_stub.SwapQueuedPosts, request, timeout=timeout, once=True
        )

    async def remove_from_queue(
        self, post_id: str, *, shift_up: bool = False, timeout: float | None = None
    ) -> queues_pb2.RemoveFromQueueResponse:
        """Take a queued post back to draft; `shift_up` moves the later posts up."""
        request = queues_pb2.RemoveFromQueueRequest(post_id=post_id, shift_up=shift_up)
        return await self.call(self.queues_stub.RemoveFromQueue, request, timeout=timeout)

    # --- SeriesService ----------------------------------------------------------------------

    async def create_series(
        self, request: series_pb2.CreateSeriesRequest, *, timeout: float | None = None
    ) -> series_pb2.CreateSeriesResponse:
        """Create a recurring series; the answer holds its first occurrences (posts).

        Without a `request.request_id` a new uuid4 is sent (in a copy), so that a retry after a
        create that was committed returns the same series."""
        if not request.request_id:
            fresh = series_pb2.CreateSeriesRequest()
            fresh.CopyFrom(request)
            fresh.request_id = str(uuid.uuid4())
            request = fresh
        return await self.call(self.series_stub.CreateSeries, request, timeout=timeout)

    async def get_series(
        self, series_id: str, *, timeout: float | None = None
    ) -> series_pb2.Series:
        """One series of the tenant."""
        request = series_pb2.GetSeriesRequest(series_id=series_id)
        reply = await self.call(self.series_stub.GetSeries, request, timeout=timeout)
        return reply.series

    async def list_series(
        self, request: series_pb2.ListSeriesRequest | None = None, *, timeout: float | None = None
    ) -> series_pb2.ListSeriesResponse:
        """One page of the tenant's series, newest first."""
        return await self.call(
            self.series_stub.ListSeries, request or series_pb2.ListSeriesRequest(), timeout=timeout
        )

    async def update_series(
        self, request: series_pb2.UpdateSeriesRequest, *, timeout: float | None = None
    ) -> series_pb2.UpdateSeriesResponse:
        """Change one occurrence, this and the following ones, or all (`request.scope`).

        Sent at most once: FOLLOWING makes a new series."""
        return await self.call(self.series_stub.UpdateSeries, request, timeout=timeout, once=True)

    async def delete_series(
        self,
        series_id: str,
        scope: series_pb2.SeriesScope.ValueType = series_pb2.SERIES_SCOPE_ALL,
        post_id: str = "",
        *,
        timeout: float | None = None,
    ) -> int:
        """Delete one occurrence, this and the following ones, or the whole series; returns how
        many unpublished occurrences were cancelled."""
        request = series_pb2.DeleteSeriesRequest(series_id=series_id, scope=scope, post_id=post_id)
        reply = await self.call(self.series_stub.DeleteSeries, request, timeout=timeout)
        return reply.cancelled

    async def pause_series(
        self, series_id: str, *, timeout: float | None = None
    ) -> series_pb2.Series:
        """Stop making occurrences; the unpublished future ones are cancelled."""
        request = series_pb2.PauseSeriesRequest(series_id=series_id)
        reply = await self.call(self.series_stub.PauseSeries, request, timeout=timeout)
        return reply.series

    async def resume_series(
        self, series_id: str, *, timeout: float | None = None
    ) -> series_pb2.Series:
        """Make occurrences again, from now on."""
        request = series_pb2.ResumeSeriesRequest(series_id=series_id)
        reply = await self.call(self.series_stub.ResumeSeries, request, timeout=timeout)
        return reply.series

    async def preview_recurrence(
        self, request: series_pb2.PreviewRecurrenceRequest, *, timeout: float | None = None
    ) -> series_pb2.PreviewRecurrenceResponse:
        """The next instants of a rule, without saving anything."""
        return await self.call(self.series_stub.PreviewRecurrence, request, timeout=timeout)

    # --- WebhooksService --------------------------------------------------------------------

    @property
    def webhooks_stub(self) -> webhooks_pb2_grpc.WebhooksServiceAsyncStub:
        # Made on demand: a stub is a few references on the channel.
        if self._channel is None:
            raise RuntimeError("KairosClient is not open: use `async with KairosClient(...)`")
        stub: webhooks_pb2_grpc.WebhooksServiceAsyncStub = webhooks_pb2_grpc.WebhooksServiceStub(
            self._channel
        )
        return stub

    async def create_webhook(
        self,
        url: str,
        events: Sequence[lifecycle_pb2.LifecycleEventType.ValueType] = (),
        description: str = "",
        *,
        timeout: float | None = None,
    ) -> webhooks_pb2.CreateWebhookResponse:
        """Register an endpoint for these event types (none: every type). The answer holds its
        signing secret, shown only this once. Sent at most once: a repeat would register a
        second endpoint."""
        request = webhooks_pb2.CreateWebhookRequest(url=url, events=events, description=description)
        return await self.call(
            self.webhooks_stub.CreateWebhook, request, timeout=timeout, once=True
        )

    async def get_webhook(
        self, webhook_id: str, *, timeout: float | None = None
    ) -> webhooks_pb2.Webhook:
        request = webhooks_pb2.GetWebhookRequest(webhook_id=webhook_id)
        reply = await self.call(self.webhooks_stub.GetWebhook, request, timeout=timeout)
        return reply.webhook

    async def list_webhooks(
        self, page_size: int = 0, page_token: str = "", *, timeout: float | None = None
    ) -> webhooks_pb2.ListWebhooksResponse:
        """One page of the tenant's endpoints, newest first."""
        request = webhooks_pb2.ListWebhooksRequest(page_size=page_size, page_token=page_token)
        return await self.call(self.webhooks_stub.ListWebhooks, request, timeout=timeout)

    async def update_webhook(
        self,
        webhook_id: str,
        webhook: webhooks_pb2.Webhook,
        paths: Sequence[str],
        *,
        timeout: float | None = None,
    ) -> webhooks_pb2.Webhook:
        """Set the fields named in `paths` ("url", "events", "description", "status") from
        `webhook`."""
        request = webhooks_pb2.UpdateWebhookRequest(
            webhook_id=webhook_id, webhook=webhook, update_mask=FieldMask(paths=list(paths))
        )
        reply = await self.call(self.webhooks_stub.UpdateWebhook, request, timeout=timeout)
        return reply.webhook

    async def delete_webhook(self, webhook_id: str, *, timeout: float | None = None) -> None:
        request = webhooks_pb2.DeleteWebhookRequest(webhook_id=webhook_id)
        await self.call(self.webhooks_stub.DeleteWebhook, request, timeout=timeout)

    async def rotate_webhook_secret(
        self, webhook_id: str, *, timeout: float | None = None
    ) -> webhooks_pb2.RotateWebhookSecretResponse:
        """A new signing secret, shown only in this answer. Sent at most once: a repeat would
        replace the secret just shown."""
        request = webhooks_pb2.RotateWebhookSecretRequest(webhook_id=webhook_id)
        return await self.call(
            self.webhooks_stub.RotateWebhookSecret, request, timeout=timeout, once=True
        )

    async def list_webhook_deliveries(
        self,
        webhook_id: str,
        status: webhooks_pb2.WebhookDeliveryStatus.ValueType = (
            webhooks_pb2.WEBHOOK_DELIVERY_STATUS_UNSPECIFIED
        ),
        page_size: int = 0,
        page_token: str = "",
        *,
        timeout: float | None = None,
    ) -> webhooks_pb2.ListWebhookDeliveriesResponse:
        """One page of an endpoint's deliveries, newest first, each with its tries."""
        request = webhooks_pb2.ListWebhookDeliveriesRequest(
            webhook_id=webhook_id, status=status, page_size=page_size, page_token=page_token
        )
        return await self.call(self.webhooks_stub.ListWebhookDeliveries, request, timeout=timeout)

    async def redeliver_webhook(
        self, delivery_id: str, *, timeout: float | None = None
    ) -> webhooks_pb2.WebhookDelivery:
        """Send a delivered or failed delivery again, due now. Sent at most once: a repeat
        whose first call went through would send the event a second time."""
        request = webhooks_pb2.RedeliverWebhookRequest(delivery_id=delivery_id)
        reply = await self.call(
            self.webhooks_stub.RedeliverWebhook, request, timeout=timeout, once=True
        )
        return reply.delivery


def _status_lost(error: grpc.aio.AioRpcError) -> bool:
    """Whether a request-streaming call failed on a write after the server had already answered:
    grpcio's asyncio client then reports this INTERNAL instead of the server's status."""
    return (
        error.code() == grpc.StatusCode.INTERNAL and error.details() == "Internal error from Core"
    )
