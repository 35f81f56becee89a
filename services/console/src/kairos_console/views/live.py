"""`/events`: the tenant's lifecycle events as Server-Sent Events, for pages that update live.

It follows the api's WatchEvents stream with the session's key (reconnecting from its cursor
when the api restarts) and passes each event on as `event: lifecycle` with the event as JSON.
A browser that reconnects starts from now: the pages re-render from the api whenever an event
arrives, so an event missed while away costs nothing but one refresh, which the script does on
reconnecting anyway. A comment line every 15 s keeps proxies from closing a quiet stream.
"""

from __future__ import annotations

import json
import logging

from aiohttp import web
from google.protobuf.json_format import MessageToDict

from kairos.posts.v1 import events_pb2
from kairos_client import KairosError
from kairos_console.app import api

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

HEARTBEAT_SECONDS = 15


@routes.get("/events")
async def events(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
    )
    await response.prepare(request)
    await response.write(b"retry: 3000\n\n")
    watch = events_pb2.WatchEventsRequest(follow=True, heartbeat_seconds=HEARTBEAT_SECONDS)
    try:
        async for item in api(request).watch_events(watch, reconnect=True):
            if item.HasField("event"):
                data = json.dumps(MessageToDict(item.event), separators=(",", ":"))
                await response.write(f"event: lifecycle\ndata: {data}\n\n".encode())
            else:
                await response.write(b": heartbeat\n\n")
    except KairosError as error:
        # A refused key or a stream the api will not serve: the page falls back to polling.
        log.info("live events ended: %s", error)
        await response.write(b"event: ended\ndata: {}\n\n")
    except ConnectionResetError:
        pass  # the browser went away
    return response
