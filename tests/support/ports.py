"""Free local ports for servers that must be told their port before they start.

Ports are taken below the kernel's ephemeral range (`net.ipv4.ip_local_port_range`): a port
from that range that was free a moment ago can be taken by any outgoing connection before the
server binds it (CI once lost a `make dev` run so: a fake's port went to a client socket).
Below the range only a server binding it explicitly can take it. Under pytest-xdist each worker
takes its ports from a slice of its own, so two workers never pick the same one.
"""

from __future__ import annotations

import os
import random
import socket
import time
from pathlib import Path

_LOWEST = 10_000
_handed_out: set[int] = set()  # never the same port twice in one test process


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _all_free(first: int, count: int) -> bool:
    sockets: list[socket.socket] = []
    try:
        for port in range(first, first + count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        for sock in sockets:
            sock.close()


def _slice(lowest: int, end: int) -> tuple[int, int]:
    """This test process's share of [lowest, end): all of it, or one xdist worker's part."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ...
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or workers < 2:
        return lowest, end
    size = (end - lowest) // workers
    start = lowest + int(worker[2:]) * size
    return start, start + size


def free_port_range(count: int) -> int:
    """The first of `count` consecutive ports that were all free a moment ago on 127.0.0.1."""
    lowest, end = _slice(_LOWEST, max(_ephemeral_start(), _LOWEST + 1_000 + count))
    for _ in range(500):
        first = random.randrange(lowest, end - count)
        ports = set(range(first, first + count))
        if ports & _handed_out or not _all_free(first, count):
            continue
        _handed_out.update(ports)
        return first
    raise RuntimeError(f"no {count} consecutive free ports found below {end}")


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1."""
    return free_port_range(1)


def wait_for_port(port: int, timeout: float, host: str = "127.0.0.1") -> bool:
    """Whether something accepts connections on `host`:`port` within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False
