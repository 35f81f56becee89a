"""`kairos keys`: create, revoke and list API keys, directly in the database.

Keys are not managed over the public API (a key cannot mint keys), so these commands run the
api's own admin commands (`python -m kairos_api keys ...`, through `kairos_api.cli.main`) in this
process, with this environment: they need KAIROS_DATABASE_URL and the kairos-api package. The api's
messages and its "key alone on stdout" rule are kept; its exit codes are kept too, except that an
unknown key exits 4 like every other "not found".
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import re
import sys
from datetime import UTC, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

import typer

from kairos_cli.runtime import (
    EXIT_ERROR,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    console,
    fail,
    hint,
    options,
    print_json,
)
from kairos_cli.tables import Column, FitTable
from kairos_cli.when import show

app = typer.Typer(help="Create, revoke and list API keys (directly in the database).")

_API_PREFIX = "python -m kairos_api: error: "
_REVOKED = re.compile(
    r"revoked key (?P<id>\S+) \((?P<prefix>[^)]*?)\.\.\.\) of tenant (?P<tenant>.+)"
)
_KEY_FIELDS = ("id", "tenant", "prefix", "created_at", "revoked_at", "label")


def _run_admin(*args: str) -> str:
    """Run `python -m kairos_api keys ARGS` here; its stdout, or exit with its message."""
    if not os.environ.get("KAIROS_DATABASE_URL", "").strip():
        fail(
            EXIT_USAGE,
            "keys commands work on the database directly: set KAIROS_DATABASE_URL "
            "(for example sqlite:///kairos.db or postgresql+psycopg://user@host/kairos)",
        )
    if importlib.util.find_spec("kairos_api") is None:
        fail(EXIT_ERROR, "keys commands need the kairos-api package installed beside the CLI")
    from kairos_api import cli as api_cli  # seconds to import: only for these commands

    out, err = io.StringIO(), io.StringIO()
    # With a handler in place the api leaves logging alone; its warnings join its messages.
    root = logging.getLogger()
    handler = logging.StreamHandler(err) if not root.handlers else None
    if handler is not None:
        root.addHandler(handler)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = api_cli.main(["keys", *args])
            except SystemExit as exit_:  # argparse, on a command line this module built wrong
                code = exit_.code if isinstance(exit_.code, int) else EXIT_ERROR
    finally:
        if handler is not None:
            root.removeHandler(handler)
    messages = [line.removeprefix(_API_PREFIX) for line in err.getvalue().strip().splitlines()]
    if code != 0:
        messages = messages or [f"python -m kairos_api keys exited with {code}"]
        # Kept apart so that scripts can tell "no such key" from a broken database.
        if messages[-1] == "no such API key":
            code = EXIT_NOT_FOUND
        fail(
            code if code in (EXIT_USAGE, EXIT_NOT_FOUND) else EXIT_ERROR,
            messages[-1],
            messages[:-1],
        )
    for line in messages:
        hint(line)
    return out.getvalue()


@app.command("create")
def create(
    ctx: typer.Context,
    tenant: Annotated[
        str, typer.Option("--tenant", metavar="TENANT", help="The tenant the key acts for.")
    ],
    label: Annotated[
        str, typer.Option("--label", metavar="LABEL", help="A note to tell keys apart.")
    ] = "",
) -> None:
    """Create an API key and print it (only the key, on stdout; it is shown only once)."""
    key = _run_admin("create", "--tenant", tenant, "--label", label).strip()
    if options(ctx).json:
        print_json({"key": key, "tenant": tenant, "label": label})
    else:
        sys.stdout.write(key + "\n")


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    key_or_id: Annotated[str, typer.Argument(metavar="KEY_OR_ID", help="The key, or its id.")],
) -> None:
    """Revoke an API key, given the key itself or its id."""
    line = _run_admin("revoke", key_or_id).strip()
    if options(ctx).json:
        found = _REVOKED.fullmatch(line)
        print_json(found.groupdict() if found else {"message": line})
    else:
        sys.stdout.write(line + "\n")


@app.command("list")
def list_keys(
    ctx: typer.Context,
    tenant: Annotated[
        str, typer.Option("--tenant", metavar="TENANT", help="Only this tenant's keys.")
    ] = "",
) -> None:
    """List API keys (never the keys themselves)."""
    listing = _run_admin("list", *(["--tenant", tenant] if tenant else []))
    rows = [
        dict(zip(_KEY_FIELDS, line.split("\t"), strict=False))
        for line in listing.splitlines()[1:]
        if line
    ]
    opts = options(ctx)
    if opts.json:
        print_json(
            [
                {
                    **row,
                    "revoked_at": None if row.get("revoked_at") == "-" else row.get("revoked_at"),
                }
                for row in rows
            ]
        )
        return
    table = FitTable(
        [
            Column("ID", key=True),
            Column("TENANT"),
            Column("PREFIX", floor=12),  # a key's first 12 characters: kept whole
            Column("CREATED"),
            Column("REVOKED"),
            Column("LABEL", under=12),
        ],
        caption="" if rows else "no keys",
    )
    for row in rows:
        table.add_row(
            row.get("id", ""),
            row.get("tenant", ""),
            row.get("prefix", ""),
            _shown(row.get("created_at", ""), opts.zone),
            _shown(row.get("revoked_at", ""), opts.zone),
            row.get("label", ""),
        )
    console().print(table)


def _shown(stamp: str, zone: ZoneInfo) -> str:
    """An ISO 8601 instant of `python -m kairos_api keys list` as the other commands show times
    (in --tz); "-" stays "-"."""
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return stamp or "-"
    return show(moment if moment.tzinfo else moment.replace(tzinfo=UTC), zone)
