"""Typed asyncio client for the Kairos public gRPC API (posts, accounts, media, queues, series and
the stream of lifecycle events).

    from kairos_client import KairosClient, KairosError, schedule_at

    async with KairosClient("127.0.0.1:50051", api_key) as client:
        post = await client.create_post(request)

Protobuf messages of `kairos.posts.v1` are the data types; every failure is a `KairosError`.
"""

from kairos_client._client import DEFAULT_CHANNEL_OPTIONS, KairosClient
from kairos_client._errors import KairosError
from kairos_client._schedules import (
    schedule_after,
    schedule_at,
    schedule_local,
    schedule_queue,
)

__all__ = [
    "DEFAULT_CHANNEL_OPTIONS",
    "KairosClient",
    "KairosError",
    "schedule_after",
    "schedule_at",
    "schedule_local",
    "schedule_queue",
]
