"""The address rules the api (at registration) and the publisher (before connecting) share: one
copy, so that an address refused by one is refused by the other."""

from __future__ import annotations

import ipaddress

import pytest

from kairos_api.domain import webhooks as registration
from kairos_common.addresses import embedded_ipv4, parse_address, parse_networks, refusal
from kairos_publisher.egress import EgressGuard

LOCAL = parse_networks("127.0.0.0/8")


@pytest.mark.parametrize(
    ("address", "embedded", "why"),
    [
        ("::ffff:10.0.0.1", "10.0.0.1", "a private address"),
        ("2002:a00:1::", "10.0.0.1", "a private address"),
        ("2002:7f00:1::1", "127.0.0.1", "a loopback address"),
        ("64:ff9b::a9fe:a9fe", "169.254.169.254", "a cloud metadata address"),
        ("64:ff9b:1::a00:1", "10.0.0.1", "a private address"),
    ],
)
def test_an_ipv6_address_carrying_an_ipv4_one_is_judged_by_it(
    address: str, embedded: str, why: str
) -> None:
    parsed = ipaddress.IPv6Address(address)
    assert embedded_ipv4(parsed) == ipaddress.IPv4Address(embedded)
    assert refusal(parsed) == f"{why}, as {embedded} inside {parsed}"
    # The publisher's guard and the api's registration check give the same verdict.
    assert EgressGuard().refusal(parsed) == refusal(parsed)
    [violation] = registration.url_violations(f"https://[{address}]/in", "url", allow_http=False)
    assert violation.description == (
        f"must not point at {why}, as {embedded} inside {parsed}; "
        "Kairos only calls public addresses"
    )


def test_an_allowed_network_exempts_the_ipv4_address_carried_too() -> None:
    assert refusal(ipaddress.ip_address("2002:7f00:1::1"), LOCAL) == ""
    assert refusal(ipaddress.ip_address("::ffff:127.0.0.1"), LOCAL) == ""
    assert refusal(ipaddress.ip_address("2002:a00:1::"), LOCAL) != ""


def test_public_addresses_pass_and_others_are_not_embedding() -> None:
    for text in ("93.184.216.34", "2606:4700::1111", "2002:5db8:d822::1", "64:ff9b::808:808"):
        assert refusal(ipaddress.ip_address(text)) == ""
    assert embedded_ipv4(ipaddress.IPv6Address("2606:4700::1111")) is None


def test_parse_address() -> None:
    assert parse_address("fe80::1%eth0") == ipaddress.IPv6Address("fe80::1")
    assert parse_address("10.0.0.1") == ipaddress.IPv4Address("10.0.0.1")
    assert parse_address("hooks.example.com") is None


def test_parse_networks() -> None:
    assert parse_networks(" 127.0.0.0/8 , ::1/128,,10.0.0.1 ") == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
        ipaddress.ip_network("10.0.0.1/32"),
    )
    assert parse_networks("10.1.2.3/8") == (ipaddress.ip_network("10.0.0.0/8"),)
    assert parse_networks("") == ()


@pytest.mark.parametrize(
    ("value", "bad"),
    [
        ("127.0.0.0/8, localhost", "localhost"),
        ("10.0.0.0/33", "10.0.0.0/33"),
        ("::1/129,127.0.0.1/32", "::1/129"),
        ("127.0.0.1/32, 300.1.1.1", "300.1.1.1"),
        ("x" * 100, "x" * 60),
    ],
)
def test_parse_networks_names_the_bad_item(value: str, bad: str) -> None:
    with pytest.raises(ValueError, match="is not a network") as caught:
        parse_networks(value)
    assert str(caught.value) == f"{bad!r} is not a network (CIDR)"
