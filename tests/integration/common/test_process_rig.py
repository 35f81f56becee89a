"""The rig's child processes: they stop on SIGINT even when the test run ignores SIGINT (as
`make test &` from a script runs), and a child stopped leaves nothing of what it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from support.processes import spawn, stop_child

TESTS = Path(__file__).resolve().parents[2]

#: Runs with SIGINT ignored, as a test run started in the background by a script does; starts a
#: sleeper as children used to be started and one through the rig, and prints both pids.
PARENT = """
import subprocess, sys, time
sys.path.insert(0, sys.argv[1])
from support.processes import spawn

sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
plain = subprocess.Popen(sleeper)
rig = spawn(sleeper)
print(plain.pid, rig.pid, flush=True)
time.sleep(60)
"""


def sigint_ignored(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status").read_text()
    mask = int(status.partition("SigIgn:")[2].split()[0], 16)
    return bool(mask & (1 << (signal.SIGINT - 1)))


def running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"  # a zombie has ended


def ends_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_child_started_by_the_rig_stops_on_sigint_even_when_its_parent_ignores_it() -> None:
    # bash hands SIGINT ignored on through exec, as a non-interactive shell does to `make test &`.
    parent = spawn(
        ["bash", "-c", 'trap \'\' INT; exec "$0" -c "$1" "$2"', sys.executable, PARENT, str(TESTS)],
        stdout=subprocess.PIPE,
    )
    rig = 0
    try:
        assert parent.stdout is not None
        plain, rig = (int(pid) for pid in parent.stdout.readline().split())
        assert sigint_ignored(plain)  # what every test's child got before
        assert not sigint_ignored(rig)

        # SIGINT to all three: the rig's child ends as Ctrl-C would end it; the plain child runs
        # on, and so does the parent, which still ignores SIGINT itself.
        for pid in (parent.pid, plain, rig):
            os.kill(pid, signal.SIGINT)
        assert ends_within(rig, 10)
        assert not ends_within(plain, 0.5)
        assert parent.poll() is None
    finally:
        stop_child(parent, signal.SIGKILL, 10)  # the parent's group: it and the plain sleeper
        if parent.stdout is not None:
            parent.stdout.close()
        if rig and running(rig):  # in a group of its own: a failed test leaves nothing either
            os.kill(rig, signal.SIGKILL)
    assert ends_within(plain, 10)


def test_stopping_a_child_ends_what_it_left_running() -> None:
    # A script whose background job survives the script's SIGINT: non-interactive shells start
    # background jobs with SIGINT ignored.
    script = spawn(["bash", "-c", "sleep 60 & echo $!; wait"], stdout=subprocess.PIPE)
    assert script.stdout is not None
    orphan = int(script.stdout.readline())
    script.stdout.close()
    assert running(orphan)

    code = stop_child(script, signal.SIGINT, timeout=10)

    assert code == -signal.SIGINT
    assert ends_within(orphan, 10), "the script's background job outlived it"
