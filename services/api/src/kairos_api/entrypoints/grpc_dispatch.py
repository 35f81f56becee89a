"""gRPC servicer of kairos.dispatch.v1.DispatchService; only the service credential may call it."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration

from kairos.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from kairos.posts.v1 import media_pb2, posts_pb2
from kairos_api import metrics
from kairos_api.adapters import convert
from kairos_api.entrypoints import dispatch_traces
from kairos_api.entrypoints.auth import Authenticator
from kairos_api.service_layer import dispatch
from kairos_api.service_layer.accounts import StoredCredentials
from kairos_api.service_layer.application import Application
from kairos_common import errors

Context = grpc.aio.ServicerContext[Any, Any]

REJECTIONS = {
    "superseded": dispatch_pb2.FENCE_REJECTION_SUPERSEDED,
    "revision_changed": dispatch_pb2.FENCE_REJECTION_REVISION_CHANGED,
    "not_queued": dispatch_pb2.FENCE_REJECTION_NOT_QUEUED,
    "account_inactive": dispatch_pb2.FENCE_REJECTION_ACCOUNT_INACTIVE,
    "stale": dispatch_pb2.FENCE_REJECTION_STALE,
}


def _or_default(value: Duration, default: timedelta, field: str) -> timedelta:
    """The Duration, or `default` when it is zero (unset)."""
    if value.seconds == 0 and value.nanos == 0:
        return default
    return convert.from_duration(value, field)


#: The longest latency an outcome may report: a call that took longer ended long ago.
MAX_LATENCY = timedelta(days=1)


def _latency_ms(value: Duration, field: str) -> int:
    latency = convert.from_duration(value, field)
    if not timedelta(0) <= latency <= MAX_LATENCY:
        raise errors.InvalidArgument.of(field, "must be between 0 and 24 hours")
    return int(latency.total_seconds() * 1000)


def delivery_to_proto(delivery: dispatch.Delivery) -> dispatch_pb2.Delivery:
    message = dispatch_pb2.Delivery(
        delivery_id=delivery.delivery_id,
        target_id=delivery.target_id,
        post_id=delivery.post_id,
        platform=convert.platform_to_proto(delivery.platform),
        account_id=delivery.account_id,
        revision=delivery.revision,
        attempt_number=delivery.attempt_number,
    )
    convert.set_timestamp(message.due_at, delivery.due_at)
    convert.set_timestamp(message.lease_until, delivery.lease_until)
    return message


def credentials_to_proto(stored: StoredCredentials) -> posts_pb2.Credentials:
    message = posts_pb2.Credentials(
        access_token=stored.get("access_token", ""),
        refresh_token=stored.get("refresh_token", ""),
        instance_url=stored.get("instance_url", ""),
        page_id=stored.get("page_id", ""),
        chat_id=stored.get("chat_id", ""),
        extra=stored.get("extra", {}),
    )
    expires = stored.get("expires_at")
    if expires:
        message.expires_at.FromDatetime(datetime.fromisoformat(expires))
    return message


def credentials_from_proto(message: posts_pb2.Credentials) -> StoredCredentials:
    return StoredCredentials(
        version=1,
        access_token=message.access_token,
        refresh_token=message.refresh_token,
        expires_at=(
            convert.from_timestamp(message.expires_at, "credentials.expires_at").isoformat()
            if message.HasField("expires_at")
            else None
        ),
        instance_url=message.instance_url,
        page_id=message.page_id,
        chat_id=message.chat_id,
        extra=dict(message.extra),
    )


def begun_to_proto(
    result: dispatch.Begun | dispatch.Refused,
    credentials: dict[str, posts_pb2.Credentials] | None = None,
) -> dispatch_pb2.BeginAttemptResponse:
    """The response for one delivery. `credentials` caches each account's message by account
    id: a batch's rows of one account carry the same credentials."""
    if isinstance(result, dispatch.Refused):
        return dispatch_pb2.BeginAttemptResponse(
            ok=False, rejection=REJECTIONS[result.rejection], reason=result.reason
        )
    cache = {} if credentials is None else credentials
    message = cache.get(result.account_id)
    if message is None:
        message = cache[result.account_id] = credentials_to_proto(result.credentials)
    response = dispatch_pb2.BeginAttemptResponse(
        ok=True,
        attempt_id=result.attempt_id,
        attempt_number=result.attempt_number,
        snapshot=dispatch_pb2.ContentSnapshot(
            content=result.content,
            media_urls=result.media_urls,
            settings=result.settings,
            stored_media=[
                dispatch_pb2.StoredMedia(
                    media_id=m.media_id,
                    kind=media_pb2.MediaKind.Value(f"MEDIA_KIND_{m.kind.upper()}"),
                    content_type=m.content_type,
                    size=m.size,
                    sha256=m.sha256,
                    storage_key=m.storage_key,
                    url=m.url,
                    width=m.width,
                    height=m.height,
                    duration=convert.duration(
                        timedelta(seconds=m.duration_seconds) if m.duration_seconds else None
                    ),
                )
                for m in result.stored_media
            ],
        ),
        reply_to_platform_id=result.reply_to_platform_id,
        idempotency_key=result.idempotency_key,
        account_handle=result.account_handle,
        platform=convert.platform_to_proto(result.platform),
        target_id=result.target_id,
        post_id=result.post_id,
        account_id=result.account_id,
        earlier_outcome_lost=result.earlier_outcome_lost,
    )
    response.credentials.CopyFrom(message)
    convert.set_timestamp(response.due_at, result.due_at)
    response.lease.FromTimedelta(result.lease)
    return response


