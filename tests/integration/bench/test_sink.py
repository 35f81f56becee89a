"""The platform sink as a real process: what it records, how it answers, how fast it is."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from kairos_bench.sink import SinkProcess, measure_capacity


@pytest.fixture(scope="module")
def running_sink() -> Iterator[SinkProcess]:
    with SinkProcess() as sink:
        yield sink


@pytest.fixture
async def sink(running_sink: SinkProcess) -> AsyncIterator[SinkProcess]:
    await running_sink.reset()
    yield running_sink
    await running_sink.set_delay(0)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0, trust_env=False) as client:
        yield client


async def exchange(sink: SinkProcess, payload: bytes) -> bytes:
    """Send raw bytes on a fresh connection and read until the sink closes it."""
    reader, writer = await asyncio.open_connection(sink.host, sink.port)
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout=5)
    finally:
        writer.close()
        await writer.wait_closed()


def raw_post(key: str, body: bytes, *, close: bool = False) -> bytes:
    connection = b"connection: close\r\n" if close else b""
    return (
        b"POST /hook HTTP/1.1\r\nhost: sink\r\nidempotency-key: %s\r\n"
        b"content-length: %d\r\n%s\r\n%s" % (key.encode(), len(body), connection, body)
    )


def split_responses(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """(status, headers, body) of each HTTP response in `data`, in order."""
    responses = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        length = int(headers["content-length"])
        responses.append((int(lines[0].split(" ")[1]), headers, rest[:length]))
        data = rest[length:]
    return responses


async def test_records_each_key_with_its_arrival_time_in_order(
    sink: SinkProcess, http: httpx.AsyncClient
) -> None:
    windows = []
    ids = []
    for key in ["post-a", "post-b", "", "post-c"]:
        headers = {"idempotency-key": key} if key else {}
        before = time.time_ns()
        response = await http.post(sink.url, json={"content": "hello"}, headers=headers)
        windows.append((before, time.time_ns()))
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {"id": response.headers["x-request-id"]}
        ids.append(int(response.headers["x-request-id"]))

    arrivals = await sink.arrivals()

    assert [key for key, _ in arrivals] == ["post-a", "post-b", "", "post-c"]
    for (_, arrived_ns), (before, after) in zip(arrivals, windows, strict=True):
        assert before <= arrived_ns <= after
    assert ids == list(range(ids[0], ids[0] + 4))
    assert await sink.arrivals(start=2) == arrivals[2:]


async def test_any_path_and_method_outside_the_control_prefix_is_an_arrival(
    sink: SinkProcess, http: httpx.AsyncClient
) -> None:
    await http.get(f"{sink.base_url}/anything?x=1", headers={"idempotency-key": "g"})
    await http.put(f"{sink.base_url}/other", content=b"x" * 5000, headers={"idempotency-key": "p"})

    assert [key for key, _ in await sink.arrivals()] == ["g", "p"]


async def test_count_and_reset(sink: SinkProcess, http: httpx.AsyncClient) -> None:
    for number in range(3):
        await http.post(sink.url, content=b"{}", headers={"idempotency-key": f"k{number}"})
    assert await sink.count() == 3

    await sink.reset()

    assert await sink.count() == 0
    assert await sink.arrivals() == []
    response = await http.post(sink.url, content=b"{}", headers={"idempotency-key": "after"})
    assert response.status_code == 200
    assert [key for key, _ in await sink.arrivals()] == ["after"]


async def test_pipelined_requests_on_one_connection_are_answered_in_order(
    sink: SinkProcess,
) -> None:
    first = raw_post("first", b'{"n": 1}')
    second = raw_post("second", b'{"n": 2, "padding": "' + b"x" * 300 + b'"}', close=True)
    reader, writer = await asyncio.open_connection(sink.host, sink.port)
    try:
        # Both requests in one segment, the second one split mid-body across two writes.
        cut = len(first) + len(second) - 50
        writer.write((first + second)[:cut])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write((first + second)[cut:])
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout=5)
    finally:
        writer.close()
        await writer.wait_closed()

    responses = split_responses(data)
    assert [status for status, _, _ in responses] == [200, 200]
    first_id, second_id = (int(headers["x-request-id"]) for _, headers, _ in responses)
    assert second_id == first_id + 1
    assert json.loads(responses[1][2]) == {"id": str(second_id)}
    assert responses[1][1]["connection"] == "close"
    assert [key for key, _ in await sink.arrivals()] == ["first", "second"]


async def test_a_malformed_request_gets_400_and_the_sink_keeps_serving(
    sink: SinkProcess, http: httpx.AsyncClient
) -> None:
    (garbage,) = split_responses(await exchange(sink, b"NOT A REQUEST\r\n\r\n"))
    (bad_length,) = split_responses(
        await exchange(sink, b"POST /hook HTTP/1.1\r\ncontent-length: ten\r\n\r\n")
    )
    (chunked,) = split_responses(
        await exchange(
            sink,
            b"POST /hook HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        )
    )

    assert garbage[0] == 400
    assert bad_length[0] == 400
    assert chunked[0] == 411
    assert "content-length" in json.loads(chunked[2])["error"]
    response = await http.post(sink.url, content=b"{}", headers={"idempotency-key": "fine"})
    assert response.status_code == 200
    assert [key for key, _ in await sink.arrivals()] == ["fine"]


async def test_control_endpoints_reject_wrong_methods_and_unknown_paths(
    sink: SinkProcess, http: httpx.AsyncClient
) -> None:
    assert (await http.post(f"{sink.base_url}/_sink/count")).status_code == 405
    assert (await http.get(f"{sink.base_url}/_sink/reset")).status_code == 405
    assert (await http.get(f"{sink.base_url}/_sink/nope")).status_code == 404
    assert (await http.get(f"{sink.base_url}/_sink/arrivals?from=x")).status_code == 400
    assert await sink.count() == 0


async def test_delay_holds_answers_but_not_arrival_times(
    sink: SinkProcess, http: httpx.AsyncClient
) -> None:
    await sink.set_delay(300)

    before = time.time_ns()
    response = await http.post(sink.url, content=b"{}", headers={"idempotency-key": "slow"})
    answered = time.time_ns()

    assert response.status_code == 200
    assert answered - before >= 290_000_000
    ((_, arrived_ns),) = await sink.arrivals()
    assert arrived_ns - before < 150_000_000


async def test_wait_for_returns_on_count_or_when_arrivals_stop(
    sink: SinkProcess, http: httpx.AsyncClient
) -> None:
    async def send_later() -> None:
        await asyncio.sleep(0.2)
        for number in range(2):
            await http.post(sink.url, content=b"{}", headers={"idempotency-key": f"w{number}"})

    sender = asyncio.create_task(send_later())
    assert await sink.wait_for(2, timeout=5) == 2
    await sender

    started = time.monotonic()
    assert await sink.wait_for(10, timeout=5, idle=0.3) == 2
    assert time.monotonic() - started < 2


async def test_measure_capacity_drives_the_sink_and_resets_it(sink: SinkProcess) -> None:
    capacity = await measure_capacity(sink, requests=3000, concurrency=8, clients=2)

    assert capacity["requests"] == 3000
    assert capacity["recorded"] == 3000
    assert capacity["clients"] == 2
    assert capacity["seconds"] > 0
    assert capacity["per_s"] == pytest.approx(3000 / capacity["seconds"])
    assert capacity["per_s"] > 1000
    assert 0 < capacity["sink_cpu_seconds"] < capacity["seconds"] * 1.5
    assert await sink.count() == 0
