"""a post keeps the hash of the create request that made it, to refuse a reused request_id

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: posts created before have no hash, and a repeat of their request_id is answered
    # with the first post as it always was.
    op.add_column("posts", sa.Column("request_hash", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("posts", "request_hash")
