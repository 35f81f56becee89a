"""`make bench` / `python -m kairos_bench`: every scenario, then the report.

    python -m kairos_bench                 the full run (about twelve minutes)
    python -m kairos_bench --quick         small numbers, about two minutes: the harness's check
    python -m kairos_bench --only burst,api
    python -m kairos_bench --profile       also py-spy the services during the Kairos burst

Scenarios run one after another on one machine, never overlapping: the Kairos stack is stopped
before the peers' workers start (bare BullMQ, then the seeds' design: BullMQ plus PostgreSQL),
and each peer's before the next one's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shlex
import subprocess
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil
import psycopg

from kairos_bench import api as api_scenario
from kairos_bench import probe
from kairos_bench.bullmq import (
    PEERS,
    BullmqBaseline,
    SeedsBaseline,
    node_version,
    redis_info,
)
from kairos_bench.cpu import CpuMeter
from kairos_bench.kairos import collect, create_due_posts
from kairos_bench.load import Call
from kairos_bench.profile import Profiler
from kairos_bench.report import write_report
from kairos_bench.seed import seed_future_posts
from kairos_bench.sink import SinkProcess, measure_capacity
from kairos_bench.stack import ADMIN_URL, Stack, connect_webhook, running_stack
from kairos_bench.stats import percentile, summarize
from kairos_dev.config import nats_server_binary

SCENARIOS = ("burst", "steady", "api", "scale")
RESULTS = Path(__file__).resolve().parents[2] / "results"


@dataclass(frozen=True)
class Plan:
    """The sizes of one run."""

    quick: bool
    burst: int
    steady_rate: int
    steady_seconds: float
    stored: int
    #: Posts stored when GetStats is first measured, to compare with its rate at `stored`.
    stats_small: int
    scale_burst: int
    api_seconds: float
    api_clients: tuple[int, ...]
    sink_requests: int


FULL = Plan(
    quick=False,
    burst=20_000,
    steady_rate=200,
    steady_seconds=30.0,
    stored=1_000_000,
    stats_small=10_000,
    scale_burst=20_000,
    api_seconds=10.0,
    api_clients=(16, 64),
    sink_requests=60_000,
)
QUICK = Plan(
    quick=True,
    burst=400,
    steady_rate=50,
    steady_seconds=3.0,
    stored=20_000,
    stats_small=1_000,
    scale_burst=300,
    api_seconds=1.0,
    api_clients=(16, 64),
    sink_requests=5_000,
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kairos-bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes; seconds, not minutes")
    parser.add_argument(
        "--only", default=",".join(SCENARIOS), help=f"comma-separated subset of {SCENARIOS}"
    )
    parser.add_argument("-n", "--burst", type=int, help="posts in the burst (default 20,000)")
    parser.add_argument("--stored", type=int, help="future posts stored for api/scale")
    parser.add_argument(
        "--no-bullmq", action="store_true", help="skip both Node peers (bare BullMQ, seeds' design)"
    )
    parser.add_argument("--profile", action="store_true", help="py-spy the Kairos burst")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results go")
    args = parser.parse_args(argv)
    unknown = set(args.only.split(",")) - set(SCENARIOS)
    if unknown:
        parser.error(f"--only: unknown scenario(s) {sorted(unknown)}; choose from {SCENARIOS}")
    return args


# --- what ran where -------------------------------------------------------------------------


def _command_version(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "not found"
    return (done.stdout or done.stderr).strip().splitlines()[0] if done.returncode == 0 else "?"


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count() or 0,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
    }


def versions() -> dict[str, str]:
    with psycopg.connect(ADMIN_URL) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    found = {
        "python": platform.python_version(),
        "postgresql": str(row[0]) if row else "?",
        "nats_server": _command_version([nats_server_binary(), "--version"]),
        "kairos": metadata.version("kairos-api"),
        "grpcio": metadata.version("grpcio"),
        "sqlalchemy": metadata.version("sqlalchemy"),
        "nats_py": metadata.version("nats-py"),
    }
    with contextlib.suppress(Exception):
        found["redis"] = redis_info()["redis_version"]
        found["node"] = node_version()
    return found


def public_settings(env: Mapping[str, str]) -> dict[str, str]:
    hidden = ("SECRET", "TOKEN", "DATABASE_URL", "NATS_URL", "TARGET")
    return {k: v for k, v in sorted(env.items()) if not any(h in k for h in hidden)}


# --- measuring helpers ----------------------------------------------------------------------


class RssSampler:
    """Samples a process's resident memory every 100 ms while running."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(psutil.Error):
                self.samples.append(self.process.memory_info().rss / 2**20)
            await asyncio.sleep(0.1)

    def __enter__(self) -> RssSampler:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()

    def summary(self) -> dict[str, float] | None:
        if not self.samples:
            return None
        return {
            "start": round(self.samples[0], 1),
            "peak": round(max(self.samples), 1),
            "end": round(self.samples[-1], 1),
        }


