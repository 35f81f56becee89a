"""`make up` runs this first: the secrets docker-compose.yml requires, kept in `.env` beside it.

    python scripts/compose_secrets.py [ENV_FILE]     (default: .env at the repository root)

docker compose reads `.env` beside docker-compose.yml, and the compose file ships no value for
KAIROS_SECRET_KEY, KAIROS_SERVICE_TOKEN and KAIROS_CONSOLE_SECRET: a public default would be a
secret everyone knows.
For each of them that is neither in the file nor in this environment (the environment wins over
the file in compose), a fresh random value is appended to the file, which is made readable by its
owner only. Values already there are never changed: the secret key decrypts the stored
credentials. Standard library only, so that `make up` needs no virtual environment.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

#: The variables to generate, with bytes of randomness (32 bytes: 43 url-safe characters).
GENERATED = {"KAIROS_SECRET_KEY": 32, "KAIROS_SERVICE_TOKEN": 32, "KAIROS_CONSOLE_SECRET": 32}

HEADER = """\
# Made by `make up` (scripts/compose_secrets.py) for docker compose; keep it private and keep it:
# KAIROS_SECRET_KEY encrypts the account credentials stored in the database.
"""


def names_in(text: str) -> set[str]:
    """The variables an env file sets (NAME=value lines, `export ` allowed)."""
    names = set()
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            name, _, value = line.removeprefix("export ").partition("=")
            if value.strip().strip("'\""):
                names.add(name.strip())
    return names


def ensure_secrets(path: Path, environ: dict[str, str]) -> list[str]:
    """Append the missing secrets to `path` (made if absent, mode 0600); the names written."""
    text = path.read_text() if path.exists() else ""
    present = names_in(text) | {name for name, value in environ.items() if value.strip()}
    missing = [name for name in GENERATED if name not in present]
    if missing:
        if not text:
            text = HEADER
        elif not text.endswith("\n"):
            text += "\n"
        for name in missing:
            text += f"{name}={secrets.token_urlsafe(GENERATED[name])}\n"
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.unlink(missing_ok=True)
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
        os.replace(temporary, path)
    if path.exists() and path.stat().st_mode & 0o077:
        path.chmod(0o600)
    return missing


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        print("usage: python scripts/compose_secrets.py [ENV_FILE]", file=sys.stderr)
        return 2
    path = Path(argv[0]) if argv else Path(__file__).resolve().parent.parent / ".env"
    written = ensure_secrets(path, dict(os.environ))
    if written:
        print(f"wrote new random {' and '.join(written)} to {path} (keep this file)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
