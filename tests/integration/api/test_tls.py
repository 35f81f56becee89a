"""The api over TLS, real handshakes: tenants connect with the CA alone; with mutual TLS on,
DispatchService and WebhookDispatchService also want a client certificate the client CA signed,
which only the mutual-TLS listener asks for."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from kairos.dispatch.v1 import (
    dispatch_pb2,
    dispatch_pb2_grpc,
    webhooks_pb2,
    webhooks_pb2_grpc,
)
from kairos.posts.v1 import posts_pb2, posts_pb2_grpc
from support.api import SERVICE_TOKEN, RunningApi, api_settings, running_api
from support.nats_server import NatsServer
from support.tls import Pki, make_pki

SERVICE = (("authorization", f"Bearer {SERVICE_TOKEN}"),)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


async def start_api(
    folder: Path, nats: NatsServer, environ: dict[str, str]
) -> AsyncIterator[RunningApi]:
    settings = api_settings(
        f"sqlite:///{folder / 'kairos.db'}", KAIROS_NATS_URL=nats.url, **environ
    )
    async with running_api(settings) as running:
        yield running


@pytest.fixture(scope="module")
async def tls_api(
    pki: Pki, nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningApi]:
    """An api with TLS and no mutual TLS."""
    async for running in start_api(tmp_path_factory.mktemp("tls"), nats_server, pki.server_env()):
        yield running


@pytest.fixture(scope="module")
async def mtls_api(
    pki: Pki, nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningApi]:
    """An api with TLS and its mutual-TLS listener."""
    environ = pki.server_env(mutual_addr="127.0.0.1:0")
    async for running in start_api(tmp_path_factory.mktemp("mtls"), nats_server, environ):
        yield running


async def list_posts(channel: grpc.aio.Channel, key: str) -> posts_pb2.ListPostsResponse:
    stub = posts_pb2_grpc.PostsServiceStub(channel)
    return await stub.ListPosts(
        posts_pb2.ListPostsRequest(), metadata=(("authorization", f"Bearer {key}"),), timeout=5
    )


async def claim(channel: grpc.aio.Channel) -> dispatch_pb2.ClaimDueResponse:
    stub = dispatch_pb2_grpc.DispatchServiceStub(channel)
    return await stub.ClaimDue(dispatch_pb2.ClaimDueRequest(limit=1), metadata=SERVICE, timeout=5)


def tls_channel(port: int, credentials: grpc.ChannelCredentials) -> grpc.aio.Channel:
    return grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials)


async def test_a_tenant_reaches_the_api_over_tls_with_the_ca(tls_api: RunningApi, pki: Pki) -> None:
    _, key = await tls_api.new_key()
    async with tls_channel(tls_api.port, pki.credentials()) as channel:
        reply = await list_posts(channel, key)
    assert list(reply.posts) == []


async def test_plaintext_and_an_untrusted_ca_are_refused(tls_api: RunningApi, pki: Pki) -> None:
    _, key = await tls_api.new_key()
    async with grpc.aio.insecure_channel(tls_api.target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as plaintext:
            await list_posts(channel, key)
    assert plaintext.value.code() == grpc.StatusCode.UNAVAILABLE
    async with tls_channel(tls_api.port, pki.credentials(trusting=pki.other_ca)) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as untrusted:
            await list_posts(channel, key)
    assert untrusted.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_without_mutual_tls_the_service_token_is_enough(
    tls_api: RunningApi, pki: Pki
) -> None:
    assert tls_api.mutual_port == 0
    async with tls_channel(tls_api.port, pki.credentials()) as channel:
        reply = await claim(channel)
    assert list(reply.deliveries) == []


async def test_with_mutual_tls_dispatch_wants_a_client_certificate(
    mtls_api: RunningApi, pki: Pki
) -> None:
    async with tls_channel(mtls_api.port, pki.credentials()) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await claim(channel)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "a client certificate is required" in str(caught.value.details())
        assert "KAIROS_API_MTLS_ADDR" in str(caught.value.details())
        webhooks = webhooks_pb2_grpc.WebhookDispatchServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as hooks:
            await webhooks.ClaimWebhookDeliveries(
                webhooks_pb2.ClaimWebhookDeliveriesRequest(limit=1), metadata=SERVICE, timeout=5
            )
        assert hooks.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "a client certificate is required" in str(hooks.value.details())


async def test_with_a_client_certificate_from_the_ca_dispatch_works(
    mtls_api: RunningApi, pki: Pki
) -> None:
    assert mtls_api.mutual_port not in (0, mtls_api.port)
    credentials = pki.credentials(with_certificate=True)
    async with tls_channel(mtls_api.mutual_port, credentials) as channel:
        reply = await claim(channel)
        assert list(reply.deliveries) == []
        # The certificate does not replace the service token.
        stub = dispatch_pb2_grpc.DispatchServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ClaimDue(
                dispatch_pb2.ClaimDueRequest(limit=1),
                metadata=(("authorization", "Bearer not-the-token"),),
                timeout=5,
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_the_mutual_tls_listener_takes_only_certificates_from_the_client_ca(
    mtls_api: RunningApi, pki: Pki
) -> None:
    stranger = grpc.ssl_channel_credentials(
        pki.ca.read_bytes(),
        pki.other_client_key.read_bytes(),
        pki.other_client_cert.read_bytes(),
    )
    for credentials in (pki.credentials(), stranger):
        async with tls_channel(mtls_api.mutual_port, credentials) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await claim(channel)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_with_mutual_tls_tenants_still_connect_without_a_certificate(
    mtls_api: RunningApi, pki: Pki
) -> None:
    _, key = await mtls_api.new_key()
    async with tls_channel(mtls_api.port, pki.credentials()) as channel:
        reply = await list_posts(channel, key)
    assert list(reply.posts) == []
