"""The supervisor with small stand-in children: stubborn ones are killed, whatever a child started
goes with it, a child that dies while starting is reported with its last lines, a closed terminal
keeps nothing from stopping, and one Ctrl-C delivered twice is one request."""

from __future__ import annotations

import asyncio
import errno
import io
import os
import signal
import sys
from pathlib import Path

from kairos_dev.banner import READY_LINE
from kairos_dev.config import ChildSpec, DevOptions
from kairos_dev.supervisor import Console, Supervisor
from support.ports import free_port

#: Ignores SIGTERM, starts a grandchild, prints its pid, listens on the port given.
STUBBORN = """
import signal, socket, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
grandchild = subprocess.Popen(["sleep", "60"])
print("grandchild", grandchild.pid, flush=True)
listener = socket.socket()
listener.bind(("127.0.0.1", int(sys.argv[1])))
listener.listen()
while True:
    time.sleep(1)
"""

#: Listens, then once the file named second exists prints 2 MiB (far more than a pipe holds) and
#: creates the file named third: it gets there only if someone keeps reading its output.
CHATTY = """
import pathlib, socket, sys, time
listener = socket.socket()
listener.bind(("127.0.0.1", int(sys.argv[1])))
listener.listen()
go, drained = pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
while not go.exists():
    time.sleep(0.05)
for _ in range(2048):
    print("x" * 1023, flush=True)
drained.touch()
while True:
    time.sleep(1)
"""

CRASHING = """
import sys
print("reading settings", flush=True)
print("bad configuration: KAIROS_GRACE_SECONDS='soon'", flush=True)
sys.exit(2)
"""


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


async def gone_within(pid: int, seconds: float) -> bool:
    """Whether process `pid` is gone (or a zombie) within `seconds`."""
    for _ in range(int(seconds / 0.02)):
        if not alive(pid):
            return True
        await asyncio.sleep(0.02)
    return not alive(pid)


class ClosedTerminal(io.StringIO):
    """Output that works until `close_terminal`, then fails as a terminal that went away does."""

    def __init__(self) -> None:
        super().__init__()
        self.closed_terminal = False

    def close_terminal(self) -> None:
        self.closed_terminal = True

    def write(self, text: str) -> int:
        if self.closed_terminal:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return super().write(text)


def spec(name: str, code: str, port: int, *args: str) -> ChildSpec:
    return ChildSpec(
        name=name,
        argv=(sys.executable, "-c", code, str(port), *args),
        env=dict(os.environ),
        port=port,
        option=f"--{name}-port",
        probe="tcp",
        stage=0,
        about=f"a stand-in {name}",
    )


