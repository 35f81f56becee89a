"""The durable consumer's settings follow the publisher's, on a real nats-server."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo

from kairos_common.platforms import Platform
from kairos_common.streams import DUE_STREAM
from kairos_publisher.consumer import (
    PlatformConsumer,
    account_semaphores,
    consumer_config,
    durable_name,
    ensure_consumer,
)
from kairos_publisher.settings import PublisherSettings


def settings(ack_wait: str, max_ack_pending: str, max_deliver: str) -> PublisherSettings:
    return PublisherSettings.from_env(
        {
            "KAIROS_ACK_WAIT_SECONDS": ack_wait,
            "KAIROS_MAX_ACK_PENDING": max_ack_pending,
            "KAIROS_MAX_DELIVER": max_deliver,
        }
    )


async def info(js: JetStreamContext) -> ConsumerInfo:
    found: ConsumerInfo = await js.consumer_info(DUE_STREAM, durable_name(Platform.WEBHOOK))
    return found


async def test_a_publisher_started_with_new_settings_updates_the_consumer_in_place(
    js: JetStreamContext,
) -> None:
    # As an earlier deployment left it.
    await js.add_consumer(DUE_STREAM, consumer_config(settings("30", "100", "5"), Platform.WEBHOOK))
    before = await info(js)
    assert (before.config.ack_wait, before.config.max_ack_pending) == (30.0, 100)
    assert before.config.max_deliver == 5

    changed = settings("7.5", "77", "9")
    # Nothing is due, so the consumer never reaches the api or the platform.
    unused = cast(Any, None)
    consumer = PlatformConsumer(
        Platform.WEBHOOK, unused, changed, js, unused, account_semaphores(1)
    )
    running = asyncio.create_task(consumer.run())
    try:
        for _ in range(200):  # up to 10 s
            if (await info(js)).config.max_deliver == 9:
                break
            await asyncio.sleep(0.05)
    finally:
        await consumer.drain(1.0)
        await asyncio.wait_for(running, timeout=5.0)

    after = await info(js)
    assert (after.config.ack_wait, after.config.max_ack_pending) == (7.5, 77)
    assert after.config.max_deliver == 9
    assert after.created == before.created  # updated, not dropped and made again


async def test_declaring_from_many_copies_at_once_agrees(js: JetStreamContext) -> None:
    config = consumer_config(settings("12", "300", "4"), Platform.WEBHOOK)
    await asyncio.gather(*(ensure_consumer(js, config) for _ in range(5)))
    current = await info(js)
    assert (current.config.ack_wait, current.config.max_deliver) == (12.0, 4)
