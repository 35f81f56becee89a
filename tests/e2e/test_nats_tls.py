"""The three services as real processes on a nats-server that wants TLS (a private CA) and a
user and password (read from a file, as a container secret): a post goes out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kairos.posts.v1 import posts_pb2
from support.nats_auth import tls_files
from support.nats_server import NatsServer
from support.stack import eventually, marker, running_stack, wait_status

pytestmark = pytest.mark.e2e

PASSWORD = "e2e-nats-pa55word-" + "p" * 12


@pytest.fixture
def secured_nats(tmp_path: Path) -> Iterator[tuple[NatsServer, dict[str, str]]]:
    """A nats-server with JetStream, TLS and a user, and the variables that reach it."""
    files = tls_files(tmp_path)
    config = f'authorization {{ user: "kairos", password: "{PASSWORD}" }}\n' + files.server_config()
    server = NatsServer(config, scheme="tls")
    server.start()
    (tmp_path / "nats_password").write_text(PASSWORD + "\n")
    env = {
        "KAIROS_NATS_USER": "kairos",
        "KAIROS_NATS_PASSWORD_FILE": str(tmp_path / "nats_password"),
        "KAIROS_NATS_CA_FILE": str(files.ca),
    }
    yield server, env
    server.close()


async def test_a_post_goes_out_through_nats_with_tls_and_a_password(
    secured_nats: tuple[NatsServer, dict[str, str]], log_dir: Path
) -> None:
    server, env = secured_nats
    async with running_stack(server, log_dir, env=env) as stack:
        mark = marker()
        post = await stack.create(f"over tls {mark}", 0.5)
        await eventually(lambda: bool(stack.received(mark)), 15, stack, "arrival")
        done = await wait_status(stack, post.id, posts_pb2.POST_STATUS_PUBLISHED)
        assert [t.status for t in done.targets] == [posts_pb2.TARGET_STATUS_PUBLISHED]
        assert len(stack.received(mark)) == 1
        logs = stack.logs()
    assert "refused authentication" not in logs
    assert PASSWORD not in logs
