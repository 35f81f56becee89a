"""Due events JetStream did not acknowledge are published again, with the same ids, while NATS
is up, instead of waiting out their delivery's lease."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from kairos.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from kairos.posts.v1 import posts_pb2
from kairos_common.publishing import AckedPublisher, Message
from kairos_scheduler import loop
from kairos_scheduler.loop import ClaimLoop, emit
from kairos_scheduler.settings import SchedulerSettings


class Broker:
    """A publisher whose JetStream stores what is sent while `answering`, and is reachable while
    `connected`."""

    def __init__(self) -> None:
        self.answering = False
        self.connected = True
        self.sent: list[str] = []

    async def publish(self, messages: Sequence[Message], timeout: float) -> list[bool]:
        self.sent.extend(m.msg_id for m in messages)
        return [self.answering] * len(messages)


def claim_loop(broker: Broker) -> ClaimLoop:
    settings = SchedulerSettings.from_env({"KAIROS_ENV": "development"})
    dispatch = cast("dispatch_pb2_grpc.DispatchServiceAsyncStub", None)  # not called here
    return ClaimLoop(settings, dispatch, cast(AckedPublisher, broker))


def deliveries(*ids: str) -> list[dispatch_pb2.Delivery]:
    return [dispatch_pb2.Delivery(delivery_id=i, platform=posts_pb2.PLATFORM_MASTODON) for i in ids]


async def test_unacknowledged_events_go_again_with_their_ids_once_nats_answers() -> None:
    broker = Broker()
    claims = claim_loop(broker)
    claims.keep_unsent(await emit(cast(AckedPublisher, broker), deliveries("d-1", "d-2")))
    assert list(claims.unsent) == ["d-1", "d-2"]

    broker.connected = False
    await claims.publish_unsent()  # NATS away: nothing is tried
    assert broker.sent == ["d-1", "d-2"]

    broker.connected = True
    await claims.publish_unsent()  # up, but JetStream still not answering: kept
    assert broker.sent == ["d-1", "d-2", "d-1", "d-2"]
    assert list(claims.unsent) == ["d-1", "d-2"]

    broker.answering = True
    await claims.publish_unsent()
    assert broker.sent[-2:] == ["d-1", "d-2"]
    assert claims.unsent == {}
    assert claims.emitted == 2


async def test_past_the_limit_the_oldest_are_left_to_their_lease(monkeypatch: Any) -> None:
    monkeypatch.setattr(loop, "MAX_UNSENT", 2)
    claims = claim_loop(Broker())
    claims.keep_unsent(await emit(cast(AckedPublisher, Broker()), deliveries("a", "b", "c")))
    assert list(claims.unsent) == ["b", "c"]
