"""The media downloader's SSRF guard without a network: which addresses are refused, and that a
refused or unusable URL never gets as far as a connection."""

from __future__ import annotations

import contextlib
import ipaddress
import pickle
from collections.abc import AsyncIterator, Sequence

import pytest

from kairos_common.addresses import parse_networks
from kairos_publisher.media import IMAGE_TYPES, MediaError, MediaFetcher, sniff

LOOPBACK = ["127.0.0.1", "127.8.9.10", "::1"]
PRIVATE = ["10.0.0.1", "10.255.255.254", "172.16.0.1", "172.31.255.1", "192.168.1.1", "fc00::1"]
PRIVATE += ["fd12:3456::1"]
LINK_LOCAL = ["169.254.0.1", "169.254.200.3", "fe80::1", "febf::1"]
METADATA = ["169.254.169.254", "fd00:ec2::254", "100.100.100.200", "169.254.170.2"]
UNSPECIFIED = ["0.0.0.0", "::"]
MULTICAST = ["224.0.0.1", "239.255.255.250", "ff02::1", "ff0e::1"]
SHARED = ["100.64.0.1", "100.127.255.254"]
RESERVED = ["240.0.0.1", "255.255.255.255", "::7f00:1", "192.0.2.1", "2001:db8::1"]
PUBLIC = ["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700::1111", "2001:4860:4860::8888"]
PUBLIC += ["::ffff:93.184.216.34", "2002:5db8:d822::1", "64:ff9b::808:808"]


class Unreachable:
    """A resolver a test must never get to."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.asked.append(host)
        raise AssertionError(f"resolver asked for {host}")


class Table:
    """A resolver answering from a table; a name not in it does not resolve."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.asked.append((host, port))
        if host not in self.answers:
            raise OSError(-2, f"Name or service not known: {host}")
        return self.answers[host]


class NoConnections:
    """Stands in for the HTTP client: any request is a test failure."""

    def __init__(self) -> None:
        self.sent: list[object] = []

    def build_request(self, *args: object, **kwargs: object) -> object:
        self.sent.append((args, kwargs))
        raise AssertionError("a request was built")

    async def send(self, *args: object, **kwargs: object) -> object:
        self.sent.append((args, kwargs))
        raise AssertionError("a request was sent")

    async def aclose(self) -> None:
        return None


def guarded(fetcher: MediaFetcher) -> NoConnections:
    client = NoConnections()
    fetcher._http = client  # type: ignore[assignment]
    return client


@contextlib.asynccontextmanager
async def scope() -> AsyncIterator[None]:
    yield


@pytest.fixture
def fetcher() -> MediaFetcher:
    return MediaFetcher(resolver=Unreachable())


def refusal(fetcher: MediaFetcher, text: str) -> str:
    return fetcher.refusal(ipaddress.ip_address(text))


@pytest.mark.parametrize("address", LOOPBACK)
def test_loopback_is_refused(fetcher: MediaFetcher, address: str) -> None:
    assert refusal(fetcher, address) == "a loopback address"


@pytest.mark.parametrize("address", PRIVATE)
def test_private_is_refused(fetcher: MediaFetcher, address: str) -> None:
    assert refusal(fetcher, address) == "a private address"


@pytest.mark.parametrize("address", LINK_LOCAL)
def test_link_local_is_refused(fetcher: MediaFetcher, address: str) -> None:
    assert refusal(fetcher, address).startswith("a link-local address")


@pytest.mark.parametrize("address", METADATA)
def test_cloud_metadata_is_refused(fetcher: MediaFetcher, address: str) -> None:
    assert refusal(fetcher, address) == "a cloud metadata address"


@pytest.mark.parametrize("address", UNSPECIFIED)
def test_unspecified_is_refused(fetcher: MediaFetcher, address: str) -> None:
    assert refusal(fetcher, address) == "the unspecified address"


@pytest.mark.parametrize("address", MULTICAST)
def test_multicast_is_refused(fetcher: MediaFetcher, address: str) -> None:
    assert refusal(fetcher, address) == "a multicast address"


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("::ffff:127.0.0.1", "a loopback address"),
        ("::ffff:10.0.0.1", "a private address"),
        ("::ffff:169.254.169.254", "a cloud metadata address"),
    ],
)
def test_ipv4_mapped_ipv6_is_judged_by_its_ipv4(
    fetcher: MediaFetcher, address: str, why: str
) -> None:
    embedded = address.removeprefix("::ffff:")
    shown = ipaddress.ip_address(address)
    assert refusal(fetcher, address) == f"{why}, as {embedded} inside {shown}"


@pytest.mark.parametrize("address", SHARED)
def test_shared_address_space_is_refused(fetcher: MediaFetcher, address: str) -> None:
    assert refusal(fetcher, address) == "a shared or reserved address"


