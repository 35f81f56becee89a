"""The session: one cookie, encrypted and authenticated (Fernet), holding the API key, the CSRF
token and the user's time zone.

The key never reaches the page: the cookie is HttpOnly, so scripts cannot read it, and it is
encrypted, so even its holder sees no key in it. It is SameSite=Strict (another site's pages
cannot send it) and Secure outside development. Fernet stamps it with its time of issue, and a
cookie older than the session lifetime is refused. A visitor who has not signed in also gets one,
with a CSRF token and no key, so the sign-in form is protected like every other.
"""

from __future__ import annotations

import hmac
import json
import secrets
from dataclasses import dataclass, replace
from datetime import timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cryptography.fernet import Fernet, InvalidToken

COOKIE = "kairos_session"
DEFAULT_ZONE = "UTC"


@dataclass(frozen=True)
class Session:
    """What the cookie holds."""

    csrf: str
    key: str = ""
    zone: str = DEFAULT_ZONE

    @property
    def signed_in(self) -> bool:
        return bool(self.key)

    @classmethod
    def new(cls) -> Session:
        return cls(csrf=secrets.token_urlsafe(32))

    def signed_in_as(self, key: str, zone: str) -> Session:
        """A new session for `key`: a new CSRF token too, so a token seen before sign-in (say,
        planted by someone who set the anonymous cookie) is worth nothing after it."""
        return Session(csrf=secrets.token_urlsafe(32), key=key, zone=zone)

    def in_zone(self, zone: str) -> Session:
        return replace(self, zone=zone)

    def csrf_matches(self, token: str) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf.encode(), token.encode())


class Sessions:
    """Turns sessions into cookie values and back."""

    def __init__(self, key: bytes, lifetime: timedelta) -> None:
        self._fernet = Fernet(key)
        self.lifetime = lifetime

    def dump(self, session: Session) -> str:
        data = {"c": session.csrf, "k": session.key, "z": session.zone}
        return self._fernet.encrypt(json.dumps(data, separators=(",", ":")).encode()).decode()

    def load(self, value: str | None) -> Session | None:
        """The session in a cookie value; None when it is missing, forged, altered or old."""
        if not value:
            return None
        try:
            raw = self._fernet.decrypt(value.encode(), ttl=int(self.lifetime.total_seconds()))
            data = json.loads(raw)
            return Session(csrf=str(data["c"]), key=str(data["k"]), zone=valid_zone(data["z"]))
        except (InvalidToken, ValueError, KeyError, TypeError):
            return None


_ZONES: frozenset[str] | None = None


def zones() -> frozenset[str]:
    """Every IANA zone name this machine (or tzdata) knows."""
    global _ZONES
    if _ZONES is None:
        _ZONES = frozenset(available_timezones())
    return _ZONES


def valid_zone(name: object) -> str:
    """`name` when it is an IANA zone, else UTC."""
    if isinstance(name, str) and name in zones():
        try:
            ZoneInfo(name)
            return name
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return DEFAULT_ZONE
