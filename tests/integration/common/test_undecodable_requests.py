"""Request bodies that are not a valid protobuf message answer INVALID_ARGUMENT, saying that the
request message could not be decoded, on every RPC of every service: the api's PostsService,
AccountsService and DispatchService, and health and reflection on the api, the scheduler and the
publisher (all three run the server skeleton of kairos_common.grpc).

No RPC is listed here: each server is asked over reflection which services it serves, and every
method of each is called with raw bytes, so a new RPC or service is covered once it is served.

A known field sent with another *valid* wire type is not among the cases: protobuf parsers keep
it as an unknown field, so such a message decodes. A wire type that does not exist does not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from support.api import SERVICE_TOKEN, RunningApi
from support.nats_server import NatsServer
from support.services import running_publisher, running_scheduler


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def length_delimited(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def invalid_utf8(message: Descriptor, depth: int = 0) -> bytes | None:
    """A message whose first reachable string field (a map key counts) holds invalid UTF-8, or
    None when the message type has no string field within three levels."""
    for field in message.fields:
        if field.type == FieldDescriptor.TYPE_STRING:
            return length_delimited(field.number, b"\xff\xfe")
    for field in message.fields:
        if field.message_type is not None and depth < 3:
            inner = invalid_utf8(field.message_type, depth + 1)
            if inner is not None:
                return length_delimited(field.number, inner)
    return None


#: Bodies that no request type decodes, each made for the RPC's request type.
BAD_BODIES: dict[str, Callable[[Descriptor], bytes | None]] = {
    "corrupt wire format": lambda _: b"\xff\xff\xff\xff",
    "truncated varint": lambda _: b"\x08\xff",
    "a wire type that does not exist": lambda _: b"\x0f",
    "an end of group with no group": lambda _: b"\x0c",
    "a length past the end": lambda _: b"\x0a\x05ab",
    "invalid UTF-8 in a string field": invalid_utf8,
}

#: Services each server must list, so that the test cannot pass by finding nothing to call.
HEALTH_AND_REFLECTION = {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}
EXPECTED_SERVICES = {
    "api": {
        "kairos.posts.v1.PostsService",
        "kairos.posts.v1.AccountsService",
        "kairos.dispatch.v1.DispatchService",
        *HEALTH_AND_REFLECTION,
    },
    "scheduler": HEALTH_AND_REFLECTION,
    "publisher": HEALTH_AND_REFLECTION,
}


@pytest.fixture(scope="module")
async def ports(pg_api: RunningApi, nats_server: NatsServer) -> AsyncIterator[dict[str, int]]:
    """The gRPC port of each service: the api, and a scheduler and a publisher in this process."""
    environ = {
        "KAIROS_NATS_URL": nats_server.url,
        "KAIROS_API_TARGET": pg_api.target,
        "KAIROS_SERVICE_TOKEN": SERVICE_TOKEN,
        "KAIROS_PUBLISHER_PLATFORMS": "sandbox",
    }
    async with running_scheduler(environ) as scheduler, running_publisher(environ) as publisher:
        yield {"api": pg_api.port, "scheduler": scheduler.port, "publisher": publisher.port}


async def served_methods(channel: grpc.aio.Channel) -> list[MethodDescriptor]:
    """Every method of every service the server lists over reflection."""
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    names: list[str] = []
    async for reply in stub.ServerReflectionInfo(iter([request]), timeout=5):
        names = [service.name for service in reply.list_services_response.service]
        break
    methods: list[MethodDescriptor] = []
    for name in names:
        # Every name reflection lists is a service these servers serve, so it is in this
        # process's pool (they run in it); a health-only name such as "kairos.scheduler" is not.
        service = descriptor_pool.Default().FindServiceByName(name)
        methods.extend(service.methods)
    return methods


def path_of(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


async def answer(
    channel: grpc.aio.Channel, method: MethodDescriptor, body: bytes
) -> tuple[grpc.StatusCode, str]:
    """The status of the RPC called with `body` as its (only) request message, sent as is."""
    path = path_of(method)
    raw = {"request_serializer": None, "response_deserializer": None}  # bytes in, bytes out
    call: grpc.aio.Call
    if method.client_streaming and method.server_streaming:
        call = channel.stream_stream(path, **raw)(iter([body]), timeout=5)
    elif method.client_streaming:
        call = channel.stream_unary(path, **raw)(iter([body]), timeout=5)
    elif method.server_streaming:
        call = channel.unary_stream(path, **raw)(body, timeout=5)
    else:
        call = channel.unary_unary(path, **raw)(body, timeout=5)
    return await call.code(), await call.details() or ""


@pytest.mark.parametrize("case", list(BAD_BODIES))
@pytest.mark.parametrize("server", list(EXPECTED_SERVICES))
async def test_an_undecodable_request_is_invalid_argument_on_every_rpc(
    ports: dict[str, int], server: str, case: str
) -> None:
    answers: dict[str, tuple[str, str]] = {}
    async with grpc.aio.insecure_channel(f"127.0.0.1:{ports[server]}") as channel:
        methods = await served_methods(channel)
        assert {m.containing_service.full_name for m in methods} >= EXPECTED_SERVICES[server]
        for method in methods:
            body = BAD_BODIES[case](method.input_type)
            if body is None:  # no string field to hold invalid UTF-8
                continue
            code, details = await answer(channel, method, body)
            says_so = details.startswith(
                f"{path_of(method)}: the request message could not be decoded"
            )
            answers[path_of(method)] = (code.name, "says so" if says_so else details)

    assert answers
    assert answers == dict.fromkeys(answers, ("INVALID_ARGUMENT", "says so"))
