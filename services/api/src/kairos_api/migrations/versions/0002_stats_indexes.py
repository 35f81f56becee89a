"""indexes for GetStats: live and deleted posts, targets by post with platform and status

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 13:45:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_posts_live_tenant_id_status",
        "posts",
        ["tenant_id", "status"],
        unique=False,
        postgresql_where=sa.text("deleted_at IS NULL"),
        sqlite_where=sa.text("deleted_at IS NULL"),
    )
    op.create_index(
        "ix_posts_live_tenant_id_status_scheduled_at",
        "posts",
        ["tenant_id", "status", "scheduled_at"],
        unique=False,
        postgresql_where=sa.text("deleted_at IS NULL"),
        sqlite_where=sa.text("deleted_at IS NULL"),
    )
    op.create_index(
        "ix_posts_deleted_tenant_id_id",
        "posts",
        ["tenant_id", "id"],
        unique=False,
        postgresql_where=sa.text("deleted_at IS NOT NULL"),
        sqlite_where=sa.text("deleted_at IS NOT NULL"),
    )
    # The wider index answers every lookup by post_id the narrow one did.
    op.create_index(
        op.f("ix_targets_post_id_platform_status"),
        "targets",
        ["post_id", "platform", "status"],
        unique=False,
    )
    op.drop_index(op.f("ix_targets_post_id"), table_name="targets")


def downgrade() -> None:
    op.create_index(op.f("ix_targets_post_id"), "targets", ["post_id"], unique=False)
    op.drop_index(op.f("ix_targets_post_id_platform_status"), table_name="targets")
    op.drop_index(
        "ix_posts_deleted_tenant_id_id",
        table_name="posts",
        postgresql_where=sa.text("deleted_at IS NOT NULL"),
        sqlite_where=sa.text("deleted_at IS NOT NULL"),
    )
    op.drop_index(
        "ix_posts_live_tenant_id_status_scheduled_at",
        table_name="posts",
        postgresql_where=sa.text("deleted_at IS NULL"),
        sqlite_where=sa.text("deleted_at IS NULL"),
    )
    op.drop_index(
        "ix_posts_live_tenant_id_status",
        table_name="posts",
        postgresql_where=sa.text("deleted_at IS NULL"),
        sqlite_where=sa.text("deleted_at IS NULL"),
    )
