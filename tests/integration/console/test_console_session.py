"""Signing in and out of the console, and what guards it: the encrypted HttpOnly session cookie,
CSRF tokens, the Origin check, the Content-Security-Policy, where a sign-in may send you on."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from yarl import URL

from kairos_common.settings import SettingsError
from kairos_console.session import Session, Sessions
from kairos_console.settings import ConsoleSettings
from support.api import RunningApi
from support.console import Browser, RunningConsole, running_console

from .conftest import Tenant


async def test_a_visitor_is_sent_to_sign_in_and_back_where_they_were_going(
    console: RunningConsole, tenant: Tenant
) -> None:
    async with console.browser() as browser:
        page = await browser.get("/?x=1")
        assert page.path.startswith("/login?")
        assert page.one("#api-key")["type"] == "password"
        assert page.one("input[name=next]")["value"] == "/?x=1"
        signed_in = await browser.post(
            "/login", {"api_key": tenant.key, "zone": "Europe/Berlin", "next": "/?x=1"}
        )
        assert signed_in.status == 200
        assert signed_in.path == "/?x=1"
        assert signed_in.texts("h1") == ["Dashboard"]


async def test_a_wrong_key_is_refused_next_to_its_field(console: RunningConsole) -> None:
    async with console.browser() as browser:
        await browser.get("/login")
        page = await browser.post("/login", {"api_key": "kairos_not-a-real-key", "next": "/"})
        assert page.status == 401
        field = page.one("#api-key")
        assert field["aria-invalid"] == "true"
        assert page.texts(f"#{field['aria-describedby']}") == [
            "This API key was refused by the api."
        ]
        # Still signed out.
        assert (await browser.get("/")).path.startswith("/login")


async def test_the_key_is_in_no_page_and_the_cookie_is_httponly_strict_and_encrypted(
    console: RunningConsole, tenant: Tenant
) -> None:
    async with console.browser() as browser:
        page = await browser.sign_in(tenant.key)
        assert tenant.key not in page.text
        value = browser.cookie("kairos_session")
        assert value
        assert tenant.key not in value
        async with browser.session.get("/") as response:
            assert "Set-Cookie" not in response.headers  # unchanged session, no new cookie
        await browser.get("/login")
        async with browser.session.post(
            "/logout", data={"csrf_token": page.csrf}, allow_redirects=False
        ) as response:
            cookie = response.cookies["kairos_session"]
            assert cookie["httponly"] is True
            assert cookie["samesite"] == "Strict"
            assert cookie["path"] == "/"
        assert (await browser.get("/")).path.startswith("/login")


async def test_a_forged_or_altered_cookie_is_no_session(
    console: RunningConsole, tenant: Tenant
) -> None:
    async with console.browser() as browser:
        await browser.sign_in(tenant.key)
        value = browser.cookie("kairos_session")
        altered = value[:-5] + ("A" if value[-5] != "A" else "B") + value[-4:]
        jar = browser.session.cookie_jar
        jar.clear()
        jar.update_cookies({"kairos_session": altered}, URL(console.url))
        assert browser.cookie("kairos_session") == altered
        assert (await browser.get("/")).path.startswith("/login")
        jar.clear()
        jar.update_cookies({"kairos_session": value}, URL(console.url))
        assert (await browser.get("/")).path == "/"


async def test_forms_without_the_sessions_csrf_token_or_from_another_origin_are_refused(
    browser: Browser,
) -> None:
    page = await browser.get("/")
    for token in ("", "not-the-token"):
        refused = await browser.post("/logout", csrf=token)
        assert refused.status == 403
        assert "security token" in refused.text
    other_site = await browser.post(
        "/logout", headers={"Origin": "https://evil.example"}, csrf=page.csrf
    )
    assert other_site.status == 403
    # Still signed in after all of that; the right token signs out.
    assert (await browser.get("/")).path == "/"
    signed_out = await browser.post("/logout", csrf=page.csrf)
    assert signed_out.path == "/login?done=signed-out"


async def test_signing_in_draws_a_new_csrf_token(console: RunningConsole, tenant: Tenant) -> None:
    async with console.browser() as browser:
        before = (await browser.get("/login")).csrf
        after = (await browser.post("/login", {"api_key": tenant.key, "next": "/"})).csrf
        assert before != after


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "/\t/evil.example/",
        "/\n/evil.example",
    ],
)
async def test_a_sign_in_never_sends_you_to_another_site(
    console: RunningConsole, tenant: Tenant, target: str
) -> None:
    async with console.browser() as browser:
        await browser.get("/login")
        page = await browser.post("/login", {"api_key": tenant.key, "next": target})
        assert page.path == "/"


@pytest.mark.parametrize("path", ["/login", "/", "/healthz", "/static/console.css"])
async def test_every_response_carries_a_strict_policy(browser: Browser, path: str) -> None:
    page = await browser.get(path)
    assert page.status == 200
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert page.headers["X-Content-Type-Options"] == "nosniff"


async def test_pages_hold_no_inline_script_or_style(browser: Browser) -> None:
    page = await browser.get("/")
    for script in page.all("script"):
        assert script.get("src"), script
        assert not script.get_text().strip()
    assert not page.all("style")
    assert not page.all("[style]")
    assert not [tag for tag in page.all("*") if any(a.startswith("on") for a in tag.attrs)]


async def test_the_zone_is_kept_and_a_mistyped_one_changes_nothing(browser: Browser) -> None:
    page = await browser.get("/")
    assert page.one("#zone-choice")["value"] == "Europe/Berlin"
    changed = await browser.post("/zone", {"zone": "America/New_York", "next": "/"})
    assert changed.one("#zone-choice")["value"] == "America/New_York"
    assert "Times are now shown in your chosen zone." in changed.texts("[role=status]")
    # A mistyped zone would move every time shown by hours: it is refused, the zone kept.
    for typed in ("Mars/Olympus", "america/new_york"):
        bad = await browser.post("/zone", {"zone": typed, "next": "/"})
        assert bad.one("#zone-choice")["value"] == "America/New_York"
        assert bad.texts("[role=alert]") == [
            "The time zone was not changed: use an IANA name such as Europe/Berlin."
        ]


async def test_a_mistyped_zone_at_sign_in_is_refused_beside_it(
    console: RunningConsole, tenant: Tenant
) -> None:
    async with console.browser() as browser:
        await browser.get("/login")
        page = await browser.post("/login", {"api_key": tenant.key, "zone": "Europe/berlin"})
        assert page.status == 400
        field = page.one("#login-zone")
        assert field["aria-invalid"] == "true"
        assert field["value"] == "Europe/berlin"
        assert page.texts("#login-zone-error") == [
            "'Europe/berlin' is not a time zone: use an IANA name such as Europe/Berlin."
        ]
        assert (await browser.get("/")).path.startswith("/login")  # not signed in


@pytest.mark.parametrize(
    ("body", "content_type", "headers"),
    [
        (b"api_key=\xff&csrf_token=x", "application/x-www-form-urlencoded", {}),
        (b"api_key=k", "application/x-www-form-urlencoded; charset=nope", {}),
        (b"--b\r\nbroken", "multipart/form-data; boundary=b", {}),
        (b"api_key=k", "application/x-www-form-urlencoded", {"Origin": "http://[::"}),
        (b"api_key=k", "application/x-www-form-urlencoded", {"X-CSRF-Token": "\xe9"}),
    ],
    ids=["bad bytes", "unknown charset", "broken multipart", "bad origin", "bad token header"],
)
async def test_a_malformed_sign_in_is_refused_never_a_server_error(
    console: RunningConsole, body: bytes, content_type: str, headers: dict[str, str]
) -> None:
    async with console.browser() as browser:
        await browser.get("/login")
        async with browser.session.post(
            "/login", data=body, headers={"Content-Type": content_type, **headers}
        ) as response:
            assert 400 <= response.status < 500, await response.text()


async def test_before_signing_in_only_a_small_body_is_read(console: RunningConsole) -> None:
    async with console.browser() as browser:
        await browser.get("/login")
        async with browser.session.post(
            "/login",
            data=b"api_key=" + b"k" * 100_000,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ) as response:
            assert response.status == 413


async def test_a_form_sent_after_the_session_ended_asks_to_sign_in_again(
    console: RunningConsole, tenant: Tenant
) -> None:
    async with console.browser() as browser:
        page = await browser.sign_in(tenant.key)
        browser.session.cookie_jar.clear()  # the cookie expired
        async with browser.session.post(
            "/zone", data={"zone": "UTC", "csrf_token": page.csrf}, allow_redirects=False
        ) as response:
            assert response.status == 401
            assert "Sign in again" in await response.text()


async def test_a_session_older_than_its_lifetime_is_refused_however_recently_written(
    console: RunningConsole, tenant: Tenant
) -> None:
    store = Sessions(console.settings.cookie_key, console.settings.session_lifetime, secure=False)
    lifetime = console.settings.session_lifetime.total_seconds()
    async with console.browser() as browser:
        for age, signed_in in ((lifetime - 60, True), (lifetime + 60, False)):
            old = Session(csrf="c", key=tenant.key, zone="UTC", since=time.time() - age)
            jar = browser.session.cookie_jar
            jar.clear()
            jar.update_cookies({store.cookie: store.dump(old)}, URL(console.url))
            page = await browser.get("/")
            assert (page.path == "/") is signed_in, age


def test_a_secure_cookie_is_named_for_its_host_only() -> None:
    key = ConsoleSettings.from_env({"KAIROS_ENV": "development"}).cookie_key
    assert Sessions(key, timedelta(hours=1)).cookie == "__Host-kairos_session"
    assert Sessions(key, timedelta(hours=1), secure=False).cookie == "kairos_session"


async def test_a_key_no_metadata_can_carry_is_refused_like_a_wrong_one(
    console: RunningConsole,
) -> None:
    async with console.browser() as browser:
        await browser.get("/login")
        page = await browser.post("/login", {"api_key": "ключ"})
        assert page.status == 401
        assert page.texts("#api-key-error") == ["This API key was refused by the api."]


def test_production_refuses_a_missing_short_or_public_secret() -> None:
    with pytest.raises(SettingsError, match="KAIROS_CONSOLE_SECRET is not set"):
        ConsoleSettings.from_env({})
    with pytest.raises(SettingsError, match="at least 32"):
        ConsoleSettings.from_env({"KAIROS_CONSOLE_SECRET": "short"})
    with pytest.raises(SettingsError, match="public placeholder"):
        ConsoleSettings.from_env({"KAIROS_CONSOLE_SECRET": "change-me-" + "x" * 40})
    settings = ConsoleSettings.from_env({"KAIROS_CONSOLE_SECRET": "s" * 40})
    assert settings.secure_cookies
    development = ConsoleSettings.from_env({"KAIROS_ENV": "development"})
    assert development.cookie_key
    assert not development.secure_cookies


async def test_behind_a_proxy_forms_come_from_the_origins_named(
    console_api: RunningApi, tenant: Tenant
) -> None:
    """A proxy that sends its own Host (nginx's default) would make every form look foreign;
    KAIROS_CONSOLE_ORIGINS names the origin browsers really use, and only it is accepted."""
    public = "https://kairos.example.com"
    async with (
        running_console(console_api.target, KAIROS_CONSOLE_ORIGINS=public) as console,
        console.browser() as browser,
    ):
        await browser.sign_in(tenant.key)
        for origin, allowed in ((public, True), ("https://evil.example", False)):
            sent = await browser.post(
                "/zone", {"zone": "UTC", "next": "/"}, headers={"Origin": origin}
            )
            assert (sent.status == 200) is allowed, (origin, sent.status)


def test_the_origins_must_be_origins() -> None:
    settings = ConsoleSettings.from_env(
        {"KAIROS_ENV": "development", "KAIROS_CONSOLE_ORIGINS": "https://A.example, http://b:8080/"}
    )
    assert settings.allowed_origins == ("https://a.example", "http://b:8080")
    for bad in ("kairos.example.com", "https://a.example/console", "ftp://a.example"):
        with pytest.raises(SettingsError, match="KAIROS_CONSOLE_ORIGINS"):
            ConsoleSettings.from_env({"KAIROS_ENV": "development", "KAIROS_CONSOLE_ORIGINS": bad})


def test_the_address_must_be_host_and_port() -> None:
    with pytest.raises(SettingsError, match="KAIROS_CONSOLE_ADDR"):
        ConsoleSettings.from_env({"KAIROS_ENV": "development", "KAIROS_CONSOLE_ADDR": "8080"})
