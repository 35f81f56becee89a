"""The system with TLS everywhere and mutual TLS for dispatch, as real processes: a post goes out.

The api listens with TLS and has its mutual-TLS listener; the scheduler and publisher listen with
TLS and reach the api on that listener with a client certificate from the CA, as a deployment
would set them up.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kairos.posts.v1 import posts_pb2
from support.nats_server import NatsServer
from support.stack import eventually, marker, running_stack, wait_status
from support.tls import make_pki

pytestmark = pytest.mark.e2e


async def test_a_post_is_published_over_tls_and_mutual_tls(
    nats_server: NatsServer, tmp_path: Path, log_dir: Path
) -> None:
    pki = make_pki(tmp_path / "pki")
    async with running_stack(nats_server, log_dir, tls=pki) as stack:
        mark = marker()
        post = await stack.create(f"over tls {mark}", 1.0)
        await eventually(lambda: bool(stack.received(mark)), 15, stack, "arrival")
        done = await wait_status(stack, post.id, posts_pb2.POST_STATUS_PUBLISHED)
        assert [a.published for a in done.targets[0].attempts] == [True]
        assert "gRPC listening for mutual TLS" in stack.api.logs()
        for process in [*stack.schedulers, *stack.publishers]:
            assert stack.api_target == process.env["KAIROS_API_TARGET"]
            assert "plaintext" not in process.logs(), process.logs()