def claim_stats(log: Path, offset: int) -> dict[str, float | None] | None:
    """ClaimDue round trips the scheduler logged (`claimed`, claim_ms) after `offset`."""
    samples: list[float] = []
    with log.open("rb") as handle:
        handle.seek(offset)
        for line in handle:
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if entry.get("msg") == "claimed" and "claim_ms" in entry:
                    samples.append(float(entry["claim_ms"]))
    if not samples:
        return None
    samples.sort()
    return {
        "p50": percentile(samples, 50),
        "p99": percentile(samples, 99),
        "max": samples[-1],
        "samples": len(samples),
    }


def log_size(stack: Stack, name: str) -> int:
    log = stack.processes[name].log
    return log.stat().st_size if log.exists() else 0


class Overran(RuntimeError):
    """Creating the posts took past their due instant: their lateness would include creation."""


# --- scenarios ------------------------------------------------------------------------------


async def kairos_burst(
    stack: Stack, sink: SinkProcess, account: str, n: int, label: str, profiler: Profiler | None
) -> dict[str, Any]:
    """N posts due at one instant, through Kairos; summary, claim latency, publisher memory
    and each process's CPU time per post while they drained."""
    await sink.reset()
    created = await create_due_posts(stack, account, n, lambda first, i: first, label=label)
    due = min(created.expected.values())
    offset = log_size(stack, "scheduler")
    meter = CpuMeter(
        {
            **{name: [stack.pid(name)] for name in ("api", "scheduler", "publisher")},
            "nats-server": [stack.nats_pid],
            "sink": [sink.pid],
            "bench driver": [os.getpid()],
        },
        admin_url=ADMIN_URL,
        database=stack.database,
    )
    with RssSampler(stack.pid("publisher")) as rss:
        async with profiler.around(due) if profiler else contextlib.nullcontext():
            arrivals = await collect(
                sink, created.expected, timeout_s=max(120.0, n / 50), meter=meter
            )
    if created.overran:
        raise Overran(f"{label}: {created.overran:,} of {n:,} posts were created after their due")
    return {
        "summary": summarize(created.expected, arrivals),
        "created_per_s": round(created.per_s, 1),
        "create_errors": created.errors,
        "created_after_due": created.overran,
        "claim_ms": claim_stats(stack.processes["scheduler"].log, offset),
        "publisher_rss_mib": rss.summary(),
        "cpu": meter.profile(n),
    }


async def kairos_steady(
    stack: Stack, sink: SinkProcess, account: str, rate: int, seconds: float
) -> dict[str, Any]:
    await sink.reset()
    total = int(rate * seconds)
    step = int(1e9 / rate)
    created = await create_due_posts(
        stack, account, total, lambda first, i: first + i * step, label="steady"
    )
    arrivals = await collect(sink, created.expected, timeout_s=120)
    return {
        "summary": summarize(created.expected, arrivals),
        "created_per_s": round(created.per_s, 1),
        "create_errors": created.errors,
        "created_after_due": created.overran,
    }


