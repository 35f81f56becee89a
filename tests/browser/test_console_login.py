"""Signing in to the console in a real (headless) Chromium, at a laptop's and a phone's width, on
`make dev`'s stack: the dashboard after a good key, the field's own message after a bad one, the
Content-Security-Policy on every response and never broken, a session cookie that scripts cannot
read, and a form that works from the keyboard alone. Screenshots of each page go to
test-artifacts/screenshots.
"""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Locator, Page, expect

from kairos_console.app import CONTENT_SECURITY_POLICY
from kairos_console.session import COOKIE
from support.browser import ConsoleStack, PageLog, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

REFUSED = "This API key was refused by the api."


def key_field(page: Page) -> Locator:
    return page.get_by_label("API key", exact=True)


def dashboard_heading(page: Page) -> Locator:
    return page.get_by_role("heading", level=1, name="Dashboard")


def path_of(page: Page) -> str:
    return urlsplit(page.url).path


async def sign_in(page: Page, key: str) -> None:
    await page.goto("/login")
    await key_field(page).fill(key)
    await page.get_by_role("button", name="Sign in").click()


async def test_a_key_signs_in_to_the_dashboard(
    page: Page, page_log: PageLog, console_stack: ConsoleStack
) -> None:
    await page.goto("/")  # not signed in: sent to sign in first
    assert path_of(page) == "/login"
    await expect(page.get_by_role("heading", level=1, name="Sign in to Kairos")).to_be_visible()
    await screenshot(page, "login")

    await key_field(page).fill(console_stack.api_key)
    await page.get_by_role("button", name="Sign in").click()
    await expect(dashboard_heading(page)).to_be_visible()
    assert path_of(page) == "/"
    await expect(page.get_by_role("navigation", name="Pages")).to_be_visible()
    await screenshot(page, "dashboard")
    assert page_log.script_errors() == []


async def test_a_wrong_key_is_refused_next_to_its_field(
    page: Page, page_log: PageLog, console_stack: ConsoleStack
) -> None:
    await sign_in(page, f"kairos_{secrets.token_urlsafe(32)}")
    field = key_field(page)
    await expect(field).to_have_attribute("aria-invalid", "true")
    # The message is the field's own description, so a screen reader reads it with the field.
    await expect(field).to_have_accessible_description(REFUSED)
    await expect(page.get_by_role("alert")).to_have_text(REFUSED)
    assert path_of(page) == "/login"
    await screenshot(page, "login-refused")

    await page.goto("/")  # and nobody is signed in
    assert path_of(page) == "/login"
    await expect(field).not_to_have_attribute("aria-invalid", "true")
    assert page_log.script_errors() == []


async def test_every_response_has_the_csp_and_nothing_breaks_it(
    page: Page, page_log: PageLog, console_stack: ConsoleStack
) -> None:
    await sign_in(page, console_stack.api_key)
    await expect(dashboard_heading(page)).to_be_visible()
    # The dashboard's script has opened its live stream (/events): that is the last request.
    await expect(page.locator("body")).to_have_attribute("data-live", "on")

    paths = {urlsplit(response.url).path for response in page_log.responses}
    assert {"/login", "/", "/events"} <= paths, paths
    assert any(path.endswith("/console.css") for path in paths), paths
    assert any(path.endswith("/console.js") for path in paths), paths
    without = {
        f"{response.request.method} {response.url} ({response.status})": headers.get(
            "content-security-policy"
        )
        for response in page_log.responses
        if (headers := await response.all_headers()).get("content-security-policy")
        != CONTENT_SECURITY_POLICY
    }
    assert without == {}, "responses without the console's Content-Security-Policy"
    assert page_log.csp_violations() == []
    assert page_log.script_errors() == []


async def test_an_inline_script_is_refused_and_the_refusal_is_seen(page: Page) -> None:
    """What the test above listens for is what Chromium says: a page that broke the policy
    would be caught."""
    await page.goto("/login")
    async with page.expect_console_message(
        lambda message: "Content Security Policy" in message.text
    ):
        await page.evaluate(
            """() => {
                const script = document.createElement("script");
                script.textContent = "window.injected = true";
                document.head.append(script);
            }"""
        )
    assert await page.evaluate("() => window.injected === true") is False


async def test_the_session_cookie_is_out_of_scripts_reach(
    page: Page, console_stack: ConsoleStack
) -> None:
    await sign_in(page, console_stack.api_key)
    await expect(dashboard_heading(page)).to_be_visible()
    cookies = [c for c in await page.context.cookies() if c.get("name") == COOKIE]
    assert len(cookies) == 1, await page.context.cookies()
    (cookie,) = cookies
    assert cookie.get("httpOnly") is True
    assert cookie.get("sameSite") == "Strict"
    assert console_stack.api_key not in cookie.get("value", "")  # encrypted, not just hidden
    seen_by_scripts = await page.evaluate("() => document.cookie")
    assert COOKIE not in seen_by_scripts
    assert console_stack.api_key not in await page.content()


async def test_the_sign_in_form_works_from_the_keyboard_alone(
    page: Page, page_log: PageLog, console_stack: ConsoleStack
) -> None:
    await page.goto("/login")
    skip = page.get_by_role("link", name="Skip to the content")
    await page.keyboard.press("Tab")
    await expect(skip).to_be_focused()
    await expect(skip).to_be_in_viewport()  # off-screen until focused, then shown
    await screenshot(page, "login-skip-link")

    await page.keyboard.press("Enter")
    await expect(page.locator("main")).to_be_focused()
    await page.keyboard.press("Tab")
    await expect(key_field(page)).to_be_focused()
    await page.keyboard.type(console_stack.api_key)
    await page.keyboard.press("Tab")
    await expect(page.get_by_label("Time zone")).to_be_focused()
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("button", name="Sign in")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(dashboard_heading(page)).to_be_visible()
    assert path_of(page) == "/"
    assert page_log.script_errors() == []
