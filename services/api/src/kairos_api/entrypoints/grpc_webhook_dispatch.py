"""gRPC servicer of kairos.dispatch.v1.WebhookDispatchService, the publisher's side of outbound
webhooks; only the service credential may call it, as DispatchService.

`add_to_server` registers it. A receiver's answer may hold NUL characters, which every request
guard refuses (no column takes them): the tries reported to CompleteWebhookDeliveries have them
replaced as they are decoded, so one odd answer cannot get a whole batch of tries refused.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import grpc

from kairos.dispatch.v1 import webhooks_pb2, webhooks_pb2_grpc
from kairos_api.adapters import convert, outbox
from kairos_api.entrypoints.auth import Authenticator
from kairos_api.entrypoints.grpc_dispatch import MAX_LATENCY
from kairos_api.service_layer import webhooks
from kairos_api.service_layer.application import Application
from kairos_api.service_layer.posts.rules import parse_id
from kairos_common import errors

Context = grpc.aio.ServicerContext[Any, Any]

#: A claim's lease when the request gives none.
DEFAULT_LEASE = timedelta(seconds=60)
SERVICE = "kairos.dispatch.v1.WebhookDispatchService"
#: What a NUL character in a try's error or answer becomes (the publisher does the same).
NUL_STANDS_FOR = "\ufffd"


def _set_due(message: Any, next_due: datetime | None) -> None:
    if next_due is not None:
        convert.set_timestamp(message.next_due_at, next_due)


def result_of(index: int, result: webhooks_pb2.WebhookResult, now: datetime) -> webhooks.TryResult:
    where = f"results[{index}]"
    if result.attempt_number < 1:
        raise errors.InvalidArgument.of(f"{where}.attempt_number", "must be 1 or more")
    if not 0 <= result.http_status <= 999:
        raise errors.InvalidArgument.of(f"{where}.http_status", "must be 0 or an HTTP status")
    latency = convert.from_duration(result.latency, f"{where}.latency")
    if not timedelta(0) <= latency <= MAX_LATENCY:
        raise errors.InvalidArgument.of(f"{where}.latency", "must be between 0 and 24 hours")
    attempted_at = (
        convert.from_timestamp(result.attempted_at, f"{where}.attempted_at")
        if result.HasField("attempted_at")
        else now
    )
    return webhooks.TryResult(
        delivery_id=parse_id(result.delivery_id, f"{where}.delivery_id"),
        attempt_number=result.attempt_number,
        http_status=result.http_status,
        error=result.error,
        latency_ms=int(latency.total_seconds() * 1000),
        response_excerpt=result.response_excerpt,
        attempted_at=attempted_at,
    )


class WebhookDispatchServicer(webhooks_pb2_grpc.WebhookDispatchServiceServicer):
    """Every method checks the service credential first."""

    def __init__(self, app: Application, auth: Authenticator) -> None:
        self.app = app
        self.auth = auth

    async def RecordWebhookEvents(
        self, request: webhooks_pb2.RecordWebhookEventsRequest, context: Context
    ) -> webhooks_pb2.RecordWebhookEventsResponse:
        self.auth.require_service(context)
        recorded, next_due = await webhooks.record_events(self.app, list(request.events))
        response = webhooks_pb2.RecordWebhookEventsResponse(recorded=recorded)
        _set_due(response, next_due)
        return response

    async def ClaimWebhookDeliveries(
        self, request: webhooks_pb2.ClaimWebhookDeliveriesRequest, context: Context
    ) -> webhooks_pb2.ClaimWebhookDeliveriesResponse:
        self.auth.require_service(context)
        lease = (
            convert.from_duration(request.lease, "lease")
            if request.HasField("lease")
            else DEFAULT_LEASE
        )
        sends, next_due = await webhooks.claim_deliveries(self.app, request.limit, lease)
        response = webhooks_pb2.ClaimWebhookDeliveriesResponse(
            sends=[
                webhooks_pb2.WebhookSend(
                    delivery_id=str(send.delivery_id),
                    webhook_id=str(send.webhook_id),
                    url=send.url,
                    secret=send.secret,
                    message_id=send.event_id,
                    body=send.body.encode(),
                    attempt_number=send.attempt_number,
                    event_type=outbox.EVENT_TYPES[send.event_type],
                )
                for send in sends
            ]
        )
        _set_due(response, next_due)
        return response

    async def CompleteWebhookDeliveries(
        self, request: webhooks_pb2.CompleteWebhookDeliveriesRequest, context: Context
    ) -> webhooks_pb2.CompleteWebhookDeliveriesResponse:
        self.auth.require_service(context)
        now = self.app.clock()
        results = [result_of(i, r, now) for i, r in enumerate(request.results)]
        next_due = await webhooks.complete_deliveries(self.app, results)
        response = webhooks_pb2.CompleteWebhookDeliveriesResponse()
        _set_due(response, next_due)
        return response


def complete_request(raw: bytes) -> webhooks_pb2.CompleteWebhookDeliveriesRequest:
    """A CompleteWebhookDeliveries request, NUL characters in its tries' errors and answers
    replaced."""
    request = webhooks_pb2.CompleteWebhookDeliveriesRequest.FromString(raw)
    for result in request.results:
        if "\x00" in result.error:
            result.error = result.error.replace("\x00", NUL_STANDS_FOR)
        if "\x00" in result.response_excerpt:
            result.response_excerpt = result.response_excerpt.replace("\x00", NUL_STANDS_FOR)
    return request


def add_to_server(servicer: WebhookDispatchServicer, server: grpc.aio.Server) -> None:
    """Register `servicer` as the generated `add_WebhookDispatchServiceServicer_to_server` does,
    CompleteWebhookDeliveries decoded by `complete_request`."""
    handlers = {
        "RecordWebhookEvents": grpc.unary_unary_rpc_method_handler(
            servicer.RecordWebhookEvents,
            request_deserializer=webhooks_pb2.RecordWebhookEventsRequest.FromString,
            response_serializer=webhooks_pb2.RecordWebhookEventsResponse.SerializeToString,
        ),
        "ClaimWebhookDeliveries": grpc.unary_unary_rpc_method_handler(
            servicer.ClaimWebhookDeliveries,
            request_deserializer=webhooks_pb2.ClaimWebhookDeliveriesRequest.FromString,
            response_serializer=webhooks_pb2.ClaimWebhookDeliveriesResponse.SerializeToString,
        ),
        "CompleteWebhookDeliveries": grpc.unary_unary_rpc_method_handler(
            servicer.CompleteWebhookDeliveries,
            request_deserializer=complete_request,
            response_serializer=webhooks_pb2.CompleteWebhookDeliveriesResponse.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)  # type: ignore[attr-defined]
