"""`make dev` as a new user meets it: `python -m kairos_dev` on a fresh data folder, driven with
the commands its banner prints and the `kairos` CLI (`watch` until the post is published), stopped
with Ctrl-C (SIGINT), started again with `make dev` itself and stopped with a SIGINT to its whole
process group (as an IDE or CI sends it).

The supervisor starts exactly what `make dev` starts (the same module, only the data folder and
the ports differ), so this is what a person gets from a fresh clone.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from support.dev_stack import (
    CHILDREN,
    KAIROS,
    DevRun,
    assert_all_gone,
    dev_ports,
    user_environment,
)
from support.ports import free_port
from support.processes import spawn, stop_child

pytestmark = pytest.mark.e2e

PUBLISHED = "published"
SETTLED_BADLY = {"failed", "missed", "unknown"}


@pytest.fixture
def dev_runs() -> Iterator[list[DevRun]]:
    runs: list[DevRun] = []
    yield runs
    for run in runs:
        run.kill_everything()


def try_it_steps(banner: str) -> list[str]:
    """The banner's "try it" commands up to connecting the sandbox account, as printed."""
    lines = banner.partition("Try it from another terminal:")[2].strip().splitlines()
    steps = []
    for line in lines:
        if line.strip().startswith("kairos posts create"):
            break
        steps.append(line.strip())
    assert any("kairos keys create --tenant demo" in step for step in steps), banner
    assert any("kairos accounts connect sandbox" in step for step in steps), banner
    return steps


