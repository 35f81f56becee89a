"""The three JetStream streams on a real nats-server: declared, idempotent, repaired."""

from __future__ import annotations

import asyncio
import logging

import pytest
from nats.aio.client import Client as NatsClient
from nats.js.api import RetentionPolicy, StreamConfig

from kairos_common.deadline import Deadline
from kairos_common.settings import CannotStart
from kairos_common.streams import (
    DEAD_STREAM,
    DUE_STREAM,
    EVENTS_STREAM,
    StreamLayout,
    connect,
    drain_and_close,
    due_subject,
    ensure_streams,
)
from support.nats_server import NatsServer


async def test_streams_are_declared_with_their_subjects(nats_client: NatsClient) -> None:
    js = nats_client.jetstream()
    await ensure_streams(js)
    due = await js.stream_info(DUE_STREAM)
    events = await js.stream_info(EVENTS_STREAM)
    dead = await js.stream_info(DEAD_STREAM)
    assert due.config.subjects == ["kairos.due.>"]
    assert due.config.retention == RetentionPolicy.WORK_QUEUE
    assert due.config.duplicate_window == StreamLayout().due_duplicate_window.total_seconds()
    assert events.config.subjects == ["kairos.events.>"]
    assert dead.config.subjects == ["kairos.dead.>"]


async def test_declaring_again_and_concurrently_is_harmless(nats_client: NatsClient) -> None:
    js = nats_client.jetstream()
    await ensure_streams(js)
    ack = await js.publish(due_subject("sandbox"), b"kept", headers={"Nats-Msg-Id": "keep-me-1"})
    await asyncio.gather(*(ensure_streams(js) for _ in range(4)))
    message = await js.get_msg(DUE_STREAM, ack.seq)
    assert message.data == b"kept"


async def test_a_drifted_stream_is_brought_back_to_the_layout(nats_client: NatsClient) -> None:
    js = nats_client.jetstream()
    await ensure_streams(js)
    drifted = StreamConfig(
        name=EVENTS_STREAM, subjects=["kairos.events.>"], duplicate_window=5.0, max_age=60.0
    )
    await js.update_stream(drifted)
    assert (await js.stream_info(EVENTS_STREAM)).config.max_age == 60.0
    await ensure_streams(js)
    info = await js.stream_info(EVENTS_STREAM)
    assert info.config.max_age == StreamLayout().events_max_age.total_seconds()


async def test_streams_are_declared_once_jetstream_answers_after_a_restart(
    fresh_nats: NatsServer,
) -> None:
    """A service starting while NATS restarts meets a server without JetStream for a moment: it
    keeps asking instead of giving up (the scheduler of the chaos test once exited so)."""
    fresh_nats.restart(jetstream=False)
    client = await connect(fresh_nats.url, name="kairos-tests-js-later")
    try:
        declaring = asyncio.create_task(ensure_streams(client.jetstream(), patience=30.0))
        await asyncio.sleep(1.5)
        assert not declaring.done()  # still asking, not failed
        fresh_nats.restart()
        await asyncio.wait_for(declaring, timeout=20)
        info = await client.jetstream().stream_info(DUE_STREAM)
        assert info.config.subjects == ["kairos.due.>"]
    finally:
        await client.close()


async def test_no_jetstream_past_the_patience_is_a_setup_error(fresh_nats: NatsServer) -> None:
    fresh_nats.restart(jetstream=False)
    client = await connect(fresh_nats.url, name="kairos-tests-no-js")
    try:
        with pytest.raises(CannotStart, match="JetStream enabled"):
            await ensure_streams(client.jetstream(), patience=1.0)
    finally:
        await client.close()


async def test_dedup_drops_a_republished_delivery(nats_client: NatsClient) -> None:
    js = nats_client.jetstream()
    await ensure_streams(js)
    first = await js.publish(due_subject("x"), b"1", headers={"Nats-Msg-Id": "delivery-dup-1"})
    again = await js.publish(due_subject("x"), b"1", headers={"Nats-Msg-Id": "delivery-dup-1"})
    assert again.duplicate is True
    assert again.seq == first.seq


async def test_a_clean_close_is_not_reported_as_a_lost_connection(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    for closing in ("drain", "close"):
        client = await connect(nats_server.url, name=f"kairos-tests-{closing}")
        with caplog.at_level(logging.INFO, logger="kairos_common.streams"):
            caplog.clear()
            if closing == "drain":
                await drain_and_close(client, Deadline(5.0))
            else:
                await client.close()
        messages = [(r.levelno, r.getMessage()) for r in caplog.records]
        assert (logging.INFO, "NATS connection closed") in messages, closing
        assert not any(level >= logging.WARNING for level, _ in messages), messages


@pytest.mark.parametrize("noticed", [True, False], ids=["reconnecting", "not-yet-noticed"])
async def test_closing_while_nats_is_away_does_not_raise(
    fresh_nats: NatsServer, noticed: bool
) -> None:
    """A service stopped while NATS is down closes its connection quietly, whether or not the
    client has noticed yet: the reset socket cannot take what is buffered, and a stop must not
    fail on it."""
    client = await connect(fresh_nats.url, name="kairos-tests-close-away")
    await client.publish("kairos.tests.buffered", b"x")
    await client.flush()
    fresh_nats.stop()
    if noticed:
        for _ in range(50):
            if client.is_reconnecting:
                break
            await asyncio.sleep(0.1)
        assert client.is_reconnecting
    await client.publish("kairos.tests.buffered", b"x" * 100_000)
    await drain_and_close(client, Deadline(2.0))
    assert client.is_closed
