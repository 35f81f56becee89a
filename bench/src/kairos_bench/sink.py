"""The platform sink: a fast local HTTP/1.1 server that records when each post arrives.

Run it as its own process so its work never competes with the harness's event loop::

    python -m kairos_bench.sink --host 127.0.0.1 --port 0 --ready-file PATH

It writes the bound port to PATH (atomically) once it listens and prints
`listening on http://HOST:PORT`. Every request outside `/_sink/` is an *arrival*: the sink
records `(idempotency-key header or "", time.time_ns())` when the request has been fully read and
answers `200` with `x-request-id: <sequence>` and `{"id":"<sequence>"}`. Control endpoints on the
same port:

- `GET /_sink/count` → `{"count": N}`
- `GET /_sink/arrivals?from=I` → `text/plain`, one `<key> <arrival_ns>` line per arrival from I on
- `POST /_sink/reset` → forgets every arrival (sequence numbers keep counting) → `{"count": 0}`
- `POST /_sink/delay?ms=X` → later arrivals are answered X ms after they were read

The parser is a plain `asyncio.Protocol` on uvloop: keep-alive, pipelined requests, bodies framed
by `Content-Length`. A chunked body gets `411` and a malformed request `400`; both close that
connection only. `SinkProcess` starts the sink as a subprocess for the harness and
`measure_capacity` shows how much faster than the systems under test the sink itself is.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import httpx
import psutil
import uvloop

#: The longest request head accepted; a longer one is answered `431` and the connection closed.
MAX_HEAD_BYTES = 64 * 1024
#: The largest body accepted; a larger `Content-Length` is answered `413`.
MAX_BODY_BYTES = 16 * 1024 * 1024
#: Requests under this path prefix steer the sink instead of being recorded.
CONTROL_PREFIX = b"/_sink/"

_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    411: b"Length Required",
    413: b"Content Too Large",
    431: b"Request Header Fields Too Large",
}


def response_bytes(
    status: int,
    body: bytes,
    *,
    content_type: bytes = b"application/json",
    extra_headers: bytes = b"",
    close: bool = False,
) -> bytes:
    """One complete HTTP/1.1 response; `extra_headers` are whole `name: value\\r\\n` lines."""
    connection = b"connection: close\r\n" if close else b""
    return b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n%s%s\r\n%s" % (
        status,
        _REASONS[status],
        content_type,
        len(body),
        extra_headers,
        connection,
        body,
    )


def _arrival_response(sequence: int, close: bool) -> bytes:
    if close:
        body = b'{"id":"%d"}' % sequence
        return response_bytes(
            200, body, extra_headers=b"x-request-id: %d\r\n" % sequence, close=True
        )
    # The hot path: one formatting call per recorded request.
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b'x-request-id: %d\r\n\r\n{"id":"%d"}' % (len(b"%d" % sequence) + 9, sequence, sequence)
    )


class Recorder:
    """What the sink has seen, shared by every connection of the process.

    Keys and times live in two parallel lists of bytes and ints: neither is tracked by the
    garbage collector, so a million arrivals cost no collection passes.
    """

    def __init__(self) -> None:
        self.keys: list[bytes] = []
        self.times: list[int] = []
        #: The last `x-request-id` handed out; never reset, so ids stay unique per process.
        self.sequence = 0
        #: How long arrivals wait before being answered, in seconds.
        self.delay_s = 0.0

    def reset(self) -> None:
        """Forget every arrival; sequence numbers keep counting."""
        self.keys.clear()
        self.times.clear()

    def lines(self, start: int) -> bytes:
        """`<key> <arrival_ns>\\n` for every arrival from index `start` on."""
        return b"".join(
            b"%s %d\n" % pair for pair in zip(self.keys[start:], self.times[start:], strict=True)
        )


class _BadRequest(Exception):
    """The request cannot be served; answer `status` and close the connection."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class SinkProtocol(asyncio.Protocol):
    """One client connection: parses pipelined requests and answers them in order."""

    def __init__(self, recorder: Recorder, loop: asyncio.AbstractEventLoop) -> None:
        self.recorder = recorder
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        #: Responses held back by the delay, oldest first: (loop time due, bytes, close after).
        self.held: deque[tuple[float, bytes, bool]] = deque()
        self.timer: asyncio.TimerHandle | None = None
        #: Set once a response that closes the connection has been queued; later bytes are ignored.
        self.finished = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without inheriting from it.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self.finished:
            return
        buffer = self.buffer
        buffer += data
        out: list[bytes] = []
        start = 0
        while not self.finished:
            # Servers should ignore empty lines before a request line (RFC 9112 §2.2).
            while buffer.startswith(b"\r\n", start):
                start += 2
            head_end = buffer.find(b"\r\n\r\n", start)
            if head_end < 0:
                if len(buffer) - start > MAX_HEAD_BYTES:
                    self._fail(out, _BadRequest(431, "request head too large"))
                break
            try:
                method, target, key, length, close = _parse_head(bytes(buffer[start:head_end]))
            except _BadRequest as error:
                self._fail(out, error)
                break
            body_end = head_end + 4 + length
            if len(buffer) < body_end:
                break
            arrived_ns = time.time_ns()
            start = body_end
            if target.startswith(CONTROL_PREFIX):
                self._queue(out, self._control(method, target, close), close, delayed=False)
            else:
                recorder = self.recorder
                recorder.keys.append(key)
                recorder.times.append(arrived_ns)
                recorder.sequence += 1
                self._queue(out, _arrival_response(recorder.sequence, close), close, delayed=True)
            if close:
                self.finished = True
        del buffer[:start]
        self._write(out)

    def _queue(self, out: list[bytes], response: bytes, close: bool, *, delayed: bool) -> None:
        delay = self.recorder.delay_s if delayed else 0.0
        if delay <= 0.0 and not self.held:
            out.append(response)
            return
        # Once anything is held back, later responses queue behind it: HTTP/1.1 answers in order.
        self.held.append((self.loop.time() + delay, response, close))
        if self.timer is None:
            self.timer = self.loop.call_at(self.held[0][0], self._release_held)

    def _release_held(self) -> None:
        self.timer = None
        now = self.loop.time()
        out: list[bytes] = []
        close = False
        while self.held and self.held[0][0] <= now and not close:
            _, response, close = self.held.popleft()
            out.append(response)
        if self.transport is not None and out:
            self.transport.write(b"".join(out))
        if close:
            if self.transport is not None:
                self.transport.close()
        elif self.held:
            self.timer = self.loop.call_at(self.held[0][0], self._release_held)

    def _write(self, out: list[bytes]) -> None:
        if self.transport is None:
            return
        if out:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))
        if self.finished and not self.held:
            self.transport.close()

    def _fail(self, out: list[bytes], error: _BadRequest) -> None:
        body = json.dumps({"error": error.reason}).encode()
        self._queue(out, response_bytes(error.status, body, close=True), True, delayed=False)
        self.finished = True
        self.buffer.clear()

    def _control(self, method: bytes, target: bytes, close: bool) -> bytes:
        recorder = self.recorder
        path, _, query = target.partition(b"?")
        params = _query_params(query)
        if path == b"/_sink/count":
            if method != b"GET":
                return _method_not_allowed(b"GET", close)
            return response_bytes(200, b'{"count": %d}' % len(recorder.keys), close=close)
        if path == b"/_sink/arrivals":
            if method != b"GET":
                return _method_not_allowed(b"GET", close)
            start = params.get(b"from", b"0")
            if not start.isdigit():
                return _error(400, "`from` must be a non-negative integer", close)
            body = recorder.lines(int(start))
            return response_bytes(200, body, content_type=b"text/plain", close=close)
        if path == b"/_sink/reset":
            if method != b"POST":
                return _method_not_allowed(b"POST", close)
            recorder.reset()
            return response_bytes(200, b'{"count": 0}', close=close)
        if path == b"/_sink/delay":
            if method != b"POST":
                return _method_not_allowed(b"POST", close)
            try:
                delay_ms = float(params.get(b"ms", b""))
            except ValueError:
                return _error(400, "`ms` must be a number", close)
            if not 0.0 <= delay_ms <= 3_600_000.0:
                return _error(400, "`ms` must be between 0 and 3600000", close)
            recorder.delay_s = delay_ms / 1000.0
            return response_bytes(200, json.dumps({"delay_ms": delay_ms}).encode(), close=close)
        return _error(404, f"no control endpoint {path.decode(errors='replace')}", close)


