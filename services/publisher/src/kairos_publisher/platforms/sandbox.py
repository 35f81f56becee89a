"""The sandbox platform: POSTs the post as JSON to a local endpoint that records it.

It exists so that the whole pipeline can run and be tested before, and beside, the real
platforms. The account's `instance_url` is the endpoint; a 2xx answer with `{"id": ...}`
publishes, and other answers are classified like any HTTP API (429 and 5xx retry, 401/403 auth,
other 4xx permanent).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx

from kairos_publisher.platforms.base import (
    PlatformContext,
    PublishOutcome,
    PublishRequest,
    RefreshedTokens,
    Result,
    classify_http,
    send,
)


def payload(request: PublishRequest) -> dict[str, object]:
    """The JSON body: the post's text and media URLs; an uploaded video's presigned URL is among
    `media_urls` too, and described in `video` (type, size, SHA-256, pixels, seconds)."""
    body: dict[str, object] = {
        "post_id": request.post_id,
        "target_id": request.target_id,
        "content": request.content,
        "media_urls": request.media_urls,
        "reply_to": request.reply_to,
        "due_at": request.due_at.isoformat(),
    }
    video = request.video
    if video is not None:
        body["media_urls"] = [video.url, *request.media_urls]
        body["video"] = {
            "url": video.url,
            "content_type": video.content_type,
            "size": video.size,
            "sha256": video.sha256,
            "width": video.width,
            "height": video.height,
            "duration_seconds": video.duration_seconds,
        }
    return body


class SandboxClient:
    """Publishes to the sandbox endpoint named by the account."""

    refresh_margin = timedelta(minutes=1)

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def publish(self, request: PublishRequest) -> PublishOutcome:
        body = json.dumps(payload(request)).encode()
        headers = {
            "content-type": "application/json",
            "idempotency-key": request.idempotency_key,
        }
        if request.access_token:  # the sandbox takes accounts without a token
            headers["authorization"] = f"Bearer {request.access_token}"
        outgoing = self.http.build_request(
            "POST", request.instance_url.rstrip("/") + "/posts", content=body, headers=headers
        )
        stopped = await request.stage.publishing()
        if stopped is not None:
            return stopped
        response = await send(self.http, outgoing)
        if isinstance(response, PublishOutcome):
            return response
        if response.is_success:
            try:
                data = response.json()
                post_id = str(data["id"])
            except (ValueError, KeyError, TypeError):
                return PublishOutcome(
                    Result.UNKNOWN,
                    http_status=response.status_code,
                    message="accepted without an id in the answer",
                )
            return PublishOutcome(
                Result.PUBLISHED,
                platform_post_id=post_id,
                url=str(data.get("url", "")),
                http_status=response.status_code,
            )
        return classify_http(response)

    async def refresh(self, request: PublishRequest) -> RefreshedTokens | str:
        """Trade the refresh token at `/token` for new tokens (it rotates, like X's)."""
        if not request.refresh_token:
            return "no refresh token"
        outgoing = self.http.build_request(
            "POST",
            request.instance_url.rstrip("/") + "/token",
            json={"grant_type": "refresh_token", "refresh_token": request.refresh_token},
        )
        response = await send(self.http, outgoing)
        if isinstance(response, PublishOutcome):
            return f"refresh failed: {response.message}"
        if not response.is_success:
            return f"refresh refused with HTTP {response.status_code}: {response.text[:200]}"
        try:
            data = response.json()
            expires_at = datetime.now(UTC) + timedelta(seconds=float(data["expires_in"]))
            return RefreshedTokens(data["access_token"], data["refresh_token"], expires_at)
        except (ValueError, KeyError, TypeError):
            return "refresh answer without tokens"


def create(context: PlatformContext) -> SandboxClient:
    return SandboxClient(context.http)
