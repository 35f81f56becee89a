"""Tokens a publisher refreshed, saved before they are used."""

from __future__ import annotations

import uuid
from datetime import datetime

from kairos_api.adapters.crypto import CredentialDecryptError
from kairos_api.adapters.orm import Account
from kairos_api.domain.model import AccountStatus
from kairos_api.service_layer.accounts import (
    StoredCredentials,
    decrypt_credentials,
    encrypt_stored,
)
from kairos_api.service_layer.application import Application
from kairos_common import errors


async def save_refreshed_credentials(
    app: Application,
    account_id: str,
    credentials: StoredCredentials | None,
    *,
    needs_reauth: bool,
    reason: str,
    failed_refresh_token: str = "",
) -> tuple[AccountStatus, StoredCredentials | None]:
    """Store tokens a publisher refreshed, or mark the account NEEDS_REAUTH when refresh failed.

    A refresh can fail because another publisher copy used the same single-use refresh token a
    moment earlier; then the stored refresh token is no longer `failed_refresh_token`, the
    account is left alone, and its current credentials are returned for the caller to use.
    """
    try:
        ident = uuid.UUID(account_id)
    except ValueError:
        raise errors.InvalidArgument.of("account_id", "is not a valid id") from None
    now = app.clock()
    async with app.uow() as uow:
        account = await uow.session.get(Account, ident, with_for_update=True)
        if account is None:
            raise errors.NotFound(f"account {account_id} not found")
        if account.status == AccountStatus.DISCONNECTED:
            raise errors.FailedPrecondition(f"account {account_id} is disconnected")
        if needs_reauth and failed_refresh_token:
            try:
                stored = decrypt_credentials(app, account)
            except CredentialDecryptError:
                stored = None
            if stored is not None and stored["refresh_token"] != failed_refresh_token:
                return AccountStatus(account.status), stored
        if needs_reauth:
            if account.status != AccountStatus.NEEDS_REAUTH:
                account.status = AccountStatus.NEEDS_REAUTH
                account.status_reason = reason[:1000]
                uow.emit_account("needs_reauth", account, detail=reason)
        else:
            assert credentials is not None
            account.credentials = encrypt_stored(app, account.id, credentials)
            expires = credentials.get("expires_at")
            account.token_expires_at = datetime.fromisoformat(expires) if expires else None
            if account.status == AccountStatus.NEEDS_REAUTH:
                account.status = AccountStatus.ACTIVE
        account.updated_at = now
        await uow.commit()
        return AccountStatus(account.status), None
