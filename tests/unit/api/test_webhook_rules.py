"""Webhook rules that need no database: the settings, the retry schedule, the secret's shape,
the subject the disabling event is relayed on, and the id range the log's pruning reads."""

from __future__ import annotations

import base64
import ipaddress
from datetime import UTC, datetime, timedelta

import pytest

from kairos_api.adapters.orm import id_floor, new_id
from kairos_api.domain import webhooks
from kairos_api.service_layer.relay import subject_of
from kairos_api.settings import ApiSettings
from kairos_common.settings import SettingsError

NOW = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)


def test_the_default_schedule_retries_for_more_than_a_day_and_disables_after_five() -> None:
    settings = ApiSettings.from_env({})
    assert [d.total_seconds() for d in settings.webhook_retry_schedule] == [
        5,
        300,
        1800,
        7200,
        18000,
        36000,
        36000,
    ]
    assert sum(settings.webhook_retry_schedule, timedelta()) == timedelta(
        hours=27, minutes=35, seconds=5
    )
    assert settings.webhook_disable_after == timedelta(days=5)
    assert settings.webhook_allowed_networks == ()
    assert settings.webhook_log_retention == timedelta(days=30)


def test_the_settings_are_read() -> None:
    settings = ApiSettings.from_env(
        {
            "KAIROS_WEBHOOK_RETRY_SCHEDULE_SECONDS": "0.5, 2",
            "KAIROS_WEBHOOK_DISABLE_AFTER_SECONDS": "3",
            "KAIROS_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8, ::1/128",
            "KAIROS_WEBHOOK_LOG_RETENTION_SECONDS": "86400",
        }
    )
    assert settings.webhook_log_retention == timedelta(days=1)
    assert settings.webhook_retry_schedule == (timedelta(seconds=0.5), timedelta(seconds=2))
    assert settings.webhook_disable_after == timedelta(seconds=3)
    assert settings.webhook_allowed_networks == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("KAIROS_WEBHOOK_RETRY_SCHEDULE_SECONDS", "5,soon", "'soon' is not a number of seconds"),
        ("KAIROS_WEBHOOK_RETRY_SCHEDULE_SECONDS", "5,0", "0 must be above 0 and at most 30 days"),
        ("KAIROS_WEBHOOK_RETRY_SCHEDULE_SECONDS", "5,,6", "'' is not a number of seconds"),
        ("KAIROS_WEBHOOK_ALLOWED_NETWORKS", "10.0.0.0/33", "'10.0.0.0/33' is not a network"),
        ("KAIROS_WEBHOOK_DISABLE_AFTER_SECONDS", "0", "below the minimum"),
        ("KAIROS_WEBHOOK_LOG_RETENTION_SECONDS", "59", "below the minimum of 60 seconds"),
    ],
)
def test_bad_settings_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as info:
        ApiSettings.from_env({name: value})
    assert name in str(info.value)
    assert message in str(info.value)


def test_each_failure_waits_its_step_and_the_last_gives_up() -> None:
    schedule = (timedelta(seconds=5), timedelta(minutes=5))
    assert webhooks.next_try(schedule, 1, NOW) == NOW + timedelta(seconds=5)
    assert webhooks.next_try(schedule, 2, NOW) == NOW + timedelta(minutes=5)
    assert webhooks.next_try(schedule, 3, NOW) is None
    assert webhooks.next_try(schedule, 0, NOW) is None


def test_a_secret_is_32_random_bytes_after_whsec() -> None:
    first, second = webhooks.new_secret(), webhooks.new_secret()
    assert first != second
    assert first.startswith("whsec_")
    assert len(base64.b64decode(first.removeprefix("whsec_"), validate=True)) == 32
    assert webhooks.secret_hint(first) == first[:10]


def test_the_disabling_event_has_a_webhook_subject() -> None:
    assert subject_of("acme", "webhook_disabled") == "kairos.events.acme.webhook.disabled"
    assert subject_of("acme", "published") == "kairos.events.acme.post.published"
    assert subject_of("acme", "needs_reauth") == "kairos.events.acme.account.needs_reauth"


def test_ids_made_before_an_instant_are_below_its_floor_and_the_rest_above() -> None:
    floor = id_floor(NOW)
    assert floor.int == int(NOW.timestamp() * 1000) << 80
    made_at = [new_id(NOW) for _ in range(50)]
    assert all(floor <= made for made in made_at)
    assert all(made.version == 7 for made in made_at)
    earlier = [new_id(NOW - timedelta(milliseconds=1)) for _ in range(50)]
    assert all(made < floor for made in earlier)
