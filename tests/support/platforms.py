"""Building platform clients and requests against the local fakes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx

from kairos_fakes.base import FakeServer
from kairos_publisher.media import MediaFetcher
from kairos_publisher.platforms.base import PlatformContext, PublishRequest


def context(
    http: httpx.AsyncClient,
    media: MediaFetcher,
    *fakes: FakeServer,
    environ: dict[str, str] | None = None,
) -> PlatformContext:
    """A context whose base URLs point each fake's platform at the fake."""
    return PlatformContext(
        http, media, urls={fake.name: fake.url for fake in fakes}, environ=environ or {}
    )


def publish_request(content: str = "Hello from Kairos", **fields: Any) -> PublishRequest:
    """A request with test defaults; `fields` override any of them."""
    base = PublishRequest(
        post_id="post-1",
        target_id="target-1",
        content=content,
        media_urls=[],
        settings={},
        reply_to="",
        idempotency_key="kairos-target-1",
        due_at=datetime(2026, 11, 25, 12, 0, tzinfo=UTC),
        access_token="token-1",
        handle="kairos",
    )
    return replace(base, **fields)
