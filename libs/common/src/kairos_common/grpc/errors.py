"""The one place where Kairos's domain errors become gRPC status codes.

`guard()` wraps each method handler once, when it is registered (`server.create_server` does it
for every servicer, health and reflection included):

- the request is decoded here, not by gRPC: bytes that are not a valid request message (corrupt
  or truncated wire format, invalid UTF-8 in a string field) answer `INVALID_ARGUMENT` saying the
  message could not be decoded, on every RPC of every service, streaming ones included;
- in asyncio handlers of one request (unary, or with a stream of responses) and in those that
  answer a request stream with one response, a `KairosError` becomes its status code with the
  error's message (and `google.rpc.BadRequest` field violations for `InvalidArgument`); anything
  else is logged with its trace and answers `INTERNAL` without leaking details;
- once the server's `Gate` closes (it is stopping), a call that arrives answers `UNAVAILABLE`
  before its request is decoded, while the calls already running go on.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Callable, Mapping
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


#: What a call arriving at a stopping server is told.
STOPPING = "the server is stopping: call again (another copy answers, or this one once restarted)"


class Gate:
    """Whether a server still begins new calls.

    A stopping gRPC server answers CANCELLED to the calls it has received but not yet handed to
    a handler (grpc/grpc#41785), and clients do not retry CANCELLED as they retry UNAVAILABLE.
    So a server closes its gate first: for a moment it keeps taking calls and answers the new
    ones UNAVAILABLE, and its clients back off, leaving few calls queued when it stops.
    """

    def __init__(self) -> None:
        self.closed = False


#: The gate of handlers guarded outside a server (it never closes).
ALWAYS_OPEN = Gate()


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


async def _abort(
    context: grpc.aio.ServicerContext[Any, Any], error: BaseException, method: str
) -> NoReturn:
    if isinstance(error, errors.KairosError):
        status = to_rich_status(error)
    else:
        log.exception("unexpected error in %s", method, exc_info=error)
        status = rpc_status.to_status(
            status_pb2.Status(code=code_pb2.INTERNAL, message="internal error; see server logs")
        )
    await context.abort(status.code, status.details, status.trailing_metadata)


if TYPE_CHECKING:
    _MethodHandler = grpc.RpcMethodHandler[Any, Any]
    _GenericHandler = grpc.GenericRpcHandler[Any, Any]
else:
    _MethodHandler = grpc.RpcMethodHandler
    _GenericHandler = grpc.GenericRpcHandler

Context = grpc.aio.ServicerContext[Any, Any]
Behaviour = Callable[..., Any]
Decode = Callable[[bytes], Any]


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


def _decoder(deserialize: Callable[[bytes], Any] | None, method: str, gate: Gate) -> Decode:
    """`deserialize`, raising `InvalidArgument` (naming the method and the message type) when the
    bytes are not a valid request message, and `Unavailable` once `gate` is closed."""
    parse: Callable[[bytes], Any] = deserialize or (lambda raw: raw)
    owner = getattr(deserialize, "__self__", None)
    expected = "its request type"
    if isinstance(owner, type) and issubclass(owner, Message):
        expected = owner.DESCRIPTOR.full_name
    refusal = (
        f"{method}: the request message could not be decoded as {expected} (corrupt or "
        "truncated protobuf wire format, or invalid UTF-8 in a string field)"
    )

    def decode(raw: bytes) -> Any:
        if gate.closed:
            raise errors.Unavailable(STOPPING)
        try:
            return parse(raw)
        # A deserializer is a function of the client's bytes alone: whatever it raises says
        # that these bytes are not a request message (protobuf raises DecodeError).
        except Exception:
            raise errors.InvalidArgument(refusal) from None

    return decode


async def _decoded(raw: bytes, decode: Decode, context: Context, method: str) -> Any:
    try:
        return decode(raw)
    except (errors.InvalidArgument, errors.Unavailable) as refusal:
        await _abort(context, refusal, method)


def _sync_decoded(raw: bytes, decode: Decode, context: Any) -> Any:
    """`_decoded` for a handler run in gRPC's thread pool, whose context aborts synchronously."""
    try:
        return decode(raw)
    except (errors.InvalidArgument, errors.Unavailable) as refusal:
        status = to_rich_status(refusal)
        context.abort(status.code, status.details, status.trailing_metadata)
        raise AssertionError("abort returned") from None  # abort always raises


def _mapping_errors(behaviour: Behaviour, decode: Decode, method: str) -> Behaviour:
    """The unary handler of Kairos's own services: decode, refuse NUL characters, map errors.

    One wrapper on the hot path (DispatchService is called for every delivery), set up once.
    """

    async def guarded(raw: bytes, context: Context) -> Any:
        try:
            request = decode(raw)
            if isinstance(request, Message):
                found = nul_violations(request)
                if found:
                    raise errors.InvalidArgument.collect(found)
            return await behaviour(request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await _abort(context, error, method)

    return guarded


def _unary_request(behaviour: Behaviour, decode: Decode, method: str) -> Behaviour:
    """A handler of one request (unary or server-streaming response) that decodes it first.

    The wrapper is of the same kind as `behaviour` (async generator, coroutine or plain
    function), since that is how gRPC decides how to run it.
    """
    if inspect.isasyncgenfunction(behaviour):

        async def streaming(raw: bytes, context: Context) -> AsyncIterator[Any]:
            request = await _decoded(raw, decode, context, method)
            # Errors are mapped as `_mapping_errors` does, before or after the first response.
            try:
                async for response in behaviour(request, context):
                    yield response
            except grpc.aio.AbortError:
                raise
            except Exception as error:
                await _abort(context, error, method)

        return streaming
    if inspect.iscoroutinefunction(behaviour):

        async def awaiting(raw: bytes, context: Context) -> Any:
            return await behaviour(await _decoded(raw, decode, context, method), context)

        return awaiting

    def blocking(raw: bytes, context: Any) -> Any:
        return behaviour(_sync_decoded(raw, decode, context), context)

    return blocking


def _stream_request(behaviour: Behaviour, decode: Decode, method: str, gate: Gate) -> Behaviour:
    """A handler of a request stream whose messages are decoded as they are read (`decode` is
    ungated: a stream that began before the gate closed reads on to its end)."""

    async def decoding(requests: AsyncIterator[bytes], context: Context) -> AsyncIterator[Any]:
        async for raw in requests:
            yield await _decoded(raw, decode, context, method)

    async def refuse_if_stopping(context: Context) -> None:
        if gate.closed:
            await _abort(context, errors.Unavailable(STOPPING), method)

    if inspect.isasyncgenfunction(behaviour):

        async def streaming(requests: AsyncIterator[bytes], context: Context) -> AsyncIterator[Any]:
            await refuse_if_stopping(context)
            async for response in behaviour(decoding(requests, context), context):
                yield response

        return streaming
    if inspect.iscoroutinefunction(behaviour):

        async def awaiting(requests: AsyncIterator[bytes], context: Context) -> Any:
            await refuse_if_stopping(context)
            # One response, as a unary call's: errors are mapped as `_mapping_errors` does.
            try:
                return await behaviour(decoding(requests, context), context)
            except grpc.aio.AbortError:
                raise
            except Exception as error:
                await _abort(context, error, method)

        return awaiting
    # Kairos runs asyncio servicers only; failing at start-up beats an RPC left unguarded.
    raise TypeError(f"{method}: a synchronous handler of a request stream cannot be guarded")


def guard(handler: _MethodHandler, method: str, gate: Gate = ALWAYS_OPEN) -> _MethodHandler:
    """`handler` of the RPC `method` (/package.Service/Method), decoding its requests itself
    and, for coroutines (one response to one request or to a stream of them), mapping errors;
    refusing calls that arrive once `gate` is closed; built once, when the handler is
    registered."""
    decode = _decoder(handler.request_deserializer, method, gate)
    serialize = handler.response_serializer
    if handler.unary_unary is not None:
        unary = handler.unary_unary
        if inspect.iscoroutinefunction(unary):
            guarded = _mapping_errors(unary, decode, method)
        else:  # a library's plain function (grpc_health's List), run in gRPC's thread pool
            guarded = _unary_request(unary, decode, method)
        return grpc.unary_unary_rpc_method_handler(guarded, response_serializer=serialize)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            _unary_request(handler.unary_stream, decode, method), response_serializer=serialize
        )
    # A request stream is gated at its start only: its messages are decoded without the gate.
    ungated = _decoder(handler.request_deserializer, method, ALWAYS_OPEN)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            _stream_request(handler.stream_unary, ungated, method, gate),
            response_serializer=serialize,
        )
    assert handler.stream_stream is not None
    return grpc.stream_stream_rpc_method_handler(
        _stream_request(handler.stream_stream, ungated, method, gate),
        response_serializer=serialize,
    )


def guard_all(
    service: str, handlers: Mapping[str, _MethodHandler], gate: Gate = ALWAYS_OPEN
) -> dict[str, _MethodHandler]:
    """`guard` applied to each of a service's method handlers, by method name."""
    return {name: guard(handler, f"/{service}/{name}", gate) for name, handler in handlers.items()}


class GuardedGenericHandler(_GenericHandler):
    """A generic handler whose method handlers are guarded, each once (on first use)."""

    def __init__(self, inner: _GenericHandler, gate: Gate = ALWAYS_OPEN) -> None:
        self._inner = inner
        self._gate = gate
        self._guarded: dict[str, tuple[_MethodHandler, _MethodHandler]] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> _MethodHandler | None:
        handler = self._inner.service(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        known = self._guarded.get(method)
        if known is None or known[0] is not handler:
            known = (handler, guard(handler, method, self._gate))
            self._guarded[method] = known
        return known[1]
