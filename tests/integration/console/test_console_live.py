"""`/events`: the tenant's lifecycle events as Server-Sent Events, and open streams ending at
once when the console stops."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from yarl import URL

from kairos.posts.v1 import posts_pb2
from kairos_console.session import Session, Sessions
from kairos_console.views import live
from support.api import RunningApi
from support.console import running_console
from support.ports import free_port

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


async def test_while_the_api_is_away_the_stream_still_beats(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The api's heartbeats stop with the api; the console's own keep the stream alive (and
    show it a browser that left). Here the api was never there."""
    monkeypatch.setattr(live, "QUIET_SECONDS", 0.3)
    async with running_console(f"127.0.0.1:{free_port()}") as console:
        store = Sessions(
            console.settings.cookie_key, console.settings.session_lifetime, secure=False
        )
        cookie = store.dump(Session(csrf="c", key="kairos_someone", zone="UTC"))
        async with console.browser() as browser:
            browser.session.cookie_jar.update_cookies({store.cookie: cookie}, URL(console.url))
            async with browser.session.get("/events") as stream:
                assert await stream.content.readline() == b"retry: 3000\n"
                async with asyncio.timeout(5):
                    lines = [await stream.content.readline() for _ in range(4)]
    assert lines.count(b": heartbeat\n") == 2
