"""Secure by default: outside development the api needs a private service token, and the public
development token opens DispatchService (which hands out decrypted platform credentials) only in
development mode."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from kairos.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from kairos_api.service import ApiService
from kairos_common.settings import SettingsError
from support.api import SERVICE_TOKEN, RunningApi, api_settings, running_api
from support.nats_server import NatsServer


async def claim_due_as(api: RunningApi, token: str) -> dispatch_pb2.ClaimDueResponse:
    """ClaimDue with `token` as the service credential."""
    async with grpc.aio.insecure_channel(api.target) as channel:
        stub: dispatch_pb2_grpc.DispatchServiceAsyncStub = dispatch_pb2_grpc.DispatchServiceStub(
            channel
        )
        return await stub.ClaimDue(
            dispatch_pb2.ClaimDueRequest(limit=1),
            metadata=(("authorization", f"Bearer {token}"),),
        )


def test_outside_development_the_api_refuses_to_start_without_a_service_token(
    tmp_path: Path,
) -> None:
    settings = api_settings(
        f"sqlite:///{tmp_path / 'kairos.db'}", KAIROS_ENV="production", KAIROS_SERVICE_TOKEN=""
    )
    with pytest.raises(SettingsError, match="KAIROS_SERVICE_TOKEN is not set"):
        ApiService(settings)


async def test_outside_development_the_development_token_opens_nothing(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    settings = api_settings(
        f"sqlite:///{tmp_path / 'kairos.db'}",
        KAIROS_ENV="production",
        KAIROS_NATS_URL=nats_server.url,
    )
    async with running_api(settings) as api:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await claim_due_as(api, "dev-service-token")
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert list((await claim_due_as(api, SERVICE_TOKEN)).deliveries) == []


async def test_in_development_the_development_token_still_works(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    settings = api_settings(
        f"sqlite:///{tmp_path / 'kairos.db'}",
        KAIROS_ENV="development",
        KAIROS_SERVICE_TOKEN="",
        KAIROS_NATS_URL=nats_server.url,
    )
    async with running_api(settings) as api:
        assert list((await claim_due_as(api, "dev-service-token")).deliveries) == []
