"""`kairos accounts`: connect, list, show, update credentials of, pause, resume and disconnect
social accounts."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Annotated

import typer
from google.protobuf.timestamp_pb2 import Timestamp

from kairos.posts.v1 import posts_pb2
from kairos_cli import names, render
from kairos_cli.runtime import (
    EXIT_USAGE,
    Options,
    call_api,
    console,
    fail,
    message_dict,
    options,
    print_json,
    say,
)
from kairos_cli.when import WhenError, parse_instant
from kairos_client import KairosClient
from kairos_common.platforms import Platform

app = typer.Typer(help="Connect, list, update, pause, resume and disconnect accounts.")

AccountId = Annotated[str, typer.Argument(metavar="ID", help="The account id.")]


def split_pairs(values: list[str], option: str) -> dict[str, str]:
    """KEY=VALUE options as a dict; a value without "=" is a usage error."""
    pairs: dict[str, str] = {}
    for value in values:
        key, sep, item = value.partition("=")
        if not sep or not key.strip():
            fail(EXIT_USAGE, f"{option} takes KEY=VALUE, got {value!r}")
        pairs[key.strip()] = item
    return pairs


def _secret(value: str) -> str:
    """A credential option; "-" reads it from stdin, which keeps it out of `ps` and history."""
    return sys.stdin.readline().strip() if value == "-" else value


AccessToken = Annotated[
    str,
    typer.Option(
        "--access-token",
        metavar="TOKEN",
        help='OAuth token, bot token or app password ("-": read stdin).',
    ),
]
RefreshToken = Annotated[
    str,
    typer.Option("--refresh-token", metavar="TOKEN", help='OAuth refresh token ("-": read stdin).'),
]
ExpiresAt = Annotated[
    str,
    typer.Option("--expires-at", metavar="ISO", help="When the access token expires (ISO 8601)."),
]
InstanceUrl = Annotated[
    str,
    typer.Option(
        "--instance-url", metavar="URL", help="Mastodon instance, Bluesky PDS or sandbox URL."
    ),
]
PageId = Annotated[
    str,
    typer.Option(
        "--page-id", metavar="ID", help="Facebook page, Instagram/Threads user, LinkedIn URN."
    ),
]
ChatId = Annotated[
    str, typer.Option("--chat-id", metavar="ID", help="Telegram chat or Slack channel id.")
]
Extra = Annotated[
    list[str] | None,
    typer.Option("--extra", metavar="KEY=VALUE", help="Other settings (repeatable)."),
]


def _credentials(
    opts: Options,
    *,
    access_token: str,
    refresh_token: str,
    expires_at: str,
    instance_url: str,
    page_id: str,
    chat_id: str,
    extra: list[str] | None,
) -> posts_pb2.Credentials:
    """The Credentials that `connect` and `update-credentials` send, or exit 2 naming the bad
    option. Secrets are only ever sent, never printed."""
    credentials = posts_pb2.Credentials(
        access_token=_secret(access_token),
        refresh_token=_secret(refresh_token),
        instance_url=instance_url,
        page_id=page_id,
        chat_id=chat_id,
        extra=split_pairs(extra or [], "--extra"),
    )
    if expires_at:
        try:
            moment = parse_instant(expires_at, opts.zone_name)
        except WhenError as error:
            fail(EXIT_USAGE, f"--expires-at: {error}")
        stamp = Timestamp()
        stamp.FromDatetime(moment)
        credentials.expires_at.CopyFrom(stamp)
    return credentials


@app.command("connect")
def connect(
    ctx: typer.Context,
    platform: Annotated[
        Platform,
        typer.Argument(metavar="PLATFORM", case_sensitive=False, help="The platform."),
    ],
    handle: Annotated[
        str, typer.Option("--handle", metavar="HANDLE", help="The handle shown to users.")
    ],
    access_token: AccessToken = "",
    refresh_token: RefreshToken = "",
    expires_at: ExpiresAt = "",
    instance_url: InstanceUrl = "",
    page_id: PageId = "",
    chat_id: ChatId = "",
    extra: Extra = None,
) -> None:
    """Connect an account and print its id."""
    opts = options(ctx)
    credentials = _credentials(
        opts,
        access_token=access_token,
        refresh_token=refresh_token,
        expires_at=expires_at,
        instance_url=instance_url,
        page_id=page_id,
        chat_id=chat_id,
        extra=extra,
    )
    request = posts_pb2.ConnectAccountRequest(
        platform=names.platform(platform.value), handle=handle, credentials=credentials
    )
    account = call_api(ctx, lambda client: client.connect_account(request))
    if opts.json:
        print_json(account)
    else:
        say(account.id)


@app.command("update-credentials")
def update_credentials(
    ctx: typer.Context,
    account_id: AccountId,
    access_token: AccessToken = "",
    refresh_token: RefreshToken = "",
    expires_at: ExpiresAt = "",
    instance_url: InstanceUrl = "",
    page_id: PageId = "",
    chat_id: ChatId = "",
    extra: Extra = None,
) -> None:
    """Replace an account's credentials, for example after its token was revoked.

    The new credentials replace the old ones whole: give every option the account was connected
    with (its instance URL, page or chat id ...), not only the new token. An account that needed
    re-authentication becomes active again."""
    opts = options(ctx)
    credentials = _credentials(
        opts,
        access_token=access_token,
        refresh_token=refresh_token,
        expires_at=expires_at,
        instance_url=instance_url,
        page_id=page_id,
        chat_id=chat_id,
        extra=extra,
    )
    _one(
        ctx,
        lambda client: client.update_account_credentials(account_id, credentials),
        "has new credentials",
    )


@app.command("list")
def list_accounts(
    ctx: typer.Context,
    platform: Annotated[
        Platform | None,
        typer.Option("--platform", case_sensitive=False, help="Only this platform."),
    ] = None,
    status: Annotated[
        names.AccountStatusName | None,
        typer.Option("--status", case_sensitive=False, help="Only this status."),
    ] = None,
) -> None:
    """List the tenant's accounts."""
    opts = options(ctx)
    found = call_api(
        ctx,
        lambda client: client.list_accounts(
            names.platform(platform.value) if platform else posts_pb2.PLATFORM_UNSPECIFIED,
            names.account_status(status.value) if status else posts_pb2.ACCOUNT_STATUS_UNSPECIFIED,
        ),
    )
    if opts.json:
        print_json({"accounts": [message_dict(a) for a in found]})
    else:
        console().print(render.accounts_table(found, opts.zone))


def _one(
    ctx: typer.Context,
    action: Callable[[KairosClient], Awaitable[posts_pb2.Account]],
    done: str,
) -> None:
    opts = options(ctx)
    account = call_api(ctx, action)
    if opts.json:
        print_json(account)
    elif done:
        say(f"account {account.id} ({account.handle}) {done}")
    else:
        console().print(render.account_detail(account, opts.zone))


@app.command("show")
def show_account(ctx: typer.Context, account_id: AccountId) -> None:
    """Show one account (never its credentials)."""
    _one(ctx, lambda client: client.get_account(account_id), "")


@app.command("pause")
def pause(ctx: typer.Context, account_id: AccountId) -> None:
    """Pause an account: its pending targets are skipped until resumed."""
    _one(ctx, lambda client: client.pause_account(account_id), "paused")


@app.command("resume")
def resume(ctx: typer.Context, account_id: AccountId) -> None:
    """Resume a paused account."""
    _one(ctx, lambda client: client.resume_account(account_id), "resumed")


@app.command("disconnect")
def disconnect(ctx: typer.Context, account_id: AccountId) -> None:
    """Disconnect an account and forget its credentials."""
    _one(ctx, lambda client: client.disconnect_account(account_id), "disconnected")
