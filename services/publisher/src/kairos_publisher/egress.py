"""The guard on requests the publisher makes to URLs a tenant chose: media it downloads and
webhook endpoints it POSTs to.

Such a URL must not reach inside the network the publisher runs in (server-side request
forgery). Its host is resolved and every address it resolves to must be a public one (no
loopback, private, link-local, shared, multicast or cloud metadata address; the rules, which the
api also applies at registration, are `kairos_common.addresses`). The connection then
goes to the address that was checked, so a second DNS answer cannot swap it (DNS rebinding),
while the Host header and the TLS server name (SNI, and the certificate check) stay the URL's
host name. `allowed_networks` exempts networks on purpose, for development and tests.

A pinned request must go through `guarded_client()`: it never reuses a connection (a pooled TLS
connection is keyed by address and would carry another host name's request past that name's
certificate check), ignores proxies from the environment (the connection must go to the checked
address) and follows no redirect (each hop must be checked again by its caller).

A refusal tells the tenant only fixed words (`NOT_PUBLIC`, `UNRESOLVED`); what the names
resolved to goes to the publisher's log.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from kairos_common.addresses import Address, Network, parse_address, refusal

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

#: What a tenant is told of a host refused for its addresses, and of one that does not resolve.
#: Fixed words: the addresses and the resolver's error would tell a tenant what names inside
#: the network resolve to (a probe of it), so they go only to the publisher's log (`detail`).
NOT_PUBLIC = "the host does not resolve to a public address"
UNRESOLVED = "the host name does not resolve"


class Refused(Exception):
    """Why a URL may not be requested; `retryable` when asking later may help (a name that does
    not resolve now). `reason` may be shown to the tenant; `detail` says more (the addresses, the
    resolver's error) and is for the operator's log only. Not a frozen dataclass, for the reason
    `MediaError` gives."""

    def __init__(self, reason: str, retryable: bool = False, detail: str = "") -> None:
        super().__init__(reason, retryable, detail)
        self.reason = reason
        self.retryable = retryable
        self.detail = detail or reason

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
        return refusal(address, self.allowed_networks)

    async def pin(self, url: str) -> Pinned:
        """Resolve the URL's host and check every address; raises Refused saying what is wrong
        (in its `detail`, the addresses and resolver errors the tenant is not told)."""
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
        literal = parse_address(host)
        if literal is not None:
            addresses = [literal]  # an address in the URL is checked as is, no resolver asked
        else:
            try:
                addresses = [_resolved(a) for a in await self.resolver(host, port)]
            except (OSError, ValueError) as error:
                detail = f"cannot resolve {host}: {error}"
                raise Refused(UNRESOLVED, retryable=True, detail=detail) from None
        if not addresses:
            raise Refused(UNRESOLVED, retryable=True, detail=f"{host} resolves to no address")
        for address in addresses:
            why = self.refusal(address)
            if why:
                raise Refused(NOT_PUBLIC, detail=f"{host} resolves to {address}, {why}; refused")
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


def _resolved(text: str) -> Address:
    """An address a resolver answered; raises ValueError when it is not one."""
    address = parse_address(text)
    if address is None:
        raise ValueError(f"{text!r} is not an address")
    return address
