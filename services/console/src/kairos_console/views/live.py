"""`/events`: the tenant's lifecycle events as Server-Sent Events, for pages that update live.

It follows the api's WatchEvents stream with the session's key (reconnecting from its cursor
when the api restarts) and passes each event on as `event: lifecycle` with the event as JSON.
A browser that reconnects starts from now: the pages re-render from the api whenever an event
arrives, so an event missed while away costs nothing but one refresh, which the script does on
reconnecting anyway. A comment line every 15 s keeps proxies from closing a quiet stream, and
shows within 15 s that a browser has gone (aiohttp does not cancel a handler whose client left).
When the console stops, every open stream ends at once (`end_streams`, on shutdown), so a stop
does not wait out its grace on them; the pages reconnect to another copy.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web
from google.protobuf.json_format import MessageToDict

from kairos.posts.v1 import events_pb2
from kairos_client import KairosError
from kairos_console.app import api

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

HEARTBEAT_SECONDS = 15
#: How long the stream may stay silent before the console writes a heartbeat of its own (the
#: api's stop while it is away), in seconds.
QUIET_SECONDS = float(HEARTBEAT_SECONDS)
#: The tasks serving open streams, to end when the console stops.
STREAMS_KEY: web.AppKey[set[asyncio.Task[Any]]] = web.AppKey("event_streams")


def install(app: web.Application) -> None:
    """Keep track of the open streams and end them when `app` shuts down."""
    streams: set[asyncio.Task[Any]] = set()
    app[STREAMS_KEY] = streams
    app.on_shutdown.append(end_streams)


async def end_streams(app: web.Application) -> None:
    open_streams = app[STREAMS_KEY]
    for task in list(open_streams):
        task.cancel()


@routes.get("/events")
async def events(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
    )
    await response.prepare(request)
    await response.write(b"retry: 3000\n\n")
    watch = events_pb2.WatchEventsRequest(follow=True, heartbeat_seconds=HEARTBEAT_SECONDS)
    streams = request.app[STREAMS_KEY]
    task = asyncio.current_task()
    assert task is not None
    streams.add(task)
    # The api's items come through a queue, so that while the api is away (the client
    # reconnecting, nothing arriving) the stream still says every QUIET_SECONDS that it
    # lives, and notices a browser that left.
    items: asyncio.Queue[events_pb2.WatchEventsResponse | BaseException] = asyncio.Queue(64)

    async def follow() -> None:
        try:
            async for item in api(request).watch_events(watch, reconnect=True):
                await items.put(item)
        except Exception as error:
            await items.put(error)

    follower = asyncio.create_task(follow())
    try:
        while True:
            try:
                item = await asyncio.wait_for(items.get(), QUIET_SECONDS)
            except TimeoutError:
                await response.write(b": heartbeat\n\n")
                continue
            if isinstance(item, BaseException):
                raise item
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
    except asyncio.CancelledError:
        # The console is stopping (end_streams): end this stream; the page reconnects.
        return response
    finally:
        follower.cancel()
        streams.discard(task)
    return response
