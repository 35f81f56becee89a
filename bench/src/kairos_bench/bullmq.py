"""The Node baselines: the same posts through bare BullMQ, and through the seeds' design.

`make bench` measures Kairos's lateness and burst drain beside BullMQ's in the same run, so that
the numbers mean something on whatever machine runs them. This module drives the Node.js side
(`bench/bullmq/bench.mjs`): it installs the pinned BullMQ, starts worker processes, enqueues the
posts as delayed jobs and removes the queue afterwards. It does not measure anything itself: the
harness owns the sink, the keys, the due times and the lateness arithmetic.

How BullMQ is set up, and why (a fair, tuned configuration, not a strawman):

- Each post is one delayed job (`delay = due - now`, computed when its chunk is added, with the
  job's `timestamp` taken from the same clock reading, so BullMQ schedules it at exactly its due
  time), added with `addBulk` in chunks of 1,000. Chunks of 250 to 5,000 all added 20,000 jobs in
  1.3-1.6 s here, so the chunk size hardly matters.
- The worker POSTs with `node:http` and a keep-alive `http.Agent` with one socket per job slot,
  so no post pays for a TCP handshake or waits inside the agent. Against the bench sink, Node 20's
  `fetch` (undici, also keep-alive) managed 2,100-3,100 POSTs/s and `node:http` 6,400-14,800/s,
  so `fetch` alone would have capped BullMQ well below what its Redis side can do.
- `attempts: 3` with exponential backoff from 1 s, as a scheduler would retry a flaky platform;
  `removeOnComplete: true` and `removeOnFail: {count: 1000}` so Redis stays small during a run.
  Worker timings (lock duration, stalled check, drain delay) keep BullMQ's defaults.
- 2 worker processes × concurrency 100 (DEFAULT_WORKERS, DEFAULT_CONCURRENCY). On this 2-core
  machine, 20,000 posts due at once drained in about 3.1 s (about 6,400 posts/s; median of the
  runs where nothing else used the CPU) against 3.3-3.6 s for 1×50, 1×100, 1×200, 2×50 and 2×200:
  BullMQ fetches and completes jobs one Lua script at a time, so Redis and the workers' event
  loops are the limit. More slots than round trips in flight only add queueing, and more processes
  than cores fight Redis and the sink for the same two cores.
- Steady load (200/s) arrives 40 ms late at the median and 100 ms at p99, and that is Redis's
  doing: an idle worker waits for the next delayed job with a timed BZPOPMIN, and Redis with its
  default `hz 10` ends such timeouts only every 100 ms. The shared Redis keeps its defaults, as
  most BullMQ deployments do.
- A dedicated key prefix (`kairos-bench`) and a fresh queue name per run, so runs never see each
  other's jobs, and the queue is obliterated afterwards, so the shared Redis is left as it was.

The seeds' design (`SeedsBaseline`, `bench/bullmq/seeds.mjs`) is the design the seeds' documents
describe, built on the same workers: the backend inserts the post row in PostgreSQL and adds a
delayed job with `jobId` = the post's id; the worker reads the row, POSTs it, and marks the row
published. It has the same worker processes, concurrency, job options and HTTP client as bare
BullMQ (`common.mjs` holds what they share), node-postgres with a pool of 10 connections per
worker process (node-postgres's default) and named (prepared) statements, and a database of its
own on the local PostgreSQL (`kairos_bench_seeds_<random>`), created with its table before the
workers start and dropped afterwards. A pool of 10 and one of 20 drained 5,000 posts in the same
time here (5.7 s and 5.9 s, the machine shared); 50 per process exceeds PostgreSQL's default
`max_connections` of 100.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeAlias
from urllib.parse import unquote, urlsplit

import psycopg

from kairos_bench.stack import ADMIN_URL, create_database, drop_database

BULLMQ_FOLDER = Path(__file__).resolve().parents[2] / "bullmq"
"""`bench/bullmq`: package.json, the lock file, bench.mjs, seeds.mjs and their common.mjs."""

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
KEY_PREFIX = "kairos-bench"
"""BullMQ's key prefix for every bench queue (BullMQ's own default is `bull`)."""

DEFAULT_WORKERS = 2
DEFAULT_CONCURRENCY = 100
DEFAULT_ADD_CHUNK = 1000
DEFAULT_POOL = 10
"""node-postgres connections per seeds worker process."""

SEEDS_SCHEMA = """
CREATE TABLE posts (
    id uuid PRIMARY KEY,
    key text NOT NULL,
    content text NOT NULL,
    due_at timestamptz NOT NULL,
    status text NOT NULL DEFAULT 'scheduled',
    published_at timestamptz
)
"""
"""The seeds' post row: what the worker needs to publish, and whether it has been."""

