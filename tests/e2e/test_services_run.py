"""Each service as a real process: starts, answers SERVING, declares the streams, stops cleanly."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
import time
import uuid
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from nats.aio.client import Client as NatsClient

from kairos.events.v1 import events_pb2
from kairos.posts.v1 import posts_pb2
from kairos_common.streams import DEAD_STREAM, DUE_STREAM, EVENTS_STREAM, due_subject
from support.api import SERVICE_TOKEN, TEST_SECRET
from support.nats_server import NatsServer
from support.ports import free_port
from support.postgres import TestDatabase
from support.processes import spawn_async
from support.services import SERVICES, ServiceProcess, health_status, wait_until_serving

pytestmark = pytest.mark.e2e

GRACE_SECONDS = 3.0


def service_env(nats_url: str, database_url: str = "") -> dict[str, str]:
    return {
        "KAIROS_DATABASE_URL": database_url,
        "KAIROS_SECRET_KEY": TEST_SECRET,
        "KAIROS_NATS_URL": nats_url,
        "KAIROS_GRACE_SECONDS": str(GRACE_SECONDS),
        "KAIROS_LOG_FORMAT": "json",
    }


def stop_within_grace(service: ServiceProcess, sig: signal.Signals) -> float:
    """Signal `service`; how long it took to exit 0 (fails with its log otherwise)."""
    started = time.monotonic()
    try:
        code = service.stop_with(sig, timeout=GRACE_SECONDS + 5)
    finally:
        if service.running:
            service.kill()
    took = time.monotonic() - started
    assert code == 0, service.logs()
    assert took < GRACE_SECONDS + 2, f"{service.name} took {took:.1f}s to stop"
    assert '"msg": "stopped"' in service.logs()
    return took


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("name", ["api", "scheduler", "publisher"])
async def test_service_serves_health_and_exits_zero_on_a_signal(
    name: str,
    sig: signal.Signals,
    loop: str,
    nats_server: NatsServer,
    test_database: TestDatabase,
    log_dir: Path,
) -> None:
    # The SIGINT runs start the installed console script (as `make dev` does), the SIGTERM
    # runs `python -m`; each on both event loops.
    console_script = sig == signal.SIGINT
    env = service_env(nats_server.url, test_database.url)
    env["KAIROS_UVLOOP"] = str(loop == "uvloop").lower()
    service = ServiceProcess(name, env, log_dir, console_script=console_script)
    service.start()
    try:
        await service.wait_serving()
    finally:
        stop_within_grace(service, sig)
    assert f'"msg": "starting", "loop": "{loop}"' in service.logs()


async def wait_until_listening(service: ServiceProcess, timeout: float = 20.0) -> None:
    """Until the service's gRPC server answers health at all (SERVING or not)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            await health_status(service.port, timeout=1.0)
            return
        except grpc.aio.AioRpcError:
            await asyncio.sleep(0.05)
    raise TimeoutError(f"{service.name} not listening after {timeout}s\n{service.logs()}")


@pytest.mark.parametrize("name", ["api", "scheduler", "publisher"])
async def test_a_signal_while_waiting_for_nats_exits_zero(
    name: str, test_database: TestDatabase, log_dir: Path
) -> None:
    nowhere = f"nats://127.0.0.1:{free_port()}"  # nothing listens there
    env = service_env(nowhere, test_database.url)
    service = ServiceProcess(name, env, log_dir)
    service.start()
    try:
        await wait_until_listening(service)
        await asyncio.sleep(1.0)  # well into the NATS connection attempts
    finally:
        stop_within_grace(service, signal.SIGTERM)
    # The api serves without NATS; the others were still starting.
    assert ("signalled while starting" in service.logs()) == (name != "api")


