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
A body given as an iterator (an upload streamed from the media store) is streamed as it comes,
and an error its own iterator raises (a damaged file) comes out as it was raised; a connection
lost before such a body went whole is `httpx.WriteError` (not sent, so retryable), not a read
error: the platform cannot have acted on a request it never received whole.

The answer's body is read before the response is handed over (platform APIs answer in a few
kilobytes, and httpx reads a body whole unless asked to stream it anyway), so httpx decodes it in
one step instead of through an async iteration per chunk.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterable, AsyncIterator
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, cast

import aiohttp
import httpx
import yarl

from kairos_common import tracing


class StreamedBody:
    """A streamed request body that knows whether its source gave its last part, and what its
    source raised if it failed (a damaged stored file)."""

    def __init__(self, source: AsyncIterable[bytes]) -> None:
        self.source = source
        self.finished = False
        self.error: Exception | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for part in self.source:
                yield part
        except Exception as error:
            self.error = error
            raise
        self.finished = True


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
        #: aiohttp's timeouts by httpx's (every call of a client has the same ones).
        self._timeouts: dict[tuple[float | None, ...], aiohttp.ClientTimeout] = {}

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
        key = (timeouts.get("pool"), timeouts.get("connect"), timeouts.get("read"))
        timeout = self._timeouts.get(key)
        if timeout is None:
            timeout = self._timeouts[key] = aiohttp.ClientTimeout(
                total=None, connect=key[0], sock_connect=key[1], sock_read=key[2]
            )
        # A body given as bytes goes as it is; one given as an iterator (an upload streamed from
        # the media store) is streamed on, never held whole (aiohttp sends it with the
        # Content-Length the request carries).
        data: object = None
        streamed: StreamedBody | None = None
        if isinstance(request.stream, httpx.ByteStream):
            data = await request.aread() or None
        else:
            data = streamed = StreamedBody(cast(AsyncIterable[bytes], request.stream))
        try:
            response = await session.request(
                request.method,
                # As httpx encoded it: yarl would otherwise decode %3A, %2C, %28 ... in the path,
                # and APIs with URNs in their paths (LinkedIn) refuse those decoded.
                yarl.URL(str(request.url), encoded=True),
                headers=request.headers.multi_items(),
                data=data,
                allow_redirects=False,
                timeout=timeout,
            )
            content = await response.read()
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
            if streamed is not None and streamed.error is not None:
                # The streamed body itself failed (a damaged file): the caller's error, as
                # httpx's own transports let it out.
                raise streamed.error from None
            if streamed is not None and not streamed.finished:
                raise httpx.WriteError(
                    f"the body was broken off: {error or type(error).__name__}", request=request
                ) from error
            raise httpx.ReadError(str(error) or type(error).__name__, request=request) from error
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=httpx.ByteStream(content),
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


#: Parsed URLs a PlatformHttp keeps; it forgets them all when it has this many.
URLS_KEPT = 4096


class PlatformHttp(httpx.AsyncClient):
    """httpx's AsyncClient without the layers the platform calls never use.

    The platform clients name absolute URLs, set their own auth headers, keep no cookies and
    follow no redirects, so a request built here is not merged with a base URL or client
    cookies, and `send` hands it straight to the transport and reads the body: no auth flow,
    redirect loop, cookie extraction, event hooks or per-request log line. The request and the
    response are the ones httpx would make (same headers, same timeouts). A call that asks for
    one of those layers (cookies, a timeout or extensions of its own, a header that replaces a
    client default, a streamed response, auth, redirects) takes httpx's own path. The client's
    default headers and timeout are read once, when it is made.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # No cookie is kept, whichever path a call takes: one account's cookies would otherwise
        # go out with other accounts' calls to the same host.
        self.cookies = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
        # As the client spells them (httpx keeps a header's case on the wire).
        self._default_headers = [
            (name.decode("ascii"), value.decode("ascii")) for name, value in self.headers.raw
        ]
        self._default_names = {name.lower() for name, _ in self._default_headers}
        self._timeouts = self.timeout.as_dict()
        #: Parsed URLs by their text: an account calls the same few URLs again and again, and
        #: httpx parses a URL in pure Python (about half the cost of building a request).
        self._urls: dict[str, httpx.URL] = {}

    def build_request(
        self,
        method: str,
        url: httpx.URL | str,
        *,
        content: Any = None,
        data: Any = None,
        files: Any = None,
        json: Any = None,
        params: Any = None,
        headers: Any = None,
        cookies: Any = None,
        timeout: Any = httpx.USE_CLIENT_DEFAULT,
        extensions: Any = None,
    ) -> httpx.Request:
        plain = (
            cookies is None
            and extensions is None
            and timeout is httpx.USE_CLIENT_DEFAULT
            and not self.cookies
            and not self.base_url.raw_host
            and not self.params
            and (
                headers is None
                or (
                    isinstance(headers, dict)
                    and self._default_names.isdisjoint(name.lower() for name in headers)
                )
            )
        )
        if not plain:
            return super().build_request(
                method,
                url,
                content=content,
                data=data,
                files=files,
                json=json,
                params=params,
                headers=headers,
                cookies=cookies,
                timeout=timeout,
                extensions=extensions,
            )
        if isinstance(url, str) and params is None:
            parsed = self._urls.get(url)
            if parsed is None:
                if len(self._urls) >= URLS_KEPT:
                    self._urls.clear()
                parsed = self._urls[url] = httpx.URL(url)
            url = parsed
        defaults = self._default_headers
        return httpx.Request(
            method,
            url,
            content=content,
            data=data,
            files=files,
            json=json,
            params=params,
            headers=[*self._default_headers, *headers.items()] if headers else defaults,
            extensions={"timeout": self._timeouts},
        )

    async def send(
        self,
        request: httpx.Request,
        *,
        stream: bool = False,
        auth: Any = httpx.USE_CLIENT_DEFAULT,
        follow_redirects: Any = httpx.USE_CLIENT_DEFAULT,
    ) -> httpx.Response:
        direct = (
            not stream
            and auth is httpx.USE_CLIENT_DEFAULT
            and self.auth is None
            and not request.url.userinfo
            and (follow_redirects is httpx.USE_CLIENT_DEFAULT or not follow_redirects)
            and not self.follow_redirects
            and not self.event_hooks["request"]
            and not self.event_hooks["response"]
        )
        if not direct:
            return await super().send(
                request, stream=stream, auth=auth, follow_redirects=follow_redirects
            )
        if self.is_closed:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        if "timeout" not in request.extensions:
            request.extensions["timeout"] = self._timeouts
        response = await self._transport_for_url(request.url).handle_async_request(request)
        response.request = request
        if isinstance(response.stream, httpx.ByteStream):
            response.read()  # in memory already: decoded without an async iteration
            return response
        try:
            await response.aread()
        except BaseException:
            await response.aclose()
            raise
        return response


def http_client(timeout: float, max_connections: int = 200) -> httpx.AsyncClient:
    """The publisher's HTTP client: httpx's API over aiohttp, no redirects followed; each
    request in a span of its own when tracing is on."""
    transport: httpx.AsyncBaseTransport = AiohttpTransport(max_connections=max_connections)
    tracer = tracing.tracer()
    if tracer is not None:
        from kairos_publisher.traces import TracedTransport

        transport = TracedTransport(transport, tracer)
    return PlatformHttp(
        transport=transport,
        timeout=httpx.Timeout(timeout, connect=min(5.0, timeout)),
        follow_redirects=False,
    )
