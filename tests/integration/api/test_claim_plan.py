"""The claim, the fence and the completion PostgreSQL run read indexes, not whole tables; so do
GetPost and GetStats in the generic plans they run with (`ReadConnections`' plan_once).

The claim reads the partial index of claimable targets; the fence's read of the claimed
deliveries looks no parent up for posts that are no thread part (it once scanned every published
target of the account for each delivery, so a burst on one account grew quadratically), and no
uploaded media for posts that name none.

The statement is the one `claim_due` sends (`claim.CLAIM_SQL` with `claim.claim_parameters`),
explained as a prepared statement's generic plan too, over a table holding ~50,000 targets of
which only a few are due, with fresh planner statistics.

A burst is the other case: tens of thousands of posts created seconds before they fall due,
while the planner's statistics still describe the table as it was (autovacuum analyzes it up
to a minute later). Then the claim must still read the index in due order and stop at its
limit, and a completion must find its rows by key, or each batch reads every due row and a
burst costs O(N²).
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from kairos.posts.v1 import posts_pb2
from kairos_api.domain.delivery import IDEMPOTENT_PLATFORMS, TargetChange
from kairos_api.domain.model import PostStatus, TargetStatus
from kairos_api.service_layer import dispatch
from kairos_api.service_layer.dispatch import begin, claim, complete
from kairos_api.service_layer.dispatch.writes import AttemptDone, Writes, ids_text
from kairos_api.service_layer.posts import stats, views
from support.api import Client, api_settings, running_api
from support.postgres import fresh_database

NOT_DUE = 50_000
DUE = 5

#: One post per target, like CreatePost makes them: a fifth pending far ahead, the rest settled
#: (published, failed, cancelled), and DUE pending targets due a minute ago.
SEED = """
WITH stored AS (
    INSERT INTO posts (id, tenant_id, content, media_urls, campaign, tags, notes, status,
                       scheduled_at, time_zone, revision, approval_required, rejection_reason,
                       created_at, updated_at)
    SELECT gen_random_uuid(), %(tenant)s, 'post ' || n, '[]', '', '[]', '', 'scheduled',
           CASE WHEN n <= %(due)s THEN now() - interval '1 minute'
                ELSE now() + n * interval '1 minute' END,
           '', 1, false, '', now(), now()
    FROM generate_series(1, %(total)s) AS n
    RETURNING id, tenant_id, scheduled_at, content
)
INSERT INTO targets (id, post_id, tenant_id, account_id, platform, settings, status,
                     attempt_count, next_attempt_at, due_at, platform_post_id, platform_url,
                     last_error_class, last_error_code, last_error_message, created_at,
                     updated_at)
SELECT gen_random_uuid(), id, tenant_id, %(account)s, 'x', '{}',
       CASE WHEN n <= %(due)s THEN 'pending'
            ELSE (ARRAY['pending', 'published', 'failed', 'cancelled', 'published'])[n %% 5 + 1]
       END,
       0, CASE WHEN n <= %(due)s OR n %% 5 = 0 THEN scheduled_at END, scheduled_at,
       '', '', '', '', '', now(), now()
FROM (SELECT *, substr(content, 6)::int AS n FROM stored) AS numbered
"""


def seed(url: str, tenant: str, account_id: str) -> None:
    with psycopg.connect(url) as connection:
        connection.execute(
            SEED,
            {"tenant": tenant, "account": account_id, "due": DUE, "total": NOT_DUE + DUE},
        )
        connection.commit()
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("ANALYZE posts")
        connection.execute("ANALYZE targets")
        connection.execute("ANALYZE accounts")


async def connect_x(client: Client, handle: str) -> str:
    """An X account of the client's tenant; its id."""
    connected = await client.accounts.ConnectAccount(
        posts_pb2.ConnectAccountRequest(
            platform=posts_pb2.PLATFORM_X,
            handle=handle,
            credentials=posts_pb2.Credentials(access_token="t"),
        ),
        metadata=client.metadata,
    )
    return connected.account.id


def explain(
    url: str, statement: str, parameters: Any, *, generic: bool = False, first: str = ""
) -> str:
    """The plan of `statement`, after the statement `first` in the same transaction; with
    `generic`, the plan a prepared statement falls back to after its first runs, which knows no
    parameter values."""
    with psycopg.connect(url) as connection:
        if generic:
            connection.execute("SET plan_cache_mode = force_generic_plan")
        if first:
            connection.execute(first)
        rows = connection.execute("EXPLAIN " + statement, parameters).fetchall()
        connection.rollback()
    return re.sub(r"'\{[^}]*\}'", "'{...}'", "\n".join(row[0] for row in rows))


