"""CPU per message of publishing batches to JetStream and waiting for every acknowledgement:
nats-py's `publish_async` (a future and a parsed PubAck per message) against
`kairos_common.publishing.AckedPublisher` (one reply inbox, answers read as they come).

    .venv/bin/python bench/jetstream_publish_cpu.py [--messages 10000] [--rounds 2]

nats-server runs as its own process, so this process's CPU time is the client's. Each round
publishes `--messages` 200-byte messages with `Nats-Msg-Id`, in batches of 500 as the outbox
relay and the scheduler send them, once each way, and prints one JSON line per way and round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from pathlib import Path

import nats
from nats.aio.client import Client as NatsClient

from kairos_bench.stack import start_nats
from kairos_common.publishing import AckedPublisher, Message

BATCH = 500
PAYLOAD = b"x" * 200


async def with_publish_async(nc: NatsClient, subject: str, count: int) -> None:
    js = nc.jetstream()
    for _ in range(0, count, BATCH):
        futures = [
            await js.publish_async(subject, PAYLOAD, headers={"Nats-Msg-Id": str(uuid.uuid4())})
            for _ in range(BATCH)
        ]
        for future in futures:
            await future


async def with_acked_publisher(nc: NatsClient, subject: str, count: int) -> None:
    publisher = AckedPublisher(nc)
    for _ in range(0, count, BATCH):
        batch = [Message(subject, PAYLOAD, str(uuid.uuid4())) for _ in range(BATCH)]
        stored = await publisher.publish(batch, timeout=5.0)
        assert all(stored), "a message was not stored"


async def main(messages: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="kairos-js-bench-") as folder:
        server, url = start_nats(Path(folder))
        try:
            nc = await nats.connect(url)
            await nc.jetstream().add_stream(name="BENCH", subjects=["bench.>"])
            ways = {"publish_async": with_publish_async, "AckedPublisher": with_acked_publisher}
            for round_ in range(1, rounds + 1):
                for way, publish in ways.items():
                    cpu, wall = time.process_time(), time.perf_counter()
                    await publish(nc, f"bench.{way}", messages)
                    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                    row = {
                        "way": way,
                        "round": round_,
                        "messages": messages,
                        "cpu_us_per_message": round(cpu / messages * 1e6, 1),
                        "per_s": round(messages / wall),
                    }
                    print(json.dumps(row), flush=True)
            await nc.close()
        finally:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.messages, arguments.rounds))