def _uuid(value: str, field: str) -> str:
    """The id's canonical text; InvalidArgument on `field` when it is not a UUID."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise errors.InvalidArgument.of(field, "is not a valid id") from None


_STAGES = {
    dispatch_pb2.ATTEMPT_STAGE_UPLOADING: "uploading",
    dispatch_pb2.ATTEMPT_STAGE_PUBLISHING: "publishing",
}


class DispatchServicer(dispatch_pb2_grpc.DispatchServiceServicer):
    """Translates DispatchService calls for the scheduler and the publisher."""

    def __init__(self, app: Application, auth: Authenticator) -> None:
        self.app = app
        self.auth = auth

    @metrics.measured("claim", lambda _, reply: len(reply.deliveries))
    async def ClaimDue(
        self, request: dispatch_pb2.ClaimDueRequest, context: Context
    ) -> dispatch_pb2.ClaimDueResponse:
        self.auth.require_service(context)
        started = time.time_ns()
        deliveries = await dispatch.claim_due(
            self.app,
            horizon=convert.from_duration(request.horizon, "horizon"),
            limit=request.limit or 500,
            lease=_or_default(request.lease, timedelta(seconds=60), "lease"),
        )
        response = dispatch_pb2.ClaimDueResponse(
            deliveries=[delivery_to_proto(d) for d in deliveries]
        )
        dispatch_traces.start_deliveries("claim delivery", response.deliveries, started)
        return response

    @metrics.measured("begin", lambda _, reply: 1)
    async def BeginAttempt(
        self, request: dispatch_pb2.BeginAttemptRequest, context: Context
    ) -> dispatch_pb2.BeginAttemptResponse:
        self.auth.require_service(context)
        started = time.time_ns()
        result = await dispatch.begin_attempt(self.app, request.delivery_id, request.begin_key)
        response = begun_to_proto(result)
        dispatch_traces.begun_one(request, response, started)
        return response

    @metrics.measured("begin", lambda request, _: len(request.delivery_ids))
    async def BeginAttempts(
        self, request: dispatch_pb2.BeginAttemptsRequest, context: Context
    ) -> dispatch_pb2.BeginAttemptsResponse:
        self.auth.require_service(context)
        dispatch_traces.check_traceparents(request)
        started = time.time_ns()
        results = await dispatch.begin_attempts(
            self.app, list(request.delivery_ids), list(request.begin_keys)
        )
        credentials: dict[str, posts_pb2.Credentials] = {}
        response = dispatch_pb2.BeginAttemptsResponse(
            results=[begun_to_proto(r, credentials) for r in results]
        )
        dispatch_traces.begun(request, response, started)
        return response

    @metrics.measured("complete", lambda request, _: len(request.outcomes))
    async def CompleteAttempts(
        self, request: dispatch_pb2.CompleteAttemptsRequest, context: Context
    ) -> dispatch_pb2.CompleteAttemptsResponse:
        self.auth.require_service(context)
        started = time.time_ns()
        outcomes = []
        for index, item in enumerate(request.outcomes):
            error_class = convert.error_class_from_proto(item.error_class)
            published = item.HasField("published")
            if not published and error_class is None:
                raise errors.InvalidArgument.of(
                    f"outcomes[{index}]", "set `published` or an error class"
                )
            outcomes.append(
                dispatch.Outcome(
                    attempt_id=_uuid(item.attempt_id, f"outcomes[{index}].attempt_id"),
                    delivery_id=_uuid(item.delivery_id, f"outcomes[{index}].delivery_id"),
                    published=published,
                    platform_post_id=item.published.platform_post_id,
                    url=item.published.url,
                    error_class=None if published else error_class,
                    error_code=item.error_code,
                    message=item.message,
                    http_status=item.http_status,
                    retry_not_before=(
                        convert.from_timestamp(
                            item.retry_not_before, f"outcomes[{index}].retry_not_before"
                        )
                        if item.HasField("retry_not_before")
                        else None
                    ),
                    account_blocked_until=(
                        convert.from_timestamp(
                            item.account_blocked_until, f"outcomes[{index}].account_blocked_until"
                        )
                        if item.HasField("account_blocked_until")
                        else None
                    ),
                    latency_ms=(
                        _latency_ms(item.latency, f"outcomes[{index}].latency")
                        if item.HasField("latency")
                        else None
                    ),
                )
            )
        results = await dispatch.complete_attempts(self.app, outcomes)
        response = dispatch_pb2.CompleteAttemptsResponse(
            results=[
                dispatch_pb2.CompletionResult(
                    attempt_id=r.attempt_id,
                    target_status=(
                        convert.target_status_to_proto(r.target_status)
                        if r.target_status is not None
                        else posts_pb2.TARGET_STATUS_UNSPECIFIED
                    ),
                    next_step=(
                        dispatch_pb2.NEXT_STEP_REDELIVER
                        if r.redeliver_after is not None
                        else dispatch_pb2.NEXT_STEP_ACK
                    ),
                    retry_delay=convert.duration(r.redeliver_after),
                )
                for r in results
            ]
        )
        dispatch_traces.completed(request, response, started)
        return response

    async def FailDelivery(
        self, request: dispatch_pb2.FailDeliveryRequest, context: Context
    ) -> dispatch_pb2.FailDeliveryResponse:
        self.auth.require_service(context)
        started = time.time_ns()
        status = await dispatch.fail_delivery(self.app, request.delivery_id, request.reason)
        response = dispatch_pb2.FailDeliveryResponse(
            target_status=(
                convert.target_status_to_proto(status)
                if status is not None
                else posts_pb2.TARGET_STATUS_UNSPECIFIED
            )
        )
        dispatch_traces.failed(request, response, started)
        return response

    @metrics.measured("sweep", lambda _, reply: len(reply.redeliveries))
    async def SweepExpired(
        self, request: dispatch_pb2.SweepExpiredRequest, context: Context
    ) -> dispatch_pb2.SweepExpiredResponse:
        self.auth.require_service(context)
        started = time.time_ns()
        result = await dispatch.sweep_expired(
            self.app,
            limit=request.limit or 500,
            lease=_or_default(request.lease, timedelta(seconds=60), "lease"),
            reemit_claimed_before=(
                convert.from_timestamp(request.reemit_claimed_before, "reemit_claimed_before")
                if request.HasField("reemit_claimed_before")
                else None
            ),
        )
        response = dispatch_pb2.SweepExpiredResponse(
            redeliveries=[delivery_to_proto(d) for d in result.redeliveries],
            marked_unknown=result.marked_unknown,
            marked_missed=result.marked_missed,
            requeued_idempotent=result.requeued_idempotent,
        )
        dispatch_traces.start_deliveries("redeliver delivery", response.redeliveries, started)
        return response

    async def MarkAttempt(
        self, request: dispatch_pb2.MarkAttemptRequest, context: Context
    ) -> dispatch_pb2.MarkAttemptResponse:
        self.auth.require_service(context)
        stage = _STAGES.get(request.stage)
        if stage is None:
            raise errors.InvalidArgument.of("stage", "must be UPLOADING or PUBLISHING")
        started = time.time_ns()
        marked = await dispatch.mark_attempt(
            self.app, _uuid(request.attempt_id, "attempt_id"), stage
        )
        response = dispatch_pb2.MarkAttemptResponse(
            ok=marked.ok, lease=convert.duration(marked.lease), reason=marked.reason
        )
        dispatch_traces.marked(request, response, started)
        return response

    async def SaveRefreshedCredentials(
        self, request: dispatch_pb2.SaveRefreshedCredentialsRequest, context: Context
    ) -> dispatch_pb2.SaveRefreshedCredentialsResponse:
        self.auth.require_service(context)
        status, current = await dispatch.save_refreshed_credentials(
            self.app,
            request.account_id,
            None if request.needs_reauth else credentials_from_proto(request.credentials),
            needs_reauth=request.needs_reauth,
            reason=request.reason,
            failed_refresh_token=request.failed_refresh_token,
        )
        response = dispatch_pb2.SaveRefreshedCredentialsResponse(
            status=convert.account_status_to_proto(status)
        )
        if current is not None:
            response.current.CopyFrom(credentials_to_proto(current))
        return response