@pytest.mark.parametrize("name", ["api", "scheduler", "publisher"])
async def test_streams_exist_after_a_service_starts(
    name: str, test_database: TestDatabase, log_dir: Path
) -> None:
    fresh = NatsServer()  # its own broker, so nothing else could have declared the streams
    fresh.start()
    service = ServiceProcess(name, service_env(fresh.url, test_database.url), log_dir)
    client = NatsClient()
    try:
        await client.connect(fresh.url)
        js = client.jetstream()
        assert await js.streams_info() == []
        service.start()
        await service.wait_serving()
        # The api serves while NATS may be away and declares the streams when it connects.
        expected = sorted([DUE_STREAM, EVENTS_STREAM, DEAD_STREAM])
        names: list[str] = []
        deadline = time.monotonic() + 20
        while names != expected and time.monotonic() < deadline:
            names = sorted(info.config.name or "" for info in await js.streams_info())
            await asyncio.sleep(0.05)
        assert names == expected
        assert service.terminate() == 0, service.logs()
    finally:
        await client.close()
        if service.running:
            service.kill()
        fresh.close()


class BlackHole(asyncio.Protocol):
    """A TCP listener that accepts and never answers: a hung api, as its callers see it."""

    def __init__(self) -> None:
        self.connected = asyncio.Event()
        self.transports: list[asyncio.BaseTransport] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transports.append(transport)
        self.connected.set()

    async def __aenter__(self) -> BlackHole:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: self, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()
        for transport in self.transports:
            transport.close()


def due_event_for_x() -> bytes:
    """A due event for X, due now, as the scheduler would emit it."""
    due_at = Timestamp()
    due_at.GetCurrentTime()
    event = events_pb2.DueEvent(
        delivery_id=str(uuid.uuid4()),
        target_id=str(uuid.uuid4()),
        post_id=str(uuid.uuid4()),
        platform=posts_pb2.PLATFORM_X,
        account_id=str(uuid.uuid4()),
        due_at=due_at,
        revision=1,
        attempt_number=1,
    )
    return event.SerializeToString()


async def publish(url: str, subject: str, data: bytes) -> None:
    client = NatsClient()
    await client.connect(url)
    try:
        await client.jetstream().publish(subject, data)
    finally:
        await client.close()


@pytest.mark.parametrize("name", ["scheduler", "publisher"])
async def test_a_busy_service_stops_within_its_grace(name: str, log_dir: Path) -> None:
    """Its calls to the api hang; the stop still keeps to one grace period, not one per step."""
    fresh = NatsServer()  # the unacked event must not reach other tests' publishers
    fresh.start()
    try:
        async with BlackHole() as api:
            env = {
                **service_env(fresh.url),
                "KAIROS_API_TARGET": f"127.0.0.1:{api.port}",
                "KAIROS_PUBLISHER_PLATFORMS": "x",
            }
            service = ServiceProcess(name, env, log_dir)
            service.start()
            try:
                await service.wait_serving()
                if name == "publisher":
                    await publish(fresh.url, due_subject("x"), due_event_for_x())
                # The scheduler claims, the publisher begins an attempt: a call is in flight.
                await asyncio.wait_for(api.connected.wait(), timeout=20)
                await asyncio.sleep(0.5)
            finally:
                took = stop_within_grace(service, signal.SIGTERM)
        assert took > GRACE_SECONDS - 0.5  # it did wait for the call in flight
    finally:
        fresh.close()


async def test_bad_settings_exit_with_a_message(nats_server: NatsServer, log_dir: Path) -> None:
    service = ServiceProcess("scheduler", service_env(nats_server.url), log_dir)
    service.env["KAIROS_GRACE_SECONDS"] = "soon"
    service.start()
    assert service.process is not None
    assert service.process.wait(timeout=20) == 2
    assert "KAIROS_GRACE_SECONDS='soon' is not a number of seconds" in service.logs()


