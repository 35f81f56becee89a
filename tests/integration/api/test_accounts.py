"""AccountsService over real gRPC, on PostgreSQL and on SQLite: every RPC's success and error
paths, authentication, tenant isolation, and credentials that never leave the server in clear."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import psycopg
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import select

from kairos.posts.v1 import posts_pb2, posts_pb2_grpc
from kairos_api.adapters import database
from kairos_api.adapters.crypto import CredentialDecryptError
from kairos_api.adapters.orm import Account, Post, Target, new_id
from kairos_api.bootstrap import bootstrap
from kairos_api.domain.model import AccountStatus, PostStatus, TargetStatus
from kairos_api.service_layer import accounts, keys, rotation
from kairos_api.service_layer.application import Application
from support.api import TEST_SECRET, Client, RunningApi, api_settings, violations_of
from support.postgres import TestDatabase

if TYPE_CHECKING:
    # Only in the stubs: the async overload that a stub built on an aio channel is.
    from kairos.posts.v1.posts_pb2_grpc import AccountsServiceAsyncStub as Stub

Code = grpc.StatusCode
EXPIRES = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)


def secret(kind: str) -> str:
    """A token no other test uses, so finding it anywhere means this test leaked it."""
    return f"{kind}-{uuid.uuid4().hex}-SECRET"


def stamp(value: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(value)
    return out


def mastodon_credentials(
    access_token: str = "", refresh_token: str = "", **fields: Any
) -> posts_pb2.Credentials:
    return posts_pb2.Credentials(
        access_token=access_token or secret("access"),
        refresh_token=refresh_token,
        expires_at=stamp(EXPIRES),
        instance_url="https://mastodon.example",
        **fields,
    )


def mastodon(handle: str = "@kairos@mastodon.example", **fields: Any) -> Any:
    return posts_pb2.ConnectAccountRequest(
        platform=posts_pb2.PLATFORM_MASTODON,
        handle=handle,
        credentials=mastodon_credentials(**fields),
    )


#: The least each platform needs, to connect successfully.
VALID: dict[posts_pb2.Platform.ValueType, posts_pb2.Credentials] = {
    posts_pb2.PLATFORM_X: posts_pb2.Credentials(access_token="x-token", refresh_token="x-refresh"),
    posts_pb2.PLATFORM_MASTODON: posts_pb2.Credentials(
        access_token="t", instance_url="https://mastodon.social"
    ),
    posts_pb2.PLATFORM_BLUESKY: posts_pb2.Credentials(
        access_token="app-password", instance_url="https://bsky.social"
    ),
    posts_pb2.PLATFORM_LINKEDIN: posts_pb2.Credentials(
        access_token="t", page_id="urn:li:organization:2414183"
    ),
    posts_pb2.PLATFORM_FACEBOOK: posts_pb2.Credentials(access_token="t", page_id="546349135"),
    posts_pb2.PLATFORM_INSTAGRAM: posts_pb2.Credentials(access_token="t", page_id="1784140"),
    posts_pb2.PLATFORM_THREADS: posts_pb2.Credentials(access_token="t", page_id="2551"),
    posts_pb2.PLATFORM_TELEGRAM: posts_pb2.Credentials(access_token="123:abc", chat_id="-10012"),
    posts_pb2.PLATFORM_DISCORD: posts_pb2.Credentials(
        access_token="https://discord.com/api/webhooks/1/abc"
    ),
    posts_pb2.PLATFORM_SLACK: posts_pb2.Credentials(access_token="xoxb-1", chat_id="C1H9RESGL"),
    posts_pb2.PLATFORM_WEBHOOK: posts_pb2.Credentials(
        extra={"url": "https://hooks.example/kairos", "signing_secret": "s3cret"}
    ),
    posts_pb2.PLATFORM_SANDBOX: posts_pb2.Credentials(instance_url="http://127.0.0.1:8089"),
    posts_pb2.PLATFORM_PINTEREST: posts_pb2.Credentials(
        access_token="pina_t", page_id="549755885175"
    ),
    posts_pb2.PLATFORM_TIKTOK: posts_pb2.Credentials(access_token="act.t", refresh_token="rft.t"),
    posts_pb2.PLATFORM_YOUTUBE: posts_pb2.Credentials(access_token="ya29.t", refresh_token="1//t"),
}


def stub(client: Client) -> Stub:
    return posts_pb2_grpc.AccountsServiceStub(client.channel)


async def rpc_error(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def connect(client: Client, request: Any | None = None) -> posts_pb2.Account:
    response = await stub(client).ConnectAccount(request or mastodon(), metadata=client.metadata)
    return response.account


async def stored(api: RunningApi, account_id: str) -> Account:
    async with api.service.app.uow() as uow:
        row = await uow.session.get(Account, uuid.UUID(account_id))
        assert row is not None
        return row


async def stored_credentials(api: RunningApi, account_id: str) -> accounts.StoredCredentials:
    return accounts.decrypt_credentials(api.service.app, await stored(api, account_id))


async def set_status(api: RunningApi, account_id: str, status: AccountStatus) -> None:
    async with api.service.app.uow() as uow:
        row = await uow.session.get(Account, uuid.UUID(account_id))
        assert row is not None
        row.status = status.value
        await uow.commit()


def assert_no_credentials(message: Any, *tokens: str) -> None:
    text = str(message)
    wire = message.SerializeToString()
    for token in tokens:
        assert token not in text
        assert token.encode() not in wire


# --- success paths --------------------------------------------------------------------------


def test_account_messages_have_no_credentials_field() -> None:
    names = set(posts_pb2.Account.DESCRIPTOR.fields_by_name)
    assert not names & {"credentials", "access_token", "refresh_token"}


async def test_connect_stores_an_active_account_and_never_returns_its_credentials(
    api: RunningApi, client: Client
) -> None:
    access, refresh = secret("access"), secret("refresh")
    before = datetime.now(UTC) - timedelta(seconds=5)
    response = await stub(client).ConnectAccount(
        mastodon(handle="@me@mastodon.example", access_token=access, refresh_token=refresh),
        metadata=client.metadata,
    )

    account = response.account
    assert uuid.UUID(account.id)
    assert account.platform == posts_pb2.PLATFORM_MASTODON
    assert account.handle == "@me@mastodon.example"
    assert account.status == posts_pb2.ACCOUNT_STATUS_ACTIVE
    assert account.token_expires_at.ToDatetime(tzinfo=UTC) == EXPIRES
    assert account.created_at.ToDatetime(tzinfo=UTC) >= before
    assert_no_credentials(response, access, refresh)
    credentials = await stored_credentials(api, account.id)
    assert credentials["access_token"] == access
    assert credentials["refresh_token"] == refresh
    assert credentials["instance_url"] == "https://mastodon.example"
    assert credentials["expires_at"] == EXPIRES.isoformat()


@pytest.mark.parametrize(
    "platform", sorted(VALID), ids=lambda p: posts_pb2.Platform.Name(p).lower()
)
async def test_every_platform_connects_with_what_it_needs(
    api: RunningApi, client: Client, platform: posts_pb2.Platform.ValueType
) -> None:
    account = await connect(
        client,
        posts_pb2.ConnectAccountRequest(
            platform=platform, handle="someone", credentials=VALID[platform]
        ),
    )

    assert account.platform == platform
    assert account.status == posts_pb2.ACCOUNT_STATUS_ACTIVE
    credentials = await stored_credentials(api, account.id)
    assert credentials["extra"] == dict(VALID[platform].extra)
    assert credentials["page_id"] == VALID[platform].page_id


async def test_a_discord_webhook_url_may_come_in_extra_without_an_access_token(
    api: RunningApi, client: Client
) -> None:
    hook = "https://discord.com/api/webhooks/1/abc"
    account = await connect(
        client,
        connect_request(posts_pb2.PLATFORM_DISCORD, extra={"webhook_url": hook}),
    )
    assert account.status == posts_pb2.ACCOUNT_STATUS_ACTIVE
    assert (await stored_credentials(api, account.id))["extra"] == {"webhook_url": hook}


async def test_get_returns_the_account(client: Client) -> None:
    account = await connect(client)

    response = await stub(client).GetAccount(
        posts_pb2.GetAccountRequest(account_id=account.id), metadata=client.metadata
    )

    assert response.account == account


async def test_list_returns_the_tenants_accounts_oldest_first_with_filters(
    api: RunningApi, client: Client
) -> None:
    first = await connect(client, mastodon(handle="first"))
    second = await connect(
        client,
        posts_pb2.ConnectAccountRequest(
            platform=posts_pb2.PLATFORM_X, handle="second", credentials=VALID[posts_pb2.PLATFORM_X]
        ),
    )
    third = await connect(client, mastodon(handle="third"))
    await stub(client).PauseAccount(
        posts_pb2.PauseAccountRequest(account_id=third.id), metadata=client.metadata
    )
    accounts_stub = stub(client)

    async def ids(**filters: Any) -> list[str]:
        response = await accounts_stub.ListAccounts(
            posts_pb2.ListAccountsRequest(**filters), metadata=client.metadata
        )
        return [a.id for a in response.accounts]

    assert await ids() == [first.id, second.id, third.id]
    assert await ids(platform=posts_pb2.PLATFORM_MASTODON) == [first.id, third.id]
    assert await ids(status=posts_pb2.ACCOUNT_STATUS_PAUSED) == [third.id]
    assert await ids(
        platform=posts_pb2.PLATFORM_MASTODON, status=posts_pb2.ACCOUNT_STATUS_ACTIVE
    ) == [first.id]
    assert await ids(platform=posts_pb2.PLATFORM_SLACK) == []


async def test_update_replaces_the_credentials_whole(api: RunningApi, client: Client) -> None:
    old_refresh = secret("refresh")
    account = await connect(client, mastodon(refresh_token=old_refresh))
    new_access = secret("access")
    later = EXPIRES + timedelta(days=30)

    response = await stub(client).UpdateAccountCredentials(
        posts_pb2.UpdateAccountCredentialsRequest(
            account_id=account.id,
            credentials=posts_pb2.Credentials(
                access_token=new_access,
                expires_at=stamp(later),
                instance_url="https://other.example",
            ),
        ),
        metadata=client.metadata,
    )

    assert response.account.status == posts_pb2.ACCOUNT_STATUS_ACTIVE
    assert response.account.token_expires_at.ToDatetime(tzinfo=UTC) == later
    assert_no_credentials(response, new_access, old_refresh)
    credentials = await stored_credentials(api, account.id)
    assert credentials["access_token"] == new_access
    assert credentials["refresh_token"] == ""  # replaced whole: the old one is not kept
    assert credentials["instance_url"] == "https://other.example"


async def test_update_reactivates_an_account_that_needed_reauth(
    api: RunningApi, client: Client
) -> None:
    account = await connect(client)
    await set_status(api, account.id, AccountStatus.NEEDS_REAUTH)

    response = await stub(client).UpdateAccountCredentials(
        posts_pb2.UpdateAccountCredentialsRequest(
            account_id=account.id, credentials=mastodon_credentials()
        ),
        metadata=client.metadata,
    )

    assert response.account.status == posts_pb2.ACCOUNT_STATUS_ACTIVE


async def test_update_keeps_a_paused_account_paused(client: Client) -> None:
    account = await connect(client)
    accounts_stub = stub(client)
    await accounts_stub.PauseAccount(
        posts_pb2.PauseAccountRequest(account_id=account.id), metadata=client.metadata
    )

    response = await accounts_stub.UpdateAccountCredentials(
        posts_pb2.UpdateAccountCredentialsRequest(
            account_id=account.id, credentials=mastodon_credentials()
        ),
        metadata=client.metadata,
    )

    assert response.account.status == posts_pb2.ACCOUNT_STATUS_PAUSED


async def test_pause_and_resume(api: RunningApi, client: Client) -> None:
    account = await connect(client)
    accounts_stub = stub(client)
    pause = posts_pb2.PauseAccountRequest(account_id=account.id)
    resume = posts_pb2.ResumeAccountRequest(account_id=account.id)

    paused = (await accounts_stub.PauseAccount(pause, metadata=client.metadata)).account
    again = (await accounts_stub.PauseAccount(pause, metadata=client.metadata)).account
    resumed = (await accounts_stub.ResumeAccount(resume, metadata=client.metadata)).account
    still = (await accounts_stub.ResumeAccount(resume, metadata=client.metadata)).account

    assert paused.status == posts_pb2.ACCOUNT_STATUS_PAUSED
    assert again == paused  # a no-op: not even updated_at moves
    assert resumed.status == posts_pb2.ACCOUNT_STATUS_ACTIVE
    assert still.status == posts_pb2.ACCOUNT_STATUS_ACTIVE
    assert (await stored(api, account.id)).status == AccountStatus.ACTIVE


async def test_an_account_needing_reauth_can_be_paused_but_resume_does_not_clear_reauth(
    api: RunningApi, client: Client
) -> None:
    account = await connect(client)
    await set_status(api, account.id, AccountStatus.NEEDS_REAUTH)
    accounts_stub = stub(client)

    resumed = await accounts_stub.ResumeAccount(
        posts_pb2.ResumeAccountRequest(account_id=account.id), metadata=client.metadata
    )
    paused = await accounts_stub.PauseAccount(
        posts_pb2.PauseAccountRequest(account_id=account.id), metadata=client.metadata
    )

    assert resumed.account.status == posts_pb2.ACCOUNT_STATUS_NEEDS_REAUTH
    assert paused.account.status == posts_pb2.ACCOUNT_STATUS_PAUSED


async def test_disconnect_forgets_the_credentials_and_is_idempotent(
    api: RunningApi, client: Client
) -> None:
    account = await connect(client)
    request = posts_pb2.DisconnectAccountRequest(account_id=account.id)

    first = await stub(client).DisconnectAccount(request, metadata=client.metadata)
    second = await stub(client).DisconnectAccount(request, metadata=client.metadata)

    assert first.account.status == posts_pb2.ACCOUNT_STATUS_DISCONNECTED
    assert not first.account.HasField("token_expires_at")
    assert second.account == first.account
    row = await stored(api, account.id)
    assert row.credentials is None
    assert row.status == AccountStatus.DISCONNECTED
    # Still visible, as disconnected, so that the user sees what happened to it.
    listed = await stub(client).ListAccounts(
        posts_pb2.ListAccountsRequest(status=posts_pb2.ACCOUNT_STATUS_DISCONNECTED),
        metadata=client.metadata,
    )
    assert [a.id for a in listed.accounts] == [account.id]


# --- effect on targets ----------------------------------------------------------------------


async def add_post(
    api: RunningApi,
    client: Client,
    account_id: str,
    statuses: Sequence[TargetStatus],
    post_status: PostStatus = PostStatus.SCHEDULED,
) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """A post with one target per status, each on its own account except the first on
    `account_id` and the rest on fresh accounts of the same tenant."""
    # Far ahead, so that no scheduler test sharing the session's database ever claims these.
    due = datetime.now(UTC) + timedelta(days=3650)
    account_ids = [uuid.UUID(account_id)]
    for _ in statuses[1:]:
        account_ids.append(uuid.UUID((await connect(client)).id))
    async with api.service.app.uow() as uow:
        post = Post(tenant_id=client.tenant, content="hello", status=post_status.value)
        post.targets = [
            Target(
                id=new_id(),
                tenant_id=client.tenant,
                account_id=owner,
                platform="mastodon",
                status=status.value,
                next_attempt_at=due,
                due_at=due,
                delivery_id=new_id() if status == TargetStatus.QUEUED else None,
            )
            for owner, status in zip(account_ids, statuses, strict=True)
        ]
        uow.session.add(post)
        await uow.commit()
        return post.id, [t.id for t in post.targets]


async def target_statuses(api: RunningApi, ids: Sequence[uuid.UUID]) -> list[str]:
    async with api.service.app.uow() as uow:
        rows = {t.id: t.status for t in (await uow.session.execute(select(Target))).scalars()}
    return [rows[i] for i in ids]


async def post_status(api: RunningApi, post_id: uuid.UUID) -> str:
    async with api.service.app.uow() as uow:
        post = await uow.session.get(Post, post_id)
        assert post is not None
        return post.status


@pytest.mark.parametrize(
    "status", [TargetStatus.PENDING, TargetStatus.RETRY_WAIT, TargetStatus.QUEUED]
)
async def test_disconnect_skips_targets_still_waiting_and_settles_their_post(
    api: RunningApi, client: Client, status: TargetStatus
) -> None:
    account = await connect(client)
    post_id, [target_id] = await add_post(api, client, account.id, [status])

    await stub(client).DisconnectAccount(
        posts_pb2.DisconnectAccountRequest(account_id=account.id), metadata=client.metadata
    )

    assert await target_statuses(api, [target_id]) == [TargetStatus.SKIPPED]
    # Nothing can be published any more: the post's status is derived from its targets.
    assert await post_status(api, post_id) == PostStatus.CANCELLED


async def test_disconnect_leaves_other_accounts_and_calls_under_way_alone(
    api: RunningApi, client: Client
) -> None:
    account = await connect(client)
    post_id, target_ids = await add_post(
        api,
        client,
        account.id,
        [TargetStatus.PENDING, TargetStatus.PUBLISHED, TargetStatus.PENDING],
        post_status=PostStatus.PUBLISHING,
    )
    in_flight_post, [in_flight] = await add_post(
        api, client, account.id, [TargetStatus.PUBLISHING], post_status=PostStatus.PUBLISHING
    )

    await stub(client).DisconnectAccount(
        posts_pb2.DisconnectAccountRequest(account_id=account.id), metadata=client.metadata
    )

    assert await target_statuses(api, target_ids) == [
        TargetStatus.SKIPPED,
        TargetStatus.PUBLISHED,
        TargetStatus.PENDING,
    ]
    assert await post_status(api, post_id) == PostStatus.PUBLISHING  # one target still to go
    assert await target_statuses(api, [in_flight]) == [TargetStatus.PUBLISHING]
    assert await post_status(api, in_flight_post) == PostStatus.PUBLISHING


async def test_disconnect_gives_a_publishing_post_its_final_status(
    api: RunningApi, client: Client
) -> None:
    account = await connect(client)
    post_id, _ = await add_post(
        api,
        client,
        account.id,
        [TargetStatus.RETRY_WAIT, TargetStatus.PUBLISHED],
        post_status=PostStatus.PUBLISHING,
    )

    await stub(client).DisconnectAccount(
        posts_pb2.DisconnectAccountRequest(account_id=account.id), metadata=client.metadata
    )

    assert await post_status(api, post_id) == PostStatus.PARTIALLY_PUBLISHED


async def test_pause_leaves_pending_targets_pending(api: RunningApi, client: Client) -> None:
    account = await connect(client)
    post_id, target_ids = await add_post(api, client, account.id, [TargetStatus.PENDING])

    await stub(client).PauseAccount(
        posts_pb2.PauseAccountRequest(account_id=account.id), metadata=client.metadata
    )

    assert await target_statuses(api, target_ids) == [TargetStatus.PENDING]
    assert await post_status(api, post_id) == PostStatus.SCHEDULED


# --- invalid requests -----------------------------------------------------------------------


def connect_request(
    platform: posts_pb2.Platform.ValueType, **credentials: Any
) -> posts_pb2.ConnectAccountRequest:
    return posts_pb2.ConnectAccountRequest(
        platform=platform, handle="h", credentials=posts_pb2.Credentials(**credentials)
    )


P = posts_pb2
INVALID_CONNECTS: dict[str, tuple[posts_pb2.ConnectAccountRequest, str, str]] = {
    "missing platform": (
        connect_request(P.PLATFORM_UNSPECIFIED, access_token="t"),
        "platform",
        "is required",
    ),
    "unknown platform number": (
        connect_request(P.Platform.ValueType(99), access_token="t"),
        "platform",
        "unknown platform '99'",
    ),
    "missing handle": (
        P.ConnectAccountRequest(platform=P.PLATFORM_X, credentials=VALID[P.PLATFORM_X]),
        "handle",
        "is required",
    ),
    "blank handle": (
        P.ConnectAccountRequest(
            platform=P.PLATFORM_X, handle="   ", credentials=VALID[P.PLATFORM_X]
        ),
        "handle",
        "is required",
    ),
    "handle too long": (
        P.ConnectAccountRequest(
            platform=P.PLATFORM_X, handle="h" * 301, credentials=VALID[P.PLATFORM_X]
        ),
        "handle",
        "at most 300",
    ),
    "missing token": (
        connect_request(P.PLATFORM_X, refresh_token="r"),
        "credentials.access_token",
        "is required for x",
    ),
    "no credentials at all": (
        P.ConnectAccountRequest(platform=P.PLATFORM_DISCORD, handle="h"),
        "credentials.access_token",
        "is required for discord",
    ),
    "missing instance url": (
        connect_request(P.PLATFORM_BLUESKY, access_token="t"),
        "credentials.instance_url",
        "is required for bluesky",
    ),
    "instance url not a url": (
        connect_request(P.PLATFORM_MASTODON, access_token="t", instance_url="mastodon.social"),
        "credentials.instance_url",
        "absolute URL",
    ),
    "instance url over http": (
        connect_request(P.PLATFORM_MASTODON, access_token="t", instance_url="http://m.example"),
        "credentials.instance_url",
        "must use https",
    ),
    "instance url with a query": (
        connect_request(
            P.PLATFORM_MASTODON, access_token="t", instance_url="https://m.example/?a=1"
        ),
        "credentials.instance_url",
        "without a query",
    ),
    "instance url not http at all": (
        connect_request(P.PLATFORM_MASTODON, access_token="t", instance_url="ftp://m.example"),
        "credentials.instance_url",
        "absolute URL",
    ),
    "sandbox without endpoint": (
        connect_request(P.PLATFORM_SANDBOX),
        "credentials.instance_url",
        "is required for sandbox",
    ),
    "facebook without page": (
        connect_request(P.PLATFORM_FACEBOOK, access_token="t"),
        "credentials.page_id",
        "is required for facebook",
    ),
    "instagram without user": (
        connect_request(P.PLATFORM_INSTAGRAM, access_token="t"),
        "credentials.page_id",
        "is required for instagram",
    ),
    "threads without user": (
        connect_request(P.PLATFORM_THREADS, access_token="t"),
        "credentials.page_id",
        "is required for threads",
    ),
    "linkedin without author": (
        connect_request(P.PLATFORM_LINKEDIN, access_token="t"),
        "credentials.page_id",
        "is required for linkedin",
    ),
    "linkedin author not a urn": (
        connect_request(P.PLATFORM_LINKEDIN, access_token="t", page_id="urn:li:company:1"),
        "credentials.page_id",
        "urn:li:person:<id> or urn:li:organization:<id>",
    ),
    "linkedin urn without id": (
        connect_request(P.PLATFORM_LINKEDIN, access_token="t", page_id="urn:li:person:"),
        "credentials.page_id",
        "LinkedIn author URN",
    ),
    "pinterest without board": (
        connect_request(P.PLATFORM_PINTEREST, access_token="t"),
        "credentials.page_id",
        "is required for pinterest (the id of the board pins are saved to",
    ),
    "pinterest board not an id": (
        connect_request(P.PLATFORM_PINTEREST, access_token="t", page_id="kairos/recipes"),
        "credentials.page_id",
        "must be a Pinterest board id: digits only",
    ),
    "telegram without chat": (
        connect_request(P.PLATFORM_TELEGRAM, access_token="t"),
        "credentials.chat_id",
        "is required for telegram",
    ),
    "telegram chat malformed": (
        connect_request(P.PLATFORM_TELEGRAM, access_token="t", chat_id="my chat"),
        "credentials.chat_id",
        "numeric Telegram chat id",
    ),
    "discord token not a webhook url": (
        connect_request(P.PLATFORM_DISCORD, access_token="abc.def"),
        "credentials.access_token",
        "Discord webhook URL",
    ),
    "discord webhook url of another path": (
        connect_request(P.PLATFORM_DISCORD, access_token="https://discord.com/channels/1/2"),
        "credentials.access_token",
        "Discord webhook URL",
    ),
    "discord extra webhook_url over http": (
        connect_request(
            P.PLATFORM_DISCORD,
            access_token="t",
            extra={"webhook_url": "http://discord.com/api/webhooks/1/abc"},
        ),
        "credentials.extra.webhook_url",
        "Discord webhook URL",
    ),
    "slack without channel": (
        connect_request(P.PLATFORM_SLACK, access_token="t"),
        "credentials.chat_id",
        "is required for slack",
    ),
    "webhook without url": (
        connect_request(P.PLATFORM_WEBHOOK, extra={"signing_secret": "s"}),
        "credentials.extra.url",
        "is required for webhook",
    ),
    "webhook url relative": (
        connect_request(P.PLATFORM_WEBHOOK, extra={"url": "/hooks/kairos", "signing_secret": "s"}),
        "credentials.extra.url",
        "absolute URL",
    ),
    "webhook without signing secret": (
        connect_request(P.PLATFORM_WEBHOOK, extra={"url": "https://h.example"}),
        "credentials.extra.signing_secret",
        "is required for webhook",
    ),
    "webhook empty signing secret": (
        connect_request(
            P.PLATFORM_WEBHOOK, extra={"url": "https://h.example", "signing_secret": " "}
        ),
        "credentials.extra.signing_secret",
        "is required for webhook",
    ),
    "expiry out of range": (
        P.ConnectAccountRequest(
            platform=P.PLATFORM_X,
            handle="h",
            credentials=P.Credentials(access_token="t", expires_at=Timestamp(seconds=10**13)),
        ),
        "credentials.expires_at",
        "valid timestamp",
    ),
}


@pytest.mark.parametrize(
    ("request_", "field", "rule"), INVALID_CONNECTS.values(), ids=INVALID_CONNECTS.keys()
)
async def test_invalid_connect_names_the_field_and_rule_and_writes_nothing(
    client: Client, request_: posts_pb2.ConnectAccountRequest, field: str, rule: str
) -> None:
    error = await rpc_error(stub(client).ConnectAccount(request_, metadata=client.metadata))

    assert error.code() == Code.INVALID_ARGUMENT
    violations = violations_of(error)
    assert [f for f, _ in violations] == [field], violations
    assert rule in violations[0][1]
    listed = await stub(client).ListAccounts(P.ListAccountsRequest(), metadata=client.metadata)
    assert list(listed.accounts) == []


async def test_every_broken_rule_is_reported_at_once(client: Client) -> None:
    error = await rpc_error(
        stub(client).ConnectAccount(
            P.ConnectAccountRequest(platform=P.PLATFORM_TELEGRAM), metadata=client.metadata
        )
    )

    assert error.code() == Code.INVALID_ARGUMENT
    assert {f for f, _ in violations_of(error)} == {
        "handle",
        "credentials.access_token",
        "credentials.chat_id",
    }


async def test_violations_never_echo_a_secret_value(client: Client) -> None:
    hook = "https://user:" + secret("webhook") + "@hooks.example/x"
    error = await rpc_error(
        stub(client).ConnectAccount(
            connect_request(P.PLATFORM_WEBHOOK, extra={"url": hook, "signing_secret": "s"}),
            metadata=client.metadata,
        )
    )

    assert violations_of(error) == [
        ("credentials.extra.url", "must not contain a user name or password")
    ]
    assert hook not in str(error.details())


async def test_http_instance_urls_are_accepted_when_development_allows_them(
    api: RunningApi, client: Client
) -> None:
    app = api.service.app
    development = replace(app, settings=replace(app.settings, allow_http_media=True))
    command = accounts.ConnectAccount(
        platform="mastodon",
        handle="local",
        credentials=accounts.Credentials(access_token="t", instance_url="http://127.0.0.1:9"),
    )

    account = await accounts.connect_account(development, client.tenant, command)

    assert account.status == AccountStatus.ACTIVE


@pytest.mark.parametrize(
    ("request_", "field", "rule"),
    [
        (P.ListAccountsRequest(platform=P.Platform.ValueType(77)), "platform", "unknown platform"),
        (
            P.ListAccountsRequest(status=P.AccountStatus.ValueType(42)),
            "status",
            "unknown account status",
        ),
    ],
    ids=["platform", "status"],
)
async def test_list_with_an_unknown_filter_is_invalid(
    client: Client, request_: posts_pb2.ListAccountsRequest, field: str, rule: str
) -> None:
    error = await rpc_error(stub(client).ListAccounts(request_, metadata=client.metadata))

    assert error.code() == Code.INVALID_ARGUMENT
    [(name, description)] = violations_of(error)
    assert name == field
    assert rule in description


def by_id_calls(stub_: Stub, account_id: str) -> dict[str, Any]:
    """Every RPC that takes an account id, ready to call with `metadata=`."""
    return {
        "get": lambda m: stub_.GetAccount(P.GetAccountRequest(account_id=account_id), metadata=m),
        "update": lambda m: stub_.UpdateAccountCredentials(
            P.UpdateAccountCredentialsRequest(
                account_id=account_id, credentials=mastodon_credentials()
            ),
            metadata=m,
        ),
        "pause": lambda m: stub_.PauseAccount(
            P.PauseAccountRequest(account_id=account_id), metadata=m
        ),
        "resume": lambda m: stub_.ResumeAccount(
            P.ResumeAccountRequest(account_id=account_id), metadata=m
        ),
        "disconnect": lambda m: stub_.DisconnectAccount(
            P.DisconnectAccountRequest(account_id=account_id), metadata=m
        ),
    }


#: by_id_calls' names of the AccountsService RPCs that take an account id.
RPC_NAMES = {
    "get": "GetAccount",
    "update": "UpdateAccountCredentials",
    "pause": "PauseAccount",
    "resume": "ResumeAccount",
    "disconnect": "DisconnectAccount",
}
RPCS = list(RPC_NAMES)


async def test_every_rpc_that_takes_an_account_id_has_a_case(client: Client) -> None:
    """A new AccountsService RPC on an account id fails here until by_id_calls covers it."""
    service = P.DESCRIPTOR.services_by_name["AccountsService"]
    taking_an_id = {m.name for m in service.methods if "account_id" in m.input_type.fields_by_name}
    assert taking_an_id == set(RPC_NAMES.values())
    assert set(by_id_calls(stub(client), "x")) == set(RPC_NAMES)


@pytest.mark.parametrize("rpc", RPCS)
@pytest.mark.parametrize("bad_id", ["", "not-a-uuid", "12345"])
async def test_a_malformed_account_id_is_invalid(client: Client, rpc: str, bad_id: str) -> None:
    error = await rpc_error(by_id_calls(stub(client), bad_id)[rpc](client.metadata))

    assert error.code() == Code.INVALID_ARGUMENT
    assert [f for f, _ in violations_of(error)] == ["account_id"]


@pytest.mark.parametrize("rpc", RPCS)
async def test_an_unknown_account_is_not_found(client: Client, rpc: str) -> None:
    missing = str(uuid.uuid4())

    error = await rpc_error(by_id_calls(stub(client), missing)[rpc](client.metadata))

    assert error.code() == Code.NOT_FOUND
    assert error.details() == f"account {missing} not found"


@pytest.mark.parametrize("rpc", ["update", "pause", "resume"])
async def test_a_disconnected_account_cannot_be_changed(client: Client, rpc: str) -> None:
    account = await connect(client)
    await stub(client).DisconnectAccount(
        P.DisconnectAccountRequest(account_id=account.id), metadata=client.metadata
    )

    error = await rpc_error(by_id_calls(stub(client), account.id)[rpc](client.metadata))

    assert error.code() == Code.FAILED_PRECONDITION
    assert "disconnected" in (error.details() or "")


async def test_update_with_credentials_the_platform_refuses_keeps_the_old_ones(
    api: RunningApi, client: Client
) -> None:
    access = secret("access")
    account = await connect(client, mastodon(access_token=access))

    error = await rpc_error(
        stub(client).UpdateAccountCredentials(
            P.UpdateAccountCredentialsRequest(
                account_id=account.id,
                credentials=P.Credentials(access_token="new", instance_url="http://insecure"),
            ),
            metadata=client.metadata,
        )
    )

    assert error.code() == Code.INVALID_ARGUMENT
    assert [f for f, _ in violations_of(error)] == ["credentials.instance_url"]
    assert (await stored_credentials(api, account.id))["access_token"] == access


async def test_webhook_credentials_without_a_signing_secret_are_refused_on_update(
    api: RunningApi, client: Client
) -> None:
    """Every webhook call is signed: replacing the credentials cannot drop the secret."""
    signing = secret("signing")
    account = await connect(
        client,
        connect_request(
            P.PLATFORM_WEBHOOK, extra={"url": "https://hooks.example/k", "signing_secret": signing}
        ),
    )

    error = await rpc_error(
        stub(client).UpdateAccountCredentials(
            P.UpdateAccountCredentialsRequest(
                account_id=account.id,
                credentials=P.Credentials(extra={"url": "https://hooks.example/new"}),
            ),
            metadata=client.metadata,
        )
    )

    assert error.code() == Code.INVALID_ARGUMENT
    assert violations_of(error) == [
        ("credentials.extra.signing_secret", "is required for webhook (the HMAC key)")
    ]
    kept = await stored_credentials(api, account.id)
    assert kept["extra"] == {"url": "https://hooks.example/k", "signing_secret": signing}


# --- authentication and tenants --------------------------------------------------------------


@pytest.mark.parametrize(
    "metadata",
    [
        (),
        (("authorization", "Bearer kairos_not-a-real-key"),),
        (("authorization", "Basic dXNlcjpwYXNz"),),
        (("authorization", "Bearer "),),
    ],
    ids=["missing", "unknown key", "wrong scheme", "empty key"],
)
async def test_calls_without_a_valid_key_are_unauthenticated(
    client: Client, metadata: tuple[tuple[str, str], ...]
) -> None:
    accounts_stub = stub(client)
    account = await connect(client)

    for call in [
        accounts_stub.ConnectAccount(mastodon(), metadata=metadata),
        accounts_stub.ListAccounts(P.ListAccountsRequest(), metadata=metadata),
        *(make(metadata) for make in by_id_calls(accounts_stub, account.id).values()),
    ]:
        error = await rpc_error(call)
        assert error.code() == Code.UNAUTHENTICATED

    listed = await accounts_stub.ListAccounts(P.ListAccountsRequest(), metadata=client.metadata)
    assert [a.status for a in listed.accounts] == [P.ACCOUNT_STATUS_ACTIVE]  # untouched


async def test_a_revoked_key_is_refused(api: RunningApi, client: Client) -> None:
    await connect(client)  # the key works
    await keys.revoke_key(api.service.app.uow(), client.key)
    api.service.app.keys.forget()

    error = await rpc_error(
        stub(client).ConnectAccount(mastodon(handle="after revoke"), metadata=client.metadata)
    )

    assert error.code() == Code.UNAUTHENTICATED
    async with api.service.app.uow() as uow:
        handles = (
            await uow.session.execute(
                select(Account.handle).where(Account.tenant_id == client.tenant)
            )
        ).scalars()
        assert "after revoke" not in list(handles)


@pytest.fixture
async def other(api: RunningApi) -> AsyncIterator[Client]:
    """A second tenant."""
    async with api.client() as tenant_client:
        yield tenant_client


async def test_another_tenants_account_is_not_found(
    api: RunningApi, client: Client, other: Client
) -> None:
    access = secret("access")
    account = await connect(client, mastodon(access_token=access))
    theirs = stub(other)

    for rpc, call in by_id_calls(theirs, account.id).items():
        error = await rpc_error(call(other.metadata))
        assert error.code() == Code.NOT_FOUND, rpc
        assert error.details() == f"account {account.id} not found"
    listed = await theirs.ListAccounts(P.ListAccountsRequest(), metadata=other.metadata)
    assert list(listed.accounts) == []

    mine = await stub(client).GetAccount(
        P.GetAccountRequest(account_id=account.id), metadata=client.metadata
    )
    assert mine.account == account  # neither paused, disconnected nor re-credentialed
    assert (await stored_credentials(api, account.id))["access_token"] == access


# --- credentials at rest and in logs ---------------------------------------------------------


def table_bytes(api: RunningApi) -> bytes:
    """Every byte the database holds for the accounts table, as stored."""
    url = api.service.settings.common.database_url
    if database.is_sqlite(url):
        path = Path(database.sync_url(url).database or "")
        files = [path, path.with_name(path.name + "-wal")]
        return b"".join(f.read_bytes() for f in files if f.exists())
    chunks: list[bytes] = []
    with psycopg.connect(url) as conn:
        for row in conn.execute("SELECT * FROM accounts"):
            for value in row:
                if isinstance(value, bytes | memoryview):
                    chunks.append(bytes(value))
                else:
                    chunks.append(str(value).encode())
    return b"\n".join(chunks)


async def test_credentials_are_never_stored_or_logged_in_clear(
    api: RunningApi, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = [secret("access"), secret("refresh"), secret("access2"), secret("refresh2")]
    handle = f"visible-{uuid.uuid4().hex}"

    account = await connect(
        client, mastodon(handle=handle, access_token=tokens[0], refresh_token=tokens[1])
    )
    await stub(client).UpdateAccountCredentials(
        P.UpdateAccountCredentialsRequest(
            account_id=account.id,
            credentials=mastodon_credentials(access_token=tokens[2], refresh_token=tokens[3]),
        ),
        metadata=client.metadata,
    )

    raw = table_bytes(api)
    assert handle.encode() in raw  # the scan does see what is stored in clear
    logged = caplog.text + "\n".join(str(r.__dict__) for r in caplog.records)
    assert "account connected" in logged  # and the logs were captured
    for token in tokens:
        assert token.encode() not in raw
        assert token not in logged
    assert (await stored_credentials(api, account.id))["access_token"] == tokens[2]


# --- key rotation ----------------------------------------------------------------------------
# Re-encryption rewrites every account of a database, so these tests use a database of their own
# rather than the session's, which other tests' accounts share.

NEW_SECRET = "rotated-secret-with-more-than-32-characters"


@pytest.fixture(params=["postgresql", "sqlite"])
def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'rotation.db'}"
        return
    fresh = TestDatabase()
    fresh.create()
    try:
        yield fresh.url
    finally:
        fresh.drop()


@pytest.fixture
async def old_app(fresh_database_url: str) -> AsyncIterator[Application]:
    """An application on the fresh database, encrypting under the test key."""
    await asyncio.to_thread(database.migrate, fresh_database_url)
    app = bootstrap(api_settings(fresh_database_url))
    yield app
    await app.close()


@asynccontextmanager
async def app_with_secret(old_app: Application, secret_key: str) -> AsyncIterator[Application]:
    settings = old_app.settings
    app = bootstrap(replace(settings, common=replace(settings.common, secret_key=secret_key)))
    try:
        yield app
    finally:
        await app.close()


async def connect_x(app: Application, access_token: str) -> Account:
    return await accounts.connect_account(
        app,
        "rotation",
        accounts.ConnectAccount(
            platform="x", handle="@x", credentials=accounts.Credentials(access_token=access_token)
        ),
    )


async def reload(app: Application, account: Account) -> Account:
    async with app.uow() as uow:
        row = await uow.session.get(Account, account.id)
    assert row is not None
    return row


async def test_reencrypt_moves_credentials_to_the_new_key(old_app: Application) -> None:
    first, second = await connect_x(old_app, "first-token"), await connect_x(old_app, "second")
    gone = await connect_x(old_app, "forgotten")
    await accounts.disconnect_account(old_app, "rotation", accounts.DisconnectAccount(str(gone.id)))

    async with (
        app_with_secret(old_app, f"{NEW_SECRET},{TEST_SECRET}") as rotating,
        app_with_secret(old_app, NEW_SECRET) as new_only,
    ):
        rotated = (await rotation.credentials(rotating)).count
        again = (await rotation.credentials(rotating)).count

        assert rotated == 2  # the disconnected account has nothing to re-encrypt
        assert again == 0  # everything is already under the new key
        rows = [await reload(old_app, first), await reload(old_app, second)]
        assert [accounts.decrypt_credentials(new_only, r)["access_token"] for r in rows] == [
            "first-token",
            "second",
        ]
        for row in rows:
            with pytest.raises(CredentialDecryptError):
                accounts.decrypt_credentials(old_app, row)  # the old key alone no longer can


async def test_reencrypt_reports_credentials_it_cannot_decrypt(old_app: Application) -> None:
    account = await connect_x(old_app, "kept-token")

    async with app_with_secret(old_app, NEW_SECRET) as stranger:  # lacks the key they are under
        done = await rotation.credentials(stranger)

    assert done.count == 0
    [failure] = [f for f in done.failures if f.startswith(f"account {account.id}:")]
    assert "not in KAIROS_SECRET_KEY" in failure
    assert "kept-token" not in failure
    row = await reload(old_app, account)
    assert accounts.decrypt_credentials(old_app, row)["access_token"] == "kept-token"  # untouched
