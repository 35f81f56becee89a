"""The console as its users meet it, in headless Chromium against `make dev`'s stack: sign in,
connect two fake platforms, compose a post to both, find it on the calendar and drag it to
another day, publish it and watch the dashboard follow live, retry the target that failed; and
every page at both widths, saved as screenshots, with no script error, CSP violation or WCAG A/AA
problem that axe-core finds."""

from __future__ import annotations

import json
import re
import urllib.request
import uuid
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, BrowserContext, Page, expect

from kairos.posts.v1 import posts_pb2
from kairos_client import KairosClient, schedule_local
from support.browser import VIEWPORTS, ConsoleStack, PageLog, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

ZONE = "Europe/Berlin"


@pytest.fixture
async def wide(browser: Browser, console_stack: ConsoleStack) -> AsyncIterator[BrowserContext]:
    """A laptop-wide browser whose clock is in Berlin (the sign-in form takes its zone)."""
    context = await browser.new_context(
        viewport={"width": 1280, "height": VIEWPORTS[1280]},
        base_url=console_stack.url,
        timezone_id=ZONE,
    )
    context.set_default_timeout(15_000)
    yield context
    await context.close()


async def sign_in(page: Page, key: str) -> None:
    await page.goto("/login")
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("h1")).to_have_text("Dashboard")


def sandbox_script(sandbox_url: str, spec: dict[str, object]) -> None:
    """Queue a scripted answer on the sandbox platform (its POST /script)."""
    request = urllib.request.Request(
        f"{sandbox_url}/script",
        data=json.dumps(spec).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert answer.status < 300


async def connect(page: Page, platform: str, handle: str, token: str, instance: str) -> None:
    await page.goto("/accounts")
    await page.select_option("#account-platform", platform)
    await page.fill("#account-handle", handle)
    await page.fill("#cred-access-token", token)
    await page.fill("#cred-instance-url", instance)
    await page.get_by_role("button", name="Connect").click()
    await expect(page.locator(f"#accounts tr[data-account-id]:has-text('{handle}')")).to_have_count(
        1
    )


def post_day(today: date) -> date:
    """Tomorrow, or the day after when tomorrow is a Sunday: the post and the day it is dragged
    to (the next one) are then in one week's view."""
    tomorrow = today + timedelta(days=1)
    return tomorrow + timedelta(days=1) if tomorrow.isoweekday() == 7 else tomorrow


async def test_compose_calendar_drag_publish_live_and_retry(
    wide: BrowserContext, console_stack: ConsoleStack
) -> None:
    page = await wide.new_page()
    log = PageLog.of(page)
    await sign_in(page, console_stack.api_key)
    await screenshot(page, "journey-dashboard-empty")

    # Two fake platforms, connected on the Accounts page: Mastodon's fake and the sandbox.
    marker = f"journey-{uuid.uuid4().hex[:8]}"
    await connect(page, "mastodon", f"@{marker}-m@fake", "dev", console_stack.mastodon_url)
    await connect(page, "sandbox", f"@{marker}-s", "t", console_stack.sandbox_url)
    await screenshot(page, "journey-accounts")

    # Compose one post to both, at 10:00 Berlin time on a coming day.
    day = post_day(datetime.now(ZoneInfo(ZONE)).date())
    await page.goto("/compose")
    await page.fill("#content", f"Hello from the console {marker}")
    for handle in (f"@{marker}-m@fake", f"@{marker}-s"):
        await page.locator(".target", has_text=handle).locator("input[name=target]").check()
    counters = page.locator(".target", has_text=f"@{marker}-m@fake").locator("output.count")
    await expect(counters).to_have_text(re.compile(r"^\d+ / 500 "))  # counted by the api
    await page.check("#when-at")
    await page.fill("#date-time", f"{day.isoformat()}T10:00")
    await expect(page.locator("#time-zone")).to_have_value(ZONE)
    await screenshot(page, "journey-compose")
    await page.click("#save-post")
    await expect(page.locator("#post")).to_have_attribute("data-post-status", "scheduled")
    post_id = await page.locator("#post").get_attribute("data-post-id")
    assert post_id

    # On the calendar, on its day; dragged to the next.
    await page.goto(f"/calendar?view=week&date={day.isoformat()}")
    chip = page.locator(f'.chip-post[data-post-id="{post_id}"]')
    await expect(
        page.locator(f'.cal-day[data-date="{day.isoformat()}"]').locator(chip)
    ).to_be_visible()
    later = day + timedelta(days=1)
    await chip.drag_to(page.locator(f'.cal-day[data-date="{later.isoformat()}"]'))
    moved = page.locator(
        f'.cal-day[data-date="{later.isoformat()}"] .chip-post[data-post-id="{post_id}"]'
    )
    await expect(moved).to_be_visible()
    await screenshot(page, "journey-calendar-dragged")
    async with KairosClient(console_stack.api_target, console_stack.api_key) as client:
        stored = await client.get_post(post_id)
    at = stored.scheduled_at.ToDatetime().replace(tzinfo=ZoneInfo("UTC")).astimezone(ZoneInfo(ZONE))
    assert (at.date(), at.hour, at.minute) == (later, 10, 0)

    # The sandbox refuses this post once (400: permanent); Mastodon's fake takes it.
    sandbox_script(console_stack.sandbox_url, {"match": marker, "status": 400, "times": 1})
    dashboard = await wide.new_page()
    dashboard_log = PageLog.of(dashboard)
    await dashboard.goto("/")
    await expect(dashboard.locator("body")).to_have_attribute("data-live", "on")
    await page.goto(f"/posts/{post_id}")
    await page.click("#publish-now")
    # The dashboard, untouched, shows the failed target once the events arrive.
    failed = dashboard.locator("#dashboard tr[data-target]", has_text=marker)
    await expect(failed).to_have_count(1, timeout=30_000)
    await screenshot(dashboard, "journey-dashboard-failed")

    await page.reload()
    row = page.locator("tr[data-target-status=failed]")
    await expect(row).to_have_count(1)
    target_id = await row.get_attribute("data-target-id")
    await page.click(f"#retry-{target_id}")
    await expect(page.locator("[role=status]")).to_contain_text("tried again")
    # It goes out on the retry; the dashboard's inbox empties by itself.
    await expect(failed).to_have_count(0, timeout=30_000)
    for _ in range(60):
        await page.reload()
        if await page.locator("#post").get_attribute("data-post-status") == "published":
            break
        await page.wait_for_timeout(500)
    await expect(page.locator("#post")).to_have_attribute("data-post-status", "published")
    await expect(page.locator("tr[data-target-status=published]")).to_have_count(2)
    await screenshot(page, "journey-post-published")
    await screenshot(dashboard, "journey-dashboard-published")

    for where in (log, dashboard_log):
        assert where.csp_violations() == []
        assert where.script_errors() == []


@pytest.fixture(scope="module")
async def shown(console_stack: ConsoleStack) -> AsyncIterator[dict[str, str]]:
    """An account and a scheduled post to show on every page, made through the api."""
    async with KairosClient(console_stack.api_target, console_stack.api_key) as client:
        account = await client.connect_account(
            posts_pb2.ConnectAccountRequest(
                platform=posts_pb2.PLATFORM_SANDBOX,
                handle="@tour",
                credentials=posts_pb2.Credentials(
                    access_token="t", instance_url=console_stack.sandbox_url
                ),
            )
        )
        day = post_day(datetime.now(ZoneInfo(ZONE)).date())
        post = await client.create_post(
            posts_pb2.CreatePostRequest(
                content="A post to show on every page",
                targets=[posts_pb2.TargetSpec(account_id=account.id)],
                schedule=schedule_local(f"{day.isoformat()}T09:30:00", ZONE),
            )
        )
        yield {"account": account.id, "post": post.id, "day": day.isoformat()}


#: The rules axe-core checks: WCAG 2.0, 2.1 and 2.2, levels A and AA (labels, names, contrast,
#: structure), not its best-practice advice.
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


async def accessibility_problems(page: Page) -> list[str]:
    """What axe-core (Deque's engine, shipped in axe-playwright-python) finds wrong with the page
    as shown, one line per rule: its id, impact, and the first elements it names."""
    results = await Axe().run(
        page, options={"runOnly": {"type": "tag", "values": WCAG}, "resultTypes": ["violations"]}
    )
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + ", ".join(str(node["target"]) for node in v["nodes"][:3])
        for v in results.response["violations"]
    ]


