"""The composition root: builds the engine, the cipher and the use cases' dependencies once
(the `Application`); the api process adds the servicers and the relay (`kairos_api.service`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from kairos_api.adapters import database
from kairos_api.adapters.crypto import MIN_SECRET_LENGTH, SETTING, CredentialCipher
from kairos_api.adapters.reads import ReadConnections
from kairos_api.service_layer.application import Application, utc_now
from kairos_api.service_layer.keys import KeyResolver
from kairos_api.service_layer.unit_of_work import UnitOfWork
from kairos_api.settings import ApiSettings
from kairos_common.settings import SECRET_HINT, SettingsError, is_public_secret
from kairos_media.settings import open_store


def load_cipher(secret: str, *, development: bool = False) -> CredentialCipher:
    """The cipher of KAIROS_SECRET_KEY; outside development its current (first) key may not be
    one published in this repository. Older keys may be, so that credentials stored under a
    placeholder can still be re-encrypted under a real key."""
    try:
        cipher = CredentialCipher.from_secret(secret)
    except ValueError as error:
        raise SettingsError(str(error)) from None
    if not development and is_public_secret(secret.split(",")[0].strip()):
        raise SettingsError(
            f"the first key of {SETTING} is a publicly known placeholder; outside development "
            f"set a random secret of at least {MIN_SECRET_LENGTH} characters first ({SECRET_HINT})"
        )
    return cipher


def bootstrap(settings: ApiSettings, *, clock: Callable[[], datetime] = utc_now) -> Application:
    """Build the application; connects lazily (the first query opens the pool)."""
    cipher = load_cipher(settings.common.secret_key, development=settings.common.development)
    engine = database.create_engine(settings.common.database_url)
    sessions = database.session_factory(engine)
    keys = KeyResolver(lambda: UnitOfWork(sessions))
    url = settings.common.database_url
    reads = None if database.is_sqlite(url) else ReadConnections.of(url)
    media = open_store(settings.media)
    return Application(settings, engine, sessions, cipher, keys, media, clock, reads=reads)
