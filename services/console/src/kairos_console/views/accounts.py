"""The Accounts page: the tenant's accounts, connecting one, and one account's details with its
actions (pause, resume, disconnect, new credentials).

Credentials are write-only, in the api and here: a secret field is a password input that is
never filled in, not even when the api refused the form and it is shown again (the user types
the secrets again; the page says so). Which fields a platform uses comes from the platform
catalogue, so a platform added there shows up in the hints without this page changing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from google.protobuf.timestamp_pb2 import Timestamp

from kairos.posts.v1 import posts_pb2
from kairos_client import KairosError
from kairos_common.platforms import CATALOGUE, Platform
from kairos_console.app import api, session_of
from kairos_console.render import render, with_notice, word
from kairos_console.views.forms import FieldErrors, Form, form_of, text
from kairos_console.views.problems import REFUSALS

routes = web.RouteTableDef()

#: An account id as the api makes them (a UUID); anything else is no page at all.
ACCOUNT_PATH = "/accounts/{account_id:[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}}"
#: How many rows of free "extra" values the form offers.
EXTRA_ROWS = 3
#: The format of an `<input type="datetime-local">` value, minutes and seconds.
LOCAL_FORMATS = ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S")


def proto_platform(platform: Platform) -> posts_pb2.Platform.ValueType:
    """The wire value of a catalogue platform (the enum maps by name)."""
    return posts_pb2.Platform.Value(f"PLATFORM_{platform.name}")


def account_status(value: int) -> str:
    """ACCOUNT_STATUS_NEEDS_REAUTH -> "needs reauth"."""
    return word(value, posts_pb2.AccountStatus)


def _names(platforms: list[Platform]) -> str:
    """The platforms' names as a phrase: "X, Webhook and Sandbox"."""
    names = [CATALOGUE[p].name for p in platforms]
    if len(names) < 2:
        return "".join(names)
    return f"{', '.join(names[:-1])} and {names[-1]}"


@dataclass(frozen=True)
class CredentialField:
    """One field of the credentials form."""

    key: str
    """Its name in the form and, after "credentials.", in the api's violations."""
    label: str
    hint: str
    """Which platforms use it and what it is there."""
    platforms: tuple[Platform, ...]
    """The platforms that use it; empty for any platform."""
    secret: bool = True
    """Never shown back: a password input, always empty."""
    kind: str = "password"
    """The input's type."""
    meanings: tuple[tuple[Platform, str], ...] = ()
    """What the field is on each platform that requires it, where that differs by platform."""

    @property
    def path(self) -> str:
        return f"credentials.{self.key}"

    @property
    def id(self) -> str:
        return "cred-" + self.key.replace(".", "-").replace("_", "-")

    @property
    def platform_words(self) -> str:
        """The platforms as the page's script reads them ("mastodon bluesky"); "" for any."""
        return " ".join(p.value for p in self.platforms)

    def used_by(self, platform: Platform) -> bool:
        return not self.platforms or platform in self.platforms

    def for_platform(self, platform: Platform) -> CredentialField:
        """The field as one platform's account shows it: the hint says what it is there."""
        meaning = dict(self.meanings).get(platform)
        return replace(self, hint=f"Required: {meaning}.") if meaning else self


def _catalogue_field(key: str, label: str) -> CredentialField:
    """A field a catalogue row names when its platform needs it (`instance_url`, `page_id`,
    `chat_id`), with each platform's own description of it."""
    meanings = tuple((p, str(getattr(info, key))) for p, info in CATALOGUE.items())
    meanings = tuple((p, meaning) for p, meaning in meanings if meaning)
    hint = "; ".join(f"{CATALOGUE[p].name}: {meaning}" for p, meaning in meanings)
    return CredentialField(
        key,
        label,
        f"Required for {hint}.",
        tuple(p for p, _ in meanings),
        secret=False,
        kind="text",
        meanings=meanings,
    )


def credential_fields() -> list[CredentialField]:
    """Every field of the credentials form, in the order shown."""
    tokened = [p for p, info in CATALOGUE.items() if info.needs_access_token]
    untokened = [p for p, info in CATALOGUE.items() if not info.needs_access_token]
    return [
        CredentialField(
            "access_token",
            "Access token",
            "The OAuth token, bot token or app password Kairos publishes with; for Discord, the "
            "webhook URL (https://discord.com/api/webhooks/<id>/<token>). Required for every "
            f"platform but {_names(untokened)}.",
            (),
        ),
        CredentialField(
            "refresh_token",
            "Refresh token",
            "The OAuth refresh token, when the platform gave one; Kairos uses it to renew the "
            "access token.",
            tuple(tokened),
        ),
        CredentialField(
            "expires_at",
            "Access token expires at",
            "When the access token stops working, in your time zone, if you know it.",
            (),
            secret=False,
            kind="datetime-local",
        ),
        _catalogue_field("instance_url", "Instance URL"),
        _catalogue_field("page_id", "Page, user or author id"),
        _catalogue_field("chat_id", "Chat or channel id"),
        CredentialField(
            "extra.url",
            "Webhook URL",
            "Webhook: where Kairos POSTs each post. Required.",
            (Platform.WEBHOOK,),
        ),
        CredentialField(
            "extra.signing_secret",
            "Webhook signing secret",
            "Webhook: the key every call is signed with (HMAC-SHA256). Required.",
            (Platform.WEBHOOK,),
        ),
    ]


