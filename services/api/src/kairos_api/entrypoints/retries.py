"""Calls run again while the database is away (a failover, a restart), as far as that is safe.

Every unary RPC of the api's own services goes through `unit_of_work.retrying`: a run that
failed because the database was lost, before any COMMIT was sent, runs again with short pauses
for up to KAIROS_DATABASE_RETRY_SECONDS, then answers UNAVAILABLE (never INTERNAL). Streaming
calls are not: a request stream cannot be read twice, and a response stream has been partly
sent.

Once a COMMIT was sent and its answer lost, only the calls below run again, each idempotent by
construction:

- CreatePost with a request_id, and BatchCreatePosts whose every item has one: a second run
  finds the posts the first one made (by tenant and request_id) and answers them, unchanged.
- ClaimDue: a lost claim's deliveries are never begun (the scheduler never heard of them); their
  targets stay QUEUED until their lease ends and SweepExpired puts them back. A second run claims
  what is due now, exactly as the scheduler's own next call would.
- BeginAttempt(s): the fence and the begin keys. A second run under the same key (the
  publisher's, drawn for this handling of the event) answers the attempt the first run began,
  writing nothing; without a key the delivery is no longer one that may begin, so the second
  run refuses it and the attempt is settled by the sweeper when its lease ends (retried if its
  platform dedups, else UNKNOWN). Nothing is published twice.
- CompleteAttempts: an outcome already recorded is skipped.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, TypeVar

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from kairos_api.service_layer.unit_of_work import retrying

Context = grpc.aio.ServicerContext[Any, Any]
Idempotent = Callable[[Any], bool]
S = TypeVar("S")


def _always(_: Any) -> bool:
    return True


#: Calls that have the effect of one when run twice, by RPC (`package.Service/Method`): given
#: the request, whether this one is.
IDEMPOTENT: Mapping[str, Idempotent] = {
    "kairos.posts.v1.PostsService/CreatePost": lambda request: bool(request.request_id),
    "kairos.posts.v1.PostsService/BatchCreatePosts": lambda request: all(
        item.request_id for item in request.items
    ),
    "kairos.dispatch.v1.DispatchService/ClaimDue": _always,
    "kairos.dispatch.v1.DispatchService/BeginAttempt": _always,
    "kairos.dispatch.v1.DispatchService/BeginAttempts": _always,
    "kairos.dispatch.v1.DispatchService/CompleteAttempts": _always,
}


def _never(_: Any) -> bool:
    return False


def with_retries(servicer: S, service: ServiceDescriptor, patience: timedelta) -> S:
    """`servicer` with each of its unary methods run by `retrying` (set on the instance, where
    the generated `add_*_to_server` looks them up)."""
    for method in service.methods:
        if method.client_streaming or method.server_streaming:
            continue
        behaviour = getattr(servicer, method.name, None)
        if behaviour is None:
            continue
        idempotent = IDEMPOTENT.get(f"{service.full_name}/{method.name}", _never)
        setattr(servicer, method.name, _retried(behaviour, idempotent, patience))
    return servicer


def _retried(
    behaviour: Callable[[Any, Context], Any], idempotent: Idempotent, patience: timedelta
) -> Callable[[Any, Context], Any]:
    @functools.wraps(behaviour)
    async def retried(request: Any, context: Context) -> Any:
        return await retrying(
            lambda: behaviour(request, context),
            patience=patience,
            idempotent=idempotent(request),
            time_left=context.time_remaining,
        )

    return retried
