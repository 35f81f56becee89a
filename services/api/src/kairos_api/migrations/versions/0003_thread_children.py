"""index the parts of threads by the post they reply to

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 15:50:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Only replies are in it: finding a published post's next parts stays cheap at any size.
    op.create_index(
        "ix_posts_parent_post_id",
        "posts",
        ["parent_post_id"],
        unique=False,
        postgresql_where=sa.text("parent_post_id IS NOT NULL"),
        sqlite_where=sa.text("parent_post_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_posts_parent_post_id",
        table_name="posts",
        postgresql_where=sa.text("parent_post_id IS NOT NULL"),
        sqlite_where=sa.text("parent_post_id IS NOT NULL"),
    )
