"""An httpx transport over aiohttp's connection pool.

The platform clients keep httpx's API, but httpx's default pool (httpcore) spends more CPU per
request than the rest of the publisher together and gets slower as concurrency grows
(PERFORMANCE.md; a py-spy profile of a burst put 63 % of the publisher in it). aiohttp's pool does
the same work at several times the rate.

Errors are mapped by what they say about the request, because that decides whether a retry may
post twice: a failure to connect (refused, unresolvable, connect timeout) means nothing was sent
and becomes `httpx.ConnectError`/`ConnectTimeout`; anything after the request may have left (a
read timeout, a dropped connection, a broken body) becomes `httpx.ReadTimeout`/`ReadError`, which
the publisher treats as UNKNOWN. aiohttp does not resend a POST on a dropped keep-alive connection.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import aiohttp
import httpx
import yarl

CHUNK = 64 * 1024


class _Body(httpx.AsyncByteStream):
    """The response body, streamed from aiohttp, released back to the pool when closed."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_chunked(CHUNK):
                yield chunk
        except aiohttp.ServerTimeoutError as error:
            raise httpx.ReadTimeout(str(error) or "read timed out") from error
        except (aiohttp.ClientError, OSError) as error:
            raise httpx.ReadError(str(error) or type(error).__name__) from error

    async def aclose(self) -> None:
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests through one aiohttp session (HTTP/1.1 with keep-alive)."""

    def __init__(
        self,
        *,
        max_connections: int = 200,
        max_connections_per_host: int = 0,
        keepalive_expiry: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._limit = max_connections
        self._per_host = max_connections_per_host
        self._keepalive = keepalive_expiry
        self._ssl = ssl_context if ssl_context is not None else ssl.create_default_context()
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._limit,
            limit_per_host=self._per_host,
            keepalive_timeout=self._keepalive,
            ssl=self._ssl,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,  # httpx decodes by Content-Encoding itself
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"),
        )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session or self._open()
        timeouts = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=timeouts.get("pool"),
            sock_connect=timeouts.get("connect"),
            sock_read=timeouts.get("read"),
        )
        body = await request.aread()
        try:
            response = await session.request(
                request.method,
                # As httpx encoded it: yarl would otherwise decode %3A, %2C, %28 ... in the path,
                # and APIs with URNs in their paths (LinkedIn) refuse those decoded.
                yarl.URL(str(request.url), encoded=True),
                headers=request.headers.multi_items(),
                data=body or None,
                allow_redirects=False,
                timeout=timeout,
            )
        except aiohttp.ConnectionTimeoutError as error:
            message = str(error) or "connect timed out"
            raise httpx.ConnectTimeout(message, request=request) from error
        except aiohttp.ClientConnectorError as error:
            raise httpx.ConnectError(str(error) or "connect failed", request=request) from error
        except aiohttp.ServerTimeoutError as error:
            raise httpx.ReadTimeout(str(error) or "read timed out", request=request) from error
        except aiohttp.InvalidURL as error:
            raise httpx.UnsupportedProtocol(f"invalid URL: {error}", request=request) from error
        except (aiohttp.ClientError, OSError) as error:
            raise httpx.ReadError(str(error) or type(error).__name__, request=request) from error
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_Body(response),
            request=request,
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": (response.reason or "").encode("latin-1", "replace"),
            },
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def http_client(timeout: float, max_connections: int = 200) -> httpx.AsyncClient:
    """The publisher's HTTP client: httpx's API over aiohttp, no redirects followed."""
    return httpx.AsyncClient(
        transport=AiohttpTransport(max_connections=max_connections),
        timeout=httpx.Timeout(timeout, connect=min(5.0, timeout)),
        follow_redirects=False,
    )
