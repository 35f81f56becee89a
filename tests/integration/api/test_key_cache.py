"""The API key cache stays bounded however many distinct bad keys callers send."""

from __future__ import annotations

import asyncio

import pytest

from kairos_api.service_layer import keys
from kairos_api.service_layer.keys import KeyResolver
from kairos_common import errors
from support.api import RunningApi


async def test_the_cache_keeps_at_most_its_bound_dropping_the_least_recently_used(
    api: RunningApi,
) -> None:
    tenant, good = await api.new_key()
    resolver = KeyResolver(api.service.app.uow, max_entries=3)
    assert await resolver.tenant_of(good) == tenant

    for n in range(20):
        with pytest.raises(errors.Unauthenticated):
            await resolver.tenant_of(f"kairos_bad-{n}")
        assert await resolver.tenant_of(good) == tenant  # used again: the most recent
        assert resolver.cached_keys() <= 3

    assert resolver.cached_keys() == 3


async def test_an_evicted_key_is_read_again_from_its_row(
    api: RunningApi,
) -> None:
    """Eviction really drops an entry: the next call reads the row (now revoked) again."""
    tenant, key = await api.new_key()
    resolver = KeyResolver(api.service.app.uow, max_entries=2)
    assert await resolver.tenant_of(key) == tenant
    await keys.revoke_key(api.service.app.uow(), key)
    assert await resolver.tenant_of(key) == tenant  # within the ttl, from the cache

    for n in range(2):  # two other keys push it out of a cache of two
        with pytest.raises(errors.Unauthenticated):
            await resolver.tenant_of(f"kairos_bad-{n}")
    with pytest.raises(errors.Unauthenticated):
        await resolver.tenant_of(key)


async def test_a_revocation_made_elsewhere_takes_effect_when_the_ttl_runs_out(
    api: RunningApi,
) -> None:
    """`keys revoke` runs as its own process: a serving api learns of it within the ttl."""
    tenant, key = await api.new_key()
    resolver = KeyResolver(api.service.app.uow, ttl=0.3)
    assert await resolver.tenant_of(key) == tenant
    await keys.revoke_key(api.service.app.uow(), key)  # not through this resolver
    assert await resolver.tenant_of(key) == tenant  # still cached
    await asyncio.sleep(0.4)
    with pytest.raises(errors.Unauthenticated):
        await resolver.tenant_of(key)
