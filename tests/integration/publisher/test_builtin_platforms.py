"""The sandbox and webhook platform clients over real HTTP against the sandbox endpoint."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from kairos_publisher.platforms.base import PublishRequest, Result
from kairos_publisher.platforms.sandbox import SandboxClient
from kairos_publisher.platforms.webhook import WebhookClient
from kairos_publisher.sandbox_server import SandboxServer, ScriptedAnswer
from kairos_publisher.transport import http_client
from support.ports import free_port


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    server = SandboxServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """The client the publisher really uses (httpx over aiohttp)."""
    async with http_client(timeout=1.0) as client:
        yield client


@pytest.fixture
async def hang_up() -> AsyncIterator[str]:
    """A server that reads a whole request, then closes the connection without answering."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
        received.append(head)
        writer.close()

    received: list[bytes] = []
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.close()
    await server.wait_closed()
    assert received, "the request never reached the server"


def request(instance_url: str, content: str = "hello", **extra: str) -> PublishRequest:
    return PublishRequest(
        post_id="p-1",
        target_id="t-1",
        content=content,
        media_urls=["https://example.com/a.png"],
        settings={},
        reply_to="",
        idempotency_key="kairos-t-1",
        due_at=datetime(2026, 11, 25, 12, 0, tzinfo=UTC),
        access_token="token-1",
        instance_url=instance_url,
        extra=dict(extra),
    )


async def test_sandbox_publishes_and_returns_the_id(
    sandbox: SandboxServer, http: httpx.AsyncClient
) -> None:
    outcome = await SandboxClient(http).publish(request(sandbox.url))
    assert outcome.result == Result.PUBLISHED
    [received] = sandbox.platform.posts
    assert outcome.platform_post_id == received.id
    assert received.body["content"] == "hello"
    assert received.headers["idempotency-key"] == "kairos-t-1"
    assert received.headers["authorization"] == "Bearer token-1"


@pytest.mark.parametrize(
    ("status", "headers", "result"),
    [
        (500, {}, Result.RETRYABLE),
        (503, {}, Result.RETRYABLE),
        (429, {"retry-after": "7"}, Result.RETRYABLE),
        (401, {}, Result.AUTH),
        (403, {}, Result.AUTH),
        (400, {}, Result.PERMANENT),
        (422, {}, Result.PERMANENT),
    ],
)
async def test_answers_are_classified(
    sandbox: SandboxServer,
    http: httpx.AsyncClient,
    status: int,
    headers: dict[str, str],
    result: Result,
) -> None:
    sandbox.platform.script.append(
        ScriptedAnswer(status=status, headers=headers, body={"error": f"said {status}"})
    )
    before = datetime.now(UTC)
    outcome = await SandboxClient(http).publish(request(sandbox.url))
    assert outcome.result == result
    assert outcome.http_status == status
    assert f"said {status}" in outcome.message
    if "retry-after" in headers:
        assert outcome.retry_not_before is not None
        assert outcome.retry_not_before >= before + timedelta(seconds=7)


async def test_a_timeout_after_sending_is_unknown(
    sandbox: SandboxServer, http: httpx.AsyncClient
) -> None:
    sandbox.platform.script.append(ScriptedAnswer(status=201, delay=2.0, record=True))
    outcome = await SandboxClient(http).publish(request(sandbox.url))
    assert outcome.result == Result.UNKNOWN
    assert len(sandbox.platform.posts) == 1  # it did arrive: retrying blindly would double it


async def test_an_account_without_a_token_sends_no_authorization(
    sandbox: SandboxServer, http: httpx.AsyncClient
) -> None:
    from dataclasses import replace

    outcome = await SandboxClient(http).publish(replace(request(sandbox.url), access_token=""))
    assert outcome.result == Result.PUBLISHED
    assert "authorization" not in sandbox.platform.posts[0].headers


async def test_a_refused_connection_is_retryable(http: httpx.AsyncClient) -> None:
    outcome = await SandboxClient(http).publish(request(f"http://127.0.0.1:{free_port()}"))
    assert outcome.result == Result.RETRYABLE
    assert outcome.code == "connect"


async def test_a_connection_dropped_after_sending_is_unknown(
    hang_up: str, http: httpx.AsyncClient
) -> None:
    outcome = await SandboxClient(http).publish(request(hang_up))
    assert outcome.result == Result.UNKNOWN  # the platform may have published it


async def test_the_transport_streams_and_decodes_like_httpx(
    sandbox: SandboxServer, http: httpx.AsyncClient
) -> None:
    response = await http.get(f"{sandbox.url}/posts")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == []
    assert response.http_version == "HTTP/1.1"


async def test_webhook_posts_signed_json(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    url = f"{sandbox.url}/posts"
    outcome = await WebhookClient(http).publish(request("", url=url, signing_secret="whsec-123"))
    assert outcome.result == Result.PUBLISHED
    [received] = sandbox.platform.posts
    body = json.dumps(received.body).encode()
    stamp = received.headers["x-kairos-timestamp"]
    expected = hmac.new(b"whsec-123", stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert received.headers["x-kairos-signature"] == f"sha256={expected}"
    assert abs(int(stamp) - datetime.now(UTC).timestamp()) < 60
    assert received.body == {
        "post_id": "p-1",
        "target_id": "t-1",
        "content": "hello",
        "media_urls": ["https://example.com/a.png"],
        "reply_to": "",
        "due_at": "2026-11-25T12:00:00+00:00",
    }
    assert received.headers["idempotency-key"] == "kairos-t-1"


async def test_webhook_signature_changes_with_the_secret(
    sandbox: SandboxServer, http: httpx.AsyncClient
) -> None:
    url = f"{sandbox.url}/posts"
    await WebhookClient(http).publish(request("", url=url, signing_secret="a"))
    await WebhookClient(http).publish(request("", url=url, signing_secret="b"))
    first, second = (p.headers["x-kairos-signature"] for p in sandbox.platform.posts)
    assert first != second


async def test_webhook_without_url_fails_permanently(http: httpx.AsyncClient) -> None:
    outcome = await WebhookClient(http).publish(request(""))
    assert outcome.result == Result.PERMANENT