def kairos(*args: str, env: Mapping[str, str], check: bool = True) -> str:
    """Run the CLI; its stdout."""
    done = subprocess.run(
        [KAIROS, *args], env=dict(env), capture_output=True, text=True, timeout=30
    )
    if check and done.returncode != 0:
        pytest.fail(f"kairos {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    return done.stdout


def sandbox_posts(url: str, marker: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/posts", timeout=5) as response:
        received: list[dict[str, Any]] = json.loads(response.read())
    return [p for p in received if marker in str(p["body"].get("content", ""))]


def wait_published(post_id: str, env: Mapping[str, str], timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    shown: dict[str, Any] = {}
    while time.monotonic() < deadline:
        shown = json.loads(kairos("--json", "posts", "show", post_id, env=env))
        if shown["status"] == PUBLISHED:
            return shown
        assert shown["status"] not in SETTLED_BADLY, json.dumps(shown, indent=1)
        time.sleep(0.3)
    pytest.fail(f"post {post_id} not published within {timeout} s:\n{json.dumps(shown, indent=1)}")


def watch_until_published(
    post_id: str, env: Mapping[str, str], output: Path, timeout: float = 30.0
) -> dict[str, Any]:
    """Run `kairos --json watch` until a snapshot lists the post as recently published; that
    snapshot's post. Watch is stopped with Ctrl-C, which ends it with exit 0."""
    with output.open("wb") as sink:
        watch = spawn(
            [KAIROS, "--json", "watch", "--interval", "0.3"],
            env=dict(env),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + timeout
        seen_upcoming = False
        while time.monotonic() < deadline:
            assert watch.poll() is None, f"watch exited {watch.returncode}:\n{output.read_text()}"
            lines = output.read_text().splitlines()
            snapshots = [json.loads(line) for line in lines[:-1]]  # the last may be half written
            for snapshot in snapshots:
                assert snapshot["error"] is None, snapshot
                upcoming = [p for p in snapshot["upcoming"] if p["id"] == post_id]
                seen_upcoming = seen_upcoming or bool(upcoming)
                for post in snapshot["recent"]:
                    if post["id"] == post_id:
                        assert post["status"] == PUBLISHED, json.dumps(post, indent=1)
                        assert seen_upcoming, "watch showed the post published, never upcoming"
                        return dict(post)
            time.sleep(0.2)
        pytest.fail(f"watch did not show {post_id} published within {timeout} s")
    finally:
        # Ctrl-C ends it with exit 0; one that ignored it is killed, never left running.
        code = stop_child(watch, signal.SIGINT, timeout=10)
        assert code == 0, f"watch exited {code} on SIGINT:\n{output.read_text()[-2000:]}"


def test_make_dev_runs_a_post_from_the_cli_to_the_sandbox_stops_on_ctrl_c_and_keeps_data(
    tmp_path: Path, dev_runs: list[DevRun]
) -> None:
    data_dir = tmp_path / "dev"
    ports = dev_ports()
    sandbox_url = f"http://127.0.0.1:{ports['sandbox']}"

    first = DevRun.start(data_dir, ports, tmp_path / "first.out")
    dev_runs.append(first)
    banner = first.wait_banner()
    assert f"127.0.0.1:{ports['api']}" in banner
    assert sandbox_url in banner
    # Each service's metrics URL is printed, and answers with that service's metrics.
    for offset, (name, metric) in enumerate(
        [
            ("api", "kairos_dispatch_batch_size"),
            ("scheduler", "kairos_scheduler_batch_size"),
            ("publisher", "kairos_delivery_lateness_seconds"),
        ]
    ):
        url = f"http://127.0.0.1:{ports['metrics'] + offset}/metrics"
        assert [name, "metrics", url] in [line.split()[:3] for line in banner.splitlines()]
        with urllib.request.urlopen(url, timeout=5) as answer:
            assert f"# TYPE {metric} histogram" in answer.read().decode(), name
    children = first.children()
    assert set(children) == CHILDREN
    secrets_file = data_dir / "dev.env"
    assert secrets_file.stat().st_mode & 0o777 == 0o600
    secrets = secrets_file.read_text()

    # A new user pastes the banner's commands: a key for tenant demo, a sandbox account.
    script = "\n".join(
        [
            "set -eo pipefail",
            *try_it_steps(banner),
            'printf "%s\\n" "$KAIROS_API_TARGET" "$KAIROS_API_KEY" "$ACCOUNT"',
        ]
    )
    pasted = subprocess.run(
        ["bash", "-c", script],
        env=user_environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert pasted.returncode == 0, f"{script}\n---\n{pasted.stderr}\n{first.text()[-4000:]}"
    api_target, key, account_id = pasted.stdout.split()
    assert api_target == f"127.0.0.1:{ports['api']}"
    assert key.startswith("kairos_"), pasted.stdout
    user = user_environment(KAIROS_API_TARGET=api_target, KAIROS_API_KEY=key)

    marker = uuid.uuid4().hex[:12]
    asked_at = time.time()
    post_id = kairos(
        "posts", "create", f"Hello from Kairos {marker}", "--account", account_id, "--at", "in 5s",
        env=user,
    ).strip()  # fmt: skip
    assert len(post_id.split()) == 1, post_id

    watched = watch_until_published(post_id, user, tmp_path / "watch.out")
    shown = json.loads(kairos("--json", "posts", "show", post_id, env=user))
    assert shown["status"] == PUBLISHED
    assert watched["scheduled_at"] == shown["scheduled_at"]
    due = datetime.fromisoformat(shown["scheduled_at"].replace("Z", "+00:00")).timestamp()
    assert asked_at + 3 <= due <= time.time(), (asked_at, due)
    received = sandbox_posts(sandbox_url, marker)
    assert len(received) == 1, json.dumps(received, indent=1)
    (delivery,) = received
    assert delivery["body"]["post_id"] == post_id
    assert datetime.fromisoformat(delivery["body"]["due_at"]).timestamp() == pytest.approx(due)
    late = delivery["arrived_at"] - due
    assert late >= 0, f"the sandbox got the post {-late:.3f} s before its time"
    assert late < 3, f"the sandbox got the post {late:.1f} s after its time"

    # The banner's platform-fake steps: a Mastodon account on the fake, a post that reaches it.
    connect = next(line.strip() for line in banner.splitlines() if line.strip().startswith("M=$("))
    connected = subprocess.run(
        ["bash", "-c", f'set -eo pipefail\n{connect.partition("  #")[0]}\necho "$M"'],
        env=user,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert connected.returncode == 0, connected.stderr
    toot = kairos(
        "posts", "create", f"Hello, fediverse {marker}", "--account", connected.stdout.strip(),
        "--at", "in 1s", env=user,
    ).strip()  # fmt: skip
    wait_published(toot, user)
    fake = f"http://127.0.0.1:{ports['fakes'] + 2}/_fake/requests"
    with urllib.request.urlopen(fake, timeout=5) as answer:
        arrived = [
            r for r in json.load(answer)
            if r["path"] == "/api/v1/statuses" and marker in r["body"]
        ]  # fmt: skip
    assert len(arrived) == 1, arrived

    # Ctrl-C: exit 0, every child (and anything it started) gone.
    code, took = first.interrupt()
    assert code == 0, first.text()[-6000:]
    assert took < 20
    assert_all_gone(children)
    assert not (data_dir / "pids.json").exists()
    assert "kairos-dev | stopped" in first.text()

    # A second `make dev` on the same folder and ports finds the post, the key and the account.
    second = DevRun.start(data_dir, ports, tmp_path / "second.out", make=True)
    dev_runs.append(second)
    second.wait_banner()
    assert secrets_file.read_text() == secrets
    again = json.loads(kairos("--json", "posts", "show", post_id, env=user))
    assert again["status"] == PUBLISHED
    assert again["targets"][0]["platform_post_id"] == delivery["id"]
    assert "published" in kairos("posts", "show", post_id, env=user).lower()
    assert account_id in kairos("accounts", "show", account_id, env=user)
    time.sleep(1.5)  # what would be re-sent after a restart would be by now
    assert sandbox_posts(sandbox_url, marker) == []  # this sandbox is new: nothing came again

    # SIGINT to the whole group reaches make and the supervisor, each once: the supervisor stops
    # in order (no "kill at once"); make, interrupted itself, then dies of SIGINT as it should.
    children = second.children()
    code = second.interrupt_group()
    text = second.text()
    assert code in (0, -signal.SIGINT), text[-6000:]
    assert "kairos-dev | SIGINT: stopping everything" in text, text[-6000:]
    assert "killing everything at once" not in text, text[-6000:]
    assert "kairos-dev | stopped\n" in text, text[-6000:]
    assert_all_gone(children)
    assert not (data_dir / "pids.json").exists()


def test_a_child_that_dies_stops_everything_with_its_last_lines(
    tmp_path: Path, dev_runs: list[DevRun]
) -> None:
    data_dir = tmp_path / "dev"
    ports = dev_ports()
    run = DevRun.start(data_dir, ports, tmp_path / "run.out")
    dev_runs.append(run)
    run.wait_banner()
    children = run.children()

    os.kill(children["scheduler"], signal.SIGKILL)
    try:
        code = run.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"kairos-dev did not stop after its scheduler died:\n{run.text()[-6000:]}")

    text = run.text()
    assert code == 1, text[-6000:]
    assert "scheduler exited unexpectedly (killed by SIGKILL); its last lines:" in text
    assert "scheduler ready" in text.partition("its last lines:")[2]
    assert "stopped because the scheduler failed" in text
    assert_all_gone(children)


def test_a_taken_port_is_named_with_the_option_that_moves_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        names = ("nats", "api", "publisher", "sandbox", "console")
        ports = {name: free_port() for name in names}
        ports["scheduler"] = port
        options = [f"--{name}-port={number}" for name, number in ports.items()]
        done = subprocess.run(
            [sys.executable, "-m", "kairos_dev", f"--data-dir={tmp_path / 'dev'}", *options],
            capture_output=True,
            text=True,
            timeout=30,
            env=user_environment(),
        )
    assert done.returncode == 1
    assert f"port {port} (scheduler) is already in use" in done.stderr
    assert "--scheduler-port PORT" in done.stderr
    assert not (tmp_path / "dev" / "pids.json").exists()  # nothing was started
