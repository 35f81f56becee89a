"""A PostgreSQL primary and its streaming standby, started from the installed binaries.

For failover tests: each cluster runs on a free port in a temporary folder, as the `postgres` OS
user when the tests run as root (initdb refuses root). `stop()` stops both and removes the
folder whatever state they are in.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from support.ports import free_port


def pg_bin() -> Path | None:
    """The newest installed PostgreSQL's bin folder, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


def _as_postgres() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


@dataclass
class Cluster:
    """One data directory and the port its server listens on."""

    data: Path
    port: int

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass
class PrimaryStandby:
    """A primary, a standby streaming from it, and what runs them."""

    bindir: Path
    root: Path
    primary: Cluster
    standby: Cluster
    _running: set[Path] = field(default_factory=set)

    def run(self, *command: str, timeout: float = 60) -> str:
        done = subprocess.run(
            [*_as_postgres(), *command],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stdout}{done.stderr}")
        return done.stdout

    def start(self, cluster: Cluster) -> None:
        self.run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(cluster.data),
            "-l",
            str(cluster.data.parent / f"{cluster.data.name}.log"),
            "-w",
            "-o",
            f"-p {cluster.port} -k {self.root} -c listen_addresses=127.0.0.1",
            "start",
        )
        self._running.add(cluster.data)

    def stop_cluster(self, cluster: Cluster, mode: str = "fast") -> None:
        self.run(str(self.bindir / "pg_ctl"), "-D", str(cluster.data), "-m", mode, "-w", "stop")
        self._running.discard(cluster.data)

    def promote(self) -> None:
        self.run(str(self.bindir / "pg_ctl"), "-D", str(self.standby.data), "-w", "promote")

    def psql(self, cluster: Cluster, sql: str, database: str = "postgres") -> str:
        """The unaligned output of one statement, run on `cluster`."""
        return self.run(
            str(self.bindir / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(cluster.port),
            "-U",
            "postgres",
            "-d",
            database,
            "-Atc",
            sql,
        )

    def url(self, database: str) -> str:
        """The multi-host URL of the pair: whichever is the primary takes the connections."""
        return (
            f"postgresql+psycopg://postgres@/{database}?host={self.primary.host}"
            f"&host={self.standby.host}&target_session_attrs=read-write"
        )

    def stop(self) -> None:
        for data in list(self._running):
            pg_ctl = str(self.bindir / "pg_ctl")
            with contextlib.suppress(subprocess.TimeoutExpired):
                subprocess.run(
                    [*_as_postgres(), pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
                    capture_output=True,
                    timeout=30,
                )
            self._running.discard(data)
        shutil.rmtree(self.root, ignore_errors=True)


def start_primary_standby(bindir: Path) -> PrimaryStandby:
    """initdb a primary, start it, clone a streaming standby with pg_basebackup and start it."""
    root = Path(tempfile.mkdtemp(prefix="kairos-pg-failover-"))
    os.chmod(root, 0o755)
    pair = PrimaryStandby(
        bindir, root, Cluster(root / "primary", free_port()), Cluster(root / "standby", free_port())
    )
    try:
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
        pair.run(
            str(bindir / "initdb"),
            "-D",
            str(pair.primary.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        with (pair.primary.data / "postgresql.conf").open("a") as conf:
            conf.write(
                "wal_level = replica\nmax_wal_senders = 5\nhot_standby = on\nfsync = off\n"
                "wal_sender_timeout = 5s\nwal_receiver_status_interval = 1s\n"
            )
        pair.start(pair.primary)
        pair.run(
            str(bindir / "pg_basebackup"),
            "-D",
            str(pair.standby.data),
            "-R",
            "-X",
            "stream",
            "-h",
            "127.0.0.1",
            "-p",
            str(pair.primary.port),
            "-U",
            "postgres",
        )
        pair.start(pair.standby)
        _wait_streaming(pair)
        # Synchronous from now on: a commit the primary acknowledged is on the standby too, so
        # a crash of the primary loses none (asynchronous replication may lose the last ones).
        pair.psql(pair.primary, "ALTER SYSTEM SET synchronous_standby_names = '*'")
        pair.psql(pair.primary, "SELECT pg_reload_conf()")
    except BaseException:
        pair.stop()
        raise
    return pair


def _wait_streaming(pair: PrimaryStandby, timeout: float = 20) -> None:
    until = time.monotonic() + timeout
    while True:
        out = pair.psql(
            pair.primary, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
        )
        if out.strip() == "1":
            return
        if time.monotonic() > until:
            raise RuntimeError("the standby did not start streaming")
        time.sleep(0.1)
