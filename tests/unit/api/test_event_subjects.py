"""Lifecycle event subjects carry the tenant as one token; WatchEvents cursors parse strictly."""

from __future__ import annotations

import itertools

import pytest

from kairos_api.service_layer.relay import subject_of
from kairos_api.service_layer.watch import format_cursor, parse_cursor
from kairos_common import errors
from kairos_common.streams import tenant_subjects, tenant_token


def test_a_tenant_is_one_token_and_no_two_tenants_share_one() -> None:
    assert tenant_token("acme") == "acme"
    assert tenant_token("acme.eu") == "acme_2Eeu"
    assert tenant_token("a_b") == "a_5Fb"
    assert tenant_token("a._b-1") == "a_2E_5Fb-1"
    # Every id of up to four characters from the tenant alphabet's awkward part.
    alphabet = "a_.-"
    ids = ["".join(p) for n in range(1, 5) for p in itertools.product(alphabet, repeat=n)]
    tokens = {tenant_token(i) for i in ids}
    assert len(tokens) == len(ids)
    assert not any("." in token for token in tokens)


def test_each_family_has_its_subject() -> None:
    assert subject_of("acme.eu", "published") == "kairos.events.acme_2Eeu.post.published"
    assert subject_of("acme", "needs_reauth") == "kairos.events.acme.account.needs_reauth"
    assert subject_of("acme", "webhook_disabled") == "kairos.events.acme.webhook.disabled"
    assert tenant_subjects("a_b") == "kairos.events.a_5Fb.>"


def test_a_cursor_round_trips_and_anything_else_is_refused() -> None:
    assert parse_cursor(format_cursor(42)) == 42
    assert format_cursor(7) == "v1.7"
    for bad in ("", "42", "v1.", "v1.-1", "v1.4x", "v2.4", "v1.٣"):
        with pytest.raises(errors.InvalidArgument) as refused:
            parse_cursor(bad)
        assert [v.field for v in refused.value.violations] == ["cursor"]
