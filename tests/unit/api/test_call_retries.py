"""Which RPCs run again while the database is away, and which count as idempotent."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest

from kairos.dispatch.v1 import dispatch_pb2
from kairos.dispatch.v1 import webhooks_pb2 as dispatch_webhooks_pb2
from kairos.posts.v1 import media_pb2, posts_pb2, queues_pb2, series_pb2, webhooks_pb2
from kairos_api.entrypoints.retries import IDEMPOTENT, with_retries
from kairos_api.service_layer.unit_of_work import CommitOutcomeUnknown
from kairos_common import errors

SERVICES = {
    service.full_name: service
    for module in (
        posts_pb2,
        media_pb2,
        queues_pb2,
        series_pb2,
        webhooks_pb2,
        dispatch_pb2,
        dispatch_webhooks_pb2,
    )
    for service in module.DESCRIPTOR.services_by_name.values()
}


def test_every_idempotent_call_named_is_a_unary_rpc() -> None:
    # A misspelt name would silently leave its call unretried after a lost COMMIT.
    for name in IDEMPOTENT:
        service, _, method = name.partition("/")
        found = SERVICES[service].methods_by_name[method]
        assert not found.client_streaming, name
        assert not found.server_streaming, name


class _Context:
    def time_remaining(self) -> float | None:
        return None


class _Media:
    """A servicer whose calls fail as told, counting them."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.calls: dict[str, int] = {}

    async def _fail(self, name: str) -> Any:
        self.calls[name] = self.calls.get(name, 0) + 1
        raise self.error

    async def GetMedia(self, request: Any, context: Any) -> Any:  # noqa: N802 - the RPC's name
        return await self._fail("GetMedia")

    async def UploadMedia(self, request: Any, context: Any) -> Any:  # noqa: N802
        return await self._fail("UploadMedia")


async def test_unary_calls_are_retried_and_request_streams_are_not() -> None:
    servicer = _Media(psycopg.OperationalError("connection failed: Connection refused"))
    service = media_pb2.DESCRIPTOR.services_by_name["MediaService"]
    with_retries(servicer, service, timedelta(seconds=0.3))
    with pytest.raises(errors.Unavailable):
        await servicer.GetMedia(media_pb2.GetMediaRequest(), _Context())
    with pytest.raises(psycopg.OperationalError):
        await servicer.UploadMedia(iter(()), _Context())
    assert servicer.calls["GetMedia"] > 1
    assert servicer.calls["UploadMedia"] == 1


class _Posts:
    def __init__(self) -> None:
        self.runs = 0

    async def CreatePost(self, request: Any, context: Any) -> str:  # noqa: N802
        self.runs += 1
        if self.runs == 1:
            raise CommitOutcomeUnknown("COMMIT sent, its answer lost")
        return "created"


async def test_a_create_is_repeated_after_a_lost_commit_only_with_a_request_id() -> None:
    service = posts_pb2.DESCRIPTOR.services_by_name["PostsService"]
    with_id = with_retries(_Posts(), service, timedelta(seconds=5))
    request = posts_pb2.CreatePostRequest(request_id="r-1")
    assert await with_id.CreatePost(request, _Context()) == "created"
    assert with_id.runs == 2

    without = with_retries(_Posts(), service, timedelta(seconds=5))
    with pytest.raises(errors.Unavailable, match="may or may not have been made"):
        await without.CreatePost(posts_pb2.CreatePostRequest(), _Context())
    assert without.runs == 1
