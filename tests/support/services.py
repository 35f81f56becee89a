"""Run the Kairos services in-process (on port 0) or as real subprocesses, and ask their health.

The api's in-process helper is `support.api.running_api`; the scheduler's and publisher's are
here.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Generic, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kairos_common.metrics import METRICS_OFF
from kairos_common.settings import ServerSettings
from kairos_publisher.service import PublisherService
from kairos_publisher.settings import PublisherSettings
from kairos_scheduler.service import SchedulerService
from kairos_scheduler.settings import SchedulerSettings
from support.ports import free_port
from support.processes import spawn, stop_child

SERVICES = {
    "api": ("kairos_api", "KAIROS_API_ADDR"),
    "scheduler": ("kairos_scheduler", "KAIROS_SCHEDULER_ADDR"),
    "publisher": ("kairos_publisher", "KAIROS_PUBLISHER_ADDR"),
}


async def health_status(
    port: int,
    service: str = "",
    timeout: float = 2.0,
    credentials: grpc.ChannelCredentials | None = None,
) -> str:
    """The health status name (SERVING, NOT_SERVING ...) that 127.0.0.1:`port` reports; asked
    over TLS with `credentials`."""
    target = f"127.0.0.1:{port}"
    channel = (
        grpc.aio.insecure_channel(target)
        if credentials is None
        else grpc.aio.secure_channel(target, credentials)
    )
    async with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


async def wait_until_serving(
    port: int,
    service: str = "",
    timeout: float = 20.0,
    credentials: grpc.ChannelCredentials | None = None,
) -> None:
    """Poll health until SERVING (over TLS with `credentials`); fail with the last answer after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            last = await health_status(port, service, timeout=1.0, credentials=credentials)
            if last == "SERVING":
                return
        except grpc.aio.AioRpcError as error:
            last = f"{error.code().name}: {error.details()}"
        await asyncio.sleep(0.05)
    raise TimeoutError(f"port {port} not SERVING after {timeout}s ({last})")


#: The tests run the services in development mode (KAIROS_ENV); a test of production sets it.
DEVELOPMENT = {"KAIROS_ENV": "development"}

#: In-process services listen on port 0 and stop quickly.
IN_PROCESS_SERVER = ServerSettings(addr="127.0.0.1:0", grace=timedelta(seconds=1))

S = TypeVar("S", SchedulerService, PublisherService)


@dataclass
class Running(Generic[S]):
    """A service started in this process, and the port its gRPC server got."""

    service: S
    port: int


@asynccontextmanager
async def running(service: S) -> AsyncIterator[Running[S]]:
    """Start `service`, hand it over with its port, and stop it at the end."""
    await service.start()
    assert service.grpc is not None
    try:
        yield Running(service, service.grpc.port)
    finally:
        await service.stop()


def running_scheduler(
    environ: Mapping[str, str],
) -> AbstractAsyncContextManager[Running[SchedulerService]]:
    """A scheduler in this process, configured from `environ` (in development mode unless it
    says otherwise), on a free port, without a metrics endpoint (several may run at once)."""
    settings = replace(
        SchedulerSettings.from_env({**DEVELOPMENT, **environ}),
        server=IN_PROCESS_SERVER,
        metrics=METRICS_OFF,
    )
    return running(SchedulerService(settings))


def running_publisher(
    environ: Mapping[str, str],
) -> AbstractAsyncContextManager[Running[PublisherService]]:
    """A publisher in this process, configured from `environ` (in development mode unless it
    says otherwise), on a free port, without a metrics endpoint (several may run at once)."""
    settings = replace(
        PublisherSettings.from_env({**DEVELOPMENT, **environ}),
        server=IN_PROCESS_SERVER,
        metrics=METRICS_OFF,
    )
    return running(PublisherService(settings))


class ServiceProcess:
    """One service as a real subprocess with its own environment and log file.

    It runs as `python -m <module>`, or with `console_script` as the installed
    `kairos-<name>` script next to the interpreter. Its metrics endpoint listens on a free
    port of its own (`metrics_port`).
    """

    def __init__(
        self, name: str, env: Mapping[str, str], log_dir: Path, *, console_script: bool = False
    ) -> None:
        module, addr_variable = SERVICES[name]
        self.name = name
        self.module = module
        self.console_script = console_script
        self.port = free_port()
        self.metrics_port = free_port()
        self.env = {
            **os.environ,
            **DEVELOPMENT,
            "KAIROS_METRICS_PORT": str(self.metrics_port),
            **env,
            addr_variable: f"127.0.0.1:{self.port}",
        }
        self.log_path = log_dir / f"{name}-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None
        #: How to ask its health when it listens with TLS (KAIROS_TLS_CERT_FILE).
        self.health_credentials: grpc.ChannelCredentials | None = None

    def restart(self) -> None:
        """SIGTERM (if running) and start again on the same port and environment."""
        if self.running:
            self.terminate()
        self.start()

    @property
    def command(self) -> list[str]:
        if self.console_script:
            return [str(Path(sys.executable).parent / f"kairos-{self.name}")]
        return [sys.executable, "-m", self.module]

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = spawn(self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    async def wait_serving(self, timeout: float = 30.0) -> None:
        try:
            await wait_until_serving(
                self.port, timeout=timeout, credentials=self.health_credentials
            )
        except TimeoutError as error:
            raise TimeoutError(f"{error}\n--- {self.name} log ---\n{self.logs()}") from None

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM, then the exit code (SIGKILL and -9 if it outlives `timeout`)."""
        return self.stop_with(signal.SIGTERM, timeout)

    def kill(self) -> int:
        """SIGKILL: the process gets no chance to clean up."""
        return self.stop_with(signal.SIGKILL, 10.0)

    def stop_with(self, sig: signal.Signals, timeout: float) -> int:
        """Send `sig`, then the exit code (SIGKILL and -9 if it outlives `timeout`)."""
        assert self.process is not None, "not started"
        return stop_child(self.process, sig, timeout)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None
