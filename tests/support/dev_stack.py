"""`make dev`'s stack as a test runs it: `python -m kairos_dev` (or `make dev`) on a data folder
and free ports of the test's own, with the environment of someone who has not configured Kairos,
waited for until its banner shows, and stopped so that nothing it started is left running.

The supervisor starts exactly what `make dev` starts; only the data folder and the ports differ.
Used by tests/e2e/test_dev.py and the browser tests (tests/browser).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from kairos_dev.banner import READY_LINE
from kairos_fakes import fake_classes
from support.ports import free_port, free_port_range
from support.processes import spawn, stop_child

ROOT = Path(__file__).resolve().parents[2]
KAIROS = str(Path(sys.executable).parent / "kairos")
#: The children kairos-dev starts (with the platform fakes on).
CHILDREN = {"nats", "sandbox", "fakes", "api", "scheduler", "publisher", "console"}


def user_environment(**extra: str) -> dict[str, str]:
    """The environment of someone who has not configured Kairos: no KAIROS_* at all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAIROS_")}
    return {**env, "COLUMNS": "200", **extra}


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"  # a zombie is gone, waiting to be reaped


def members_of_groups(groups: set[int]) -> list[str]:
    """Live processes in any of these process groups (the children and what they started)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if fields[0] != "Z" and int(fields[2]) in groups:
            found.append(f"{entry.name}: {cmdline}")
    return found


@dataclass
class DevRun:
    """One `python -m kairos_dev` process, its output in a file."""

    process: subprocess.Popen[bytes]
    output: Path
    data_dir: Path

    @classmethod
    def start(
        cls, data_dir: Path, ports: Mapping[str, int], output: Path, *, make: bool = False
    ) -> DevRun:
        """`python -m kairos_dev`, or with `make` `make dev`, in a process group of its own."""
        options = ["--data-dir", str(data_dir), *(f"--{n}-port={p}" for n, p in ports.items())]
        argv = [sys.executable, "-m", "kairos_dev", *options]
        if make:
            argv = ["make", "--no-print-directory", "dev", f"DEV_ARGS={' '.join(options)}"]
        with output.open("wb") as sink:
            process = spawn(
                argv, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, env=user_environment()
            )
        return cls(process, output, data_dir)

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_banner(self, timeout: float = 60.0) -> str:
        """The banner, once everything is ready."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.text()
            if READY_LINE in text and "/posts" in text.partition(READY_LINE)[2]:
                return READY_LINE + text.partition(READY_LINE)[2]
            if self.process.poll() is not None:
                pytest.fail(f"kairos-dev exited {self.process.returncode}:\n{text[-6000:]}")
            time.sleep(0.1)
        pytest.fail(f"no banner within {timeout} s:\n{self.text()[-6000:]}")

    def children(self) -> dict[str, int]:
        recorded = json.loads((self.data_dir / "pids.json").read_text())
        supervisor = recorded["supervisor"]
        assert supervisor == self.process.pid or os.getpgid(supervisor) == self.process.pid
        return {str(c["name"]): int(c["pid"]) for c in recorded["children"]}

    def interrupt(self, timeout: float = 20.0) -> tuple[int, float]:
        """Ctrl-C: the exit code and how long it took."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"kairos-dev still runs {timeout} s after SIGINT:\n{self.text()[-6000:]}")
        return code, time.monotonic() - started

    def interrupt_group(self, timeout: float = 40.0) -> int:
        """SIGINT to the whole process group, as an IDE or CI stops `make dev`; the exit code."""
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"make dev still runs {timeout} s after SIGINT:\n{self.text()[-6000:]}")

    def kill_everything(self) -> None:
        """Clean up after a failed test: the supervisor and every group it started."""
        pids = self.data_dir / "pids.json"
        groups = []
        if pids.exists():
            groups = [int(c["pid"]) for c in json.loads(pids.read_text())["children"]]
        stop_child(self.process, signal.SIGKILL, 10)  # and its group: make's supervisor
        for group in groups:
            if alive(group):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(group, signal.SIGKILL)


def assert_all_gone(children: Mapping[str, int]) -> None:
    left = {name: pid for name, pid in children.items() if alive(pid)}
    assert not left, f"children still running after the supervisor exited: {left}"
    strays = members_of_groups(set(children.values()))
    assert not strays, f"processes left in the children's groups: {strays}"


def dev_ports() -> dict[str, int]:
    """Free ports for every child; the fakes take a run of consecutive ones."""
    names = ("nats", "api", "scheduler", "publisher", "sandbox", "console")
    ports = {name: free_port() for name in names}
    return {
        **ports,
        "fakes": free_port_range(len(fake_classes())),
        "metrics": free_port_range(3),  # api, scheduler, publisher
    }
