"""The console's web application: its middlewares (security headers, the session, CSRF, sign-in)
and its routes (one module per page under `views`).

Every response carries a strict Content-Security-Policy: scripts, styles, images and fetches
from this origin only, nothing inline, no frames, forms posted to this origin only. Every
state-changing request (any method but GET and HEAD) must carry the session's CSRF token, in the
form's `csrf_token` field or the `X-CSRF-Token` header, and, when the browser sends an Origin,
come from this origin.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote, urlsplit

import grpc
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiDictProxy

from kairos_client import KairosClient, KairosError
from kairos_console.render import ENV_KEY, environment, render
from kairos_console.session import Session, Sessions
from kairos_console.settings import ConsoleSettings

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
#: Paths served to visitors who have not signed in.
PUBLIC_PREFIXES = ("/login", "/static/", "/healthz")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: The largest body accepted before signing in (the sign-in form), in bytes.
SIGNED_OUT_MAX_BODY = 16 * 1024

SETTINGS_KEY = web.AppKey("settings", ConsoleSettings)
#: The request's session, and whether the response must carry its cookie anew.
SESSION_KEY = web.RequestKey("session", Session)
SESSION_CHANGED_KEY = web.RequestKey("session_changed", bool)
SESSIONS_KEY = web.AppKey("sessions", Sessions)
CLIENT_KEY = web.AppKey("client", KairosClient)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def api(request: web.Request) -> KairosClient:
    """The api, called with the signed-in user's key."""
    return request.app[CLIENT_KEY].with_key(request[SESSION_KEY].key)


def session_of(request: web.Request) -> Session:
    return request[SESSION_KEY]


def set_session(request: web.Request, session: Session) -> None:
    """Replace the request's session; the response carries its cookie."""
    request[SESSION_KEY] = session
    request[SESSION_CHANGED_KEY] = True


def wants_fragment(request: web.Request) -> bool:
    """Whether the page's script asked (fetch), rather than the browser navigating."""
    return request.headers.get("X-Requested-With") == "kairos-console"


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Add the security headers to every response as its headers are sent (aiohttp's
    on_response_prepare): a middleware would add them after the handler returned, too late for a
    stream such as /events, whose headers went out when it began."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if not request.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-store")


@web.middleware
async def sessions(request: web.Request, handler: Handler) -> web.StreamResponse:
    store = request.app[SESSIONS_KEY]
    loaded = store.load(request.cookies.get(store.cookie))
    request[SESSION_KEY] = loaded or Session.new()
    request[SESSION_CHANGED_KEY] = loaded is None
    try:
        response = await handler(request)
    except web.HTTPException as error:
        _set_cookie(request, error)
        raise
    _set_cookie(request, response)
    return response


def _set_cookie(request: web.Request, response: web.StreamResponse) -> None:
    if not request[SESSION_CHANGED_KEY] or response.prepared:
        return
    settings = request.app[SETTINGS_KEY]
    response.set_cookie(
        request.app[SESSIONS_KEY].cookie,
        request.app[SESSIONS_KEY].dump(request[SESSION_KEY]),
        max_age=int(settings.session_lifetime.total_seconds()),
        path="/",
        httponly=True,
        secure=settings.secure_cookies,
        samesite="Strict",
    )


