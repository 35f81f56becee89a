"""Re-encrypting what is stored under an older KAIROS_SECRET_KEY key: account credentials and
webhook signing secrets, each bound to its row's id.

Rows are read in batches by id and each is written back only if it still holds the token that
was read, so a value replaced meanwhile (new credentials, a rotated secret) is never overwritten
with the old one. A token that cannot be decrypted does not stop the others, nor the other kind:
the failures are named together at the end (the run can be repeated once the key is put back).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import select, update
from sqlalchemy.orm import InstrumentedAttribute

from kairos_api.adapters.crypto import CredentialDecryptError
from kairos_api.adapters.orm import Account, Webhook
from kairos_common import errors

if TYPE_CHECKING:
    from kairos_api.service_layer.application import Application

log = logging.getLogger(__name__)

#: Rows read per round.
BATCH: Final = 200


@dataclass
class Reencrypted:
    """What one kind's run did: how many were re-encrypted, and which could not be, and why."""

    count: int = 0
    failures: list[str] = field(default_factory=list)


async def credentials(app: Application) -> Reencrypted:
    """Re-encrypt the accounts' credentials not under the current key."""
    return await _column(
        app,
        Account.id,
        Account.credentials,
        associated=str,
        named=lambda i: f"account {i}",
        noun="credentials",
    )


async def webhook_secrets(app: Application) -> Reencrypted:
    """Re-encrypt the webhooks' signing secrets not under the current key."""
    return await _column(
        app,
        Webhook.id,
        Webhook.secret,
        associated=lambda i: f"webhook:{i}",
        named=lambda i: f"webhook {i}",
        noun="webhook secrets",
    )


async def everything(app: Application) -> tuple[int, int]:
    """Re-encrypt credentials, then webhook secrets, whatever failed among the credentials;
    (credentials, secrets) re-encrypted, or `FailedPrecondition` naming every failure of both."""
    accounts, hooks = await credentials(app), await webhook_secrets(app)
    failures = accounts.failures + hooks.failures
    if failures:
        raise errors.FailedPrecondition(
            f"re-encrypted {accounts.count} credentials and {hooks.count} webhook secrets; "
            f"{len(failures)} could not be: " + "; ".join(failures)
        )
    return accounts.count, hooks.count


async def _column(
    app: Application,
    key: InstrumentedAttribute[uuid.UUID],
    column: InstrumentedAttribute[Any],
    *,
    associated: Callable[[uuid.UUID], str],
    named: Callable[[uuid.UUID], str],
    noun: str,
) -> Reencrypted:
    done = Reencrypted()
    after: uuid.UUID | None = None
    while True:
        async with app.uow() as uow:
            query = select(key, column).where(column.is_not(None)).order_by(key).limit(BATCH)
            if after is not None:
                query = query.where(key > after)
            rows = (await uow.session.execute(query)).all()
            if not rows:
                break
            for row_id, token in rows:
                after = row_id
                try:
                    if not app.cipher.needs_rotation(token):
                        continue
                    fresh = app.cipher.reencrypt(token, associated=associated(row_id))
                except CredentialDecryptError as error:
                    done.failures.append(f"{named(row_id)}: {error.message}")
                    continue
                result = await uow.session.execute(
                    update(key.class_)
                    .where(key == row_id, column == token)
                    .values({column: fresh})
                    .execution_options(synchronize_session=False)
                )
                done.count += _rowcount(result)
            await uow.commit()
    log.info(
        "%s re-encrypted",
        noun,
        extra={
            "count": done.count,
            "failed": len(done.failures),
            "key_id": app.cipher.current_key_id,
        },
    )
    return done


def _rowcount(result: Any) -> int:
    count = getattr(result, "rowcount", 0)
    return int(count) if isinstance(count, int) and count > 0 else 0
