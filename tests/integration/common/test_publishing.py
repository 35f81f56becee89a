"""AckedPublisher against a real nats-server: which messages JetStream stored, in order."""

from __future__ import annotations

import asyncio
import uuid

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import StreamConfig

from kairos_common.publishing import AckedPublisher, Message
from support.nats_server import NatsServer


async def stream_of_our_own(nats_client: NatsClient) -> str:
    """A stream of this test's own; its subject prefix."""
    prefix = f"publishing-{uuid.uuid4().hex[:8]}"
    await nats_client.jetstream().add_stream(
        StreamConfig(name=prefix, subjects=[f"{prefix}.>"], duplicate_window=60)
    )
    return prefix


async def test_every_stored_message_is_reported_stored_and_stored_once(
    nats_client: NatsClient,
) -> None:
    prefix = await stream_of_our_own(nats_client)
    publisher = AckedPublisher(nats_client)
    messages = [Message(f"{prefix}.a", f"m{n}".encode(), f"id-{n}") for n in range(300)]

    first = await publisher.publish(messages, timeout=5)
    again = await publisher.publish(messages[:10], timeout=5)  # answered as duplicates

    assert first == [True] * 300
    assert again == [True] * 10
    info = await nats_client.jetstream().stream_info(prefix)
    assert info.state.messages == 300
    stored = await nats_client.jetstream().get_msg(prefix, 300)
    assert stored.data == b"m299"


async def test_more_headers_go_out_beside_the_message_id(nats_client: NatsClient) -> None:
    prefix = await stream_of_our_own(nats_client)
    publisher = AckedPublisher(nats_client)
    traced = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    messages = [
        Message(f"{prefix}.a", b"traced", "id-1", {"traceparent": traced}),
        Message(f"{prefix}.a", b"plain", "id-2"),
    ]

    assert await publisher.publish(messages, timeout=5) == [True, True]

    js = nats_client.jetstream()
    first, second = await js.get_msg(prefix, 1), await js.get_msg(prefix, 2)
    assert first.headers == {"traceparent": traced, "Nats-Msg-Id": "id-1"}
    assert second.headers == {"Nats-Msg-Id": "id-2"}


async def test_a_message_no_stream_takes_is_reported_not_stored(nats_client: NatsClient) -> None:
    prefix = await stream_of_our_own(nats_client)
    publisher = AckedPublisher(nats_client)
    messages = [
        Message(f"{prefix}.a", b"kept", "kept-1"),
        Message(f"nowhere-{uuid.uuid4().hex[:8]}.a", b"lost", "lost-1"),
        Message(f"{prefix}.b", b"kept", "kept-2"),
    ]

    answers = await asyncio.wait_for(publisher.publish(messages, timeout=5), 2)

    assert answers == [True, False, True]


async def test_overlapping_batches_each_get_their_own_answers(nats_client: NatsClient) -> None:
    prefix = await stream_of_our_own(nats_client)
    publisher = AckedPublisher(nats_client)
    batches = [
        [Message(f"{prefix}.{b}", b"x", f"{b}-{n}") for n in range(50 + b)] for b in range(5)
    ]

    answers = await asyncio.gather(*(publisher.publish(batch, timeout=5) for batch in batches))

    assert [len(a) for a in answers] == [50, 51, 52, 53, 54]
    assert all(all(a) for a in answers)


async def ignore(_message: Msg) -> None:
    return None


async def test_answers_that_do_not_come_in_time_count_as_not_stored() -> None:
    silent = NatsClient()
    server = NatsServer()
    server.start(jetstream=False)
    try:
        await silent.connect(server.url, no_echo=False)
        # Someone else subscribes to the subject and says nothing, so the server has responders
        # and sends no 503: the publisher must give up after its timeout.
        await silent.subscribe("quiet.>", cb=ignore)
        publisher = AckedPublisher(silent)
        answers = await publisher.publish(
            [Message("quiet.a", b"x", "q-1"), Message("quiet.b", b"y", "q-2")], timeout=0.3
        )
        assert answers == [False, False]
    finally:
        await silent.close()
        server.stop()
