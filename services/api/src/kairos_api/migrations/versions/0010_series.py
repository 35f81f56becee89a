"""recurring series, and the occurrence each post of a series is

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 22:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_LIVE_ACTIVE = "status = 'active' AND deleted_at IS NULL"
_LIVE_OCCURRENCE = "series_id IS NOT NULL AND deleted_at IS NULL"


def upgrade() -> None:
    op.create_table(
        "series",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("media_urls", sa.JSON(), nullable=False),
        sa.Column("media_ids", sa.JSON(), nullable=False),
        sa.Column("targets", sa.JSON(), nullable=False),
        sa.Column("campaign", sa.String(length=200), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("approval_required", sa.Boolean(), nullable=False),
        sa.Column("stale_after_seconds", sa.Integer(), nullable=True),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("start_local", sa.String(length=32), nullable=False),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=False),
        sa.Column("materialised_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("split_from", sa.Uuid(), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_series")),
        sa.UniqueConstraint("tenant_id", "request_id", name=op.f("uq_series_tenant_id_request_id")),
    )
    op.create_index(
        op.f("ix_series_tenant_id_created_at_id"), "series", ["tenant_id", "created_at", "id"]
    )
    op.create_index(
        "ix_series_due",
        "series",
        ["materialised_until"],
        postgresql_where=sa.text(_LIVE_ACTIVE),
        sqlite_where=sa.text(_LIVE_ACTIVE),
    )
    # Plain ADD COLUMN (the reference inline): a batch copy of `posts` on SQLite would drop
    # its counting triggers.
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE posts ADD COLUMN series_id CHAR(32) REFERENCES series (id)")
    else:
        op.add_column("posts", sa.Column("series_id", sa.Uuid(), nullable=True))
        op.create_foreign_key(
            op.f("fk_posts_series_id_series"), "posts", "series", ["series_id"], ["id"]
        )
    op.add_column("posts", sa.Column("occurrence_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "uq_posts_series_id_occurrence_at",
        "posts",
        ["series_id", "occurrence_at"],
        unique=True,
        postgresql_where=sa.text(_LIVE_OCCURRENCE),
        sqlite_where=sa.text(_LIVE_OCCURRENCE),
    )


def downgrade() -> None:
    op.drop_index("uq_posts_series_id_occurrence_at", table_name="posts")
    op.drop_column("posts", "occurrence_at")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(op.f("fk_posts_series_id_series"), "posts", type_="foreignkey")
    op.drop_column("posts", "series_id")
    op.drop_index("ix_series_due", table_name="series")
    op.drop_index(op.f("ix_series_tenant_id_created_at_id"), table_name="series")
    op.drop_table("series")
