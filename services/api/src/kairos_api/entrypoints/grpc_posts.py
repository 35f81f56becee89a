"""gRPC servicer of kairos.posts.v1.PostsService: translates requests to handler calls."""

from __future__ import annotations

from typing import Any, cast

import grpc

from kairos.posts.v1 import posts_pb2, posts_pb2_grpc
from kairos_api.adapters import convert
from kairos_api.domain.model import PostStatus
from kairos_api.entrypoints.auth import Authenticator
from kairos_api.service_layer import posts
from kairos_api.service_layer.application import Application
from kairos_api.service_layer.queue_slots import QueueInput
from kairos_common import errors
from kairos_common.errors import FieldViolation
from kairos_common.platforms import Platform

Context = grpc.aio.ServicerContext[Any, Any]

ORDERS = {
    posts_pb2.POST_ORDER_UNSPECIFIED: "created_newest",
    posts_pb2.POST_ORDER_CREATED_NEWEST: "created_newest",
    posts_pb2.POST_ORDER_CREATED_OLDEST: "created_oldest",
    posts_pb2.POST_ORDER_SCHEDULED_SOONEST: "scheduled_soonest",
}


def schedule_input(message: posts_pb2.Schedule, field: str = "schedule") -> posts.ScheduleInput:
    which = message.WhichOneof("when")
    if which == "at":
        return posts.ScheduleInput(at=convert.from_timestamp(message.at, f"{field}.at"))
    if which == "local":
        return posts.ScheduleInput(
            local_date_time=message.local.date_time, time_zone=message.local.time_zone
        )
    if which == "after":
        return posts.ScheduleInput(after=convert.from_duration(message.after, f"{field}.after"))
    if which == "queue":
        not_before = (
            convert.from_timestamp(message.queue.not_before, f"{field}.queue.not_before")
            if message.queue.HasField("not_before")
            else None
        )
        return posts.ScheduleInput(
            queue=QueueInput(not_before=not_before, per_target=message.queue.per_target)
        )
    raise errors.InvalidArgument.of(field, "set one of `at`, `local`, `after` or `queue`")


def target_inputs(specs: Any) -> list[posts.TargetInput]:
    return [
        posts.TargetInput(
            account_id=spec.account_id,
            content_override=spec.content_override if spec.HasField("content_override") else None,
            settings=dict(spec.settings),
        )
        for spec in specs
    ]


def create_command(request: posts_pb2.CreatePostRequest) -> posts.CreatePost:
    return posts.CreatePost(
        content=request.content,
        targets=target_inputs(request.targets),
        media_urls=list(request.media_urls),
        media_ids=list(request.media_ids),
        campaign=request.campaign,
        tags=list(request.tags),
        notes=request.notes,
        schedule=schedule_input(request.schedule) if request.HasField("schedule") else None,
        approval_required=request.approval_required,
        stale_after=(
            convert.from_duration(request.stale_after, "stale_after")
            if request.HasField("stale_after")
            else None
        ),
        request_id=request.request_id,
        parent_post_id=request.parent_post_id,
    )


def readable_command(
    request: posts_pb2.CreatePostRequest,
) -> tuple[posts.CreatePost, list[FieldViolation]]:
    """The command of a create without the fields that cannot be read (a Timestamp or Duration
    out of range, a schedule that sets nothing), and their violations: CreatePost refuses such
    a request at the first of them, ValidatePost still checks and counts the rest of the post."""
    unreadable: list[FieldViolation] = []
    readable = posts_pb2.CreatePostRequest()
    readable.CopyFrom(request)
    if readable.HasField("schedule"):
        try:
            schedule_input(readable.schedule)
        except errors.InvalidArgument as error:
            unreadable.extend(error.violations)
            readable.ClearField("schedule")
    if readable.HasField("stale_after"):
        try:
            convert.from_duration(readable.stale_after, "stale_after")
        except errors.InvalidArgument as error:
            unreadable.extend(error.violations)
            readable.ClearField("stale_after")
    return create_command(readable), unreadable


def _target_check(count: posts.TargetCount) -> posts_pb2.TargetCheck:
    return posts_pb2.TargetCheck(
        account_id=count.account_id,
        platform=(
            convert.platform_to_proto(count.platform)
            if count.platform is not None
            else posts_pb2.PLATFORM_UNSPECIFIED
        ),
        length=count.length,
        max_length=count.max_length,
        unit=count.unit,
        media_count=count.media_count,
        max_media=count.max_media,
    )


