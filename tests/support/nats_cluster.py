"""Three real `nats-server` processes as one JetStream cluster, and a host of their own for one.

Each node has its own storage (kept across `stop`/`start` and `kill`/`start`, so a node rejoins
with what it had), client, cluster and monitoring ports, and a configuration file. The cluster
is handed out once it has a JetStream meta leader and every node reports itself healthy.

`isolated_host()` makes a network namespace joined to this host by a veth pair, so that a node
started in it (`NatsCluster(hosts=..., namespaces=...)`) can be cut off (`cut()`) and joined again
(`heal()`) rather than killed: a partition. It removes the namespace when the test is done.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats.errors
from nats.js.api import ClusterInfo, ConsumerInfo, StreamInfo

from kairos_common.streams import connect
from support.nats_server import nats_server_binary
from support.ports import free_port_range, wait_for_port
from support.processes import spawn

#: How long a (re)started cluster may take to elect a meta leader and report itself healthy.
READY_TIMEOUT = 30.0


@dataclass
class ClusterNode:
    """One server of the cluster: where it listens and where it keeps its data."""

    name: str
    host: str
    client_port: int
    cluster_port: int
    monitor_port: int
    store: Path
    #: The network namespace it runs in (None: this host's).
    namespace: str | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.client_port}"

    @property
    def route(self) -> str:
        return f"nats-route://{self.host}:{self.cluster_port}"

    @property
    def log(self) -> Path:
        return self.store / "server.log"

    def config(self, peers: Sequence[ClusterNode]) -> str:
        routes = ", ".join(f'"{peer.route}"' for peer in peers)
        return (
            f'server_name: "{self.name}"\n'
            f'listen: "{self.host}:{self.client_port}"\n'
            f'http: "{self.host}:{self.monitor_port}"\n'
            f'jetstream {{ store_dir: "{self.store / "jetstream"}" }}\n'
            f'cluster {{ name: "kairos-tests", listen: "{self.host}:{self.cluster_port}", '
            f"routes: [{routes}] }}\n"
        )

    def monitor(self, path: str) -> dict[str, Any] | None:
        """The monitoring endpoint's JSON at `path`, with its status code as `_status`; None
        while the node does not answer."""
        url = f"http://{self.host}:{self.monitor_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=1.0) as response:
                body: dict[str, Any] = json.loads(response.read())
                body["_status"] = response.status
                return body
        except urllib.error.HTTPError as error:
            return {"_status": error.code}
        except (OSError, ValueError):
            return None


def _leader(cluster: ClusterInfo | None) -> str:
    return cluster.leader if cluster is not None and cluster.leader else ""


class NatsCluster:
    """Three nats-server processes with JetStream, routed to each other as one cluster.

    `hosts` are the addresses the nodes listen on (127.0.0.1 unless a node runs in a network
    namespace, whose address the others must reach); `namespaces` the network namespace each
    runs in (None: this host's).
    """

    def __init__(
        self,
        size: int = 3,
        *,
        hosts: Sequence[str] | None = None,
        namespaces: Sequence[str | None] | None = None,
    ) -> None:
        hosts = list(hosts or ["127.0.0.1"] * size)
        namespaces = list(namespaces or [None] * size)
        assert len(hosts) == len(namespaces) == size
        first = free_port_range(3 * size)
        self.root = Path(tempfile.mkdtemp(prefix="kairos-nats-cluster-"))
        self.nodes = [
            ClusterNode(
                name=f"n{index + 1}",
                host=hosts[index],
                client_port=first + 3 * index,
                cluster_port=first + 3 * index + 1,
                monitor_port=first + 3 * index + 2,
                store=self.root / f"n{index + 1}",
                namespace=namespaces[index],
            )
            for index in range(size)
        ]

    @property
    def size(self) -> int:
        return len(self.nodes)

    @property
    def url(self) -> str:
        """Every node's client URL, comma-separated, as KAIROS_NATS_URL takes them."""
        return ",".join(node.url for node in self.nodes)

    def running(self) -> list[ClusterNode]:
        return [node for node in self.nodes if node.process is not None]

    def start_all(self) -> None:
        """Start every node, then wait until the cluster is ready."""
        for index in range(self.size):
            self._launch(index)
        self.wait_ready()

    def start(self, index: int) -> None:
        """Start node `index` again on its storage; it rejoins the cluster."""
        self._launch(index)
        self.wait_ready()

    def _launch(self, index: int) -> None:
        node = self.nodes[index]
        if node.process is not None:
            return
        node.store.mkdir(parents=True, exist_ok=True)
        config_file = node.store / "server.conf"
        config_file.write_text(node.config([peer for peer in self.nodes if peer is not node]))
        command = [nats_server_binary(), "-c", str(config_file), "-l", str(node.log)]
        if node.namespace is not None:
            # `ip netns exec` execs the server, so the process is the server itself.
            command = ["ip", "netns", "exec", node.namespace, *command]
        node.process = spawn(command, stdout=subprocess.DEVNULL)
        if not wait_for_port(node.client_port, timeout=10, host=node.host):
            self.kill(index)
            raise RuntimeError(f"nats-server {node.name} did not listen; see {node.log}")

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait until a running node names a meta leader and every running node is healthy
        (JetStream current with the leader)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.meta_leader() and all(
                (node.monitor("/healthz") or {}).get("_status") == 200 for node in self.running()
            ):
                return
            time.sleep(0.1)
        logs = "\n".join(f"{n.name}: {n.log}" for n in self.nodes)
        raise RuntimeError(f"the NATS cluster did not become ready in {timeout} s; logs:\n{logs}")

    def meta_leader(self) -> str:
        """The JetStream meta leader's name as a running node sees it ("" while none)."""
        for node in self.running():
            jsz = node.monitor("/jsz") or {}
            leader = (jsz.get("meta_cluster") or {}).get("leader", "")
            if leader:
                return str(leader)
        return ""

    def index_of(self, name: str) -> int:
        return next(i for i, node in enumerate(self.nodes) if node.name == name)

    def kill(self, index: int) -> None:
        """SIGKILL node `index`: no goodbye to its peers or clients."""
        node = self.nodes[index]
        if node.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            node.process.send_signal(signal.SIGKILL)
        node.process.wait()
        node.process = None

    async def describe(
        self, stream: str, patience: float = 10.0
    ) -> tuple[StreamInfo, list[ConsumerInfo]]:
        """What JetStream reports of `stream` and its consumers (configuration, leaders).

        Listing consumers times out now and then while their leaders are being elected or
        created: it is asked again for up to `patience` seconds."""
        client = await connect(self.url, name="kairos-tests-describe")
        deadline = time.monotonic() + patience
        try:
            js = client.jetstream(timeout=2.0)
            while True:
                try:
                    return await js.stream_info(stream), await js.consumers_info(stream)
                except nats.errors.TimeoutError:
                    if time.monotonic() >= deadline:
                        raise
        finally:
            await client.close()

    async def leaders(self, stream: str) -> tuple[str, dict[str, str]]:
        """The leader of `stream` and of each of its consumers by name ("" where none is
        elected now)."""
        info, consumers = await self.describe(stream)
        return _leader(info.cluster), {c.name: _leader(c.cluster) for c in consumers}

    async def request(
        self, subject: str, body: dict[str, Any] | None = None, timeout: float = 5.0
    ) -> dict[str, Any]:
        """A JetStream API request (`$JS.API....`) with `body` as JSON; its JSON answer."""
        client = await connect(self.url, name="kairos-tests-js-api")
        try:
            payload = b"" if body is None else json.dumps(body).encode()
            answer = await client.request(subject, payload, timeout=timeout)
            result: dict[str, Any] = json.loads(answer.data)
            return result
        finally:
            await client.close()

    def close(self) -> None:
        for index in range(self.size):
            self.kill(index)
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def nats_cluster(
    *, hosts: Sequence[str] | None = None, namespaces: Sequence[str | None] | None = None
) -> Iterator[NatsCluster]:
    """A ready three-node cluster, closed (every node killed, storage removed) afterwards."""
    cluster = NatsCluster(hosts=hosts, namespaces=namespaces)
    try:
        cluster.start_all()
        yield cluster
    finally:
        cluster.close()


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")


def _free_subnet() -> int:
    """A third octet x such that 10.251.x.0/30 is on no interface of this host yet."""
    taken = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    for _ in range(100):
        octet = random.randrange(1, 255)
        if f"10.251.{octet}." not in taken:
            return octet
    raise RuntimeError("no free 10.251.x.0/30 subnet")


@dataclass
class IsolatedHost:
    """A network namespace that this host reaches over one veth pair: `address` inside it,
    `host_address` on this side."""

    namespace: str
    host_link: str
    address: str
    host_address: str

    def cut(self) -> None:
        """Take this side of the link down: neither side reaches the other, nothing closes."""
        _ip("link", "set", self.host_link, "down")

    def heal(self) -> None:
        _ip("link", "set", self.host_link, "up")


@contextlib.contextmanager
def isolated_host() -> Iterator[IsolatedHost]:
    """A network namespace joined to this host by a veth pair (10.251.x.1 here, 10.251.x.2
    there); removed, with its end of the pair and so the pair, when done."""
    tag = uuid.uuid4().hex[:8]
    namespace = f"kairos-{tag}"
    host_link, inner_link = f"kh{tag}", f"kn{tag}"
    octet = _free_subnet()
    host = IsolatedHost(namespace, host_link, f"10.251.{octet}.2", f"10.251.{octet}.1")
    _ip("netns", "add", namespace)
    try:
        _ip("link", "add", host_link, "type", "veth", "peer", "name", inner_link)
        try:
            _ip("link", "set", inner_link, "netns", namespace)
            _ip("addr", "add", f"{host.host_address}/30", "dev", host_link)
            _ip("link", "set", host_link, "up")
            _ip("-n", namespace, "addr", "add", f"{host.address}/30", "dev", inner_link)
            _ip("-n", namespace, "link", "set", inner_link, "up")
            _ip("-n", namespace, "link", "set", "lo", "up")
            yield host
        finally:
            with contextlib.suppress(RuntimeError):
                _ip("link", "del", host_link)  # gone already if the namespace took it along
    finally:
        _ip("netns", "del", namespace)
