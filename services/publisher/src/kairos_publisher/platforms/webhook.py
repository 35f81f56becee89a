"""The webhook platform: a signed JSON POST to a URL of the customer's choosing.

Body: post id, target id, content, media, reply-to and due instant. Headers:
`X-Kairos-Timestamp` (unix seconds), `X-Kairos-Signature: sha256=<hex>` where the MAC is
HMAC-SHA256 under the account's `extra["signing_secret"]` over `<timestamp>.<body>`, and
`Idempotency-Key` (stable per target) so receivers can drop repeats. Receivers should refuse
timestamps more than five minutes old.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx

from kairos_publisher.platforms.base import (
    PlatformContext,
    PublishOutcome,
    PublishRequest,
    Result,
    classify_http,
    send,
)
from kairos_publisher.platforms.sandbox import payload


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` over `<timestamp>.<body>`."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


class WebhookClient:
    """POSTs the signed payload to `extra["url"]`."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def publish(self, request: PublishRequest) -> PublishOutcome:
        url = request.extra.get("url", "")
        if not url:
            return PublishOutcome(Result.PERMANENT, code="no_url", message="webhook has no url")
        body = json.dumps(payload(request)).encode()
        stamp = str(int(time.time()))
        headers = {
            "content-type": "application/json",
            "x-kairos-timestamp": stamp,
            "idempotency-key": request.idempotency_key,
        }
        secret = request.extra.get("signing_secret", "")
        if secret:
            headers["x-kairos-signature"] = signature(secret, stamp, body)
        stopped = await request.stage.publishing()
        if stopped is not None:
            return stopped
        response = await send(
            self.http, self.http.build_request("POST", url, content=body, headers=headers)
        )
        if isinstance(response, PublishOutcome):
            return response
        if response.is_success:
            platform_id = response.headers.get("x-request-id", "") or request.idempotency_key
            return PublishOutcome(
                Result.PUBLISHED,
                platform_post_id=platform_id,
                url="",
                http_status=response.status_code,
            )
        return classify_http(response)


def create(context: PlatformContext) -> WebhookClient:
    return WebhookClient(context.http)
