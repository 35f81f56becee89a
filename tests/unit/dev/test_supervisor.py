"""The supervisor with small stand-in children: stubborn ones are killed, whatever a child started
goes with it, and a child that dies while starting is reported with its last lines."""

from __future__ import annotations

import asyncio
import io
import os
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


def spec(name: str, code: str, port: int) -> ChildSpec:
    return ChildSpec(
        name=name,
        argv=(sys.executable, "-c", code, str(port)),
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
    assert not alive(grandchild)
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
