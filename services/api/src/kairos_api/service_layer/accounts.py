"""Connected social accounts: connect, inspect, re-credential, pause, resume and disconnect.

Credentials are write-only. They arrive as `Credentials`, are checked against what the account's
platform needs, serialized to JSON and encrypted with the application's `CredentialCipher` bound
to the account id, so a token copied onto another row does not decrypt. Nothing here returns,
logs or puts them in an error message: `decrypt_credentials` is for the dispatch service alone.

Every handler is scoped to one tenant: another tenant's account answers `NotFound`, exactly as an
account that does not exist.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Final, TypedDict, cast
from urllib.parse import urlsplit

from sqlalchemy import select

from kairos_api.adapters.orm import Account, Post, Target, new_id
from kairos_api.domain.model import (
    AccountStatus,
    PostStatus,
    TargetStatus,
)
from kairos_api.service_layer.settle import settle_posts
from kairos_api.service_layer.unit_of_work import UnitOfWork
from kairos_common import errors
from kairos_common.errors import FieldViolation
from kairos_common.platforms import CATALOGUE, Platform

if TYPE_CHECKING:
    from kairos_api.service_layer.application import Application

log = logging.getLogger(__name__)

MAX_HANDLE_LENGTH: Final = 300
"""Longest handle accepted, in characters (the column's size)."""

MAX_CREDENTIALS_BYTES: Final = 64 * 1024
"""Largest serialized credentials accepted; real tokens are a few kilobytes at most."""

CREDENTIALS_VERSION: Final = 1
"""Layout version written inside the encrypted JSON, so a later layout can be told apart."""

LINKEDIN_AUTHOR_PREFIXES: Final = ("urn:li:person:", "urn:li:organization:")
#: The path of a Discord webhook's execute URL (an optional API version before it).
DISCORD_WEBHOOK_PATH = re.compile(r"^/api/(v[0-9]+/)?webhooks/[0-9]+/[A-Za-z0-9_.-]+/?$")
#: A Telegram chat: a numeric id (negative for groups and channels) or a public @channelname.
#: A Pinterest board id: digits (`board_id` has the pattern `^\d+$` in Pinterest's OpenAPI
#: description, pinterest/api-description v5/openapi.json).
PINTEREST_BOARD = re.compile(r"^[0-9]{1,30}$")
TELEGRAM_CHAT = re.compile(r"^(-?[0-9]{1,20}|@[A-Za-z][A-Za-z0-9_]{3,31})$")

#: Targets that a disconnect settles as SKIPPED. QUEUED ones are included: their due event is
#: already in flight, but BeginAttempt only starts a QUEUED target, so the event is dropped.
#: PUBLISHING ones are left alone: their platform call is under way and must be completed.
SKIPPED_ON_DISCONNECT: Final = frozenset(
    {TargetStatus.PENDING, TargetStatus.RETRY_WAIT, TargetStatus.QUEUED}
)


@dataclass(frozen=True)
class Credentials:
    """What an account publishes with. Secrets are left out of `repr`, so of tracebacks too."""

    #: OAuth access token, bot token, app password or webhook URL, as the platform needs.
    access_token: str = field(default="", repr=False)
    #: OAuth refresh token, when the platform has one.
    refresh_token: str = field(default="", repr=False)
    #: When the access token expires (aware), if known.
    expires_at: datetime | None = None
    #: Base URL of the instance (Mastodon), PDS (Bluesky) or sandbox endpoint.
    instance_url: str = ""
    #: Facebook page id, Instagram or Threads user id, LinkedIn author URN.
    page_id: str = ""
    #: Telegram chat id or Slack channel id.
    chat_id: str = ""
    #: Platform-specific values: `url` and `signing_secret` of a webhook, for example.
    extra: Mapping[str, str] = field(default_factory=dict, repr=False)


class StoredCredentials(TypedDict):
    """The decrypted JSON of an account's credentials (`expires_at` as ISO 8601, or None)."""

    version: int
    access_token: str
    refresh_token: str
    expires_at: str | None
    instance_url: str
    page_id: str
    chat_id: str
    extra: dict[str, str]


@dataclass(frozen=True)
class ConnectAccount:
    """Connect an account. `platform` is a `Platform` value; "" when the client gave none, and
    any other text (such as an enum number this build does not know) is reported as unknown."""

    platform: str
    handle: str
    credentials: Credentials


@dataclass(frozen=True)
class ListAccounts:
    """List the tenant's accounts, optionally only one platform and/or status ("" for any)."""

    platform: str = ""
    status: str = ""


@dataclass(frozen=True)
class GetAccount:
    """Read one account."""

    account_id: str


@dataclass(frozen=True)
class UpdateAccountCredentials:
    """Replace an account's credentials whole."""

    account_id: str
    credentials: Credentials


@dataclass(frozen=True)
class PauseAccount:
    """Hold back publishing to an account."""

    account_id: str


@dataclass(frozen=True)
class ResumeAccount:
    """Publish to a paused account again."""

    account_id: str


@dataclass(frozen=True)
class DisconnectAccount:
    """Disconnect an account and forget its credentials."""

    account_id: str


# --- handlers ---------------------------------------------------------------------------------


async def connect_account(app: Application, tenant: str, command: ConnectAccount) -> Account:
    """Store a new ACTIVE account with its credentials encrypted; nothing is written if any field
    breaks a rule (all broken rules are reported together)."""
    violations: list[FieldViolation] = []
    platform = _parse_platform(command.platform, "platform", violations, required=True)
    handle = command.handle.strip()
    if not handle:
        violations.append(FieldViolation("handle", "is required"))
    elif len(handle) > MAX_HANDLE_LENGTH:
        violations.append(
            FieldViolation("handle", f"must be at most {MAX_HANDLE_LENGTH} characters")
        )
    if platform is not None:
        violations.extend(_credential_violations(app, platform, command.credentials))
    if violations:
        raise errors.InvalidArgument.collect(violations)
    assert platform is not None

    # The id comes first: the ciphertext is bound to it.
    account_id = new_id()
    now = app.clock()
    account = Account(
        id=account_id,
        tenant_id=tenant,
        platform=platform.value,
        handle=handle,
        status=AccountStatus.ACTIVE.value,
        credentials=_encrypt(app, account_id, command.credentials),
        token_expires_at=command.credentials.expires_at,
        status_reason="",
        created_at=now,
        updated_at=now,
    )
    async with app.uow() as uow:
        uow.session.add(account)
        await uow.commit()
    log.info(
        "account connected",
        extra={"tenant": tenant, "account_id": str(account_id), "platform": platform.value},
    )
    return account


async def list_accounts(app: Application, tenant: str, command: ListAccounts) -> list[Account]:
    """The tenant's accounts, oldest first, disconnected ones included unless filtered out."""
    violations: list[FieldViolation] = []
    platform = _parse_platform(command.platform, "platform", violations, required=False)
    status: AccountStatus | None = None
    if command.status:
        try:
            status = AccountStatus(command.status)
        except ValueError:
            violations.append(
                FieldViolation(
                    "status",
                    f"unknown account status {command.status!r}; expected one of: "
                    + ", ".join(s.value for s in AccountStatus),
                )
            )
    if violations:
        raise errors.InvalidArgument.collect(violations)

    query = (
        select(Account).where(Account.tenant_id == tenant).order_by(Account.created_at, Account.id)
    )
    if platform is not None:
        query = query.where(Account.platform == platform.value)
    if status is not None:
        query = query.where(Account.status == status.value)
    async with app.uow() as uow:
        return list((await uow.session.execute(query)).scalars())


async def get_account(app: Application, tenant: str, command: GetAccount) -> Account:
    """One account of the tenant, or NotFound."""
    account_id = parse_account_id(command.account_id)
    async with app.uow() as uow:
        return await _load(uow, tenant, account_id, for_update=False)


async def update_account_credentials(
    app: Application, tenant: str, command: UpdateAccountCredentials
) -> Account:
    """Replace the credentials whole (nothing of the old ones is kept).

    An account that needed re-authentication becomes ACTIVE again; a paused one stays PAUSED; a
    disconnected one cannot be given credentials (FailedPrecondition: connect it anew).
    """
    account_id = parse_account_id(command.account_id)
    async with app.uow() as uow:
        account = await _load(uow, tenant, account_id, for_update=True)
        violations = _credential_violations(app, Platform(account.platform), command.credentials)
        if violations:
            raise errors.InvalidArgument.collect(violations)
        _require_connected(account, "updated")
        account.credentials = _encrypt(app, account.id, command.credentials)
        account.token_expires_at = command.credentials.expires_at
        if account.status == AccountStatus.NEEDS_REAUTH:
            account.status = AccountStatus.ACTIVE.value
            account.status_reason = ""
        account.updated_at = app.clock()
        await uow.commit()
    log.info(
        "account credentials replaced", extra={"tenant": tenant, "account_id": str(account_id)}
    )
    return account


async def pause_account(app: Application, tenant: str, command: PauseAccount) -> Account:
    """Hold back publishing to the account: ACTIVE or NEEDS_REAUTH becomes PAUSED.

    Its targets are left as they are: PENDING and RETRY_WAIT targets stay so, and are simply not
    claimed while the account is paused, so resuming publishes what is still due (a target that
    became stale meanwhile is MISSED by the usual rule). Pausing a paused account changes nothing;
    a disconnected account cannot be paused (FailedPrecondition).
    """
    account_id = parse_account_id(command.account_id)
    async with app.uow() as uow:
        account = await _load(uow, tenant, account_id, for_update=True)
        _require_connected(account, "paused")
        if account.status != AccountStatus.PAUSED:
            account.status = AccountStatus.PAUSED.value
            account.updated_at = app.clock()
            await uow.commit()
            log.info("account paused", extra={"tenant": tenant, "account_id": str(account_id)})
    return account


async def resume_account(app: Application, tenant: str, command: ResumeAccount) -> Account:
    """Publish to a paused account again: PAUSED becomes ACTIVE.

    An ACTIVE or NEEDS_REAUTH account is left as it is (resuming does not clear a refusal of the
    credentials: only new credentials do). A disconnected one cannot be resumed
    (FailedPrecondition).
    """
    account_id = parse_account_id(command.account_id)
    async with app.uow() as uow:
        account = await _load(uow, tenant, account_id, for_update=True)
        _require_connected(account, "resumed")
        if account.status == AccountStatus.PAUSED:
            account.status = AccountStatus.ACTIVE.value
            account.updated_at = app.clock()
            await uow.commit()
            log.info("account resumed", extra={"tenant": tenant, "account_id": str(account_id)})
    return account


async def disconnect_account(app: Application, tenant: str, command: DisconnectAccount) -> Account:
    """Disconnect the account for good: DISCONNECTED, credentials forgotten (set to NULL).

    Targets still waiting on it (PENDING, RETRY_WAIT, and QUEUED ones whose attempt has not begun)
    become SKIPPED with the reason; a target whose platform call is under way is left to finish.
    Every post that loses a target gets a new revision and a lifecycle event; a publishing post
    whose last live target this was gets its final status. Disconnecting again changes nothing.
    """
    account_id = parse_account_id(command.account_id)
    async with app.uow() as uow:
        account = await _load(uow, tenant, account_id, for_update=True)
        if account.status == AccountStatus.DISCONNECTED and account.credentials is None:
            return account
        now = app.clock()
        account.status = AccountStatus.DISCONNECTED.value
        account.status_reason = "disconnected by the user"
        account.credentials = None
        account.token_expires_at = None
        account.blocked_until = None
        account.updated_at = now
        skipped = await _skip_waiting_targets(uow, account, now)
        await uow.commit()
    log.info(
        "account disconnected",
        extra={"tenant": tenant, "account_id": str(account_id), "skipped_targets": skipped},
    )
    return account


def decrypt_credentials(app: Application, account: Account) -> StoredCredentials:
    """The account's credentials in clear, for the dispatch service to hand to a publisher.

    Raises `FailedPrecondition` when the account has none (disconnected), and
    `CredentialDecryptError` when they cannot be decrypted (key missing from KAIROS_SECRET_KEY,
    or damaged); neither message contains any part of a credential.
    """
    return open_credentials(app, str(account.id), account.credentials)


def open_credentials(app: Application, account_id: str, sealed: bytes | None) -> StoredCredentials:
    """`decrypt_credentials` for an account's id and sealed column, as a dispatch read has them
    without loading the account."""
    if sealed is None:
        raise errors.FailedPrecondition(f"account {account_id} has no credentials (disconnected)")
    plaintext = app.cipher.decrypt(sealed, associated=account_id)
    return cast(StoredCredentials, json.loads(plaintext))


def encrypt_stored(
    app: Application, account_id: uuid.UUID, credentials: StoredCredentials
) -> bytes:
    """Encrypt credentials in their stored form (as `decrypt_credentials` returns them, e.g.
    after a publisher refreshed the tokens) for the account's `credentials` column."""
    stored = dict(credentials)
    stored["version"] = CREDENTIALS_VERSION
    return app.cipher.encrypt(_to_json(stored), associated=str(account_id))


def _to_json(stored: Mapping[str, object]) -> bytes:
    return json.dumps(stored, separators=(",", ":"), sort_keys=True).encode("utf-8")


def parse_account_id(value: str, field_name: str = "account_id") -> uuid.UUID:
    """An account id from a request, or InvalidArgument naming the field."""
    text = value.strip()
    if not text:
        raise errors.InvalidArgument.of(field_name, "is required")
    try:
        return uuid.UUID(text)
    except ValueError:
        raise errors.InvalidArgument.of(field_name, "must be an account id (a UUID)") from None


# --- helpers ----------------------------------------------------------------------------------


async def _load(
    uow: UnitOfWork, tenant: str, account_id: uuid.UUID, *, for_update: bool
) -> Account:
    query = select(Account).where(Account.id == account_id, Account.tenant_id == tenant)
    if for_update:
        # Serializes concurrent changes to one account on PostgreSQL; SQLite has one writer anyway.
        query = query.with_for_update()
    account = (await uow.session.execute(query)).scalar_one_or_none()
    if account is None:
        raise errors.NotFound(f"account {account_id} not found")
    return account


def _require_connected(account: Account, action: str) -> None:
    if account.status == AccountStatus.DISCONNECTED:
        raise errors.FailedPrecondition(
            f"account {account.id} is disconnected and cannot be {action}; connect it again"
        )


def _parse_platform(
    value: str, field_name: str, violations: list[FieldViolation], *, required: bool
) -> Platform | None:
    if not value:
        if required:
            violations.append(FieldViolation(field_name, "is required"))
        return None
    try:
        return Platform(value)
    except ValueError:
        violations.append(
            FieldViolation(
                field_name,
                f"unknown platform {value!r}; expected one of: "
                + ", ".join(p.value for p in Platform),
            )
        )
        return None


def _credential_violations(
    app: Application, platform: Platform, credentials: Credentials
) -> list[FieldViolation]:
    """What the platform needs and the credentials lack. Descriptions never echo a value: a
    webhook URL or a token is a secret.

    Which fields a platform needs, and what each means there, is its catalogue row; the shapes
    only one platform uses (a LinkedIn URN, a Telegram chat, a Discord or webhook URL) are
    checked below by platform."""
    found: list[FieldViolation] = []
    name = platform.value
    info = CATALOGUE[platform]

    def need(field_name: str, value: str, what: str) -> bool:
        if value.strip():
            return True
        found.append(
            FieldViolation(f"credentials.{field_name}", f"is required for {name} ({what})")
        )
        return False

    # A Discord webhook URL may come in extra.webhook_url instead of the access token (the
    # Credentials message says so, and the publisher reads either).
    discord_hook = platform == Platform.DISCORD and credentials.extra.get("webhook_url", "").strip()
    if info.needs_access_token and not discord_hook:
        need("access_token", credentials.access_token, "the token Kairos publishes with")

    # Instance URLs of real platforms must be https: the token travels to them. Development and
    # tests point them at local fakes over http, which KAIROS_ALLOW_HTTP_MEDIA (the same switch
    # that admits http media URLs) allows. Kairos's own targets (the sandbox) may always be http.
    allow_http_instance_urls = app.settings.allow_http_media
    if info.instance_url and need("instance_url", credentials.instance_url, info.instance_url):
        problem = _url_problem(
            credentials.instance_url, allow_http=allow_http_instance_urls or info.own, base=True
        )
        if problem:
            found.append(FieldViolation("credentials.instance_url", problem))

    if info.page_id:
        page_id = credentials.page_id.strip()
        if need("page_id", page_id, info.page_id) and platform == Platform.LINKEDIN:
            prefix = next((p for p in LINKEDIN_AUTHOR_PREFIXES if page_id.startswith(p)), None)
            if prefix is None or len(page_id) == len(prefix):
                found.append(
                    FieldViolation(
                        "credentials.page_id",
                        "must be a LinkedIn author URN: urn:li:person:<id> or "
                        "urn:li:organization:<id>",
                    )
                )
        elif page_id and platform == Platform.PINTEREST and not PINTEREST_BOARD.match(page_id):
            found.append(
                FieldViolation("credentials.page_id", "must be a Pinterest board id: digits only")
            )

    if info.chat_id:
        chat_id = credentials.chat_id.strip()
        if (
            need("chat_id", chat_id, info.chat_id)
            and platform == Platform.TELEGRAM
            and not TELEGRAM_CHAT.match(chat_id)
        ):
            found.append(
                FieldViolation(
                    "credentials.chat_id",
                    "must be a numeric Telegram chat id (negative for groups and channels) "
                    "or a public @channelname",
                )
            )

    if platform == Platform.DISCORD:
        # The webhook URL is the credential: extra webhook_url, else the access token.
        field_name = "extra.webhook_url" if credentials.extra.get("webhook_url") else "access_token"
        hook = credentials.extra.get("webhook_url") or credentials.access_token
        if hook.strip() and (
            _url_problem(hook, allow_http=allow_http_instance_urls, base=False)
            or not DISCORD_WEBHOOK_PATH.search(urlsplit(hook.strip()).path)
        ):
            found.append(
                FieldViolation(
                    f"credentials.{field_name}",
                    "must be the Discord webhook URL, "
                    "https://discord.com/api/webhooks/<webhook id>/<webhook token>",
                )
            )

    if platform == Platform.WEBHOOK:
        url = credentials.extra.get("url", "")
        if not url.strip():
            found.append(
                FieldViolation("credentials.extra.url", "is required for webhook (where to POST)")
            )
        else:
            problem = _url_problem(url, allow_http=True, base=False)
            if problem:
                found.append(FieldViolation("credentials.extra.url", problem))
        # Every webhook call is signed, so the receiver can tell it from a forgery: an account
        # without a secret would be sent unsigned (the publisher signs only when it has one).
        need("extra.signing_secret", credentials.extra.get("signing_secret", ""), "the HMAC key")

    for key in credentials.extra:
        if not key.strip():
            found.append(FieldViolation("credentials.extra", "keys must not be empty"))
            break

    if not found and len(_to_json(_stored(credentials))) > MAX_CREDENTIALS_BYTES:
        found.append(
            FieldViolation(
                "credentials", f"must be at most {MAX_CREDENTIALS_BYTES} bytes once serialized"
            )
        )
    return found


def _url_problem(url: str, *, allow_http: bool, base: bool) -> str | None:
    """Why `url` is unusable, or None. Never includes the URL itself."""
    if url != url.strip() or any(c.isspace() for c in url):
        return "must not contain spaces"
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a malformed port
    except ValueError:
        return "must be an absolute URL such as https://example.social"
    del port
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "must be an absolute URL such as https://example.social"
    if parts.scheme not in schemes:
        return (
            "must use https (http is allowed only for local development, with "
            "KAIROS_ALLOW_HTTP_MEDIA=true)"
        )
    if parts.username is not None or parts.password is not None:
        return "must not contain a user name or password"
    if base and (parts.query or parts.fragment):
        return "must be a base URL without a query or fragment"
    return None


def _stored(credentials: Credentials) -> StoredCredentials:
    return {
        "version": CREDENTIALS_VERSION,
        "access_token": credentials.access_token,
        "refresh_token": credentials.refresh_token,
        "expires_at": credentials.expires_at.isoformat() if credentials.expires_at else None,
        "instance_url": credentials.instance_url.strip(),
        "page_id": credentials.page_id.strip(),
        "chat_id": credentials.chat_id.strip(),
        "extra": dict(credentials.extra),
    }


def _encrypt(app: Application, account_id: uuid.UUID, credentials: Credentials) -> bytes:
    return encrypt_stored(app, account_id, _stored(credentials))


async def _skip_waiting_targets(uow: UnitOfWork, account: Account, now: datetime) -> int:
    """Mark the account's waiting targets SKIPPED; settle the posts left with no live target."""
    targets = list(
        (
            await uow.session.execute(
                select(Target)
                .where(
                    Target.account_id == account.id,
                    Target.status.in_([s.value for s in SKIPPED_ON_DISCONNECT]),
                )
                .with_for_update()
            )
        ).scalars()
    )
    for target in targets:
        target.status = TargetStatus.SKIPPED.value
        target.next_attempt_at = None
        target.lease_until = None
        target.last_error_class = ""
        target.last_error_code = "account_disconnected"
        target.last_error_message = f"account {account.id} was disconnected"
        target.updated_at = now
    await _settle_posts(uow, {t.post_id for t in targets}, now)
    return len(targets)


async def _settle_posts(uow: UnitOfWork, post_ids: Iterable[uuid.UUID], now: datetime) -> None:
    """Each post that lost a target to the disconnect gets a new revision and an event; a
    scheduled or publishing one left with no live target takes its derived status too."""
    ids: Sequence[uuid.UUID] = sorted(post_ids)
    if not ids:
        return
    posts = list(
        (
            await uow.session.execute(
                select(Post)
                .where(Post.id.in_(ids), Post.deleted_at.is_(None))
                .order_by(Post.id)
                .with_for_update()
            )
        ).scalars()
    )
    for post in posts:
        post.revision += 1
        post.updated_at = now
    await _keep_claimed_deliveries(uow, posts)
    settled = await settle_posts(
        uow,
        [p for p in posts if p.status in (PostStatus.SCHEDULED, PostStatus.PUBLISHING)],
        now,
    )
    settled_ids = {post.id for post in settled}
    for post in posts:
        event = "updated"
        if post.id in settled_ids:
            event = _SETTLED_EVENTS.get(PostStatus(post.status), "updated")
        uow.emit(event, post, detail="account disconnected")


async def _keep_claimed_deliveries(uow: UnitOfWork, posts: Sequence[Post]) -> None:
    """Carry the other accounts' claimed deliveries over to the posts' new revisions.

    The revision fences out deliveries claimed before a change, so that they publish what the
    post is now. A disconnect changes nothing the other targets publish: their deliveries stay
    good, and fencing them out would only delay them until their lease runs out.
    """
    bumped = {post.id: post.revision for post in posts}
    queued = (
        await uow.session.execute(
            select(Target)
            .where(Target.post_id.in_(bumped), Target.status == TargetStatus.QUEUED.value)
            .with_for_update()
        )
    ).scalars()
    for target in queued:
        if target.delivery_revision == bumped[target.post_id] - 1:
            target.delivery_revision = bumped[target.post_id]


#: The lifecycle event a post settled by a disconnect announces.
_SETTLED_EVENTS: Final[dict[PostStatus, str]] = {
    PostStatus.PUBLISHED: "published",
    PostStatus.PARTIALLY_PUBLISHED: "published",
    PostStatus.FAILED: "failed",
    PostStatus.UNKNOWN: "unknown",
    PostStatus.MISSED: "missed",
}