@web.middleware
async def csrf(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method in SAFE_METHODS:
        return await handler(request)
    origin = request.headers.get("Origin")
    if origin and origin != "null" and not _our_origin(request, origin):
        raise web.HTTPForbidden(text="This form was sent from another site; it was refused.")
    if not session_of(request).signed_in and (
        request.content_length is None or request.content_length > SIGNED_OUT_MAX_BODY
    ):
        # Only the sign-in form is sent before signing in, and it is small.
        raise web.HTTPRequestEntityTooLarge(
            max_size=SIGNED_OUT_MAX_BODY, actual_size=request.content_length or 0
        )
    token = request.headers.get("X-CSRF-Token", "")
    if not token and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        form = await read_form(request)
        field = form.get("csrf_token", "")
        token = field if isinstance(field, str) else ""
    if not session_of(request).csrf_matches(token):
        raise web.HTTPForbidden(
            text="The form's security token is missing or out of date: reload the page and "
            "send it again."
        )
    return await handler(request)


def _our_origin(request: web.Request, origin: str) -> bool:
    """Whether a browser's `Origin` is the console's: one of KAIROS_CONSOLE_ORIGINS when they
    are set (behind a proxy that sends its own Host), else the Host of the request."""
    allowed = request.app[SETTINGS_KEY].allowed_origins
    if allowed:
        return origin.rstrip("/").lower() in allowed
    return _netloc(origin) == request.host


def _netloc(url: str) -> str:
    try:
        return urlsplit(url).netloc
    except ValueError:  # not a URL at all ("http://[::")
        return ""


async def read_form(
    request: web.Request,
) -> MultiDictProxy[str | bytes | bytearray | web.FileField]:
    """The request's form; a body that is no form (bad bytes, an unknown charset, a broken
    multipart) is the client's mistake: 400, not a 500."""
    try:
        return await request.post()
    except (ValueError, LookupError, AssertionError, HttpProcessingError) as error:
        raise web.HTTPBadRequest(text=f"The form could not be read: {error}"[:300]) from None


@web.middleware
async def signed_in(request: web.Request, handler: Handler) -> web.StreamResponse:
    if session_of(request).signed_in or request.path.startswith(PUBLIC_PREFIXES):
        return await handler(request)
    if wants_fragment(request) or request.method not in SAFE_METHODS:
        raise web.HTTPUnauthorized(text="Sign in again: your session has ended.")
    raise web.HTTPSeeOther(f"/login?next={quote(request.path_qs, safe='')}")


@web.middleware
async def api_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A failed api call that its page did not handle: a page saying what the api said, with
    the HTTP status closest to the gRPC one; a refused key ends the session."""
    try:
        return await handler(request)
    except KairosError as error:
        if error.code == grpc.StatusCode.UNAUTHENTICATED:
            set_session(request, Session.new())
            if wants_fragment(request):
                raise web.HTTPUnauthorized(
                    text="Your API key was refused: sign in again."
                ) from None
            raise web.HTTPSeeOther("/login?refused=1") from None
        status = HTTP_STATUS.get(error.code, 502)
        message = error.message
        if status >= 500:
            # The api's own words here name addresses and libraries: they go to the log, and
            # the page says what the user can do.
            log.warning("api call failed: %s", error)
            message = UNREACHABLE if status in (503, 504) else FAILED
        if wants_fragment(request):
            return web.Response(text=message, status=status)
        return render(request, "error.html", status=status, error=error, message=message)


UNREACHABLE = "The api cannot be reached right now: try again shortly."
FAILED = "The api could not answer: try again; if it goes on, tell whoever runs Kairos."

HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


def create_app(settings: ConsoleSettings, client: KairosClient) -> web.Application:
    """The application over an open `client` (its channel is shared by every user's key)."""
    from kairos_console.views import ROUTES, live

    app = web.Application(
        # Sign-in before CSRF: a session that ended (its cookie expired) gets a fresh token, so
        # its forms would read as forged; they are asked to sign in again instead.
        middlewares=[sessions, signed_in, csrf, api_errors],
        client_max_size=64 * 1024 * 1024,
    )
    app.on_response_prepare.append(security_headers)
    live.install(app)
    app[SETTINGS_KEY] = settings
    app[SESSIONS_KEY] = Sessions(
        settings.cookie_key, settings.session_lifetime, secure=settings.secure_cookies
    )
    app[CLIENT_KEY] = client
    app[ENV_KEY] = environment()
    app.router.add_get("/healthz", healthz)
    app.router.add_static("/static/", STATIC, name="static", append_version=True)
    for routes in ROUTES:
        app.router.add_routes(routes)
    return app