def _parse_head(head: bytes) -> tuple[bytes, bytes, bytes, int, bool]:
    """(method, target, idempotency key, body length, close after answering) of a request head."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1.") or not parts[0].isalpha():
        raise _BadRequest(400, "malformed request line")
    method, target, version = parts
    key = b""
    length = -1
    close = version == b"HTTP/1.0"
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise _BadRequest(400, "malformed header line")
        name = name.lower()
        if name == b"idempotency-key":
            key = value.strip()
        elif name == b"content-length":
            digits = value.strip()
            if not digits.isdigit() or (length >= 0 and int(digits) != length):
                raise _BadRequest(400, "invalid content-length")
            length = int(digits)
        elif name == b"transfer-encoding":
            raise _BadRequest(411, "transfer-encoding is not supported: send content-length")
        elif name == b"connection":
            token = value.strip().lower()
            if token == b"close":
                close = True
            elif token == b"keep-alive":
                close = False
    if length > MAX_BODY_BYTES:
        raise _BadRequest(413, f"body larger than {MAX_BODY_BYTES} bytes")
    return method, target, key, max(length, 0), close


def _query_params(query: bytes) -> dict[bytes, bytes]:
    params: dict[bytes, bytes] = {}
    for pair in query.split(b"&"):
        name, _, value = pair.partition(b"=")
        if name:
            params[name] = value
    return params


def _error(status: int, reason: str, close: bool) -> bytes:
    return response_bytes(status, json.dumps({"error": reason}).encode(), close=close)


def _method_not_allowed(allowed: bytes, close: bool) -> bytes:
    body = json.dumps({"error": f"use {allowed.decode()}"}).encode()
    return response_bytes(405, body, extra_headers=b"allow: %s\r\n" % allowed, close=close)


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


async def serve(host: str, port: int, ready_file: Path | None) -> None:
    """Listen until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    recorder = Recorder()
    server = await loop.create_server(
        lambda: SinkProtocol(recorder, loop), host, port, backlog=4096, reuse_address=True
    )
    bound = int(server.sockets[0].getsockname()[1])
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if ready_file is not None:
        _write_atomically(ready_file, f"{bound}\n")
    shown_host = f"[{host}]" if ":" in host else host
    print(f"listening on http://{shown_host}:{bound}", flush=True)
    async with server:
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m kairos_bench.sink`."""
    parser = argparse.ArgumentParser(prog="python -m kairos_bench.sink", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--ready-file", type=Path, help="where to write the bound port")
    parser.add_argument(
        "--measure-capacity",
        type=int,
        metavar="REQUESTS",
        help="instead of serving: start a sink process, drive it, print the result as JSON",
    )
    parser.add_argument("--concurrency", type=int, default=64, help="with --measure-capacity")
    parser.add_argument("--pipeline", type=int, default=1, help="with --measure-capacity")
    args = parser.parse_args(argv)
    if args.measure_capacity:
        capacity = uvloop.run(
            _capacity_main(args.measure_capacity, args.concurrency, args.pipeline)
        )
        print(json.dumps(capacity, indent=2))
        return
    uvloop.run(serve(args.host, args.port, args.ready_file))


#: The TLS context of the driver's clients of the sink, which is plain HTTP (see `_call`).
_UNUSED_TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


class SinkProcess:
    """The sink as a subprocess, with async helpers to read what it recorded.

    Use it as a context manager (`with SinkProcess() as sink:`); `stop()` ends the process.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        path: str = "/hook",
        log_path: Path | None = None,
        start_timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.path = path
        self.log_path = log_path
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._folder: Path | None = None

    @property
    def port(self) -> int:
        """The port the sink listens on (after `start()`)."""
        if self._port is None:
            raise RuntimeError("the sink has not been started")
        return self._port

    @property
    def pid(self) -> int:
        """The sink process's id, for reading its CPU time."""
        if self.process is None:
            raise RuntimeError("the sink has not been started")
        return self.process.pid

    @property
    def base_url(self) -> str:
        """`http://host:port`."""
        shown_host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{shown_host}:{self.port}"

    @property
    def url(self) -> str:
        """Where platforms should POST posts, e.g. `http://127.0.0.1:PORT/hook`."""
        return self.base_url + self.path

    def start(self) -> SinkProcess:
        """Start the process and wait until it listens."""
        if self.process is not None:
            raise RuntimeError("the sink is already running")
        self._folder = Path(tempfile.mkdtemp(prefix="kairos-sink-"))
        ready = self._folder / "port"
        log = self.log_path or self._folder / "sink.log"
        command = [sys.executable, "-m", "kairos_bench.sink", "--host", self.host]
        command += ["--port", str(self.requested_port), "--ready-file", str(ready)]
        with log.open("ab") as output:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + self.start_timeout
        while not ready.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                output_tail = log.read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"the sink did not start:\n{output_tail}")
            time.sleep(0.01)
        self._port = int(ready.read_text())
        return self

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within five seconds. Idempotent."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        elif process is not None:
            process.wait()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def __enter__(self) -> SinkProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    async def _call(
        self, method: str, path: str, params: dict[str, str | int | float] | None = None
    ) -> httpx.Response:
        # The sink speaks plain HTTP, so the client gets a TLS context that is never used: built
        # once, rather than httpx's default, which loads every CA certificate for each client.
        # That cost the driver ~15 ms of CPU per poll (20 polls a second while a burst drains,
        # a quarter of a core taken from the system under test).
        async with httpx.AsyncClient(
            base_url=self.base_url, timeout=30.0, trust_env=False, verify=_UNUSED_TLS
        ) as client:
            response = await client.request(method, path, params=params)
        response.raise_for_status()
        return response

    async def count(self) -> int:
        """How many arrivals the sink holds."""
        response = await self._call("GET", "/_sink/count")
        return int(response.json()["count"])

    async def arrivals(self, start: int = 0) -> list[tuple[str, int]]:
        """(idempotency key, arrival ns since the epoch) for arrivals from index `start` on."""
        response = await self._call("GET", "/_sink/arrivals", {"from": start})
        pairs: list[tuple[str, int]] = []
        for line in response.text.splitlines():
            key, _, arrived_ns = line.rpartition(" ")
            pairs.append((key, int(arrived_ns)))
        return pairs

    async def reset(self) -> None:
        """Forget every arrival."""
        await self._call("POST", "/_sink/reset")

    async def set_delay(self, ms: float) -> None:
        """Answer later arrivals `ms` milliseconds after reading them (a slow platform)."""
        await self._call("POST", "/_sink/delay", {"ms": ms})

    async def wait_for(
        self, count: int, timeout: float, idle: float | None = None, poll: float = 0.05
    ) -> int:
        """Poll until at least `count` arrivals, `timeout` seconds, or `idle` seconds without
        a new arrival (that clock starts at the call and restarts with every new arrival).
        Returns the last count seen."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        last_change = started
        seen = await self.count()
        while seen < count:
            now = loop.time()
            if now - started >= timeout or (idle is not None and now - last_change >= idle):
                break
            await asyncio.sleep(poll)
            current = await self.count()
            if current != seen:
                seen = current
                last_change = loop.time()
        return seen


# --- capacity check -------------------------------------------------------------------------

_LOAD_BODY = (
    b'{"post_id":"%s","target_id":"%s","content":"Capacity check: a post about as long as a '
    b'real one, with a link https://example.com/launch and a few words more to pad it out.",'
    b'"media":[],"reply_to":"","due_at":"2026-01-01T00:00:00Z"}'
)


def _load_request(host: bytes, key: bytes) -> bytes:
    body = _LOAD_BODY % (key, key)
    return (
        b"POST /hook HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\n"
        b"x-kairos-timestamp: 1767225600\r\nidempotency-key: %s\r\ncontent-length: %d\r\n\r\n%s"
        % (host, key, len(body), body)
    )


class _LoadConnection(asyncio.Protocol):
    """A keep-alive client connection that keeps `pipeline` requests in flight."""

    def __init__(self, host: bytes, prefix: bytes, requests: int, pipeline: int) -> None:
        self.host = host
        self.prefix = prefix
        self.requests = requests
        self.pipeline = pipeline
        self.sent = 0
        self.answered = 0
        self.failed = 0
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without inheriting from it.
        self.transport = cast(asyncio.Transport, transport)

    def begin(self) -> None:
        if self.requests == 0:
            self.done.set_result(None)
            return
        self._send(min(self.pipeline, self.requests))

    def _send(self, how_many: int) -> None:
        assert self.transport is not None
        first = self.sent
        self.sent += how_many
        self.transport.write(
            b"".join(
                _load_request(self.host, b"%s-%d" % (self.prefix, number))
                for number in range(first, self.sent)
            )
        )

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        start = 0
        answered = 0
        while True:
            head_end = buffer.find(b"\r\n\r\n", start)
            if head_end < 0:
                break
            head = bytes(buffer[start:head_end]).lower()
            length = _content_length(head)
            if len(buffer) < head_end + 4 + length:
                break
            if not head.startswith(b"http/1.1 200"):
                self.failed += 1
            answered += 1
            start = head_end + 4 + length
        del buffer[:start]
        self.answered += answered
        more = min(answered, self.requests - self.sent)
        if more > 0:
            self._send(more)
        if self.answered >= self.requests and not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError(f"sink closed the connection: {exc}"))


def _content_length(head: bytes) -> int:
    marker = head.find(b"\ncontent-length:")
    if marker < 0:
        return 0
    line_end = head.find(b"\r\n", marker + 1)
    return int(head[marker + 16 : line_end if line_end >= 0 else len(head)])


async def _drive(
    host: str, port: int, requests: int, connections: int, pipeline: int, worker: int
) -> dict[str, int]:
    loop = asyncio.get_running_loop()
    share, extra = divmod(requests, connections)
    clients: list[_LoadConnection] = []
    for index in range(connections):
        count = share + (1 if index < extra else 0)
        prefix = b"capacity-%d-%d" % (worker, index)
        _, client = await loop.create_connection(
            functools.partial(_LoadConnection, host.encode(), prefix, count, pipeline), host, port
        )
        clients.append(client)
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    started_ns = time.time_ns()
    for client in clients:
        client.begin()
    await asyncio.gather(*(client.done for client in clients))
    finished_ns = time.time_ns()
    for client in clients:
        if client.transport is not None:
            client.transport.close()
    return {
        "requests": sum(client.answered for client in clients),
        "failed": sum(client.failed for client in clients),
        "started_ns": started_ns,
        "finished_ns": finished_ns,
    }


def run_load_client(argv: Sequence[str] | None = None) -> None:
    """One client process of `measure_capacity`: connect, print `ready`, wait for a line on
    stdin, send, then print a JSON line with what it did."""
    parser = argparse.ArgumentParser(prog="kairos_bench.sink load client")
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("requests", type=int)
    parser.add_argument("connections", type=int)
    parser.add_argument("pipeline", type=int)
    parser.add_argument("worker", type=int)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    result = uvloop.run(
        _drive(args.host, args.port, args.requests, args.connections, args.pipeline, args.worker)
    )
    print(json.dumps(result), flush=True)


def default_client_processes() -> int:
    """One client process per core not left to the sink, at most four."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def _sink_cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def measure_capacity(
    sink: SinkProcess,
    requests: int,
    concurrency: int,
    *,
    clients: int | None = None,
    pipeline: int = 1,
) -> dict[str, Any]:
    """Drive the sink with POSTs shaped like the real ones, then reset it.

    `concurrency` keep-alive connections are spread over `clients` processes (default
    `default_client_processes()`), each keeping `pipeline` requests in flight. Returns
    `{"requests", "seconds", "per_s", "clients", "sink_cpu_seconds"}` plus `concurrency`,
    `pipeline`, `recorded` (what the sink counted) and `cpu_us_per_request`: the sink's own CPU
    per request, whose inverse is what it could answer on one full core.
    """
    processes = max(1, min(clients or default_client_processes(), concurrency, requests))
    share, extra = divmod(requests, processes)
    conn_share, conn_extra = divmod(concurrency, processes)
    recorded_before = await sink.count()
    workers: list[asyncio.subprocess.Process] = []
    try:
        for worker in range(processes):
            worker_requests = share + (1 if worker < extra else 0)
            connections = max(1, conn_share + (1 if worker < conn_extra else 0))
            workers.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-c",
                    "from kairos_bench.sink import run_load_client; run_load_client()",
                    sink.host,
                    str(sink.port),
                    str(worker_requests),
                    str(connections),
                    str(pipeline),
                    str(worker),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                )
            )
        for process in workers:
            assert process.stdout is not None
            line = await process.stdout.readline()
            if line.strip() != b"ready":
                raise RuntimeError(f"a capacity client did not start: {line!r}")
        sink_process = psutil.Process(sink.pid)
        cpu_before = _sink_cpu_seconds(sink_process)
        for process in workers:
            assert process.stdin is not None
            process.stdin.write(b"go\n")
            await process.stdin.drain()
        reports: list[dict[str, int]] = []
        for process in workers:
            stdout, _ = await process.communicate()
            if process.returncode != 0:
                raise RuntimeError(f"a capacity client failed with exit code {process.returncode}")
            reports.append(json.loads(stdout.decode().strip().splitlines()[-1]))
        cpu_used = _sink_cpu_seconds(sink_process) - cpu_before
    finally:
        for process in workers:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
    recorded = await sink.count() - recorded_before
    await sink.reset()
    answered = sum(report["requests"] for report in reports)
    failed = sum(report["failed"] for report in reports)
    if failed:
        raise RuntimeError(f"the sink refused {failed} capacity-check requests")
    seconds = (
        max(report["finished_ns"] for report in reports)
        - min(report["started_ns"] for report in reports)
    ) / 1e9
    return {
        "requests": answered,
        "seconds": seconds,
        "per_s": answered / seconds if seconds > 0 else 0.0,
        "clients": processes,
        "concurrency": concurrency,
        "pipeline": pipeline,
        "recorded": recorded,
        "sink_cpu_seconds": cpu_used,
        "cpu_us_per_request": cpu_used / answered * 1e6 if answered else 0.0,
    }


async def _capacity_main(requests: int, concurrency: int, pipeline: int) -> dict[str, Any]:
    with SinkProcess() as sink:
        return await measure_capacity(sink, requests, concurrency, pipeline=pipeline)


if __name__ == "__main__":
    main()