def _batch_result(result: posts.ItemResult, *, preview: bool) -> posts_pb2.BatchCreatePostsResult:
    """One item's answer; a post only validated (not created, not repeated) shows no ids."""
    message = posts_pb2.BatchCreatePostsResult(
        violations=[
            posts_pb2.ItemViolation(field=v.field, description=v.description)
            for v in result.violations
        ],
        repeated=result.repeated,
    )
    if result.record is not None:
        message.post.CopyFrom(convert.post_to_proto(result.record))
        if preview and not result.repeated:
            message.post.ClearField("id")
            for target in message.post.targets:
                target.ClearField("id")
    return message


class PostsServicer(posts_pb2_grpc.PostsServiceServicer):
    """Every method: authenticate the tenant, build the command, call the handler, answer."""

    def __init__(self, app: Application, auth: Authenticator) -> None:
        self.app = app
        self.auth = auth
        # Concurrent creates share a transaction: one commit for many posts.
        self.creates = posts.CreateBatcher(app)

    async def CreatePost(
        self, request: posts_pb2.CreatePostRequest, context: Context
    ) -> posts_pb2.CreatePostResponse:
        tenant = await self.auth.tenant(context)
        post = await self.creates.create(tenant, create_command(request))
        return posts_pb2.CreatePostResponse(post=convert.post_to_proto(post))

    async def BatchCreatePosts(
        self, request: posts_pb2.BatchCreatePostsRequest, context: Context
    ) -> posts_pb2.BatchCreatePostsResponse:
        tenant = await self.auth.tenant(context)
        items: list[posts.CreatePost | errors.InvalidArgument] = []
        for item in request.items:
            try:
                items.append(create_command(item))
            except errors.InvalidArgument as error:
                items.append(error)
        results = await posts.batch_create_posts(
            self.app, self.creates, tenant, items, validate_only=request.validate_only
        )
        return posts_pb2.BatchCreatePostsResponse(
            results=[_batch_result(r, preview=request.validate_only) for r in results]
        )

    async def ValidatePost(
        self, request: posts_pb2.ValidatePostRequest, context: Context
    ) -> posts_pb2.ValidatePostResponse:
        tenant = await self.auth.tenant(context)
        command, unreadable = readable_command(request.post)
        check = await posts.validate_post(self.app, tenant, command, unreadable)
        return posts_pb2.ValidatePostResponse(
            targets=[_target_check(count) for count in check.targets],
            violations=[
                posts_pb2.ItemViolation(field=v.field, description=v.description)
                for v in check.violations
            ],
        )

    async def GetPost(
        self, request: posts_pb2.GetPostRequest, context: Context
    ) -> posts_pb2.GetPostResponse:
        tenant = await self.auth.tenant(context)
        post = await posts.get_post(self.app, tenant, request.post_id)
        # Protobuf takes the message's fields as a dict and builds it in C.
        return posts_pb2.GetPostResponse(post=cast(posts_pb2.Post, post))

    async def ListPosts(
        self, request: posts_pb2.ListPostsRequest, context: Context
    ) -> posts_pb2.ListPostsResponse:
        tenant = await self.auth.tenant(context)
        violations: list[FieldViolation] = []
        statuses: list[PostStatus] = []
        for index, value in enumerate(request.statuses):
            status = convert.post_status_from_proto(value)
            if status is None:
                violations.append(FieldViolation(f"statuses[{index}]", "unknown post status"))
            else:
                statuses.append(status)
        platforms: list[Platform] = []
        for index, number in enumerate(request.platforms):
            known = convert.platform_from_proto(number)
            if known is None:
                violations.append(FieldViolation(f"platforms[{index}]", "unknown platform"))
            else:
                platforms.append(known)
        order = ORDERS.get(request.order)
        if order is None:
            violations.append(FieldViolation("order", "unknown order"))
        scheduled_from = scheduled_to = None
        try:
            if request.HasField("scheduled_from"):
                scheduled_from = convert.from_timestamp(request.scheduled_from, "scheduled_from")
            if request.HasField("scheduled_to"):
                scheduled_to = convert.from_timestamp(request.scheduled_to, "scheduled_to")
        except errors.InvalidArgument as error:
            violations.extend(error.violations)
        if violations:
            raise errors.InvalidArgument.collect(violations)
        assert order is not None
        page, token = await posts.list_posts(
            self.app,
            tenant,
            posts.ListPosts(
                statuses=statuses,
                platforms=platforms,
                account_id=request.account_id,
                campaign=request.campaign,
                tag=request.tag,
                scheduled_from=scheduled_from,
                scheduled_to=scheduled_to,
                page_size=request.page_size,
                page_token=request.page_token,
                order=order,
                series_id=request.series_id,
            ),
        )
        return posts_pb2.ListPostsResponse(
            posts=cast(list[posts_pb2.Post], page), next_page_token=token
        )

    async def UpdatePost(
        self, request: posts_pb2.UpdatePostRequest, context: Context
    ) -> posts_pb2.UpdatePostResponse:
        tenant = await self.auth.tenant(context)
        paths = list(request.update_mask.paths)
        body = request.post
        stale_after = None
        if "stale_after" in paths and body.HasField("stale_after"):
            stale_after = convert.from_duration(body.stale_after, "post.stale_after")
        command = posts.UpdatePost(
            post_id=request.post_id,
            paths=paths,
            content=body.content,
            media_urls=list(body.media_urls),
            media_ids=list(body.media_ids),
            campaign=body.campaign,
            tags=list(body.tags),
            notes=body.notes,
            stale_after=stale_after,
            approval_required=body.approval_required,
            targets=target_inputs(request.targets),
            expected_revision=(
                request.expected_revision if request.HasField("expected_revision") else None
            ),
        )
        post = await posts.update_post(self.app, tenant, command)
        return posts_pb2.UpdatePostResponse(post=convert.post_to_proto(post))

    async def SchedulePost(
        self, request: posts_pb2.SchedulePostRequest, context: Context
    ) -> posts_pb2.SchedulePostResponse:
        tenant = await self.auth.tenant(context)
        if not request.HasField("schedule"):
            raise errors.InvalidArgument.of("schedule", "is required")
        post = await posts.schedule_post(
            self.app,
            tenant,
            request.post_id,
            schedule_input(request.schedule),
            request.expected_revision if request.HasField("expected_revision") else None,
        )
        return posts_pb2.SchedulePostResponse(post=convert.post_to_proto(post))

    async def UnschedulePost(
        self, request: posts_pb2.UnschedulePostRequest, context: Context
    ) -> posts_pb2.UnschedulePostResponse:
        tenant = await self.auth.tenant(context)
        post = await posts.unschedule_post(self.app, tenant, request.post_id)
        return posts_pb2.UnschedulePostResponse(post=convert.post_to_proto(post))

    async def PublishNow(
        self, request: posts_pb2.PublishNowRequest, context: Context
    ) -> posts_pb2.PublishNowResponse:
        tenant = await self.auth.tenant(context)
        post = await posts.publish_now(self.app, tenant, request.post_id)
        return posts_pb2.PublishNowResponse(post=convert.post_to_proto(post))

    async def DeletePost(
        self, request: posts_pb2.DeletePostRequest, context: Context
    ) -> posts_pb2.DeletePostResponse:
        tenant = await self.auth.tenant(context)
        post = await posts.delete_post(self.app, tenant, request.post_id)
        return posts_pb2.DeletePostResponse(post=convert.post_to_proto(post))

    async def RetryPost(
        self, request: posts_pb2.RetryPostRequest, context: Context
    ) -> posts_pb2.RetryPostResponse:
        tenant = await self.auth.tenant(context)
        post = await posts.retry_post(self.app, tenant, request.post_id, list(request.target_ids))
        return posts_pb2.RetryPostResponse(post=convert.post_to_proto(post))

    async def ApprovePost(
        self, request: posts_pb2.ApprovePostRequest, context: Context
    ) -> posts_pb2.ApprovePostResponse:
        tenant = await self.auth.tenant(context)
        post = await posts.approve_post(self.app, tenant, request.post_id)
        return posts_pb2.ApprovePostResponse(post=convert.post_to_proto(post))

    async def RejectPost(
        self, request: posts_pb2.RejectPostRequest, context: Context
    ) -> posts_pb2.RejectPostResponse:
        tenant = await self.auth.tenant(context)
        post = await posts.reject_post(self.app, tenant, request.post_id, request.reason)
        return posts_pb2.RejectPostResponse(post=convert.post_to_proto(post))

    async def GetStats(
        self, request: posts_pb2.GetStatsRequest, context: Context
    ) -> posts_pb2.GetStatsResponse:
        tenant = await self.auth.tenant(context)
        stats = await posts.get_stats(self.app, tenant)
        return posts_pb2.GetStatsResponse(
            by_status=[
                posts_pb2.StatusCount(status=convert.post_status_to_proto(s), count=n)
                for s, n in sorted(stats.by_status.items())
            ],
            by_platform=[
                posts_pb2.PlatformCount(
                    platform=convert.platform_to_proto(p),
                    status=convert.target_status_to_proto(s),
                    count=n,
                )
                for (p, s), n in sorted(stats.by_platform.items())
            ],
            due_next_hour=stats.due_next_hour,
            oldest_overdue_post_id=str(stats.oldest_overdue_id or ""),
            oldest_overdue_at=convert.timestamp(stats.oldest_overdue_at),
        )
