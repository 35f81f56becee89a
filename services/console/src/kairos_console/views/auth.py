"""Signing in with an API key, signing out, and the zone times are shown in."""

from __future__ import annotations

import logging

import grpc
from aiohttp import web

from kairos_client import KairosError
from kairos_console.app import CLIENT_KEY, FAILED, session_of, set_session
from kairos_console.render import render, with_notice
from kairos_console.session import DEFAULT_ZONE, Session, valid_zone, zone_names
from kairos_console.views.forms import form_of, text

log = logging.getLogger(__name__)

routes = web.RouteTableDef()


def _next_path(value: str) -> str:
    """Where to go after signing in: a path of this site only, never another site. Browsers drop
    tabs and line breaks from a URL and read a backslash as a slash, so `/<tab>/evil.example`
    would lead away: any of those refuses the value."""
    if (
        value.startswith("/")
        and not value.startswith("//")
        and not any(c <= " " or c in "\\\x7f" for c in value)
    ):
        return value
    return "/"


@routes.get("/login")
async def login_page(request: web.Request) -> web.Response:
    refused = "Your API key was refused: sign in again." if request.query.get("refused") else ""
    return render(
        request,
        "login.html",
        error=refused,
        zone_error="",
        typed_zone=DEFAULT_ZONE,
        next=_next_path(request.query.get("next", "/")),
        zones=zone_names(),
    )


@routes.post("/login")
async def login(request: web.Request) -> web.Response:
    form = await form_of(request)
    key = text(form, "api_key")
    target = _next_path(text(form, "next"))
    typed_zone = text(form, "zone") or DEFAULT_ZONE
    zone = valid_zone(typed_zone)
    error = zone_error = ""
    status = 400
    if zone != typed_zone:
        zone_error = unknown_zone(typed_zone)
    if not key:
        error = "Enter an API key."
    elif not (key.isascii() and key.isprintable()):
        # gRPC metadata cannot carry it; no key Kairos makes looks like this.
        error, status = "This API key was refused by the api.", 401
    else:
        try:
            # One cheap call that every valid key may make says whether the api takes it.
            await request.app[CLIENT_KEY].with_key(key).list_accounts()
        except KairosError as failure:
            if failure.code == grpc.StatusCode.UNAUTHENTICATED:
                error, status = "This API key was refused by the api.", 401
            elif failure.code == grpc.StatusCode.PERMISSION_DENIED:
                error, status = f"This API key may not use the console: {failure.message}", 403
            elif failure.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                error, status = "The api cannot be reached right now: try again shortly.", 503
            else:
                log.warning("sign-in could not ask the api: %s", failure)
                error, status = FAILED, 502
    if error or zone_error:
        return render(
            request,
            "login.html",
            status=status,
            error=error,
            zone_error=zone_error,
            typed_zone=typed_zone,
            next=target,
            zones=zone_names(),
        )
    set_session(request, session_of(request).signed_in_as(key, zone))
    raise web.HTTPSeeOther(target)


def unknown_zone(name: str) -> str:
    return f"{name[:60]!r} is not a time zone: use an IANA name such as Europe/Berlin."


@routes.post("/logout")
async def logout(request: web.Request) -> web.Response:
    set_session(request, Session.new())
    raise web.HTTPSeeOther("/login?done=signed-out")


@routes.post("/zone")
async def change_zone(request: web.Request) -> web.Response:
    form = await form_of(request)
    typed = text(form, "zone")
    back = _next_path(text(form, "next"))
    if valid_zone(typed) != typed:
        # Kept as it was: a mistyped zone would move every time shown by hours.
        raise web.HTTPSeeOther(with_notice(back, "zone-unknown"))
    set_session(request, session_of(request).in_zone(typed))
    raise web.HTTPSeeOther(with_notice(back, "zone"))
