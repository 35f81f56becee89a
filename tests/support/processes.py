"""Child processes of the tests: SIGINT at its default action, a process group each, none left.

A test run started with SIGINT ignored (`make test &` in a script: non-interactive shells start
background jobs so) passes the ignore on to every child it starts, because exec keeps ignored
signals ignored; a child that a test then stops with SIGINT, as Ctrl-C would, runs on.
`sigint_default_for_children()` makes this process catch SIGINT with a handler that does nothing
instead: it still ignores Ctrl-C, but exec resets a caught signal to its default action, so its
children start as they would from a terminal. The suite's conftest calls it once at start-up.

`spawn` and `spawn_async` start a child that way, in a process group of its own (a Ctrl-C meant
for the test run does not reach it), and remember it. `stop_child` signals one and then kills
its group, so nothing it started outlives it; `kill_leftovers` ends the groups of those still
running when the session ends. A group is killed only while its leader is a child not yet
reaped, so that its id cannot have been given to a process of someone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import IO, Any

#: The children started here, to end those still running when the session ends.
_children: list[subprocess.Popen[bytes] | asyncio.subprocess.Process] = []


def _ignore(_signum: int, _frame: FrameType | None) -> None:
    """SIGINT is ignored here as before, but caught, so that children get the default."""


def sigint_default_for_children() -> None:
    """From now on, children started by this process get SIGINT's default action."""
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        return  # caught or default already: exec gives children the default
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("call sigint_default_for_children() from the main thread first")
    signal.signal(signal.SIGINT, _ignore)


def spawn(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    stdout: int | IO[Any] | None = None,
    stderr: int | IO[Any] | None = None,
) -> subprocess.Popen[bytes]:
    """Start `argv` with SIGINT at its default action, leading a process group of its own."""
    sigint_default_for_children()
    process = subprocess.Popen(
        list(argv),
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
    )
    _children.append(process)
    return process


async def spawn_async(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
) -> asyncio.subprocess.Process:
    """`spawn` for asyncio: the same child, with asyncio streams."""
    sigint_default_for_children()
    process = await asyncio.create_subprocess_exec(
        *argv,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
    )
    _children.append(process)
    return process


def kill_group(pid: int) -> None:
    """SIGKILL the process group that child `pid` leads: it and whatever it started. Only for a
    child not yet reaped (running, or exited and waiting to be reaped)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _exited_unreaped(process: subprocess.Popen[bytes], timeout: float) -> bool:
    """Whether `process` exits within `timeout` seconds; it is left unreaped, so its pid, and
    the id of its group, stay its own until `wait()`."""
    deadline = time.monotonic() + timeout
    while process.returncode is None:
        try:
            if os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
                return True
        except ChildProcessError:
            return True  # reaped elsewhere
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def stop_child(process: subprocess.Popen[bytes], sig: signal.Signals, timeout: float) -> int:
    """Send `sig` to a spawned child and wait up to `timeout` seconds; its exit code (-9 when it
    had to be killed). Its process group is killed either way: nothing it started stays."""
    if process.returncode is None:
        os.kill(process.pid, sig)  # not send_signal: it would reap an exited child
    _exited_unreaped(process, timeout)
    if process.returncode is None:
        kill_group(process.pid)
    return process.wait()


def kill_leftovers() -> None:
    """Kill the groups of the spawned children still running."""
    for process in _children:
        running = (
            process.poll() is None
            if isinstance(process, subprocess.Popen)
            else process.returncode is None
        )
        if running:
            kill_group(process.pid)
    _children.clear()
