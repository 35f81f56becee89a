"""What every command shares: the global options, calling the api, exit codes, output.

Results go to stdout (tables, or JSON with --json); errors go to stderr and end the command with
one of the documented exit codes. Without --json an error reads "kairos: error: ..." (each field
violation on its own indented line); with --json it is one JSON object on one line,
{"code": ..., "message": ..., "violations": [{"field": ..., "description": ...}]}, and notes for
the person at the terminal become {"note": ...} lines, so that stdout holds only the result and
stderr only JSON lines, the error last.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar, cast
from zoneinfo import ZoneInfo

import grpc
import typer
from google.protobuf.descriptor import Descriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from rich.console import Console

from kairos_cli import names
from kairos_client import DEFAULT_CHANNEL_OPTIONS, KairosClient, KairosError
from kairos_common.grpc.channel import channel_credentials, tls_options
from kairos_common.settings import ClientTls

T = TypeVar("T")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_NOT_FOUND = 4
EXIT_CONFLICT = 5
EXIT_UNAVAILABLE = 6

EXIT_CODES: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: EXIT_USAGE,
    grpc.StatusCode.OUT_OF_RANGE: EXIT_USAGE,
    grpc.StatusCode.UNAUTHENTICATED: EXIT_AUTH,
    grpc.StatusCode.PERMISSION_DENIED: EXIT_AUTH,
    grpc.StatusCode.NOT_FOUND: EXIT_NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION: EXIT_CONFLICT,
    grpc.StatusCode.ABORTED: EXIT_CONFLICT,
    grpc.StatusCode.ALREADY_EXISTS: EXIT_CONFLICT,
    grpc.StatusCode.UNAVAILABLE: EXIT_UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: EXIT_UNAVAILABLE,
}

MISSING_KEY = "missing or invalid API key: set KAIROS_API_KEY or --api-key"

#: Width of tables when stdout is not a terminal, so that piped ids and times are never cut.
PIPE_WIDTH = 200


@dataclass(frozen=True)
class Options:
    """The global options, read once by the main callback."""

    target: str
    api_key: str
    json: bool
    zone_name: str
    timeout: float
    #: TLS of the channel to the api (KAIROS_API_TLS, KAIROS_API_CA_FILE ...), as the
    #: scheduler and publisher read it.
    tls: ClientTls = dataclasses.field(default_factory=ClientTls)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.zone_name)


def options(ctx: typer.Context) -> Options:
    """The global options of this invocation."""
    found = ctx.find_object(Options)
    if found is None:  # only when a command is invoked without the main callback
        raise RuntimeError("kairos: global options were not read")
    return found


#: The status code named in a JSON error that did not come from the api, by exit code.
STATUS_OF_EXIT = {
    EXIT_ERROR: "UNKNOWN",
    EXIT_USAGE: "INVALID_ARGUMENT",
    EXIT_AUTH: "UNAUTHENTICATED",
    EXIT_NOT_FOUND: "NOT_FOUND",
    EXIT_CONFLICT: "FAILED_PRECONDITION",
    EXIT_UNAVAILABLE: "UNAVAILABLE",
}

#: Whether this invocation prints JSON (--json); set by the main callback before anything can
#: fail. A context variable, so that runs in other threads (tests) never see each other's.
_json_output: ContextVar[bool] = ContextVar("kairos_json_output", default=False)


def print_json_errors(on: bool) -> None:
    """Make errors and notes of this invocation JSON lines (--json) or plain text."""
    _json_output.set(on)


def error_json(
    status: str, message: str, violations: Iterable[tuple[str, str]] = ()
) -> dict[str, Any]:
    """The JSON form of an error: a gRPC status code name, the message, the field violations."""
    return {
        "code": status,
        "message": message,
        "violations": [{"field": field, "description": text} for field, text in violations],
    }


def fail(
    code: int,
    message: str,
    details: Iterable[str] = (),
    *,
    status: str = "",
    violations: Iterable[tuple[str, str]] = (),
) -> NoReturn:
    """End the command with exit `code`, printing the error to stderr: as text with indented
    `details`, or with --json as one JSON line naming `status` (by default the one that fits
    the exit code) and the field `violations`."""
    err = sys.stderr
    if _json_output.get():
        found = error_json(status or STATUS_OF_EXIT.get(code, "UNKNOWN"), message, violations)
        err.write(json.dumps(found, ensure_ascii=False) + "\n")
    else:
        err.write(f"kairos: error: {message}\n")
        for line in details:
            err.write(f"  {line}\n")
    err.flush()
    raise typer.Exit(code)


def fail_with(error: KairosError, opts: Options) -> NoReturn:
    """Exit with the code and words that fit a failed call."""
    code = EXIT_CODES.get(error.code, EXIT_ERROR)
    status, violations = error.code.name, error.violations
    if code == EXIT_AUTH:
        fail(code, f"{MISSING_KEY} ({error.message})", status=status)
    if code == EXIT_UNAVAILABLE:
        fail(
            code,
            f"cannot reach the api at {opts.target} ({error.code.name}: {error.message})",
            status=status,
        )
    if violations and not _json_output.get():
        fail(
            code,
            "the api refused the request:",
            [
                f"{field}: {description}" if field else description
                for field, description in violations
            ],
        )
    message = f"{error.message} ({error.code.name})" if code == EXIT_ERROR else error.message
    fail(code, message, status=status, violations=violations)


def call_api(ctx: typer.Context, action: Callable[[KairosClient], Awaitable[T]]) -> T:
    """Run `action` with a client of the api; any failure ends the command with its exit code."""
    opts = options(ctx)
    if not opts.api_key:
        fail(EXIT_AUTH, MISSING_KEY)

    tls = opts.tls

    async def run() -> T:
        async with KairosClient(
            opts.target,
            opts.api_key,
            timeout=opts.timeout,
            credentials=channel_credentials(tls) if tls.enabled else None,
            channel_options=[*DEFAULT_CHANNEL_OPTIONS, *tls_options(tls)],
        ) as client:
            return await action(client)

    try:
        return asyncio.run(run())
    except KairosError as error:
        fail_with(error, opts)


# --- output -----------------------------------------------------------------------------------


def console() -> Console:
    """A console on this moment's stdout (tests swap it): as wide as the terminal, or as
    $COLUMNS says when set; PIPE_WIDTH when piped without $COLUMNS."""
    out = sys.stdout
    columns = os.environ.get("COLUMNS", "").strip()
    if columns.isdigit() and int(columns) > 0:
        width: int | None = int(columns)
    else:
        width = None if out.isatty() else PIPE_WIDTH
    return Console(file=out, width=width, highlight=False)


def message_dict(message: Message) -> dict[str, Any]:
    """A message as JSON-ready data: proto field names, every field present, and enum values
    in the words the command line itself uses (`scheduled`, `x`, `needs_reauth`; "" when
    unspecified), as `calendar` prints them and `--status` takes them."""
    data = MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
        unquote_int64_if_possible=True,
        use_integers_for_enums=True,
    )
    _name_enums(cast(Descriptor, message.DESCRIPTOR), data)
    return data


def _name_enums(descriptor: Descriptor, data: dict[str, Any]) -> None:
    """Replace enum numbers in `data` (MessageToDict of a `descriptor` message) by their labels."""
    for field in descriptor.fields:
        if field.name not in data:
            continue
        value = data[field.name]
        if field.enum_type is not None:
            enum = field.enum_type
            data[field.name] = (
                [names.enum_label(enum, v) for v in value]
                if isinstance(value, list)
                else names.enum_label(enum, value)
            )
        elif field.message_type is not None and not _is_opaque(field.message_type):
            if field.message_type.GetOptions().map_entry:
                entry = field.message_type.fields_by_name["value"]
                if entry.message_type is not None and not _is_opaque(entry.message_type):
                    for item in value.values():
                        _name_enums(entry.message_type, item)
                elif entry.enum_type is not None:
                    for key, item in value.items():
                        value[key] = names.enum_label(entry.enum_type, item)
            else:
                for item in value if isinstance(value, list) else [value]:
                    _name_enums(field.message_type, item)


def _is_opaque(descriptor: Descriptor) -> bool:
    """Well-known types (Timestamp, Duration ...), which MessageToDict prints as strings."""
    return descriptor.full_name.startswith("google.protobuf.")


def print_json(data: Any) -> None:
    """Machine-readable output: one JSON document on stdout."""
    if isinstance(data, Message):
        data = message_dict(data)
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def say(line: str) -> None:
    """One plain line on stdout (never wrapped or styled: scripts read it)."""
    sys.stdout.write(line + "\n")


def hint(line: str) -> None:
    """A line for the person at the terminal, on stderr so that stdout stays the result (a
    {"note": ...} JSON line with --json)."""
    if _json_output.get():
        line = json.dumps({"note": line}, ensure_ascii=False)
    sys.stderr.write(line + "\n")
