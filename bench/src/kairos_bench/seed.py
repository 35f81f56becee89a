"""A million stored future posts, written straight into PostgreSQL.

Creating them through the API at its measured rate would take most of an hour, and what the
scale scenario asks is how the *other* paths behave with them stored, not how they got there.
Rows look like what CreatePost writes for a scheduled post with one pending target: due from a
day ahead on, one a second, spread over tenant `tenant` and the given account.
"""

from __future__ import annotations

import time

import psycopg

CHUNK = 100_000

SEED = """
WITH stored AS (
    INSERT INTO posts (id, tenant_id, content, media_urls, campaign, tags, notes, status,
                       scheduled_at, time_zone, revision, approval_required, rejection_reason,
                       created_at, updated_at)
    SELECT gen_random_uuid(), %(tenant)s, 'stored post ' || g, '[]', 'stored', '[]', '',
           'scheduled', now() + interval '1 day' + g * interval '1 second', '', 1, false, '',
           now() - interval '30 days' + g * interval '1 millisecond', now()
    FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
    RETURNING id, tenant_id, scheduled_at, created_at, updated_at
)
INSERT INTO targets (id, post_id, tenant_id, account_id, platform, settings, status,
                     attempt_count, next_attempt_at, due_at, platform_post_id, platform_url,
                     last_error_class, last_error_code, last_error_message, created_at,
                     updated_at)
SELECT gen_random_uuid(), id, tenant_id, %(account)s, 'webhook', '{}', 'pending', 0,
       scheduled_at, scheduled_at, '', '', '', '', '', created_at, updated_at
FROM stored
"""


def seed_future_posts(
    database_url: str, tenant: str, account_id: str, count: int, *, after: int = 0
) -> float:
    """Insert `count` scheduled posts with one pending target each, numbered on from `after`
    (the posts an earlier call stored); the seconds it took."""
    started = time.perf_counter()
    with psycopg.connect(database_url) as conn:
        for first in range(after + 1, after + count + 1, CHUNK):
            last = min(after + count, first + CHUNK - 1)
            values = {"tenant": tenant, "account": account_id, "first": first, "last": last}
            conn.execute(SEED, values)
            conn.commit()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE posts")
        conn.execute("VACUUM ANALYZE targets")
    return time.perf_counter() - started
