"""The server skeleton over real gRPC: health per service, reflection, error mapping, stop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from kairos_common import errors
from kairos_common.grpc.server import GrpcServer, create_server
from kairos_common.settings import ServerSettings
from support.api import violations_of

SERVICE = "kairos.test.v1.ProbeService"


def probe_handlers(
    behaviours: Mapping[str, Callable[[], Awaitable[None]]],
) -> Any:
    def make(behaviour: Callable[[], Awaitable[None]]) -> Any:
        async def handle(request: empty_pb2.Empty, context: Any) -> empty_pb2.Empty:
            await behaviour()
            return empty_pb2.Empty()

        return grpc.unary_unary_rpc_method_handler(
            handle,
            request_deserializer=empty_pb2.Empty.FromString,
            response_serializer=empty_pb2.Empty.SerializeToString,
        )

    return grpc.method_handlers_generic_handler(
        SERVICE, {name: make(b) for name, b in behaviours.items()}
    )


async def bad_request() -> None:
    raise errors.InvalidArgument.collect(
        [
            errors.FieldViolation("content", "X counts 300 of 280 weighted characters"),
            errors.FieldViolation("targets[0].account_id", "is required"),
        ]
    )


async def missing() -> None:
    raise errors.NotFound("post p-1 not found")


async def stale() -> None:
    raise errors.Aborted("post p-1 is at revision 4, not 3")


async def bug() -> None:
    raise RuntimeError("database password is hunter2")


async def slow() -> None:
    await asyncio.sleep(0.5)


BEHAVIOURS = {
    "BadRequest": bad_request,
    "Missing": missing,
    "Stale": stale,
    "Bug": bug,
    "Slow": slow,
}


async def start(reflection: bool = True) -> GrpcServer:
    return await create_server(
        ServerSettings(addr="127.0.0.1:0", reflection=reflection),
        service_names=[SERVICE],
        register=lambda server: server.add_generic_rpc_handlers((probe_handlers(BEHAVIOURS),)),
    )


@pytest.fixture
async def server() -> AsyncIterator[GrpcServer]:
    started = await start()
    await started.set_serving(True)
    yield started
    await started.stop(0)


async def call(port: int, method: str, timeout: float = 5.0) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        invoke = channel.unary_unary(
            f"/{SERVICE}/{method}",
            request_serializer=empty_pb2.Empty.SerializeToString,
            response_deserializer=empty_pb2.Empty.FromString,
        )
        await invoke(empty_pb2.Empty(), timeout=timeout)


async def health(port: int, service: str) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=2
        )
        return int(reply.status)


async def test_binds_port_zero_and_reports_health_per_service(server: GrpcServer) -> None:
    assert server.port > 0
    assert await health(server.port, "") == health_pb2.HealthCheckResponse.SERVING
    assert await health(server.port, SERVICE) == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await health(server.port, "kairos.nope.v1.Nothing")
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


async def test_health_starts_not_serving_until_the_service_is_ready() -> None:
    started = await start()
    try:
        assert await health(started.port, SERVICE) == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        await started.stop(0)


async def test_health_watch_streams_through_the_guard(server: GrpcServer) -> None:
    """A server-streaming RPC whose request the guard decodes: its stream still flows."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=SERVICE), timeout=5
        )
        async for reply in watch:
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            break
        watch.cancel()


async def test_a_library_handler_keeps_its_own_status(server: GrpcServer) -> None:
    """grpc_health's List is a plain function answering UNIMPLEMENTED; the guard decodes its
    request and leaves the status alone (it used to be turned into INTERNAL)."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await health_pb2_grpc.HealthStub(channel).List(
                health_pb2.HealthListRequest(), timeout=5
            )
    assert failure.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def list_services(port: int) -> list[str]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        async for reply in stub.ServerReflectionInfo(iter([request])):
            return [s.name for s in reply.list_services_response.service]
    return []


async def test_reflection_lists_services_and_can_be_switched_off(server: GrpcServer) -> None:
    assert SERVICE in await list_services(server.port)
    quiet = await start(reflection=False)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as off:
            await list_services(quiet.port)
        assert off.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await quiet.stop(0)


async def test_invalid_argument_carries_field_violations(server: GrpcServer) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await call(server.port, "BadRequest")
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "content: X counts 300 of 280" in (failure.value.details() or "")
    assert violations_of(failure.value) == [
        ("content", "X counts 300 of 280 weighted characters"),
        ("targets[0].account_id", "is required"),
    ]


@pytest.mark.parametrize(
    ("method", "code", "message"),
    [
        ("Missing", grpc.StatusCode.NOT_FOUND, "post p-1 not found"),
        ("Stale", grpc.StatusCode.ABORTED, "post p-1 is at revision 4, not 3"),
        ("Bug", grpc.StatusCode.INTERNAL, "internal error; see server logs"),
    ],
)
async def test_domain_errors_map_to_status_codes(
    server: GrpcServer, method: str, code: grpc.StatusCode, message: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await call(server.port, method)
    assert failure.value.code() == code
    assert failure.value.details() == message


async def test_unexpected_errors_do_not_leak_their_text(
    server: GrpcServer, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await call(server.port, "Bug")
    assert "hunter2" not in (failure.value.details() or "")
    assert any("unexpected error" in r.getMessage() for r in caplog.records)


async def test_stop_lets_in_flight_calls_finish_and_refuses_new_ones() -> None:
    started = await start()
    await started.set_serving(True)
    in_flight = asyncio.create_task(call(started.port, "Slow"))
    await asyncio.sleep(0.1)
    await started.stop(grace=5)
    await in_flight  # finished within the grace, no error
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(started.port, "Slow", timeout=1)
    assert refused.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


async def test_calls_arriving_while_it_stops_are_refused_unavailable_never_cancelled() -> None:
    """gRPC answers CANCELLED to the calls a stopping server had queued but not begun
    (grpc/grpc#41785): with 30 callers calling all the time, nearly every one had such a call
    (49 of 50 when this was measured without the gate). The gate answers the calls that arrive
    UNAVAILABLE first, which clients retry after a backoff (0.2 s here, as gRPC's own retry
    policy and KairosClient start)."""
    started = await start()
    await started.set_serving(True)
    codes: list[grpc.StatusCode] = []
    done = 0
    stop = asyncio.Event()

    async def calling(channel: grpc.aio.Channel) -> None:
        nonlocal done
        invoke = channel.unary_unary(
            f"/{SERVICE}/Missing",
            request_serializer=empty_pb2.Empty.SerializeToString,
            response_deserializer=empty_pb2.Empty.FromString,
        )
        while not stop.is_set():
            try:
                await invoke(empty_pb2.Empty(), timeout=5)
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.NOT_FOUND:
                    done += 1  # the handler ran: what Missing answers
                    continue
                codes.append(error.code())
                await asyncio.sleep(0.2)

    async with grpc.aio.insecure_channel(f"127.0.0.1:{started.port}") as channel:
        callers = asyncio.gather(*(calling(channel) for _ in range(30)))
        await asyncio.sleep(0.3)
        before = done
        await started.stop(grace=2)
        stop.set()
        await callers

    assert before > 0
    assert grpc.StatusCode.CANCELLED not in codes
    assert grpc.StatusCode.UNAVAILABLE in codes
