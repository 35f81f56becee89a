"""posts name uploaded media by id: the ordered ids on the post, and a row per file named

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 19:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing posts name no uploads: '[]', as the ORM's default writes for new ones.
    op.add_column(
        "posts", sa.Column("media_ids", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
    )
    op.create_table(
        "post_media",
        sa.Column("post_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("media_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["post_id"],
            ["posts.id"],
            name=op.f("fk_post_media_post_id_posts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["media_id"], ["media.id"], name=op.f("fk_post_media_media_id_media")
        ),
        sa.PrimaryKeyConstraint("post_id", "position", name=op.f("pk_post_media")),
    )
    op.create_index(op.f("ix_post_media_media_id"), "post_media", ["media_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_post_media_media_id"), table_name="post_media")
    op.drop_table("post_media")
    op.drop_column("posts", "media_ids")
