"""The `kairos` console script as real processes: a key made by `keys create` works against an api
on the same database, and exit codes and streams are what a shell script sees.

Each process takes a second or more to start, so this is a handful of runs, some at once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

from integration.cli.conftest import KAIROS_SCRIPT, ZONE, run_script

from support.api import api_settings, running_api
from support.ports import free_port

UNKNOWN_ID = "0190a6d2-0000-7000-8000-000000000000"


async def test_the_console_script_end_to_end(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'kairos.db'}"
    created = await run_script(
        "keys", "create", "--tenant", "script", env={"KAIROS_DATABASE_URL": database_url}
    )
    assert created.code == 0, str(created)
    key = created.stdout.strip()

    async with running_api(api_settings(database_url)) as api:
        env = {"KAIROS_API_TARGET": api.target, "KAIROS_API_KEY": key, "KAIROS_TZ": ZONE}
        connected = await run_script(
            "accounts",
            "connect",
            "sandbox",
            "--handle",
            "@script",
            "--instance-url",
            "http://127.0.0.1:9",
            env=env,
        )
        assert connected.code == 0, str(connected)
        account_id = connected.stdout.strip()
        posted = await run_script(
            "posts",
            "create",
            "From a shell",
            "--account",
            account_id,
            "--at",
            "2030-01-15 10:00",
            env=env,
        )
        assert posted.code == 0, str(posted)
        post_id = posted.stdout.strip()

        shown, missing_key, unknown, unreachable, as_json, usage = await asyncio.gather(
            run_script("--json", "posts", "show", post_id, env=env),
            run_script("posts", "show", post_id, env={**env, "KAIROS_API_KEY": ""}),
            run_script("posts", "show", UNKNOWN_ID, env=env),
            run_script(
                "--timeout",
                "1",
                "stats",
                env={**env, "KAIROS_API_TARGET": f"127.0.0.1:{free_port()}"},
            ),
            run_script("--json", "posts", "show", UNKNOWN_ID, env=env),
            run_script("--json", "posts", "list", "--status", "sideways", env=env),
        )

    assert shown.code == 0, str(shown)
    post = json.loads(shown.stdout)
    assert (post["id"], post["scheduled_at"], post["time_zone"]) == (
        post_id,
        "2030-01-15T09:00:00Z",
        ZONE,
    )
    assert (missing_key.code, unknown.code, unreachable.code) == (3, 4, 6)
    assert "set KAIROS_API_KEY or --api-key" in missing_key.stderr
    assert f"post {UNKNOWN_ID} not found" in unknown.stderr
    assert "cannot reach the api at 127.0.0.1:" in unreachable.stderr
    for run in (missing_key, unknown, unreachable):
        assert run.stdout == ""
        assert "Traceback" not in run.stderr
    # With --json an error is one JSON line on stderr, whatever its kind; exit codes unchanged.
    assert (as_json.code, usage.code) == (4, 2)
    assert as_json.stdout == usage.stdout == ""
    assert json.loads(as_json.stderr)["code"] == "NOT_FOUND"
    assert json.loads(usage.stderr)["violations"][0]["field"] == "--status"


async def test_watch_refreshes_until_interrupted(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'kairos.db'}"
    # No NATS where this api looks for it (a port nobody listens on), whatever runs here.
    no_nats = f"nats://127.0.0.1:{free_port()}"
    async with running_api(api_settings(database_url, KAIROS_NATS_URL=no_nats)) as api:
        _, key = await api.new_key()
        environment = {k: v for k, v in os.environ.items() if not k.startswith("KAIROS_")}
        process = await asyncio.create_subprocess_exec(
            str(KAIROS_SCRIPT),
            "--target",
            api.target,
            "--api-key",
            key,
            "--json",
            "watch",
            "--interval",
            "0.2",
            env=environment,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        snapshots = [json.loads(await asyncio.wait_for(process.stdout.readline(), 30))]
        snapshots.append(json.loads(await asyncio.wait_for(process.stdout.readline(), 5)))
        process.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(process.communicate(), 10)

    assert snapshots[0] == {"upcoming": [], "recent": [], "error": None}
    assert len(snapshots) == 2
    # This api has no NATS, so no events to stream: watch says so and polls every --interval.
    assert snapshots[1]["error"].startswith(f"no live updates from the api at {api.target} (")
    assert snapshots[1]["error"].endswith("; refreshing every 0.2s")
    assert process.returncode == 0, stderr.decode()
    assert "Traceback" not in stderr.decode()