async def test_the_claim_and_the_fence_read_indexes_over_a_large_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with (
        fresh_database("postgresql", tmp_path) as url,
        running_api(api_settings(url)) as api,
        api.client() as client,
    ):
        account_id = await connect_x(client, "@plan")
        await asyncio.to_thread(seed, url, client.tenant, account_id)
        reads = api.service.app.reads
        assert reads is not None
        read = reads.fetchall
        planned_once: dict[str, bool] = {}

        async def recording(query: str, params: Any, *, plan_once: bool = False) -> Any:
            planned_once[query] = plan_once
            return await read(query, params, plan_once=plan_once)

        monkeypatch.setattr(reads, "fetchall", recording)

        claimed = await dispatch.claim_due(
            api.service.app, timedelta(seconds=1), 500, timedelta(minutes=1)
        )
        assert len(claimed) == DUE
        parameters = claim.claim_parameters(
            api.service.app.clock(), timedelta(seconds=1), 500, timedelta(minutes=1)
        )
        plans = [
            await asyncio.to_thread(explain, url, claim.CLAIM_SQL, parameters, generic=generic)
            for generic in (False, True)
        ]
        deliveries = {"deliveries": ids_text([d.delivery_id for d in claimed])}
        fence = await asyncio.to_thread(
            explain, url, "(ANALYZE) " + begin.READ_SQL, deliveries, generic=True
        )
        now = api.service.app.clock()
        asked = {"tenant": client.tenant, "now": now, "hour_later": now + timedelta(hours=1)}
        stats_plan = await asyncio.to_thread(explain, url, stats.STATS_SQL, asked, generic=True)
        await client.posts.GetStats(posts_pb2.GetStatsRequest(), metadata=client.metadata)
        await client.posts.GetPost(
            posts_pb2.GetPostRequest(post_id=claimed[0].post_id), metadata=client.metadata
        )
        post = {"tenant": client.tenant, "post_id": claimed[0].post_id}
        post_plan = await asyncio.to_thread(explain, url, views.GET_POST_SQL, post, generic=True)

    for plan in plans:
        assert "ix_targets_claimable" in plan, plan
        assert "Seq Scan on targets" not in plan, plan
    assert "Seq Scan on targets" not in fence, fence
    [parent_lookup] = [line for line in fence.splitlines() if "on targets parent" in line]
    assert "never executed" in parent_lookup, fence
    # Nor does it look uploaded media up for posts that name none.
    [media_lookup] = [line for line in fence.splitlines() if "on post_media pm" in line]
    assert "never executed" in media_lookup, fence
    # They run as planned here: generically.
    assert planned_once == {stats.STATS_SQL: True, views.GET_POST_SQL: True}
    for plan in (stats_plan, post_plan):
        assert "Seq Scan on posts" not in plan, plan
    assert "ix_posts_live_tenant_id_status_scheduled_at" in stats_plan, stats_plan
    assert "pk_posts" in post_plan, post_plan


BURST = 20_000
#: A completion batch as the publisher sends them during a burst. (Far bigger ones, a good part
#: of the table, may rightly be found by one scan with a hashed array.)
COMPLETED = 60


def seed_burst(url: str, tenant: str, account_id: str) -> list[tuple[str, str, str]]:
    """BURST posts due a minute ago with one pending target each and an attempt started at
    each, with autovacuum held off: the statistics stay those of the empty tables. Returns
    (post, target, attempt) ids of COMPLETED of them."""
    with psycopg.connect(url, autocommit=True) as connection:
        for table in ("posts", "targets", "attempts"):
            connection.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    with psycopg.connect(url) as connection:
        connection.execute(
            SEED, {"tenant": tenant, "account": account_id, "due": BURST, "total": BURST}
        )
        rows = connection.execute(
            """INSERT INTO attempts (id, target_id, number, delivery_id, started_at, published,
                                     http_status, error_class, error_code, message)
               SELECT gen_random_uuid(), id, 1, gen_random_uuid(), now(), false, 0, '', '', ''
               FROM targets
               RETURNING (SELECT post_id::text FROM targets WHERE targets.id = target_id),
                         target_id::text, id::text"""
        ).fetchall()[:COMPLETED]
        connection.commit()
    return [(post, target, attempt) for post, target, attempt in rows]


async def test_a_burst_ahead_of_the_statistics_is_claimed_and_completed_by_index(
    tmp_path: Path,
) -> None:
    async with (
        fresh_database("postgresql", tmp_path) as url,
        running_api(api_settings(url)) as api,
        api.client() as client,
    ):
        account_id = await connect_x(client, "@burst")
        started = await asyncio.to_thread(seed_burst, url, client.tenant, account_id)
        now = api.service.app.clock()
        parameters = claim.claim_parameters(now, timedelta(seconds=1), 500, timedelta(minutes=1))
        claims = [
            await asyncio.to_thread(
                explain,
                url,
                "(ANALYZE) " + claim.CLAIM_SQL,
                parameters,
                generic=generic,
                first=claim.NO_SORT_SQL,
            )
            for generic in (False, True)
        ]
        writes = Writes(now)
        for post, target, attempt in started:
            writes.attempts.append(AttemptDone(attempt, True, 200, "", "", "", 5))
            writes.changes.append(
                TargetChange(target, TargetStatus.PUBLISHED, None, None, None, None)
            )
            writes.posts[post] = PostStatus.PUBLISHED
            writes.event("published", tenant_id=client.tenant, post_id=post)
        statement, values = writes.postgresql_statement(
            complete.NEXT_PART_SQL, parents=ids_text(post for post, _, _ in started)
        )
        completions = [
            await asyncio.to_thread(explain, url, statement, values, generic=generic)
            for generic in (False, True)
        ]
        read = {
            "attempts": ids_text(attempt for _, _, attempt in started),
            "idempotent": ",".join(IDEMPOTENT_PLATFORMS),
        }
        completions += [
            await asyncio.to_thread(explain, url, complete.READ_SQL, read, generic=generic)
            for generic in (False, True)
        ]

    for plan in claims:
        assert "ix_targets_claimable" in plan, plan
        assert "Sort" not in plan, plan  # due order comes from the index, not from sorting all
    for plan in completions:  # the completion's write, then its locking read
        for table in ("posts", "targets", "attempts"):
            assert f"Seq Scan on {table}" not in plan, plan
    for plan in completions[:2]:
        assert "ix_posts_parent_post_id" in plan, plan  # the next parts, found by their parent
