"""The guard on requests the publisher makes to URLs a tenant chose: media it downloads and
webhook endpoints it POSTs to.

Such a URL must not reach inside the network the publisher runs in (server-side request
forgery). Its host is resolved and every address it resolves to must be a public one (no
loopback, private, link-local, shared, multicast or cloud metadata address). The connection then
goes to the address that was checked, so a second DNS answer cannot swap it (DNS rebinding),
while the Host header and the TLS server name (SNI, and the certificate check) stay the URL's
host name. `allowed_networks` exempts networks on purpose, for development and tests.

A pinned request must go through `guarded_client()`: it never reuses a connection (a pooled TLS
connection is keyed by address and would carry another host name's request past that name's
certificate check), ignores proxies from the environment (the connection must go to the checked
address) and follows no redirect (each hop must be checked again by its caller).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

#: IPv6 prefixes that carry an IPv4 address in their low 32 bits, reaching that IPv4 host
#: (NAT64, RFC 6052 and RFC 8215); 6to4 (2002::/16) is `IPv6Address.sixtofour`.
_NAT64 = (
    ipaddress.IPv6Network("64:ff9b::/96"),
    ipaddress.IPv6Network("64:ff9b:1::/48"),
)
#: Cloud metadata services, named in refusals (each is refused as private or link-local anyway).
_METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)


class Refused(Exception):
    """Why a URL may not be requested; `retryable` when asking later may help (a name that does
    not resolve now). Not a frozen dataclass, for the reason `MediaError` gives."""

    def __init__(self, reason: str, retryable: bool = False) -> None:
        super().__init__(reason, retryable)
        self.reason = reason
        self.retryable = retryable

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True)
class Pinned:
    """A URL whose host was resolved and checked: where to connect, and what to tell the server."""

    #: The URL with the checked address in place of the host name.
    target: str
    #: The Host header: the URL's host (and port, when the URL names one).
    host: str
    #: The TLS server name: the URL's host, IDNA-encoded.
    sni_hostname: str
    #: The address connected to.
    address: Address = field(repr=False)

    def request(
        self,
        client: httpx.AsyncClient,
        method: str,
        *,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
    ) -> httpx.Request:
        """A request to the checked address with the URL's host name; raises ValueError when
        httpx cannot make one of the URL."""
        try:
            return client.build_request(
                method,
                self.target,
                headers={"host": self.host, **(headers or {})},
                content=content,
                extensions={"sni_hostname": self.sni_hostname},
            )
        except httpx.InvalidURL as error:
            raise ValueError(str(error)) from None


async def system_resolver(host: str, port: int) -> Sequence[str]:
    """Every address the system resolver gives for `host`."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return [str(info[4][0]) for info in infos]


class EgressGuard:
    """Checks the addresses behind URLs, exempting `allowed_networks`."""

    def __init__(
        self, allowed_networks: Collection[Network] = (), resolver: Resolver = system_resolver
    ) -> None:
        self.allowed_networks = tuple(allowed_networks)
        self.resolver = resolver

    def refusal(self, address: Address) -> str:
        """Why `address` may not be connected to, or "" when it may."""
        if any(address in network for network in self.allowed_networks):
            return ""
        if isinstance(address, ipaddress.IPv6Address):
            embedded = _embedded_ipv4(address)
            if embedded is not None:
                why = self.refusal(embedded)
                return f"{why}, as {embedded} inside {address}" if why else ""
        if address in _METADATA:
            return "a cloud metadata address"
        if address.is_unspecified:
            return "the unspecified address"
        if address.is_loopback:
            return "a loopback address"
        if address.is_link_local:
            return "a link-local address (cloud metadata lives there)"
        if address.is_multicast:
            return "a multicast address"
        if address.is_private:
            return "a private address"
        if address.is_reserved or not address.is_global:
            return "a shared or reserved address"
        return ""

    async def pin(self, url: str) -> Pinned:
        """Resolve the URL's host and check every address; raises Refused naming what is wrong."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Refused(f"{url} is not an http(s) URL with a host")
        try:
            explicit_port = parts.port
            # The name as DNS, the Host header and SNI carry it (IDNA, as getaddrinfo encodes).
            host = parts.hostname.encode("idna").decode("ascii")
        except (ValueError, UnicodeError):
            raise Refused(f"{url} has an invalid host or port") from None
        port = explicit_port or (443 if parts.scheme == "https" else 80)
        literal = _address(host)
        if literal is not None:
            addresses = [literal]  # an address in the URL is checked as is, no resolver asked
        else:
            try:
                addresses = [_resolved(a) for a in await self.resolver(host, port)]
            except (OSError, ValueError) as error:
                raise Refused(f"cannot resolve {host}: {error}", retryable=True) from None
        if not addresses:
            raise Refused(f"{host} resolves to no address", retryable=True)
        for address in addresses:
            why = self.refusal(address)
            if why:
                raise Refused(f"{host} resolves to {address}, {why}; refused")
        pinned = addresses[0]
        netloc = f"[{pinned}]" if pinned.version == 6 else str(pinned)
        named = f"[{host}]" if ":" in host else host
        return Pinned(
            target=parts._replace(netloc=f"{netloc}:{port}").geturl(),
            host=named if explicit_port is None else f"{named}:{explicit_port}",
            sni_hostname=host,
            address=pinned,
        )


def guarded_client(timeout: float) -> httpx.AsyncClient:
    """The HTTP client pinned requests go through (see the module's docstring)."""
    return httpx.AsyncClient(
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
        limits=httpx.Limits(max_keepalive_connections=0),
    )


def _address(text: str) -> Address | None:
    """`text` as an IP address (any IPv6 zone dropped), or None when it is not one."""
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def _resolved(text: str) -> Address:
    """An address a resolver answered; raises ValueError when it is not one."""
    address = _address(text)
    if address is None:
        raise ValueError(f"{text!r} is not an address")
    return address


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 host an IPv6 address reaches through mapping, 6to4 or NAT64, if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in prefix for prefix in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def parse_networks(value: str) -> list[Network]:
    """`127.0.0.0/8, ::1/128` → networks; raises ValueError naming a bad item."""
    networks: list[Network] = []
    for item in value.split(","):
        item = item.strip()
        if item:
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"{item!r} is not a network (CIDR)") from None
    return networks
