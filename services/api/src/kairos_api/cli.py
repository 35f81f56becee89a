"""The `python -m kairos_api` command line: serve, migrate, manage API keys, rotate credentials.

    python -m kairos_api [serve]                      run the api until SIGTERM or SIGINT
    python -m kairos_api migrate                      bring the database schema up to date
    python -m kairos_api keys create --tenant T [--label L]
                                                      print a new API key (shown only once)
    python -m kairos_api keys revoke KEY_OR_ID        revoke a key, given itself or its id
    python -m kairos_api keys list [--tenant T]       list keys (never the keys or their hashes)
    python -m kairos_api reencrypt                    re-encrypt credentials and webhook secrets

Settings come from the `KAIROS_*` environment, as for the server. Commands that use the database
migrate it first unless `KAIROS_MIGRATE_ON_START=false`. Exit status: 0 done, 2 bad usage, settings
or argument, 1 any other failure, each with a one-line message on stderr. Only what a command is
asked for goes to stdout (the key alone for `keys create`), so that a script can capture it.

The database, migration and server modules are imported only by the commands that use them: they
take seconds to import, and usage or settings mistakes should be answered at once.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, TextIO, TypeVar

from kairos_api.settings import ApiSettings
from kairos_common import errors
from kairos_common.settings import CannotStart, LogSettings, SettingsError

if TYPE_CHECKING:
    from kairos_api.adapters.orm import ApiKey
    from kairos_api.service_layer.unit_of_work import UnitOfWork

PROG = "python -m kairos_api"

T = TypeVar("T")


class UsageError(Exception):
    """The command line, an argument or the settings are wrong: exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Kairos api: serves the posts and accounts gRPC APIs, and administers them.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("serve", help="run the api until SIGTERM or SIGINT (the default)")
    commands.add_parser("migrate", help="bring the database schema up to date")
    commands.add_parser(
        "reencrypt",
        help="re-encrypt credentials and webhook secrets under the first KAIROS_SECRET_KEY key",
    )

    key_parser = commands.add_parser("keys", help="create, revoke and list API keys")
    key_commands = key_parser.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create = key_commands.add_parser("create", help="create a key and print it (shown once)")
    create.add_argument("--tenant", required=True, help="the tenant the key acts for")
    create.add_argument("--label", default="", help="a note to tell keys apart")
    revoke = key_commands.add_parser("revoke", help="revoke a key")
    revoke.add_argument("key_or_id", metavar="KEY_OR_ID", help="the key itself, or its id")
    listing = key_commands.add_parser("list", help="list keys (never the keys themselves)")
    listing.add_argument("--tenant", help="only this tenant's keys")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit status."""
    args = build_parser().parse_args(argv)  # exits 2 with the usage on a bad command line
    if args.command in (None, "serve"):
        return serve()
    try:
        return _run_admin(args)
    except UsageError as error:
        _fail(str(error))
        return 2
    except errors.InvalidArgument as error:
        _fail(error.message)
        return 2
    except errors.KairosError as error:
        _fail(error.message)
        return 1
    except CannotStart as error:  # the database cannot be reached or created
        _fail(str(error))
        return 1
    except Exception as error:
        # One line, no trace: an admin command's failure is read by a person at a terminal.
        first_line = (str(error).strip().splitlines() or [""])[0]
        _fail(f"{type(error).__name__}: {first_line}" if first_line else type(error).__name__)
        return 1


def serve() -> int:
    """Run the api until SIGTERM or SIGINT, exactly as the console script always has."""
    from kairos_api.service import ApiService
    from kairos_common.runner import run_service

    return run_service("api", ApiSettings.from_env, ApiService)


def _run_admin(args: argparse.Namespace) -> int:
    settings = _load_settings()
    if args.command == "reencrypt":
        _check_secret(settings)  # before touching the database
    _configure_logging(settings.common.log)

    from kairos_api.adapters import database

    url = settings.common.database_url

    if args.command == "migrate":
        from alembic.script import ScriptDirectory

        database.migrate(url)
        head = ScriptDirectory.from_config(database.alembic_config(url)).get_current_head()
        print(f"database {_safe_url(url)} is at revision {head}")
        return 0

    if settings.migrate_on_start:
        database.migrate(url)

    if args.command == "reencrypt":
        return _reencrypt(settings)

    from kairos_api.service_layer import keys

    # Keys need no cipher, so KAIROS_SECRET_KEY is not required to manage them.
    if args.keys_command == "create":
        created = _with_uow(url, lambda uow: keys.create_key(uow, args.tenant, args.label))
        print(created.key)
        print(
            f"created key {created.id} for tenant {created.tenant_id}; it is shown only once, "
            "store it now",
            file=sys.stderr,
        )
        return 0
    if args.keys_command == "revoke":
        row = _with_uow(url, lambda uow: keys.revoke_key(uow, args.key_or_id))
        print(f"revoked key {row.id} ({row.prefix}...) of tenant {row.tenant_id}")
        return 0
    rows = _with_uow(url, lambda uow: keys.list_keys(uow, args.tenant))
    _print_keys(rows, sys.stdout)
    return 0


def _reencrypt(settings: ApiSettings) -> int:
    from kairos_api.bootstrap import bootstrap
    from kairos_api.service_layer import rotation

    app = bootstrap(settings)

    async def run() -> tuple[int, int]:
        try:
            return await rotation.everything(app)
        finally:
            await app.close()

    count, secrets = asyncio.run(run())
    print(
        f"re-encrypted {count} credentials and {secrets} webhook secrets under key id "
        f"{app.cipher.current_key_id}"
    )
    return 0


def _load_settings() -> ApiSettings:
    try:
        return ApiSettings.from_env()
    except SettingsError as error:
        raise UsageError(f"bad configuration: {error}") from None


def _check_secret(settings: ApiSettings) -> None:
    from kairos_api.bootstrap import load_cipher

    try:
        load_cipher(settings.common.secret_key, development=settings.common.development)
    except SettingsError as error:  # names the variable, never echoes a secret
        raise UsageError(f"bad configuration: {error}") from None


def _configure_logging(log: LogSettings) -> None:
    """Log to stderr (stdout is the command's), at warning and above unless asked for more.

    A process that already set up logging (a test calling `main`) keeps its own.
    """
    if logging.getLogger().handlers:
        return
    from kairos_common.logging import configure_logging

    configure_logging(
        "api", LogSettings(log.format, "WARNING" if log.level == "INFO" else log.level)
    )


def _with_uow(url: str, action: Callable[[UnitOfWork], Awaitable[T]]) -> T:
    from kairos_api.adapters import database
    from kairos_api.service_layer.unit_of_work import UnitOfWork

    async def run() -> T:
        engine = database.create_engine(url)
        try:
            return await action(UnitOfWork(database.session_factory(engine)))
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _print_keys(rows: Sequence[ApiKey], out: TextIO) -> None:
    out.write("ID\tTENANT\tPREFIX\tCREATED\tREVOKED\tLABEL\n")
    for row in rows:
        revoked = row.revoked_at.isoformat(timespec="seconds") if row.revoked_at else "-"
        created = row.created_at.isoformat(timespec="seconds")
        label = " ".join(row.label.split())  # one row per key, whatever the label holds
        out.write(f"{row.id}\t{row.tenant_id}\t{row.prefix}\t{created}\t{revoked}\t{label}\n")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _fail(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)
