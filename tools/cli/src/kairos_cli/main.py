"""The `kairos` command line: API keys, accounts, posts, calendar, stats and watch.

    kairos [--target HOST:PORT] [--api-key KEY] [--json] [--tz ZONE] [--timeout S] COMMAND ...

Global options go before the command; each has an environment default: KAIROS_API_TARGET
(127.0.0.1:50051), KAIROS_API_KEY, KAIROS_TZ (this machine's zone) and KAIROS_TIMEOUT (10 s).
Results go to stdout (tables, or JSON with --json), errors to stderr.

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

from typing import Annotated

import typer

from kairos_cli.commands import accounts, keys, posts, views
from kairos_cli.runtime import EXIT_USAGE, Options, fail
from kairos_cli.when import WhenError, load_zone, local_zone_name

EPILOG = (
    "Exit codes: 0 success; 1 other failure; 2 usage error or invalid argument (each field "
    "violation printed); 3 missing or invalid API key; 4 not found; 5 failed precondition, "
    "aborted or already exists; 6 api unreachable or deadline exceeded."
)

app = typer.Typer(
    name="kairos",
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
    zone_name = tz.strip() or local_zone_name()
    try:
        load_zone(zone_name)
    except WhenError as error:
        fail(EXIT_USAGE, str(error))
    ctx.obj = Options(
        target=target.strip(),
        api_key=api_key.strip(),
        json=json_output,
        zone_name=zone_name,
        timeout=timeout,
    )
