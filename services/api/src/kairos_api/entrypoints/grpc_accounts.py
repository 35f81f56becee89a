"""gRPC servicer of kairos.posts.v1.AccountsService: translates requests to handler calls.

Each method authenticates the tenant, turns the request into a command, calls its handler in
`service_layer.accounts` and wraps the returned row with `convert.account_to_proto`, which never
includes credentials. Domain errors raised on the way are mapped to status codes by the server's
error interceptor.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import grpc

from kairos.posts.v1 import posts_pb2, posts_pb2_grpc
from kairos_api.adapters import convert
from kairos_api.entrypoints.auth import Authenticator
from kairos_api.service_layer import accounts
from kairos_api.service_layer.application import Application

Context = grpc.aio.ServicerContext[Any, Any]


class AccountsServicer(posts_pb2_grpc.AccountsServiceServicer):
    """The public accounts API of one tenant per call."""

    def __init__(self, app: Application, auth: Authenticator) -> None:
        self.app = app
        self.auth = auth

    async def ConnectAccount(
        self, request: posts_pb2.ConnectAccountRequest, context: Context
    ) -> posts_pb2.ConnectAccountResponse:
        tenant = await self.auth.tenant(context)
        command = accounts.ConnectAccount(
            platform=_platform_name(request.platform),
            handle=request.handle,
            credentials=_credentials(request.credentials),
        )
        account = await accounts.connect_account(self.app, tenant, command)
        return posts_pb2.ConnectAccountResponse(account=convert.account_to_proto(account))

    async def ListAccounts(
        self, request: posts_pb2.ListAccountsRequest, context: Context
    ) -> posts_pb2.ListAccountsResponse:
        tenant = await self.auth.tenant(context)
        command = accounts.ListAccounts(
            platform=_platform_name(request.platform), status=_status_name(request.status)
        )
        rows = await accounts.list_accounts(self.app, tenant, command)
        return posts_pb2.ListAccountsResponse(
            accounts=[convert.account_to_proto(row) for row in rows]
        )

    async def GetAccount(
        self, request: posts_pb2.GetAccountRequest, context: Context
    ) -> posts_pb2.GetAccountResponse:
        tenant = await self.auth.tenant(context)
        account = await accounts.get_account(
            self.app, tenant, accounts.GetAccount(request.account_id)
        )
        return posts_pb2.GetAccountResponse(account=convert.account_to_proto(account))

    async def UpdateAccountCredentials(
        self, request: posts_pb2.UpdateAccountCredentialsRequest, context: Context
    ) -> posts_pb2.UpdateAccountCredentialsResponse:
        tenant = await self.auth.tenant(context)
        command = accounts.UpdateAccountCredentials(
            account_id=request.account_id, credentials=_credentials(request.credentials)
        )
        account = await accounts.update_account_credentials(self.app, tenant, command)
        return posts_pb2.UpdateAccountCredentialsResponse(account=convert.account_to_proto(account))

    async def PauseAccount(
        self, request: posts_pb2.PauseAccountRequest, context: Context
    ) -> posts_pb2.PauseAccountResponse:
        tenant = await self.auth.tenant(context)
        account = await accounts.pause_account(
            self.app, tenant, accounts.PauseAccount(request.account_id)
        )
        return posts_pb2.PauseAccountResponse(account=convert.account_to_proto(account))

    async def ResumeAccount(
        self, request: posts_pb2.ResumeAccountRequest, context: Context
    ) -> posts_pb2.ResumeAccountResponse:
        tenant = await self.auth.tenant(context)
        account = await accounts.resume_account(
            self.app, tenant, accounts.ResumeAccount(request.account_id)
        )
        return posts_pb2.ResumeAccountResponse(account=convert.account_to_proto(account))

    async def DisconnectAccount(
        self, request: posts_pb2.DisconnectAccountRequest, context: Context
    ) -> posts_pb2.DisconnectAccountResponse:
        tenant = await self.auth.tenant(context)
        account = await accounts.disconnect_account(
            self.app, tenant, accounts.DisconnectAccount(request.account_id)
        )
        return posts_pb2.DisconnectAccountResponse(account=convert.account_to_proto(account))


def _platform_name(value: int) -> str:
    """The platform's name; "" when unset; the bare number when this build does not know it, so
    the handler can report it as unknown."""
    if value == posts_pb2.PLATFORM_UNSPECIFIED:
        return ""
    platform = convert.platform_from_proto(value)
    return platform.value if platform is not None else str(value)


def _status_name(value: int) -> str:
    if value == posts_pb2.ACCOUNT_STATUS_UNSPECIFIED:
        return ""
    status = convert.account_status_from_proto(value)
    return status.value if status is not None else str(value)


def _credentials(message: posts_pb2.Credentials) -> accounts.Credentials:
    return accounts.Credentials(
        access_token=message.access_token,
        refresh_token=message.refresh_token,
        expires_at=_expires_at(message),
        instance_url=message.instance_url,
        page_id=message.page_id,
        chat_id=message.chat_id,
        extra=dict(message.extra),
    )


def _expires_at(message: posts_pb2.Credentials) -> datetime | None:
    if not message.HasField("expires_at"):
        return None
    return convert.from_timestamp(message.expires_at, "credentials.expires_at")
