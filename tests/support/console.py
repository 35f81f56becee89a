"""The console served in this process over an api, and a client that browses it as a browser
without scripts would: cookies kept, forms sent with their CSRF token, redirects followed, pages
parsed with BeautifulSoup."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from bs4 import BeautifulSoup, Tag
from yarl import URL

from kairos_console.service import ConsoleService
from kairos_console.settings import ConsoleSettings

#: A secret long enough for production mode.
CONSOLE_SECRET = "console-test-secret-0123456789-abcdefghij"


@dataclass
class Page:
    """One response, parsed."""

    status: int
    url: str
    headers: Mapping[str, str]
    text: str

    @property
    def soup(self) -> BeautifulSoup:
        return BeautifulSoup(self.text, "html.parser")

    @property
    def path(self) -> str:
        return URL(self.url).path_qs

    def one(self, selector: str) -> Tag:
        """The one element `selector` matches; fails the test when there is not exactly one."""
        found = self.soup.select(selector)
        assert len(found) == 1, f"{selector!r} matched {len(found)} elements in:\n{self.text}"
        return found[0]

    def all(self, selector: str) -> list[Tag]:
        return list(self.soup.select(selector))

    def texts(self, selector: str) -> list[str]:
        return [" ".join(tag.get_text(" ").split()) for tag in self.soup.select(selector)]

    @property
    def csrf(self) -> str:
        meta = self.soup.select_one('meta[name="csrf-token"]')
        assert meta is not None, f"no CSRF token in:\n{self.text}"
        return str(meta["content"])


class Browser:
    """A cookie-keeping HTTP client of one console."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = aiohttp.ClientSession(base_url, cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.last: Page | None = None

    async def close(self) -> None:
        await self.session.close()

    async def _page(self, response: aiohttp.ClientResponse) -> Page:
        page = Page(response.status, str(response.url), response.headers, await response.text())
        if page.headers.get("Content-Type", "").startswith("text/html"):
            self.last = page
        return page

    async def get(self, path: str, **kwargs: Any) -> Page:
        async with self.session.get(path, **kwargs) as response:
            return await self._page(response)

    async def post(
        self,
        path: str,
        data: Mapping[str, str] | Sequence[tuple[str, str]] | aiohttp.FormData = (),
        *,
        csrf: str | None = None,
        **kwargs: Any,
    ) -> Page:
        """Send a form as the last page's would: with its CSRF token unless `csrf` is given."""
        token = csrf if csrf is not None else (self.last.csrf if self.last else "")
        if isinstance(data, aiohttp.FormData):
            form = data
            form.add_field("csrf_token", token)
        else:
            pairs = list(data.items()) if isinstance(data, Mapping) else list(data)
            form = aiohttp.FormData([*pairs, ("csrf_token", token)])
        async with self.session.post(path, data=form, **kwargs) as response:
            return await self._page(response)

    async def sign_in(self, key: str, zone: str = "Europe/Berlin") -> Page:
        await self.get("/login")
        page = await self.post("/login", {"api_key": key, "zone": zone, "next": "/"})
        assert page.status == 200, page.text
        assert page.path == "/", page.text
        return page

    def cookie(self, name: str) -> str:
        for cookie in self.session.cookie_jar:
            if cookie.key == name:
                return cookie.value
        return ""


@dataclass
class RunningConsole:
    settings: ConsoleSettings
    url: str

    @asynccontextmanager
    async def browser(self) -> AsyncIterator[Browser]:
        browser = Browser(self.url)
        try:
            yield browser
        finally:
            await browser.close()


@asynccontextmanager
async def running_console(api_target: str, **environ: str) -> AsyncIterator[RunningConsole]:
    """The console service (as `python -m kairos_console` runs it) on a free port, over the api
    at `api_target`; production mode by default."""
    settings = ConsoleSettings.from_env(
        {
            "KAIROS_API_TARGET": api_target,
            "KAIROS_CONSOLE_ADDR": "127.0.0.1:0",
            "KAIROS_CONSOLE_SECRET": CONSOLE_SECRET,
            "KAIROS_CONSOLE_SECURE_COOKIES": "false",
            **environ,
        }
    )
    service = ConsoleService(settings)
    await service.start()
    try:
        yield RunningConsole(settings, f"http://127.0.0.1:{service.port}")
    finally:
        await service.stop()
