"""The `kairos` command line: API keys, accounts, posts, calendar, stats and watch.

    kairos [--target HOST:PORT] [--api-key KEY] [--json] [--tz ZONE] [--timeout S] COMMAND ...

Global options go before the command; each has an environment default: KAIROS_API_TARGET
(127.0.0.1:50051), KAIROS_API_KEY, KAIROS_TZ (this machine's zone) and KAIROS_TIMEOUT (10 s).
TLS to the api is set by the environment alone, as for the scheduler and publisher:
KAIROS_API_TLS, KAIROS_API_CA_FILE, KAIROS_API_CLIENT_CERT_FILE with KAIROS_API_CLIENT_KEY_FILE,
KAIROS_API_TLS_SERVER_NAME.
Results go to stdout (tables, or JSON with --json), errors to stderr (one JSON line with --json,
mistakes in the command line itself included).

Exit codes, which scripts can rely on:

    0  success
    1  any other failure
    2  usage error, bad input, or INVALID_ARGUMENT (each field violation printed as
       "  field: description")
    3  missing or invalid API key (UNAUTHENTICATED, PERMISSION_DENIED)
    4  not found (NOT_FOUND)
    5  the post or account is not in a state that allows it (FAILED_PRECONDITION, ABORTED,
       ALREADY_EXISTS)
    6  the api cannot be reached (UNAVAILABLE, DEADLINE_EXCEEDED)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from kairos_cli.commands import accounts, keys, media, posts, queue, series, views, webhooks
from kairos_cli.runtime import EXIT_ERROR, EXIT_USAGE, Options, error_json, fail, print_json_errors
from kairos_cli.when import WhenError, load_zone, local_zone_name
from kairos_common.settings import Env, SettingsError, api_client_tls

EPILOG = (
    "Exit codes: 0 success; 1 other failure; 2 usage error or invalid argument (each field "
    "violation printed); 3 missing or invalid API key; 4 not found; 5 failed precondition, "
    "aborted or already exists; 6 api unreachable or deadline exceeded."
)


class KairosGroup(TyperGroup):
    """The root command. With --json, a mistake in the command line itself (an unknown command
    or option, a missing argument, a bad choice) is reported as a JSON line too, with exit 2."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        if not self._wants_json(argv):
            return super().main(
                argv, prog_name, complete_var, standalone_mode, windows_expand_args, **extra
            )
        try:
            # Not standalone: click raises its usage errors here instead of printing them.
            result = super().main(
                argv, prog_name, complete_var, False, windows_expand_args, **extra
            )
            code = result if isinstance(result, int) else 0
        except typer.Abort:
            sys.stderr.write(json.dumps(error_json("CANCELLED", "aborted")) + "\n")
            code = EXIT_ERROR
        except typer.TyperException as error:  # click's UsageError, BadParameter ...
            field = _option_of(error)
            found = error_json(
                "INVALID_ARGUMENT",
                error.format_message(),
                [(field, error.message)] if field else [],
            )
            sys.stderr.write(json.dumps(found, ensure_ascii=False) + "\n")
            code = getattr(error, "exit_code", EXIT_USAGE)
        if standalone_mode:
            sys.exit(code)
        return code

    def _wants_json(self, argv: Sequence[str]) -> bool:
        """Whether --json is among the global options, which come before the command."""
        takes_value = {
            name
            for param in self.params
            if not getattr(param, "is_flag", False)
            for name in param.opts
        }
        words = iter(argv)
        for word in words:
            if word == "--json":
                return True
            if word == "--" or not word.startswith("-"):
                return False
            if word in takes_value:
                next(words, None)
        return False


def _option_of(error: Exception) -> str:
    """The option or argument a usage error is about ("--status"), when it names one."""
    param = getattr(error, "param", None)
    opts = getattr(param, "opts", None)
    return str(opts[0]) if opts else ""


app = typer.Typer(
    name="kairos",
    cls=KairosGroup,
    help="Schedule and publish social-media posts with Kairos.",
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(keys.app, name="keys")
app.add_typer(accounts.app, name="accounts")
app.add_typer(posts.app, name="posts")
app.add_typer(media.app, name="media")
app.add_typer(queue.app, name="queue")
app.add_typer(series.app, name="series")
app.add_typer(webhooks.app, name="webhooks")
views.register(app)


@app.callback(epilog=EPILOG)
def main(
    ctx: typer.Context,
    target: Annotated[
        str,
        typer.Option(
            "--target", envvar="KAIROS_API_TARGET", metavar="HOST:PORT", help="Where the api is."
        ),
    ] = "127.0.0.1:50051",
    api_key: Annotated[
        str,
        typer.Option(
            "--api-key",
            envvar="KAIROS_API_KEY",
            metavar="KEY",
            show_default=False,
            help="The tenant's API key (from `kairos keys create`).",
        ),
    ] = "",
    json_output: Annotated[
        bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")
    ] = False,
    tz: Annotated[
        str,
        typer.Option(
            "--tz",
            envvar="KAIROS_TZ",
            metavar="ZONE",
            show_default=False,
            help="IANA zone to show times in and to read local times in (default: this "
            "machine's zone).",
        ),
    ] = "",
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            envvar="KAIROS_TIMEOUT",
            min=0.1,
            metavar="SECONDS",
            help="Deadline of each call to the api, retries included.",
        ),
    ] = 10.0,
) -> None:
    """Schedule and publish social-media posts with Kairos."""
    print_json_errors(json_output)
    zone_name = tz.strip() or local_zone_name()
    try:
        load_zone(zone_name)
    except WhenError as error:
        fail(EXIT_USAGE, str(error))
    try:
        tls = api_client_tls(Env())
    except SettingsError as error:
        fail(EXIT_USAGE, str(error))
    ctx.obj = Options(
        target=target.strip(),
        api_key=api_key.strip(),
        json=json_output,
        zone_name=zone_name,
        timeout=timeout,
        tls=tls,
    )