_READY_TIMEOUT = 30.0
_STOP_GRACE = 15.0
_NPM_CI = ["ci", "--no-audit", "--no-fund", "--loglevel=error"]


class BullmqUnavailable(RuntimeError):
    """Node.js, npm or the BullMQ package cannot be used, or a BullMQ process failed."""


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BullmqUnavailable(
            f"`{name}` not found on PATH: the BullMQ baseline needs Node.js 20+ and npm "
            "(install them, or run the bench without the BullMQ baseline)"
        )
    return found


def ensure_installed(folder: Path = BULLMQ_FOLDER) -> str:
    """Install the locked BullMQ into `folder/node_modules` if needed; return its version.

    `npm ci` runs when node_modules is missing or older than package-lock.json, so a changed lock
    file is picked up and an up-to-date install costs nothing.
    """
    _binary("node")
    npm = _binary("npm")
    modules = folder / "node_modules"
    lock = folder / "package-lock.json"
    if not lock.exists():
        raise BullmqUnavailable(f"{lock} is missing")
    if not modules.is_dir() or modules.stat().st_mtime < lock.stat().st_mtime:
        result = subprocess.run(
            [npm, *_NPM_CI], cwd=folder, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise BullmqUnavailable(
                f"`npm ci` failed in {folder} (exit {result.returncode}): "
                f"{(result.stderr or result.stdout).strip()}"
            )
    return installed_version("bullmq", folder)


def installed_version(package: str, folder: Path = BULLMQ_FOLDER) -> str:
    """The version of `package` installed in `folder/node_modules`."""
    manifest = folder / "node_modules" / package / "package.json"
    try:
        version = json.loads(manifest.read_text())["version"]
    except (OSError, ValueError, KeyError) as error:
        raise BullmqUnavailable(f"cannot read the version of {package}: {manifest}") from error
    return str(version)


def node_version() -> str:
    """The version of the `node` on PATH, without the leading `v`."""
    result = subprocess.run(
        [_binary("node"), "--version"], capture_output=True, text=True, check=True
    )
    return result.stdout.strip().removeprefix("v")


# ---------------------------------------------------------------------------------------------
# A few Redis commands over a raw socket: enough to report the server's version and to check
# that a queue left no keys behind, without a Redis client dependency.

_Reply: TypeAlias = "str | int | list[_Reply] | None"


class _RedisConnection:
    def __init__(self, url: str, timeout: float = 5.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "redis":
            raise ValueError(f"only redis:// URLs are supported, not {url!r}")
        self._socket = socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or 6379), timeout=timeout
        )
        self._reader = self._socket.makefile("rb")
        try:
            if parts.password is not None:
                credentials = [unquote(parts.password)]
                if parts.username:
                    credentials.insert(0, unquote(parts.username))
                self.call("AUTH", *credentials)
            if parts.path.strip("/"):
                self.call("SELECT", parts.path.strip("/"))
        except BaseException:
            self.close()
            raise

    def call(self, *args: str) -> _Reply:
        encoded = [arg.encode() for arg in args]
        request = b"*%d\r\n" % len(encoded) + b"".join(
            b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in encoded
        )
        self._socket.sendall(request)
        return self._read()

    def _read(self) -> _Reply:
        line = self._reader.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("Redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(f"Redis: {rest.decode()}")
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            return self._reader.read(size + 2)[:-2].decode()
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self._read() for _ in range(count)]
        raise RuntimeError(f"unexpected Redis reply {line!r}")

    def close(self) -> None:
        self._reader.close()
        self._socket.close()


