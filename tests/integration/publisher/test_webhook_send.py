"""One webhook request over real HTTP to a receiver on 127.0.0.1: what is sent and signed, what an
answer reports, redirects not followed, the time limit, and the SSRF guard (a refused endpoint
is never contacted)."""

from __future__ import annotations

import base64
import ipaddress
import secrets
import socket
import time
from collections.abc import AsyncIterator, Sequence

import pytest

from kairos.dispatch.v1 import webhooks_pb2
from kairos_publisher.egress import EgressGuard
from kairos_publisher.webhooks import USER_AGENT, Answer, WebhookPoster
from support.webhooks import WebhookReceiver, verified

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
BODY = b'{"type":"post.published","timestamp":"2026-12-07T00:00:00Z","data":{"post_id":"p"}}'


class Table:
    """A resolver answering from a table; nothing else resolves."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.asked.append(host)
        if host not in self.answers:
            raise OSError(-2, f"Name or service not known: {host}")
        return self.answers[host]


def a_send(url: str, message_id: str = "evt-1") -> webhooks_pb2.WebhookSend:
    return webhooks_pb2.WebhookSend(
        delivery_id="d-1",
        webhook_id="w-1",
        url=url,
        secret=SECRET,
        message_id=message_id,
        body=BODY,
        attempt_number=1,
    )


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    server = WebhookReceiver()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def poster() -> AsyncIterator[WebhookPoster]:
    made = WebhookPoster(EgressGuard(LOOPBACK), timeout=5.0)
    yield made
    await made.aclose()


async def test_a_delivery_is_posted_signed_and_its_answer_reported(
    receiver: WebhookReceiver, poster: WebhookPoster
) -> None:
    receiver.answer_text = "thanks " + "x" * 600
    before = int(time.time())
    answer, latency = await poster.post(a_send(f"{receiver.url}/hooks/kairos", "evt-42"))
    assert answer == Answer(200, "", ("thanks " + "x" * 600)[:500])
    assert 0 < latency < 5
    [request] = receiver.hooks
    assert (request.method, request.path, request.body) == ("POST", "/hooks/kairos", BODY)
    assert verified(SECRET, request) == {
        "type": "post.published",
        "timestamp": "2026-12-07T00:00:00Z",
        "data": {"post_id": "p"},
    }
    headers = request.headers
    assert headers["webhook-id"] == "evt-42"
    assert before <= int(headers["webhook-timestamp"]) <= int(time.time())
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == USER_AGENT
    assert headers["accept-encoding"] == "identity"
    assert headers["host"] == f"127.0.0.1:{receiver.port}"


async def test_an_error_status_is_a_failure_with_the_answers_start(
    receiver: WebhookReceiver, poster: WebhookPoster
) -> None:
    receiver.script.extend([500, 404])
    receiver.answer_text = "é" * 700  # two bytes each: the excerpt counts characters
    first, _ = await poster.post(a_send(receiver.url))
    second, _ = await poster.post(a_send(receiver.url))
    assert first == Answer(500, "HTTP 500", "é" * 500)
    assert second == Answer(404, "HTTP 404", "é" * 500)
    assert len(receiver.hooks) == 2


async def test_a_binary_answer_is_kept_as_text_without_nul(
    receiver: WebhookReceiver, poster: WebhookPoster
) -> None:
    receiver.script.append(502)
    receiver.answer_text = "bad\x00gate\x00way"
    answer, _ = await poster.post(a_send(receiver.url))
    assert answer == Answer(502, "HTTP 502", "bad\ufffdgate\ufffdway")


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_a_redirect_is_not_followed(
    receiver: WebhookReceiver, poster: WebhookPoster, status: int
) -> None:
    receiver.script.append(status)
    answer, _ = await poster.post(a_send(f"{receiver.url}/in"))
    location = f"{receiver.url}/followed"
    assert answer == Answer(
        status, f"HTTP {status}: redirect to {location} not followed", "answered " + str(status)
    )
    assert [r.path for r in receiver.requests] == ["/in"]


async def test_an_endpoint_slower_than_the_timeout_fails_in_time(
    receiver: WebhookReceiver,
) -> None:
    receiver.delay = 3.0
    poster = WebhookPoster(EgressGuard(LOOPBACK), timeout=0.3)
    try:
        started = time.monotonic()
        answer, latency = await poster.post(a_send(receiver.url))
        took = time.monotonic() - started
    finally:
        await poster.aclose()
    assert answer.http_status == 0
    assert answer.error in ("no answer within 0.3 s", "timed out: ReadTimeout")
    assert 0.3 <= latency < 1.0
    assert took < 1.0
    assert len(receiver.hooks) == 1


async def test_a_status_given_in_time_stands_when_the_body_is_too_slow(
    receiver: WebhookReceiver,
) -> None:
    receiver.slow_body, receiver.delay = True, 3.0
    poster = WebhookPoster(EgressGuard(LOOPBACK), timeout=0.3)
    try:
        answer, latency = await poster.post(a_send(receiver.url))
    finally:
        await poster.aclose()
    assert answer == Answer(200, "", "")
    assert 0.3 <= latency < 1.0


async def test_a_closed_port_is_a_failure_without_a_status(poster: WebhookPoster) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    answer, _ = await poster.post(a_send(f"http://127.0.0.1:{port}/in"))
    assert answer.http_status == 0
    assert answer.error.startswith("cannot connect: ")


async def test_loopback_is_refused_unless_allowed(receiver: WebhookReceiver) -> None:
    poster = WebhookPoster(EgressGuard(), timeout=5.0)
    try:
        answer, _ = await poster.post(a_send(f"{receiver.url}/in"))
    finally:
        await poster.aclose()
    assert answer == Answer(
        0,
        "not sent: the host does not resolve to a public address",
        detail="127.0.0.1 resolves to 127.0.0.1, a loopback address; refused",
    )
    assert receiver.requests == []


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("10.1.2.3", "a private address"),
        ("192.168.0.10", "a private address"),
        ("169.254.169.254", "a cloud metadata address"),
        ("fd00:ec2::254", "a cloud metadata address"),
        ("127.0.0.1", "a loopback address"),
    ],
)
async def test_a_name_resolving_inside_the_network_is_refused_before_connecting(
    receiver: WebhookReceiver, address: str, why: str
) -> None:
    resolver = Table({"hooks.example.com": ["93.184.216.34", address]})
    poster = WebhookPoster(EgressGuard(resolver=resolver), timeout=5.0)
    try:
        answer, _ = await poster.post(a_send(f"https://hooks.example.com:{receiver.port}/in"))
    finally:
        await poster.aclose()
    # The tenant's delivery log gets fixed words (what the name resolves to inside the network
    # is not theirs to learn); the publisher's log gets the address.
    shown = ipaddress.ip_address(address)
    assert answer == Answer(
        0,
        "not sent: the host does not resolve to a public address",
        detail=f"hooks.example.com resolves to {shown}, {why}; refused",
    )
    assert resolver.asked == ["hooks.example.com"]
    assert receiver.requests == []


async def test_a_name_is_connected_to_at_the_address_that_was_checked(
    receiver: WebhookReceiver,
) -> None:
    # The resolver is asked once: the connection goes to its answer, so a second DNS answer
    # (a rebinding) could not send the request anywhere else.
    resolver = Table({"hooks.example.com": ["127.0.0.1"]})
    poster = WebhookPoster(EgressGuard(LOOPBACK, resolver), timeout=5.0)
    try:
        answer, _ = await poster.post(a_send(f"http://hooks.example.com:{receiver.port}/in"))
    finally:
        await poster.aclose()
    assert answer.http_status == 200
    assert resolver.asked == ["hooks.example.com"]
    [request] = receiver.hooks
    assert request.headers["host"] == f"hooks.example.com:{receiver.port}"
    assert verified(SECRET, request)["data"] == {"post_id": "p"}


@pytest.mark.parametrize(
    ("url", "error"),
    [
        (
            "ftp://hooks.example.com/in",
            "not sent: ftp://hooks.example.com/in is not an http(s) URL",
        ),
        ("http://nowhere.example/in", "not sent: the host name does not resolve"),
        ("http://hooks.example.com:99999/in", "not sent: http://hooks.example.com:99999/in has"),
    ],
)
async def test_an_unusable_url_is_a_failure_naming_it(url: str, error: str) -> None:
    poster = WebhookPoster(EgressGuard(resolver=Table({})), timeout=5.0)
    try:
        answer, _ = await poster.post(a_send(url))
    finally:
        await poster.aclose()
    assert answer.http_status == 0
    assert answer.error.startswith(error)


async def test_a_name_that_does_not_resolve_tells_the_tenant_only_fixed_words() -> None:
    poster = WebhookPoster(EgressGuard(resolver=Table({})), timeout=5.0)
    try:
        answer, _ = await poster.post(a_send("https://db.internal.example/in"))
    finally:
        await poster.aclose()
    # The resolver's error stays in the publisher's log: it would tell a tenant how names
    # inside the network fare.
    assert answer == Answer(
        0,
        "not sent: the host name does not resolve",
        detail="cannot resolve db.internal.example: [Errno -2] Name or service not known: "
        "db.internal.example",
    )