CREDENTIAL_FIELDS = credential_fields()
#: The platforms one may connect, as (value, name) for the form's choice.
PLATFORM_CHOICES = [(p.value, info.name) for p, info in CATALOGUE.items()]


@dataclass(frozen=True)
class CredentialsForm:
    """What the user typed in a credentials form: the request to send, or what is wrong."""

    credentials: posts_pb2.Credentials
    values: dict[str, str]
    """The non-secret values typed, to fill the form again (never a secret)."""
    errors: FieldErrors
    """Mistakes found before asking the api (an unreadable date)."""


def read_credentials(form: Form, zone: str) -> CredentialsForm:
    """The credentials a form holds; `expires_at` read as a wall time in `zone`."""
    credentials = posts_pb2.Credentials()
    values: dict[str, str] = {}
    errors = FieldErrors()
    for field in CREDENTIAL_FIELDS:
        value = text(form, field.key)
        if not field.secret:
            values[field.key] = value
        if not value:
            continue
        if field.key == "expires_at":
            when = _local_time(value, zone)
            stamp = Timestamp()
            try:
                if when is None:
                    raise ValueError(value)
                stamp.FromDatetime(when)  # a year 1 or 9999 time past UTC's range overflows
            except (ValueError, OverflowError):
                errors[field.path] = ["must be a date and time such as 2026-12-31T23:59"]
            else:
                credentials.expires_at.CopyFrom(stamp)
        elif field.key.startswith("extra."):
            credentials.extra[field.key.removeprefix("extra.")] = value
        else:
            setattr(credentials, field.key, value)
    for row in range(EXTRA_ROWS):
        key = text(form, f"extra_key_{row}")
        value = text(form, f"extra_value_{row}")
        values[f"extra_key_{row}"] = key
        if key or value:
            # An empty key goes to the api as it is: its refusal says what is wrong.
            credentials.extra[key] = value
    return CredentialsForm(credentials, values, errors)


def _local_time(value: str, zone: str) -> datetime | None:
    for fmt in LOCAL_FORMATS:
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=ZoneInfo(zone))
        except ValueError:
            continue
    return None


def _form_context(
    values: dict[str, str], errors: FieldErrors, *, retype_secrets: bool
) -> dict[str, Any]:
    return {
        "fields": CREDENTIAL_FIELDS,
        "extra_rows": range(EXTRA_ROWS),
        "values": values,
        "errors": errors,
        "summary": _summary(errors),
        "extra_messages": [m for path in errors if _in_extra_rows(path) for m in errors[path]],
        # A secret typed in a refused form is not sent back: the user types it again.
        "retype_secrets": retype_secrets,
    }


def _in_extra_rows(path: str) -> bool:
    """Whether a violation is of the free "other values" rows: the map itself, or an extra value
    that has no field of its own (a Discord `webhook_url` typed in a row)."""
    named = {field.path for field in CREDENTIAL_FIELDS}
    return path == "credentials.extra" or (
        path.startswith("credentials.extra.") and path not in named
    )


def _summary(errors: FieldErrors) -> list[tuple[str, str, str]]:
    """Every message as (label, message, id of the field it belongs to, or "")."""
    places = {field.path: (field.label, field.id) for field in CREDENTIAL_FIELDS}
    places |= {
        "platform": ("Platform", "account-platform"),
        "handle": ("Handle", "account-handle"),
        "credentials": ("Credentials", "credentials"),
    }
    found: list[tuple[str, str, str]] = []
    for path, messages in errors.items():
        label, anchor = places.get(path, (path, ""))
        if path == "credentials.extra":
            label, anchor = "Other values", "extra-key-0"
        elif _in_extra_rows(path):
            label, anchor = (
                f"Other values: {path.removeprefix('credentials.extra.')}",
                "extra-key-0",
            )
        found.extend((label, message, anchor) for message in messages)
    return found


# --- the list and connecting --------------------------------------------------------------


async def _list_page(
    request: web.Request,
    *,
    status: int = 200,
    values: dict[str, str] | None = None,
    errors: FieldErrors | None = None,
) -> web.Response:
    accounts = await api(request).list_accounts()
    return render(
        request,
        "accounts.html",
        status=status,
        accounts=accounts,
        account_status=account_status,
        platforms=PLATFORM_CHOICES,
        chosen=(values or {}).get("platform", ""),
        handle=(values or {}).get("handle", ""),
        # The connect form is this page's only form: any refusal is of what it sent.
        **_form_context(values or {}, errors or FieldErrors(), retype_secrets=errors is not None),
    )


@routes.get("/accounts")
async def accounts_page(request: web.Request) -> web.Response:
    return await _list_page(request)