async def peer_run(
    peer: type[BullmqBaseline], sink: SinkProcess, jobs: int, due_at: Any, label: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The same shape of load through a Node peer; (summary part, the peer's settings).

    When every post is due at once, the part has each process's CPU time per post while they
    drained (`cpu`)."""
    await sink.reset()
    async with peer(sink_url=sink.url) as bull:
        enqueue_estimate = 3.0 + jobs / 5_000
        first = time.time_ns() + int(enqueue_estimate * 1e9)
        keys = [f"{peer.script.removesuffix('.mjs')}-{label}-{i}" for i in range(jobs)]
        expected = {key: due_at(first, i) for i, key in enumerate(keys)}
        at_once = len(set(expected.values())) == 1
        meter = None
        if at_once:
            meter = CpuMeter(
                {
                    "Node workers": bull.pids,
                    "redis-server": [bull.redis_pid],
                    "sink": [sink.pid],
                    "bench driver": [os.getpid()],
                },
                admin_url=ADMIN_URL,
                database=bull.database if isinstance(bull, SeedsBaseline) else None,
            )
        took = await bull.enqueue(list(expected.items()))
        if time.time_ns() > first:
            # As for Kairos's creates: lateness must not include the time it took to enqueue.
            raise Overran(f"{peer.script} {label}: enqueueing {jobs:,} jobs ran past the first due")
        arrivals = await collect(sink, expected, timeout_s=max(120.0, jobs / 50), meter=meter)
        settings = bull.settings
    part = {"summary": summarize(expected, arrivals), "enqueue_seconds": round(took, 2)}
    if meter is not None:
        part["cpu"] = meter.profile(jobs)
    return part, settings


async def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = QUICK if args.quick else FULL
    if args.burst:
        plan = replace(plan, burst=args.burst, scale_burst=args.burst)
    if args.stored is not None:
        plan = replace(plan, stored=args.stored)
    only = set(args.only.split(","))
    started = datetime.now(UTC)
    results: dict[str, Any] = {
        "meta": {
            "started_at": started.isoformat(timespec="seconds"),
            "quick": plan.quick,
            "command": "python -m kairos_bench " + shlex.join(sys.argv[1:]),
            "machine": machine(),
            "versions": versions(),
            "settings": {
                "burst_posts": plan.burst,
                "steady": f"{plan.steady_rate}/s for {plan.steady_seconds:g} s",
                "stored_future_posts": plan.stored,
                "api_clients": ", ".join(map(str, plan.api_clients)),
                "api_seconds_per_measurement": plan.api_seconds,
                "create_clients": 32,
            },
        },
        "errors": [],
    }
    logs = args.out / "logs"

    async def attempt(name: str, work: Any) -> None:
        print(f"--- {name}", flush=True)
        began = time.perf_counter()
        try:
            await work
        except Exception as error:
            results["errors"].append(f"{name}: {type(error).__name__}: {error}")
            traceback.print_exc()
        print(f"    {name} took {time.perf_counter() - began:.0f} s", flush=True)

    with SinkProcess() as sink:
        results["sink"] = await measure_capacity(sink, requests=plan.sink_requests, concurrency=64)
        print(f"sink: {results['sink']}", flush=True)

        if only & {"burst", "steady"}:

            async def kairos_side() -> None:
                profiler = Profiler(args.out / "profile") if args.profile else None
                async with running_stack(keep_logs=logs) as stack:
                    results["meta"]["settings"].update(public_settings(stack.env))
                    account = await connect_webhook(stack, sink.url)
                    if profiler:
                        profiler.attach(stack)
                    if "burst" in only:
                        burst = await kairos_burst(
                            stack, sink, account, plan.burst, "burst", profiler
                        )
                        results["burst"] = {"n": plan.burst, "kairos": burst.pop("summary")}
                        results["burst"]["kairos_detail"] = burst
                        if profiler:
                            results["profile"] = profiler.summary()
                    if "steady" in only:
                        steady = await kairos_steady(
                            stack, sink, account, plan.steady_rate, plan.steady_seconds
                        )
                        results["steady"] = {
                            "rate_per_s": plan.steady_rate,
                            "seconds": plan.steady_seconds,
                            "kairos": steady.pop("summary"),
                            "kairos_detail": steady,
                        }

            await attempt("kairos burst and steady", kairos_side())

            for peer in () if args.no_bullmq else PEERS:

                async def peer_side(peer: type[BullmqBaseline] = peer) -> None:
                    name = peer.key
                    if "burst" in results:
                        part, settings = await peer_run(
                            peer, sink, plan.burst, lambda first, i: first, "burst"
                        )
                        results["burst"][name] = part.pop("summary")
                        results["burst"][f"{name}_detail"] = part
                        results["meta"][f"{name}_settings"] = settings
                        for package in ("bullmq", "pg"):
                            if package in settings:
                                results["meta"]["versions"][package] = str(settings[package])
                    if "steady" in results:
                        step = int(1e9 / plan.steady_rate)
                        part, settings = await peer_run(
                            peer,
                            sink,
                            int(plan.steady_rate * plan.steady_seconds),
                            lambda first, i: first + i * step,
                            "steady",
                        )
                        results["steady"][name] = part.pop("summary")
                        results["steady"][f"{name}_detail"] = part

                await attempt(f"{peer.key} burst and steady", peer_side())

        if only & {"api", "scale"}:

            async def api_and_scale() -> None:
                async with running_stack(services=("api",), keep_logs=logs) as stack:
                    account = await connect_webhook(stack, sink.url)
                    seeded, created = 0, 0

                    async def seed(up_to: int) -> None:
                        nonlocal seeded
                        print(f"seeding {up_to - seeded:,} future posts", flush=True)
                        took = await asyncio.to_thread(
                            seed_future_posts,
                            stack.database_url,
                            "bench",
                            account,
                            up_to - seeded,
                            after=seeded,
                        )
                        settings = results["meta"]["settings"]
                        settings["seed_seconds"] = round(settings.get("seed_seconds", 0) + took, 1)
                        seeded = up_to

                    if "api" in only:
                        results["probe"] = await probe_rows(stack, plan)
                        await seed(min(plan.stats_small, plan.stored))
                        results["api"] = await api_rows(stack, account, plan, seeded)
                        created = sum(
                            row["summary"].calls
                            for row in results["api"]
                            if row["rpc"] == "CreatePost"
                        )
                    await seed(plan.stored)
                    if "api" in only:
                        results["api"] += await api_rows(
                            stack, account, plan, seeded + created, reads_only=True
                        )
                    if "scale" in only:
                        await stack.start_service("scheduler")
                        await stack.start_service("publisher")
                        burst = await kairos_burst(
                            stack, sink, account, plan.scale_burst, "scale", None
                        )
                        empty = results.get("burst", {}).get("kairos_detail", {})
                        results["scale"] = {
                            "stored_future_posts": plan.stored,
                            "n": plan.scale_burst,
                            "kairos": burst["summary"],
                            "claim_ms": burst["claim_ms"],
                            "claim_ms_empty": empty.get("claim_ms"),
                            "publisher_rss_mib": burst["publisher_rss_mib"],
                            "publisher_rss_mib_empty": empty.get("publisher_rss_mib"),
                        }

            await attempt("api and scale", api_and_scale())

    results["meta"]["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return results


async def probe_rows(stack: Stack, plan: Plan) -> list[dict[str, Any]]:
    """The empty RPC (`kairos_bench.probe`) with each client count, beside the api."""
    target = await stack.start_service("probe")
    rows = [
        await api_scenario.measure(
            stack,
            "empty RPC",
            probe.empty_call(stack.metadata),
            clients,
            plan.api_seconds,
            0,
            target=target,
        )
        for clients in plan.api_clients
    ]
    stack.stop_service("probe")
    _print_rows(rows)
    return rows


async def api_rows(
    stack: Stack, account: str, plan: Plan, stored: int, *, reads_only: bool = False
) -> list[dict[str, Any]]:
    """The api's RPCs with each client count: with `stored` posts, GetStats first, then
    CreatePost, GetPost and ListPosts (with what CreatePost added); only ListPosts and GetStats
    when `reads_only`."""
    rows = []
    seconds = plan.api_seconds

    async def measure(rpc: str, call: Call, clients: int, in_db: int) -> None:
        rows.append(await api_scenario.measure(stack, rpc, call, clients, seconds, in_db))

    for clients in plan.api_clients:
        await measure("GetStats", api_scenario.stats_call(stack), clients, stored)
    if not reads_only:
        for clients in plan.api_clients:
            call = api_scenario.create_call(stack, account, f"c{clients}")
            await measure("CreatePost", call, clients, stored)
        ids = await api_scenario.post_ids(stack, 2_000)
        for clients in plan.api_clients:
            await measure("GetPost", api_scenario.get_call(stack, ids), clients, stored)
    in_db = stored + sum(row["summary"].calls for row in rows if row["rpc"] == "CreatePost")
    for clients in plan.api_clients:
        await measure("ListPosts", api_scenario.list_call(stack), clients, in_db)
    _print_rows(rows)
    return rows


def _print_rows(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        summary = row["summary"]
        print(
            f"    {row['rpc']:<10} {row['clients']:>3} clients {summary.per_s:>8.0f}/s "
            f"p50 {summary.p50_ms:.1f} ms p99 {summary.p99_ms:.1f} ms  errors {row['errors']}",
            flush=True,
        )


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency
        runner = asyncio.run
    results = runner(run(args))
    files = write_report(results, args.out)
    print(Path(files.markdown).read_text())
    print(f"wrote {files.markdown}, {files.json} and {files.plot}")
    if results["errors"]:
        print("scenarios failed:\n  " + "\n  ".join(results["errors"]), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
