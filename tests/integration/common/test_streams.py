"""The three JetStream streams on a real nats-server: declared, idempotent, repaired."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from nats.aio.client import Client as NatsClient
from nats.js.api import RetentionPolicy, StreamConfig

from kairos_common.deadline import Deadline
from kairos_common.settings import CannotStart
from kairos_common.streams import (
    DEAD_STREAM,
    DUE_STREAM,
    EVENTS_STREAM,
    STALE_AFTER,
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


class StallingProxy:
    """A TCP relay to a nats-server that can stop relaying without closing anything, as a
    network partition does: the client's socket stays open and no answer comes back."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.stalled = False
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"nats://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.stalled:
            self.writers.append(writer)  # accepted, never answered
            return
        upstream_reader, upstream_writer = await asyncio.open_connection(
            "127.0.0.1", self.target_port
        )
        self.writers += [writer, upstream_writer]
        await asyncio.gather(
            self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer)
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            if self.stalled:
                continue  # dropped on the floor
            writer.write(data)
            await writer.drain()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for writer in self.writers:
            writer.close()


async def test_a_server_that_stops_answering_is_left_within_seconds(
    fresh_nats: NatsServer,
) -> None:
    """A server cut off by a partition closes nothing: the connection is given up once it has
    not answered pings for a few seconds (STALE_AFTER), not minutes later, so that the client
    moves to a server of the cluster that can still serve it."""
    proxy = StallingProxy(fresh_nats.port)
    await proxy.start()
    lost = asyncio.Event()

    async def on_change(connected: bool) -> None:
        if not connected:
            lost.set()

    client = await connect(proxy.url, name="kairos-tests-stalled", on_change=on_change)
    try:
        await client.flush()
        proxy.stalled = True
        started = time.monotonic()
        await asyncio.wait_for(lost.wait(), STALE_AFTER + 2.0)
        assert time.monotonic() - started <= STALE_AFTER + 1.0
    finally:
        await client.close()
        await proxy.close()
