"""Runs the children: starts them stage by stage, shows their output, watches them, stops them.

Each child runs in its own session (process group), so a Ctrl-C at the terminal reaches only the
supervisor, which then stops the children in reverse start order: SIGTERM to the child's whole
group, up to `stop_timeout` seconds to finish, then SIGKILL. A second Ctrl-C kills at once, unless
it comes within `REPEAT_WINDOW` of the first: one Ctrl-C sent to a whole process group (`kill -INT
-PGID`, an IDE, CI) can arrive twice, once directly and once forwarded by a wrapper such as
`uv run`. A child that exits while it should be running stops everything, with its last lines
shown. A console that goes away (its terminal closed) changes nothing but the output.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Coroutine, Sequence
from itertools import groupby
from pathlib import Path
from typing import IO, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kairos_dev.banner import banner
from kairos_dev.config import ChildSpec, DevOptions

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
TAIL_LINES = 20
#: Seconds after a stop signal during which the same signal again is taken as the same request.
REPEAT_WINDOW = 1.0
SUPERVISOR = "kairos-dev"

#: ANSI colours of the children's names; the supervisor's own is bold.
_COLORS = ("36", "33", "32", "35", "34")


def describe_exit(code: int) -> str:
    """`exit code 1`, or `killed by SIGKILL` for a negative code."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class Console:
    """Output for people: each child's lines prefixed with its name, the supervisor's own too."""

    def __init__(self, names: Sequence[str], out: IO[str] | None = None) -> None:
        self.out = out or sys.stdout
        self.width = max(len(name) for name in [SUPERVISOR, *names])
        colored = self.out.isatty() and "NO_COLOR" not in os.environ
        self.prefixes = {
            name: self._prefix(name, _COLORS[i % len(_COLORS)] if colored else "")
            for i, name in enumerate(names)
        }
        self.prefixes[SUPERVISOR] = self._prefix(SUPERVISOR, "1" if colored else "")
        self.gone = False

    def _prefix(self, name: str, color: str) -> str:
        padded = f"{name:<{self.width}} |"
        return f"\033[{color}m{padded}\033[0m " if color else f"{padded} "

    def line(self, name: str, text: str) -> None:
        self.write(f"{self.prefixes[name]}{text}\n")

    def say(self, text: str) -> None:
        for line in text.splitlines() or [""]:
            self.line(SUPERVISOR, line)

    def write(self, text: str) -> None:
        """Write and flush; once the output is gone, write nothing more."""
        # A reader that went away (`make dev | head`: EPIPE) or a terminal that was closed (EIO)
        # must neither stop the supervisor nor keep it from stopping its children: output is
        # for people, and there is no one left to read it.
        if self.gone:
            return
        try:
            self.out.write(text)
            self.out.flush()
        except BlockingIOError:
            pass  # a full non-blocking output: this text is lost, the next may get through
        except (OSError, ValueError):  # ValueError: the file was closed
            self.gone = True