@pytest.mark.parametrize(
    ("variable", "value"),
    [("KAIROS_GRAPH_API_VERSION", "27.0"), ("KAIROS_LINKEDIN_VERSION", "2026-09")],
)
async def test_a_malformed_platform_api_version_stops_the_publisher(
    nats_server: NatsServer, log_dir: Path, variable: str, value: str
) -> None:
    service = ServiceProcess("publisher", service_env(nats_server.url), log_dir)
    service.env[variable] = value
    service.start()
    assert service.process is not None
    assert service.process.wait(timeout=20) == 2
    assert f"{variable}={value!r} is not a" in service.logs()


async def run_probe(port: int) -> int:
    probe = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kairos_common.healthcheck",
        f"127.0.0.1:{port}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await probe.wait()


async def test_container_healthcheck_command_reports_serving(
    nats_server: NatsServer, log_dir: Path
) -> None:
    service = ServiceProcess("publisher", service_env(nats_server.url), log_dir)
    assert await run_probe(service.port) == 1  # nothing listens yet
    service.start()
    try:
        await service.wait_serving()
        assert await run_probe(service.port) == 0
    finally:
        service.terminate()


# --- bad settings: one line in the service's own log format, exit 2, no traceback ------------


def plain_error(service: str) -> re.Pattern[str]:
    """A line in the services' plain log format, at ERROR, from the runner."""
    return re.compile(
        rf"^\d\d:\d\d:\d\d\.\d{{3}} ERROR   {service} kairos_common\.runner: (?P<message>.+)$"
    )