def redis_info(url: str = DEFAULT_REDIS_URL) -> dict[str, str]:
    """The server section of INFO from the Redis at `url` (`redis_version`, `process_id`...)."""
    connection = _RedisConnection(url)
    try:
        info = connection.call("INFO", "server")
    finally:
        connection.close()
    fields = (line.partition(":") for line in str(info).splitlines() if ":" in line)
    return {name: value.strip() for name, _, value in fields}


def redis_keys(url: str, pattern: str) -> list[str]:
    """Every key matching `pattern` (SCAN, so a busy shared Redis is not blocked)."""
    connection = _RedisConnection(url)
    keys: list[str] = []
    try:
        cursor = "0"
        while True:
            reply = connection.call("SCAN", cursor, "MATCH", pattern, "COUNT", "1000")
            assert isinstance(reply, list), reply
            next_cursor, batch = reply
            assert isinstance(batch, list), reply
            keys.extend(str(key) for key in batch)
            cursor = str(next_cursor)
            if cursor == "0":
                return keys
    finally:
        connection.close()


# ---------------------------------------------------------------------------------------------


class BullmqBaseline:
    """BullMQ worker processes for one bench run, on a queue of their own.

    `async with` installs BullMQ if needed, starts the workers and waits until each is connected;
    leaving stops them (SIGTERM, then SIGKILL after a grace period) and deletes the queue's keys.
    """

    #: Its key in the results and its name in the report.
    key = "bullmq"
    label = "BullMQ"
    #: The Node script, in `folder`, that enqueues and works.
    script = "bench.mjs"

    def __init__(
        self,
        *,
        sink_url: str,
        redis_url: str = DEFAULT_REDIS_URL,
        workers: int = DEFAULT_WORKERS,
        concurrency: int = DEFAULT_CONCURRENCY,
        add_chunk: int = DEFAULT_ADD_CHUNK,
        folder: Path = BULLMQ_FOLDER,
        log_dir: Path | None = None,
    ) -> None:
        if workers < 1 or concurrency < 1 or add_chunk < 1:
            raise ValueError("workers, concurrency and add_chunk must be positive")
        self.sink_url = sink_url
        self.redis_url = redis_url
        self.workers = workers
        self.concurrency = concurrency
        self.add_chunk = add_chunk
        self.folder = folder
        self.queue = f"kairos-bench-{secrets.token_hex(6)}"
        self.completed = 0
        """Jobs the workers completed (known once they have stopped)."""
        self.failed = 0
        """Failed attempts, retried or not (known once the workers have stopped)."""
        self._given_log_dir = log_dir
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        self._log_dir = Path()
        self._node = ""
        self._versions: dict[str, str] = {}
        self._processes: list[asyncio.subprocess.Process] = []
        self.redis_pid = 0
        """The Redis server's process id, for its CPU time (known once entered)."""

    @property
    def key_pattern(self) -> str:
        """The Redis key pattern that covers everything this run's queue stores."""
        return f"{KEY_PREFIX}:{self.queue}:*"

    @property
    def pids(self) -> list[int]:
        """Process ids of the running workers, for CPU and memory sampling."""
        return [process.pid for process in self._processes if process.returncode is None]

    @property
    def settings(self) -> dict[str, Any]:
        """How BullMQ was configured, for the report."""
        return {
            **self._versions,
            "workers": self.workers,
            "concurrency": self.concurrency,
            "add": f"addBulk, {self.add_chunk} jobs per call, delayed jobs",
            "attempts": 3,
            "backoff": "exponential from 1 s",
            "remove_on_complete": True,
            "remove_on_fail": 1000,
            "http": "node:http, keep-alive Agent, one socket per job slot",
            "queue": f"{KEY_PREFIX}:{self.queue}",
        }

    async def __aenter__(self) -> Self:
        bullmq = await asyncio.to_thread(ensure_installed, self.folder)
        self._node = _binary("node")
        self._versions = {
            "bullmq": bullmq,
            "node": await asyncio.to_thread(node_version),
        }
        try:
            info = await asyncio.to_thread(redis_info, self.redis_url)
        except OSError as error:
            raise BullmqUnavailable(f"no Redis at {self.redis_url}: {error}") from error
        self._versions["redis"] = info["redis_version"]
        self.redis_pid = int(info["process_id"])
        if self._given_log_dir is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="kairos-bullmq-")
            self._log_dir = Path(self._scratch.name)
        else:
            self._log_dir = self._given_log_dir
            self._log_dir.mkdir(parents=True, exist_ok=True)
        try:
            await self._prepare()
            for index in range(self.workers):
                self._processes.append(await self._spawn_worker(index))
            await asyncio.gather(
                *(self._wait_ready(index, process) for index, process in enumerate(self._processes))
            )
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._close(raise_errors=exc is None)

    async def enqueue(self, jobs: Sequence[tuple[str, int]]) -> float:
        """Add `(key, due_epoch_ns)` posts as delayed jobs; return the seconds it took.

        The delays are computed as each chunk is added, so the posts are due at their given times
        however long enqueueing takes. Keys must not contain tabs or newlines.
        """
        started = time.perf_counter()
        lines = "".join(f"{key}\t{due_ns}\n" for key, due_ns in jobs)
        jobs_file = self._log_dir / f"jobs-{secrets.token_hex(4)}.tsv"
        await asyncio.to_thread(jobs_file.write_text, lines)
        try:
            output = await self._run_node(
                "enqueue",
                *self._node_args("enqueue"),
                "--jobs",
                str(jobs_file),
                "--chunk",
                str(self.add_chunk),
            )
        finally:
            await asyncio.to_thread(jobs_file.unlink, True)
        added = json.loads(output).get("added")
        if added != len(jobs):
            raise BullmqUnavailable(f"the enqueuer added {added} jobs of {len(jobs)}")
        return time.perf_counter() - started

    def _common_args(self) -> list[str]:
        return ["--redis", self.redis_url, "--prefix", KEY_PREFIX, "--queue", self.queue]

    def _node_args(self, command: str) -> list[str]:
        """Options of `command` beyond the common ones (a subclass's own)."""
        return []

    async def _prepare(self) -> None:
        """Whatever must exist before the workers start (a subclass's database)."""

    async def _clean_up(self) -> None:
        """Remove what `_prepare` made; runs even when starting failed."""

    async def _spawn_worker(self, index: int) -> asyncio.subprocess.Process:
        log = self._log_dir / f"worker-{index}.log"
        with log.open("wb") as stderr:
            return await asyncio.create_subprocess_exec(
                self._node,
                self.script,
                "worker",
                *self._common_args(),
                *self._node_args("worker"),
                "--sink",
                self.sink_url,
                "--concurrency",
                str(self.concurrency),
                cwd=self.folder,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
            )

    async def _wait_ready(self, index: int, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), _READY_TIMEOUT)
        except TimeoutError:
            line = b""
        if not line or json.loads(line).get("event") != "ready":
            raise BullmqUnavailable(
                f"BullMQ worker {index} did not get ready: {self._log_tail(index)}"
            )

    def _log_tail(self, index: int) -> str:
        log = self._log_dir / f"worker-{index}.log"
        text = log.read_text(errors="replace").strip() if log.exists() else ""
        return text[-2000:] or "(nothing on stderr)"

    async def _run_node(self, command: str, *args: str) -> str:
        process = await asyncio.create_subprocess_exec(
            self._node,
            self.script,
            command,
            *self._common_args(),
            *args,
            cwd=self.folder,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        stdout, stderr = await process.communicate()
        if process.returncode != 0:
            raise BullmqUnavailable(
                f"`node {self.script} {command}` failed (exit {process.returncode}): "
                f"{stderr.decode(errors='replace').strip()[-2000:]}"
            )
        return stdout.decode().strip().splitlines()[-1]

    async def _stop_worker(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        try:
            # worker.close() lets the jobs in hand finish, then the worker prints its counts.
            rest = await asyncio.wait_for(process.stdout.read(), _STOP_GRACE)
            await asyncio.wait_for(process.wait(), _STOP_GRACE)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            return
        for line in rest.decode(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("event") == "stopped":
                self.completed += int(record["completed"])
                self.failed += int(record["failed"])

    async def _close(self, *, raise_errors: bool = False) -> None:
        await asyncio.gather(*(self._stop_worker(process) for process in self._processes))
        self._processes.clear()
        try:
            if self._node:
                await self._run_node("obliterate")
        except BullmqUnavailable:
            if raise_errors:
                raise
        finally:
            await self._clean_up()
            if self._scratch is not None:
                self._scratch.cleanup()
                self._scratch = None


class SeedsBaseline(BullmqBaseline):
    """The seeds' design: the same BullMQ workers, with each post a row in PostgreSQL.

    `async with` also creates a database of its own with the `posts` table before the workers
    start, and drops it when leaving.
    """

    key = "seeds"
    label = "seeds' design"
    script = "seeds.mjs"

    def __init__(
        self, *, admin_url: str = ADMIN_URL, pool: int = DEFAULT_POOL, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if pool < 1:
            raise ValueError("pool must be positive")
        self.admin_url = admin_url
        self.pool = pool
        self.database = f"kairos_bench_seeds_{secrets.token_hex(4)}"
        base, _, _ = admin_url.rpartition("/")
        self.database_url = f"{base}/{self.database}"
        self._created = False

    @property
    def settings(self) -> dict[str, Any]:
        return {
            **super().settings,
            "pg": installed_version("pg", self.folder),
            "postgres": f"node-postgres, a pool of {self.pool} per worker, prepared statements",
            "per post": "read the row, POST, mark the row published",
        }

    def _node_args(self, command: str) -> list[str]:
        if command == "worker":
            return ["--database", self.database_url, "--pool", str(self.pool)]
        if command == "enqueue":
            return ["--database", self.database_url]
        return []

    async def _prepare(self) -> None:
        await asyncio.to_thread(self._create_database)

    def _create_database(self) -> None:
        create_database(self.database, self.admin_url)
        self._created = True
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            conn.execute(SEEDS_SCHEMA)

    async def _clean_up(self) -> None:
        if self._created:
            await asyncio.to_thread(drop_database, self.database, self.admin_url)
            self._created = False

    def published(self) -> int:
        """Rows marked published so far (while the database exists)."""
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute("SELECT count(*) FROM posts WHERE status = 'published'").fetchone()
        return int(row[0]) if row else 0


#: The Node peers: bare BullMQ and the seeds' design.
PEERS: tuple[type[BullmqBaseline], ...] = (BullmqBaseline, SeedsBaseline)

__all__ = [
    "BULLMQ_FOLDER",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_REDIS_URL",
    "DEFAULT_WORKERS",
    "KEY_PREFIX",
    "PEERS",
    "BullmqBaseline",
    "BullmqUnavailable",
    "SeedsBaseline",
    "ensure_installed",
    "node_version",
    "redis_info",
    "redis_keys",
]