class Child:
    """One running child process, its output (console, log file, last lines) and its group."""

    def __init__(self, spec: ChildSpec, options: DevOptions, console: Console) -> None:
        self.spec = spec
        self.console = console
        self.log_path = options.log_dir / f"{spec.name}.log"
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.process: asyncio.subprocess.Process | None = None
        self._pump: asyncio.Task[None] | None = None
        self._log: IO[bytes] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self._log.write(f"----- {SUPERVISOR} started {self.name} at {stamp} -----\n".encode())
        self._log.flush()
        self.process = await asyncio.create_subprocess_exec(
            *self.spec.argv,
            env=dict(self.spec.env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            # Its own session: the terminal's Ctrl-C reaches only the supervisor, which stops the
            # children in order; killpg on the group also reaches anything the child started.
            start_new_session=True,
            limit=1 << 20,
        )
        self._pump = asyncio.create_task(self._copy_output(), name=f"{self.name}-output")

    async def _copy_output(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        assert self._log is not None
        stream = self.process.stdout
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line over the limit: the reader drops it
                raw = b"[line too long: left out]\n"
            if not raw:
                return
            self._log.write(raw)
            self._log.flush()
            text = raw.decode(errors="replace").rstrip("\r\n")
            self.tail.append(text)
            self.console.line(self.name, text)

    async def drain(self, timeout: float = 2.0) -> None:
        """Wait (a little) until the output pipe is read to its end."""
        if self._pump is not None:
            await asyncio.wait({self._pump}, timeout=timeout)

    def signal_group(self, sig: signal.Signals) -> None:
        """Send `sig` to the child's process group (it leads it: start_new_session)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    async def stop(self, timeout: float, hurry: asyncio.Event) -> int | None:
        """SIGTERM, up to `timeout` seconds (or until `hurry`), then SIGKILL; the exit code if
        it was running."""
        assert self.process is not None
        code: int | None = None
        if self.running:
            self.signal_group(signal.SIGKILL if hurry.is_set() else signal.SIGTERM)
            exited = asyncio.ensure_future(self.process.wait())
            hurried = asyncio.ensure_future(hurry.wait())
            await asyncio.wait({exited, hurried}, timeout=timeout, return_when="FIRST_COMPLETED")
            hurried.cancel()
            if not exited.done():
                if not hurry.is_set():
                    self.console.say(f"{self.name} did not stop within {timeout:g} s: killing it")
                self.signal_group(signal.SIGKILL)
            code = await exited
        # Whatever it started and left behind in its group goes too.
        self.signal_group(signal.SIGKILL)
        await self.drain()
        self.close()
        return code

    def close(self) -> None:
        if self._pump is not None and not self._pump.done():
            self._pump.cancel()
        if self._log is not None:
            self._log.close()
            self._log = None


async def _tcp_ready(port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def _grpc_serving(channel: grpc.aio.Channel) -> bool:
    try:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=1.0
        )
    except grpc.aio.AioRpcError:
        return False
    serving: bool = reply.status == health_pb2.HealthCheckResponse.SERVING
    return serving


class Supervisor:
    """Starts `specs` in stages, prints the banner, and stops them on a signal or a failure."""

    def __init__(
        self,
        options: DevOptions,
        specs: Sequence[ChildSpec],
        *,
        console: Console | None = None,
        ready_timeout: float = 90.0,
        stop_timeout: float = 10.0,
        repeat_window: float = REPEAT_WINDOW,
    ) -> None:
        self.options = options
        self.specs = list(specs)
        self.console = console or Console([spec.name for spec in specs])
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.repeat_window = repeat_window
        self.children: list[Child] = []
        self._done = asyncio.Event()
        self._hurry = asyncio.Event()
        self._stopping = False
        self._failed: Child | None = None
        self._first_signal: tuple[signal.Signals, float] | None = None
        self._watchers: list[asyncio.Task[None]] = []

    async def run(self) -> int:
        """0 when stopped by a signal or `request_stop`; 1 when a child failed or could not
        start."""
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self._on_signal, sig)
        could_not_start = False
        try:
            if await self._until_done(self._start_all()):
                text = banner(self.options, self.specs, Path(sys.executable).parent)
                self.console.write(f"\n{text}\n")
                await self._done.wait()
        except OSError as error:  # a program that cannot be run, a log that cannot be written
            self.console.say(f"could not start everything: {error}")
            could_not_start = True
        finally:
            await self._stop_all()
            for sig in STOP_SIGNALS:
                loop.remove_signal_handler(sig)
        if self._failed is not None:
            self.console.say(
                f"stopped because the {self._failed.name} failed; "
                f"its whole log: {self._failed.log_path}"
            )
            return 1
        self.console.say("stopped")
        return 1 if could_not_start else 0

    async def _until_done(self, work: Coroutine[Any, Any, None]) -> bool:
        """Run `work` unless a signal or a failure comes first; whether it finished."""
        task = asyncio.create_task(work)
        done = asyncio.create_task(self._done.wait())
        await asyncio.wait({task, done}, return_when="FIRST_COMPLETED")
        done.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return False
        task.result()
        return not self._done.is_set()

    async def _start_all(self) -> None:
        self.options.log_dir.mkdir(parents=True, exist_ok=True)
        for _, group in groupby(self.specs, key=lambda spec: spec.stage):
            stage = [Child(spec, self.options, self.console) for spec in group]
            self.console.say("starting " + ", ".join(child.name for child in stage))
            for child in stage:
                await child.start()
                self.children.append(child)
                self._watchers.append(asyncio.create_task(self._watch(child)))
                self._record_pids()
            await asyncio.gather(*(self._wait_ready(child) for child in stage))

    async def _wait_ready(self, child: Child) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        channel = (
            grpc.aio.insecure_channel(child.spec.address) if child.spec.probe == "grpc" else None
        )

        async def ready() -> bool:
            if channel is not None:
                return await _grpc_serving(channel)
            return await _tcp_ready(child.spec.port)

        try:
            while not await ready():
                if not child.running:
                    return  # its watcher reports it
                if loop.time() - started > self.ready_timeout:
                    await self._fail(
                        child,
                        f"{child.name} did not answer on {child.spec.address} within "
                        f"{self.ready_timeout:.0f} s",
                    )
                    return
                await asyncio.sleep(0.1)
        finally:
            if channel is not None:
                await channel.close(None)
        took = loop.time() - started
        self.console.say(f"{child.name} is ready on {child.spec.address} ({took:.1f} s)")

    async def _watch(self, child: Child) -> None:
        assert child.process is not None
        code = await child.process.wait()
        if not self._stopping:
            await child.drain()
            await self._fail(child, f"{child.name} exited unexpectedly ({describe_exit(code)})")

    async def _fail(self, child: Child, message: str) -> None:
        if self._done.is_set():
            return
        self._failed = child
        self._done.set()
        lines = [f"{message}; its last lines:", *(f"    {line}" for line in child.tail)]
        if not child.tail:
            lines = [f"{message}; it printed nothing"]
        lines.append("stopping the others")
        self.console.say("\n".join(lines))

    def request_stop(self, reason: str = "asked to stop", *, new_line: bool = False) -> None:
        """Stop everything, as SIGINT does; a second request kills at once. `new_line` starts
        the first message on a line of its own (after the ^C a terminal echoed)."""
        # The state changes before anything is printed: stopping must not depend on the output.
        if not self._done.is_set():
            self._done.set()
            if new_line:
                self.console.write("\n")
            self.console.say(
                f"{reason}: stopping everything (again to kill at once): "
                + ", ".join(child.name for child in reversed(self.children))
            )
        elif not self._hurry.is_set():
            self._hurry.set()
            self.console.say(f"{reason} again: killing everything at once")

    def _on_signal(self, sig: signal.Signals) -> None:
        now = time.monotonic()
        first = self._first_signal
        if first is not None and first[0] == sig and now - first[1] < self.repeat_window:
            return  # the same signal delivered twice (group-wide and forwarded): one request
        if first is None:
            self._first_signal = (sig, now)
        self.request_stop(sig.name, new_line=True)

    async def _stop_all(self) -> None:
        self._stopping = True
        for child in reversed(self.children):
            code = await child.stop(self.stop_timeout, self._hurry)
            # 0 is a clean stop, and so is -SIGTERM from a program without a handler (the
            # sandbox); anything else is worth a line.
            if code not in (None, 0, -signal.SIGTERM) and not self._hurry.is_set():
                self.console.say(f"{child.name} stopped with {describe_exit(code)}")
        for watcher in self._watchers:
            watcher.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        self.options.pids_path.unlink(missing_ok=True)

    def _record_pids(self) -> None:
        """Write pids.json: which processes this supervisor started, for people and the next
        start (which refuses to run beside leftovers of a supervisor that was killed)."""
        record = {
            "supervisor": os.getpid(),
            "children": [
                {"name": child.name, "pid": child.pid, "argv": list(child.spec.argv)}
                for child in self.children
            ],
        }
        temporary = self.options.pids_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(record, indent=1) + "\n")
        os.replace(temporary, self.options.pids_path)
