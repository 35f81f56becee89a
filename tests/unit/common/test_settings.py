"""Settings come from KAIROS_* variables, default to what works locally, and name bad values."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from kairos_api.bootstrap import load_cipher
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


# --- hostile values: each refused at start-up, naming the variable, never a crash later -------


@pytest.mark.parametrize("raw", ["inf", "-inf", "nan", "1e999", "infinity"])
def test_seconds_that_are_not_finite_are_refused_by_name(raw: str) -> None:
    with pytest.raises(SettingsError, match=f"KAIROS_GRACE_SECONDS='{raw}' is not a finite"):
        ApiSettings.from_env({"KAIROS_GRACE_SECONDS": raw})


@pytest.mark.parametrize(
    "name",
    ["KAIROS_ATTEMPT_LEASE_SECONDS", "KAIROS_DEFAULT_STALE_AFTER_SECONDS", "KAIROS_GRACE_SECONDS"],
)
def test_seconds_too_long_for_a_duration_are_refused_by_name(name: str) -> None:
    # 1e12 s fits a float but not a datetime once added to now: it used to fail on first use.
    with pytest.raises(SettingsError, match=f"{name}=1e12 is above the maximum of 31536000"):
        ApiSettings.from_env({name: "1e12"})
    assert ApiSettings.from_env({name: "31536000"}) is not None  # a year is still fine


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"KAIROS_MAX_ATTEMPTS": "99999999999999999999"}, "KAIROS_MAX_ATTEMPTS"),
        ({"KAIROS_NATS_REPLICAS": "6"}, "KAIROS_NATS_REPLICAS"),
        ({"KAIROS_ENV": "staging"}, "KAIROS_ENV"),
        ({"KAIROS_NATS_URL": "nats://host:abc"}, "KAIROS_NATS_URL"),
        ({"KAIROS_NATS_URL": "http://127.0.0.1:4222"}, "KAIROS_NATS_URL"),
        ({"KAIROS_NATS_URL": "nats://a:4222,ws://b:8080"}, "KAIROS_NATS_URL"),
        ({"KAIROS_NATS_URL": ","}, "KAIROS_NATS_URL"),
        ({"KAIROS_API_TARGET": "garbage"}, "KAIROS_API_TARGET"),
        ({"KAIROS_API_TARGET": "a b:50051"}, "KAIROS_API_TARGET"),
        ({"KAIROS_API_TARGET": "api:0"}, "KAIROS_API_TARGET"),
        ({"KAIROS_DATABASE_URL": "mysql://x"}, "KAIROS_DATABASE_URL"),
        ({"KAIROS_DATABASE_URL": "garbage"}, "KAIROS_DATABASE_URL"),
        ({"KAIROS_DATABASE_URL": "postgresql://h:port/kairos"}, "KAIROS_DATABASE_URL"),
        ({"KAIROS_DATABASE_URL": "postgresql+asyncpg://h/kairos"}, "KAIROS_DATABASE_URL"),
        ({"KAIROS_DATABASE_URL": "sqlite://"}, "KAIROS_DATABASE_URL"),
        ({"KAIROS_DATABASE_URL": "sqlite:///:memory:"}, "KAIROS_DATABASE_URL"),
        ({"KAIROS_DATABASE_URL": "postgresql://u@/k?host=a:1&host=b:x"}, "non-integer port"),
        ({"KAIROS_DATABASE_URL": "postgresql://u@/k?host=a,b&port=1,2,3"}, "hosts and ports"),
        ({"KAIROS_DATABASE_URL": "postgresql://u@/k?host=a:1&host=b:2&port=3"}, "multihost"),
    ],
)
def test_hostile_values_fail_naming_the_variable(environ: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        ApiSettings.from_env(environ)


def test_the_values_people_use_are_accepted() -> None:
    settings = ApiSettings.from_env(
        {
            "KAIROS_NATS_URL": "nats://user:pw@a:4222, tls://b:4443,127.0.0.1:4222",
            "KAIROS_API_TARGET": "dns:///api.internal:50051",
            "KAIROS_DATABASE_URL": "postgres://kairos:pw@db/kairos",
        }
    )
    assert settings.common.api_target == "dns:///api.internal:50051"
    for url in (
        "postgresql+psycopg://h/k",
        "sqlite+aiosqlite:///k.db",
        "sqlite:///k.db",
        "postgresql://u@/k?host=db1:5432&host=db2:5433&target_session_attrs=read-write",
        "postgresql://u@/k?host=db1,db2&port=5432,5433&target_session_attrs=read-write",
    ):
        assert ApiSettings.from_env({"KAIROS_DATABASE_URL": url}).common.database_url == url


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KAIROS_DATABASE_URL", "postgresql+asyncpg://kairos:hunter2@db/kairos"),
        ("KAIROS_DATABASE_URL", "mysql://kairos:hunter2@db/kairos"),
        ("KAIROS_NATS_URL", "nats://kairos:hunter2@nats:port"),
        ("KAIROS_NATS_URL", "kairos:hunter2@nats:port"),
    ],
)
def test_a_refused_url_is_named_without_its_password(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name) as refused:
        ApiSettings.from_env({name: value})
    assert "hunter2" not in str(refused.value)


def test_scheduler_and_publisher_limits_are_checked_at_start_up() -> None:
    # The api refuses ClaimDue beyond 2,000: a bigger batch would fail every claim, for ever.
    with pytest.raises(SettingsError, match="KAIROS_SCHEDULER_BATCH=2001 is above the maximum"):
        SchedulerSettings.from_env({"KAIROS_SCHEDULER_BATCH": "2001"})
    with pytest.raises(SettingsError, match="KAIROS_HOLD_MAX_SECONDS='nan'"):
        PublisherSettings.from_env({"KAIROS_HOLD_MAX_SECONDS": "nan"})
    with pytest.raises(SettingsError, match="KAIROS_PUBLISHER_PLATFORMS=',' names no platform"):
        PublisherSettings.from_env({"KAIROS_PUBLISHER_PLATFORMS": ","})
    for url in ("x=http://h:port", "x=http://h:99999", "x=http://[::1"):
        with pytest.raises(SettingsError, match="KAIROS_PLATFORM_URLS: x="):
            PublisherSettings.from_env({"KAIROS_PLATFORM_URLS": url})


# --- development mode and the service token -------------------------------------------------

GOOD_TOKEN = "a-private-token-of-thirty-two-ch"


def test_production_is_the_default_and_needs_a_service_token() -> None:
    common = CommonSettings.from_env({})
    assert common.environment == "production"
    assert not common.development
    with pytest.raises(SettingsError, match="KAIROS_SERVICE_TOKEN is not set"):
        common.require_service_token()
    given = CommonSettings.from_env({"KAIROS_SERVICE_TOKEN": GOOD_TOKEN})
    assert given.require_service_token() == GOOD_TOKEN


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("dev-service-token", "a publicly known"),
        ("change-me-service-token", "a publicly known"),
        ("Change-Me-Please-To-Something-Long", "a publicly known"),
        ("only-23-characters-long", "23 characters long"),
    ],
)
def test_outside_development_public_and_short_tokens_are_refused(token: str, reason: str) -> None:
    common = CommonSettings.from_env({"KAIROS_SERVICE_TOKEN": token})
    with pytest.raises(SettingsError, match=f"KAIROS_SERVICE_TOKEN is {reason}") as refused:
        common.require_service_token()
    assert token not in str(refused.value)  # never echoed, public or not


def test_in_development_the_development_token_still_works() -> None:
    common = CommonSettings.from_env({"KAIROS_ENV": "Development"})
    assert common.development
    assert common.require_service_token() == "dev-service-token"
    short = CommonSettings.from_env({"KAIROS_ENV": "development", "KAIROS_SERVICE_TOKEN": "t"})
    assert short.require_service_token() == "t"


@pytest.mark.parametrize("token", ["has a space inside of it, twenty-four+", "é" * 30, "x" * 1025])
def test_a_token_that_cannot_travel_in_a_grpc_header_is_refused_in_any_mode(token: str) -> None:
    for mode in ("development", "production"):
        common = CommonSettings.from_env({"KAIROS_ENV": mode, "KAIROS_SERVICE_TOKEN": token})
        with pytest.raises(SettingsError, match="KAIROS_SERVICE_TOKEN must be at most 1024"):
            common.require_service_token()


def test_outside_development_the_public_placeholder_secret_key_is_refused() -> None:
    placeholder = "change-me-to-a-random-string-of-32-characters-or-more"  # the old compose default
    with pytest.raises(SettingsError, match="first key of KAIROS_SECRET_KEY is a publicly known"):
        load_cipher(placeholder)
    assert load_cipher(placeholder, development=True).key_ids
    # Rotating away from it: a real key first, the placeholder after to decrypt what it stored.
    assert len(load_cipher(f"{'k' * 40},{placeholder}").key_ids) == 2


def test_secrets_are_read_from_the_files_their_file_variables_name(tmp_path: Path) -> None:
    # As container secrets are mounted: one file a secret, with the line end editors add.
    files = {
        "KAIROS_SECRET_KEY": "k" * 40,
        "KAIROS_SERVICE_TOKEN": "t" * 32,
        "KAIROS_DATABASE_URL": "postgresql+psycopg://kairos:pw@db:5432/kairos",
    }
    environ = {}
    for name, value in files.items():
        (tmp_path / name).write_text(value + "\n")
        environ[f"{name}_FILE"] = str(tmp_path / name)

    common = ApiSettings.from_env(environ).common

    assert (common.secret_key, common.service_token, common.database_url) == tuple(files.values())


@pytest.mark.parametrize(
    ("content", "both", "said"),
    [
        (None, False, "cannot be read: No such file or directory"),
        ("", False, "is empty"),
        ("s" * 40, True, "KAIROS_SECRET_KEY and KAIROS_SECRET_KEY_FILE are both set"),
    ],
    ids=["missing", "empty", "both set"],
)
def test_a_secret_file_that_cannot_be_used_is_refused_by_name(
    tmp_path: Path, content: str | None, both: bool, said: str
) -> None:
    path = tmp_path / "secret_key"
    if content is not None:
        path.write_text(content)
    environ = {"KAIROS_SECRET_KEY_FILE": str(path)}
    if both:
        environ["KAIROS_SECRET_KEY"] = "the-other-one-" + "x" * 30
    with pytest.raises(SettingsError) as caught:
        Env(environ).secret("KAIROS_SECRET_KEY")
    assert said in str(caught.value)
    assert "KAIROS_SECRET_KEY_FILE" in str(caught.value)
    assert "x" * 30 not in str(caught.value)
    assert "s" * 40 not in str(caught.value)


def test_a_file_variable_left_empty_falls_back_to_the_variable() -> None:
    env = Env({"KAIROS_SERVICE_TOKEN_FILE": " ", "KAIROS_SERVICE_TOKEN": "t" * 30})
    assert env.secret("KAIROS_SERVICE_TOKEN") == "t" * 30
    assert Env({}).secret("KAIROS_SERVICE_TOKEN", "fallback") == "fallback"
