"""GetStats' counts kept by triggers in the transactions that change posts and targets

A tenant's live posts by status and their targets by platform and status are totals in
`stats_totals` (platform '' for the posts), so GetStats reads a handful of rows whatever the
size of the tables. A target counts while its post is not soft-deleted: deleting a post takes
its targets away, whatever status they had reached.

PostgreSQL: statement-level triggers read the statement's transition tables and append one row
per (tenant, platform, status) that changed to `stats_deltas`, so concurrent writers never wait
for each other on a shared total; the api folds the deltas into the totals now and then, and
GetStats adds the deltas not yet folded. SQLite (one writer at a time): row triggers change the
totals directly.

Whether a target's post is deleted is asked of the small partial index of deleted posts
(`ix_posts_deleted_id`). A post removed outright (DELETE, which the api never does) takes its
targets with it through the foreign key's cascade; they count as live then, so a BEFORE DELETE
trigger on posts settles the post beforehand: a live one loses its own count, a soft-deleted
one gives back what the cascade will take away from totals that no longer held its targets.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 15:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

#: A target of a post that is not soft-deleted (a post deleted outright counts as live, above).
_LIVE = "NOT EXISTS (SELECT 1 FROM posts AS p WHERE p.id = {post} AND p.deleted_at IS NOT NULL)"

_POSTGRESQL_FUNCTIONS = f"""
CREATE FUNCTION stats_posts_written() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO stats_deltas (tenant_id, platform, status, delta)
        SELECT tenant_id, '', status, count(*) FROM new_rows
        WHERE deleted_at IS NULL GROUP BY tenant_id, status;
    ELSE
        INSERT INTO stats_deltas (tenant_id, platform, status, delta)
        SELECT tenant_id, platform, status, sum(delta) FROM (
            SELECT tenant_id, '' AS platform, status, -1 AS delta FROM old_rows
            WHERE deleted_at IS NULL
            UNION ALL
            SELECT tenant_id, '', status, 1 FROM new_rows WHERE deleted_at IS NULL
            UNION ALL
            -- The targets of posts this statement deleted, or brought back. Each side starts
            -- from the few deleted rows: joining every new row to its old one costs the
            -- dispatch path's batches of status changes several times more.
            SELECT t.tenant_id, t.platform, t.status, -1
            FROM new_rows AS n JOIN targets AS t ON t.post_id = n.id
            WHERE n.deleted_at IS NOT NULL
              AND n.id IN (SELECT id FROM old_rows WHERE deleted_at IS NULL)
            UNION ALL
            SELECT t.tenant_id, t.platform, t.status, 1
            FROM old_rows AS o JOIN targets AS t ON t.post_id = o.id
            WHERE o.deleted_at IS NOT NULL
              AND o.id IN (SELECT id FROM new_rows WHERE deleted_at IS NULL)
        ) AS changed
        GROUP BY tenant_id, platform, status HAVING sum(delta) <> 0;
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION stats_post_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.deleted_at IS NULL THEN
        INSERT INTO stats_deltas (tenant_id, platform, status, delta)
        VALUES (OLD.tenant_id, '', OLD.status, -1);
    ELSE
        INSERT INTO stats_deltas (tenant_id, platform, status, delta)
        SELECT tenant_id, platform, status, count(*) FROM targets
        WHERE post_id = OLD.id GROUP BY tenant_id, platform, status;
    END IF;
    RETURN OLD;
END $$;

CREATE FUNCTION stats_targets_written() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO stats_deltas (tenant_id, platform, status, delta)
        SELECT tenant_id, platform, status, count(*) FROM new_rows AS t
        WHERE {_LIVE.format(post="t.post_id")}
        GROUP BY tenant_id, platform, status;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO stats_deltas (tenant_id, platform, status, delta)
        SELECT tenant_id, platform, status, -count(*) FROM old_rows AS t
        WHERE {_LIVE.format(post="t.post_id")}
        GROUP BY tenant_id, platform, status;
    ELSE
        INSERT INTO stats_deltas (tenant_id, platform, status, delta)
        SELECT tenant_id, platform, status, sum(delta) FROM (
            SELECT post_id, tenant_id, platform, status, -1 AS delta FROM old_rows
            UNION ALL
            SELECT post_id, tenant_id, platform, status, 1 FROM new_rows
        ) AS t
        WHERE {_LIVE.format(post="t.post_id")}
        GROUP BY tenant_id, platform, status HAVING sum(delta) <> 0;
    END IF;
    RETURN NULL;
END $$;
"""

# A trigger with transition tables serves one event.
_POSTGRESQL_TRIGGERS = """
CREATE TRIGGER stats_posts_inserted AFTER INSERT ON posts
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION stats_posts_written();
CREATE TRIGGER stats_posts_updated AFTER UPDATE ON posts
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION stats_posts_written();
CREATE TRIGGER stats_post_removed BEFORE DELETE ON posts
    FOR EACH ROW EXECUTE FUNCTION stats_post_removed();
