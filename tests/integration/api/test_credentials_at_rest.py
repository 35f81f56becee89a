"""No credential is ever stored or logged in clear, through an account's whole life.

Distinct markers go into every credential field (access and refresh tokens, a webhook's URL and
signing secret, a Discord webhook URL). The logs are captured across connect, new credentials,
a dispatch that hands them to a publisher, disconnect and re-encryption under a rotated key;
then every table is scanned (every column of every row on PostgreSQL, the raw file on SQLite),
the outbox's event payloads included. No marker may appear anywhere.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import grpc
import psycopg
import pytest
from google.protobuf.duration_pb2 import Duration
from sqlalchemy import func, select

from kairos.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from kairos.posts.v1 import posts_pb2
from kairos_api.adapters import database
from kairos_api.adapters.orm import OutboxEvent
from kairos_api.bootstrap import bootstrap
from kairos_api.service_layer import rotation
from support.api import SERVICE_TOKEN, TEST_SECRET, Client, RunningApi, api_settings, running_api
from support.postgres import fresh_database

SERVICE = (("authorization", f"Bearer {SERVICE_TOKEN}"),)
ROTATED_SECRET = "rotated-leak-test-secret-with-more-than-32-characters"


def marker(kind: str) -> str:
    """A value no other test uses: finding it anywhere means it leaked."""
    return f"{kind}-{uuid.uuid4().hex}-LEAK"


@pytest.fixture(params=["postgresql", "sqlite"])
async def own_api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RunningApi]:
    """An api on a database of its own: re-encryption rewrites every account in it."""
    async with (
        fresh_database(request.param, tmp_path) as url,
        running_api(api_settings(url)) as running,
    ):
        yield running


def stored_bytes(url: str) -> bytes:
    """Everything the database holds: every column of every table, or the SQLite files."""
    if database.is_sqlite(url):
        path = Path(database.sync_url(url).database or "")
        files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-journal")]
        return b"".join(f.read_bytes() for f in files if f.exists())
    chunks: list[bytes] = []
    with psycopg.connect(url) as connection:
        tables = connection.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        ).fetchall()
        for (table,) in tables:
            for row in connection.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        chunks.append(bytes(value))  # raw, as stored, not as hex text
                    else:
                        chunks.append(str(value).encode())
    return b"\n".join(chunks)


async def connect(
    client: Client, platform: posts_pb2.Platform.ValueType, credentials: posts_pb2.Credentials
) -> str:
    reply = await client.accounts.ConnectAccount(
        posts_pb2.ConnectAccountRequest(
            platform=platform, handle=f"@visible-{uuid.uuid4().hex[:8]}", credentials=credentials
        ),
        metadata=client.metadata,
    )
    return reply.account.id


async def begin_every_due_delivery(api: RunningApi) -> list[dispatch_pb2.BeginAttemptResponse]:
    async with grpc.aio.insecure_channel(api.target) as channel:
        stub: dispatch_pb2_grpc.DispatchServiceAsyncStub = dispatch_pb2_grpc.DispatchServiceStub(
            channel
        )
        claimed = await stub.ClaimDue(
            dispatch_pb2.ClaimDueRequest(
                horizon=Duration(seconds=1), limit=10, lease=Duration(seconds=60)
            ),
            metadata=SERVICE,
        )
        return [
            await stub.BeginAttempt(
                dispatch_pb2.BeginAttemptRequest(delivery_id=d.delivery_id), metadata=SERVICE
            )
            for d in claimed.deliveries
        ]


async def test_no_credential_is_stored_or_logged_in_clear(
    own_api: RunningApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    first = {name: marker(name) for name in ("access", "refresh")}
    second = {name: marker(name) for name in ("access2", "refresh2")}
    hook = {"url": marker("hook-path"), "signing_secret": marker("signing")}
    discord = marker("discord-token")
    markers = [*first.values(), *second.values(), *hook.values(), discord]

    async with own_api.client() as client:
        mastodon = await connect(
            client,
            posts_pb2.PLATFORM_MASTODON,
            posts_pb2.Credentials(
                access_token=first["access"],
                refresh_token=first["refresh"],
                instance_url="https://mastodon.example",
            ),
        )
        await client.accounts.UpdateAccountCredentials(
            posts_pb2.UpdateAccountCredentialsRequest(
                account_id=mastodon,
                credentials=posts_pb2.Credentials(
                    access_token=second["access2"],
                    refresh_token=second["refresh2"],
                    instance_url="https://mastodon.example",
                ),
            ),
            metadata=client.metadata,
        )
        webhook = await connect(
            client,
            posts_pb2.PLATFORM_WEBHOOK,
            posts_pb2.Credentials(
                extra={
                    "url": f"https://hooks.example/{hook['url']}",
                    "signing_secret": hook["signing_secret"],
                }
            ),
        )
        discord_account = await connect(
            client,
            posts_pb2.PLATFORM_DISCORD,
            posts_pb2.Credentials(access_token=f"https://discord.com/api/webhooks/1/{discord}"),
        )
        request = posts_pb2.CreatePostRequest(
            content="hello",
            targets=[
                posts_pb2.TargetSpec(account_id=a) for a in (mastodon, webhook, discord_account)
            ],
        )
        request.schedule.at.GetCurrentTime()
        await client.posts.CreatePost(request, metadata=client.metadata)

        begun = await begin_every_due_delivery(own_api)
        for account_id in (mastodon, webhook, discord_account):
            await client.accounts.DisconnectAccount(
                posts_pb2.DisconnectAccountRequest(account_id=account_id),
                metadata=client.metadata,
            )

    # The publisher is handed the credentials (that is what BeginAttempt is for) ...
    handed = b"".join(b.credentials.SerializeToString() for b in begun)
    assert len(begun) == 3
    assert all(b.ok for b in begun)
    for value in (second["access2"], hook["signing_secret"], discord):
        assert value.encode() in handed

    # ... and the accounts still connected are re-encrypted under a rotated key.
    kept = marker("kept")
    markers.append(kept)
    async with own_api.client() as client:
        await connect(
            client,
            posts_pb2.PLATFORM_MASTODON,
            posts_pb2.Credentials(access_token=kept, instance_url="https://mastodon.example"),
        )
    settings = own_api.service.settings
    rotating = bootstrap(
        replace(
            settings,
            common=replace(settings.common, secret_key=f"{ROTATED_SECRET},{TEST_SECRET}"),
        )
    )
    try:
        assert (await rotation.credentials(rotating)).count == 1
    finally:
        await rotating.close()
    async with own_api.service.app.uow() as uow:
        events = await uow.session.scalar(select(func.count()).select_from(OutboxEvent))
    assert events  # the outbox's payloads are part of the scan below

    raw = await asyncio.to_thread(stored_bytes, settings.common.database_url)
    logged = caplog.text + "\n".join(str(r.__dict__) for r in caplog.records)
    assert b"@visible-" in raw  # the scan sees what is stored in clear
    assert "account connected" in logged  # and the logs were captured
    assert "account disconnected" in logged
    for value in markers:
        assert value.encode() not in raw, value
        assert value not in logged, value
