"""A webhook receiver for tests: a real HTTP server on 127.0.0.1 that answers a scripted list of
statuses and records every request, and checks signatures with the `standardwebhooks` library
(independent of Kairos's own signing code)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from typing import Any, ClassVar

from aiohttp import web
from standardwebhooks.webhooks import Webhook

from kairos_fakes.base import FakeServer, Recorded


class WebhookReceiver(FakeServer):
    """Answers POSTs to any path with the next scripted status (then `otherwise`), one script
    for all or one for each message; a 3xx
    carries a Location on this server, which records whether anyone followed it."""

    name = "webhook-receiver"
    default_port: ClassVar[int] = 0

    def __init__(
        self, *statuses: int, otherwise: int = 200, delay: float = 0.0, each: bool = False
    ) -> None:
        super().__init__()
        self.script: deque[int] = deque(statuses)
        #: With `each`, every message (by its webhook-id) gets the scripted statuses.
        self.each = each
        self.scripts: dict[str, deque[int]] = {}
        self.otherwise = otherwise
        #: Seconds each answer waits before it is given.
        self.delay = delay
        self.answer_text = ""
        #: Send the status and the body's start at once, and the rest only after `delay`.
        self.slow_body = False
        self.arrived = asyncio.Condition()

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_route("*", "/followed", self.followed)
        router.add_post("/{path:.*}", self.hook)

    async def hook(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        script = self.script
        if self.each:
            message = request.headers.get("webhook-id", "")
            script = self.scripts.setdefault(message, deque(self.script))
        status = script.popleft() if script else self.otherwise
        async with self.arrived:
            self.arrived.notify_all()
        if self.slow_body:
            response = web.StreamResponse(status=status)
            await response.prepare(request)
            await response.write(b"the start")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closing.wait(), self.delay)
            return response
        if self.delay:
            with contextlib.suppress(TimeoutError):  # cut short when the receiver stops
                await asyncio.wait_for(self.closing.wait(), self.delay)
        text = self.answer_text or f"answered {status}"
        if 300 <= status < 400:
            location = {"location": f"{self.url}/followed"}
            return web.Response(status=status, headers=location, text=text)
        return web.Response(status=status, text=text)

    async def followed(self, request: web.Request) -> web.Response:
        return web.Response(text="a redirect was followed")

    @property
    def hooks(self) -> list[Recorded]:
        """The webhook requests, in order of arrival."""
        return [r for r in self.requests if r.method == "POST" and r.path != "/followed"]

    async def wait_for(self, count: int, timeout: float = 15.0) -> list[Recorded]:
        """The requests once at least `count` have arrived; TimeoutError otherwise."""
        async with asyncio.timeout(timeout), self.arrived:
            await self.arrived.wait_for(lambda: len(self.hooks) >= count)
        return self.hooks


def verified(secret: str, request: Recorded) -> Any:
    """The JSON body of `request` once `standardwebhooks` verified its signature with `secret`;
    raises WebhookVerificationError when it does not verify."""
    return Webhook(secret).verify(request.body, request.headers)


def body(request: Recorded) -> Any:
    return json.loads(request.body)
