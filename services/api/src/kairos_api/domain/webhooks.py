"""Rules of outbound webhooks that need no database: which URLs an endpoint may have, what its
secret looks like, and when a failed delivery is tried again.

A URL is checked when it is registered: absolute https (http only where the api allows it, in
development), no credentials, at most `MAX_URL_LENGTH` characters, and no address written in
it that Kairos may not call (loopback, private, link-local, cloud metadata, or an IPv6 address
carrying such an IPv4 one: the rules of `kairos_common.addresses`, which the publisher applies
too). Host names are not resolved here: the publisher checks every address a name resolves to
when it sends, which is the guard that counts (a name can change what it points at after
registration).
"""

from __future__ import annotations

import base64
import ipaddress
import re
import secrets
import unicodedata
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from kairos_common.addresses import Network, embedded_ipv4, parse_address, refusal
from kairos_common.errors import FieldViolation

MAX_URL_LENGTH = 2000
MAX_DESCRIPTION_LENGTH = 500
SECRET_PREFIX = "whsec_"
#: Characters of the secret kept in clear to tell secrets apart: "whsec_" and four more.
HINT_LENGTH = len(SECRET_PREFIX) + 4

# One DNS label: letters, digits and inner hyphens (xn-- names included), 63 at most.
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_HOST_NAME = re.compile(rf"{_LABEL}(\.{_LABEL})*\.?")


def new_secret() -> str:
    """A signing secret as Standard Webhooks writes them: "whsec_" and base64 of 32 random
    bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_hint(secret: str) -> str:
    return secret[:HINT_LENGTH]


def url_violations(
    url: str, field: str, *, allow_http: bool, allowed_networks: Collection[Network] = ()
) -> list[FieldViolation]:
    """What is wrong with an endpoint URL, reported on `field`; empty when it may be registered."""
    found: list[FieldViolation] = []
    if len(url) > MAX_URL_LENGTH:
        found.append(
            FieldViolation(
                field, f"is {len(url):,} characters long; at most {MAX_URL_LENGTH:,} are allowed"
            )
        )
    problem = _url_problem(url, allow_http, allowed_networks)
    if problem is not None:
        found.append(FieldViolation(field, problem))
    return found


def _url_problem(url: str, allow_http: bool, allowed_networks: Collection[Network]) -> str | None:
    """The first problem of a URL, or None. Later checks assume the earlier ones passed."""
    wanted = "an absolute https URL, e.g. https://hooks.example.com/kairos"
    if not url:
        return f"is required; it must be {wanted}"
    # Before parsing: urlsplit drops tabs and newlines without a word.
    if any(char.isspace() or unicodedata.category(char) == "Cc" for char in url):
        return "must not contain spaces or control characters (percent-encode them)"
    try:
        parts = urlsplit(url)
        port = parts.port  # reading the port is what refuses "https://host:99999/"
    except ValueError as error:
        return f"is not a valid URL ({error})"
    scheme = parts.scheme.lower()
    if not scheme or url.startswith("//"):
        return f"is not absolute; it must be {wanted}"
    if scheme == "http" and not allow_http:
        return "must use https; http is allowed only in development"
    if scheme not in ("https", "http"):
        return f"must use https, not {scheme!r}"
    if parts.username is not None or parts.password is not None:
        return "must not contain credentials (user:password@); the signature proves the sender"
    if parts.fragment:
        return "must not have a fragment (#...); it is never sent"
    host = parts.hostname
    if not host:
        return f"has no host name; it must be {wanted}"
    if port == 0:
        return "has an invalid port 0"
    address = parse_address(host)
    if address is None:
        if "[" in parts.netloc or not _HOST_NAME.fullmatch(host):
            return f"has an invalid host name {host!r}"
        return None
    why = refusal(address, allowed_networks)
    if not why:
        return None
    # An address carrying another (6to4, NAT64, IPv4-mapped) is already named in `why`.
    if not isinstance(address, ipaddress.IPv6Address) or embedded_ipv4(address) is None:
        why = f"{why} ({address})"
    return f"must not point at {why}; Kairos only calls public addresses"


def next_try(schedule: Sequence[timedelta], failed_tries: int, now: datetime) -> datetime | None:
    """When a delivery is tried again after its `failed_tries`-th failure in a row (counted from
    its last redelivery), or None when the schedule is used up and it is given up."""
    if failed_tries < 1 or failed_tries > len(schedule):
        return None
    return now + schedule[failed_tries - 1]
