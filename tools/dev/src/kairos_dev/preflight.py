"""Checks made before anything starts: one supervisor per data folder, nothing left over from an
earlier one, and every port free. Each failure is a `DevError` saying what to do about it."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from kairos_dev.config import HOST, ChildSpec, DevError


def lock_data_dir(data_dir: Path) -> IO[str]:
    """Hold `data_dir/.lock` for as long as the returned file stays open.

    Two supervisors on one folder would share the SQLite file and the NATS store. The lock goes
    with the process, so a supervisor that was killed leaves no stale lock behind.
    """
    handle = (data_dir / ".lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise DevError(
            f"{data_dir} is in use by another kairos-dev (pid {holder}); stop it first, "
            "or give this one its own --data-dir"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def _running(pid: int, argv: Sequence[str]) -> bool:
    """Whether `pid` is alive and still runs `argv` (not a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc here: trust the pid alone
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return cmdline.split(b"\0")[:-1] == [part.encode() for part in argv]


def check_leftovers(pids_path: Path) -> None:
    """Fail when children of an earlier supervisor on this folder still run.

    A supervisor removes its pids file when it stops cleanly; one that was killed (SIGKILL) could
    not stop its children, which would hold the ports and the data.
    """
    try:
        recorded = json.loads(pids_path.read_text())
        children = [(str(c["name"]), int(c["pid"]), list(c["argv"])) for c in recorded["children"]]
    except FileNotFoundError:
        return
    except (ValueError, KeyError, TypeError):
        pids_path.unlink(missing_ok=True)  # unreadable: nothing to go on
        return
    alive = [(name, pid) for name, pid, argv in children if _running(pid, argv)]
    if not alive:
        pids_path.unlink(missing_ok=True)
        return
    listed = ", ".join(f"{name} (pid {pid})" for name, pid in alive)
    pids = " ".join(str(pid) for _, pid in alive)
    raise DevError(
        f"an earlier kairos-dev on {pids_path.parent} did not stop its children, which still run: "
        f"{listed}. Stop them with `kill {pids}`, then start again"
    )


def port_in_use(port: int, host: str = HOST) -> bool:
    """Whether something already listens on `host:port` (or on every address at `port`)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR ignores connections of an earlier run still in TIME_WAIT; a listener (even
        # one with SO_REUSEPORT, as gRPC servers have) still makes bind fail.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            if error.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def check_ports(specs: Sequence[ChildSpec]) -> None:
    """Fail, naming each taken port and the option that moves it, before starting anything."""
    lines = [
        f"port {spec.port} ({spec.name}) is already in use on {HOST}; "
        f"stop what listens there or choose another with {spec.option} PORT"
        for spec in specs
        if port_in_use(spec.port)
    ]
    lines += [
        f"port {spec.metrics_port} ({spec.name} metrics) is already in use on {HOST}; stop "
        "what listens there or choose other ports with --metrics-port PORT (three from PORT)"
        for spec in specs
        if spec.metrics_port and port_in_use(spec.metrics_port)
    ]
    if not lines:
        return
    raise DevError("\n".join(lines))
