"""Where media is kept, read from the environment at start-up, and the store built from it.

`KAIROS_MEDIA_STORE` names the store as a URL:

- `file:///var/lib/kairos/media` (or the bare absolute path): a folder on this machine. The
  default is `$XDG_DATA_HOME/kairos/media` (`~/.local/share/kairos/media`), which the api and the
  publisher of one machine share, as under `make dev`.
- `s3://bucket/prefix`: objects in a bucket of an S3-compatible store, under an optional prefix,
  reached at `KAIROS_S3_ENDPOINT_URL` (unset: AWS S3) in `KAIROS_S3_REGION` (default us-east-1),
  with the credentials in `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (and
  `AWS_SESSION_TOKEN`), or in the files that `AWS_ACCESS_KEY_ID_FILE` ... name (Docker and
  Kubernetes secrets). Without static credentials the client looks for them as AWS SDKs do
  (instance profile, web identity token).

A value that cannot work fails here, at start-up, with a message naming the variable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from kairos_common.errors import InvalidArgument
from kairos_common.settings import Env, SettingsError
from kairos_media.filesystem import FileStore
from kairos_media.location import S3Location
from kairos_media.store import MediaStore, check_key

STORE = "KAIROS_MEDIA_STORE"
ENDPOINT_URL = "KAIROS_S3_ENDPOINT_URL"
REGION = "KAIROS_S3_REGION"
ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"
SESSION_TOKEN = "AWS_SESSION_TOKEN"

_EXAMPLES = "use file:///absolute/folder or s3://bucket/prefix"
#: S3's rule for bucket names (the strictest of the S3-compatible stores').
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_REGION = re.compile(r"[a-z0-9-]{1,64}")


@dataclass(frozen=True)
class MediaSettings:
    """Where media is kept: a folder on this machine, or an S3 bucket."""

    #: The filesystem store's root folder, or the S3 bucket and how to reach it.
    store: Path | S3Location


def default_root(environ: Mapping[str, str]) -> Path:
    """`$XDG_DATA_HOME/kairos/media`, or `~/.local/share/kairos/media` without it."""
    data_home = environ.get("XDG_DATA_HOME", "").strip()
    base = Path(data_home) if data_home else Path.home() / ".local" / "share"
    return base / "kairos" / "media"


def media_settings(environ: Mapping[str, str] | None = None) -> MediaSettings:
    """The media settings from `environ` (default: this process's environment)."""
    environ = os.environ if environ is None else environ
    env = Env(environ)
    value = env.text(STORE, "")
    if not value:
        return MediaSettings(store=default_root(environ))
    if "://" not in value:
        if not value.startswith("/"):
            raise SettingsError(f"{STORE}={value[:80]!r} is not an absolute path; {_EXAMPLES}")
        return MediaSettings(store=Path(value))
    url = urlsplit(value)
    if url.scheme == "file":
        return MediaSettings(store=_file_root(value, url.netloc, url.path))
    if url.scheme == "s3":
        return MediaSettings(store=_s3_location(env, environ, value))
    raise SettingsError(f"{STORE}={value[:80]!r} names no store Kairos knows; {_EXAMPLES}")


def open_store(settings: MediaSettings) -> MediaStore:
    """The store the settings name; it connects to nothing until it is first used."""
    if isinstance(settings.store, Path):
        return FileStore(settings.store)
    from kairos_media.s3 import S3MediaStore  # boto3 only where it is used

    return S3MediaStore(settings.store)


def _file_root(value: str, host: str, path: str) -> Path:
    if host not in ("", "localhost"):
        raise SettingsError(
            f"{STORE}={value[:80]!r} names host {host!r}; a file store is a folder on this "
            "machine: file:///absolute/folder"
        )
    if not path.startswith("/") or path == "/":
        raise SettingsError(f"{STORE}={value[:80]!r} names no folder; {_EXAMPLES}")
    return Path(unquote(path))


def _s3_location(env: Env, environ: Mapping[str, str], value: str) -> S3Location:
    url = urlsplit(value)
    if "@" in url.netloc:
        raise SettingsError(
            f"{STORE} holds credentials; put them in {ACCESS_KEY_ID} and {SECRET_ACCESS_KEY} "
            f"(or {ACCESS_KEY_ID}_FILE and {SECRET_ACCESS_KEY}_FILE) instead"
        )
    if url.query or url.fragment:
        raise SettingsError(f"{STORE}={value[:80]!r}: an s3:// URL takes no '?' or '#' part")
    if not _BUCKET.fullmatch(url.netloc):
        raise SettingsError(
            f"{STORE}={value[:80]!r} names no valid bucket (3-63 lowercase letters, digits, "
            "'.' and '-'): s3://bucket/prefix"
        )
    prefix = url.path.strip("/")
    if prefix:
        try:
            check_key(prefix)
        except InvalidArgument as error:
            raise SettingsError(f"{STORE}: the prefix {error.message}") from None
    region = env.text(REGION, "us-east-1")
    if not _REGION.fullmatch(region):
        raise SettingsError(f"{REGION}={region[:40]!r} is not a region name such as eu-west-1")
    access_key_id = _secret(environ, ACCESS_KEY_ID)
    secret_access_key = _secret(environ, SECRET_ACCESS_KEY)
    if (access_key_id is None) != (secret_access_key is None):
        missing = SECRET_ACCESS_KEY if secret_access_key is None else ACCESS_KEY_ID
        raise SettingsError(
            f"{missing} (or {missing}_FILE) is unset while its partner is set; set both, or "
            "neither to use the instance's own credentials"
        )
    return S3Location(
        bucket=url.netloc,
        prefix=prefix,
        endpoint_url=_endpoint_url(env),
        region=region,
        access_key_id=access_key_id,
        secret_access_key=secret_access_key,
        session_token=_secret(environ, SESSION_TOKEN),
    )


def _endpoint_url(env: Env) -> str | None:
    value = env.text(ENDPOINT_URL, "")
    if not value:
        return None
    url = urlsplit(value)
    try:
        port = url.port
    except ValueError:
        raise SettingsError(f"{ENDPOINT_URL}={value[:80]!r} has no valid port (1-65535)") from None
    if url.scheme not in ("http", "https") or not url.hostname or port == 0:
        raise SettingsError(
            f"{ENDPOINT_URL}={value[:80]!r} is not an http(s) URL such as https://minio:9000"
        )
    if url.path not in ("", "/") or url.query or url.fragment or url.username:
        raise SettingsError(
            f"{ENDPOINT_URL}={value[:80]!r} must be the store's address alone, without a path, "
            "query or credentials (the bucket goes in KAIROS_MEDIA_STORE)"
        )
    return value.rstrip("/")


def _secret(environ: Mapping[str, str], name: str) -> str | None:
    """The value of `name`, or the contents of the file `name`_FILE names; None when neither is
    set. Setting both is refused: one of them would be silently ignored."""
    value = environ.get(name, "").strip()
    file_name = environ.get(f"{name}_FILE", "").strip()
    if value and file_name:
        raise SettingsError(f"{name} and {name}_FILE are both set; keep one")
    if not file_name:
        return value or None
    try:
        contents = Path(file_name).read_text().strip()
    except OSError as error:
        raise SettingsError(
            f"{name}_FILE={file_name[:200]!r} cannot be read: {error.strerror}"
        ) from None
    if not contents:
        raise SettingsError(f"{name}_FILE={file_name[:200]!r} is empty")
    return contents
