"""The media downloader over real HTTP against the media host fake on 127.0.0.1: downloads, limits,
statuses, redirects, and the SSRF guard on every hop (a refused target is never contacted)."""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
import socket
from collections.abc import AsyncIterator, Sequence
from typing import ClassVar
from urllib.parse import quote

import httpx
import pytest
from aiohttp import web

from kairos_fakes.base import FakeServer
from kairos_fakes.media import GIF, JPEG, MediaHost, png
from kairos_publisher.egress import system_resolver
from kairos_publisher.media import IMAGE_TYPES, MediaError, MediaFetcher

LOCAL = [ipaddress.ip_network("127.0.0.1/32")]


class Probe(FakeServer):
    """A server that records every request (FakeServer) and serves what MediaHost does not."""

    name = "probe"
    default_port: ClassVar[int] = 0

    def __init__(self) -> None:
        super().__init__()
        self.peers: list[object] = []

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/chunked.png", self.chunked)
        router.add_get("/gzip.png", self.gzip)
        router.add_get("/slow.png", self.slow)
        router.add_get("/status/{code}", self.status)
        router.add_get("/peer.png", self.peer)
        router.add_get("/", self.anything)
        router.add_get("/{tail:.*}", self.anything)

    async def chunked(self, request: web.Request) -> web.StreamResponse:
        """A PNG of `bytes` bytes sent chunked, without a Content-Length."""
        size = int(request.query["bytes"])
        response = web.StreamResponse(headers={"content-type": "image/png"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        body = png() + b"\x00" * max(0, size - len(png()))
        for start in range(0, len(body), 16384):
            await response.write(body[start : start + 16384])
        await response.write_eof()
        return response

    async def gzip(self, request: web.Request) -> web.Response:
        return web.Response(
            body=gzip.compress(png()),
            headers={"content-type": "image/png", "content-encoding": "gzip"},
        )

    async def slow(self, request: web.Request) -> web.StreamResponse:
        """A PNG header, then a byte now and then, never ending."""
        response = web.StreamResponse(headers={"content-type": "image/png"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(png())
        while not self.closing.is_set():
            await asyncio.sleep(0.05)
            await response.write(b"\x00")
        return response

    async def peer(self, request: web.Request) -> web.Response:
        """A PNG, noting the client's address and port (one per connection)."""
        transport = request.transport
        self.peers.append(transport.get_extra_info("peername") if transport else None)
        return web.Response(body=png(), content_type="image/png")

    async def status(self, request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="status")

    async def anything(self, request: web.Request) -> web.Response:
        return web.Response(body=png(), content_type="image/png")


class Spy:
    """Wraps the fetcher's HTTP client's `send`: every URL actually requested, in order."""

    def __init__(self, fetcher: MediaFetcher, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[httpx.Request] = []
        client = fetcher.http
        send = client.send

        async def spy(request: httpx.Request, *, stream: bool = False) -> httpx.Response:
            self.sent.append(request)
            return await send(request, stream=stream)

        monkeypatch.setattr(client, "send", spy)

    @property
    def urls(self) -> list[str]:
        return [str(request.url) for request in self.sent]


class Table:
    """A resolver answering names from a table and anything else from the system."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        if host in self.answers:
            return self.answers[host]
        return await system_resolver(host, port)


def can_bind(family: socket.AddressFamily, address: str) -> bool:
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((address, 0))
    except OSError:
        return False
    return True


def redirects(host: MediaHost, target: str, hops: int) -> str:
    """A URL on `host` that redirects `hops` times, the last time to `target`."""
    url = target
    for _ in range(hops):
        url = f"{host.url}/redirect?to={quote(url, safe='')}"
    return url


@pytest.fixture
async def host() -> AsyncIterator[MediaHost]:
    server = MediaHost()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def probe() -> AsyncIterator[Probe]:
    server = Probe()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def fetcher() -> AsyncIterator[MediaFetcher]:
    media = MediaFetcher(timeout=5.0, allowed_networks=LOCAL)
    yield media
    await media.aclose()


@pytest.fixture
async def loopback2() -> AsyncIterator[Probe]:
    """A server on 127.0.0.2, outside the allowed 127.0.0.1/32."""
    if not can_bind(socket.AF_INET, "127.0.0.2"):
        pytest.skip("cannot bind 127.0.0.2")
    server = Probe()
    await server.start("127.0.0.2")
    yield server
    await server.stop()


@pytest.fixture
async def ipv6() -> AsyncIterator[Probe]:
    """A server on ::1."""
    if not can_bind(socket.AF_INET6, "::1"):
        pytest.skip("cannot bind ::1")
    server = Probe()
    await server.start("::1")
    yield server
    await server.stop()


@pytest.mark.parametrize(
    ("name", "kind", "content"),
    [
        ("photo.png", "image/png", png()),
        ("photo.jpg", "image/jpeg", JPEG),
        ("anim.gif", "image/gif", GIF),
    ],
)
async def test_images_download(
    fetcher: MediaFetcher, host: MediaHost, name: str, kind: str, content: bytes
) -> None:
    url = host.image_url(name)
    media = await fetcher.fetch(url, max_bytes=10_000, types=IMAGE_TYPES)
    assert media.content == content
    assert media.content_type == kind
    assert media.filename == name
    assert media.url == url
    [request] = host.requests
    assert request.path == f"/images/{name}"
    assert request.headers["host"] == f"127.0.0.1:{host.port}"
    assert request.headers["accept-encoding"] == "identity"


async def test_size_limit_by_content_length(fetcher: MediaFetcher, host: MediaHost) -> None:
    url = f"{host.url}/big.png?bytes=5000"
    with pytest.raises(MediaError) as caught:
        await fetcher.fetch(url, max_bytes=4999, types=IMAGE_TYPES)
    assert caught.value.reason == "5000 bytes is over the limit of 4999"
    assert not caught.value.retryable
    media = await fetcher.fetch(url, max_bytes=5000, types=IMAGE_TYPES)
    assert len(media.content) == 5000
    assert media.content_type == "image/png"


async def test_size_limit_by_streamed_size(fetcher: MediaFetcher, probe: Probe) -> None:
    url = f"http://127.0.0.1:{probe.port}/chunked.png?bytes=200000"
    async with httpx.AsyncClient() as plain:
        response = await plain.get(url)
    assert "content-length" not in response.headers
    assert response.headers["transfer-encoding"] == "chunked"
    with pytest.raises(MediaError) as caught:
        await fetcher.fetch(url, max_bytes=100_000, types=IMAGE_TYPES)
    assert caught.value.reason == "more than the limit of 100000 bytes"
    assert not caught.value.retryable
    media = await fetcher.fetch(url, max_bytes=200_000, types=IMAGE_TYPES)
    assert len(media.content) == 200_000


async def test_text_served_as_png_is_refused_by_sniffing(
    fetcher: MediaFetcher, host: MediaHost
) -> None:
    with pytest.raises(MediaError) as caught:
        await fetcher.fetch(f"{host.url}/fake.png", max_bytes=10_000, types=IMAGE_TYPES)
    assert caught.value.reason == (
        "type unrecognised (declared image/png) is not one of "
        "image/gif, image/jpeg, image/png, image/webp"
    )
    assert not caught.value.retryable


async def test_a_type_not_asked_for_is_refused(fetcher: MediaFetcher, host: MediaHost) -> None:
    with pytest.raises(MediaError) as caught:
        await fetcher.fetch(
            host.image_url("anim.gif"), max_bytes=10_000, types={"image/png", "image/jpeg"}
        )
    assert caught.value.reason == (
        "type image/gif (declared image/gif) is not one of image/jpeg, image/png"
    )
    assert not caught.value.retryable


async def test_a_compressed_body_is_refused(fetcher: MediaFetcher, probe: Probe) -> None:
    with pytest.raises(MediaError) as caught:
        await fetcher.fetch(
            f"http://127.0.0.1:{probe.port}/gzip.png", max_bytes=10_000, types=IMAGE_TYPES
        )
    assert caught.value.reason.endswith("answered with content coding 'gzip'")
    assert not caught.value.retryable


async def test_not_found_is_permanent(fetcher: MediaFetcher, host: MediaHost) -> None:
    url = host.image_url("photo.bmp")
    with pytest.raises(MediaError) as caught:
        await fetcher.fetch(url, max_bytes=10_000, types=IMAGE_TYPES)
    assert caught.value.reason == f"GET {url} answered 404"
    assert not caught.value.retryable


@pytest.mark.parametrize("code", [500, 503, 429])
async def test_server_errors_are_retryable(fetcher: MediaFetcher, probe: Probe, code: int) -> None:
    url = f"http://127.0.0.1:{probe.port}/status/{code}"
    with pytest.raises(MediaError) as caught:
        await fetcher.fetch(url, max_bytes=10_000, types=IMAGE_TYPES)
    assert caught.value.reason == f"GET {url} answered {code}"
    assert caught.value.retryable


async def test_a_connection_refused_is_retryable(fetcher: MediaFetcher) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(MediaError) as caught:
        await fetcher.fetch(f"http://127.0.0.1:{port}/a.png", max_bytes=10, types=IMAGE_TYPES)
    assert caught.value.retryable
    assert "failed: ConnectError" in caught.value.reason


async def test_a_dripping_server_hits_the_overall_deadline(probe: Probe) -> None:
    media = MediaFetcher(timeout=0.3, allowed_networks=LOCAL)
    try:
        with pytest.raises(MediaError) as caught:
            await media.fetch(
                f"http://127.0.0.1:{probe.port}/slow.png", max_bytes=10**7, types=IMAGE_TYPES
            )
    finally:
        await media.aclose()
    assert caught.value.reason == "not downloaded within 1.2 s"
    assert caught.value.retryable


async def test_connections_are_not_reused_between_downloads(
    probe: Probe, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pooled connection is keyed by address: reused, it would carry another name's request
    past the TLS check made for the first name."""
    media = MediaFetcher(
        timeout=5.0,
        allowed_networks=LOCAL,
        resolver=Table({"a.test": ["127.0.0.1"], "b.test": ["127.0.0.1"]}),
    )
    try:
        for name in ("a.test", "b.test", "b.test"):
            url = f"http://{name}:{probe.port}/peer.png"
            assert (await media.fetch(url, max_bytes=10_000, types=IMAGE_TYPES)).content == png()
    finally:
        await media.aclose()
    assert len(probe.peers) == 3
    assert len(set(map(str, probe.peers))) == 3


@pytest.mark.parametrize("hops", [1, 5])
async def test_redirects_within_the_limit_are_followed(
    fetcher: MediaFetcher, host: MediaHost, hops: int
) -> None:
    url = redirects(host, host.image_url("end.jpg"), hops)
    media = await fetcher.fetch(url, max_bytes=10_000, types=IMAGE_TYPES)
    assert media.content == JPEG
    assert media.url == url
    assert media.filename == "end.jpg"
    assert [r.path for r in host.requests] == ["/redirect"] * hops + ["/images/end.jpg"]


async def test_more_than_five_redirects_are_refused(fetcher: MediaFetcher, host: MediaHost) -> None:
    url = redirects(host, host.image_url("end.png"), 6)
    with pytest.raises(MediaError) as caught:
        await fetcher.fetch(url, max_bytes=10_000, types=IMAGE_TYPES)
    assert caught.value.reason == "more than 5 redirects"
    assert not caught.value.retryable
    assert [r.path for r in host.requests] == ["/redirect"] * 6


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("http://169.254.169.254/latest/meta-data/", "a cloud metadata address"),
        ("http://10.0.0.1/", "a private address"),
        ("http://[fd00:ec2::254]/", "a cloud metadata address"),
        ("http://0.0.0.0:9/", "the unspecified address"),
        ("http://[::ffff:10.0.0.1]/", "a private address"),
    ],
)
async def test_a_redirect_to_a_non_public_address_is_refused(
    fetcher: MediaFetcher,
    host: MediaHost,
    monkeypatch: pytest.MonkeyPatch,
    target: str,
    why: str,
) -> None:
    spy = Spy(fetcher, monkeypatch)
    url = redirects(host, target, 1)
    with pytest.raises(MediaError) as caught:
        await fetcher.fetch(url, max_bytes=10_000, types=IMAGE_TYPES)
    assert caught.value.reason == "the host does not resolve to a public address"
    assert why in caught.value.detail
    assert caught.value.detail.endswith("; refused")
    assert not caught.value.retryable
    assert spy.urls == [url]  # only the first hop was requested


async def test_a_redirect_to_ipv6_loopback_is_refused_and_never_contacted(
    fetcher: MediaFetcher, host: MediaHost, ipv6: Probe, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = Spy(fetcher, monkeypatch)
    url = redirects(host, f"http://[::1]:{ipv6.port}/images/a.png", 1)
    with pytest.raises(MediaError) as caught:
        await fetcher.fetch(url, max_bytes=10_000, types=IMAGE_TYPES)
    assert caught.value.detail == "::1 resolves to ::1, a loopback address; refused"
    assert spy.urls == [url]
    assert ipv6.requests == []


async def test_a_redirect_to_other_loopback_is_refused_and_never_contacted(
    fetcher: MediaFetcher, host: MediaHost, loopback2: Probe, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = Spy(fetcher, monkeypatch)
    # The server on 127.0.0.2 answers when asked directly: it is reachable, only refused.
    async with httpx.AsyncClient() as plain:
        assert (await plain.get(f"http://127.0.0.2:{loopback2.port}/probe")).status_code == 200
    loopback2.requests.clear()
    url = redirects(host, f"http://127.0.0.2:{loopback2.port}/images/a.png", 1)
    with pytest.raises(MediaError) as caught:
        await fetcher.fetch(url, max_bytes=10_000, types=IMAGE_TYPES)
    assert caught.value.detail == "127.0.0.2 resolves to 127.0.0.2, a loopback address; refused"
    assert spy.urls == [url]
    assert loopback2.requests == []


async def test_a_redirect_to_localhost_is_refused_and_never_contacted(
    loopback2: Probe, probe: Probe, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From a host allowed on 127.0.0.2 to `localhost`, which the system resolves to loopback
    outside that /32 (127.0.0.1, and ::1 where the system says so)."""
    answers = await system_resolver("localhost", probe.port)
    assert answers
    assert all(ipaddress.ip_address(a).is_loopback for a in answers)
    media = MediaFetcher(timeout=5.0, allowed_networks=[ipaddress.ip_network("127.0.0.2/32")])
    spy = Spy(media, monkeypatch)
    first = f"http://127.0.0.2:{loopback2.port}/start"
    try:
        # The allowed host itself downloads.
        assert (await media.fetch(first, max_bytes=10_000, types=IMAGE_TYPES)).content == png()
        target = f"http://localhost:{probe.port}/images/a.png"
        redirecting = MediaHost()
        await redirecting.start("127.0.0.2")
        try:
            url = redirects(redirecting, target, 1)
            with pytest.raises(MediaError) as caught:
                await media.fetch(url, max_bytes=10_000, types=IMAGE_TYPES)
        finally:
            await redirecting.stop()
    finally:
        await media.aclose()
    assert caught.value.detail.startswith("localhost resolves to ")
    assert caught.value.detail.endswith(", a loopback address; refused")
    assert spy.urls == [first, url]
    assert probe.requests == []
    assert [r.path for r in loopback2.requests] == ["/start"]


async def test_with_no_allowed_networks_even_the_first_loopback_url_is_refused(
    host: MediaHost,
) -> None:
    media = MediaFetcher(timeout=5.0)
    try:
        with pytest.raises(MediaError) as caught:
            await media.fetch(
                f"http://127.0.0.1:{host.port}/images/a.png", max_bytes=10_000, types=IMAGE_TYPES
            )
    finally:
        await media.aclose()
    assert caught.value.detail == "127.0.0.1 resolves to 127.0.0.1, a loopback address; refused"
    assert not caught.value.retryable
    assert host.requests == []


async def test_the_host_header_is_the_url_host_not_the_pinned_address(
    host: MediaHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    media = MediaFetcher(
        timeout=5.0, allowed_networks=LOCAL, resolver=Table({"media.test": ["127.0.0.1"]})
    )
    spy = Spy(media, monkeypatch)
    try:
        url = f"http://media.test:{host.port}/images/named.png"
        fetched = await media.fetch(url, max_bytes=10_000, types=IMAGE_TYPES)
        # Redirected to a relative location, the next hop keeps the name too.
        relative = f"http://media.test:{host.port}/redirect?to=/images/again.gif"
        again = await media.fetch(relative, max_bytes=10_000, types=IMAGE_TYPES)
    finally:
        await media.aclose()
    assert fetched.content == png()
    assert again.content == GIF
    assert [r.headers["host"] for r in host.requests] == [f"media.test:{host.port}"] * 3
    assert [r.path for r in host.requests] == [
        "/images/named.png",
        "/redirect",
        "/images/again.gif",
    ]
    assert spy.urls[0] == f"http://127.0.0.1:{host.port}/images/named.png"
    assert all(r.extensions["sni_hostname"] == "media.test" for r in spy.sent)


async def test_a_name_resolving_to_a_refused_address_is_never_contacted(
    host: MediaHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name answering the allowed address and a refused one is refused as a whole."""
    media = MediaFetcher(
        timeout=5.0,
        allowed_networks=LOCAL,
        resolver=Table({"both.test": ["127.0.0.1", "10.0.0.1"]}),
    )
    spy = Spy(media, monkeypatch)
    try:
        with pytest.raises(MediaError) as caught:
            await media.fetch(
                f"http://both.test:{host.port}/images/a.png", max_bytes=10_000, types=IMAGE_TYPES
            )
    finally:
        await media.aclose()
    # The tenant sees fixed words (in the attempt); the address is for the operator's log.
    assert str(caught.value) == (
        f"media http://both.test:{host.port}/images/a.png: "
        "the host does not resolve to a public address"
    )
    assert caught.value.detail == "both.test resolves to 10.0.0.1, a private address; refused"
    assert spy.sent == []
    assert host.requests == []
