"""Signing in with an API key, signing out, and the zone times are shown in."""

from __future__ import annotations

import grpc
from aiohttp import web

from kairos_client import KairosError
from kairos_console.app import CLIENT_KEY, session_of, set_session
from kairos_console.render import render, with_notice
from kairos_console.session import Session, valid_zone, zones
from kairos_console.views.forms import form_of, text

routes = web.RouteTableDef()


def _next_path(value: str) -> str:
    """Where to go after signing in: a path of this site only, never another site."""
    if value.startswith("/") and not value.startswith(("//", "/\\")):
        return value
    return "/"


@routes.get("/login")
async def login_page(request: web.Request) -> web.Response:
    refused = "Your API key was refused: sign in again." if request.query.get("refused") else ""
    return render(
        request,
        "login.html",
        error=refused,
        next=_next_path(request.query.get("next", "/")),
        zones=sorted(zones()),
    )


@routes.post("/login")
async def login(request: web.Request) -> web.Response:
    form = await form_of(request)
    key = text(form, "api_key")
    target = _next_path(text(form, "next"))
    zone = valid_zone(text(form, "zone"))
    error = ""
    if not key:
        error = "Enter an API key."
    else:
        try:
            # One cheap call that every valid key may make says whether the api takes it.
            await request.app[CLIENT_KEY].with_key(key).list_accounts()
        except KairosError as failure:
            if failure.code == grpc.StatusCode.UNAUTHENTICATED:
                error = "This API key was refused by the api."
            elif failure.code == grpc.StatusCode.PERMISSION_DENIED:
                error = f"This API key may not use the console: {failure.message}"
            else:
                error = f"The api could not be asked ({failure.code.name}): {failure.message}"
    if error:
        return render(
            request,
            "login.html",
            status=401 if "refused" in error else 400,
            error=error,
            next=target,
            zones=sorted(zones()),
        )
    set_session(request, session_of(request).signed_in_as(key, zone))
    raise web.HTTPSeeOther(target)


@routes.post("/logout")
async def logout(request: web.Request) -> web.Response:
    set_session(request, Session.new())
    raise web.HTTPSeeOther("/login?done=signed-out")


@routes.post("/zone")
async def change_zone(request: web.Request) -> web.Response:
    form = await form_of(request)
    set_session(request, session_of(request).in_zone(valid_zone(text(form, "zone"))))
    raise web.HTTPSeeOther(with_notice(_next_path(text(form, "next")), "zone"))
