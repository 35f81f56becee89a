"""The console in this process over an in-process api on PostgreSQL (one per module), and a
signed-in browser of a fresh tenant per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest

from kairos.posts.v1 import posts_pb2
from kairos_client import KairosClient
from support.api import RunningApi, api_settings, running_api
from support.console import Browser, RunningConsole, running_console
from support.nats_server import NatsServer
from support.postgres import TestDatabase


@pytest.fixture(scope="module")
async def console_api(
    test_database: TestDatabase, nats_server: NatsServer
) -> AsyncIterator[RunningApi]:
    async with running_api(api_settings(test_database.url, KAIROS_NATS_URL=nats_server.url)) as api:
        yield api


@pytest.fixture(scope="module")
async def console(console_api: RunningApi) -> AsyncIterator[RunningConsole]:
    async with running_console(console_api.target) as running:
        yield running


@dataclass
class Tenant:
    """A fresh tenant: its key, a client with it, and a connected sandbox account."""

    name: str
    key: str
    client: KairosClient
    account: posts_pb2.Account


@asynccontextmanager
async def new_tenant(api: RunningApi, handle: str = "@console") -> AsyncIterator[Tenant]:
    """A fresh tenant of `api` with a sandbox account called `handle`, and a client of its."""
    name, key = await api.new_key(f"console-{uuid.uuid4().hex[:8]}")
    async with KairosClient(api.target, key) as client:
        account = await client.connect_account(
            posts_pb2.ConnectAccountRequest(
                platform=posts_pb2.PLATFORM_SANDBOX,
                handle=handle,
                credentials=posts_pb2.Credentials(
                    access_token="t", instance_url="http://127.0.0.1:9"
                ),
            )
        )
        yield Tenant(name, key, client, account)


@pytest.fixture
async def tenant(console_api: RunningApi) -> AsyncIterator[Tenant]:
    async with new_tenant(console_api) as fresh:
        yield fresh


@pytest.fixture
async def browser(console: RunningConsole, tenant: Tenant) -> AsyncIterator[Browser]:
    """A browser signed in as `tenant`, showing times in Europe/Berlin."""
    async with console.browser() as browser:
        await browser.sign_in(tenant.key)
        yield browser
