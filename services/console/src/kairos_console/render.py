"""Pages from Jinja2 templates (autoescaped), and the filters they share."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web
from google.protobuf.timestamp_pb2 import Timestamp

from kairos.posts.v1 import posts_pb2

TEMPLATES = Path(__file__).parent / "templates"

#: What a `?done=` code in a redirect says (fixed texts: a link cannot make the page say
#: something of its own).
NOTICES = {
    "signed-out": "You are signed out.",
    "created": "The post is saved.",
    "scheduled": "The post is scheduled.",
    "rescheduled": "The post is rescheduled.",
    "unscheduled": "The post is back to draft.",
    "published-now": "The post is publishing now.",
    "retried": "The target will be tried again.",
    "deleted": "The post is deleted.",
    "approved": "The post is approved.",
    "rejected": "The post is rejected.",
    "connected": "The account is connected.",
    "paused": "The account is paused.",
    "resumed": "The account is resumed.",
    "disconnected": "The account is disconnected.",
    "credentials": "The credentials are updated.",
    "zone": "Times are now shown in your chosen zone.",
}
#: What a `?done=` code says when the thing asked for was not done (shown as an alert).
REFUSED_NOTICES = {
    "zone-unknown": "The time zone was not changed: use an IANA name such as Europe/Berlin.",
}


def with_notice(path: str, code: str) -> str:
    """`path` with `?done=<code>` (or `&done=`), for the page a form redirects to."""
    return f"{path}{'&' if '?' in path else '?'}done={code}"


def timestamp_set(value: Timestamp | None) -> bool:
    return value is not None and (value.seconds != 0 or value.nanos != 0)


def to_datetime(value: Timestamp, zone: str) -> datetime:
    return value.ToDatetime(tzinfo=UTC).astimezone(ZoneInfo(zone))


def local_time(value: Timestamp | None, zone: str, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A timestamp as a wall time in `zone`; "" when unset."""
    if value is None or not timestamp_set(value):
        return ""
    return to_datetime(value, zone).strftime(fmt)


def iso(value: Timestamp | None) -> str:
    """A timestamp as ISO 8601 UTC, for `<time datetime=...>`; "" when unset."""
    if value is None or not timestamp_set(value):
        return ""
    return value.ToDatetime(tzinfo=UTC).isoformat().replace("+00:00", "Z")


def word(value: int, enum: Any) -> str:
    """A proto enum value as a lowercase word: POST_STATUS_PUBLISHED -> "published"."""
    name: str = enum.Name(value)
    prefix = enum.DESCRIPTOR.values[0].name.removesuffix("UNSPECIFIED")
    return name.removeprefix(prefix).lower().replace("_", " ")


def post_status(value: int) -> str:
    return word(value, posts_pb2.PostStatus)


def target_status(value: int) -> str:
    return word(value, posts_pb2.TargetStatus)


def platform(value: int) -> str:
    return word(value, posts_pb2.Platform)


def error_class(value: int) -> str:
    return word(value, posts_pb2.ErrorClass)


def seconds(value: Any) -> str:
    """A Duration as "1.234 s"; "" when zero."""
    total = value.seconds + value.nanos / 1e9
    return f"{total:.3f} s" if total else ""


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        local_time=local_time,
        iso=iso,
        post_status=post_status,
        target_status=target_status,
        platform=platform,
        error_class=error_class,
        seconds=seconds,
    )
    env.tests["set"] = timestamp_set
    return env


ENV_KEY = web.AppKey("jinja", jinja2.Environment)


def render(
    request: web.Request, template: str, *, status: int = 200, **context: Any
) -> web.Response:
    """`template` rendered with `context`, the session (its CSRF token and zone) and the page's
    notice, as an HTML response."""
    from kairos_console.app import session_of

    session = session_of(request)
    page = (
        request.app[ENV_KEY]
        .get_template(template)
        .render(
            request=request,
            session=session,
            csrf_token=session.csrf,
            zone=session.zone,
            notice=NOTICES.get(request.query.get("done", ""), ""),
            refused_notice=REFUSED_NOTICES.get(request.query.get("done", ""), ""),
            path=request.path,
            **context,
        )
    )
    return web.Response(text=page, status=status, content_type="text/html", charset="utf-8")
