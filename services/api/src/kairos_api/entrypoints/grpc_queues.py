"""gRPC servicer of kairos.posts.v1.QueueService: translates requests to `posts.queue`."""

from __future__ import annotations

from typing import Any

import grpc

from kairos.posts.v1 import queues_pb2, queues_pb2_grpc
from kairos_api.adapters import convert
from kairos_api.entrypoints.auth import Authenticator
from kairos_api.service_layer.application import Application
from kairos_api.service_layer.posts import queue
from kairos_common import errors

Context = grpc.aio.ServicerContext[Any, Any]


def slots_to_proto(view: queue.QueueView) -> queues_pb2.QueueSlots:
    return queues_pb2.QueueSlots(
        account_id=str(view.account_id),
        time_zone=view.time_zone,
        slots=[
            queues_pb2.QueueSlot(
                weekday=queues_pb2.Weekday.ValueType(slot.weekday), time=slot.time_text
            )
            for slot in view.slots
        ],
    )


class QueueServicer(queues_pb2_grpc.QueueServiceServicer):
    """Every method: authenticate the tenant, call the handler, answer."""

    def __init__(self, app: Application, auth: Authenticator) -> None:
        self.app = app
        self.auth = auth

    async def SetQueueSlots(
        self, request: queues_pb2.SetQueueSlotsRequest, context: Context
    ) -> queues_pb2.SetQueueSlotsResponse:
        tenant = await self.auth.tenant(context)
        view = await queue.set_queue_slots(
            self.app,
            tenant,
            request.account_id,
            request.time_zone,
            [(int(slot.weekday), slot.time) for slot in request.slots],
        )
        return queues_pb2.SetQueueSlotsResponse(queue=slots_to_proto(view))

    async def GetQueueSlots(
        self, request: queues_pb2.GetQueueSlotsRequest, context: Context
    ) -> queues_pb2.GetQueueSlotsResponse:
        tenant = await self.auth.tenant(context)
        view = await queue.get_queue_slots(self.app, tenant, request.account_id)
        return queues_pb2.GetQueueSlotsResponse(queue=slots_to_proto(view))

    async def ListQueue(
        self, request: queues_pb2.ListQueueRequest, context: Context
    ) -> queues_pb2.ListQueueResponse:
        tenant = await self.auth.tenant(context)
        start = (
            convert.from_timestamp(getattr(request, "from"), "from")
            if request.HasField("from")
            else None
        )
        listed = await queue.list_queue(self.app, tenant, request.account_id, request.count, start)
        return queues_pb2.ListQueueResponse(
            time_zone=listed.time_zone,
            entries=[
                queues_pb2.QueueEntry(
                    at=convert.timestamp(entry.at),
                    local_time=entry.local_time,
                    post_id=str(entry.post_id) if entry.post_id is not None else "",
                )
                for entry in listed.entries
            ],
        )

    async def MoveQueuedPost(
        self, request: queues_pb2.MoveQueuedPostRequest, context: Context
    ) -> queues_pb2.MoveQueuedPostResponse:
        tenant = await self.auth.tenant(context)
        if not request.HasField("slot_at"):
            raise errors.InvalidArgument.of("slot_at", "is required")
        at = convert.from_timestamp(request.slot_at, "slot_at")
        post = await queue.move_queued_post(self.app, tenant, request.post_id, at)
        return queues_pb2.MoveQueuedPostResponse(post=convert.post_to_proto(post))

    async def SwapQueuedPosts(
        self, request: queues_pb2.SwapQueuedPostsRequest, context: Context
    ) -> queues_pb2.SwapQueuedPostsResponse:
        tenant = await self.auth.tenant(context)
        first, second = await queue.swap_queued_posts(
            self.app, tenant, request.first_post_id, request.second_post_id
        )
        return queues_pb2.SwapQueuedPostsResponse(
            first=convert.post_to_proto(first), second=convert.post_to_proto(second)
        )

    async def RemoveFromQueue(
        self, request: queues_pb2.RemoveFromQueueRequest, context: Context
    ) -> queues_pb2.RemoveFromQueueResponse:
        tenant = await self.auth.tenant(context)
        post, moved = await queue.remove_from_queue(
            self.app, tenant, request.post_id, shift_up=request.shift_up
        )
        return queues_pb2.RemoveFromQueueResponse(
            post=convert.post_to_proto(post), moved_post_ids=[str(i) for i in moved]
        )