@pytest.mark.parametrize(
    ("address", "embedded"),
    [
        ("2002:7f00:1::1", "127.0.0.1"),
        ("2002:a00:1::", "10.0.0.1"),
        ("64:ff9b::a00:1", "10.0.0.1"),
        ("64:ff9b::7f00:1", "127.0.0.1"),
    ],
)
def test_6to4_and_nat64_are_judged_by_their_ipv4(
    fetcher: MediaFetcher, address: str, embedded: str
) -> None:
    shown = ipaddress.ip_address(address)
    assert refusal(fetcher, address).endswith(f", as {embedded} inside {shown}")


@pytest.mark.parametrize("address", RESERVED)
def test_reserved_and_documentation_addresses_are_refused(
    fetcher: MediaFetcher, address: str
) -> None:
    assert refusal(fetcher, address) in ("a private address", "a shared or reserved address")


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(fetcher: MediaFetcher, address: str) -> None:
    assert refusal(fetcher, address) == ""


def test_allowed_networks_exempt_only_the_listed_network() -> None:
    fetcher = MediaFetcher(
        allowed_networks=parse_networks("127.0.0.1/32, 10.1.0.0/16"), resolver=Unreachable()
    )
    assert refusal(fetcher, "127.0.0.1") == ""
    assert refusal(fetcher, "::ffff:127.0.0.1") == ""
    assert refusal(fetcher, "10.1.200.7") == ""
    assert refusal(fetcher, "127.0.0.2") == "a loopback address"
    assert refusal(fetcher, "::1") == "a loopback address"
    assert refusal(fetcher, "10.2.0.1") == "a private address"
    assert refusal(fetcher, "169.254.169.254") == "a cloud metadata address"
    assert refusal(fetcher, "192.168.1.1") == "a private address"


def test_an_allowed_ipv6_network_does_not_exempt_ipv4() -> None:
    fetcher = MediaFetcher(allowed_networks=parse_networks("::1/128"), resolver=Unreachable())
    assert refusal(fetcher, "::1") == ""
    assert refusal(fetcher, "127.0.0.1") == "a loopback address"


async def test_a_name_resolving_to_a_private_address_is_refused_before_connecting() -> None:
    resolver = Table({"evil.test": ["10.0.0.1"]})
    fetcher = MediaFetcher(resolver=resolver)
    client = guarded(fetcher)
    with pytest.raises(MediaError) as caught:
        await fetcher.fetch("https://evil.test/cat.png", max_bytes=1000, types=IMAGE_TYPES)
    assert caught.value.reason == "the host does not resolve to a public address"
    assert caught.value.detail == "evil.test resolves to 10.0.0.1, a private address; refused"
    assert caught.value.url == "https://evil.test/cat.png"
    assert not caught.value.retryable
    assert resolver.asked == [("evil.test", 443)]
    assert client.sent == []


async def test_a_name_with_one_private_address_among_public_ones_is_refused() -> None:
    resolver = Table({"mixed.test": ["93.184.216.34", "2606:4700::1111", "127.0.0.1"]})
    fetcher = MediaFetcher(resolver=resolver)
    client = guarded(fetcher)
    with pytest.raises(MediaError) as caught:
        await fetcher.fetch("http://mixed.test:8080/a.png", max_bytes=1000, types=IMAGE_TYPES)
    assert caught.value.detail == "mixed.test resolves to 127.0.0.1, a loopback address; refused"
    assert not caught.value.retryable
    assert resolver.asked == [("mixed.test", 8080)]
    assert client.sent == []


async def test_a_metadata_address_in_the_url_is_refused_without_resolving() -> None:
    resolver = Unreachable()
    fetcher = MediaFetcher(resolver=resolver)
    client = guarded(fetcher)
    for url, address in [
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("http://[fd00:ec2::254]/latest/meta-data/", "fd00:ec2::254"),
        ("http://[::ffff:a9fe:a9fe]/", "::ffff:a9fe:a9fe"),
    ]:
        with pytest.raises(MediaError) as caught:
            await fetcher.fetch(url, max_bytes=1000, types=IMAGE_TYPES)
        assert caught.value.reason == "the host does not resolve to a public address"
        assert "a cloud metadata address" in caught.value.detail
        assert f"resolves to {ipaddress.ip_address(address)}," in caught.value.detail
        assert not caught.value.retryable
    assert resolver.asked == []
    assert client.sent == []


async def test_an_unresolvable_host_is_retryable() -> None:
    fetcher = MediaFetcher(resolver=Table({}))
    client = guarded(fetcher)
    with pytest.raises(MediaError) as caught:
        await fetcher.fetch("https://nowhere.test/a.png", max_bytes=1000, types=IMAGE_TYPES)
    assert caught.value.retryable
    assert caught.value.reason == "the host name does not resolve"
    assert caught.value.detail.startswith("cannot resolve nowhere.test:")
    assert client.sent == []


