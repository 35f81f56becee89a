"""CPU per post of the publisher alone: a real PublisherService in this process, everything else
outside it.

    .venv/bin/python bench/publisher_cpu.py [--posts 5000] [--runs 1]

nats-server, the benchmark's HTTP sink and a fake DispatchService (BeginAttempts answers every
delivery with a webhook account pointing at the sink; CompleteAttempts acks) run as separate
processes, so this process's CPU time (`time.process_time()`, every thread) is the publisher's.
The publisher starts on an empty stream; a feeder process then publishes `--posts` due events,
due at once, and the clock stops when the last is published and reported. Prints one JSON line
per run: posts, wall seconds, CPU µs per post, and the event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kairos_bench.stack import start_nats
from kairos_common.runner import event_loop_runner

ACCOUNT = str(uuid.uuid4())
TOKEN = "bench-service-token"


def wait_file(path: Path, timeout: float = 20.0) -> str:
    """The text a child writes to `path` once it is ready."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.02)
    raise TimeoutError(f"{path} not written")


async def fake_api(port_file: Path, sink_url: str) -> None:
    """DispatchService as the publisher uses it, answering at once."""
    import grpc

    from kairos.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
    from kairos.posts.v1 import posts_pb2

    template = dispatch_pb2.BeginAttemptResponse(
        ok=True,
        attempt_number=1,
        snapshot=dispatch_pb2.ContentSnapshot(content="a post of ordinary length " * 4),
        credentials=posts_pb2.Credentials(
            extra={"url": f"{sink_url}/hook", "signing_secret": "0123456789abcdef"}
        ),
        account_handle="@bench",
        platform=posts_pb2.PLATFORM_WEBHOOK,
        account_id=ACCOUNT,
    )
    template.due_at.FromDatetime(datetime.now(UTC))

    class Fake(dispatch_pb2_grpc.DispatchServiceServicer):
        async def BeginAttempts(self, request: Any, context: Any) -> Any:  # noqa: N802
            results = []
            for delivery_id in request.delivery_ids:
                one = dispatch_pb2.BeginAttemptResponse()
                one.CopyFrom(template)
                one.attempt_id = delivery_id
                one.target_id = delivery_id
                one.post_id = delivery_id
                one.idempotency_key = delivery_id
                results.append(one)
            return dispatch_pb2.BeginAttemptsResponse(results=results)

        async def CompleteAttempts(self, request: Any, context: Any) -> Any:  # noqa: N802
            return dispatch_pb2.CompleteAttemptsResponse(
                results=[
                    dispatch_pb2.CompletionResult(
                        attempt_id=o.attempt_id, next_step=dispatch_pb2.NEXT_STEP_ACK
                    )
                    for o in request.outcomes
                ]
            )

    server = grpc.aio.server()
    # Only the calls the publisher makes; the others keep the base class's UNIMPLEMENTED.
    fake = Fake()  # type: ignore[abstract]
    dispatch_pb2_grpc.add_DispatchServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    port_file.write_text(f"{port}\n")  # noqa: ASYNC240 - once, at start-up
    await server.wait_for_termination()


async def feed(nats_url: str, posts: int) -> None:
    """Publish `posts` webhook due events, due now."""
    from kairos.events.v1 import events_pb2
    from kairos.posts.v1 import posts_pb2
    from kairos_common.streams import connect, due_subject

    nc = await connect(nats_url, name="bench-feeder")
    js = nc.jetstream()
    now = datetime.now(UTC)
    pending = []
    for _ in range(posts):
        event = events_pb2.DueEvent(
            delivery_id=str(uuid.uuid4()),
            target_id=str(uuid.uuid4()),
            post_id=str(uuid.uuid4()),
            platform=posts_pb2.PLATFORM_WEBHOOK,
            account_id=ACCOUNT,
            revision=1,
            attempt_number=1,
        )
        event.due_at.FromDatetime(now)
        pending.append(
            await js.publish_async(
                due_subject("webhook"),
                event.SerializeToString(),
                headers={"Nats-Msg-Id": event.delivery_id},
            )
        )
        if len(pending) >= 1000:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)
    await nc.close()


async def measure(nats_url: str, api_target: str, posts: int) -> dict[str, Any]:
    """One run: start the publisher, feed it, time it until every post was reported."""
    from kairos_common.metrics import METRICS_OFF
    from kairos_common.settings import ServerSettings
    from kairos_publisher.service import PublisherService
    from kairos_publisher.settings import PublisherSettings

    settings = PublisherSettings.from_env(
        {
            "KAIROS_ENV": "development",
            "KAIROS_NATS_URL": nats_url,
            "KAIROS_API_TARGET": api_target,
            "KAIROS_SERVICE_TOKEN": TOKEN,
            "KAIROS_PUBLISHER_PLATFORMS": "webhook",
            "KAIROS_MEDIA_ALLOWED_NETWORKS": "127.0.0.0/8",
        }
    )
    # The metrics are still counted; only their endpoint is off.
    settings = replace(settings, server=ServerSettings(addr="127.0.0.1:0"), metrics=METRICS_OFF)
    service = PublisherService(settings)
    await service.start()
    await asyncio.sleep(1.0)  # the consumer is declared and fetching
    assert service.publisher is not None
    consumer = service.publisher.consumers[0]
    cpu, wall = time.process_time(), time.perf_counter()
    feeder = subprocess.Popen(  # noqa: ASYNC220 - the clock must include nothing slower
        [sys.executable, __file__, "--feed", str(posts), "--nats", nats_url]
    )
    while consumer.published < posts:  # noqa: ASYNC110 - the consumer has no event for it
        await asyncio.sleep(0.005)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    rpcs = service.publisher.dispatch.calls if service.publisher is not None else 0
    feeder.wait()
    await service.stop()
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    return {
        "posts": posts,
        "wall_s": round(wall, 3),
        "cpu_us_per_post": round(cpu / posts * 1e6, 1),
        "loop": loop,
        "dispatch_calls": rpcs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--posts", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--uvloop", action="store_true", help="run the publisher on uvloop")
    parser.add_argument("--fake-api", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--sink", help=argparse.SUPPRESS)
    parser.add_argument("--feed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--nats", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fake_api:
        asyncio.run(fake_api(args.fake_api, args.sink))
        return
    if args.feed:
        asyncio.run(feed(args.nats, args.feed))
        return

    with tempfile.TemporaryDirectory(prefix="publisher-cpu-") as folder:
        work = Path(folder)
        nats, nats_url = start_nats(work)
        children: list[subprocess.Popen[bytes]] = []
        try:
            sink_file = work / "sink.port"
            children.append(
                subprocess.Popen(
                    [sys.executable, "-m", "kairos_bench.sink", "--ready-file", str(sink_file)],
                    stdout=subprocess.DEVNULL,
                )
            )
            sink_url = f"http://127.0.0.1:{wait_file(sink_file)}"
            api_file = work / "api.port"
            children.append(
                subprocess.Popen(
                    [sys.executable, __file__, "--fake-api", str(api_file), "--sink", sink_url]
                )
            )
            api_target = f"127.0.0.1:{wait_file(api_file)}"
            run = event_loop_runner(args.uvloop)
            for _ in range(args.runs):
                print(json.dumps(run(measure(nats_url, api_target, args.posts))), flush=True)
        finally:
            for child in children:
                child.terminate()
                child.wait()
            nats.stop()


if __name__ == "__main__":
    os.environ.setdefault("KAIROS_LOG_LEVEL", "warning")
    main()
