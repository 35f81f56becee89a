"""`/events`: the tenant's lifecycle events as Server-Sent Events, and open streams ending at
once when the console stops."""

from __future__ import annotations

import asyncio
import json
import time

from kairos.posts.v1 import posts_pb2
from support.api import RunningApi
from support.console import running_console

from .conftest import Tenant


async def test_a_post_made_by_the_tenant_arrives_as_a_lifecycle_event_then_a_stop_ends_it_at_once(
    console_api: RunningApi, tenant: Tenant
) -> None:
    stopping_began = 0.0
    async with running_console(console_api.target) as console, console.browser() as browser:
        await browser.sign_in(tenant.key)
        async with browser.session.get("/events") as stream:
            assert stream.headers["Content-Type"] == "text/event-stream"
            assert "default-src 'none'" in stream.headers["Content-Security-Policy"]
            assert await stream.content.readline() == b"retry: 3000\n"
            post = await tenant.client.create_post(
                posts_pb2.CreatePostRequest(
                    content="live",
                    targets=[posts_pb2.TargetSpec(account_id=tenant.account.id)],
                )
            )
            async with asyncio.timeout(10):
                while True:
                    line = (await stream.content.readline()).decode()
                    if line.startswith("data: "):
                        event = json.loads(line.removeprefix("data: "))
                        if event.get("postId") == post.id:
                            break
            assert event["tenantId"] == tenant.name
            stopping_began = time.monotonic()
    # Leaving `running_console` stopped it, with the stream still open: it ended at once
    # instead of holding the stop for its grace.
    assert time.monotonic() - stopping_began < 2.0
