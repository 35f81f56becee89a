"""The asyncio gRPC server skeleton every Kairos service runs.

`create_server()` builds and starts a server with health (one status per service name) and
reflection (unless switched off), every method handler guarded once as it is registered (requests
decoded and errors mapped: `errors.guard`), bound to the configured address (port 0 picks a free
port, for tests), with TLS when the settings carry a certificate, and the api's mutual-TLS
listener beside it when they carry a client CA. `run_until_signalled()` waits for SIGTERM or
SIGINT and then stops the service: health goes NOT_SERVING first, the service stops taking work,
in-flight work gets the grace period, and the process can exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from kairos_common.grpc.errors import Gate, GuardedGenericHandler, guard_all
from kairos_common.settings import CannotStart, ServerSettings, ServerTls

log = logging.getLogger(__name__)

#: How long a stopping server keeps taking calls to answer them UNAVAILABLE (`Gate`) before gRPC
#: stops it, in seconds: long enough for the calls already queued to be answered, and for
#: clients to see the refusal and back off (0.1 s or more with gRPC's and Kairos's clients).
REFUSE_BEFORE_STOP = 0.1

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class GrpcServer:
    """A started gRPC server and its health service."""

    server: grpc.aio.Server
    port: int
    #: grpc_health's asyncio HealthServicer (the package ships no type information).
    health: Any
    service_names: Sequence[str]
    #: The port of the mutual-TLS listener; 0 when there is none.
    mutual_port: int = 0
    #: Closed when the server starts stopping: new calls are then refused with UNAVAILABLE.
    gate: Gate = field(default_factory=Gate)
    _stopped: bool = field(default=False, init=False)

    async def set_serving(self, serving: bool) -> None:
        """Report every service (and the server as a whole) as SERVING or NOT_SERVING."""
        status = SERVING if serving else NOT_SERVING
        for name in ("", *self.service_names):
            await self.health.set(name, status)

    async def stop(self, grace: float) -> None:
        """Refuse new calls, give in-flight calls `grace` seconds, then close.

        New calls are refused with UNAVAILABLE for a moment first (`Gate`): gRPC itself would
        answer the calls it had queued CANCELLED, which clients do not retry.
        """
        if self._stopped:
            return
        self._stopped = True
        self.gate.closed = True
        await self.set_serving(False)
        refusing = min(REFUSE_BEFORE_STOP, grace)
        await asyncio.sleep(refusing)
        await self.server.stop(grace - refusing)


if TYPE_CHECKING:
    _MethodHandler = grpc.RpcMethodHandler[Any, Any]
    _GenericHandler = grpc.GenericRpcHandler[Any, Any]
else:
    _MethodHandler = grpc.RpcMethodHandler
    _GenericHandler = grpc.GenericRpcHandler


class _GuardingRegistrar(grpc.aio.Server):
    """What servicers are registered on: it guards each method handler (`errors.guard`) and adds
    it to the real server.

    Guarding at registration costs nothing per call beyond the guard itself; a server interceptor
    would run on every call, and build a handler each time, to do the same. It is a
    `grpc.aio.Server` because the generated `add_*_to_server` functions and reflection take one;
    serving stays with the real server.
    """

    def __init__(self, server: grpc.aio.Server, gate: Gate) -> None:
        self._server = server
        self._gate = gate
        #: The gRPC services registered, in order (a dict as an ordered set): what reflection
        #: lists.
        self.services: dict[str, None] = {}

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Iterable[_GenericHandler]) -> None:
        generic_rpc_handlers = list(generic_rpc_handlers)
        for handler in generic_rpc_handlers:
            # grpc.method_handlers_generic_handler's handlers (the generated code's) name theirs.
            named = getattr(handler, "service_name", None)
            if callable(named):
                self.services[named()] = None
        self._server.add_generic_rpc_handlers(
            [GuardedGenericHandler(handler, self._gate) for handler in generic_rpc_handlers]
        )

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: Mapping[str, _MethodHandler]
    ) -> None:
        self.services[service_name] = None
        self._server.add_registered_method_handlers(  # type: ignore[attr-defined]
            service_name, guard_all(service_name, method_handlers, self._gate)
        )

    def add_insecure_port(self, address: str) -> int:
        raise TypeError("register handlers only; the server binds its own ports")

    def add_secure_port(self, address: str, server_credentials: grpc.ServerCredentials) -> int:
        raise TypeError("register handlers only; the server binds its own ports")

    async def start(self) -> None:
        raise TypeError("register handlers only; create_server starts the server")

    async def stop(self, grace: float | None = None) -> None:
        raise TypeError("register handlers only; GrpcServer.stop stops the server")

    async def wait_for_termination(self, timeout: float | None = None) -> bool:
        raise TypeError("register handlers only")


async def create_server(
    settings: ServerSettings,
    *,
    service_names: Sequence[str],
    register: Callable[[grpc.aio.Server], None],
    interceptors: Sequence[Any] = (),
) -> GrpcServer:
    """Build, bind and start a server; `register` adds the business servicers (to a registrar
    that guards their handlers, so it may only add handlers).

    Health starts NOT_SERVING; the caller sets SERVING once its own dependencies are ready.
    """
    server = grpc.aio.server(interceptors=interceptors, options=[("grpc.so_reuseport", 0)])
    gate = Gate()
    registrar = _GuardingRegistrar(server, gate)
    register(registrar)
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, registrar)
    if settings.reflection:
        # The services really served: a health name such as "kairos.scheduler" is not one.
        names = [*registrar.services, reflection.SERVICE_NAME]
        reflection.enable_server_reflection(names, registrar)
    tls = settings.tls
    port = _bind(server, settings.addr, settings.addr_variable, _credentials(tls, mutual=False))
    mutual_port = 0
    if tls is not None and tls.client_ca is not None:
        credentials = _credentials(tls, mutual=True)
        mutual_port = _bind(server, tls.mutual_addr, tls.mutual_addr_variable, credentials)
    await server.start()
    started = GrpcServer(server, port, health_servicer, tuple(service_names), mutual_port, gate)
    await started.set_serving(False)
    log.info(
        "gRPC listening",
        extra={"addr": settings.addr, "port": port, "tls": "off" if tls is None else "on"},
    )
    if tls is not None and mutual_port:
        log.info(
            "gRPC listening for mutual TLS", extra={"addr": tls.mutual_addr, "port": mutual_port}
        )
    return started


def _credentials(tls: ServerTls | None, *, mutual: bool) -> grpc.ServerCredentials | None:
    """The server credentials of a listener: None (plaintext) without TLS; for the mutual-TLS
    listener, ones that require a client certificate signed by the client CA."""
    if tls is None:
        return None
    if mutual:
        return grpc.ssl_server_credentials(
            [(tls.private_key, tls.cert_chain)],
            root_certificates=tls.client_ca,
            require_client_auth=True,
        )
    # No root certificates: gRPC Python then never asks for a client certificate, and tenants'
    # clients connect with their API key alone.
    return grpc.ssl_server_credentials([(tls.private_key, tls.cert_chain)])


def _bind(
    server: grpc.aio.Server,
    addr: str,
    addr_variable: str,
    credentials: grpc.ServerCredentials | None,
) -> int:
    """Listen on `addr`; the port, or CannotStart naming `addr_variable`."""
    try:
        if credentials is None:
            port = server.add_insecure_port(addr)
        else:
            port = server.add_secure_port(addr, credentials)
    except RuntimeError:  # grpc's "Failed to bind to address ..."
        port = 0
    if port == 0:
        raise CannotStart(
            f"cannot listen on {addr} ({addr_variable}): the port is taken, "
            "or the host is not an address of this machine"
        )
    return port


class Service(Protocol):
    """What `run_until_signalled` runs: a service that starts, runs and stops."""

    async def start(self) -> None:
        """Connect, start serving and report SERVING."""

    async def stop(self) -> None:
        """Stop taking work, finish what is in flight within the grace period, close."""


async def run_until_signalled(service: Service) -> None:
    """Start `service`, wait for SIGTERM or SIGINT, then stop it.

    A signal while the service is still starting (say, waiting for NATS) cancels the start and
    stops what had started, so a service that never got ready still ends when asked to; a start
    that fails stops what had started too, then raises.
    """
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    try:
        try:
            if await start_unless_signalled(service, stopping):
                await stopping.wait()
        finally:
            # After a start that failed too: what had started (the gRPC server, a NATS
            # connection) is closed while the event loop still runs.
            log.info("stopping")
            await service.stop()
            log.info("stopped")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


#: How long a cancelled start has to end before it is cancelled again.
CANCEL_AGAIN_AFTER = 0.05


async def start_unless_signalled(service: Service, stopping: asyncio.Event) -> bool:
    """Start `service`; False if `stopping` was set first and the start was cancelled."""
    starting = asyncio.create_task(service.start(), name="start")
    signalled = asyncio.create_task(stopping.wait(), name="signalled")
    try:
        await asyncio.wait({starting, signalled}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        signalled.cancel()
    if not starting.done():
        log.info("signalled while starting")
    # Cancelled again until it ends: the NATS client's connect loop can take a cancellation
    # for one more refused attempt and go on trying (asyncio.wait_for on Python 3.11).
    while not starting.done():
        starting.cancel()
        await asyncio.wait({starting}, timeout=CANCEL_AGAIN_AFTER)
    if starting.cancelled():
        return False
    starting.result()  # a start that failed fails the run
    return True
