"""Headless Chromium for the browser tests (tests/browser), driven by Playwright.

The browser is Debian's `chromium` package (`make chromium`, which `make test` runs, installs it
when missing), not one Playwright downloads: its download is not available everywhere the tests
run. Each page records what a person would not see but a broken page shows: console messages
(Chromium reports a Content-Security-Policy violation there), uncaught script errors, and every
response. `screenshot` saves a page where CI keeps artifacts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import Browser, ConsoleMessage, Error, Page, Playwright, Response

from support.dev_stack import ROOT

CHROMIUM = Path("/usr/bin/chromium")
#: The window sizes every page is tried at, by width: a laptop's and a phone's.
VIEWPORTS = {1280: 900, 375: 812}
#: Where `screenshot` saves its PNGs (git-ignored; kept by CI as artifacts).
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"


@dataclass(frozen=True)
class ConsoleStack:
    """A running console (`make dev`'s), an API key to sign in with, and where the banner says
    the api and the fake platforms are."""

    url: str
    api_key: str
    banner: str = ""

    def banner_value(self, pattern: str) -> str:
        """The first group of `pattern` in the banner; fails the test when it is not there."""
        found = re.search(pattern, self.banner)
        assert found, f"{pattern!r} is not in the banner:\n{self.banner}"
        return found.group(1)

    @property
    def api_target(self) -> str:
        return self.banner_value(r"export KAIROS_API_TARGET=(\S+)")

    @property
    def sandbox_url(self) -> str:
        return self.banner_value(r"connect sandbox .*--instance-url (http://[^\s)]+)")

    @property
    def mastodon_url(self) -> str:
        return self.banner_value(r"connect mastodon .*--instance-url (http://[^\s)]+)")


def chromium_executable() -> str:
    """CHROMIUM; a clear failure naming the fix when it is not installed."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: `make chromium` installs Debian's chromium package "
            "(`make test` does it first)"
        )
    return str(CHROMIUM)


async def launch_chromium(playwright: Playwright) -> Browser:
    """Debian's Chromium, headless."""
    return await playwright.chromium.launch(executable_path=chromium_executable(), headless=True)


@dataclass
class PageLog:
    """What one page reported while a test drove it."""

    console: list[ConsoleMessage] = field(default_factory=list)
    errors: list[Error] = field(default_factory=list)
    responses: list[Response] = field(default_factory=list)

    @classmethod
    def of(cls, page: Page) -> PageLog:
        """Start recording `page`'s reports (before it loads anything, or some are missed)."""
        log = cls()
        # Bound methods: Playwright marks each handler, which a list's append cannot carry.
        page.on("console", log._on_console)
        page.on("pageerror", log._on_error)
        page.on("response", log._on_response)
        return log

    def _on_console(self, message: ConsoleMessage) -> None:
        self.console.append(message)

    def _on_error(self, error: Error) -> None:
        self.errors.append(error)

    def _on_response(self, response: Response) -> None:
        self.responses.append(response)

    def csp_violations(self) -> list[str]:
        """What Chromium said it refused because of the Content-Security-Policy."""
        return [m.text for m in self.console if "Content Security Policy" in m.text]

    def script_errors(self) -> list[str]:
        """Uncaught exceptions in the page's scripts."""
        return [f"{error.name}: {error.message}" for error in self.errors]


async def screenshot(page: Page, name: str) -> Path:
    """Save the whole of `page` as `<name>-<width>.png` in SCREENSHOTS; the file."""
    viewport = page.viewport_size
    assert viewport is not None, "pages here always have a viewport"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}-{viewport['width']}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
