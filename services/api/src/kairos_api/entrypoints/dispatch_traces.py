"""The api's spans of a delivery's trace (see `kairos_common.tracing` for the whole tree).

Each function takes a finished batch call, its request and response, and when it began; it
asks once whether tracing is on and does nothing more when it is off. On, it starts the root of
each claimed (or re-emitted) delivery and writes its traceparent into the response, or records
a child span under each traced item of a begin, a completion, a failure or a mark.
"""

from __future__ import annotations

from collections.abc import Sequence

from kairos.dispatch.v1 import dispatch_pb2
from kairos.posts.v1 import posts_pb2
from kairos_common import errors, tracing

DELIVERY = "kairos.delivery_id"


def _delivery_attributes(delivery: dispatch_pb2.Delivery) -> tracing.Attributes:
    return {
        DELIVERY: delivery.delivery_id,
        "kairos.target_id": delivery.target_id,
        "kairos.post_id": delivery.post_id,
        "kairos.platform": posts_pb2.Platform.Name(delivery.platform),
        "kairos.attempt_number": delivery.attempt_number,
    }


def start_deliveries(
    name: str, deliveries: Sequence[dispatch_pb2.Delivery], started_ns: int
) -> None:
    """A root span per delivery (`claim delivery`, `redeliver delivery`), its traceparent set on
    the delivery for the scheduler to carry on."""
    tracer = tracing.tracer()
    if tracer is None or not deliveries:
        return
    parents = tracing.roots(tracer, name, (_delivery_attributes(d) for d in deliveries), started_ns)
    for delivery, value in zip(deliveries, parents, strict=True):
        delivery.traceparent = value


def check_traceparents(request: dispatch_pb2.BeginAttemptsRequest) -> None:
    """InvalidArgument unless `traceparents` is empty or parallel to `delivery_ids`."""
    if request.traceparents and len(request.traceparents) != len(request.delivery_ids):
        raise errors.InvalidArgument.of(
            "traceparents", "must be empty or hold one value per delivery id"
        )


def _begun_attributes(
    delivery_id: str, result: dispatch_pb2.BeginAttemptResponse
) -> tracing.Attributes:
    attributes: dict[str, str | bool] = {DELIVERY: delivery_id, "kairos.begun": result.ok}
    if result.ok:
        attributes["kairos.attempt_id"] = result.attempt_id
    else:
        attributes["kairos.rejection"] = dispatch_pb2.FenceRejection.Name(result.rejection)
    return attributes


def begun(
    request: dispatch_pb2.BeginAttemptsRequest,
    response: dispatch_pb2.BeginAttemptsResponse,
    started_ns: int,
) -> None:
    """A `begin attempt` span under each traced delivery of a BeginAttempts call."""
    tracer = tracing.tracer()
    if tracer is None or not request.traceparents:
        return
    tracing.record(
        tracer,
        "begin attempt",
        (
            (value, _begun_attributes(delivery_id, result))
            for value, delivery_id, result in zip(
                request.traceparents, request.delivery_ids, response.results, strict=True
            )
            if value
        ),
        started_ns,
    )


def begun_one(
    request: dispatch_pb2.BeginAttemptRequest,
    response: dispatch_pb2.BeginAttemptResponse,
    started_ns: int,
) -> None:
    """`begun` for a BeginAttempt call."""
    tracer = tracing.tracer()
    if tracer is None or not request.traceparent:
        return
    tracing.record(
        tracer,
        "begin attempt",
        [(request.traceparent, _begun_attributes(request.delivery_id, response))],
        started_ns,
    )


def completed(
    request: dispatch_pb2.CompleteAttemptsRequest,
    response: dispatch_pb2.CompleteAttemptsResponse,
    started_ns: int,
) -> None:
    """A `complete attempt` span under each traced outcome of a CompleteAttempts call."""
    tracer = tracing.tracer()
    if tracer is None:
        return
    tracing.record(
        tracer,
        "complete attempt",
        (
            (
                outcome.traceparent,
                {
                    DELIVERY: outcome.delivery_id,
                    "kairos.attempt_id": outcome.attempt_id,
                    "kairos.published": outcome.HasField("published"),
                    "kairos.target_status": posts_pb2.TargetStatus.Name(result.target_status),
                    "kairos.next_step": dispatch_pb2.NextStep.Name(result.next_step),
                },
            )
            for outcome, result in zip(request.outcomes, response.results, strict=True)
            if outcome.traceparent
        ),
        started_ns,
    )


def failed(
    request: dispatch_pb2.FailDeliveryRequest,
    response: dispatch_pb2.FailDeliveryResponse,
    started_ns: int,
) -> None:
    """A `fail delivery` span under a traced FailDelivery call."""
    tracer = tracing.tracer()
    if tracer is None or not request.traceparent:
        return
    tracing.record(
        tracer,
        "fail delivery",
        [
            (
                request.traceparent,
                {
                    DELIVERY: request.delivery_id,
                    "kairos.target_status": posts_pb2.TargetStatus.Name(response.target_status),
                },
            )
        ],
        started_ns,
    )


def marked(
    request: dispatch_pb2.MarkAttemptRequest,
    response: dispatch_pb2.MarkAttemptResponse,
    started_ns: int,
) -> None:
    """A `mark attempt` span under a traced MarkAttempt call."""
    tracer = tracing.tracer()
    if tracer is None or not request.traceparent:
        return
    tracing.record(
        tracer,
        "mark attempt",
        [
            (
                request.traceparent,
                {
                    "kairos.attempt_id": request.attempt_id,
                    "kairos.stage": dispatch_pb2.AttemptStage.Name(request.stage),
                    "kairos.marked": response.ok,
                },
            )
        ],
        started_ns,
    )
