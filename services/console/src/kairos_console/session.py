"""The session: one cookie, encrypted and authenticated (Fernet), holding the API key, the CSRF
token and the user's time zone.

The key never reaches the page: the cookie is HttpOnly, so scripts cannot read it, and it is
encrypted, so even its holder sees no key in it. It is SameSite=Strict (another site's pages
cannot send it) and Secure outside development, where its name takes the `__Host-` prefix (the
browser then keeps it only from this host, over HTTPS, for the whole site: a neighbouring
subdomain cannot plant one). It holds the time of sign-in, and a session older than the lifetime
is refused however often its cookie was written again since. A visitor who has not signed in also
gets one, with a CSRF token and no key, so the sign-in form is protected like every other.

Sessions are not stored on the server: signing out replaces the browser's cookie, but a copy of
the old one taken before would still work until the lifetime ends.
"""

from __future__ import annotations

import functools
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field, replace
from datetime import timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cryptography.fernet import Fernet, InvalidToken

COOKIE = "kairos_session"
#: The cookie's name when it is Secure.
SECURE_COOKIE = f"__Host-{COOKIE}"
DEFAULT_ZONE = "UTC"


@dataclass(frozen=True)
class Session:
    """What the cookie holds."""

    csrf: str
    key: str = ""
    zone: str = DEFAULT_ZONE
    #: When the user signed in (or the visitor arrived), in Unix seconds.
    since: float = field(default_factory=time.time)

    @property
    def signed_in(self) -> bool:
        return bool(self.key)

    @classmethod
    def new(cls) -> Session:
        return cls(csrf=secrets.token_urlsafe(32))

    def signed_in_as(self, key: str, zone: str) -> Session:
        """A new session for `key`: a new CSRF token too, so a token seen before sign-in (say,
        planted by someone who set the anonymous cookie) is worth nothing after it."""
        return Session(csrf=secrets.token_urlsafe(32), key=key, zone=zone, since=time.time())

    def in_zone(self, zone: str) -> Session:
        return replace(self, zone=zone)

    def csrf_matches(self, token: str) -> bool:
        # A header of other bytes arrives as a string of surrogates: no token of ours.
        if not token or not token.isascii():
            return False
        return hmac.compare_digest(self.csrf.encode(), token.encode())


class Sessions:
    """Turns sessions into cookie values and back."""

    def __init__(self, key: bytes, lifetime: timedelta, *, secure: bool = True) -> None:
        self._fernet = Fernet(key)
        self.lifetime = lifetime
        #: The cookie's name.
        self.cookie = SECURE_COOKIE if secure else COOKIE

    def dump(self, session: Session) -> str:
        data = {"c": session.csrf, "k": session.key, "z": session.zone, "t": session.since}
        return self._fernet.encrypt(json.dumps(data, separators=(",", ":")).encode()).decode()

    def load(self, value: str | None) -> Session | None:
        """The session in a cookie value; None when it is missing, forged, altered or old."""
        if not value:
            return None
        try:
            lifetime = self.lifetime.total_seconds()
            raw = self._fernet.decrypt(value.encode(), ttl=int(lifetime))
            data = json.loads(raw)
            since = float(data["t"])
            if not time.time() - lifetime <= since <= time.time() + 60:
                return None  # signed in too long ago (the cookie was written again since)
            return Session(
                csrf=str(data["c"]), key=str(data["k"]), zone=valid_zone(data["z"]), since=since
            )
        except (InvalidToken, ValueError, KeyError, TypeError, UnicodeError):
            return None


@functools.cache
def zones() -> frozenset[str]:
    """Every IANA zone name this machine (or tzdata) knows."""
    return frozenset(available_timezones())


@functools.cache
def zone_names() -> tuple[str, ...]:
    """`zones()` in order, for the forms' lists."""
    return tuple(sorted(zones()))


def valid_zone(name: object) -> str:
    """`name` when it is an IANA zone, else UTC."""
    if isinstance(name, str) and name in zones():
        try:
            ZoneInfo(name)
            return name
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return DEFAULT_ZONE
