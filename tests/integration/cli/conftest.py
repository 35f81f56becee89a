"""Running `kairos` against the in-process api: in this process with typer's CliRunner (fast),
or as the real console script.

CliRunner calls the command synchronously and the commands call `asyncio.run`, which cannot run
inside the test's event loop (where the api is served), so every in-process run happens in a
worker thread. The environment is cleared of every KAIROS_* setting first, so a developer's own
KAIROS_API_KEY or KAIROS_TZ never leaks into a test.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from kairos_api.adapters.orm import Attempt, Post, Target
from kairos_cli.main import app
from support.api import RunningApi

#: The zone the tests read and show times in: it has daylight saving, and differs from UTC.
ZONE = "Europe/Berlin"
KAIROS_SCRIPT = Path(sys.executable).with_name("kairos")
_SETTINGS = (
    "KAIROS_API_TARGET",
    "KAIROS_API_KEY",
    "KAIROS_TZ",
    "KAIROS_TIMEOUT",
    "KAIROS_DATABASE_URL",
)


@dataclass(frozen=True)
class Ran:
    """What one `kairos` run did."""

    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def __str__(self) -> str:  # shown by pytest when an assertion on a run fails
        return f"exit {self.code}\n--- stdout\n{self.stdout}--- stderr\n{self.stderr}"


def clean_environment(**settings: str) -> dict[str, str | None]:
    """Overrides that remove every KAIROS_* setting, then set `settings`."""
    cleared: dict[str, str | None] = {
        name: None for name in os.environ if name.startswith("KAIROS_")
    }
    cleared.update(dict.fromkeys(_SETTINGS))
    cleared["COLUMNS"] = None  # tables are as wide as a pipe's unless a test says otherwise
    cleared.update(settings)
    return cleared


async def run_in_process(
    *args: str, env: Mapping[str, str] | None = None, input: str | None = None
) -> Ran:
    """`kairos ARGS` through CliRunner, in a worker thread."""
    runner = CliRunner()
    result = await asyncio.to_thread(
        runner.invoke, app, list(args), input=input, env=clean_environment(**(env or {}))
    )
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a bug in the CLI, not an exit code: show its trace
    return Ran(result.exit_code, result.stdout, result.stderr)


async def run_script(*args: str, env: Mapping[str, str] | None = None) -> Ran:
    """`.venv/bin/kairos ARGS` as a real process."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("KAIROS_")}
    environment.update(env or {})
    process = await asyncio.create_subprocess_exec(
        str(KAIROS_SCRIPT),
        *args,
        env=environment,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return Ran(process.returncode, stdout.decode(), stderr.decode())


@dataclass
class Kairos:
    """`kairos` for one tenant of the in-process api: global options filled in."""

    api: RunningApi
    tenant: str
    key: str

    def options(self, key: str | None) -> list[str]:
        found = ["--target", self.api.target, "--tz", ZONE]
        return [*found, "--api-key", key] if key else found

    async def __call__(self, *args: str, key: str | None = "", input: str | None = None) -> Ran:
        """Run in this process; `key=None` passes no key at all, `key="..."` another one."""
        return await run_in_process(
            *self.options(self.key if key == "" else key), *args, input=input
        )

    async def script(self, *args: str) -> Ran:
        """Run the console script as a process."""
        return await run_script(*self.options(self.key), *args)

    async def ok(self, *args: str) -> Ran:
        """Run, and require success."""
        ran = await self(*args)
        assert ran.code == 0, str(ran)
        return ran

    async def connect_sandbox(self, handle: str = "") -> str:
        """A new sandbox account's id (nothing publishes in these tests: no scheduler runs)."""
        handle = handle or f"@sandbox-{uuid.uuid4().hex[:6]}"
        ran = await self.ok(
            "accounts",
            "connect",
            "sandbox",
            "--handle",
            handle,
            "--instance-url",
            "http://127.0.0.1:9",
        )
        return ran.stdout.strip()

    async def create_post(self, account_id: str, *extra: str, content: str = "") -> str:
        ran = await self.ok(
            "posts",
            "create",
            content or f"hello {uuid.uuid4().hex[:6]}",
            "--account",
            account_id,
            *extra,
        )
        return ran.stdout.strip()

    async def settle_as_published(self, post_id: str, account_id: str) -> None:
        """Make the post's target on `account_id` PUBLISHED, as a publisher would have; the post
        too when that was its only target left to go."""
        app_ = self.api.service.app
        now = datetime.now(UTC)
        async with app_.uow() as uow:
            await uow.session.execute(
                update(Target)
                .where(Target.post_id == uuid.UUID(post_id))
                .where(Target.account_id == uuid.UUID(account_id))
                .values(
                    status="published",
                    attempt_count=1,
                    next_attempt_at=None,
                    platform_post_id=f"sandbox-{uuid.uuid4().hex[:8]}",
                    published_at=now,
                )
            )
            pending = (
                await uow.session.execute(
                    select(Target.id)
                    .where(Target.post_id == uuid.UUID(post_id))
                    .where(Target.status != "published")
                )
            ).first()
            status = "published" if pending is None else "publishing"
            await uow.session.execute(
                update(Post).where(Post.id == uuid.UUID(post_id)).values(status=status)
            )
            await uow.commit()

    async def settle_as_failed(self, post_id: str) -> str:
        """Make the post's first target FAILED after two attempts, as a publisher would have;
        returns the target id."""
        app_ = self.api.service.app
        now = datetime.now(UTC)
        async with app_.uow() as uow:
            target_id = (
                (
                    await uow.session.execute(
                        select(Target.id).where(Target.post_id == uuid.UUID(post_id))
                    )
                )
                .scalars()
                .first()
            )
            assert target_id is not None
            uow.session.add_all(
                [
                    Attempt(
                        target_id=target_id,
                        number=1,
                        delivery_id=uuid.uuid4(),
                        started_at=now - timedelta(minutes=3),
                        finished_at=now - timedelta(minutes=3) + timedelta(milliseconds=420),
                        http_status=503,
                        error_class="retryable",
                        error_code="unavailable",
                        message="upstream busy",
                        latency_ms=420,
                    ),
                    Attempt(
                        target_id=target_id,
                        number=2,
                        delivery_id=uuid.uuid4(),
                        started_at=now - timedelta(minutes=1),
                        finished_at=now - timedelta(minutes=1) + timedelta(milliseconds=80),
                        http_status=400,
                        error_class="permanent",
                        error_code="bad_content",
                        message="content refused by the platform",
                        latency_ms=80,
                    ),
                ]
            )
            await uow.session.execute(
                update(Target)
                .where(Target.id == target_id)
                .values(
                    status="failed",
                    attempt_count=2,
                    next_attempt_at=None,
                    last_error_class="permanent",
                    last_error_code="bad_content",
                    last_error_message="content refused by the platform",
                )
            )
            await uow.session.execute(
                update(Post).where(Post.id == uuid.UUID(post_id)).values(status="failed")
            )
            await uow.commit()
        return str(target_id)


@pytest.fixture
async def kairos(api: RunningApi) -> Kairos:
    """`kairos` as a brand-new tenant of the in-process api (PostgreSQL, then SQLite)."""
    tenant, key = await api.new_key()
    return Kairos(api, tenant, key)


@pytest.fixture
async def account_id(kairos: Kairos) -> str:
    """A sandbox account of the tenant."""
    return await kairos.connect_sandbox()
