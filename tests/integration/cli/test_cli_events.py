"""`kairos events` and `kairos watch` on the api's stream of events (WatchEvents)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from integration.cli.conftest import KAIROS_SCRIPT, Kairos, Ran, run_in_process

from kairos_api.service_layer.watch import MAX_WATCHES_PER_TENANT
from support.ports import free_port


async def events_until(kairos: Kairos, count: int, *args: str) -> Ran:
    """`kairos events ARGS`, run again until it prints `count` lines (the outbox is relayed just
    after each change)."""
    async with asyncio.timeout(15):
        while True:
            ran = await kairos.ok("events", *args)
            if len(ran.stdout.splitlines()) >= count:
                return ran
            await asyncio.sleep(0.1)


def cursor_of(line: str) -> str:
    return line.rsplit("cursor=", 1)[1]


async def test_events_prints_one_line_each_and_resumes_after_a_cursor(
    kairos: Kairos, account_id: str
) -> None:
    since = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    first = await kairos.create_post(account_id)
    second = await kairos.create_post(account_id, "--at", "in 2h")
    await kairos.ok("posts", "delete", first)

    ran = await events_until(kairos, 4, "--since", since)
    lines = ran.stdout.splitlines()
    assert [line.split("  ")[1:3] for line in lines] == [
        ["created", f"post={first}"],
        ["created", f"post={second}"],
        ["scheduled", f"post={second}"],
        ["deleted", f"post={first}"],
    ]
    assert "post_status=scheduled" in lines[2]
    cursors = [cursor_of(line) for line in lines]
    assert len(set(cursors)) == 4
    assert ran.stderr == f"to go on from here: kairos events --after {cursors[-1]}\n"

    # After the second cursor: the last two, and nothing else.
    rest = await kairos.ok("events", "--after", cursors[1])
    assert rest.stdout.splitlines() == lines[2:]
    typed = await kairos.ok("--json", "events", "--after", cursors[0], "--type", "deleted")
    assert [json.loads(line) for line in typed.stdout.splitlines()] == [
        {"cursor": cursors[3], "event": json.loads(typed.stdout)["event"]}
    ]
    assert json.loads(typed.stdout)["event"]["type"] == "deleted"
    assert json.loads(typed.stdout)["event"]["post_id"] == first
    of_second = await kairos.ok("events", "--after", cursors[0], "--post", second)
    assert of_second.stdout.splitlines() == lines[1:3]
    # Without a start it starts now: nothing, but a cursor to go on from.
    now = await kairos.ok("events")
    assert now.stdout == ""
    assert now.stderr.startswith("to go on from here: kairos events --after v1.")


async def test_events_refuses_what_it_cannot_use_by_name(kairos: Kairos) -> None:
    unknown_type = await kairos("events", "--type", "exploded")
    bad_cursor = await kairos("events", "--after", "42")
    bad_since = await kairos("events", "--since", "yesterday-ish")

    assert unknown_type.code == bad_cursor.code == bad_since.code == 2
    assert unknown_type.stderr.startswith("kairos: error: --type: unknown event type 'exploded'")
    assert "published" in unknown_type.stderr
    assert "cursor: '42' is not a cursor that WatchEvents gave" in bad_cursor.stderr
    assert bad_since.stderr.startswith("kairos: error: --since: cannot read the time")


@asynccontextmanager
async def script(kairos: Kairos, *args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """`kairos ARGS` as a real process, stopped with SIGINT (Ctrl-C) at the end if still on."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("KAIROS_")}
    process = await asyncio.create_subprocess_exec(
        str(KAIROS_SCRIPT),
        *kairos.options(kairos.key),
        *args,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            await asyncio.wait_for(process.wait(), 10)


async def line_of(process: asyncio.subprocess.Process, timeout: float = 20) -> str:
    assert process.stdout is not None
    return (await asyncio.wait_for(process.stdout.readline(), timeout)).decode()


async def test_events_follow_prints_events_as_they_happen(kairos: Kairos, account_id: str) -> None:
    since = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    async with script(kairos, "events", "--follow", "--since", since) as process:
        first = await kairos.create_post(account_id)
        assert f"  created  post={first}  " in await line_of(process)
        second = await kairos.create_post(account_id)
        line = (await line_of(process)).rstrip("\n")
        assert f"  created  post={second}  " in line
        process.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(process.communicate(), 10)
    assert process.returncode == 0, stderr.decode()
    assert stderr.decode() == f"to go on from here: kairos events --after {cursor_of(line)}\n"


async def test_watch_refreshes_when_an_event_arrives_not_on_a_clock(
    kairos: Kairos, account_id: str
) -> None:
    # An interval of a minute: a refresh within seconds can only come from the stream.
    async with script(kairos, "--json", "watch", "--interval", "60") as process:
        assert json.loads(await line_of(process)) == {"upcoming": [], "recent": [], "error": None}
        post = await kairos.create_post(account_id, "--at", "in 1h")
        snapshot = json.loads(await line_of(process, timeout=10))
        while not snapshot["upcoming"]:  # the create's own events may come one by one
            snapshot = json.loads(await line_of(process, timeout=10))
        assert [p["id"] for p in snapshot["upcoming"]] == [post]
        assert snapshot["error"] is None


async def test_watch_polls_when_the_tenant_has_too_many_watches(
    kairos: Kairos, account_id: str
) -> None:
    feed = kairos.api.service.feed
    feed.max_per_tenant = 0
    try:
        async with script(kairos, "--json", "watch", "--interval", "0.2") as process:
            assert json.loads(await line_of(process))["error"] is None
            refused = json.loads(await line_of(process))
            assert refused["error"] == (
                f"no live updates from the api at {kairos.api.target} (0 watches of this tenant "
                "are open on this api, the most allowed; end one first); refreshing every 0.2s"
            )
            # Still on, polling: a new post shows within the interval.
            post = await kairos.create_post(account_id, "--at", "in 1h")
            snapshot = json.loads(await line_of(process))
            while not snapshot["upcoming"]:
                snapshot = json.loads(await line_of(process))
            assert [p["id"] for p in snapshot["upcoming"]] == [post]
            assert snapshot["error"] == refused["error"]
    finally:
        feed.max_per_tenant = MAX_WATCHES_PER_TENANT


async def test_events_follow_with_no_api_ends_at_once(kairos: Kairos) -> None:
    target = f"127.0.0.1:{free_port()}"
    ran = await run_in_process("--target", target, "--api-key", kairos.key, "events", "--follow")
    assert ran.code == 6, str(ran)
    assert ran.stderr.startswith(f"kairos: error: cannot reach the api at {target}")
    assert ran.stdout == ""