async def test_a_host_with_no_addresses_is_retryable() -> None:
    fetcher = MediaFetcher(resolver=Table({"empty.test": []}))
    guarded(fetcher)
    with pytest.raises(MediaError) as caught:
        await fetcher.fetch("https://empty.test/a.png", max_bytes=1000, types=IMAGE_TYPES)
    assert caught.value.retryable
    assert caught.value.reason == "the host name does not resolve"
    assert caught.value.detail == "empty.test resolves to no address"


async def test_a_resolver_answering_garbage_is_a_resolution_failure() -> None:
    fetcher = MediaFetcher(resolver=Table({"odd.test": ["not-an-address"]}))
    client = guarded(fetcher)
    with pytest.raises(MediaError) as caught:
        await fetcher.fetch("https://odd.test/a.png", max_bytes=1000, types=IMAGE_TYPES)
    assert caught.value.retryable
    assert caught.value.reason == "the host name does not resolve"
    assert caught.value.detail.startswith("cannot resolve odd.test:")
    assert client.sent == []


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://93.184.216.34/a.png",
        "gopher://93.184.216.34:70/_GET",
        "data:image/png;base64,iVBORw0KGgo=",
        "javascript:alert(1)",
        "//93.184.216.34/a.png",
        "a.png",
    ],
)
async def test_other_schemes_are_refused(url: str) -> None:
    resolver = Unreachable()
    fetcher = MediaFetcher(resolver=resolver)
    client = guarded(fetcher)
    with pytest.raises(MediaError) as caught:
        await fetcher.fetch(url, max_bytes=1000, types=IMAGE_TYPES)
    assert caught.value.reason == f"{url} is not an http(s) URL with a host"
    assert not caught.value.retryable
    assert resolver.asked == []
    assert client.sent == []


@pytest.mark.parametrize("url", ["http:///a.png", "https://", "http://:80/a.png", "http://@/a"])
async def test_a_url_without_a_host_is_refused(url: str) -> None:
    resolver = Unreachable()
    fetcher = MediaFetcher(resolver=resolver)
    client = guarded(fetcher)
    with pytest.raises(MediaError) as caught:
        await fetcher.fetch(url, max_bytes=1000, types=IMAGE_TYPES)
    assert caught.value.reason == f"{url} is not an http(s) URL with a host"
    assert not caught.value.retryable
    assert resolver.asked == []
    assert client.sent == []


@pytest.mark.parametrize(
    "url", ["http://media.test:99999/a.png", "http://media.test:port/a.png", "http://a..b/x.png"]
)
async def test_an_invalid_port_or_host_is_a_media_error(url: str) -> None:
    resolver = Unreachable()
    fetcher = MediaFetcher(resolver=resolver)
    client = guarded(fetcher)
    with pytest.raises(MediaError) as caught:
        await fetcher.fetch(url, max_bytes=1000, types=IMAGE_TYPES)
    assert caught.value.reason == f"{url} has an invalid host or port"
    assert not caught.value.retryable
    assert resolver.asked == []
    assert client.sent == []


async def test_media_error_survives_a_context_manager_and_notes() -> None:
    fetcher = MediaFetcher(resolver=Table({"evil.test": ["10.0.0.1"]}))
    guarded(fetcher)
    with pytest.raises(MediaError) as caught:
        async with scope():
            await fetcher.fetch("http://evil.test/a.png", max_bytes=10, types=IMAGE_TYPES)
    caught.value.add_note("while publishing")
    assert caught.value.__notes__ == ["while publishing"]


def test_media_error_keeps_its_fields_and_pickles() -> None:
    error = MediaError("http://a.test/x.png", "GET answered 503", retryable=True)
    assert str(error) == "media http://a.test/x.png: GET answered 503"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.url, copy.reason, copy.retryable) == (error.url, error.reason, True)
    assert copy.detail == "GET answered 503"
    assert not MediaError("u", "r").retryable
    refused = MediaError("http://a.test/x.png", "not public", False, "a.test resolves to ::1")
    assert str(refused) == "media http://a.test/x.png: not public"
    assert pickle.loads(pickle.dumps(refused)).detail == "a.test resolves to ::1"


def test_sniff() -> None:
    assert sniff(b"\x89PNG\r\n\x1a\nrest") == "image/png"
    assert sniff(b"\xff\xd8\xff\xe0rest") == "image/jpeg"
    assert sniff(b"GIF89a...") == "image/gif"
    assert sniff(b"GIF87a...") == "image/gif"
    assert sniff(b"RIFF\x10\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert sniff(b"<html>not an image</html>") == ""
    assert sniff(b"") == ""