@routes.post("/accounts")
async def connect(request: web.Request) -> web.Response:
    form = await form_of(request)
    read = read_credentials(form, session_of(request).zone)
    chosen = text(form, "platform")
    values = {**read.values, "platform": chosen, "handle": text(form, "handle")}
    errors = read.errors
    try:
        platform = Platform(chosen)
    except ValueError:
        errors = FieldErrors({**errors, "platform": ["Choose a platform."]})
    if errors:
        return await _list_page(request, status=400, values=values, errors=errors)
    try:
        await api(request).connect_account(
            posts_pb2.ConnectAccountRequest(
                platform=proto_platform(platform),
                handle=values["handle"],
                credentials=read.credentials,
            )
        )
    except KairosError as error:
        if error.code not in REFUSALS:
            raise
        return await _list_page(
            request, status=REFUSALS[error.code], values=values, errors=FieldErrors.of(error)
        )
    raise web.HTTPSeeOther(with_notice("/accounts", "connected"))


# --- one account ----------------------------------------------------------------------------


async def _account_page(
    request: web.Request,
    account: posts_pb2.Account | None = None,
    *,
    status: int = 200,
    values: dict[str, str] | None = None,
    errors: FieldErrors | None = None,
    retype_secrets: bool = False,
) -> web.Response:
    if account is None:
        account = await api(request).get_account(request.match_info["account_id"])
    platform = _catalogue_platform(account.platform)
    context = _form_context(values or {}, errors or FieldErrors(), retype_secrets=retype_secrets)
    if platform is not None:
        context["fields"] = [
            f.for_platform(platform) for f in CREDENTIAL_FIELDS if f.used_by(platform)
        ]
    return render(
        request,
        "account.html",
        status=status,
        account=account,
        account_status=account_status,
        connected=account.status != posts_pb2.ACCOUNT_STATUS_DISCONNECTED,
        paused=account.status == posts_pb2.ACCOUNT_STATUS_PAUSED,
        needs_reauth=account.status == posts_pb2.ACCOUNT_STATUS_NEEDS_REAUTH,
        **context,
    )


def _catalogue_platform(value: int) -> Platform | None:
    try:
        return Platform(word(value, posts_pb2.Platform))
    except ValueError:
        return None


@routes.get(ACCOUNT_PATH)
async def account_page(request: web.Request) -> web.Response:
    return await _account_page(request)


async def _act(request: web.Request, action: str, notice: str) -> web.Response:
    """Pause, resume or disconnect; a refusal (say, the account was disconnected meanwhile) is
    shown at the top of the account's page."""
    account_id = request.match_info["account_id"]
    client = api(request)
    call = {
        "pause": client.pause_account,
        "resume": client.resume_account,
        "disconnect": client.disconnect_account,
    }[action]
    try:
        await call(account_id)
    except KairosError as error:
        if error.code not in REFUSALS:
            raise
        return await _account_page(
            request, status=REFUSALS[error.code], errors=FieldErrors.of(error)
        )
    raise web.HTTPSeeOther(with_notice(f"/accounts/{account_id}", notice))


@routes.post(ACCOUNT_PATH + "/pause")
async def pause(request: web.Request) -> web.Response:
    return await _act(request, "pause", "paused")


@routes.post(ACCOUNT_PATH + "/resume")
async def resume(request: web.Request) -> web.Response:
    return await _act(request, "resume", "resumed")


@routes.get(ACCOUNT_PATH + "/disconnect")
async def disconnect_page(request: web.Request) -> web.Response:
    """The question before disconnecting: a page of its own, so it needs no script."""
    account = await api(request).get_account(request.match_info["account_id"])
    return render(
        request,
        "account_disconnect.html",
        account=account,
        disconnected=account.status == posts_pb2.ACCOUNT_STATUS_DISCONNECTED,
    )


@routes.post(ACCOUNT_PATH + "/disconnect")
async def disconnect(request: web.Request) -> web.Response:
    form = await form_of(request)
    if text(form, "confirm") != "yes":
        # Only the confirmation page's form says yes; anything else asks first.
        raise web.HTTPSeeOther(f"/accounts/{request.match_info['account_id']}/disconnect")
    return await _act(request, "disconnect", "disconnected")


@routes.post(ACCOUNT_PATH + "/credentials")
async def update_credentials(request: web.Request) -> web.Response:
    account_id = request.match_info["account_id"]
    form = await form_of(request)
    read = read_credentials(form, session_of(request).zone)
    if read.errors:
        return await _account_page(
            request, status=400, values=read.values, errors=read.errors, retype_secrets=True
        )
    try:
        await api(request).update_account_credentials(account_id, read.credentials)
    except KairosError as error:
        if error.code not in REFUSALS:
            raise
        return await _account_page(
            request,
            status=REFUSALS[error.code],
            values=read.values,
            errors=FieldErrors.of(error),
            retype_secrets=True,
        )
    raise web.HTTPSeeOther(with_notice(f"/accounts/{account_id}", "credentials"))
