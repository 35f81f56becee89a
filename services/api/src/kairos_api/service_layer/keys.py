"""API keys: random, shown once, stored as SHA-256, each mapped to one tenant."""

from __future__ import annotations

import hashlib
import re
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select

from kairos_api.adapters.orm import ApiKey, utcnow
from kairos_api.service_layer.unit_of_work import UnitOfWork
from kairos_common import errors

KEY_PREFIX = "kairos_"
TENANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def hash_key(key: str) -> bytes:
    """What `api_keys.key_hash` holds: the SHA-256 digest (32 bytes) of the whole key as UTF-8.

    Keys carry 256 random bits, so a plain fast hash is enough: there is nothing to guess.
    """
    return hashlib.sha256(key.encode()).digest()


@dataclass(frozen=True)
class CreatedKey:
    """A new key: `key` is shown to the user once and never stored."""

    id: uuid.UUID
    tenant_id: str
    key: str


async def create_key(uow: UnitOfWork, tenant_id: str, label: str = "") -> CreatedKey:
    """Make a new key for `tenant_id` (letters, digits, `_`, `.`, `-`; at most 64)."""
    if not TENANT_PATTERN.match(tenant_id):
        raise errors.InvalidArgument.of(
            "tenant",
            "must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit",
        )
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    async with uow:
        row = ApiKey(tenant_id=tenant_id, prefix=key[:12], key_hash=hash_key(key), label=label)
        uow.session.add(row)
        await uow.commit()
        return CreatedKey(row.id, tenant_id, key)


async def revoke_key(uow: UnitOfWork, key_or_id: str) -> ApiKey:
    """Revoke a key given either the key itself or its id."""
    async with uow:
        query = select(ApiKey)
        try:
            query = query.where(ApiKey.id == uuid.UUID(key_or_id))
        except ValueError:
            query = query.where(ApiKey.key_hash == hash_key(key_or_id))
        row = (await uow.session.execute(query)).scalar_one_or_none()
        if row is None:
            raise errors.NotFound("no such API key")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        await uow.commit()
        return row


async def list_keys(uow: UnitOfWork, tenant_id: str | None = None) -> list[ApiKey]:
    async with uow:
        query = select(ApiKey).order_by(ApiKey.created_at)
        if tenant_id is not None:
            query = query.where(ApiKey.tenant_id == tenant_id)
        return list((await uow.session.execute(query)).scalars())


class KeyResolver:
    """Maps a presented key to its tenant, with a short cache so each call costs no query.

    A revocation made in this process takes effect at once; one made elsewhere within `ttl`.
    The cache keeps at most `max_entries` keys, dropping the least recently used: unknown keys
    are cached too (so a client retrying a bad key costs no query), and without a bound a
    caller sending ever new bad keys would grow it without end.
    """

    def __init__(
        self, new_uow: Callable[[], UnitOfWork], ttl: float = 5.0, max_entries: int = 10_000
    ) -> None:
        self._new_uow = new_uow
        self._ttl = ttl
        self._max_entries = max_entries
        self._cache: OrderedDict[bytes, tuple[str | None, float]] = OrderedDict()

    async def tenant_of(self, key: str) -> str:
        digest = hash_key(key)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > now:
            tenant = cached[0]
            self._cache.move_to_end(digest)
        else:
            async with self._new_uow() as uow:
                row = (
                    await uow.session.execute(select(ApiKey).where(ApiKey.key_hash == digest))
                ).scalar_one_or_none()
            tenant = row.tenant_id if row is not None and row.revoked_at is None else None
            self._remember(digest, tenant, now + self._ttl)
        if tenant is None:
            raise errors.Unauthenticated("the API key is unknown or revoked")
        return tenant

    def _remember(self, digest: bytes, tenant: str | None, expires: float) -> None:
        self._cache[digest] = (tenant, expires)
        self._cache.move_to_end(digest)
        while len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)

    def cached_keys(self) -> int:
        """How many keys the cache holds now."""
        return len(self._cache)

    def forget(self) -> None:
        self._cache.clear()