CREATE TRIGGER stats_targets_inserted AFTER INSERT ON targets
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION stats_targets_written();
CREATE TRIGGER stats_targets_updated AFTER UPDATE ON targets
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION stats_targets_written();
CREATE TRIGGER stats_targets_deleted AFTER DELETE ON targets
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION stats_targets_written();
"""


def _add(tenant: str, platform: str, status: str, delta: str, where: str = "") -> str:
    """One SQLite statement adding `delta` to a total (the WHERE keeps the upsert parseable)."""
    return (
        "INSERT INTO stats_totals (tenant_id, platform, status, total) "
        f"SELECT {tenant}, {platform}, {status}, {delta} WHERE {where or 'true'} "
        "ON CONFLICT (tenant_id, platform, status) "
        "DO UPDATE SET total = stats_totals.total + excluded.total;"
    )


_SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER stats_post_inserted AFTER INSERT ON posts
    WHEN NEW.deleted_at IS NULL BEGIN
    {_add("NEW.tenant_id", "''", "NEW.status", "1")}
    END""",
    f"""CREATE TRIGGER stats_post_updated AFTER UPDATE OF status, deleted_at ON posts BEGIN
    {_add("OLD.tenant_id", "''", "OLD.status", "-1", "OLD.deleted_at IS NULL")}
    {_add("NEW.tenant_id", "''", "NEW.status", "1", "NEW.deleted_at IS NULL")}
    INSERT INTO stats_totals (tenant_id, platform, status, total)
    SELECT tenant_id, platform, status,
           CASE WHEN NEW.deleted_at IS NULL THEN count(*) ELSE -count(*) END
    FROM targets
    WHERE post_id = NEW.id AND (OLD.deleted_at IS NULL) <> (NEW.deleted_at IS NULL)
    GROUP BY tenant_id, platform, status
    ON CONFLICT (tenant_id, platform, status)
    DO UPDATE SET total = stats_totals.total + excluded.total;
    END""",
    f"""CREATE TRIGGER stats_post_removed BEFORE DELETE ON posts BEGIN
    {_add("OLD.tenant_id", "''", "OLD.status", "-1", "OLD.deleted_at IS NULL")}
    INSERT INTO stats_totals (tenant_id, platform, status, total)
    SELECT tenant_id, platform, status, count(*) FROM targets
    WHERE post_id = OLD.id AND OLD.deleted_at IS NOT NULL
    GROUP BY tenant_id, platform, status
    ON CONFLICT (tenant_id, platform, status)
    DO UPDATE SET total = stats_totals.total + excluded.total;
    END""",
    f"""CREATE TRIGGER stats_target_inserted AFTER INSERT ON targets
    WHEN {_LIVE.format(post="NEW.post_id")} BEGIN
    {_add("NEW.tenant_id", "NEW.platform", "NEW.status", "1")}
    END""",
    f"""CREATE TRIGGER stats_target_updated AFTER UPDATE OF platform, status ON targets
    WHEN (OLD.platform <> NEW.platform OR OLD.status <> NEW.status)
     AND {_LIVE.format(post="NEW.post_id")} BEGIN
    {_add("OLD.tenant_id", "OLD.platform", "OLD.status", "-1")}
    {_add("NEW.tenant_id", "NEW.platform", "NEW.status", "1")}
    END""",
    f"""CREATE TRIGGER stats_target_deleted AFTER DELETE ON targets
    WHEN {_LIVE.format(post="OLD.post_id")} BEGIN
    {_add("OLD.tenant_id", "OLD.platform", "OLD.status", "-1")}
    END""",
]

_SQLITE_TRIGGER_NAMES = [
    "stats_post_inserted",
    "stats_post_updated",
    "stats_post_removed",
    "stats_target_inserted",
    "stats_target_updated",
    "stats_target_deleted",
]

#: The totals of what is there now: live posts by status, and the targets of live posts.
_BACKFILL = """
INSERT INTO stats_totals (tenant_id, platform, status, total)
SELECT tenant_id, '', status, count(*) FROM posts
WHERE deleted_at IS NULL GROUP BY tenant_id, status
UNION ALL
SELECT t.tenant_id, t.platform, t.status, count(*) FROM targets AS t
JOIN posts AS p ON p.id = t.post_id
WHERE p.deleted_at IS NULL GROUP BY t.tenant_id, t.platform, t.status
"""


def upgrade() -> None:
    op.create_table(
        "stats_totals",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("platform", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "platform", "status", name=op.f("pk_stats_totals")),
    )
    op.create_table(
        "stats_deltas",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("platform", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("delta", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_stats_deltas")),
    )
    op.create_index(op.f("ix_stats_deltas_tenant_id"), "stats_deltas", ["tenant_id"])
    op.create_index(
        "ix_posts_deleted_id",
        "posts",
        ["id"],
        unique=False,
        postgresql_where=sa.text("deleted_at IS NOT NULL"),
        sqlite_where=sa.text("deleted_at IS NOT NULL"),
    )
    # The triggers first: creating them locks posts and targets against writers until this
    # transaction commits, so the backfill counts exactly what the triggers will count from.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_POSTGRESQL_FUNCTIONS)
        op.execute(_POSTGRESQL_TRIGGERS)
    else:
        for trigger in _SQLITE_TRIGGERS:
            op.execute(trigger)
    op.execute(_BACKFILL)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for trigger, table in [
            ("stats_posts_inserted", "posts"),
            ("stats_posts_updated", "posts"),
            ("stats_post_removed", "posts"),
            ("stats_targets_inserted", "targets"),
            ("stats_targets_updated", "targets"),
            ("stats_targets_deleted", "targets"),
        ]:
            op.execute(f"DROP TRIGGER {trigger} ON {table}")
        for function in ("stats_posts_written", "stats_post_removed", "stats_targets_written"):
            op.execute(f"DROP FUNCTION {function}()")
    else:
        for trigger in _SQLITE_TRIGGER_NAMES:
            op.execute(f"DROP TRIGGER {trigger}")
    op.drop_index(
        "ix_posts_deleted_id",
        table_name="posts",
        postgresql_where=sa.text("deleted_at IS NOT NULL"),
        sqlite_where=sa.text("deleted_at IS NOT NULL"),
    )
    op.drop_index(op.f("ix_stats_deltas_tenant_id"), table_name="stats_deltas")
    op.drop_table("stats_deltas")
    op.drop_table("stats_totals")
