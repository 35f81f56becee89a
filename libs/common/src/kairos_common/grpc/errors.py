"""The one place where Kairos's domain errors become gRPC status codes.

`ErrorMappingInterceptor` wraps every handler: a `KairosError` becomes its status code with the
error's message (and `google.rpc.BadRequest` field violations for `InvalidArgument`); anything else
is logged with its trace and answers `INTERNAL` without leaking details.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from kairos_common import errors

log = logging.getLogger(__name__)

STATUS_CODES: dict[type[errors.KairosError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Aborted: grpc.StatusCode.ABORTED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
}


def status_code_of(error: errors.KairosError) -> grpc.StatusCode:
    """The gRPC status code for a domain error (its nearest mapped base class)."""
    for cls in type(error).__mro__:
        if cls in STATUS_CODES:
            return STATUS_CODES[cls]
    return grpc.StatusCode.UNKNOWN


#: Error details travel in HTTP/2 headers, which gRPC caps at 8 KiB (soft) and 16 KiB (hard).
#: The budgets below are in bytes *as sent*: `grpc-message` is percent-encoded (a non-ASCII
#: character costs three bytes per UTF-8 byte) and `grpc-status-details-bin` is base64 of the
#: serialized status, so a status stays well inside the soft limit however much the client got
#: wrong and whatever characters it echoed.
MAX_MESSAGE = 1_000
MAX_VIOLATIONS = 20
MAX_FIELD = 200
MAX_DESCRIPTION = 300
MAX_VIOLATION_BYTES = 2_500


def _sent_size(char: str) -> int:
    """What one character costs in a percent-encoded `grpc-message`."""
    if " " <= char <= "~" and char != "%":
        return 1
    return 3 * len(char.encode("utf-8", "surrogatepass"))


def _clip(text: str, limit: int) -> str:
    """`text`, cut (with an ellipsis) so that its percent-encoded form fits in `limit` bytes."""
    sizes = [_sent_size(char) for char in text]
    if sum(sizes) <= limit:
        return text
    budget = limit - _sent_size("…")
    kept = 0
    for size in sizes:
        if budget < size:
            break
        budget -= size
        kept += 1
    return text[:kept] + "…"


def to_rich_status(error: errors.KairosError) -> grpc.Status:
    """A status carrying the code, the message and, for bad requests, the field violations.

    Violations that do not fit in the headers are left out of the list, which holds only real
    fields, and the message says how many more there were.
    """
    code = status_code_of(error)
    details: list[any_pb2.Any] = []
    suffix = ""
    if isinstance(error, errors.InvalidArgument) and error.violations:
        bad_request = error_details_pb2.BadRequest()
        for index, violation in enumerate(error.violations):
            entry = error_details_pb2.BadRequest.FieldViolation(
                field=_clip(violation.field, MAX_FIELD),
                description=_clip(violation.description, MAX_DESCRIPTION),
            )
            full = index >= MAX_VIOLATIONS
            if not full:
                full = bad_request.ByteSize() + entry.ByteSize() + 3 > MAX_VIOLATION_BYTES
            if full:
                suffix = f" (and {len(error.violations) - index} more violations not listed)"
                break
            bad_request.field_violations.append(entry)
        packed = any_pb2.Any()
        packed.Pack(bad_request)
        details.append(packed)
    message = _clip(error.message, MAX_MESSAGE - len(suffix)) + suffix
    detail = status_pb2.Status(code=code.value[0], message=message, details=details)
    return rpc_status.to_status(detail)


async def _abort(context: grpc.aio.ServicerContext[Any, Any], error: BaseException) -> NoReturn:
    if isinstance(error, errors.KairosError):
        status = to_rich_status(error)
    else:
        log.exception("unexpected error in %s", _method_name(context), exc_info=error)
        status = rpc_status.to_status(
            status_pb2.Status(code=code_pb2.INTERNAL, message="internal error; see server logs")
        )
    await context.abort(status.code, status.details, status.trailing_metadata)


def _method_name(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    details = getattr(context, "_rpc_event", None)
    method = getattr(getattr(details, "call_details", None), "method", b"")
    return method.decode() if isinstance(method, bytes) else str(method)


if TYPE_CHECKING:
    _Interceptor = grpc.aio.ServerInterceptor[Any, Any]
    _MethodHandler = grpc.RpcMethodHandler[Any, Any]
else:
    _Interceptor = grpc.aio.ServerInterceptor
    _MethodHandler = grpc.RpcMethodHandler

Handler = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]


def nul_violations(message: Message, prefix: str = "") -> list[errors.FieldViolation]:
    """Text fields holding a NUL character, which no database column accepts (PostgreSQL
    refuses it outright), named by their path in the request."""
    found: list[errors.FieldViolation] = []
    for field, value in message.ListFields():
        path = f"{prefix}{field.name}"
        if field.type == field.TYPE_STRING:
            values = [value] if not field.is_repeated else list(value)
            for index, text in enumerate(values):
                if "\x00" in text:
                    where = path if not field.is_repeated else f"{path}[{index}]"
                    found.append(errors.FieldViolation(where, "must not contain NUL characters"))
        elif field.type == field.TYPE_MESSAGE:
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                for key, item in value.items():
                    texts = [key, item] if isinstance(item, str) else [key]
                    if any("\x00" in str(t) for t in texts):
                        found.append(errors.FieldViolation(path, "must not contain NUL characters"))
                    if isinstance(item, Message):
                        found.extend(nul_violations(item, f"{path}[{key!r}]."))
            elif field.is_repeated:
                for index, item in enumerate(value):
                    found.extend(nul_violations(item, f"{path}[{index}]."))
            else:
                found.extend(nul_violations(value, f"{path}."))
    return found


def _wrap_unary(behaviour: Handler) -> Handler:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            if isinstance(request, Message):
                found = nul_violations(request)
                if found:
                    raise errors.InvalidArgument.collect(found)
            return await behaviour(request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await _abort(context, error)

    return wrapped


class ErrorMappingInterceptor(_Interceptor):
    """Turns domain errors raised by unary handlers into gRPC statuses."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[_MethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> _MethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        return grpc.unary_unary_rpc_method_handler(
            _wrap_unary(handler.unary_unary),  # type: ignore[arg-type]
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