async def run_until_exit(name: str, env: dict[str, str]) -> tuple[int, str, str]:
    """`python -m kairos_<name>` with `env` and no other KAIROS_* variable, on a free port (or
    the one `env` names); its exit code, stdout and stderr."""
    module, addr_variable = SERVICES[name]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("KAIROS_")}
    environment.update({addr_variable: "127.0.0.1:0", "KAIROS_METRICS_PORT": "0", **env})
    process = await spawn_async(
        [sys.executable, "-m", module],
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


#: What a service needs to get past its settings, so that only the hostile value fails.
DEVELOPMENT_ENV = {
    "KAIROS_ENV": "development",
    "KAIROS_SECRET_KEY": TEST_SECRET,
    "KAIROS_SERVICE_TOKEN": SERVICE_TOKEN,
}
#: Hostile values per service: (environment, the variable its one line must name).
HOSTILE: dict[str, list[tuple[dict[str, str], str]]] = {
    "api": [
        ({"KAIROS_GRACE_SECONDS": "inf"}, "KAIROS_GRACE_SECONDS"),
        ({"KAIROS_PAST_TOLERANCE_SECONDS": "1e999"}, "KAIROS_PAST_TOLERANCE_SECONDS"),
        ({"KAIROS_DATABASE_URL": "mysql://x"}, "KAIROS_DATABASE_URL"),
        ({"KAIROS_DATABASE_URL": "garbage"}, "KAIROS_DATABASE_URL"),
        ({"KAIROS_ENV": "production", "KAIROS_SERVICE_TOKEN": ""}, "KAIROS_SERVICE_TOKEN"),
        ({"KAIROS_ENV": "production", "KAIROS_SERVICE_TOKEN": "dev-service-token"},
         "KAIROS_SERVICE_TOKEN"),
        ({"KAIROS_ENV": "production",
          "KAIROS_SECRET_KEY": "change-me-to-a-random-string-of-32-characters-or-more"},
         "KAIROS_SECRET_KEY"),
        ({"KAIROS_TLS_CERT_FILE": "/nonexistent/server.pem"}, "KAIROS_TLS_CERT_FILE"),
        ({"KAIROS_TLS_CERT_FILE": "/nonexistent/server.pem",
          "KAIROS_TLS_KEY_FILE": "/nonexistent/server.key"}, "KAIROS_TLS_CERT_FILE"),
    ],
    "scheduler": [
        ({"KAIROS_GRACE_SECONDS": "inf"}, "KAIROS_GRACE_SECONDS"),
        ({"KAIROS_UVLOOP": "maybe"}, "KAIROS_UVLOOP"),
        ({"KAIROS_SCHEDULER_TICK_SECONDS": "nan"}, "KAIROS_SCHEDULER_TICK_SECONDS"),
        ({"KAIROS_NATS_URL": "nats://nats:port"}, "KAIROS_NATS_URL"),
        ({"KAIROS_SCHEDULER_BATCH": "99999999999999999999"}, "KAIROS_SCHEDULER_BATCH"),
        ({"KAIROS_ENV": "production", "KAIROS_SERVICE_TOKEN": ""}, "KAIROS_SERVICE_TOKEN"),
        ({"KAIROS_API_CA_FILE": "/nonexistent/ca.pem"}, "KAIROS_API_CA_FILE"),
    ],
    "publisher": [
        ({"KAIROS_GRACE_SECONDS": "inf"}, "KAIROS_GRACE_SECONDS"),
        ({"KAIROS_HOLD_MAX_SECONDS": "1e999"}, "KAIROS_HOLD_MAX_SECONDS"),
        ({"KAIROS_MAX_ACK_PENDING": "99999999999999999999"}, "KAIROS_MAX_ACK_PENDING"),
        ({"KAIROS_ENV": "production", "KAIROS_SERVICE_TOKEN": ""}, "KAIROS_SERVICE_TOKEN"),
        ({"KAIROS_TLS_KEY_FILE": "/nonexistent/server.key"}, "KAIROS_TLS_KEY_FILE"),
        ({"KAIROS_API_CLIENT_CERT_FILE": "/nonexistent/client.pem"},
         "KAIROS_API_CLIENT_CERT_FILE"),
    ],
}  # fmt: skip


@pytest.mark.parametrize("name", ["api", "scheduler", "publisher"])
async def test_a_bad_setting_is_one_line_in_the_service_log_format_and_exit_2(name: str) -> None:
    cases = HOSTILE[name]
    runs = await asyncio.gather(
        *(run_until_exit(name, {**DEVELOPMENT_ENV, **env}) for env, _ in cases)
    )
    for (env, variable), (code, out, err) in zip(cases, runs, strict=True):
        lines = err.splitlines()
        assert (code, out, len(lines)) == (2, "", 1), f"{env}: exit {code}\n{out}{err}"
        line = plain_error(name).match(lines[0])
        assert line, f"{env}: not in the service's log format: {lines[0]!r}"
        assert line["message"].startswith(f"bad configuration: {variable}") or (
            line["message"].startswith("bad configuration: ") and variable in line["message"]
        ), f"{env}: {lines[0]!r}"


async def test_a_bad_setting_in_json_logs_is_one_json_line_and_bad_log_settings_plain() -> None:
    (code, _, err), (bad_log_code, _, bad_log) = await asyncio.gather(
        run_until_exit(
            "scheduler",
            {**DEVELOPMENT_ENV, "KAIROS_LOG_FORMAT": "json", "KAIROS_SWEEP_SECONDS": "1e999"},
        ),
        run_until_exit("publisher", {**DEVELOPMENT_ENV, "KAIROS_LOG_FORMAT": "xml"}),
    )
    assert code == 2
    (line,) = err.splitlines()
    entry = json.loads(line)
    assert (entry["level"], entry["service"], entry["logger"]) == (
        "error",
        "scheduler",
        "kairos_common.runner",
    )
    assert entry["msg"] == "bad configuration: KAIROS_SWEEP_SECONDS='1e999' is not a finite " + (
        "number of seconds"
    )
    # The log settings themselves are bad: the line comes in the plain format, the default.
    assert bad_log_code == 2
    (plain,) = bad_log.splitlines()
    matched = plain_error("publisher").match(plain)
    assert matched, plain
    assert matched["message"].startswith("bad configuration: KAIROS_LOG_FORMAT='xml'")


async def test_a_setup_that_cannot_start_is_named_in_one_error_line_without_a_traceback(
    nats_server: NatsServer,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        runs = await asyncio.gather(
            # More stream replicas than this single server can keep.
            run_until_exit(
                "scheduler",
                {
                    **DEVELOPMENT_ENV,
                    "KAIROS_NATS_URL": nats_server.url,
                    "KAIROS_NATS_REPLICAS": "3",
                },
            ),
            # A PostgreSQL server that is not there.
            run_until_exit(
                "api",
                {
                    **DEVELOPMENT_ENV,
                    "KAIROS_DATABASE_URL": f"postgresql://kairos:hunter2@127.0.0.1:{free_port()}/k",
                },
            ),
            # A port another process holds.
            run_until_exit(
                "publisher",
                {
                    **DEVELOPMENT_ENV,
                    "KAIROS_NATS_URL": nats_server.url,
                    "KAIROS_PUBLISHER_ADDR": f"127.0.0.1:{port}",
                },
            ),
        )
    expected = [
        (
            "scheduler",
            "NATS refused the stream KAIROS_DUE with 3 replica(s) (KAIROS_NATS_REPLICAS)",
        ),
        ("api", "cannot open the database KAIROS_DATABASE_URL=postgresql://kairos:***@127.0.0.1:"),
        ("publisher", f"cannot listen on 127.0.0.1:{port} (KAIROS_PUBLISHER_ADDR)"),
    ]
    for (name, named), (code, _, err) in zip(expected, runs, strict=True):
        assert code == 2, err
        assert "Traceback" not in err, err
        assert "hunter2" not in err
        errors = [line for line in err.splitlines() if " ERROR " in line]
        assert len(errors) == 1, err
        matched = plain_error(name).match(errors[0])
        assert matched, errors[0]
        assert matched["message"].startswith(f"cannot start: {named}"), errors[0]


# --- NATS that cannot be reached --------------------------------------------------------------


async def wait_for_log(service: ServiceProcess, text: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in service.logs():
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{service.name} never logged {text!r}\n{service.logs()}")


@pytest.mark.parametrize("name", ["api", "scheduler", "publisher"])
async def test_an_unresolvable_nats_url_is_named_once_and_keeps_health_not_serving(
    name: str, test_database: TestDatabase, log_dir: Path
) -> None:
    nowhere = "nats://no-such-host.invalid:4222"  # .invalid never resolves (RFC 2606)
    service = ServiceProcess(name, service_env(nowhere, test_database.url), log_dir)
    service.start()
    try:
        await wait_until_listening(service)
        await wait_for_log(service, "cannot reach NATS")
        await asyncio.sleep(2.5)  # five more connection attempts, one every 0.5 s
        # The api serves without NATS (events wait in its outbox); the others cannot work.
        wanted = "SERVING" if name == "api" else "NOT_SERVING"
        assert await health_status(service.port) == wanted
    finally:
        stop_within_grace(service, signal.SIGTERM)
    mentions = [line for line in service.logs().splitlines() if "no-such-host" in line]
    assert len(mentions) == 1, "\n".join(mentions)  # once, not once per attempt
    message = json.loads(mentions[0])["msg"]
    assert message.startswith(f"cannot reach NATS at KAIROS_NATS_URL={nowhere} ("), message


@pytest.mark.parametrize("name", ["scheduler", "publisher"])
async def test_health_is_not_serving_while_nats_is_away_and_serving_once_it_is_back(
    name: str, log_dir: Path
) -> None:
    broker = NatsServer()  # stopped and started under the service
    broker.start()
    service = ServiceProcess(name, service_env(broker.url), log_dir)
    try:
        service.start()
        await service.wait_serving()
        broker.stop()
        deadline = time.monotonic() + 15
        status = "SERVING"
        while status != "NOT_SERVING" and time.monotonic() < deadline:
            status = await health_status(service.port)
            await asyncio.sleep(0.05)
        assert status == "NOT_SERVING", service.logs()
        broker.start()  # the same port and storage
        await wait_until_serving(service.port, timeout=20)
        assert service.terminate() == 0, service.logs()
    finally:
        if service.running:
            service.kill()
        broker.close()