async def wait_for(out: io.StringIO, text: str, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while text not in out.getvalue():
        assert loop.time() < deadline, out.getvalue()
        await asyncio.sleep(0.05)


async def test_a_child_that_ignores_sigterm_is_killed_with_what_it_started(
    tmp_path: Path,
) -> None:
    out = io.StringIO()
    supervisor = Supervisor(
        DevOptions(tmp_path),
        [spec("stubborn", STUBBORN, free_port())],
        console=Console(["stubborn"], out=out),
        stop_timeout=0.5,
    )
    running = asyncio.create_task(supervisor.run())
    await wait_for(out, READY_LINE)
    grandchild = int(out.getvalue().partition("grandchild ")[2].split()[0])
    child = supervisor.children[0].pid
    assert alive(child)
    assert alive(grandchild)

    supervisor.request_stop()
    assert await asyncio.wait_for(running, 10) == 0
    assert "stubborn did not stop within 0.5 s: killing it" in out.getvalue()
    assert not alive(child)
    # SIGKILL is sent to the group at once, but a busy machine may take a moment to end it.
    assert await gone_within(grandchild, 5.0)
    assert not (tmp_path / "pids.json").exists()
    assert "grandchild" in (tmp_path / "logs" / "stubborn.log").read_text()


async def test_a_child_that_dies_while_starting_is_reported_and_the_rest_stopped(
    tmp_path: Path,
) -> None:
    out = io.StringIO()
    supervisor = Supervisor(
        DevOptions(tmp_path),
        [spec("stubborn", STUBBORN, free_port()), spec("crashing", CRASHING, free_port())],
        console=Console(["stubborn", "crashing"], out=out),
        stop_timeout=0.5,
    )
    assert await asyncio.wait_for(supervisor.run(), 20) == 1
    text = out.getvalue()
    assert "crashing exited unexpectedly (exit code 2); its last lines:" in text
    assert "    bad configuration: KAIROS_GRACE_SECONDS='soon'" in text
    assert "stopped because the crashing failed" in text
    assert READY_LINE not in text
    assert all(not alive(child.pid) for child in supervisor.children)


async def wait_for_file(path: Path, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await asyncio.to_thread(path.exists):
        assert loop.time() < deadline, f"{path} did not appear within {timeout} s"
        await asyncio.sleep(0.05)


async def test_a_closed_terminal_neither_blocks_the_children_nor_keeps_a_signal_from_stopping(
    tmp_path: Path,
) -> None:
    out = ClosedTerminal()
    go, drained = tmp_path / "go", tmp_path / "drained"
    specs = [
        spec("stubborn", STUBBORN, free_port()),
        spec("chatty", CHATTY, free_port(), str(go), str(drained)),
    ]
    supervisor = Supervisor(
        DevOptions(tmp_path / "dev"),
        specs,
        console=Console(["stubborn", "chatty"], out=out),
        stop_timeout=0.5,
    )
    running = asyncio.create_task(supervisor.run())
    await wait_for(out, READY_LINE)
    children = [child.pid for child in supervisor.children]

    out.close_terminal()
    go.touch()
    await wait_for_file(drained)  # its output is still read, so it is not stuck writing
    # What a shell sends its jobs when their terminal closes: the handler writes to the console
    # (which fails) and must still stop everything.
    os.kill(os.getpid(), signal.SIGHUP)
    assert await asyncio.wait_for(running, 20) == 0
    assert supervisor.console.gone
    assert not any(alive(pid) for pid in children)
    assert "x" * 1023 in (tmp_path / "dev" / "logs" / "chatty.log").read_text()


async def stubborn_running(
    tmp_path: Path, out: io.StringIO, *, stop_timeout: float, repeat_window: float
) -> tuple[Supervisor, asyncio.Task[int]]:
    """A supervisor running one child that ignores SIGTERM, once the child is ready."""
    supervisor = Supervisor(
        DevOptions(tmp_path),
        [spec("stubborn", STUBBORN, free_port())],
        console=Console(["stubborn"], out=out),
        stop_timeout=stop_timeout,
        repeat_window=repeat_window,
    )
    running = asyncio.create_task(supervisor.run())
    await wait_for(out, READY_LINE)
    return supervisor, running


async def test_the_same_signal_twice_within_the_window_is_one_request_to_stop(
    tmp_path: Path,
) -> None:
    out = io.StringIO()
    _, running = await stubborn_running(tmp_path, out, stop_timeout=1.0, repeat_window=30)

    os.kill(os.getpid(), signal.SIGINT)  # a Ctrl-C to the group, received directly
    await wait_for(out, "stopping everything")
    os.kill(os.getpid(), signal.SIGINT)  # and again, forwarded by a wrapper
    assert await asyncio.wait_for(running, 20) == 0
    text = out.getvalue()
    assert "killing everything at once" not in text
    assert "stubborn did not stop within 1 s: killing it" in text  # the orderly way


async def test_the_same_signal_after_the_window_kills_at_once(tmp_path: Path) -> None:
    out = io.StringIO()
    supervisor, running = await stubborn_running(tmp_path, out, stop_timeout=60, repeat_window=0.2)
    child = supervisor.children[0].pid

    os.kill(os.getpid(), signal.SIGINT)
    await wait_for(out, "stopping everything")
    await asyncio.sleep(0.5)
    os.kill(os.getpid(), signal.SIGINT)  # a person pressing Ctrl-C again
    assert await asyncio.wait_for(running, 20) == 0  # long before the 60 s stop timeout
    assert "SIGINT again: killing everything at once" in out.getvalue()
    assert not alive(child)
