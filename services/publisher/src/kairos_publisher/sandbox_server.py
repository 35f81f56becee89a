"""The sandbox platform's endpoint: records every post it receives, for development and tests.

`python -m kairos_publisher.sandbox_server [--port N]` serves:

- `POST /posts`: record a post (JSON body), answer `201 {"id": ..., "url": ...}`; or, when a
  scripted answer matches, that answer instead (a status, headers, body, and an optional delay
  before answering, e.g. to time out a client after the post was received).
- `GET /posts`: every recorded post, with its arrival time (unix seconds) and headers.
- `POST /script`: queue answers: `{"match": "text in content", "status": 500, "times": 2,
  "headers": {...}, "body": {...}, "delay": 0, "record": false}`.
- `POST /token`: trade a refresh token for new tokens (single use; it rotates).
- `DELETE /posts`: forget everything.

It is a small HTTP/1.1 server on asyncio streams (keep-alive, Content-Length bodies), enough for
httpx and curl; it is not meant to face the internet.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

MAX_BODY = 10 * 1024 * 1024
REASONS = {
    200: "OK",
    201: "Created",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    408: "Request Timeout",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass
class ScriptedAnswer:
    status: int
    match: str = ""
    times: int = 1
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    delay: float = 0.0
    #: Record the post even though the answer is an error (e.g. a timeout after receiving it).
    record: bool = False


@dataclass
class Received:
    id: str
    arrived_at: float
    body: dict[str, Any]
    headers: dict[str, str]


class SandboxPlatform:
    """The recorder and its scripted answers."""

    def __init__(self, public_url: str = "http://sandbox.local") -> None:
        self.posts: list[Received] = []
        self.script: list[ScriptedAnswer] = []
        self.public_url = public_url
        self.requests = 0
        #: Valid refresh tokens; each is single-use and rotates, like X's and Bluesky's.
        self.refresh_tokens: set[str] = set()
        self.refreshes = 0
        #: Access tokens answered with 401, as an expired token would be.
        self.expired_tokens: set[str] = set()

    def refresh(self, body: dict[str, Any]) -> tuple[int, dict[str, str], Any, float]:
        token = str(body.get("refresh_token", ""))
        if token not in self.refresh_tokens:
            return 400, {}, {"error": "invalid_grant"}, 0.0
        self.refresh_tokens.discard(token)
        self.refreshes += 1
        fresh = uuid.uuid4().hex
        self.refresh_tokens.add(fresh)
        return (
            200,
            {},
            {"access_token": f"access-{fresh}", "refresh_token": fresh, "expires_in": 3600},
            0.0,
        )

    def answer_post(
        self, body: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, dict[str, str], Any, float]:
        self.requests += 1
        token = headers.get("authorization", "").removeprefix("Bearer ")
        if token in self.expired_tokens:
            return 401, {}, {"error": "token expired"}, 0.0
        content = str(body.get("content", ""))
        for answer in self.script:
            if answer.times > 0 and answer.match in content:
                answer.times -= 1
                if answer.record:
                    self._record(body, headers)
                return answer.status, answer.headers, answer.body, answer.delay
        received = self._record(body, headers)
        return 201, {}, {"id": received.id, "url": f"{self.public_url}/posts/{received.id}"}, 0.0

    def _record(self, body: dict[str, Any], headers: dict[str, str]) -> Received:
        received = Received(uuid.uuid4().hex, time.time(), body, headers)
        self.posts.append(received)
        return received

    def listing(self) -> list[dict[str, Any]]:
        return [
            {"id": p.id, "arrived_at": p.arrived_at, "body": p.body, "headers": p.headers}
            for p in self.posts
        ]


async def _read_request(
    reader: asyncio.StreamReader,
) -> tuple[str, str, dict[str, str], bytes] | None:
    line = await reader.readline()
    if not line:
        return None
    method, target, _ = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while True:
        raw = await reader.readline()
        if raw in (b"\r\n", b"\n", b""):
            break
        name, _, value = raw.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    if length > MAX_BODY:
        raise ValueError("body too large")
    body = await reader.readexactly(length) if length else b""
    return method.upper(), target, headers, body


def _response(status: int, body: Any, headers: dict[str, str] | None = None) -> bytes:
    payload = b"" if body is None else json.dumps(body).encode()
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
    merged = {"content-type": "application/json", "content-length": str(len(payload))}
    merged.update(headers or {})
    lines += [f"{k}: {v}" for k, v in merged.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


class SandboxServer:
    """Serves a `SandboxPlatform` on 127.0.0.1."""

    def __init__(self, platform: SandboxPlatform | None = None) -> None:
        self.platform = platform or SandboxPlatform()
        self.server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self.server = await asyncio.start_server(self._serve, host, port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), timeout=2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    request = await _read_request(reader)
                except (ValueError, asyncio.IncompleteReadError):
                    writer.write(_response(400, {"error": "malformed request"}))
                    break
                if request is None:
                    break
                method, target, headers, body = request
                status, extra, answer, delay = self._route(
                    method, target.split("?")[0], headers, body
                )
                if delay:
                    await asyncio.sleep(delay)
                writer.write(_response(status, answer, extra))
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    def _route(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], Any, float]:
        if path == "/posts" and method == "POST":
            try:
                data = json.loads(body or b"{}")
            except ValueError:
                return 400, {}, {"error": "body is not JSON"}, 0.0
            if not isinstance(data, dict):
                return 400, {}, {"error": "body must be a JSON object"}, 0.0
            return self.platform.answer_post(data, headers)
        if path == "/token" and method == "POST":
            try:
                data = json.loads(body or b"{}")
            except ValueError:
                return 400, {}, {"error": "body is not JSON"}, 0.0
            return self.platform.refresh(data if isinstance(data, dict) else {})
        if path == "/posts" and method == "GET":
            return 200, {}, self.platform.listing(), 0.0
        if path == "/posts" and method == "DELETE":
            self.platform.posts.clear()
            self.platform.script.clear()
            return 200, {}, {"ok": True}, 0.0
        if path == "/script" and method == "POST":
            try:
                spec = json.loads(body)
                self.platform.script.append(ScriptedAnswer(**spec))
            except (ValueError, TypeError) as error:
                return 400, {}, {"error": str(error)}, 0.0
            return 200, {}, {"ok": True}, 0.0
        return 404, {}, {"error": f"no route {method} {path}"}, 0.0


async def _main(port: int, host: str) -> None:
    server = SandboxServer()
    await server.start(port, host)
    print(f"sandbox platform listening on {server.url}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="Kairos sandbox platform endpoint")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args.port, args.host))


if __name__ == "__main__":
    main()
