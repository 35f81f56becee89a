"""Which network addresses Kairos may connect to on a tenant's behalf: public ones only.

A tenant chooses URLs that Kairos then requests (webhook endpoints, media to download). Such a
request must not reach inside the network Kairos runs in (server-side request forgery), so an
address is refused when it is loopback, private, link-local, shared, reserved, multicast or a
cloud metadata service, and an IPv6 address that carries an IPv4 one (IPv4-mapped, 6to4, NAT64)
is judged by that IPv4 address, which is where it leads.

The api applies these rules to an address written in a URL when the URL is registered; the
publisher applies them to every address a host name resolves to, just before it connects
(`kairos_publisher.egress`). Networks can be exempted on purpose, for development and tests.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: IPv6 prefixes that carry an IPv4 address in their low 32 bits, reaching that IPv4 host
#: (NAT64, RFC 6052 and RFC 8215); 6to4 (2002::/16) is `IPv6Address.sixtofour`.
NAT64 = (
    ipaddress.IPv6Network("64:ff9b::/96"),
    ipaddress.IPv6Network("64:ff9b:1::/48"),
)
#: Cloud metadata services, named in refusals (each is refused as private or link-local anyway).
METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)


def refusal(address: Address, allowed_networks: Collection[Network] = ()) -> str:
    """Why `address` may not be connected to, or "" when it may: "a private address", or for
    an address carrying another, "a private address, as 10.0.0.1 inside 2002:a00:1::"."""
    if any(address in network for network in allowed_networks):
        return ""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = embedded_ipv4(address)
        if embedded is not None:
            why = refusal(embedded, allowed_networks)
            return f"{why}, as {embedded} inside {address}" if why else ""
    if address in METADATA:
        return "a cloud metadata address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_private:
        return "a private address"
    if address.is_reserved or not address.is_global:
        return "a shared or reserved address"
    return ""


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 host an IPv6 address reaches through mapping, 6to4 or NAT64, if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in prefix for prefix in NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def parse_address(text: str) -> Address | None:
    """`text` as an IP address (any IPv6 zone dropped), or None when it is not one."""
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def parse_networks(value: str) -> tuple[Network, ...]:
    """`127.0.0.0/8, ::1/128` → networks (a bare address is a network of one); raises
    ValueError naming a bad item."""
    networks: list[Network] = []
    for item in value.split(","):
        item = item.strip()
        if item:
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"{item[:60]!r} is not a network (CIDR)") from None
    return tuple(networks)
