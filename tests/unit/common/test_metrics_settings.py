"""Where each service serves its metrics: KAIROS_METRICS_HOST, KAIROS_METRICS_PORT (0: off) and
KAIROS_METRICS_REFRESH_SECONDS, each bad value named."""

from __future__ import annotations

from datetime import timedelta

import pytest

from kairos_api.settings import ApiSettings
from kairos_common.metrics import MetricsSettings, metrics_settings
from kairos_common.settings import Env, SettingsError
from kairos_publisher.settings import PublisherSettings
from kairos_scheduler.settings import SchedulerSettings


def test_each_service_has_its_own_default_port_on_the_loopback() -> None:
    ports = {
        settings.metrics.port: settings.metrics.host
        for settings in (
            ApiSettings.from_env({}),
            SchedulerSettings.from_env({}),
            PublisherSettings.from_env({}),
        )
    }
    assert ports == {9461: "127.0.0.1", 9462: "127.0.0.1", 9463: "127.0.0.1"}
    assert SchedulerSettings.from_env({}).metrics.url == "http://127.0.0.1:9462/metrics"


def test_the_settings_are_read_and_port_0_switches_metrics_off() -> None:
    environ = {
        "KAIROS_METRICS_HOST": "0.0.0.0",
        "KAIROS_METRICS_PORT": "9999",
        "KAIROS_METRICS_REFRESH_SECONDS": "0.5",
    }
    assert PublisherSettings.from_env(environ).metrics == MetricsSettings(
        host="0.0.0.0", port=9999, refresh=timedelta(seconds=0.5)
    )
    off = metrics_settings(Env({"KAIROS_METRICS_PORT": "0"}), 9461)
    assert not off.enabled
    assert metrics_settings(Env({}), 9461).enabled
    assert MetricsSettings(host="::1", port=1).url == "http://[::1]:1/metrics"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"KAIROS_METRICS_PORT": "web"}, "KAIROS_METRICS_PORT='web' is not a whole number"),
        ({"KAIROS_METRICS_PORT": "65536"}, "KAIROS_METRICS_PORT=65536 is above the maximum"),
        ({"KAIROS_METRICS_PORT": "-1"}, "KAIROS_METRICS_PORT=-1 is below the minimum of 0"),
        ({"KAIROS_METRICS_HOST": "a b"}, "KAIROS_METRICS_HOST='a b' is not a host"),
        ({"KAIROS_METRICS_HOST": "http://x"}, "KAIROS_METRICS_HOST='http://x' is not a host"),
        ({"KAIROS_METRICS_REFRESH_SECONDS": "0"}, "KAIROS_METRICS_REFRESH_SECONDS=0 is below"),
    ],
)
def test_a_bad_value_is_named(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as error:
        SchedulerSettings.from_env(environ)
    assert str(error.value).startswith(message), str(error.value)