PAGES = {
    "dashboard": "/",
    "calendar-month": "/calendar?date={day}",
    "calendar-week": "/calendar?view=week&date={day}",
    "compose": "/compose",
    "post": "/posts/{post}",
    "accounts": "/accounts",
    "account": "/accounts/{account}",
}


async def test_every_page_at_both_widths(
    page: Page, page_log: PageLog, console_stack: ConsoleStack, shown: dict[str, str]
) -> None:
    await page.goto("/login")
    found = await accessibility_problems(page)
    assert not found, f"login: {found}"
    await sign_in(page, console_stack.api_key)
    for name, path in PAGES.items():
        response = await page.goto(path.format(**shown))
        assert response is not None
        assert response.status == 200, f"{name}: {response.status}"
        await expect(page.locator("h1")).to_have_count(1)
        # Nothing wider than the window: no sideways scrolling of the page itself.
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 1, f"{name} scrolls sideways by {overflow} px"
        await screenshot(page, name)
        found = await accessibility_problems(page)
        assert not found, f"{name}: {found}"
    # A form sent with mistakes: its errors beside the fields, named to assistive technology.
    await page.goto("/compose")
    await page.fill("#content", "x")
    await page.click("#save-post")
    await expect(page.locator("#form-errors")).to_be_visible()
    await screenshot(page, "compose-refused")
    found = await accessibility_problems(page)
    assert not found, f"compose-refused: {found}"
    assert page_log.csp_violations() == []
    assert page_log.script_errors() == []
