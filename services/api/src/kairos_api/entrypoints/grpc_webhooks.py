"""gRPC servicer of kairos.posts.v1.WebhooksService: a tenant's webhook endpoints and their
delivery log, translated to and from `service_layer.webhooks`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import grpc

from kairos.events.v1 import events_pb2
from kairos.posts.v1 import webhooks_pb2, webhooks_pb2_grpc
from kairos_api.adapters import convert, outbox
from kairos_api.adapters.orm import Webhook
from kairos_api.entrypoints.auth import Authenticator
from kairos_api.service_layer import webhooks
from kairos_api.service_layer.application import Application
from kairos_common import errors

Context = grpc.aio.ServicerContext[Any, Any]

STATUSES = {
    webhooks.ENABLED: webhooks_pb2.WEBHOOK_STATUS_ENABLED,
    webhooks.DISABLED: webhooks_pb2.WEBHOOK_STATUS_DISABLED,
}
DELIVERY_STATUSES = {
    webhooks.PENDING: webhooks_pb2.WEBHOOK_DELIVERY_STATUS_PENDING,
    webhooks.DELIVERED: webhooks_pb2.WEBHOOK_DELIVERY_STATUS_DELIVERED,
    webhooks.FAILED: webhooks_pb2.WEBHOOK_DELIVERY_STATUS_FAILED,
}
DELIVERY_STATUSES_BACK = {value: name for name, value in DELIVERY_STATUSES.items()}


def event_type(name: str) -> events_pb2.LifecycleEventType.ValueType:
    return outbox.EVENT_TYPES.get(name, events_pb2.LIFECYCLE_EVENT_TYPE_UNSPECIFIED)


def webhook_to_proto(webhook: Webhook) -> webhooks_pb2.Webhook:
    message = webhooks_pb2.Webhook(
        webhook_id=str(webhook.id),
        url=webhook.url,
        events=[event_type(name) for name in webhook.events],
        description=webhook.description,
        status=STATUSES[webhook.status],
        disabled_reason=webhook.disabled_reason,
        secret_hint=webhook.secret_hint,
    )
    if webhook.failing_since is not None:
        convert.set_timestamp(message.failing_since, webhook.failing_since)
    convert.set_timestamp(message.created_at, webhook.created_at)
    convert.set_timestamp(message.updated_at, webhook.updated_at)
    return message


def delivery_to_proto(view: webhooks.DeliveryView) -> webhooks_pb2.WebhookDelivery:
    delivery = view.delivery
    message = webhooks_pb2.WebhookDelivery(
        delivery_id=str(delivery.id),
        webhook_id=str(delivery.webhook_id),
        event_id=delivery.event_id,
        event_type=event_type(delivery.event_type),
        status=DELIVERY_STATUSES[delivery.status],
        body=delivery.body,
    )
    if delivery.status == webhooks.PENDING and delivery.next_attempt_at is not None:
        convert.set_timestamp(message.next_attempt_at, delivery.next_attempt_at)
    convert.set_timestamp(message.created_at, delivery.created_at)
    if delivery.delivered_at is not None:
        convert.set_timestamp(message.delivered_at, delivery.delivered_at)
    for attempt in view.attempts:
        tried = message.attempts.add(
            number=attempt.number,
            http_status=attempt.http_status,
            error=attempt.error,
            response_excerpt=attempt.response_excerpt,
        )
        convert.set_timestamp(tried.attempted_at, attempt.attempted_at)
        tried.latency.FromTimedelta(timedelta(milliseconds=attempt.latency_ms))
    return message


class WebhooksServicer(webhooks_pb2_grpc.WebhooksServiceServicer):
    """Every method: authenticate the tenant, call the handler, answer. A key reaches only its
    own tenant's endpoints and deliveries; others' are NOT_FOUND."""

    def __init__(self, app: Application, auth: Authenticator) -> None:
        self.app = app
        self.auth = auth

    async def CreateWebhook(
        self, request: webhooks_pb2.CreateWebhookRequest, context: Context
    ) -> webhooks_pb2.CreateWebhookResponse:
        tenant = await self.auth.tenant(context)
        webhook, secret = await webhooks.create_webhook(
            self.app, tenant, request.url, list(request.events), request.description
        )
        return webhooks_pb2.CreateWebhookResponse(webhook=webhook_to_proto(webhook), secret=secret)

    async def GetWebhook(
        self, request: webhooks_pb2.GetWebhookRequest, context: Context
    ) -> webhooks_pb2.GetWebhookResponse:
        tenant = await self.auth.tenant(context)
        webhook = await webhooks.get_webhook(self.app, tenant, request.webhook_id)
        return webhooks_pb2.GetWebhookResponse(webhook=webhook_to_proto(webhook))

    async def ListWebhooks(
        self, request: webhooks_pb2.ListWebhooksRequest, context: Context
    ) -> webhooks_pb2.ListWebhooksResponse:
        tenant = await self.auth.tenant(context)
        found, token = await webhooks.list_webhooks(
            self.app, tenant, request.page_size, request.page_token
        )
        return webhooks_pb2.ListWebhooksResponse(
            webhooks=[webhook_to_proto(w) for w in found], next_page_token=token
        )

    async def UpdateWebhook(
        self, request: webhooks_pb2.UpdateWebhookRequest, context: Context
    ) -> webhooks_pb2.UpdateWebhookResponse:
        tenant = await self.auth.tenant(context)
        body = request.webhook
        status = {
            webhooks_pb2.WEBHOOK_STATUS_ENABLED: webhooks.ENABLED,
            webhooks_pb2.WEBHOOK_STATUS_DISABLED: webhooks.DISABLED,
        }.get(body.status, "")
        changes = webhooks.WebhookChanges(
            paths=list(request.update_mask.paths),
            url=body.url,
            events=list(body.events),
            description=body.description,
            status=status,
        )
        webhook = await webhooks.update_webhook(self.app, tenant, request.webhook_id, changes)
        return webhooks_pb2.UpdateWebhookResponse(webhook=webhook_to_proto(webhook))

    async def DeleteWebhook(
        self, request: webhooks_pb2.DeleteWebhookRequest, context: Context
    ) -> webhooks_pb2.DeleteWebhookResponse:
        tenant = await self.auth.tenant(context)
        await webhooks.delete_webhook(self.app, tenant, request.webhook_id)
        return webhooks_pb2.DeleteWebhookResponse()

    async def RotateWebhookSecret(
        self, request: webhooks_pb2.RotateWebhookSecretRequest, context: Context
    ) -> webhooks_pb2.RotateWebhookSecretResponse:
        tenant = await self.auth.tenant(context)
        webhook, secret = await webhooks.rotate_secret(self.app, tenant, request.webhook_id)
        return webhooks_pb2.RotateWebhookSecretResponse(
            webhook=webhook_to_proto(webhook), secret=secret
        )

    async def ListWebhookDeliveries(
        self, request: webhooks_pb2.ListWebhookDeliveriesRequest, context: Context
    ) -> webhooks_pb2.ListWebhookDeliveriesResponse:
        tenant = await self.auth.tenant(context)
        status = ""
        if request.status != webhooks_pb2.WEBHOOK_DELIVERY_STATUS_UNSPECIFIED:
            if request.status not in DELIVERY_STATUSES_BACK:
                raise errors.InvalidArgument.of(
                    "status", f"{request.status} is not a delivery status"
                )
            status = DELIVERY_STATUSES_BACK[request.status]
        views, token = await webhooks.list_deliveries(
            self.app, tenant, request.webhook_id, status, request.page_size, request.page_token
        )
        return webhooks_pb2.ListWebhookDeliveriesResponse(
            deliveries=[delivery_to_proto(v) for v in views], next_page_token=token
        )

    async def RedeliverWebhook(
        self, request: webhooks_pb2.RedeliverWebhookRequest, context: Context
    ) -> webhooks_pb2.RedeliverWebhookResponse:
        tenant = await self.auth.tenant(context)
        view = await webhooks.redeliver(self.app, tenant, request.delivery_id)
        return webhooks_pb2.RedeliverWebhookResponse(delivery=delivery_to_proto(view))
