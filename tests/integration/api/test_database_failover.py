"""The api rides through a PostgreSQL failover: a primary and a synchronous streaming standby,
started here from the installed binaries, behind one multi-host KAIROS_DATABASE_URL with
`target_session_attrs=read-write`.

Clients keep creating posts while the primary crashes and, a moment later, the standby is
promoted. The api must answer again within seconds of the promotion, and afterwards every post
whose CreatePost succeeded exists exactly once on the new primary; none is made twice, with or
without a request_id.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from dataclasses import dataclass, field

import grpc
import psycopg
import pytest
from integration.api.helpers_posts import Tenant, at, tenant_of

from kairos.posts.v1 import posts_pb2
from support.api import api_settings, running_api
from support.nats_server import NatsServer
from support.pg_cluster import PrimaryStandby, pg_bin, start_primary_standby

BINDIR = pg_bin()
pytestmark = pytest.mark.skipif(BINDIR is None, reason="no PostgreSQL binaries installed")

#: How long after the promotion the api may take to answer again (it takes about a second; the
#: slack is for a loaded machine).
RECOVERY_BOUND = 15.0
WORKERS_WITH_REQUEST_ID = 3
WORKERS_WITHOUT = 2


@dataclass
class Outcomes:
    """What the clients saw."""

    #: Content of each post whose CreatePost succeeded → its id.
    created: dict[str, str] = field(default_factory=dict)
    #: Content of each create without a request_id answered "may or may not have been made".
    unknown: list[str] = field(default_factory=list)
    #: Messages of the UNAVAILABLE answers to creates with a request_id (sent again).
    retried: list[str] = field(default_factory=list)
    #: (started, answered) of each successful call, on the loop's clock.
    calls: list[tuple[float, float]] = field(default_factory=list)


async def _create_until(
    tenant: Tenant,
    account: str,
    name: str,
    with_request_id: bool,
    stop: asyncio.Event,
    out: Outcomes,
) -> None:
    """Create posts one after another, as a client does: an UNAVAILABLE create with a
    request_id is sent again, unchanged; one without is given up (its outcome is unknown)."""
    loop = asyncio.get_running_loop()
    number = 0
    while not stop.is_set():
        number += 1
        content = f"failover {name}-{number}"
        request = posts_pb2.CreatePostRequest(
            content=content,
            targets=[posts_pb2.TargetSpec(account_id=account)],
            schedule=at(5),
            request_id=uuid.uuid4().hex if with_request_id else "",
        )
        while True:
            started = loop.time()
            try:
                response = await tenant.posts.CreatePost(
                    request, metadata=tenant.metadata, timeout=40
                )
            except grpc.aio.AioRpcError as error:
                # Never INTERNAL: the database being away is UNAVAILABLE, with what to do.
                if error.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                if with_request_id:
                    out.retried.append(error.details() or "")
                    await asyncio.sleep(0.1)
                    continue
                out.unknown.append(f"{content}: {error.details()}")
                break
            out.created[content] = response.post.id
            out.calls.append((started, loop.time()))
            break


def _stored(pair: PrimaryStandby, tenant: str) -> list[tuple[str, str, str | None]]:
    """(id, content, request_id) of the tenant's posts, read on the promoted standby."""
    with psycopg.connect(
        host="127.0.0.1", port=pair.standby.port, user="postgres", dbname="kairos"
    ) as connection:
        rows = connection.execute(
            "SELECT id::text, content, request_id FROM posts WHERE tenant_id = %s", (tenant,)
        ).fetchall()
    return [(str(i), str(c), r) for i, c, r in rows]


async def test_creates_ride_through_a_failover_with_nothing_lost_or_doubled(
    nats_server: NatsServer,
) -> None:
    assert BINDIR is not None
    pair = await asyncio.to_thread(start_primary_standby, BINDIR)
    try:
        settings = api_settings(
            pair.url("kairos"),
            KAIROS_NATS_URL=nats_server.url,
            KAIROS_DATABASE_RETRY_SECONDS="20",
        )
        async with running_api(settings) as api, api.client() as client:
            tenant = tenant_of(api, client)
            account = await tenant.connect()
            out = Outcomes()
            stop = asyncio.Event()
            workers = [
                asyncio.create_task(_create_until(tenant, account, f"r{n}", True, stop, out))
                for n in range(WORKERS_WITH_REQUEST_ID)
            ] + [
                asyncio.create_task(_create_until(tenant, account, f"n{n}", False, stop, out))
                for n in range(WORKERS_WITHOUT)
            ]
            loop = asyncio.get_running_loop()
            try:
                await asyncio.sleep(1.0)
                before = len(out.created)
                # The primary crashes (no goodbye to its clients); a failover manager notices
                # a moment later and promotes the standby.
                await asyncio.to_thread(pair.stop_cluster, pair.primary, "immediate")
                await asyncio.sleep(1.0)
                await asyncio.to_thread(pair.promote)
                promoted = loop.time()
                while not any(answered > promoted for _, answered in out.calls):
                    assert loop.time() - promoted < RECOVERY_BOUND, "the api did not recover"
                    await asyncio.sleep(0.05)
                recovered = min(a for _, a in out.calls if a > promoted) - promoted
                await asyncio.sleep(1.0)  # and it keeps serving
            finally:
                stop.set()
                await asyncio.gather(*workers)

            # Reads answer on the new primary too (their own connections, not the engine's).
            some = next(iter(out.created.values()))
            assert (await tenant.get(some)).id == some

        assert before > 0
        # Calls that arrived while no server took writes were held until one did, not failed:
        # a create with a request_id never saw the failover.
        assert any(s < promoted - 0.5 < promoted < a for s, a in out.calls)
        assert not out.retried, f"creates with a request_id answered UNAVAILABLE: {out.retried}"
        assert len(out.created) > before + 5

        stored = _stored(pair, tenant.tenant)
        contents = Counter(content for _, content, _ in stored)
        doubled = [content for content, count in contents.items() if count > 1]
        assert not doubled, f"made twice: {doubled}"
        ids = {post_id for post_id, _, _ in stored}
        lost = [c for c, post_id in out.created.items() if post_id not in ids]
        assert not lost, f"created, then lost in the failover: {lost}"
        # Every stored post is one a client created, or one whose outcome it was told is unknown.
        unknown = {entry.partition(": ")[0] for entry in out.unknown}
        assert set(contents) <= set(out.created) | unknown
        print(
            f"failover: {len(out.created)} created, recovered {recovered:.2f} s after "
            f"promotion; UNAVAILABLE without a request_id: {out.unknown}"
        )
    finally:
        await asyncio.to_thread(pair.stop)
