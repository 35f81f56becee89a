"""What every command shares: the global options, calling the api, exit codes, output.

Results go to stdout (tables, or JSON with --json); errors go to stderr as "kairos: error: ..."
and end the command with one of the documented exit codes.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar
from zoneinfo import ZoneInfo

import grpc
import typer
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from rich.console import Console

from kairos_client import KairosClient, KairosError

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

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.zone_name)


def options(ctx: typer.Context) -> Options:
    """The global options of this invocation."""
    found = ctx.find_object(Options)
    if found is None:  # only when a command is invoked without the main callback
        raise RuntimeError("kairos: global options were not read")
    return found


def fail(code: int, message: str, details: Iterable[str] = ()) -> NoReturn:
    """Print an error (and indented detail lines) to stderr and exit with `code`."""
    err = sys.stderr
    err.write(f"kairos: error: {message}\n")
    for line in details:
        err.write(f"  {line}\n")
    err.flush()
    raise typer.Exit(code)


def fail_with(error: KairosError, opts: Options) -> NoReturn:
    """Exit with the code and words that fit a failed call."""
    code = EXIT_CODES.get(error.code, EXIT_ERROR)
    if code == EXIT_AUTH:
        fail(code, f"{MISSING_KEY} ({error.message})")
    if code == EXIT_UNAVAILABLE:
        fail(code, f"cannot reach the api at {opts.target} ({error.code.name}: {error.message})")
    if error.violations:
        fail(
            code,
            "the api refused the request:",
            [
                f"{field}: {description}" if field else description
                for field, description in error.violations
            ],
        )
    fail(code, f"{error.message} ({error.code.name})" if code == EXIT_ERROR else error.message)


def call_api(ctx: typer.Context, action: Callable[[KairosClient], Awaitable[T]]) -> T:
    """Run `action` with a client of the api; any failure ends the command with its exit code."""
    opts = options(ctx)
    if not opts.api_key:
        fail(EXIT_AUTH, MISSING_KEY)

    async def run() -> T:
        async with KairosClient(opts.target, opts.api_key, timeout=opts.timeout) as client:
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
    """A message as JSON-ready data: proto field names, enum names, every field present."""
    return MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
        unquote_int64_if_possible=True,
    )


def print_json(data: Any) -> None:
    """Machine-readable output: one JSON document on stdout."""
    if isinstance(data, Message):
        data = message_dict(data)
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def say(line: str) -> None:
    """One plain line on stdout (never wrapped or styled: scripts read it)."""
    sys.stdout.write(line + "\n")


def hint(line: str) -> None:
    """A line for the person at the terminal, on stderr so that stdout stays the result."""
    sys.stderr.write(line + "\n")
