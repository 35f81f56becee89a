"""The browser tests' stack: `make dev`'s system with its console, an API key made as its banner
says, and headless Chromium pages at each width of `support.browser.VIEWPORTS`.

The stack and the browser take seconds to start, so each test module shares one of each; every
test gets a fresh browser context (no cookies, no session) so that tests do not lean on each
other. The test modules here carry the `browser` marker and one `xdist_group`, so that under
`make test` (pytest-xdist, `--dist loadgroup`) a module runs in one worker with one stack.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from playwright.async_api import Browser, Page, async_playwright

from support.browser import VIEWPORTS, ConsoleStack, PageLog, launch_chromium
from support.dev_stack import KAIROS, DevRun, assert_all_gone, dev_ports, user_environment

#: The tenant whose key signs in, as in the banner's steps.
TENANT = "demo"


def key_as_the_banner_says(banner: str) -> str:
    """`kairos keys create --tenant demo` against the database the banner names."""
    exports = [
        shlex.split(line.partition("  #")[0])[1]  # export NAME=value  # why
        for line in banner.splitlines()
        if line.strip().startswith("export KAIROS_DATABASE_URL=")
    ]
    assert len(exports) == 1, f"the banner names no database:\n{banner}"
    database_url = exports[0].partition("=")[2]
    done = subprocess.run(
        [KAIROS, "keys", "create", "--tenant", TENANT],
        env=user_environment(KAIROS_DATABASE_URL=database_url),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, f"kairos keys create exited {done.returncode}:\n{done.stderr}"
    key = done.stdout.strip()
    assert key.startswith("kairos_"), done.stdout
    return key


@pytest.fixture(scope="module")
def console_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleStack]:
    """`python -m kairos_dev` on a fresh data folder and free ports; stopped with Ctrl-C at the
    end of the module, with nothing it started left running."""
    folder = tmp_path_factory.mktemp("dev")
    ports = dev_ports()
    run = DevRun.start(folder / "data", ports, folder / "kairos-dev.out")
    try:
        banner = run.wait_banner()
        url = f"http://127.0.0.1:{ports['console']}/"
        assert url in banner, banner
        yield ConsoleStack(url=url, api_key=key_as_the_banner_says(banner), banner=banner)
        children = run.children()
        code, _ = run.interrupt()
        assert code == 0, run.text()[-4000:]
        assert_all_gone(children)
    finally:
        run.kill_everything()  # after a failure; nothing left to do after a clean stop


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await launch_chromium(playwright)
        yield chromium
        await chromium.close()


@dataclass(frozen=True)
class Tab:
    page: Page
    log: PageLog


@pytest.fixture(params=list(VIEWPORTS), ids=lambda width: f"{width}px")
async def tab(
    request: pytest.FixtureRequest, browser: Browser, console_stack: ConsoleStack
) -> AsyncIterator[Tab]:
    width: int = request.param
    context = await browser.new_context(
        viewport={"width": width, "height": VIEWPORTS[width]}, base_url=console_stack.url
    )
    # Seconds, not Playwright's 30: a page of this console that takes longer is broken.
    context.set_default_timeout(10_000)
    page = await context.new_page()
    log = PageLog.of(page)
    yield Tab(page, log)
    await context.close()


@pytest.fixture
def page(tab: Tab) -> Page:
    """A new page in a browser of its own (no cookies yet), at one of the widths."""
    return tab.page


@pytest.fixture
def page_log(tab: Tab) -> PageLog:
    """What `page` reported: console messages, script errors, responses."""
    return tab.log
