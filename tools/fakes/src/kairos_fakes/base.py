"""What every platform fake shares: an aiohttp server on a local port, a record of every request,
one-shot faults a test queues per operation, and the platform's tokens.

A fake answers exactly as its platform does (status codes, bodies, headers); what differs between
platforms lives in each platform's module. Tests drive a fake in-process:

    fake = XFake()
    await fake.start()
    fake.fail_next("create", "rate_limit", seconds=2)
    ... publish against fake.url ...
    assert len(fake.posts) == 1
    await fake.stop()

Under `make dev`, `GET /_fake/requests` on any fake lists what it received.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any, ClassVar

from aiohttp import web

#: What a test can ask a fake to do to the next call of an operation.
FAULT_KINDS = frozenset(
    {
        "rate_limit",  # the platform's rate-limit answer, with a wait of `seconds`
        "server_error",  # a transient 5xx (or the platform's equivalent)
        "reject",  # a permanent rejection with the platform's own message
        "hang",  # do the work (the post is created), then never answer: a timeout after sending
        "expire_token",  # answer as if the presented access token had expired
    }
)


@dataclass(frozen=True)
class Fault:
    kind: str
    seconds: float = 1.0
    message: str = ""


@dataclass(frozen=True)
class Recorded:
    """One request as it arrived."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Token:
    value: str
    expires_at: float | None
    revoked: bool = False


@dataclass
class Tokens:
    """Access and refresh tokens as a platform issues them.

    A token the fake never issued is accepted (so `make dev` works with any token), unless it
    was revoked or expired here. Refresh tokens are single use when `rotating`.
    """

    prefix: str = "tok"
    rotating: bool = True
    access: dict[str, Token] = field(default_factory=dict)
    refresh: dict[str, Token] = field(default_factory=dict)
    refreshes: int = 0

    def issue(self, lifetime: float | None = 7200.0) -> tuple[str, str]:
        """A new (access, refresh) pair."""
        now = time.time()
        access = f"{self.prefix}-a-{secrets.token_urlsafe(12)}"
        refresh = f"{self.prefix}-r-{secrets.token_urlsafe(12)}"
        self.access[access] = Token(access, None if lifetime is None else now + lifetime)
        self.refresh[refresh] = Token(refresh, None)
        return access, refresh

    def state(self, access: str) -> str:
        """ "ok", "expired" or "revoked" for a presented access token ("missing" if empty)."""
        if not access:
            return "missing"
        token = self.access.get(access)
        if token is None:
            return "ok"
        if token.revoked:
            return "revoked"
        if token.expires_at is not None and token.expires_at <= time.time():
            return "expired"
        return "ok"

    def expire(self, access: str) -> None:
        token = self.access.setdefault(access, Token(access, None))
        token.expires_at = time.time() - 1

    def revoke(self, access: str) -> None:
        self.access.setdefault(access, Token(access, None)).revoked = True

    def use_refresh(self, refresh: str, lifetime: float | None = 7200.0) -> tuple[str, str] | None:
        """Trade a refresh token for a new pair; None if it is unknown or already used."""
        token = self.refresh.get(refresh)
        if token is None or token.revoked:
            return None
        self.refreshes += 1
        access, new_refresh = self.issue(lifetime)
        if self.rotating:
            token.revoked = True
        else:
            del self.refresh[new_refresh]
            new_refresh = refresh
        return access, new_refresh


class FakeServer:
    """An aiohttp application on 127.0.0.1 that subclasses give the platform's routes."""

    #: The platform's name, as in `KAIROS_PLATFORM_URLS`.
    name: ClassVar[str] = ""
    #: The port `python -m kairos_fakes` (and `make dev`) serves this fake on.
    default_port: ClassVar[int] = 0
    #: The largest request body the fake reads (aiohttp answers 413 above it).
    max_body: ClassVar[int] = 64 * 1024 * 1024

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.faults: dict[str, deque[Fault]] = defaultdict(deque)
        #: Requests to hold before they are read, as (method, path part, seconds); each used once.
        self.stalls: list[tuple[str, str, float]] = []
        self.app = web.Application(middlewares=[self._record], client_max_size=self.max_body)
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.host = "127.0.0.1"
        self.closing = asyncio.Event()
        self.routes(self.app.router)
        self.app.router.add_get("/_fake/requests", self._list_requests)

    def routes(self, router: web.UrlDispatcher) -> None:
        """Add the platform's endpoints."""
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        self.closing.set()
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def __aenter__(self) -> FakeServer:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    def fail_next(
        self, operation: str, kind: str, *, times: int = 1, seconds: float = 1.0, message: str = ""
    ) -> None:
        """Make the next `times` calls of `operation` fail as `kind` (see FAULT_KINDS)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(sorted(FAULT_KINDS))}")
        for _ in range(times):
            self.faults[operation].append(Fault(kind, seconds, message))

    def stall_next(self, method: str, path_part: str, seconds: float) -> None:
        """Hold the next request with this method whose path contains `path_part` for `seconds`
        before reading it: a slow upload, for tests that stop the sender meanwhile."""
        self.stalls.append((method, path_part, seconds))

    def fault(self, operation: str) -> Fault | None:
        """The fault queued for this call of `operation`, if any (used once)."""
        queue = self.faults.get(operation)
        return queue.popleft() if queue else None

    async def hang(self) -> web.Response:
        """Never answer (until the fake stops): the client times out after its request arrived."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closing.wait(), timeout=3600)
        return web.Response(status=503)

    def calls(self, method: str, path_part: str = "") -> list[Recorded]:
        """The recorded requests with this method whose path contains `path_part`."""
        return [r for r in self.requests if r.method == method and path_part in r.path]

    async def _list_requests(self, request: web.Request) -> web.Response:
        """What arrived, newest last, for a person looking at `make dev` (not recorded itself)."""
        shown = [
            {
                "method": r.method,
                "path": r.path,
                "query": r.query,
                "at": r.at,
                "body": r.body[:2000].decode("utf-8", errors="replace"),
            }
            for r in self.requests
        ]
        return web.json_response(shown)

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path == "/_fake/requests":
            listed: web.StreamResponse = await handler(request)
            return listed
        for stall in self.stalls:
            if stall[0] == request.method and stall[1] in request.path:
                self.stalls.remove(stall)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.closing.wait(), timeout=stall[2])
                break
        body = await request.read()
        self.requests.append(
            Recorded(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
                at=time.time(),
            )
        )
        response: web.StreamResponse = await handler(request)
        return response


def bearer(request: web.Request) -> str:
    """The token of an `Authorization: Bearer <token>` header, or ""."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def new_id(digits: int = 19) -> str:
    """A numeric id like the platforms' snowflakes."""
    return str(secrets.randbelow(9 * 10 ** (digits - 1)) + 10 ** (digits - 1))
