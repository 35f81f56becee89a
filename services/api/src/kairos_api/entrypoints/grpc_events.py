"""gRPC servicer of kairos.posts.v1.EventsService: a tenant's lifecycle events as a stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from kairos.events.v1 import events_pb2
from kairos.posts.v1 import events_pb2 as watch_pb2
from kairos.posts.v1 import events_pb2_grpc as watch_pb2_grpc
from kairos_api.adapters import convert
from kairos_api.adapters.orm import utcnow
from kairos_api.entrypoints.auth import Authenticator
from kairos_api.service_layer.posts.rules import parse_id
from kairos_api.service_layer.watch import (
    DEFAULT_HEARTBEAT,
    HEARTBEAT_RANGE,
    EventFeed,
    WatchQuery,
    event_name,
    parse_cursor,
)
from kairos_common import errors

Context = grpc.aio.ServicerContext[Any, Any]


def watch_query(tenant_id: str, request: watch_pb2.WatchEventsRequest) -> WatchQuery:
    """The request checked, every bad field named at once."""
    violations: list[errors.FieldViolation] = []

    def refuse(field: str, description: str) -> None:
        violations.append(errors.FieldViolation(field, description))

    after = since = None
    if request.cursor:
        try:
            after = parse_cursor(request.cursor)
        except errors.InvalidArgument as bad:
            violations.extend(bad.violations)
        if request.HasField("since"):
            refuse("since", "give a cursor or an instant to start from, not both")
    elif request.HasField("since"):
        try:
            since = convert.from_timestamp(request.since, "since")
        except errors.InvalidArgument as bad:
            violations.extend(bad.violations)
    names = set()
    for index, value in enumerate(request.types):
        if value == events_pb2.LIFECYCLE_EVENT_TYPE_UNSPECIFIED or (
            value not in events_pb2.LifecycleEventType.values()
        ):
            refuse(f"types[{index}]", f"{value} is not a lifecycle event type")
        else:
            names.add(event_name(value))
    ids = {}
    for field in ("post_id", "account_id"):
        text = getattr(request, field)
        if text:
            try:
                ids[field] = str(parse_id(text, field))
            except errors.InvalidArgument as bad:
                violations.extend(bad.violations)
    heartbeat = float(request.heartbeat_seconds) or DEFAULT_HEARTBEAT
    low, high = HEARTBEAT_RANGE
    if request.heartbeat_seconds and not low <= request.heartbeat_seconds <= high:
        refuse("heartbeat_seconds", f"must be {low} to {high} (0: {DEFAULT_HEARTBEAT:g})")
    if violations:
        raise errors.InvalidArgument.collect(violations)
    return WatchQuery(
        tenant_id=tenant_id,
        after=after,
        since=since,
        types=frozenset(names),
        post_id=ids.get("post_id", ""),
        account_id=ids.get("account_id", ""),
        follow=request.follow,
        heartbeat=heartbeat,
    )


class EventsServicer(watch_pb2_grpc.EventsServiceServicer):
    """WatchEvents: authenticate the tenant, check the request, stream what the feed reads."""

    def __init__(self, auth: Authenticator, feed: EventFeed) -> None:
        self.auth = auth
        self.feed = feed

    async def WatchEvents(
        self, request: watch_pb2.WatchEventsRequest, context: Context
    ) -> AsyncIterator[watch_pb2.WatchEventsResponse]:
        tenant = await self.auth.tenant(context)
        query = watch_query(tenant, request)

        async def allowed() -> None:
            # The key again, every few seconds (RECHECK_EVERY): a revoked one ends the watch
            # with UNAUTHENTICATED, as it would any other call.
            await self.auth.tenant(context)

        async for item in self.feed.watch(query, allowed):
            if item.event is None:
                beat = watch_pb2.WatchHeartbeat(sent_at=convert.timestamp(utcnow()))
                yield watch_pb2.WatchEventsResponse(heartbeat=beat, cursor=item.cursor)
            else:
                yield watch_pb2.WatchEventsResponse(event=item.event, cursor=item.cursor)
