"""ListPosts (and ListMedia) page tokens: a keyset cursor in a fixed-size record, checked before
it is used."""

from __future__ import annotations

import base64
import struct
import uuid
from datetime import UTC, datetime, timedelta
from typing import Final, NamedTuple

from kairos_api.adapters.convert import EPOCH
from kairos_common import errors

# key of the page's last post. It is one fixed-size record, sent as unpadded base64url:
#
#     version (1 byte) | fingerprint (8) | has instant (1) | instant, microseconds since the
#     epoch (8, signed) | post id (16)
#
# Bounded and flat rather than signed. A token of any other length is refused before anything is
# decoded, and the fields are read with one struct.unpack, so no token, whatever its size or shape,
# costs more than a few microseconds or nests anything. Signing would stop clients from crafting
# cursors, but a crafted cursor gains them nothing: the tenant and the filters never come from the
# token, so a cursor only chooses where in the caller's own list the page starts (as
# `scheduled_from` can), and every field is checked before it reaches the query. Signing would
# also tie tokens to KAIROS_SECRET_KEY, so that rotating it broke every listing in progress.
# Tokens of the earlier JSON format are refused like any stranger: tokens are short-lived, and a
# client holding one across the upgrade lists again from the first page.
_TOKEN_VERSION: Final = 1
_TOKEN_LAYOUT: Final = struct.Struct(">B8sBq16s")
_TOKEN_LENGTH: Final = (_TOKEN_LAYOUT.size * 4 + 2) // 3  # base64 characters, unpadded
_TOKEN_PADDING: Final = "=" * (-_TOKEN_LENGTH % 4)
_MICROSECOND: Final = timedelta(microseconds=1)
#: The instants a cursor may hold: no post was created or scheduled before 1971, and Python's
#: datetimes end with year 9999.
_CURSOR_MICROS: Final = range(
    (datetime(1971, 1, 1, tzinfo=UTC) - EPOCH) // _MICROSECOND,
    (datetime.max.replace(tzinfo=UTC) - EPOCH) // _MICROSECOND + 1,
)


class Cursor(NamedTuple):
    """Where the next page starts: after the post `post_id`, whose sort key is `at`."""

    at: datetime | None
    post_id: uuid.UUID


def _encode_raw(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def encode_token(fingerprint: bytes, cursor: Cursor) -> str:
    micros = (cursor.at - EPOCH) // _MICROSECOND if cursor.at is not None else 0
    raw = _TOKEN_LAYOUT.pack(
        _TOKEN_VERSION, fingerprint, cursor.at is not None, micros, cursor.post_id.bytes
    )
    return _encode_raw(raw)


def decode_token(
    token: str, fingerprint: bytes, order: str, *, listing: str = "ListPosts"
) -> Cursor:
    """The cursor of a token `listing` (ListPosts, ListMedia) wrote for these filters and this
    order; anything else is refused on `page_token`."""
    if len(token) != _TOKEN_LENGTH:
        raise _not_a_token(listing)
    try:
        raw = base64.urlsafe_b64decode(token + _TOKEN_PADDING)
    except ValueError:  # non-ASCII text, or base64 that does not decode
        raise _not_a_token(listing) from None
    # Decoding skips characters outside the alphabet and ignores the unused low bits of the last
    # one: encoding again is the one check that each token has exactly one spelling.
    if len(raw) != _TOKEN_LAYOUT.size or _encode_raw(raw) != token:
        raise _not_a_token(listing)
    version, found, timed, micros, post_id = _TOKEN_LAYOUT.unpack(raw)
    if version != _TOKEN_VERSION or timed not in (0, 1):
        raise _not_a_token(listing)
    at: datetime | None = None
    if timed:
        if micros not in _CURSOR_MICROS:
            raise _not_a_token(listing)
        at = EPOCH + micros * _MICROSECOND
    elif micros != 0 or order != "scheduled_soonest":  # only unscheduled posts lack an instant
        raise _not_a_token(listing)
    if found != fingerprint:
        raise errors.InvalidArgument.of(
            "page_token", "belongs to a request with other filters or order; start again"
        )
    return Cursor(at, uuid.UUID(bytes=post_id))


def _not_a_token(listing: str) -> errors.InvalidArgument:
    return errors.InvalidArgument.of("page_token", f"is not a token returned by {listing}")
