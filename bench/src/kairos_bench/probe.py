"""The empty-RPC probe: what a gRPC unary call costs here when the handler does nothing.

`make bench` serves one no-op unary RPC the way Kairos serves its own (`create_server` from
kairos_common: the same server options, the handler guarded at registration as every Kairos
handler is, health and reflection beside it, run by the services' own `run_service`) and calls
it the way the bench calls the api (`load.open_clients`: one channel per client, the generated
stub's kind of multicallable made once per channel, the tenant's bearer token as metadata, the
same timeout). Every api rate in the report is also shown as a fraction of this one: the part of
an RPC's cost that is gRPC's own, and that Kairos cannot remove.

    KAIROS_BENCH_PROBE_ADDR=127.0.0.1:PORT python -m kairos_bench.probe    serve until SIGTERM
"""

from __future__ import annotations

import logging
import sys
import weakref
from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf import empty_pb2

from kairos_bench.load import Call, Client
from kairos_common.grpc.server import GrpcServer, create_server
from kairos_common.runner import run_service
from kairos_common.settings import Env, ServerSettings, server_settings

SERVICE = "kairos.bench.v1.ProbeService"
METHOD = f"/{SERVICE}/Empty"

Empty = grpc.aio.UnaryUnaryMultiCallable[empty_pb2.Empty, empty_pb2.Empty]

log = logging.getLogger(__name__)


async def empty(request: empty_pb2.Empty, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
    """The no-op handler."""
    return empty_pb2.Empty()


def register(server: grpc.aio.Server) -> None:
    handler = grpc.unary_unary_rpc_method_handler(
        empty,
        request_deserializer=empty_pb2.Empty.FromString,
        response_serializer=empty_pb2.Empty.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(SERVICE, {"Empty": handler})]
    )


class ProbeService:
    """The probe's server, started and stopped as a Kairos service is."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.grpc: GrpcServer | None = None

    async def start(self) -> None:
        self.grpc = await create_server(self.settings, service_names=[SERVICE], register=register)
        await self.grpc.set_serving(True)

    async def stop(self) -> None:
        if self.grpc is not None:
            await self.grpc.stop(self.settings.grace.total_seconds())


def empty_call(metadata: Sequence[tuple[str, str]]) -> Call:
    """A `load.Call` that makes the empty RPC, with `metadata` as Kairos calls carry theirs."""
    # Each client's multicallable and the channel it was made on: made again when the client
    # has a new channel, and forgotten with the client (it holds its channel).
    made: weakref.WeakKeyDictionary[Client, tuple[grpc.aio.Channel, Empty]] = (
        weakref.WeakKeyDictionary()
    )
    request = empty_pb2.Empty()

    async def call(client: Client, number: int) -> Any:
        channel, method = made.get(client, (None, None))
        if method is None or channel is not client.channel:
            method = client.channel.unary_unary(
                METHOD,
                request_serializer=empty_pb2.Empty.SerializeToString,
                response_deserializer=empty_pb2.Empty.FromString,
            )
            made[client] = (client.channel, method)
        return await method(request, metadata=metadata, timeout=30)

    return call


def main() -> int:
    return run_service(
        "probe",
        lambda: server_settings(Env(), "KAIROS_BENCH_PROBE_ADDR", "127.0.0.1:50059"),
        ProbeService,
    )


if __name__ == "__main__":
    sys.exit(main())
