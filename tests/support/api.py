"""The api in-process on port 0, against PostgreSQL or SQLite, with stubs that carry a key."""

from __future__ import annotations

import atexit
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import grpc

from kairos.dispatch.v1 import dispatch_pb2_grpc
from kairos.posts.v1 import posts_pb2_grpc
from kairos_api.service import ApiService
from kairos_api.service_layer import keys
from kairos_api.settings import ApiSettings
from kairos_client import KairosError
from kairos_common.metrics import METRICS_OFF
from kairos_common.settings import ServerSettings

TEST_SECRET = "test-secret-key-with-more-than-32-characters"
#: Long enough to be accepted outside development too (tests of production mode use it).
SERVICE_TOKEN = "test-service-token-0123456789"


#: The media stores of this test run's apis, each in a folder of its own here.
_MEDIA_ROOT = Path(tempfile.mkdtemp(prefix="kairos-test-media-"))
atexit.register(shutil.rmtree, _MEDIA_ROOT, ignore_errors=True)


def api_settings(database_url: str, **environ: str) -> ApiSettings:
    settings = ApiSettings.from_env(
        {
            "KAIROS_ENV": "development",
            "KAIROS_MEDIA_STORE": str(_MEDIA_ROOT / uuid.uuid4().hex),
            "KAIROS_DATABASE_URL": database_url,
            "KAIROS_SECRET_KEY": TEST_SECRET,
            "KAIROS_SERVICE_TOKEN": SERVICE_TOKEN,
            "KAIROS_ALLOW_HTTP_MEDIA": "false",
            **environ,
        }
    )
    # No metrics endpoint: tests run several apis in this process at once. The TLS of the
    # environment stays (its mutual-TLS listener on the address it names, port 0 in tests).
    return replace(
        settings,
        server=ServerSettings(
            addr="127.0.0.1:0", grace=timedelta(seconds=1), tls=settings.server.tls
        ),
        metrics=METRICS_OFF,
    )


def violations_of(error: grpc.aio.AioRpcError) -> list[tuple[str, str]]:
    """The field violations of a refused call, decoded as clients decode them."""
    return KairosError.from_rpc_error(error).violations


@dataclass
class Client:
    """Stubs of one tenant, every call carrying its API key."""

    tenant: str
    key: str
    channel: grpc.aio.Channel
    posts: posts_pb2_grpc.PostsServiceAsyncStub
    accounts: posts_pb2_grpc.AccountsServiceAsyncStub

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.key}"),)


@dataclass
class RunningApi:
    """An api served in this process."""

    service: ApiService
    port: int
    #: The port of the mutual-TLS listener; 0 when there is none.
    mutual_port: int = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def new_key(self, tenant: str | None = None) -> tuple[str, str]:
        tenant = tenant or f"tenant-{uuid.uuid4().hex[:8]}"
        created = await keys.create_key(self.service.app.uow(), tenant)
        return tenant, created.key

    @asynccontextmanager
    async def client(self, tenant: str | None = None) -> AsyncIterator[Client]:
        """A channel and stubs for a new (or named) tenant with a fresh key."""
        tenant, key = await self.new_key(tenant)
        async with grpc.aio.insecure_channel(self.target) as channel:
            yield Client(
                tenant,
                key,
                channel,
                posts_pb2_grpc.PostsServiceStub(channel),
                posts_pb2_grpc.AccountsServiceStub(channel),
            )

    @asynccontextmanager
    async def dispatch(self) -> AsyncIterator[dispatch_pb2_grpc.DispatchServiceStub]:
        async with grpc.aio.insecure_channel(self.target) as channel:
            yield dispatch_pb2_grpc.DispatchServiceStub(channel)


@asynccontextmanager
async def running_api(settings: ApiSettings) -> AsyncIterator[RunningApi]:
    service = ApiService(settings)
    await service.start()
    assert service.grpc is not None
    try:
        yield RunningApi(service, service.grpc.port, service.grpc.mutual_port)
    finally:
        await service.stop()
