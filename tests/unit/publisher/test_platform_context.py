"""Base URL overrides, app secrets and the publisher settings that carry them."""

from __future__ import annotations

import ipaddress
import re

import httpx
import pytest

from kairos_common.platforms import CATALOGUE, Platform
from kairos_common.settings import SettingsError
from kairos_fakes import fake_classes
from kairos_publisher.media import MediaFetcher
from kairos_publisher.platforms import registry
from kairos_publisher.platforms.base import PlatformContext, parse_platform_urls
from kairos_publisher.settings import PublisherSettings
from support.platforms import publish_request

BASE_ENV = {"KAIROS_SECRET_KEY": "k" * 43, "KAIROS_SERVICE_TOKEN": "s" * 24}


async def test_a_base_url_comes_from_its_key_then_its_platform_then_the_default() -> None:
    async with httpx.AsyncClient() as http:
        context = PlatformContext(
            http,
            MediaFetcher(),
            urls={"linkedin": "http://fake:1/", "threads.oauth": "http://oauth:2"},
        )
    assert context.url("linkedin", "https://api.linkedin.com") == "http://fake:1"
    assert context.url("linkedin.oauth", "https://www.linkedin.com") == "http://fake:1"
    assert context.url("threads.oauth", "https://graph.threads.net") == "http://oauth:2"
    assert context.url("threads", "https://graph.threads.net/v1.0/") == (
        "https://graph.threads.net/v1.0"
    )


async def test_an_app_secret_is_the_accounts_own_before_the_environment() -> None:
    async with httpx.AsyncClient() as http:
        context = PlatformContext(http, MediaFetcher(), environ={"KAIROS_X_CLIENT_ID": "from-env"})
    assert context.app_secret(publish_request(), "x", "client_id") == "from-env"
    own = publish_request(extra={"client_id": "own"})
    assert context.app_secret(own, "x", "client_id") == "own"
    assert context.app_secret(own, "x", "client_secret") == ""


def test_platform_urls_parse_and_name_a_bad_item() -> None:
    assert parse_platform_urls(" x=http://a:1 , linkedin.oauth=https://b ,") == {
        "x": "http://a:1",
        "linkedin.oauth": "https://b",
    }
    with pytest.raises(ValueError, match="'x=ftp://a'"):
        parse_platform_urls("x=ftp://a")
    with pytest.raises(ValueError, match="'mastodon'"):
        parse_platform_urls("mastodon")


def test_publisher_settings_read_platform_urls_and_media_networks() -> None:
    settings = PublisherSettings.from_env(
        {
            **BASE_ENV,
            "KAIROS_PLATFORM_URLS": "x=http://127.0.0.1:9101",
            "KAIROS_MEDIA_ALLOWED_NETWORKS": "127.0.0.0/8, ::1/128",
        }
    )
    assert settings.platform_urls == {"x": "http://127.0.0.1:9101"}
    assert settings.media_allowed_networks == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    assert PublisherSettings.from_env(BASE_ENV).media_allowed_networks == ()
    with pytest.raises(SettingsError, match="KAIROS_PLATFORM_URLS: 'x'"):
        PublisherSettings.from_env({**BASE_ENV, "KAIROS_PLATFORM_URLS": "x"})
    bad_network = re.escape("KAIROS_MEDIA_ALLOWED_NETWORKS: '10.0.0.300/8'")
    with pytest.raises(SettingsError, match=bad_network):
        PublisherSettings.from_env({**BASE_ENV, "KAIROS_MEDIA_ALLOWED_NETWORKS": "10.0.0.300/8"})


async def test_every_platform_has_a_client_module_and_every_real_one_a_fake() -> None:
    async with httpx.AsyncClient() as http:
        clients = registry(PlatformContext(http, MediaFetcher()))
    assert set(clients) == set(Platform)
    fakes = {cls.name for cls in fake_classes()} - {"media"}
    assert fakes == {p.value for p in Platform if not CATALOGUE[p].own}
    ports = [cls.default_port for cls in fake_classes()]
    assert len(set(ports)) == len(ports)


def test_the_api_versions_are_settings_checked_at_start_up() -> None:
    default = PublisherSettings.from_env(BASE_ENV)
    assert (default.graph_api_version, default.linkedin_version) == ("v27.0", "202609")
    chosen = PublisherSettings.from_env(
        {**BASE_ENV, "KAIROS_GRAPH_API_VERSION": "v28.0", "KAIROS_LINKEDIN_VERSION": "202612"}
    )
    assert (chosen.graph_api_version, chosen.linkedin_version) == ("v28.0", "202612")
    for value in ("27.0", "v27", "v27.0/", "V27.0"):
        with pytest.raises(SettingsError, match=f"KAIROS_GRAPH_API_VERSION={value!r}"):
            PublisherSettings.from_env({**BASE_ENV, "KAIROS_GRAPH_API_VERSION": value})
    for value in ("2026-09", "20260901", "202613", "202600"):
        with pytest.raises(SettingsError, match=f"KAIROS_LINKEDIN_VERSION={value!r}"):
            PublisherSettings.from_env({**BASE_ENV, "KAIROS_LINKEDIN_VERSION": value})
