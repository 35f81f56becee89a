"""Settings come from KAIROS_* variables, default to what works locally, and name bad values."""

from __future__ import annotations

from datetime import timedelta

import pytest

from kairos_api.settings import ApiSettings
from kairos_common.settings import CommonSettings, Env, SettingsError
from kairos_publisher.settings import PublisherSettings
from kairos_scheduler.settings import SchedulerSettings


def test_defaults_work_without_any_variable() -> None:
    settings = ApiSettings.from_env({})
    assert settings.server.addr == "127.0.0.1:50051"
    assert settings.server.reflection is True
    assert settings.common.nats_url == "nats://127.0.0.1:4222"
    assert settings.common.log.format == "plain"
    assert SchedulerSettings.from_env({}).server.addr == "127.0.0.1:50052"
    assert PublisherSettings.from_env({}).server.addr == "127.0.0.1:50053"


def test_variables_are_read_into_frozen_objects() -> None:
    environ = {
        "KAIROS_DATABASE_URL": "sqlite:///kairos.db",
        "KAIROS_NATS_URL": "nats://a:4222,nats://b:4222",
        "KAIROS_API_ADDR": "0.0.0.0:6000",
        "KAIROS_API_TARGET": "api:6000",
        "KAIROS_SECRET_KEY": "k" * 40,
        "KAIROS_LOG_FORMAT": "JSON",
        "KAIROS_GRPC_REFLECTION": "off",
        "KAIROS_GRACE_SECONDS": "2.5",
    }
    settings = ApiSettings.from_env(environ)
    assert settings.common.database_url == "sqlite:///kairos.db"
    assert settings.common.nats_url == "nats://a:4222,nats://b:4222"
    assert settings.server.addr == "0.0.0.0:6000"
    assert settings.common.api_target == "api:6000"
    assert settings.common.log.format == "json"
    assert settings.server.reflection is False
    assert settings.server.grace == timedelta(seconds=2.5)
    with pytest.raises(AttributeError):
        settings.common.nats_url = "x"  # type: ignore[misc]


def test_secrets_stay_out_of_the_repr() -> None:
    settings = CommonSettings.from_env(
        {"KAIROS_SECRET_KEY": "s3cr3t-key-value-that-is-long-enough"}
    )
    assert "s3cr3t" not in repr(settings)


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"KAIROS_API_ADDR": "no-port"}, "KAIROS_API_ADDR"),
        ({"KAIROS_API_ADDR": "host:99999"}, "KAIROS_API_ADDR"),
        ({"KAIROS_LOG_FORMAT": "xml"}, "KAIROS_LOG_FORMAT"),
        ({"KAIROS_GRACE_SECONDS": "soon"}, "KAIROS_GRACE_SECONDS"),
        ({"KAIROS_GRACE_SECONDS": "-1"}, "KAIROS_GRACE_SECONDS"),
        ({"KAIROS_GRPC_REFLECTION": "maybe"}, "KAIROS_GRPC_REFLECTION"),
        ({"KAIROS_NATS_REPLICAS": "0"}, "KAIROS_NATS_REPLICAS"),
    ],
)
def test_bad_values_fail_naming_the_variable(environ: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        ApiSettings.from_env(environ)


def test_env_integer_reads_and_checks() -> None:
    env = Env({"N": " 7 "})
    assert env.integer("N", 1) == 7
    assert env.integer("MISSING", 3) == 3
    with pytest.raises(SettingsError, match="N=7 is below the minimum of 8"):
        env.integer("N", 1, minimum=8)
